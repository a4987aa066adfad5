//! The TCP server: accepts connections (capped by a semaphore), reads framed requests,
//! dispatches them to the [`Engine`] and writes responses in request order.
//!
//! A connection is two halves: the reader decodes frames and spawns one task per request (up
//! to `max_in_flight`, then it stops reading — backpressure reaches the client), the writer
//! awaits those tasks in order and writes each answer. A bad frame or request gets an
//! `Error` response and the connection stays usable whenever the frame boundary is known.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tokio::io::{AsyncWriteExt, BufReader, BufWriter};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, mpsc, watch};
use tokio::task::JoinHandle;
use vsa_actors::Engine;
use vsa_protocol::frame;
use vsa_protocol::{
    AdminAction, AdminReply, AdminRequest, ErrorCode, HelloReply, PROTOCOL_VERSION, ProtocolError,
    Request, Response,
};

use crate::metrics::RequestMeters;
use crate::security::{ApiKeys, TokenBucket, same_token};
use crate::settings::Settings;

/// Server-wide counters.
#[derive(Debug, Default)]
pub struct ServerStats {
    /// Connections accepted.
    pub connections: AtomicU64,
    /// Connections refused over the limit.
    pub refused: AtomicU64,
    /// Requests answered.
    pub requests: AtomicU64,
    /// Requests answered with an error.
    pub errors: AtomicU64,
    /// Connections open now.
    pub open: AtomicU64,
}

/// Shared by every connection (and the HTTP side).
pub(crate) struct Shared {
    pub(crate) engine: Engine,
    pub(crate) settings: Settings,
    pub(crate) stats: ServerStats,
    pub(crate) requests: RequestMeters,
    pub(crate) keys: ApiKeys,
}

/// Serves `listener` until `shutdown` resolves, then drains connections (up to 5 s) and stops
/// the engine.
pub async fn serve(
    engine: Engine,
    settings: Settings,
    listener: TcpListener,
    shutdown: impl Future<Output = ()>,
) -> anyhow::Result<()> {
    serve_all(engine, settings, listener, None, shutdown).await
}

/// [`serve`], plus the HTTP side on `http` when given (health, readiness, metrics, JSON
/// search and item writes; see [`crate::http`]).
pub async fn serve_all(
    engine: Engine,
    settings: Settings,
    listener: TcpListener,
    http: Option<std::net::TcpListener>,
    shutdown: impl Future<Output = ()>,
) -> anyhow::Result<()> {
    let limit = Arc::new(Semaphore::new(settings.server.max_connections));
    let keys = ApiKeys::load(&settings.security)?;
    if keys.required() {
        tracing::info!("API keys required on every request");
    }
    let shared = Arc::new(Shared {
        engine: engine.clone(),
        settings,
        stats: ServerStats::default(),
        requests: RequestMeters::default(),
        keys,
    });
    // Snapshots of the request meters for the recent window (health thresholds).
    let ticker = {
        let shared = shared.clone();
        tokio::spawn(async move {
            let mut every = tokio::time::interval(Duration::from_secs(5));
            loop {
                every.tick().await;
                shared.requests.tick();
            }
        })
    };
    let tls = crate::tls::acceptor(&shared.settings.security)?;
    if tls.is_some() {
        tracing::info!("TLS on the TCP protocol");
    }
    let http = match http {
        Some(l) => Some(crate::http::start(shared.clone(), l)?),
        None => None,
    };
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut tasks = tokio::task::JoinSet::new();
    tokio::pin!(shutdown);
    let mut backoff = Duration::from_millis(10);
    loop {
        tokio::select! {
            _ = &mut shutdown => break,
            accepted = listener.accept() => {
                let (stream, peer) = match accepted {
                    Ok(a) => { backoff = Duration::from_millis(10); a }
                    Err(e) => {
                        // Out of file descriptors and the like: back off instead of spinning.
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(backoff).await;
                        backoff = (backoff * 2).min(Duration::from_secs(1));
                        continue;
                    }
                };
                let _ = stream.set_nodelay(true);
                shared.stats.connections.fetch_add(1, Ordering::Relaxed);
                match limit.clone().try_acquire_owned() {
                    Ok(permit) => {
                        let shared = shared.clone();
                        let stop = stop_rx.clone();
                        let tls = tls.clone();
                        tasks.spawn(async move {
                            shared.stats.open.fetch_add(1, Ordering::Relaxed);
                            let outcome = match tls {
                                None => {
                                    // Lock-free halves: the reader and the writer never wait
                                    // for each other (see `connection`).
                                    let (read, write) = stream.into_split();
                                    connection(shared.clone(), read, write, stop).await
                                }
                                Some(acceptor) => {
                                    // The handshake counts against the idle timeout too.
                                    let idle = Duration::from_secs(shared.settings.server.idle_timeout_s.max(1));
                                    match tokio::time::timeout(idle, acceptor.accept(stream)).await {
                                        Ok(Ok(s)) => {
                                            // A TLS session is one state: halves that share it.
                                            let (read, write) = tokio::io::split(s);
                                            connection(shared.clone(), read, write, stop).await
                                        }
                                        Ok(Err(e)) => Err(anyhow::anyhow!("TLS handshake: {e}")),
                                        Err(_) => Err(anyhow::anyhow!("TLS handshake timed out")),
                                    }
                                }
                            };
                            if let Err(e) = outcome {
                                tracing::debug!(%peer, error = %e, "connection ended");
                            }
                            shared.stats.open.fetch_sub(1, Ordering::Relaxed);
                            drop(permit);
                        });
                    }
                    Err(_) => {
                        shared.stats.refused.fetch_add(1, Ordering::Relaxed);
                        tasks.spawn(refuse(stream));
                    }
                }
            }
            Some(_) = tasks.join_next(), if !tasks.is_empty() => {}
        }
    }
    tracing::info!("shutting down: draining connections");
    ticker.abort();
    if let Some(h) = &http {
        h.stop(true).await;
    }
    let _ = stop_tx.send(true);
    let drain = async { while tasks.join_next().await.is_some() {} };
    if tokio::time::timeout(Duration::from_secs(5), drain)
        .await
        .is_err()
    {
        tracing::warn!("connections still open after 5 s; closing them");
        tasks.abort_all();
    }
    if let Err(e) = engine.save_clicks().await {
        tracing::error!(error = %e, "saving click state at shutdown failed");
    }
    if let Err(e) = engine.save_whitening().await {
        tracing::error!(error = %e, "saving the whitening at shutdown failed");
    }
    engine.shutdown();
    Ok(())
}

async fn refuse(mut stream: TcpStream) {
    let reply = Response::error(ErrorCode::Unavailable, "too many connections; retry later");
    if let Ok(bytes) = frame::encode_frame(&reply, vsa_protocol::DEFAULT_MAX_FRAME) {
        let _ = tokio::time::timeout(Duration::from_secs(1), stream.write_all(&bytes)).await;
    }
    let _ = stream.shutdown().await;
}

/// A request as read from its frame.
enum Incoming {
    Decoded(Request),
    /// A `Clicks` body, left for the click thread to decode.
    Clicks(Vec<u8>),
}

impl Incoming {
    fn kind(&self) -> &'static str {
        match self {
            Incoming::Decoded(r) => r.kind(),
            Incoming::Clicks(_) => "clicks",
        }
    }
}

/// One answer slot in request order.
enum Pending {
    Ready(Response),
    Task(JoinHandle<Response>),
    /// The reader gave up on the stream: write what came before, then close.
    Close,
}

/// Serves one connection: this task reads and decodes the requests, a task of its own writes
/// the answers in request order. They run on different threads at once, so a plain TCP
/// stream is given as its lock-free halves (`TcpStream::into_split`): `tokio::io::split`
/// holds a blocking mutex across every read and write, so a thread that found it held slept
/// until the holder's system call was done (longer if the holder was preempted), and every
/// task queued on that thread waited with it (`perf` showed ~50 such waits a second under a
/// click stream).
async fn connection<R, W>(
    shared: Arc<Shared>,
    read: R,
    write: W,
    mut stop: watch::Receiver<bool>,
) -> anyhow::Result<()>
where
    R: tokio::io::AsyncRead + Send + Unpin + 'static,
    W: tokio::io::AsyncWrite + Send + Unpin + 'static,
{
    let (tx, rx) = mpsc::channel::<Pending>(shared.settings.server.max_in_flight);
    let writer = tokio::spawn(write_loop(BufWriter::new(write), rx, shared.clone()));
    let mut reader = BufReader::new(read);
    let max_frame = shared.settings.server.max_frame;
    let limits = vsa_protocol::FrameLimits::with_max_frame(max_frame);
    let idle = Duration::from_secs(shared.settings.server.idle_timeout_s.max(1));
    let mut greeted = false;
    let mut role = None;
    let sec = &shared.settings.security;
    let mut bucket = TokenBucket::new(sec.rate_limit_rps, sec.rate_limit_burst);
    loop {
        let read = tokio::select! {
            r = tokio::time::timeout(idle, frame::read_frame(&mut reader, max_frame)) => r,
            _ = stop.changed() => break,
        };
        let body = match read {
            Err(_) => break,       // idle
            Ok(Ok(None)) => break, // clean EOF
            Ok(Ok(Some(body))) => body,
            Ok(Err(ProtocolError::FrameTooLarge { len, max })) => {
                let msg = format!("frame of {len} bytes is over the limit of {max}");
                let _ = tx
                    .send(Pending::Ready(Response::error(
                        ErrorCode::FrameTooLarge,
                        msg,
                    )))
                    .await;
                if len <= limits.max_skip && frame::skip_body(&mut reader, len).await.is_ok() {
                    continue;
                }
                let _ = tx.send(Pending::Close).await;
                break;
            }
            Ok(Err(e)) => {
                let _ = tx.send(Pending::Ready(Response::Error(e.to_reply()))).await;
                let _ = tx.send(Pending::Close).await;
                break;
            }
        };
        // A click stream's batches are decoded on the click thread (see
        // `Engine::clicks_encoded`); everything else here.
        let request = if greeted && Request::is_clicks_body(&body) {
            Incoming::Clicks(body)
        } else {
            match frame::decode_body(&body) {
                Ok(r) => Incoming::Decoded(r),
                Err(e) => {
                    let e = vsa_actors::EngineError::Undecodable(e);
                    let reply = Response::error(e.code(), e.to_string());
                    shared.requests.record("invalid", Duration::ZERO, &reply);
                    let _ = tx.send(Pending::Ready(reply)).await;
                    continue;
                }
            }
        };
        let pending = match request {
            Incoming::Decoded(Request::Hello(h)) => {
                if h.protocol_version != PROTOCOL_VERSION {
                    let msg = format!(
                        "protocol version {} is not supported; this server speaks {PROTOCOL_VERSION}",
                        h.protocol_version
                    );
                    let _ = tx
                        .send(Pending::Ready(Response::error(
                            ErrorCode::UnsupportedVersion,
                            msg,
                        )))
                        .await;
                    let _ = tx.send(Pending::Close).await;
                    break;
                }
                role = shared.keys.role(h.token.as_deref());
                if role.is_none() {
                    let reply = Response::error(
                        ErrorCode::Unauthorized,
                        "this server needs an API key: send it as the Hello token",
                    );
                    let _ = tx.send(Pending::Ready(reply)).await;
                    let _ = tx.send(Pending::Close).await;
                    break;
                }
                greeted = true;
                Pending::Ready(Response::Hello(HelloReply {
                    protocol_version: PROTOCOL_VERSION,
                    server: format!("vsa {}", env!("CARGO_PKG_VERSION")),
                }))
            }
            _ if !greeted => Pending::Ready(Response::error(
                ErrorCode::BadRequest,
                "the first request on a connection must be Hello",
            )),
            request if !bucket.try_take() => {
                let reply = Response::error(
                    ErrorCode::RateLimited,
                    format!(
                        "over this client's limit of {} requests/s; slow down",
                        shared.settings.security.rate_limit_rps
                    ),
                );
                shared
                    .requests
                    .record(request.kind(), Duration::ZERO, &reply);
                Pending::Ready(reply)
            }
            request if !role.is_some_and(|r| r.allows(request.kind())) => {
                let reply = Response::error(
                    ErrorCode::Forbidden,
                    format!("a read-only API key may not {}", request.kind()),
                );
                shared
                    .requests
                    .record(request.kind(), Duration::ZERO, &reply);
                Pending::Ready(reply)
            }
            request => {
                let shared = shared.clone();
                Pending::Task(tokio::spawn(async move {
                    let kind = request.kind();
                    let started = Instant::now();
                    let reply = match request {
                        Incoming::Decoded(request) => dispatch(&shared, request).await,
                        Incoming::Clicks(body) => reply(
                            shared.engine.clicks_encoded(body).await,
                            Response::ClicksAccepted,
                        ),
                    };
                    shared.requests.record(kind, started.elapsed(), &reply);
                    reply
                }))
            }
        };
        if tx.send(pending).await.is_err() {
            break; // writer gone: the peer stopped reading
        }
    }
    drop(tx);
    writer.await??;
    Ok(())
}

async fn write_loop<W: tokio::io::AsyncWrite + Send + Unpin>(
    mut out: BufWriter<W>,
    mut rx: mpsc::Receiver<Pending>,
    shared: Arc<Shared>,
) -> anyhow::Result<()> {
    let max_frame = shared.settings.server.max_frame;
    while let Some(p) = rx.recv().await {
        let response = match p {
            Pending::Ready(r) => r,
            Pending::Task(t) => t.await.unwrap_or_else(|e| {
                tracing::error!(error = %e, "request task failed");
                Response::error(ErrorCode::Internal, "request handler failed")
            }),
            Pending::Close => break,
        };
        shared.stats.requests.fetch_add(1, Ordering::Relaxed);
        if matches!(response, Response::Error(_)) {
            shared.stats.errors.fetch_add(1, Ordering::Relaxed);
        }
        let bytes = match frame::encode_frame(&response, max_frame) {
            Ok(b) => b,
            Err(e) => frame::encode_frame(
                &Response::error(ErrorCode::Internal, format!("response not encodable: {e}")),
                max_frame,
            )?,
        };
        out.write_all(&bytes).await?;
        if rx.is_empty() {
            out.flush().await?;
        }
    }
    out.flush().await?;
    out.shutdown().await.ok();
    Ok(())
}

/// Everything the console and monitoring see: the engine's part plus the server's (request
/// meters, connections) and, for admins, the log tail after `log_after`.
pub(crate) async fn telemetry(shared: &Shared, log_after: Option<u64>) -> vsa_protocol::Telemetry {
    let mut t = shared.engine.telemetry().await;
    t.requests = shared.requests.snapshot();
    (t.recent_requests, t.recent_window_ms) = shared.requests.recent();
    t.connections_open = shared.stats.open.load(Ordering::Relaxed);
    t.connections_refused = shared.stats.refused.load(Ordering::Relaxed);
    if let Some(after) = log_after {
        t.log = crate::logging::tail().after(after);
    }
    t
}

pub(crate) async fn dispatch(shared: &Shared, request: Request) -> Response {
    let engine = &shared.engine;
    let result = match request {
        Request::Hello(_) => unreachable_hello(),
        Request::Search(r) => engine.search(r).await.map(Response::SearchResults),
        Request::Upsert(r) => engine.upsert(r).await.map(Response::Upserted),
        Request::Delete(r) => engine.delete(r.id).await.map(Response::Deleted),
        Request::Click(c) => engine.click(c).await.map(Response::Clicked),
        Request::Clicks(b) => engine.clicks(b).await.map(Response::ClicksAccepted),
        Request::Stats => Ok(Response::Stats(engine.stats().await)),
        Request::Health => Ok(Response::Health(engine.health().await)),
        Request::Metrics => Ok(Response::Telemetry(Box::new(telemetry(shared, None).await))),
        Request::Admin(a) => return admin(shared, a).await,
    };
    reply(result, |r| r)
}

/// The response to an engine call's result: `ok` of its value, or its error.
fn reply<T>(result: vsa_actors::Result<T>, ok: impl FnOnce(T) -> Response) -> Response {
    result.map(ok).unwrap_or_else(|e| {
        if e.code().class() == vsa_protocol::ErrorClass::Internal {
            tracing::error!(error = %e, "request failed");
        }
        Response::error(e.code(), e.to_string())
    })
}

fn unreachable_hello() -> vsa_actors::Result<Response> {
    Ok(Response::error(
        ErrorCode::BadRequest,
        "Hello was already handled",
    ))
}

async fn admin(shared: &Shared, req: AdminRequest) -> Response {
    let Some(token) = &shared.settings.admin.token else {
        return Response::error(
            ErrorCode::Unauthorized,
            "admin requests are disabled (no admin.token configured)",
        );
    };
    if !same_token(token, &req.token) {
        return Response::error(ErrorCode::Unauthorized, "wrong admin token");
    }
    let fault_injection = shared.settings.admin.fault_injection;
    let refuse_faults = || {
        Response::error(
            ErrorCode::Unauthorized,
            "fault injection is disabled (admin.fault_injection = false)",
        )
    };
    let reply = |message: String| {
        Response::Admin(AdminReply {
            message,
            payload: None,
        })
    };
    match req.action {
        AdminAction::PanicActor { name } => {
            if !fault_injection {
                return refuse_faults();
            }
            match shared.engine.panic_actor(&name).await {
                Ok(true) => reply(format!("{name} panicked")),
                Ok(false) => {
                    Response::error(ErrorCode::BadRequest, format!("no actor named {name:?}"))
                }
                Err(e) => Response::error(e.code(), e.to_string()),
            }
        }
        AdminAction::StallActor { name, millis } => {
            if !fault_injection {
                return refuse_faults();
            }
            match shared.engine.stall_actor(&name, millis).await {
                Ok(true) => reply(format!("{name} stalled for {millis} ms")),
                Ok(false) => {
                    Response::error(ErrorCode::BadRequest, format!("no actor named {name:?}"))
                }
                Err(e) => Response::error(e.code(), e.to_string()),
            }
        }
        AdminAction::Snapshot => match shared.engine.checkpoint().await {
            Ok(m) => reply(m),
            Err(e) => Response::error(e.code(), e.to_string()),
        },
        AdminAction::RebalancePlan
        | AdminAction::RebalanceApply { .. }
        | AdminAction::RebalanceCancel
        | AdminAction::RebalanceStatus => {
            use vsa_actors::coordinator::RebalanceCommand as C;
            let cmd = match req.action {
                AdminAction::RebalanceApply { plan_id } => C::Apply(plan_id),
                AdminAction::RebalanceCancel => C::Cancel,
                AdminAction::RebalanceStatus => C::Status,
                _ => C::Plan,
            };
            match shared.engine.rebalance(cmd).await {
                Ok((message, payload)) => Response::Admin(AdminReply { message, payload }),
                Err(e) => Response::error(e.code(), e.to_string()),
            }
        }
        AdminAction::SetRerankWeights(changes) => match shared.engine.set_weights(&changes) {
            Ok(w) => Response::Admin(AdminReply {
                message: format!(
                    "reranking weights v{}: visual {} colour {} quality {} ctr {}",
                    w.version, w.visual, w.colour, w.quality, w.ctr
                ),
                payload: serde_json::to_string(&w).ok(),
            }),
            Err(e) => Response::error(e.code(), e.to_string()),
        },
        AdminAction::ClickStats { top } => {
            match shared.engine.click_stats(top.min(1000) as usize).await {
                Ok(v) => Response::Admin(AdminReply {
                    message: format!(
                        "{} clicks, {} rejected, {} items tracked",
                        v["clicks"], v["rejected"], v["items_tracked"]
                    ),
                    payload: Some(v.to_string()),
                }),
                Err(e) => Response::error(e.code(), e.to_string()),
            }
        }
        AdminAction::Telemetry { log_after } => {
            Response::Telemetry(Box::new(telemetry(shared, Some(log_after)).await))
        }
        AdminAction::ExportClicks { offset, limit } => {
            match shared.engine.export_clicks(offset, limit as usize).await {
                Ok(v) => Response::Admin(AdminReply {
                    message: format!("{} triplets", v["triplets"].as_array().map_or(0, Vec::len)),
                    payload: Some(v.to_string()),
                }),
                Err(e) => Response::error(e.code(), e.to_string()),
            }
        }
    }
}
