//! Test support for the client subcommands: a tiny fake vsa server and temporary folders.
//!
//! The fake answers `Hello` itself and every other request with a handler. It reads requests
//! in batches (it answers when `batch` requests are waiting or the client has been quiet for
//! a moment) and records the largest number of requests it held unanswered, so tests can see
//! that a client really pipelines.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::net::TcpListener;
use vsa_protocol::{Connection, HelloReply, PROTOCOL_VERSION, Request, Response};

/// Answers one request (never `Hello`).
pub(crate) type Handler = Arc<dyn Fn(&Request) -> Response + Send + Sync>;

/// A running fake server.
pub(crate) struct FakeServer {
    /// Where it listens.
    pub(crate) addr: SocketAddr,
    /// The most requests it held unanswered at once.
    pub(crate) max_pending: Arc<AtomicUsize>,
    /// Every request it received (Hello excluded), in order.
    pub(crate) requests: Arc<Mutex<Vec<Request>>>,
}

impl FakeServer {
    /// Starts a fake answering with `handler`, holding up to `batch` requests before answering.
    pub(crate) async fn start(batch: usize, handler: Handler) -> FakeServer {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("local addr");
        let max_pending = Arc::new(AtomicUsize::new(0));
        let requests = Arc::new(Mutex::new(Vec::new()));
        let (max, log) = (max_pending.clone(), requests.clone());
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let (handler, max, log) = (handler.clone(), max.clone(), log.clone());
                tokio::spawn(serve(stream, batch.max(1), handler, max, log));
            }
        });
        FakeServer {
            addr,
            max_pending,
            requests,
        }
    }

    /// The address as `host:port`.
    pub(crate) fn addr(&self) -> String {
        self.addr.to_string()
    }

    /// How many requests it received.
    pub(crate) fn request_count(&self) -> usize {
        self.requests.lock().expect("lock").len()
    }
}

async fn serve(
    stream: tokio::net::TcpStream,
    batch: usize,
    handler: Handler,
    max_pending: Arc<AtomicUsize>,
    log: Arc<Mutex<Vec<Request>>>,
) {
    // Reading and writing go through two connections over the stream's halves, so waiting
    // for "the client is quiet" never drops a read mid-frame (which would desynchronise).
    let (read_half, write_half) = stream.into_split();
    let mut reader = Connection::new(tokio::io::join(read_half, tokio::io::sink()));
    let mut writer = Connection::new(tokio::io::join(tokio::io::empty(), write_half));
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok(Some(request)) = reader.read_request().await {
            if tx.send(request).is_err() {
                break;
            }
        }
    });
    let mut pending: Vec<Request> = Vec::new();
    loop {
        let closed = match tokio::time::timeout(Duration::from_millis(50), rx.recv()).await {
            Ok(Some(request)) => {
                pending.push(request);
                max_pending.fetch_max(pending.len(), Ordering::SeqCst);
                if pending.len() < batch {
                    continue;
                }
                false
            }
            Ok(None) => true,
            // Quiet for a moment: answer what is waiting.
            Err(_) => false,
        };
        for request in pending.drain(..) {
            let response = match &request {
                Request::Hello(_) => Response::Hello(HelloReply {
                    protocol_version: PROTOCOL_VERSION,
                    server: "fake".into(),
                }),
                other => {
                    log.lock().expect("lock").push(other.clone());
                    handler(other)
                }
            };
            if writer.write_response(&response).await.is_err() {
                return;
            }
        }
        if closed {
            return;
        }
    }
}

/// An address nobody listens on.
pub(crate) async fn dead_addr() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("local addr");
    drop(listener);
    addr.to_string()
}

/// A temporary folder, removed on drop.
pub(crate) struct TempDir(PathBuf);

impl TempDir {
    /// Creates a fresh, empty folder.
    pub(crate) fn new(tag: &str) -> TempDir {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, Ordering::SeqCst);
        let dir = std::env::temp_dir().join(format!("vsa-cli-{tag}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("create temp dir");
        TempDir(dir)
    }

    /// Its path.
    pub(crate) fn path(&self) -> &Path {
        &self.0
    }

    /// Writes a file under it (creating folders) and returns its path.
    pub(crate) fn write(&self, name: &str, contents: impl AsRef<[u8]>) -> PathBuf {
        let path = self.0.join(name);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).expect("create dirs");
        }
        std::fs::write(&path, contents).expect("write");
        path
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
