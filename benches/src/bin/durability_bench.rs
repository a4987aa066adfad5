//! Durability benchmark against the real `vsa serve` over TCP (embedding upserts, so the model
//! is not the bottleneck and the log is what is measured):
//!
//! 1. ingest throughput with `fsync = never | interval | always` (group commit) and with no
//!    data folder at all;
//! 2. at `--items N`: snapshot time, recovery time after `kill -9` from the log alone and from
//!    a snapshot (process start → listening);
//! 3. search latency (p50/p99) of one search load during which snapshots alternate with quiet
//!    spells, split by whether a snapshot was being written when each search started.
//!
//! Usage: `cargo run --release -p vsa-benches --bin durability_bench -- [--items N]
//! [--ingest-items M] [--vsa target/release/vsa] [--interleave-s 150] [--quiet-s 12]
//! [--rounds 3] [--window 32]` (`--rounds 0` skips the ingest runs, `--items 0` the rest;
//! `--window` is the requests in flight per ingest client). Needs `./scripts/setup.sh` (the
//! server loads the model at start).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use vsa_benches::appliance::{
    Res, Server, embedding, ingest, percentile, search_load, search_load_timed, split_by_windows,
    upsert,
};
use vsa_protocol::{AdminAction, QueryInput, Response, SearchRequest};

fn main() -> Res<()> {
    let mut items: u64 = 1_000_000;
    let mut ingest_items: u64 = 20_000;
    let mut vsa = PathBuf::from("target/release/vsa");
    let mut interleave_s: f64 = 150.0;
    let mut quiet_s: f64 = 12.0;
    let mut rounds: usize = 3;
    let mut window: usize = 32;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--items" => items = args.next().ok_or("--items N")?.parse()?,
            "--ingest-items" => ingest_items = args.next().ok_or("--ingest-items N")?.parse()?,
            "--vsa" => vsa = args.next().ok_or("--vsa PATH")?.into(),
            "--interleave-s" => interleave_s = args.next().ok_or("--interleave-s S")?.parse()?,
            "--quiet-s" => quiet_s = args.next().ok_or("--quiet-s S")?.parse()?,
            "--rounds" => rounds = args.next().ok_or("--rounds N")?.parse()?,
            "--window" => window = args.next().ok_or("--window N")?.parse()?,
            other => return Err(format!("unknown argument {other}").into()),
        }
    }
    let root = std::env::temp_dir().join(format!("vsa-durability-bench-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    // No encoder refits during the ingest runs: the log is what is measured.
    let quiet_index = "[index]\nfit_threshold = 1000000000\n";

    if rounds > 0 {
        ingest_policies(&vsa, &root, ingest_items, rounds, window, quiet_index)?;
    }

    if items == 0 {
        let _ = std::fs::remove_dir_all(&root);
        return Ok(());
    }
    println!("\n## recovery and snapshots at {items} items");
    let dir = root.join("big");
    let toml = format!(
        "[storage]\nfsync = \"never\"\ncheckpoint_interval_s = 0\ncheckpoint_log_bytes = 0\n\n[index]\nfit_threshold = {items}\n"
    );
    let server = Server::start(&vsa, &dir, &toml)?;
    let rate = ingest(&server, 0, items, 4, 32)?;
    println!("- ingest: {rate:.0} items/s");
    let mut admin = server.client()?;
    // Wait for the encoder fitted at `items`: until then searches are exact (seconds each at
    // 1M); afterwards they go through the binary index.
    let t = Instant::now();
    loop {
        let q = Instant::now();
        admin.search(SearchRequest::new(QueryInput::Embedding(embedding(7)), 10))?;
        if q.elapsed() < Duration::from_millis(200) || t.elapsed() > Duration::from_secs(900) {
            break;
        }
        std::thread::sleep(Duration::from_secs(2));
    }
    println!(
        "- binary index ready {:.1} s after the ingest",
        t.elapsed().as_secs_f64()
    );
    let log_bytes = dir_size(&dir.join("data/wal"));
    println!(
        "- log on disk: {:.1} MB ({:.0} B/item)",
        log_bytes as f64 / 1e6,
        log_bytes as f64 / items as f64
    );
    search_load(&server, items, 2, 3.0)?; // warm-up
    let base = search_load(&server, items, 2, 10.0)?;
    println!(
        "- search, 2 clients, no snapshot: {} queries, p50 {:.2} ms, p99 {:.2} ms",
        base.len(),
        percentile(&base, 0.5),
        percentile(&base, 0.99)
    );
    // Snapshots interleaved with quiet spells while one search load runs throughout: each
    // search is counted as "during" or "between" by when it started, so a drift of the shared
    // machine's load over the run moves both sides alike.
    let origin = Instant::now();
    let stop = Arc::new(AtomicBool::new(false));
    let snapper = {
        let stop = stop.clone();
        let mut c = server.client()?;
        std::thread::spawn(move || -> Result<Vec<(f64, f64)>, String> {
            let mut windows = Vec::new();
            let mut n = u64::MAX / 2;
            loop {
                let quiet = Instant::now();
                while quiet.elapsed() < Duration::from_secs_f64(quiet_s) {
                    if stop.load(Ordering::Relaxed) {
                        return Ok(windows);
                    }
                    std::thread::sleep(Duration::from_millis(50));
                }
                let Response::Upserted(_) = c.call(upsert(n)).map_err(|e| e.to_string())? else {
                    return Err("upsert failed".into());
                };
                n += 1;
                let a = origin.elapsed().as_secs_f64();
                c.admin(AdminAction::Snapshot).map_err(|e| e.to_string())?;
                windows.push((a, origin.elapsed().as_secs_f64()));
                if stop.load(Ordering::Relaxed) {
                    return Ok(windows);
                }
            }
        })
    };
    let searches = search_load_timed(&server, items, 2, interleave_s, origin)?;
    stop.store(true, Ordering::Relaxed);
    let windows = snapper.join().map_err(|_| "snapshot thread panicked")??;
    let (during, between) = split_by_windows(&searches, &windows);
    let snap_s: Vec<f64> = windows.iter().map(|(a, b)| b - a).collect();
    println!(
        "- search, 2 clients, {interleave_s:.0} s, snapshots started after {quiet_s:.0} s quiet spells: {} snapshots, {:.2} s each",
        windows.len(),
        snap_s.iter().sum::<f64>() / snap_s.len().max(1) as f64
    );
    println!(
        "  - between snapshots: {} queries, p50 {:.2} ms, p99 {:.2} ms",
        between.len(),
        percentile(&between, 0.5),
        percentile(&between, 0.99)
    );
    println!(
        "  - while a snapshot is written: {} queries, p50 {:.2} ms, p99 {:.2} ms ({:+.0} % p99 vs between, {:+.0} % vs the run before)",
        during.len(),
        percentile(&during, 0.5),
        percentile(&during, 0.99),
        (percentile(&during, 0.99) / percentile(&between, 0.99) - 1.0) * 100.0,
        (percentile(&during, 0.99) / percentile(&base, 0.99) - 1.0) * 100.0,
    );
    let snap_bytes = dir_size(&dir.join("data/snapshots"));
    println!(
        "- snapshots on disk: {:.1} MB (two checkpoints kept)",
        snap_bytes as f64 / 1e6
    );
    drop(admin);
    server.kill9();
    let server = Server::start(&vsa, &dir, &toml)?;
    let n = server.client()?.stats()?.items;
    println!(
        "- kill -9, restart from the snapshot + log tail: listening after {:.2} s with {n} items",
        server.started_in.as_secs_f64()
    );
    server.kill9();
    // The log alone: a second catalogue that never had a snapshot.
    let _ = std::fs::remove_dir_all(&dir);
    let dir2 = root.join("logonly");
    let server = Server::start(&vsa, &dir2, &toml)?;
    ingest(&server, 0, items, 4, 32)?;
    server.kill9();
    let server = Server::start(&vsa, &dir2, &toml)?;
    let n = server.client()?.stats()?.items;
    println!(
        "- kill -9, restart from the log alone (no snapshot): listening after {:.2} s with {n} items",
        server.started_in.as_secs_f64()
    );
    drop(server);
    let _ = std::fs::remove_dir_all(&root);
    Ok(())
}

/// Ingest throughput under each storage policy, `rounds` times in turn (so a change in the
/// shared machine's load touches every policy), each from a fresh server: prints each round
/// and the best of each policy, and the ratios to `fsync = never` of the same round and best.
fn ingest_policies(
    vsa: &Path,
    root: &Path,
    items: u64,
    rounds: usize,
    window: usize,
    extra: &str,
) -> Res<()> {
    let policies = [
        ("in memory (no log)", "[server]\nin_memory = true\n"),
        ("fsync = never", "[storage]\nfsync = \"never\"\n"),
        (
            "fsync = interval (100 ms)",
            "[storage]\nfsync = \"interval\"\n",
        ),
        (
            "fsync = always (group commit)",
            "[storage]\nfsync = \"always\"\n",
        ),
    ];
    println!(
        "## ingest throughput ({items} embedding upserts, 4 clients × {window} in flight, {rounds} rounds in turn)"
    );
    let mut rates = vec![Vec::new(); policies.len()];
    for _ in 0..rounds {
        for (i, (label, toml)) in policies.iter().enumerate() {
            let dir = root.join(label.replace([' ', '=', '(', ')'], "_"));
            let server = Server::start(vsa, &dir, &format!("{toml}{extra}"))?;
            ingest(&server, 0, 1000, 4, window)?; // warm-up
            rates[i].push(ingest(&server, 1000, 1000 + items, 4, window)?);
            drop(server);
            let _ = std::fs::remove_dir_all(&dir);
        }
    }
    let best = |r: &[f64]| r.iter().copied().fold(f64::NAN, f64::max);
    let never = &rates[1];
    println!(
        "| storage | items/s, each round | vs never, each round | best | best vs best never |"
    );
    println!("|---|---|---|---|---|");
    for ((label, _), r) in policies.iter().zip(&rates) {
        let each: Vec<String> = r.iter().map(|v| format!("{v:.0}")).collect();
        let ratio: Vec<String> = r
            .iter()
            .zip(never)
            .map(|(v, n)| format!("{:.2}", v / n))
            .collect();
        println!(
            "| {label} | {} | {} | {:.0} | {:.2} |",
            each.join(" / "),
            ratio.join(" / "),
            best(r),
            best(r) / best(never)
        );
    }
    Ok(())
}

fn dir_size(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .map(|it| {
            it.flatten()
                .filter_map(|e| e.metadata().ok())
                .map(|m| m.len())
                .sum()
        })
        .unwrap_or(0)
}
