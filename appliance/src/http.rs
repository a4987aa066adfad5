//! The HTTP side (actix-web), on its own port (`server.http_listen`), for load balancers,
//! monitoring and clients that do not speak the TCP protocol:
//!
//! | route | what | key |
//! |---|---|---|
//! | `GET /healthz` | 200 while the process serves | none |
//! | `GET /readyz` | 200 when the model is loaded and no shard is missing or recovering, else 503 | none |
//! | `GET /version` | server and protocol versions | none |
//! | `GET /metrics` | Prometheus text: requests, latency histograms, stages, shards, pool, WAL, clicks | read-only |
//! | `POST /v1/search` | image bytes (raw body or multipart) → the JSON of `vsa search --json` | read-only |
//! | `POST /v1/items` | image bytes + `id`, `category`, `attr`, `meta` → upsert | read-write |
//! | `DELETE /v1/items/{id}` | delete | read-write |
//!
//! When API keys are configured they go in `Authorization: Bearer KEY` (or `X-Api-Key`). Every
//! request runs through the same [`crate::server::dispatch`] as a TCP request, so limits, errors
//! and metrics are the same; a failure answers `{"error": {"code", "message"}}` with the HTTP
//! status of its code's class. Engine work runs on the server's main runtime, not on actix's
//! worker threads.

use std::fmt::Write as _;
use std::sync::Arc;
use std::time::Instant;

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};
use futures::StreamExt;
use vsa_protocol::{
    DeleteRequest, ErrorClass, ErrorCode, HealthState, Histogram, ItemContent, QueryInput, Request,
    Response, SearchRequest, Telemetry, UpsertRequest,
};

use crate::commands::search::{parse_box, parse_where, render_json};
use crate::security::{PeerLimiter, Role};
use crate::server::Shared;

struct HttpState {
    shared: Arc<Shared>,
    main: tokio::runtime::Handle,
    limiter: PeerLimiter,
}

type State = web::Data<HttpState>;

/// Starts the HTTP server on `listener` (on the calling tokio runtime); stop it with the handle.
pub(crate) fn start(
    shared: Arc<Shared>,
    listener: std::net::TcpListener,
) -> anyhow::Result<actix_web::dev::ServerHandle> {
    let sec = &shared.settings.security;
    let state = web::Data::new(HttpState {
        limiter: PeerLimiter::new(sec.rate_limit_rps, sec.rate_limit_burst),
        main: tokio::runtime::Handle::current(),
        shared: shared.clone(),
    });
    let workers = shared.settings.server.http_workers;
    let server = actix_web::HttpServer::new(move || {
        actix_web::App::new()
            .app_data(state.clone())
            .route("/healthz", web::get().to(healthz))
            .route("/readyz", web::get().to(readyz))
            .route("/version", web::get().to(version))
            .route("/metrics", web::get().to(metrics))
            .route("/v1/search", web::post().to(search))
            .route("/v1/items", web::post().to(upsert))
            .route("/v1/items/{id}", web::delete().to(delete))
    })
    .workers(workers)
    .disable_signals()
    .shutdown_timeout(5)
    .listen(listener)?
    .run();
    let handle = server.handle();
    tokio::spawn(async move {
        if let Err(e) = server.await {
            tracing::error!(error = %e, "HTTP server failed");
        }
    });
    Ok(handle)
}

/// The HTTP status of a wire error code.
pub fn status_of(code: ErrorCode) -> StatusCode {
    match code {
        ErrorCode::ImageTooLarge | ErrorCode::FrameTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
        ErrorCode::Forbidden => StatusCode::FORBIDDEN,
        ErrorCode::RateLimited => StatusCode::TOO_MANY_REQUESTS,
        ErrorCode::Timeout => StatusCode::GATEWAY_TIMEOUT,
        c => match c.class() {
            ErrorClass::BadRequest => StatusCode::BAD_REQUEST,
            ErrorClass::NotFound => StatusCode::NOT_FOUND,
            ErrorClass::Unauthorized => StatusCode::UNAUTHORIZED,
            ErrorClass::Busy | ErrorClass::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            ErrorClass::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        },
    }
}

/// A refused request: its code and message, answered by [`error`].
struct Refusal(ErrorCode, String);

impl Refusal {
    fn new(code: ErrorCode, message: impl Into<String>) -> Refusal {
        Refusal(code, message.into())
    }

    fn answer(self) -> HttpResponse {
        error(self.0, self.1)
    }
}

fn error(code: ErrorCode, message: impl Into<String>) -> HttpResponse {
    let body = serde_json::json!({"error": {"code": code.as_str(), "message": message.into()}});
    let mut r = HttpResponse::build(status_of(code));
    if code.retryable() {
        r.insert_header(("Retry-After", "1"));
    }
    r.json(body)
}

/// The caller's role from `Authorization: Bearer KEY` or `X-Api-Key`, or the refusal.
fn authorize(state: &HttpState, req: &HttpRequest, kind: &str) -> Result<(), Refusal> {
    if !state.limiter.allow(req.peer_addr().map(|a| a.ip())) {
        let msg = format!(
            "over this client's limit of {} requests/s; slow down",
            state.shared.settings.security.rate_limit_rps
        );
        return Err(Refusal::new(ErrorCode::RateLimited, msg));
    }
    let header = |name: &str| req.headers().get(name).and_then(|v| v.to_str().ok());
    let presented = header("authorization")
        .and_then(|v| v.strip_prefix("Bearer "))
        .or_else(|| header("x-api-key"))
        .map(str::trim);
    match state.shared.keys.role(presented) {
        None => Err(Refusal::new(
            ErrorCode::Unauthorized,
            "this server needs an API key: Authorization: Bearer KEY",
        )),
        Some(r) if !r.allows(kind) => Err(Refusal::new(
            ErrorCode::Forbidden,
            format!("a read-only API key may not {kind}"),
        )),
        Some(Role::ReadOnly | Role::ReadWrite) => Ok(()),
    }
}

/// Runs `request` through the TCP path's dispatch on the main runtime, counted the same way.
async fn run(state: &HttpState, request: Request) -> Response {
    let shared = state.shared.clone();
    let task = state.main.spawn(async move {
        let kind = request.kind();
        let started = Instant::now();
        let reply = crate::server::dispatch(&shared, request).await;
        shared.requests.record(kind, started.elapsed(), &reply);
        reply
    });
    task.await
        .unwrap_or_else(|_| Response::error(ErrorCode::Internal, "request handler failed"))
}

fn reply_error(r: Response) -> HttpResponse {
    match r {
        Response::Error(e) => error(e.code, e.message),
        other => error(
            ErrorCode::Internal,
            format!("unexpected {} answer", other.kind()),
        ),
    }
}

async fn healthz() -> HttpResponse {
    HttpResponse::Ok().content_type("text/plain").body("ok\n")
}

async fn readyz(state: State) -> HttpResponse {
    let engine = state.shared.engine.clone();
    let Ok(health) = state.main.spawn(async move { engine.health().await }).await else {
        return error(ErrorCode::Internal, "health check failed");
    };
    // Ready = serving every shard with the model loaded: any check below healthy (a shard
    // recovering or not answering, a worker missing) takes the node out of rotation.
    let ready = health.state == HealthState::Healthy;
    let checks: Vec<_> = health
        .checks
        .iter()
        .map(|(name, st, detail)| serde_json::json!({"name": name, "state": state_word(*st), "detail": detail}))
        .collect();
    let body =
        serde_json::json!({"ready": ready, "state": state_word(health.state), "checks": checks});
    if ready {
        HttpResponse::Ok().json(body)
    } else {
        HttpResponse::ServiceUnavailable().json(body)
    }
}

fn state_word(s: HealthState) -> &'static str {
    match s {
        HealthState::Healthy => "healthy",
        HealthState::Degraded => "degraded",
        HealthState::Down => "down",
    }
}

async fn version() -> HttpResponse {
    HttpResponse::Ok().json(serde_json::json!({
        "server": format!("vsa {}", env!("CARGO_PKG_VERSION")),
        "protocol": vsa_protocol::PROTOCOL_VERSION,
    }))
}

async fn metrics(state: State, req: HttpRequest) -> HttpResponse {
    if let Err(r) = authorize(&state, &req, "metrics") {
        return r.answer();
    }
    let shared = state.shared.clone();
    let gathered = state
        .main
        .spawn(async move {
            let t = crate::server::telemetry(&shared, None).await;
            let clicks = shared.engine.click_stats(0).await.ok();
            let wal = shared.engine.wal_stats();
            let encoder = shared.engine.encoder_state();
            let whitening = shared.engine.whitening_state();
            (t, clicks, wal, encoder, whitening)
        })
        .await;
    let Ok((t, clicks, wal, (generation, fits), (pairs, rank, fit_pairs))) = gathered else {
        return error(ErrorCode::Internal, "gathering metrics failed");
    };
    let mut out = render_metrics(&t);
    gauge(
        &mut out,
        "vsa_encoder_generation",
        "Generation of the binary encoder in force (0: none yet, searches are exact); a restart continues from the checkpoint's.",
        generation as f64,
    );
    counter(
        &mut out,
        "vsa_encoder_fits_total",
        "Encoder fits finished since the server started (none after a restart that restored the checkpoint's model state).",
        fits as f64,
    );
    gauge(
        &mut out,
        "vsa_whitening_pairs",
        "Ingest pairs (synthetic real-shot view, index vector) accumulated for the learned whitening.",
        pairs as f64,
    );
    gauge(
        &mut out,
        "vsa_whitening_rank",
        "Directions of the learned whitening in force (0: not fitted, presets score the plain cosine).",
        rank as f64,
    );
    gauge(
        &mut out,
        "vsa_whitening_fit_pairs",
        "Pairs the learned whitening in force was fitted on.",
        fit_pairs as f64,
    );
    if let Some(w) = wal {
        use std::sync::atomic::Ordering::Relaxed;
        let secs = w.sync_micros.load(Relaxed) as f64 / 1e6;
        counter(
            &mut out,
            "vsa_wal_records_total",
            "Records appended to the write-ahead log.",
            w.records.load(Relaxed) as f64,
        );
        counter(
            &mut out,
            "vsa_wal_bytes_total",
            "Bytes appended to the write-ahead log.",
            w.bytes.load(Relaxed) as f64,
        );
        counter(
            &mut out,
            "vsa_wal_fsyncs_total",
            "fsync calls of the write-ahead log.",
            w.syncs.load(Relaxed) as f64,
        );
        counter(
            &mut out,
            "vsa_wal_fsync_seconds_total",
            "Time spent in fsync of the write-ahead log (divide by vsa_wal_fsyncs_total for the mean latency).",
            secs,
        );
        counter(
            &mut out,
            "vsa_wal_group_commits_total",
            "Group commits (records / group commits = mean group size).",
            w.group_commits.load(Relaxed) as f64,
        );
        counter(
            &mut out,
            "vsa_wal_append_errors_total",
            "Failed log appends.",
            w.errors.load(Relaxed) as f64,
        );
    }
    if let Some(c) = clicks {
        let n = |k: &str| c[k].as_f64().unwrap_or(0.0);
        counter(
            &mut out,
            "vsa_clicks_total",
            "Clicks absorbed.",
            n("clicks"),
        );
        counter(
            &mut out,
            "vsa_impressions_total",
            "Impressions logged.",
            n("impressions"),
        );
        counter(
            &mut out,
            "vsa_clicks_rejected_total",
            "Clicks refused (unknown query or item).",
            n("rejected"),
        );
        gauge(
            &mut out,
            "vsa_click_items_tracked",
            "Items with click aggregates.",
            n("items_tracked"),
        );
    }
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4; charset=utf-8")
        .body(out)
}

/// Prometheus label value escaping (backslash, quote, newline).
fn label(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

fn header(out: &mut String, name: &str, help: &str, kind: &str) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
}

fn counter(out: &mut String, name: &str, help: &str, v: f64) {
    header(out, name, help, "counter");
    let _ = writeln!(out, "{name} {v}");
}

fn gauge(out: &mut String, name: &str, help: &str, v: f64) {
    header(out, name, help, "gauge");
    let _ = writeln!(out, "{name} {v}");
}

/// One histogram series (`labels` already formatted, e.g. `kind="search"`), in seconds.
fn histogram_series(out: &mut String, name: &str, labels: &str, h: &Histogram) {
    let mut cumulative = 0u64;
    for (i, c) in h.counts.iter().enumerate() {
        cumulative += c;
        let le = h
            .bounds_us
            .get(i)
            .map_or_else(|| "+Inf".to_string(), |b| format!("{}", *b as f64 / 1e6));
        let _ = writeln!(out, "{name}_bucket{{{labels},le=\"{le}\"}} {cumulative}");
    }
    let _ = writeln!(out, "{name}_sum{{{labels}}} {}", h.sum_us as f64 / 1e6);
    let _ = writeln!(out, "{name}_count{{{labels}}} {cumulative}");
}

/// The Prometheus text of a telemetry answer.
pub fn render_metrics(t: &Telemetry) -> String {
    let mut out = String::new();
    gauge(
        &mut out,
        "vsa_uptime_seconds",
        "Seconds since the server started.",
        t.uptime_ms as f64 / 1e3,
    );
    gauge(
        &mut out,
        "vsa_items",
        "Live items in the index.",
        t.items as f64,
    );
    gauge(
        &mut out,
        "vsa_routing_epoch",
        "The routing table's epoch.",
        t.epoch as f64,
    );
    gauge(
        &mut out,
        "vsa_memory_rss_bytes",
        "Resident memory of the server process.",
        t.memory_rss_bytes as f64,
    );
    gauge(
        &mut out,
        "vsa_connections_open",
        "Open TCP client connections.",
        t.connections_open as f64,
    );
    counter(
        &mut out,
        "vsa_connections_refused_total",
        "Connections refused over server.max_connections.",
        t.connections_refused as f64,
    );
    header(
        &mut out,
        "vsa_health",
        "Health: 0 healthy, 1 degraded, 2 down (overall and per check).",
        "gauge",
    );
    let word = |s: HealthState| match s {
        HealthState::Healthy => 0,
        HealthState::Degraded => 1,
        HealthState::Down => 2,
    };
    let _ = writeln!(
        out,
        "vsa_health{{check=\"overall\"}} {}",
        word(t.health.state)
    );
    for (name, st, _) in &t.health.checks {
        let _ = writeln!(out, "vsa_health{{check=\"{}\"}} {}", label(name), word(*st));
    }

    header(
        &mut out,
        "vsa_requests_total",
        "Requests answered, by kind.",
        "counter",
    );
    for r in &t.requests {
        let _ = writeln!(out, "vsa_requests_total{{kind=\"{}\"}} {}", r.kind, r.count);
    }
    header(
        &mut out,
        "vsa_request_errors_total",
        "Requests answered with an error, by kind.",
        "counter",
    );
    for r in &t.requests {
        let _ = writeln!(
            out,
            "vsa_request_errors_total{{kind=\"{}\"}} {}",
            r.kind, r.errors
        );
    }
    header(
        &mut out,
        "vsa_request_busy_total",
        "Requests answered busy or rate_limited, by kind.",
        "counter",
    );
    for r in &t.requests {
        let _ = writeln!(
            out,
            "vsa_request_busy_total{{kind=\"{}\"}} {}",
            r.kind, r.busy
        );
    }
    header(
        &mut out,
        "vsa_request_duration_seconds",
        "Time from a decoded request to its answer, by kind.",
        "histogram",
    );
    for r in &t.requests {
        histogram_series(
            &mut out,
            "vsa_request_duration_seconds",
            &format!("kind=\"{}\"", r.kind),
            &r.latency,
        );
    }
    header(
        &mut out,
        "vsa_query_stage_duration_seconds",
        "Time of each query stage (decode, embed, localise, search, ...).",
        "histogram",
    );
    for s in &t.stages {
        histogram_series(
            &mut out,
            "vsa_query_stage_duration_seconds",
            &format!("stage=\"{}\"", label(&s.stage)),
            &s.latency,
        );
    }

    header(
        &mut out,
        "vsa_shard_items",
        "Live items per shard.",
        "gauge",
    );
    let shard_labels = |s: &vsa_protocol::ShardTelemetry| {
        format!(
            "shard=\"{}\",category=\"{}\"",
            label(&s.name),
            label(&s.category)
        )
    };
    for s in &t.shards {
        let _ = writeln!(out, "vsa_shard_items{{{}}} {}", shard_labels(s), s.items);
    }
    header(
        &mut out,
        "vsa_shard_memory_bytes",
        "Approximate memory per shard.",
        "gauge",
    );
    for s in &t.shards {
        let _ = writeln!(
            out,
            "vsa_shard_memory_bytes{{{}}} {}",
            shard_labels(s),
            s.memory_bytes
        );
    }
    header(
        &mut out,
        "vsa_shard_searches_total",
        "Searches a shard answered since it started.",
        "counter",
    );
    for s in &t.shards {
        let _ = writeln!(
            out,
            "vsa_shard_searches_total{{{}}} {}",
            shard_labels(s),
            s.searches
        );
    }
    header(
        &mut out,
        "vsa_shard_in_flight",
        "Searches sent to a shard and not answered yet.",
        "gauge",
    );
    for s in &t.shards {
        let _ = writeln!(
            out,
            "vsa_shard_in_flight{{{}}} {}",
            shard_labels(s),
            s.in_flight
        );
    }
    header(
        &mut out,
        "vsa_shard_search_duration_seconds",
        "A shard's part of a search, its queue included.",
        "histogram",
    );
    for s in &t.shards {
        histogram_series(
            &mut out,
            "vsa_shard_search_duration_seconds",
            &shard_labels(s),
            &s.latency,
        );
    }

    let p = &t.inference;
    gauge(
        &mut out,
        "vsa_inference_workers",
        "Model workers configured.",
        f64::from(p.workers),
    );
    gauge(
        &mut out,
        "vsa_inference_workers_alive",
        "Model workers alive.",
        f64::from(p.live_workers),
    );
    gauge(
        &mut out,
        "vsa_inference_queue_depth",
        "Images waiting for a model worker.",
        f64::from(p.queue_depth),
    );
    gauge(
        &mut out,
        "vsa_inference_queue_capacity",
        "Bound of the inference queue (full: busy).",
        f64::from(p.queue_capacity),
    );
    counter(
        &mut out,
        "vsa_inference_images_total",
        "Images embedded.",
        p.images as f64,
    );
    counter(
        &mut out,
        "vsa_inference_busy_total",
        "Inference jobs refused with busy.",
        p.busy_rejections as f64,
    );
    counter(
        &mut out,
        "vsa_inference_worker_restarts_total",
        "Model workers restarted.",
        p.restarts as f64,
    );
    header(
        &mut out,
        "vsa_inference_batch_size",
        "Images per model run (dynamic batching).",
        "histogram",
    );
    let mut cumulative = 0u64;
    for (i, c) in p.batch_sizes.iter().enumerate() {
        cumulative += c;
        let le = if i + 1 == p.batch_sizes.len() {
            "+Inf".to_string()
        } else {
            (1u64 << i).to_string()
        };
        let _ = writeln!(
            out,
            "vsa_inference_batch_size_bucket{{le=\"{le}\"}} {cumulative}"
        );
    }
    let _ = writeln!(out, "vsa_inference_batch_size_sum {}", p.images);
    let _ = writeln!(out, "vsa_inference_batch_size_count {}", p.batches);

    header(
        &mut out,
        "vsa_actor_restarts_total",
        "Restarts of each actor after a failure.",
        "counter",
    );
    for a in &t.actors {
        let _ = writeln!(
            out,
            "vsa_actor_restarts_total{{actor=\"{}\",role=\"{}\"}} {}",
            label(&a.name),
            label(&a.role),
            a.restarts
        );
    }
    header(
        &mut out,
        "vsa_rerank_weight",
        "Live reranking weights.",
        "gauge",
    );
    for (c, w) in &t.weights.components {
        let _ = writeln!(out, "vsa_rerank_weight{{component=\"{}\"}} {w}", label(c));
    }
    gauge(
        &mut out,
        "vsa_rerank_weights_version",
        "Version of the reranking weights.",
        t.weights.version as f64,
    );
    out
}

/// Reads the body (raw bytes, or the first file part of a multipart form) up to `max` bytes;
/// also returns a name for the query (the part's file name).
async fn read_image(
    req: &HttpRequest,
    mut payload: web::Payload,
    max: usize,
) -> Result<(Vec<u8>, String), Refusal> {
    let too_large = || {
        Refusal::new(
            ErrorCode::ImageTooLarge,
            format!("image over the limit of {max} bytes"),
        )
    };
    let content_type = req
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if content_type.starts_with("multipart/form-data") {
        let mut form = actix_multipart::Multipart::new(req.headers(), payload);
        while let Some(field) = form.next().await {
            let mut field = field
                .map_err(|e| Refusal::new(ErrorCode::BadRequest, format!("bad multipart: {e}")))?;
            let name = field
                .content_disposition()
                .and_then(|d| d.get_filename().map(str::to_string));
            let Some(name) = name else { continue };
            let mut bytes = Vec::new();
            while let Some(chunk) = field.next().await {
                let chunk = chunk.map_err(|e| {
                    Refusal::new(ErrorCode::BadRequest, format!("bad multipart: {e}"))
                })?;
                if bytes.len() + chunk.len() > max {
                    return Err(too_large());
                }
                bytes.extend_from_slice(&chunk);
            }
            return Ok((bytes, name));
        }
        return Err(Refusal::new(
            ErrorCode::BadRequest,
            "the form has no file part",
        ));
    }
    let mut bytes = Vec::new();
    while let Some(chunk) = payload.next().await {
        let chunk = chunk.map_err(|e| Refusal::new(ErrorCode::BadRequest, format!("body: {e}")))?;
        if bytes.len() + chunk.len() > max {
            return Err(too_large());
        }
        bytes.extend_from_slice(&chunk);
    }
    if bytes.is_empty() {
        return Err(Refusal::new(
            ErrorCode::InvalidImage,
            "the body holds no image",
        ));
    }
    Ok((bytes, "body".to_string()))
}

fn max_image(state: &HttpState) -> usize {
    state.shared.settings.limits.max_image_bytes
}

async fn search(
    state: State,
    req: HttpRequest,
    query: web::Query<Vec<(String, String)>>,
    payload: web::Payload,
) -> HttpResponse {
    if let Err(r) = authorize(&state, &req, "search") {
        return r.answer();
    }
    let mut k = 10u32;
    let mut explain = false;
    let mut category = None;
    let mut filter = Vec::new();
    let mut options = vsa_protocol::SearchOptions::default();
    for (key, value) in query.iter() {
        let bad = |m: String| error(ErrorCode::BadRequest, m);
        match key.as_str() {
            "k" => match value.parse::<u32>() {
                Ok(v) if v > 0 => k = v,
                _ => return bad(format!("k must be a positive integer, not {value:?}")),
            },
            "category" => category = Some(value.clone()),
            "box" => match parse_box(value) {
                Ok(b) => options.roi = Some(b),
                Err(e) => return bad(format!("box: {e}")),
            },
            "where" => match parse_where(value) {
                Ok(c) => filter.push(c),
                Err(e) => return error(ErrorCode::InvalidFilter, format!("where: {e}")),
            },
            "preset" => options.preset = Some(value.clone()),
            "explain" => explain = matches!(value.as_str(), "1" | "true" | "yes"),
            other => return bad(format!("unknown parameter {other:?}")),
        }
    }
    let (bytes, name) = match read_image(&req, payload, max_image(&state)).await {
        Ok(b) => b,
        Err(r) => return r.answer(),
    };
    options.explain = explain;
    let request = SearchRequest {
        query: QueryInput::Image(bytes),
        k,
        category,
        filter,
        options,
    };
    match run(&state, Request::Search(request)).await {
        Response::SearchResults(r) => match render_json(&name, &r, explain) {
            Ok(json) => HttpResponse::Ok()
                .content_type("application/json")
                .body(json),
            Err(e) => error(ErrorCode::Internal, e.to_string()),
        },
        other => reply_error(other),
    }
}

async fn upsert(
    state: State,
    req: HttpRequest,
    query: web::Query<Vec<(String, String)>>,
    payload: web::Payload,
) -> HttpResponse {
    if let Err(r) = authorize(&state, &req, "upsert") {
        return r.answer();
    }
    let (mut id, mut category) = (None, None);
    let (mut attributes, mut metadata) = (Vec::new(), Vec::new());
    for (key, value) in query.iter() {
        let pair = |v: &str| {
            v.split_once('=')
                .map(|(a, b)| (a.trim().to_string(), b.trim().to_string()))
        };
        match key.as_str() {
            "id" => id = Some(value.clone()),
            "category" => category = Some(value.clone()),
            "attr" | "meta" => {
                let Some(p) = pair(value) else {
                    return error(ErrorCode::BadRequest, format!("{key} must be KEY=VALUE"));
                };
                if key == "attr" {
                    attributes.push(p);
                } else {
                    metadata.push(p);
                }
            }
            other => {
                return error(
                    ErrorCode::BadRequest,
                    format!("unknown parameter {other:?}"),
                );
            }
        }
    }
    let (Some(id), Some(category)) = (id, category) else {
        return error(ErrorCode::BadRequest, "id and category are required");
    };
    let (bytes, _) = match read_image(&req, payload, max_image(&state)).await {
        Ok(b) => b,
        Err(r) => return r.answer(),
    };
    let request = UpsertRequest {
        id,
        content: ItemContent::Image(bytes),
        category,
        attributes,
        metadata,
    };
    match run(&state, Request::Upsert(request)).await {
        Response::Upserted(r) => HttpResponse::Ok()
            .json(serde_json::json!({"id": r.id, "seq": r.seq, "replaced": r.replaced})),
        other => reply_error(other),
    }
}

async fn delete(state: State, req: HttpRequest, id: web::Path<String>) -> HttpResponse {
    if let Err(r) = authorize(&state, &req, "delete") {
        return r.answer();
    }
    let request = Request::Delete(DeleteRequest {
        id: id.into_inner(),
    });
    match run(&state, request).await {
        Response::Deleted(r) => {
            HttpResponse::Ok().json(serde_json::to_value(&r).unwrap_or_default())
        }
        other => reply_error(other),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_follow_the_code_table() {
        assert_eq!(status_of(ErrorCode::BadFrame), StatusCode::BAD_REQUEST);
        assert_eq!(
            status_of(ErrorCode::ImageTooLarge),
            StatusCode::PAYLOAD_TOO_LARGE
        );
        assert_eq!(status_of(ErrorCode::UnknownItem), StatusCode::NOT_FOUND);
        assert_eq!(status_of(ErrorCode::Unauthorized), StatusCode::UNAUTHORIZED);
        assert_eq!(status_of(ErrorCode::Forbidden), StatusCode::FORBIDDEN);
        assert_eq!(status_of(ErrorCode::Busy), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(
            status_of(ErrorCode::RateLimited),
            StatusCode::TOO_MANY_REQUESTS
        );
        assert_eq!(
            status_of(ErrorCode::Internal),
            StatusCode::INTERNAL_SERVER_ERROR
        );
    }

    #[test]
    fn labels_are_escaped() {
        assert_eq!(label("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }
}
