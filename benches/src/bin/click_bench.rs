//! Click benchmark against the real `vsa serve` over TCP: click events absorbed per second
//! (4 pipelined clients, each click a distinct (query, shown item)), search latency with and
//! without that click load (and with the CTR weight on), memory per tracked item.
//!
//! Usage: `cargo run --release -p vsa-benches --bin click_bench -- [--items N] [--queries Q]
//! [--rate CLICKS_PER_S] [--vsa target/release/vsa]` after `./scripts/setup.sh`.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Instant;

use vsa_benches::appliance::{Res, Server, embedding, ingest, percentile, search_load};
use vsa_protocol::{AdminAction, ClickRequest, QueryInput, Request, Response, SearchRequest};

/// Sends `clicks` over `clients` pipelined connections, round after round until `stop` (or
/// once when `stop` is None); returns clicks/s of the first round.
fn firehose(
    server: &Server,
    clicks: Arc<Vec<ClickRequest>>,
    clients: usize,
    stop: Option<Arc<AtomicBool>>,
    rate: Option<f64>,
) -> Res<f64> {
    let sent = Arc::new(AtomicU64::new(0));
    let t = Instant::now();
    let handles: Vec<_> = (0..clients)
        .map(|c| {
            let client = server.client().map_err(|e| e.to_string());
            let (clicks, stop, sent) = (clicks.clone(), stop.clone(), sent.clone());
            std::thread::spawn(move || -> Result<f64, String> {
                let mut client = client?;
                let mut first_round = 0.0;
                let mut mine = 0u64;
                let paced = Instant::now();
                loop {
                    let mut in_flight = 0usize;
                    let mut it = clicks.iter().skip(c).step_by(clients);
                    let mut done = false;
                    while !done || in_flight > 0 {
                        if !done && in_flight < 64 {
                            match it.next() {
                                Some(k) => {
                                    if let Some(r) = rate {
                                        // Paced: this client's share of the target rate.
                                        mine += 1;
                                        let due = mine as f64 / (r / clients as f64);
                                        let now = paced.elapsed().as_secs_f64();
                                        if due > now {
                                            std::thread::sleep(std::time::Duration::from_secs_f64(
                                                due - now,
                                            ));
                                        }
                                    }
                                    client
                                        .send(Request::Click(k.clone()))
                                        .map_err(|e| e.to_string())?;
                                    in_flight += 1;
                                    continue;
                                }
                                None => done = true,
                            }
                            continue;
                        }
                        match client.recv().map_err(|e| e.to_string())? {
                            Response::Clicked(_) => {
                                in_flight -= 1;
                                sent.fetch_add(1, Ordering::Relaxed);
                            }
                            other => return Err(format!("click answered {other:?}")),
                        }
                    }
                    if first_round == 0.0 {
                        first_round = t.elapsed().as_secs_f64();
                    }
                    if stop.as_ref().is_none_or(|s| s.load(Ordering::Relaxed)) {
                        return Ok(first_round);
                    }
                }
            })
        })
        .collect();
    let mut slowest: f64 = 0.0;
    for h in handles {
        slowest = slowest.max(h.join().map_err(|_| "click thread panicked")??);
    }
    Ok(clicks.len() as f64 / slowest)
}

fn report(label: &str, lat: &[f64]) {
    println!(
        "| {label} | {} | {:.2} | {:.2} |",
        lat.len(),
        percentile(lat, 0.5),
        percentile(lat, 0.99)
    );
}

fn main() -> Res<()> {
    let mut items: u64 = 5000;
    let mut queries: u64 = 10_000;
    let mut vsa = PathBuf::from("target/release/vsa");
    let mut paced_rate = 50_000.0;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--items" => items = args.next().ok_or("--items N")?.parse()?,
            "--queries" => queries = args.next().ok_or("--queries N")?.parse()?,
            "--vsa" => vsa = args.next().ok_or("--vsa PATH")?.into(),
            "--rate" => paced_rate = args.next().ok_or("--rate CLICKS_PER_S")?.parse()?,
            other => return Err(format!("unknown argument {other}").into()),
        }
    }
    let dir = std::env::temp_dir().join(format!("vsa-click-bench-{}", std::process::id()));
    let server = Server::start(&vsa, &dir, "[server]\nin_memory = true\n")?;
    ingest(&server, 0, items, 4, 32)?;
    // The query log: `queries` searches, every shown (query, item, position) clicked once.
    let mut client = server.client()?;
    let mut clicks = Vec::new();
    for q in 0..queries {
        let r = client.search(SearchRequest::new(
            QueryInput::Embedding(embedding((q * 7919) % items)),
            10,
        ))?;
        for (pos, h) in r.hits.iter().enumerate() {
            clicks.push(ClickRequest {
                query_id: r.query_id,
                item_id: h.id.clone(),
                position: pos as u32,
            });
        }
    }
    // Interleave so consecutive clicks hit different queries and items.
    let n = clicks.len();
    let stride = 7919 % n.max(1);
    let clicks: Arc<Vec<ClickRequest>> = Arc::new(
        (0..n)
            .map(|i| clicks[(i * stride.max(1)) % n].clone())
            .collect(),
    );
    println!("## clicks ({items} items, {n} distinct clicks over {queries} queries)");
    search_load(&server, items, 2, 3.0)?; // warm-up
    println!("| search load (2 clients, 10 s) | queries | p50 ms | p99 ms |");
    println!("|---|---|---|---|");
    let base = search_load(&server, items, 2, 10.0)?;
    report("no clicks", &base);
    let rate = firehose(&server, clicks.clone(), 4, None, None)?;
    let stop = Arc::new(AtomicBool::new(false));
    let hose = {
        let (c, s) = (clicks.clone(), stop.clone());
        let srv = &server;
        std::thread::scope(|scope| -> Res<Vec<f64>> {
            let h = scope.spawn(move || {
                firehose(srv, c, 2, Some(s), Some(paced_rate)).map_err(|e| e.to_string())
            });
            let lat = search_load(srv, items, 2, 10.0)?;
            stop.store(true, Ordering::Relaxed);
            h.join().map_err(|_| "firehose panicked")??;
            Ok(lat)
        })?
    };
    report(
        &format!("with {paced_rate:.0} clicks/s (2 more clients, paced)"),
        &hose,
    );
    admin_weights(&server, 1.0)?;
    let weighted = search_load(&server, items, 2, 10.0)?;
    report(
        "no clicks, ctr weight 1 (CTR lookups per search)",
        &weighted,
    );
    let stats = server
        .client()?
        .admin(AdminAction::ClickStats { top: 3 })?
        .payload
        .unwrap_or_default();
    let stats: serde_json::Value = serde_json::from_str(&stats)?;
    println!(
        "\n- clicks absorbed: {rate:.0}/s (4 pipelined clients, first pass over {n} distinct clicks)"
    );
    println!(
        "- p99 with {paced_rate:.0} clicks/s vs without: {:+.0} %",
        (percentile(&hose, 0.99) / percentile(&base, 0.99) - 1.0) * 100.0
    );
    println!(
        "- tracked items: {}, memory {} B ({} B/item), clicks {}, impressions {}",
        stats["items_tracked"],
        stats["memory_bytes"],
        stats["bytes_per_item"],
        stats["clicks"],
        stats["impressions"]
    );
    drop(server);
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

fn admin_weights(server: &Server, ctr: f32) -> Res<()> {
    server
        .client()?
        .admin(AdminAction::SetRerankWeights(vec![("ctr".into(), ctr)]))?;
    Ok(())
}
