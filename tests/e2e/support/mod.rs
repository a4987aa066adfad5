//! Helpers shared by the end-to-end suites: the real binary, a server on a free port,
//! fixture images, and `wait_until`.

pub(crate) mod fixtures;
pub(crate) mod http;
pub(crate) mod tmux;

use std::io::{BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use vsa_protocol::{BlockingClient, ClientOptions, ItemContent, UpsertRequest};

/// Runs the real `vsa` binary with `args` and returns its output.
pub(crate) fn vsa(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_vsa"))
        .args(args)
        .output()
        .expect("start vsa")
}

/// Polls `cond` every 20 ms until it holds or `timeout` passes; returns whether it held.
pub(crate) fn wait_until(timeout: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + timeout;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() > end {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A fresh temporary folder, removed on drop.
pub(crate) struct TempDir(pub(crate) PathBuf);

impl TempDir {
    pub(crate) fn new(tag: &str) -> TempDir {
        static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let p = std::env::temp_dir().join(format!("vsa-e2e-{tag}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).expect("temp dir");
        TempDir(p)
    }

    pub(crate) fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The admin token the test servers are configured with.
pub(crate) const ADMIN_TOKEN: &str = "e2e-admin-token";

/// A `vsa serve` process on a free loopback port; killed on drop.
pub(crate) struct Server {
    child: Child,
    pub(crate) addr: SocketAddr,
    /// The HTTP side's address, when the config turned it on (`server.http_listen`).
    pub(crate) http: Option<SocketAddr>,
    _dir: Option<TempDir>,
    stderr: std::sync::Arc<std::sync::Mutex<String>>,
}

impl Server {
    /// Starts `vsa serve` with the default test config plus `extra` TOML.
    pub(crate) fn start(extra: &str) -> Server {
        let dir = TempDir::new("server");
        let mut server = Server::start_in(dir.path(), extra);
        server._dir = Some(dir);
        server
    }

    /// Starts `vsa serve` keeping its config and data in `dir` (which outlives it, so a test
    /// can restart a server on the same data).
    pub(crate) fn start_in(dir: &Path, extra: &str) -> Server {
        Server::start_on(dir, extra, "127.0.0.1:0")
    }

    /// Like [`Server::start_in`], listening on `listen` (a restarted server on the same
    /// address, for clients that reconnect).
    pub(crate) fn start_on(dir: &Path, extra: &str, listen: &str) -> Server {
        let config = dir.join("vsa.toml");
        let toml =
            format!("[admin]\ntoken = \"{ADMIN_TOKEN}\"\nfault_injection = true\n\n{extra}\n");
        std::fs::write(&config, toml).expect("write config");
        let mut child = Command::new(env!("CARGO_BIN_EXE_vsa"))
            .args(["serve", "--listen", listen, "--config"])
            .arg(&config)
            .arg("--data-dir")
            .arg(dir.join("data"))
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start vsa serve");
        let stderr = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
        let mut err = child.stderr.take().expect("stderr");
        let sink = stderr.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = err.read(&mut buf) {
                if n == 0 {
                    break;
                }
                if let Ok(mut s) = sink.lock() {
                    s.push_str(&String::from_utf8_lossy(&buf[..n]));
                }
            }
        });
        let mut out = BufReader::new(child.stdout.take().expect("stdout"));
        let mut line = String::new();
        let mut http = None;
        let addr = loop {
            line.clear();
            let n = out.read_line(&mut line).expect("read server stdout");
            if n == 0 {
                let _ = child.wait();
                panic!(
                    "vsa serve exited before listening; stderr:\n{}",
                    stderr.lock().map(|s| s.clone()).unwrap_or_default()
                );
            }
            if let Some(a) = line.trim().strip_prefix("vsa http listening on ") {
                http = Some(a.parse().expect("http address"));
            }
            if let Some(a) = line.trim().strip_prefix("vsa listening on ") {
                break a.parse().expect("address");
            }
        };
        std::thread::spawn(move || {
            let mut sink = String::new();
            let _ = out.read_to_string(&mut sink);
        });
        Server {
            child,
            addr,
            http,
            _dir: None,
            stderr,
        }
    }

    /// A connected blocking client (with the admin token).
    pub(crate) fn client(&self) -> BlockingClient {
        let options = ClientOptions {
            admin_token: Some(ADMIN_TOKEN.into()),
            request_timeout: Some(Duration::from_secs(60)),
            ..ClientOptions::default()
        };
        BlockingClient::connect_with(self.addr, options).expect("connect")
    }

    /// What the server logged so far.
    pub(crate) fn stderr(&self) -> String {
        self.stderr.lock().map(|s| s.clone()).unwrap_or_default()
    }

    /// True while the process runs.
    pub(crate) fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// `kill -9`: no chance to flush or clean up.
    pub(crate) fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Sends SIGTERM and waits for a clean exit.
    pub(crate) fn terminate(&mut self) -> std::process::ExitStatus {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status();
        let end = Instant::now() + Duration::from_secs(15);
        loop {
            if let Ok(Some(s)) = self.child.try_wait() {
                return s;
            }
            if Instant::now() > end {
                let _ = self.child.kill();
                panic!("vsa serve did not stop on SIGTERM");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Embedding size of the bundled model.
pub(crate) const DIM: usize = 1280;

/// A deterministic pseudo-random unit-ish vector per item number.
pub(crate) fn embedding(n: u64) -> Vec<f32> {
    let mut x = n.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..DIM)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 40) as f32 / (1u64 << 24) as f32 - 0.5
        })
        .collect()
}

pub(crate) fn category_of(n: u64) -> &'static str {
    if n.is_multiple_of(2) { "even" } else { "odd" }
}

pub(crate) fn item(n: u64, category: &str) -> UpsertRequest {
    UpsertRequest {
        id: format!("item-{n:05}"),
        content: ItemContent::Embedding(embedding(n)),
        category: category.into(),
        attributes: vec![("n".into(), n.to_string())],
        metadata: vec![("title".into(), format!("Item number {n}"))],
    }
}

/// A query near item 0: its embedding plus a little deterministic noise (`embedding(noise)`).
pub(crate) fn near_item_0(noise: u64) -> Vec<f32> {
    let noise = embedding(noise);
    embedding(0)
        .iter()
        .zip(&noise)
        .map(|(a, b)| a + 0.3 * b)
        .collect()
}

/// The top 10 for an embedding query, with each hit's score components (`explain`).
pub(crate) fn search_explained(
    client: &mut BlockingClient,
    q: &[f32],
) -> vsa_protocol::SearchResponse {
    let mut req =
        vsa_protocol::SearchRequest::new(vsa_protocol::QueryInput::Embedding(q.to_vec()), 10);
    req.options.explain = true;
    client.search(req).expect("search")
}

/// Where `id` is in a response (0 = top), if shown.
pub(crate) fn rank(r: &vsa_protocol::SearchResponse, id: &str) -> Option<usize> {
    r.hits.iter().position(|h| h.id == id)
}
