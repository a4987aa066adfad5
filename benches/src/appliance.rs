//! Running the real `vsa serve` for benchmarks that drive it over TCP: start it on a free port
//! with a config, connect clients, measure search latency.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use vsa_protocol::{
    BlockingClient, ClientOptions, ItemContent, QueryInput, Request, Response, SearchRequest,
    UpsertRequest,
};

/// Result of the benchmark drivers.
pub type Res<T> = Result<T, Box<dyn std::error::Error>>;

/// Embedding size of the bundled model.
pub const DIM: usize = 1280;
/// The admin token the servers are started with.
pub const TOKEN: &str = "durability-bench-token";

/// A deterministic pseudo-random vector per item number.
pub fn embedding(n: u64) -> Vec<f32> {
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

/// An embedding upsert of item `n` (category `c{n % 8}`).
pub fn upsert(n: u64) -> Request {
    Request::Upsert(UpsertRequest {
        id: format!("item-{n:08}"),
        content: ItemContent::Embedding(embedding(n)),
        category: format!("c{}", n % 8),
        attributes: vec![],
        metadata: vec![],
    })
}

/// A `vsa serve` child process (killed on drop).
pub struct Server {
    child: Child,
    /// Where it listens.
    pub addr: SocketAddr,
    /// From spawn to listening (includes boot recovery).
    pub started_in: Duration,
}

impl Server {
    /// Starts it with its data in `dir` and `toml` appended to the config.
    pub fn start(vsa: &Path, dir: &Path, toml: &str) -> Res<Server> {
        std::fs::create_dir_all(dir)?;
        let config = dir.join("vsa.toml");
        std::fs::write(
            &config,
            format!("[admin]\ntoken = \"{TOKEN}\"\n\n[pool]\nworkers = 1\n\n{toml}\n"),
        )?;
        let t = Instant::now();
        let mut child = Command::new(vsa)
            .args(["serve", "--listen", "127.0.0.1:0", "--config"])
            .arg(&config)
            .arg("--data-dir")
            .arg(dir.join("data"))
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()?;
        let mut out = BufReader::new(child.stdout.take().ok_or("no stdout")?);
        let mut line = String::new();
        let addr = loop {
            line.clear();
            if out.read_line(&mut line)? == 0 {
                return Err("vsa serve exited before listening".into());
            }
            if let Some(a) = line.trim().strip_prefix("vsa listening on ") {
                break a.parse()?;
            }
        };
        let started_in = t.elapsed();
        std::thread::spawn(move || {
            let mut sink = String::new();
            let _ = std::io::Read::read_to_string(&mut out, &mut sink);
        });
        Ok(Server {
            child,
            addr,
            started_in,
        })
    }

    /// A client with the admin token.
    pub fn client(&self) -> Res<BlockingClient> {
        Ok(BlockingClient::connect_with(
            self.addr,
            ClientOptions {
                admin_token: Some(TOKEN.into()),
                request_timeout: Some(Duration::from_secs(600)),
                ..ClientOptions::default()
            },
        )?)
    }

    /// `kill -9`.
    pub fn kill9(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The `p` quantile of sorted values.
pub fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

/// Search latencies (ms, sorted) from `clients` threads for `secs`, over items `[0, n)`.
pub fn search_load(server: &Server, n: u64, clients: u64, secs: f64) -> Res<Vec<f64>> {
    let mut all: Vec<f64> = search_load_timed(server, n, clients, secs, Instant::now())?
        .into_iter()
        .map(|(_, ms)| ms)
        .collect();
    all.sort_by(f64::total_cmp);
    Ok(all)
}

/// Like [`search_load`], each search as (its start in seconds after `origin`, its latency in
/// ms), in no particular order: for sorting searches by what else ran when they started.
pub fn search_load_timed(
    server: &Server,
    n: u64,
    clients: u64,
    secs: f64,
    origin: Instant,
) -> Res<Vec<(f64, f64)>> {
    let end = Instant::now() + Duration::from_secs_f64(secs);
    per_client(server, clients, move |c, client| {
        let mut lat = Vec::new();
        let mut q = c * 7919;
        while Instant::now() < end {
            let t = Instant::now();
            client
                .search(SearchRequest::new(
                    QueryInput::Embedding(embedding(q % n)),
                    10,
                ))
                .map_err(|e| e.to_string())?;
            lat.push((
                t.duration_since(origin).as_secs_f64(),
                t.elapsed().as_secs_f64() * 1000.0,
            ));
            q += 104_729;
        }
        Ok(lat)
    })
}

/// Runs `work(client index, its connection)` on `clients` threads, one connection each, and
/// gathers what they return.
fn per_client<T: Send + 'static>(
    server: &Server,
    clients: u64,
    work: impl Fn(u64, &mut BlockingClient) -> Result<Vec<T>, String> + Send + Sync + Copy + 'static,
) -> Res<Vec<T>> {
    let handles: Vec<_> = (0..clients)
        .map(|c| {
            let client = server.client().map_err(|e| e.to_string());
            std::thread::spawn(move || work(c, &mut client?))
        })
        .collect();
    let mut all = Vec::new();
    for h in handles {
        all.extend(h.join().map_err(|_| "search thread panicked")??);
    }
    Ok(all)
}

/// An open-loop search load: `rate` searches/s in all, on a fixed schedule over `clients`
/// connections (each takes every `clients`-th slot), for `secs`; each search as (its
/// scheduled start in seconds after `origin`, its latency in ms counted from that scheduled
/// start, so a search that had to wait for the one before it on its connection counts the
/// wait: no coordinated omission). Unlike [`search_load`], the load does not back off when
/// the server slows down — the way shoppers' requests arrive.
pub fn search_load_paced(
    server: &Server,
    n: u64,
    clients: u64,
    secs: f64,
    origin: Instant,
    rate: f64,
) -> Res<Vec<(f64, f64)>> {
    let start = Instant::now();
    let total = (secs * rate) as u64;
    per_client(server, clients, move |c, client| {
        let mut lat = Vec::new();
        for slot in (c..total).step_by(clients as usize) {
            let due = start + Duration::from_secs_f64(slot as f64 / rate);
            if let Some(wait) = due.checked_duration_since(Instant::now()) {
                std::thread::sleep(wait);
            }
            client
                .search(SearchRequest::new(
                    QueryInput::Embedding(embedding((slot * 7919) % n)),
                    10,
                ))
                .map_err(|e| e.to_string())?;
            lat.push((
                due.duration_since(origin).as_secs_f64(),
                due.elapsed().as_secs_f64() * 1000.0,
            ));
        }
        Ok(lat)
    })
}

/// Splits timed searches (from [`search_load_timed`]) into those that started inside one of
/// `windows` (start, end in seconds after the same origin) and the others; both sorted (ms).
pub fn split_by_windows(searches: &[(f64, f64)], windows: &[(f64, f64)]) -> (Vec<f64>, Vec<f64>) {
    let (mut inside, mut outside) = (Vec::new(), Vec::new());
    for &(at, ms) in searches {
        if windows.iter().any(|&(a, b)| at >= a && at < b) {
            inside.push(ms);
        } else {
            outside.push(ms);
        }
    }
    inside.sort_by(f64::total_cmp);
    outside.sort_by(f64::total_cmp);
    (inside, outside)
}

/// Searches grouped by the window they started in (`windows`: start, end in seconds after the
/// same origin as the searches'), each group sorted (ms); searches outside every window are
/// left out.
pub fn group_by_windows(searches: &[(f64, f64)], windows: &[(f64, f64)]) -> Vec<Vec<f64>> {
    let mut groups = vec![Vec::new(); windows.len()];
    for &(at, ms) in searches {
        if let Some(w) = windows.iter().position(|&(a, b)| at >= a && at < b) {
            groups[w].push(ms);
        }
    }
    for g in &mut groups {
        g.sort_by(f64::total_cmp);
    }
    groups
}

/// The latencies of several windows in one sorted list.
pub fn pooled<W: AsRef<[f64]>>(windows: &[W]) -> Vec<f64> {
    let mut all: Vec<f64> = windows
        .iter()
        .flat_map(|w| w.as_ref().iter().copied())
        .collect();
    all.sort_by(f64::total_cmp);
    all
}

/// The change (%) of a percentile `q` of the searches in the `on` windows over the same
/// percentile in the `off` windows, with a 90 % bootstrap interval that resamples whole
/// windows (each round draws as many windows as each side has, with replacement): a window is
/// the unit that the shared machine's noise moves together, so the interval says how far the
/// change could be the machine's doing. Returns (change, low, high); NaN without windows.
pub fn change_interval(on: &[Vec<f64>], off: &[Vec<f64>], q: f64) -> (f64, f64, f64) {
    let change = |a: &[f64], b: &[f64]| (percentile(a, q) / percentile(b, q) - 1.0) * 100.0;
    if on.is_empty() || off.is_empty() {
        return (f64::NAN, f64::NAN, f64::NAN);
    }
    let point = change(
        &pooled(&on.iter().collect::<Vec<_>>()),
        &pooled(&off.iter().collect::<Vec<_>>()),
    );
    let mut rng = crate::SplitMix(0x5EED);
    let mut rounds: Vec<f64> = (0..1000)
        .map(|_| {
            let a: Vec<&Vec<f64>> = (0..on.len()).map(|_| &on[rng.below(on.len())]).collect();
            let b: Vec<&Vec<f64>> = (0..off.len()).map(|_| &off[rng.below(off.len())]).collect();
            change(&pooled(&a), &pooled(&b))
        })
        .filter(|c| c.is_finite())
        .collect();
    rounds.sort_by(f64::total_cmp);
    (point, percentile(&rounds, 0.05), percentile(&rounds, 0.95))
}

/// The median over window pairs (each "on" window with the "off" window just before it) of
/// the change (%) of a percentile `q` from the "off" to the "on" window, with a 90 % bootstrap
/// interval of that median (resampling pairs). Robust to the shared machine's bursts of noise,
/// which spoil a few windows whichever side they fall on: it says how the percentile moves in
/// a typical stretch of the run. Returns (median, low, high); NaN without pairs.
pub fn paired_change(on: &[Vec<f64>], off: &[Vec<f64>], q: f64) -> (f64, f64, f64) {
    let mut changes: Vec<f64> = on
        .iter()
        .zip(off)
        .filter(|(a, b)| !a.is_empty() && !b.is_empty())
        .map(|(a, b)| (percentile(a, q) / percentile(b, q) - 1.0) * 100.0)
        .collect();
    if changes.is_empty() {
        return (f64::NAN, f64::NAN, f64::NAN);
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        percentile(v, 0.5)
    };
    let point = median(&mut changes);
    let mut rng = crate::SplitMix(0x5EED);
    let mut rounds: Vec<f64> = (0..1000)
        .map(|_| {
            let mut draw: Vec<f64> = (0..changes.len())
                .map(|_| changes[rng.below(changes.len())])
                .collect();
            median(&mut draw)
        })
        .collect();
    rounds.sort_by(f64::total_cmp);
    (point, percentile(&rounds, 0.05), percentile(&rounds, 0.95))
}

/// Upserts `[from, to)` over `clients` connections, `window` requests in flight each.
pub fn ingest(server: &Server, from: u64, to: u64, clients: u64, window: usize) -> Res<f64> {
    let t = Instant::now();
    let handles: Vec<_> = (0..clients)
        .map(|c| {
            let client = server.client().map_err(|e| e.to_string());
            std::thread::spawn(move || -> Result<(), String> {
                let mut client = client?;
                let mut in_flight = 0usize;
                let mut n = from + c;
                while n < to || in_flight > 0 {
                    if n < to && in_flight < window {
                        client.send(upsert(n)).map_err(|e| e.to_string())?;
                        in_flight += 1;
                        n += clients;
                        continue;
                    }
                    match client.recv().map_err(|e| e.to_string())? {
                        Response::Upserted(_) => in_flight -= 1,
                        other => return Err(format!("upsert answered {other:?}")),
                    }
                }
                Ok(())
            })
        })
        .collect();
    for h in handles {
        h.join().map_err(|_| "ingest thread panicked")??;
    }
    Ok((to - from) as f64 / t.elapsed().as_secs_f64())
}
