//! Who may do what: API keys (read-only or read-write, as Qdrant has them), the admin token,
//! and per-client rate limits. Every comparison with a secret is constant-time, and no key is
//! ever logged or echoed in an error.

use std::collections::HashMap;
use std::net::IpAddr;
use std::path::Path;
use std::sync::Mutex;
use std::time::Instant;

use crate::settings::{SecuritySettings, SettingsError};

/// What a key lets its holder do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Search, stats, health, metrics, clicks (feedback, not catalogue changes).
    ReadOnly,
    /// Everything a read-only key may, plus upserts and deletes.
    ReadWrite,
}

impl Role {
    /// Whether a request of `kind` (`Request::kind`) is allowed. Admin requests also need the
    /// admin token, checked separately.
    pub fn allows(self, kind: &str) -> bool {
        match self {
            Role::ReadWrite => true,
            Role::ReadOnly => !matches!(kind, "upsert" | "delete"),
        }
    }
}

/// The configured API keys; empty: no key needed.
#[derive(Clone, Default)]
pub struct ApiKeys {
    keys: Vec<(String, Role)>,
}

impl std::fmt::Debug for ApiKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ApiKeys({} keys)", self.keys.len())
    }
}

/// Shortest key accepted (a short key is guessable).
const MIN_KEY: usize = 16;

impl ApiKeys {
    /// Keys from `security.api_keys_file` and the `security.api_keys_env` variable.
    pub fn load(s: &SecuritySettings) -> Result<ApiKeys, SettingsError> {
        let mut keys = ApiKeys::default();
        if let Some(file) = &s.api_keys_file {
            keys.add_file(file)?;
        }
        if let Ok(text) = std::env::var(&s.api_keys_env) {
            for (i, entry) in text.split(',').map(str::trim).enumerate() {
                if entry.is_empty() {
                    continue;
                }
                let (role, key) = match entry.split_once(':') {
                    Some(("ro", k)) => (Role::ReadOnly, k),
                    Some(("rw", k)) => (Role::ReadWrite, k),
                    _ => {
                        return Err(SettingsError::Invalid(format!(
                            "{}: entry {} is not `ro:KEY` or `rw:KEY`",
                            s.api_keys_env,
                            i + 1
                        )));
                    }
                };
                keys.push(key, role, &format!("{} entry {}", s.api_keys_env, i + 1))?;
            }
        }
        Ok(keys)
    }

    fn add_file(&mut self, file: &Path) -> Result<(), SettingsError> {
        let text = std::fs::read_to_string(file).map_err(|e| {
            SettingsError::Invalid(format!("API keys file {}: {e}", file.display()))
        })?;
        for (n, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let at = format!("{} line {}", file.display(), n + 1);
            let (role, key) = match line.split_once(char::is_whitespace) {
                Some(("read-only", k)) => (Role::ReadOnly, k.trim()),
                Some(("read-write", k)) => (Role::ReadWrite, k.trim()),
                _ => {
                    return Err(SettingsError::Invalid(format!(
                        "{at}: expected `read-only KEY` or `read-write KEY`"
                    )));
                }
            };
            self.push(key, role, &at)?;
        }
        Ok(())
    }

    fn push(&mut self, key: &str, role: Role, at: &str) -> Result<(), SettingsError> {
        if key.len() < MIN_KEY || key.chars().any(char::is_whitespace) {
            return Err(SettingsError::Invalid(format!(
                "{at}: a key must be at least {MIN_KEY} characters without spaces"
            )));
        }
        self.keys.push((key.to_string(), role));
        Ok(())
    }

    /// Builds a key set directly (tests, embedding).
    pub fn from_keys(keys: impl IntoIterator<Item = (String, Role)>) -> ApiKeys {
        ApiKeys {
            keys: keys.into_iter().collect(),
        }
    }

    /// Whether keys are required at all.
    pub fn required(&self) -> bool {
        !self.keys.is_empty()
    }

    /// The role of `presented`: every key is compared (constant time each, no early exit), so
    /// timing says nothing about which key or how much of it matched. Without configured keys
    /// everyone is read-write.
    pub fn role(&self, presented: Option<&str>) -> Option<Role> {
        if self.keys.is_empty() {
            return Some(Role::ReadWrite);
        }
        let presented = presented?;
        let mut found = None;
        for (key, role) in &self.keys {
            if same_token(key, presented) {
                found = Some(*role);
            }
        }
        found
    }
}

/// Constant-time comparison, so a wrong token's timing tells nothing about the right one.
pub fn same_token(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    let mut diff = a.len() ^ b.len();
    for i in 0..a.len().max(b.len()) {
        let x = a.get(i).copied().unwrap_or(0);
        let y = b.get(i).copied().unwrap_or(0);
        diff |= usize::from(x ^ y);
    }
    diff == 0
}

/// A token bucket: `rate` tokens a second, at most `burst` saved up.
#[derive(Debug, Clone)]
pub struct TokenBucket {
    rate: f64,
    burst: f64,
    tokens: f64,
    last: Instant,
}

impl TokenBucket {
    /// A full bucket.
    pub fn new(rate: f64, burst: u32) -> TokenBucket {
        let burst = f64::from(burst.max(1));
        TokenBucket {
            rate,
            burst,
            tokens: burst,
            last: Instant::now(),
        }
    }

    /// Takes one token if there is one (always true when the rate is 0: no limit).
    pub fn try_take(&mut self) -> bool {
        self.try_take_at(Instant::now())
    }

    fn try_take_at(&mut self, now: Instant) -> bool {
        if self.rate <= 0.0 {
            return true;
        }
        let dt = now.saturating_duration_since(self.last).as_secs_f64();
        self.last = now;
        self.tokens = (self.tokens + dt * self.rate).min(self.burst);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// Buckets per peer address (the HTTP side, where connections are short-lived), bounded: past
/// `MAX_PEERS` the map is cleared (every peer starts again with a full bucket).
#[derive(Debug)]
pub struct PeerLimiter {
    rate: f64,
    burst: u32,
    peers: Mutex<HashMap<IpAddr, TokenBucket>>,
}

const MAX_PEERS: usize = 10_000;

impl PeerLimiter {
    /// A limiter of `rate` requests/s with `burst` (rate 0: no limit).
    pub fn new(rate: f64, burst: u32) -> PeerLimiter {
        PeerLimiter {
            rate,
            burst,
            peers: Mutex::new(HashMap::new()),
        }
    }

    /// Whether `peer` may send one more request now.
    pub fn allow(&self, peer: Option<IpAddr>) -> bool {
        if self.rate <= 0.0 {
            return true;
        }
        let Some(peer) = peer else { return true };
        let Ok(mut peers) = self.peers.lock() else {
            return true;
        };
        if peers.len() >= MAX_PEERS && !peers.contains_key(&peer) {
            peers.clear();
        }
        peers
            .entry(peer)
            .or_insert_with(|| TokenBucket::new(self.rate, self.burst))
            .try_take()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn token_comparison() {
        assert!(same_token("secret-token", "secret-token"));
        assert!(!same_token("secret-token", "secret-tokem"));
        assert!(!same_token("secret-token", "secret-token-longer"));
        assert!(!same_token("", "x"));
    }

    #[test]
    fn roles_from_keys() {
        let keys = ApiKeys::from_keys([
            ("read-only-key-0123456789".to_string(), Role::ReadOnly),
            ("read-write-key-0123456789".to_string(), Role::ReadWrite),
        ]);
        assert!(keys.required());
        assert_eq!(
            keys.role(Some("read-only-key-0123456789")),
            Some(Role::ReadOnly)
        );
        assert_eq!(
            keys.role(Some("read-write-key-0123456789")),
            Some(Role::ReadWrite)
        );
        assert_eq!(keys.role(Some("read-write-key-012345678")), None);
        assert_eq!(keys.role(None), None);
        assert_eq!(ApiKeys::default().role(None), Some(Role::ReadWrite));
        assert!(Role::ReadOnly.allows("search") && Role::ReadOnly.allows("click"));
        assert!(!Role::ReadOnly.allows("upsert") && !Role::ReadOnly.allows("delete"));
    }

    #[test]
    fn keys_file_and_env_are_parsed_and_checked() {
        let dir = std::env::temp_dir().join(format!("vsa-keys-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("keys.txt");
        std::fs::write(
            &file,
            "# ops\nread-only  aaaaaaaaaaaaaaaaaaaa\nread-write bbbbbbbbbbbbbbbbbbbb\n",
        )
        .unwrap();
        let env = format!("VSA_TEST_KEYS_{}", std::process::id());
        // SAFETY of the test: the variable name is unique to this process and test.
        unsafe { std::env::set_var(&env, "rw:cccccccccccccccccccc, ro:dddddddddddddddddddd") };
        let s = SecuritySettings {
            api_keys_file: Some(file.clone()),
            api_keys_env: env.clone(),
            ..SecuritySettings::default()
        };
        let keys = ApiKeys::load(&s).unwrap();
        assert_eq!(
            keys.role(Some("aaaaaaaaaaaaaaaaaaaa")),
            Some(Role::ReadOnly)
        );
        assert_eq!(
            keys.role(Some("cccccccccccccccccccc")),
            Some(Role::ReadWrite)
        );
        assert_eq!(
            keys.role(Some("dddddddddddddddddddd")),
            Some(Role::ReadOnly)
        );
        assert!(!format!("{keys:?}").contains("aaaa"), "keys never printed");

        std::fs::write(&file, "read-only short\n").unwrap();
        let err = ApiKeys::load(&s).unwrap_err().to_string();
        assert!(err.contains("line 1") && !err.contains("short"), "{err}");
        unsafe { std::env::remove_var(&env) };
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn bucket_refills_at_its_rate() {
        let mut b = TokenBucket::new(10.0, 2);
        let t0 = b.last;
        assert!(b.try_take_at(t0) && b.try_take_at(t0));
        assert!(!b.try_take_at(t0), "burst spent");
        assert!(
            b.try_take_at(t0 + Duration::from_millis(110)),
            "one token after 0.1 s"
        );
        assert!(!b.try_take_at(t0 + Duration::from_millis(120)));
        assert!(TokenBucket::new(0.0, 1).try_take(), "rate 0 is no limit");
    }
}
