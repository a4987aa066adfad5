//! Durability benchmark against the real `vsa serve` over TCP (embedding upserts, so the model
//! is not the bottleneck and the log is what is measured):
//!
//! 1. ingest throughput with `fsync = never | interval | always` (group commit) and with no
//!    data folder at all;
//! 2. at `--items N`: snapshot time, recovery time after `kill -9` from the log alone and from
//!    a snapshot (process start → listening);
//! 3. search latency (p50/p99) with and without snapshots being written meanwhile.
//!
//! Usage: `cargo run --release -p vsa-benches --bin durability_bench -- [--items N]
//! [--ingest-items M] [--vsa target/release/vsa]`. Needs `./scripts/setup.sh` (the server loads
//! the model at start).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use vsa_benches::appliance::{Res, Server, embedding, ingest, percentile, search_load, upsert};
use vsa_protocol::{AdminAction, QueryInput, Response, SearchRequest};

fn main() -> Res<()> {
    let mut items: u64 = 1_000_000;
    let mut ingest_items: u64 = 20_000;
    let mut vsa = PathBuf::from("target/release/vsa");
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--items" => items = args.next().ok_or("--items N")?.parse()?,
            "--ingest-items" => ingest_items = args.next().ok_or("--ingest-items N")?.parse()?,
            "--vsa" => vsa = args.next().ok_or("--vsa PATH")?.into(),
            other => return Err(format!("unknown argument {other}").into()),
        }
    }
    let root = std::env::temp_dir().join(format!("vsa-durability-bench-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    // No encoder refits during the ingest runs: the log is what is measured.
    let quiet_index = "[index]\nfit_threshold = 1000000000\n";

    println!("## ingest throughput ({ingest_items} embedding upserts, 4 clients × 32 in flight)");
    println!("| storage | items/s | vs fsync=never |");
    println!("|---|---|---|");
    let mut rows = Vec::new();
    for (label, toml) in [
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
    ] {
        let dir = root.join(label.replace([' ', '=', '(', ')'], "_"));
        let server = Server::start(&vsa, &dir, &format!("{toml}{quiet_index}"))?;
        ingest(&server, 0, 1000, 4, 32)?; // warm-up
        let rate = ingest(&server, 1000, 1000 + ingest_items, 4, 32)?;
        rows.push((label, rate));
        drop(server);
        let _ = std::fs::remove_dir_all(&dir);
    }
    let never = rows
        .iter()
        .find(|(l, _)| l.starts_with("fsync = never"))
        .map_or(f64::NAN, |r| r.1);
    for (label, rate) in rows {
        println!("| {label} | {rate:.0} | {:.2} |", rate / never);
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
    // Snapshots written back to back while the same load runs.
    let stop = Arc::new(AtomicBool::new(false));
    let snapper = {
        let stop = stop.clone();
        let mut c = server.client()?;
        std::thread::spawn(move || -> Result<Vec<f64>, String> {
            let mut times = Vec::new();
            let mut n = u64::MAX / 2;
            while !stop.load(Ordering::Relaxed) {
                let Response::Upserted(_) = c.call(upsert(n)).map_err(|e| e.to_string())? else {
                    return Err("upsert failed".into());
                };
                n += 1;
                let t = Instant::now();
                c.admin(AdminAction::Snapshot).map_err(|e| e.to_string())?;
                times.push(t.elapsed().as_secs_f64());
            }
            Ok(times)
        })
    };
    let during = search_load(&server, items, 2, 10.0)?;
    stop.store(true, Ordering::Relaxed);
    let snaps = snapper.join().map_err(|_| "snapshot thread panicked")??;
    println!(
        "- search, 2 clients, snapshots written back to back: {} queries, p50 {:.2} ms, p99 {:.2} ms ({:+.0} % p99); {} snapshots, {:.2} s each",
        during.len(),
        percentile(&during, 0.5),
        percentile(&during, 0.99),
        (percentile(&during, 0.99) / percentile(&base, 0.99) - 1.0) * 100.0,
        snaps.len(),
        snaps.iter().sum::<f64>() / snaps.len().max(1) as f64
    );
    let after = search_load(&server, items, 2, 10.0)?;
    println!(
        "- search, 2 clients, no snapshot again: {} queries, p50 {:.2} ms, p99 {:.2} ms",
        after.len(),
        percentile(&after, 0.5),
        percentile(&after, 0.99)
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
