//! `vsa bench-load`: a load generator on loopback. N clients send searches (photos from a
//! folder, round-robin) for a bounded number of requests and a bounded time, each at an
//! optional paced rate; it reports what came back (ok, `busy`/`rate_limited`, errors), the
//! achieved rate, client-side latency of admitted requests and of refusals, and the server's
//! resident memory before, at its peak during, and after the run.
//!
//! Latency is measured from each request's *scheduled* send time when a rate is set, so a
//! server that stalls its clients cannot hide the wait (no coordinated omission).

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Args;
use vsa_protocol::{ErrorCode, ProtocolError, QueryInput, SearchRequest};

use super::client_common::{self, ConnArgs};

/// Arguments of `vsa bench-load`.
#[derive(Debug, Clone, Args)]
pub struct BenchLoadArgs {
    /// Server address and session token.
    #[command(flatten)]
    pub conn: ConnArgs,
    /// Query photos: a folder (its .jpg/.jpeg/.png/.webp files) or one file.
    #[arg(long)]
    pub images: PathBuf,
    /// Concurrent clients (one connection each).
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u32).range(1..=1024))]
    pub clients: u32,
    /// Most requests in all (the run ends at this count or at the duration).
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u64).range(1..=10_000_000))]
    pub requests: u64,
    /// Longest run, in seconds.
    #[arg(long, default_value_t = 30.0)]
    pub duration_s: f64,
    /// Target rate for all clients together (requests/s); 0: each client sends as soon as
    /// its previous answer arrived.
    #[arg(long, default_value_t = 0.0)]
    pub rate: f64,
    /// Hits per search.
    #[arg(short, long, default_value_t = 10)]
    pub k: u32,
    /// Query preset (e.g. `fast`, `best`).
    #[arg(long)]
    pub preset: Option<String>,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Default)]
struct Tally {
    /// From the scheduled send time (µs).
    ok: Vec<u64>,
    refused: Vec<u64>,
    /// From the actual send (µs): the server's answer time as the client sees it.
    ok_service: Vec<u64>,
    refused_service: Vec<u64>,
    errors: u64,
    last_error: Option<String>,
}

/// Runs `vsa bench-load`.
pub fn run(args: BenchLoadArgs) -> anyhow::Result<i32> {
    if !(args.duration_s > 0.0 && args.duration_s <= 3600.0) {
        anyhow::bail!("--duration-s must be in (0, 3600]");
    }
    if !args.rate.is_finite() || args.rate < 0.0 {
        anyhow::bail!("--rate must be 0 or positive");
    }
    let images = Arc::new(load_images(&args.images)?);
    let report = client_common::block_on(drive(args.clone(), images))??;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print_report(&report);
    }
    Ok(0)
}

fn load_images(path: &std::path::Path) -> anyhow::Result<Vec<Vec<u8>>> {
    let files: Vec<PathBuf> = if path.is_dir() {
        let mut v: Vec<PathBuf> = std::fs::read_dir(path)
            .with_context(|| format!("reading {}", path.display()))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| {
                p.extension().and_then(|e| e.to_str()).is_some_and(|e| {
                    matches!(
                        e.to_ascii_lowercase().as_str(),
                        "jpg" | "jpeg" | "png" | "webp"
                    )
                })
            })
            .collect();
        v.sort();
        v
    } else {
        vec![path.to_path_buf()]
    };
    if files.is_empty() {
        anyhow::bail!("no images in {}", path.display());
    }
    files
        .iter()
        .take(512)
        .map(|f| std::fs::read(f).with_context(|| format!("reading {}", f.display())))
        .collect()
}

async fn rss(addr: &str, conn: &ConnArgs) -> Option<u64> {
    let mut c = client_common::connect(addr, conn.options("bench-load"))
        .await
        .ok()?;
    c.metrics().await.ok().map(|t| t.memory_rss_bytes)
}

async fn drive(
    args: BenchLoadArgs,
    images: Arc<Vec<Vec<u8>>>,
) -> anyhow::Result<serde_json::Value> {
    let addr = args.conn.addr.clone();
    let rss_before = rss(&addr, &args.conn).await;
    let started = Instant::now();
    let deadline = started + Duration::from_secs_f64(args.duration_s);
    let sent = Arc::new(AtomicU64::new(0));
    let done = Arc::new(AtomicBool::new(false));
    let peak = Arc::new(AtomicU64::new(rss_before.unwrap_or(0)));
    // Memory while it runs: sampled every 250 ms.
    let sampler = {
        let (addr, conn, done, peak) =
            (addr.clone(), args.conn.clone(), done.clone(), peak.clone());
        tokio::spawn(async move {
            while !done.load(Ordering::Relaxed) {
                if let Some(r) = rss(&addr, &conn).await {
                    peak.fetch_max(r, Ordering::Relaxed);
                }
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
        })
    };
    let per_client_interval =
        (args.rate > 0.0).then(|| Duration::from_secs_f64(f64::from(args.clients) / args.rate));
    let mut tasks = Vec::new();
    for c in 0..args.clients {
        let (args, images, sent) = (args.clone(), images.clone(), sent.clone());
        tasks.push(tokio::spawn(async move {
            let mut tally = Tally::default();
            let mut client = match client_common::connect(
                &args.conn.addr,
                args.conn.options("bench-load"),
            )
            .await
            {
                Ok(c) => c,
                Err(e) => {
                    tally.errors += 1;
                    tally.last_error = Some(e.to_string());
                    return tally;
                }
            };
            // Spread the clients' first sends over one interval.
            let mut next = Instant::now()
                + per_client_interval.map_or(Duration::ZERO, |i| {
                    i.mul_f64(f64::from(c) / f64::from(args.clients))
                });
            let mut i = c as usize;
            loop {
                if Instant::now() >= deadline {
                    break;
                }
                if sent.fetch_add(1, Ordering::Relaxed) >= args.requests {
                    break;
                }
                if per_client_interval.is_some() {
                    tokio::time::sleep_until(next.into()).await;
                }
                let scheduled = if per_client_interval.is_some() {
                    next
                } else {
                    Instant::now()
                };
                let mut request =
                    SearchRequest::new(QueryInput::Image(images[i % images.len()].clone()), args.k);
                request.options.preset.clone_from(&args.preset);
                i += 1;
                let sent_at = Instant::now();
                let outcome = client.search(request).await;
                let us = u64::try_from(scheduled.elapsed().as_micros()).unwrap_or(u64::MAX);
                let service = u64::try_from(sent_at.elapsed().as_micros()).unwrap_or(u64::MAX);
                match outcome {
                    Ok(_) => {
                        tally.ok.push(us);
                        tally.ok_service.push(service);
                    }
                    Err(ProtocolError::Server(e))
                        if matches!(e.code, ErrorCode::Busy | ErrorCode::RateLimited) =>
                    {
                        tally.refused.push(us);
                        tally.refused_service.push(service);
                    }
                    Err(e) => {
                        tally.errors += 1;
                        tally.last_error = Some(client_common::plain(&e));
                        if !client.is_usable() {
                            match client_common::connect(
                                &args.conn.addr,
                                args.conn.options("bench-load"),
                            )
                            .await
                            {
                                Ok(c) => client = c,
                                Err(_) => break,
                            }
                        }
                    }
                }
                if let Some(iv) = per_client_interval {
                    next += iv;
                }
            }
            tally
        }));
    }
    let mut all = Tally::default();
    for t in tasks {
        let t = t.await.context("a client task failed")?;
        all.ok.extend(t.ok);
        all.refused.extend(t.refused);
        all.ok_service.extend(t.ok_service);
        all.refused_service.extend(t.refused_service);
        all.errors += t.errors;
        if t.last_error.is_some() {
            all.last_error = t.last_error;
        }
    }
    let wall = started.elapsed().as_secs_f64();
    done.store(true, Ordering::Relaxed);
    let _ = sampler.await;
    let rss_after = rss(&addr, &args.conn).await;
    Ok(report(
        &args,
        &mut all,
        wall,
        rss_before,
        peak.load(Ordering::Relaxed),
        rss_after,
    ))
}

fn pct(sorted: &[u64], q: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    let i = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len()) - 1;
    Some(sorted[i] as f64 / 1000.0)
}

fn report(
    args: &BenchLoadArgs,
    t: &mut Tally,
    wall: f64,
    rss_before: Option<u64>,
    rss_peak: u64,
    rss_after: Option<u64>,
) -> serde_json::Value {
    for v in [
        &mut t.ok,
        &mut t.refused,
        &mut t.ok_service,
        &mut t.refused_service,
    ] {
        v.sort_unstable();
    }
    let total = t.ok.len() + t.refused.len() + t.errors as usize;
    let mib = |b: Option<u64>| b.map(|b| b as f64 / (1 << 20) as f64);
    serde_json::json!({
        "clients": args.clients,
        "target_rate": args.rate,
        "wall_s": wall,
        "requests": total,
        "ok": t.ok.len(),
        "refused_busy": t.refused.len(),
        "errors": t.errors,
        "last_error": t.last_error,
        "offered_per_s": total as f64 / wall,
        "ok_per_s": t.ok.len() as f64 / wall,
        "ok_latency_ms": {"p50": pct(&t.ok, 0.5), "p99": pct(&t.ok, 0.99), "max": pct(&t.ok, 1.0)},
        "ok_service_ms": {"p50": pct(&t.ok_service, 0.5), "p99": pct(&t.ok_service, 0.99)},
        "busy_latency_ms": {"p50": pct(&t.refused, 0.5), "p99": pct(&t.refused, 0.99)},
        "busy_service_ms": {"p50": pct(&t.refused_service, 0.5), "p99": pct(&t.refused_service, 0.99)},
        "server_rss_mib": {"before": mib(rss_before), "peak": mib(Some(rss_peak)), "after": mib(rss_after)},
    })
}

fn print_report(r: &serde_json::Value) {
    let f = |v: &serde_json::Value| v.as_f64().map_or("–".to_string(), |x| format!("{x:.1}"));
    println!(
        "{} clients, {:.1} s: {} requests ({} /s offered), {} ok ({} /s), {} busy, {} errors",
        r["clients"],
        r["wall_s"].as_f64().unwrap_or(0.0),
        r["requests"],
        f(&r["offered_per_s"]),
        r["ok"],
        f(&r["ok_per_s"]),
        r["refused_busy"],
        r["errors"]
    );
    println!(
        "admitted: p50 {} ms, p99 {} ms, max {} ms from schedule; p50 {} ms, p99 {} ms from send",
        f(&r["ok_latency_ms"]["p50"]),
        f(&r["ok_latency_ms"]["p99"]),
        f(&r["ok_latency_ms"]["max"]),
        f(&r["ok_service_ms"]["p50"]),
        f(&r["ok_service_ms"]["p99"])
    );
    println!(
        "busy answered in p50 {} ms, p99 {} ms from send",
        f(&r["busy_service_ms"]["p50"]),
        f(&r["busy_service_ms"]["p99"])
    );
    println!(
        "server memory (RSS): {} MiB before, {} MiB peak, {} MiB after",
        f(&r["server_rss_mib"]["before"]),
        f(&r["server_rss_mib"]["peak"]),
        f(&r["server_rss_mib"]["after"])
    );
    if let Some(e) = r["last_error"].as_str() {
        println!("last error: {e}");
    }
}
