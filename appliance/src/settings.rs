//! Settings: one validated struct, layered — built-in defaults → config file (TOML) →
//! environment `VSA__SECTION__KEY` → command-line flags.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use vsa_actors::{
    ClickConfig, IndexConfig, LimitsConfig, PoolConfig, QualityConfig, SearchConfig, StorageConfig,
};

/// Everything `vsa serve` runs with.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Settings {
    /// TCP server.
    pub server: ServerSettings,
    /// Model files and runtime.
    pub model: ModelSettings,
    /// Administration.
    pub admin: AdminSettings,
    /// API keys and per-client limits.
    pub security: SecuritySettings,
    /// Inference pool.
    pub pool: PoolConfig,
    /// Index and routing.
    pub index: IndexConfig,
    /// Input limits.
    pub limits: LimitsConfig,
    /// Search behaviour.
    pub search: SearchConfig,
    /// Query presets and ingest augmentation.
    pub quality: QualityConfig,
    /// Write-ahead log and snapshots (the folder is `server.data_dir`).
    pub storage: StorageConfig,
    /// Click feedback and reranking.
    pub clicks: ClickConfig,
}

/// `[server]`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServerSettings {
    /// Address of the TCP protocol.
    pub listen: String,
    /// Where data lives: the write-ahead log, snapshots and their manifest.
    pub data_dir: PathBuf,
    /// Keep nothing on disk (demos, throwaway runs): a restart starts empty.
    pub in_memory: bool,
    /// Most simultaneous connections; more are refused with `unavailable`.
    pub max_connections: usize,
    /// Largest frame body (bytes).
    pub max_frame: u32,
    /// Requests one connection may have in flight (pipelining); reading pauses beyond it.
    pub max_in_flight: usize,
    /// A connection idle this long is closed (seconds).
    pub idle_timeout_s: u64,
    /// Address of the HTTP side (health, readiness, metrics, JSON search); off when unset.
    pub http_listen: Option<String>,
    /// HTTP worker threads.
    pub http_workers: usize,
}

impl Default for ServerSettings {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:7878".into(),
            data_dir: PathBuf::from("vsa-data"),
            in_memory: false,
            max_connections: 256,
            max_frame: vsa_protocol::DEFAULT_MAX_FRAME,
            max_in_flight: 64,
            idle_timeout_s: 300,
            http_listen: None,
            http_workers: 1,
        }
    }
}

/// `[model]`
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ModelSettings {
    /// Model manifest (default: the bundled `models/manifest.toml`).
    pub manifest: Option<PathBuf>,
    /// libonnxruntime path (default: `ORT_DYLIB_PATH`, then `.ort/lib/`).
    pub ort_lib: Option<PathBuf>,
}

/// `[admin]`
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AdminSettings {
    /// Token admin requests must carry; admin requests are refused when unset.
    pub token: Option<String>,
    /// Allow fault injection (panic an actor, kill a worker) for rehearsals and tests.
    pub fault_injection: bool,
}

/// `[security]`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SecuritySettings {
    /// A file of API keys, one per line: `read-only KEY` or `read-write KEY` (`#` comments).
    /// When any key is configured (here or in `api_keys_env`), every request needs one.
    pub api_keys_file: Option<PathBuf>,
    /// An environment variable with more keys, `ro:KEY,rw:KEY` (read at start, never logged).
    pub api_keys_env: String,
    /// Requests per second one client may send (a TCP connection; an HTTP peer address);
    /// 0: no limit. Over it: `rate_limited`.
    pub rate_limit_rps: f64,
    /// Requests a client may send at once above its rate (the bucket size).
    pub rate_limit_burst: u32,
    /// TLS on the TCP protocol: the certificate chain (PEM). With `tls_key`; off when unset.
    pub tls_cert: Option<PathBuf>,
    /// The certificate's private key (PEM: PKCS#8, PKCS#1 or SEC1).
    pub tls_key: Option<PathBuf>,
}

impl Default for SecuritySettings {
    fn default() -> Self {
        Self {
            api_keys_file: None,
            api_keys_env: "VSA_API_KEYS".into(),
            rate_limit_rps: 0.0,
            rate_limit_burst: 50,
            tls_cert: None,
            tls_key: None,
        }
    }
}

/// Settings errors.
#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    /// The file, the environment or a flag does not fit the settings.
    #[error("settings: {0}")]
    Invalid(String),
}

impl Settings {
    /// Defaults, then `file` (if given; it must exist), then `VSA__SECTION__KEY` variables.
    pub fn load(file: Option<&Path>) -> Result<Settings, SettingsError> {
        let defaults = config::Config::try_from(&Settings::default())
            .map_err(|e| SettingsError::Invalid(e.to_string()))?;
        let mut builder = config::Config::builder().add_source(defaults);
        if let Some(f) = file {
            if !f.is_file() {
                return Err(SettingsError::Invalid(format!(
                    "config file {} not found",
                    f.display()
                )));
            }
            builder = builder.add_source(config::File::from(f).format(config::FileFormat::Toml));
        }
        builder = builder.add_source(
            config::Environment::with_prefix("VSA")
                .prefix_separator("__")
                .separator("__")
                .try_parsing(true),
        );
        let settings: Settings = builder
            .build()
            .and_then(config::Config::try_deserialize)
            .map_err(|e| SettingsError::Invalid(e.to_string()))?;
        settings.validate()?;
        Ok(settings)
    }

    /// Checks values that types cannot.
    pub fn validate(&self) -> Result<(), SettingsError> {
        let bad = |m: &str| Err(SettingsError::Invalid(m.to_string()));
        if self.pool.workers == 0 || self.pool.workers > 64 {
            return bad("pool.workers must be in 1..=64");
        }
        if self.pool.max_batch == 0 || self.pool.queue_capacity == 0 {
            return bad("pool.max_batch and pool.queue_capacity must be positive");
        }
        if self.index.shards_per_category == 0 {
            return bad("index.shards_per_category must be positive");
        }
        let h = self.index.rebalance_load_half_life_s;
        if !h.is_finite() || h <= 0.0 {
            return bad("index.rebalance_load_half_life_s must be positive");
        }
        if self.server.max_connections == 0 || self.server.max_in_flight == 0 {
            return bad("server.max_connections and server.max_in_flight must be positive");
        }
        if let Err(m) = self.quality.validate() {
            return Err(SettingsError::Invalid(m));
        }
        if self.server.max_frame < 1024 {
            return bad("server.max_frame must be at least 1024");
        }
        if self.storage.queue == 0 || self.storage.group_commit_max == 0 {
            return bad("storage.queue and storage.group_commit_max must be positive");
        }
        if self.clicks.aggregators == 0 || self.clicks.aggregators > 64 {
            return bad("clicks.aggregators must be in 1..=64");
        }
        if self.clicks.query_log == 0 || self.clicks.half_life_s <= 0.0 {
            return bad("clicks.query_log and clicks.half_life_s must be positive");
        }
        if self.clicks.save_every_s == 0 {
            return bad("clicks.save_every_s must be at least 1");
        }
        if !self.security.rate_limit_rps.is_finite() || self.security.rate_limit_rps < 0.0 {
            return bad("security.rate_limit_rps must be 0 (off) or positive");
        }
        if self.security.tls_cert.is_some() != self.security.tls_key.is_some() {
            return bad("security.tls_cert and security.tls_key go together");
        }
        if self.server.http_workers == 0 || self.server.http_workers > 64 {
            return bad("server.http_workers must be in 1..=64");
        }
        if self.admin.token.as_ref().is_some_and(|t| t.len() < 8) {
            return bad("admin.token must be at least 8 characters");
        }
        Ok(())
    }

    /// The engine part.
    pub fn engine(&self) -> vsa_actors::EngineConfig {
        vsa_actors::EngineConfig {
            pool: self.pool.clone(),
            index: self.index.clone(),
            limits: self.limits.clone(),
            search: self.search.clone(),
            quality: self.quality.clone(),
            storage: StorageConfig {
                dir: (!self.server.in_memory).then(|| self.server.data_dir.clone()),
                ..self.storage.clone()
            },
            clicks: self.clicks.clone(),
        }
    }
}
