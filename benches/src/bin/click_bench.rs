//! Click benchmark against the real `vsa serve` over TCP:
//!
//! 1. click events absorbed per second: 4 pipelined clients, one pass over distinct (query,
//!    shown item) clicks, sent as `Clicks` batches of `--batch` (1: one `Click` request each);
//! 2. search latency with and without a paced click load, and with and without the CTR weight:
//!    one search load runs throughout while the click load (or the weight) is switched on and
//!    off in alternate windows, and each search is counted by the window it started in, so a
//!    drift of the shared machine's load over the run moves both sides alike;
//! 3. memory per tracked item.
//!
//! The click senders stand for the shoppers' devices and web servers, which are elsewhere in a
//! deployment: here they share the server's two cores, so their threads run at the lowest CPU
//! priority (Linux `SCHED_IDLE`) and send requests encoded before the runs, to keep the
//! benchmark's own work out of the search latency; the rate they achieve is measured and
//! printed. They connect once, before the latency run, and wait on a condition variable
//! through the "off" windows, so an "on" window differs from an "off" one by the clicks sent,
//! not by thread starts or connection handshakes. `--senders-only` shows what is left of the
//! senders' own work: they pace and take their requests as usual but send none. `--burn-us`
//! is a control without any click: a lowest-priority thread busy that many µs of every 2 ms in
//! the "on" windows, to show what the same share of low-priority CPU costs the searches here.
//!
//! Usage: `cargo run --release -p vsa-benches --bin click_bench -- [--items N] [--queries Q (default: enough that no click repeats)]
//! [--rate CLICKS_PER_S (0: an A/A run, nothing switched on)] [--batch 100] [--absorb 100000] [--interleave-s 24] [--window-s 3]
//! [--absorb-only] [--no-ctr-run] [--click-ctr WEIGHT (held through the click-load run; default 0)]
//! [--senders-only (the click load's senders take their requests but send none)]
//! [--burn-us US [--burn-mib M] (no clicks: a control thread busy US µs per 2 ms, reading M MiB)]
//! [--rerank-depth N] [--search-rate SEARCHES_PER_S]
//! [--yield-us US (the server's clicks.yield_to_searches_us; 0: click work never waits for searches)]
//! [--vsa target/release/vsa]` after `./scripts/setup.sh`.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use vsa_actors::lower_thread_priority;
use vsa_benches::appliance::{
    Res, Server, change_interval, embedding, group_by_windows, ingest, paired_change, percentile,
    pooled, search_load, search_load_paced, search_load_timed,
};
use vsa_protocol::{
    AdminAction, BlockingClient, ClickRequest, QueryInput, Request, Response, SearchRequest,
};

/// Results per search of the searches that make the click stream.
const SHOWN: u32 = 20;

/// The distinct clicks, encoded ahead of time as requests of `batch` clicks each, so a sender
/// only writes bytes (its encoding is not part of what is measured), and a cursor over them
/// shared by every sender: each click is sent once before any is repeated.
struct ClickStream {
    /// Whole frames, back to back: frame `i` ends at `ends[i]`.
    bytes: Vec<u8>,
    ends: Vec<usize>,
    /// Clicks per request (1: one `Request::Click` each; the last frame may carry fewer).
    batch: usize,
    /// Distinct clicks.
    clicks: usize,
    /// Frames handed out.
    next: AtomicU64,
}

impl ClickStream {
    fn new(clicks: &[&ClickRequest], batch: usize) -> Res<ClickStream> {
        let batch = batch.max(1);
        let (mut bytes, mut ends) = (Vec::new(), Vec::new());
        for chunk in clicks.chunks(batch) {
            let request = match chunk {
                [one] if batch == 1 => Request::Click((*one).clone()),
                _ => Request::Clicks(chunk.iter().map(|&c| c.clone()).collect()),
            };
            bytes.extend(vsa_protocol::frame::encode_frame(&request, u32::MAX)?);
            ends.push(bytes.len());
        }
        Ok(ClickStream {
            bytes,
            ends,
            batch,
            clicks: clicks.len(),
            next: AtomicU64::new(0),
        })
    }

    /// The next frame and the clicks it carries.
    fn next(&self) -> (&[u8], u64) {
        let i = self.next.fetch_add(1, Ordering::Relaxed) as usize % self.ends.len().max(1);
        let start = if i == 0 { 0 } else { self.ends[i - 1] };
        let carried = self.batch.min(self.clicks - i * self.batch);
        (&self.bytes[start..self.ends[i]], carried as u64)
    }
}

/// How a click sender sends.
#[derive(Clone, Copy)]
struct Sending {
    /// Clicks/s over all the senders (`None`: as fast as the server answers).
    rate: Option<f64>,
    /// Take each request as for sending, then drop it: the senders' own share of the
    /// machine, with nothing reaching the server (the clicks are counted as acknowledged).
    dry: bool,
}

/// Sends clicks from `stream` over `clients` connections, 64 requests in flight each, until
/// at least `count` have been sent (whole requests) or `stop` is set, as `how` says. Returns
/// the clicks acknowledged and the seconds taken.
fn firehose(
    server: &Server,
    stream: &Arc<ClickStream>,
    clients: usize,
    count: u64,
    stop: &Arc<AtomicBool>,
    how: Sending,
) -> Res<(u64, f64)> {
    let t = Instant::now();
    let handles: Vec<_> = (0..clients)
        .map(|c| {
            let client = server.client().map_err(|e| e.to_string());
            let (stream, stop) = (stream.clone(), stop.clone());
            let mine = count / clients as u64 + u64::from((c as u64) < count % clients as u64);
            let how = how.share(clients);
            std::thread::spawn(move || -> Result<u64, String> {
                lower_thread_priority();
                burst(
                    &mut client?,
                    &stream,
                    mine,
                    || !stop.load(Ordering::Relaxed),
                    how,
                )
            })
        })
        .collect();
    let mut acked = 0;
    for h in handles {
        acked += h.join().map_err(|_| "click thread panicked")??;
    }
    Ok((acked, t.elapsed().as_secs_f64()))
}

impl Sending {
    /// One of `clients` senders' part of the rate.
    fn share(self, clients: usize) -> Sending {
        Sending {
            rate: self.rate.map(|r| r / clients.max(1) as f64),
            ..self
        }
    }
}

/// Sends clicks from `stream` over `client`, 64 requests in flight, paced from now as `how`
/// says, until at least `count` have been sent (whole requests) or `more()` turns false;
/// then waits for every answer. Returns the clicks acknowledged.
fn burst(
    client: &mut BlockingClient,
    stream: &ClickStream,
    count: u64,
    more: impl Fn() -> bool,
    how: Sending,
) -> Result<u64, String> {
    let Sending { rate, dry } = how;
    let (mut sent, mut acked, mut in_flight) = (0u64, 0u64, 0usize);
    let paced = Instant::now();
    loop {
        if in_flight < 64 && sent < count && more() {
            if let Some(r) = rate {
                // Slept in steps of ≥ 1 ms.
                let ahead = sent as f64 / r - paced.elapsed().as_secs_f64();
                if ahead > 1e-3 {
                    std::thread::sleep(Duration::from_secs_f64(ahead));
                }
            }
            let (frame, n) = stream.next();
            sent += n;
            if dry {
                std::hint::black_box(frame);
                acked += n;
                continue;
            }
            client.send_encoded(frame).map_err(|e| e.to_string())?;
            in_flight += 1;
            continue;
        }
        if in_flight == 0 {
            return Ok(acked);
        }
        match client.recv().map_err(|e| e.to_string())? {
            Response::Clicked(_) => acked += 1,
            Response::ClicksAccepted(r) if r.rejected.is_empty() => {
                acked += u64::from(r.accepted + r.repeated);
            }
            // The aggregators are behind: those clicks are not absorbed (and
            // not counted); back off a little.
            Response::Error(e) if e.code == vsa_protocol::ErrorCode::Busy => {
                std::thread::sleep(Duration::from_millis(1));
            }
            other => return Err(format!("clicks answered {other:?}")),
        }
        in_flight -= 1;
    }
}

/// What a [`Gate`] guards.
#[derive(Default)]
struct GateState {
    on: bool,
    done: bool,
    since: Option<Instant>,
    on_secs: f64,
}

/// A switch that threads started before a latency run wait on through its "off" windows (on
/// a condition variable: no wake-ups), so an "off" window differs from an "on" one by their
/// work alone, not by thread starts or connection handshakes.
#[derive(Default)]
struct Gate {
    on: AtomicBool,
    state: Mutex<GateState>,
    cv: Condvar,
}

impl Gate {
    fn lock(&self) -> Result<std::sync::MutexGuard<'_, GateState>, String> {
        self.state.lock().map_err(|_| "gate poisoned".into())
    }

    /// Switches on or off (the threads finish what they are doing first).
    fn set(&self, on: bool) -> Res<()> {
        let mut g = self.lock()?;
        match (g.since, on) {
            (None, true) => g.since = Some(Instant::now()),
            (Some(t), false) => {
                g.on_secs += t.elapsed().as_secs_f64();
                g.since = None;
            }
            _ => {}
        }
        g.on = on;
        self.on.store(on, Ordering::Relaxed);
        self.cv.notify_all();
        Ok(())
    }

    fn is_on(&self) -> bool {
        self.on.load(Ordering::Relaxed)
    }

    /// Waits until switched on (true) or finished (false).
    fn wait_on(&self) -> Result<bool, String> {
        let mut g = self.lock()?;
        while !g.on && !g.done {
            g = self.cv.wait(g).map_err(|_| "gate poisoned")?;
        }
        Ok(!g.done)
    }

    /// Switches off for good; returns the seconds it was on.
    fn finish(&self) -> Res<f64> {
        self.set(false)?;
        let mut g = self.lock()?;
        g.done = true;
        self.cv.notify_all();
        Ok(g.on_secs)
    }
}

/// Threads that work only while their gate is on, each returning a count.
struct Gated {
    gate: Arc<Gate>,
    handles: Vec<std::thread::JoinHandle<Result<u64, String>>>,
}

impl Gated {
    /// Stops the threads; returns the sum of their counts and the seconds they were on.
    fn finish(self) -> Res<(u64, f64)> {
        let on_secs = self.gate.finish()?;
        let mut count = 0;
        for h in self.handles {
            count += h.join().map_err(|_| "gated thread panicked")??;
        }
        Ok((count, on_secs))
    }
}

/// The click load of the latency runs: `clients` senders that connect once, before the run,
/// and send (paced, at the lowest CPU priority) only while the gate is on. Their count is the
/// clicks acknowledged.
fn paced_senders(
    server: &Server,
    stream: &Arc<ClickStream>,
    clients: usize,
    how: Sending,
) -> Res<Gated> {
    let gate = Arc::new(Gate::default());
    let mut handles = Vec::new();
    for _ in 0..clients {
        let mut client = server.client()?;
        let (stream, gate) = (stream.clone(), gate.clone());
        let how = how.share(clients);
        handles.push(std::thread::spawn(move || -> Result<u64, String> {
            lower_thread_priority();
            let mut acked = 0;
            while gate.wait_on()? {
                acked += burst(&mut client, &stream, u64::MAX, || gate.is_on(), how)?;
            }
            Ok(acked)
        }));
    }
    Ok(Gated { gate, handles })
}

/// A control for the click load (`--burn-us`): one thread at the lowest CPU priority that,
/// while the gate is on, spins `busy_us` of every 2 ms (the period of the click load's frames
/// at 100 clicks each), reading random cache lines of a `mib` MiB buffer (0: arithmetic only).
/// It sends nothing: what it costs the searches is what that much low-priority CPU (and
/// memory traffic) costs them on this machine, whatever does the work. Its count is the
/// busy periods run.
fn burner(busy_us: u64, mib: usize) -> Gated {
    let gate = Arc::new(Gate::default());
    let g = gate.clone();
    let handle = std::thread::spawn(move || -> Result<u64, String> {
        lower_thread_priority();
        let lines = (mib << 20) / 64;
        let buffer = vec![1u64; lines * 8];
        let (busy, period) = (Duration::from_micros(busy_us), Duration::from_millis(2));
        let (mut periods, mut x, mut sum) = (0u64, 0x9E37_79B9_7F4A_7C15u64, 0u64);
        while g.wait_on()? {
            let start = Instant::now();
            let mut k = 0u32;
            while g.is_on() {
                let t = Instant::now();
                while t.elapsed() < busy {
                    for _ in 0..64 {
                        // xorshift64: a random line per step, as a hash table's lookups go.
                        x ^= x << 13;
                        x ^= x >> 7;
                        x ^= x << 17;
                        sum = sum.wrapping_add(if lines == 0 {
                            x
                        } else {
                            buffer[(x as usize % lines) * 8]
                        });
                    }
                }
                periods += 1;
                k += 1;
                if let Some(wait) = (start + period * k).checked_duration_since(Instant::now()) {
                    std::thread::sleep(wait);
                }
            }
        }
        std::hint::black_box(sum);
        Ok(periods)
    });
    Gated {
        gate,
        handles: vec![handle],
    }
}

/// The search load of the latency runs.
#[derive(Clone, Copy)]
enum Load {
    /// 2 clients, each sending its next search when the last is answered: the machine is
    /// kept busy (whatever the clicks take comes out of the searches).
    Closed,
    /// This many searches/s on a fixed schedule over 8 clients, latency from the scheduled
    /// start: a service with headroom, as one is run.
    Paced(f64),
}

impl std::fmt::Display for Load {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Load::Closed => write!(f, "2 closed-loop clients"),
            Load::Paced(r) => write!(f, "{r:.0} searches/s on a fixed schedule (8 clients)"),
        }
    }
}

/// Latencies (ms) of the searches started in each window: the "on" windows, the "off" ones.
struct Windows {
    on: Vec<Vec<f64>>,
    off: Vec<Vec<f64>>,
}

impl Windows {
    /// Prints the two sides and the p99 and p50 change with their bootstrap intervals.
    fn report(&self, off_label: &str, on_label: &str, what: &str) {
        let (on, off) = (pooled(&self.on), pooled(&self.off));
        println!("| searches started | windows | queries | p50 ms | p99 ms |");
        println!("|---|---|---|---|---|");
        for (label, w, lat) in [(off_label, &self.off, &off), (on_label, &self.on, &on)] {
            println!(
                "| {label} | {} | {} | {:.2} | {:.2} |",
                w.len(),
                lat.len(),
                percentile(lat, 0.5),
                percentile(lat, 0.99)
            );
        }
        let (p99, lo99, hi99) = change_interval(&self.on, &self.off, 0.99);
        let (p50, lo50, hi50) = change_interval(&self.on, &self.off, 0.5);
        println!(
            "- p99 {what}: {p99:+.1} % (90 % bootstrap interval over windows {lo99:+.1} % .. {hi99:+.1} %), p50 {p50:+.1} % ({lo50:+.1} % .. {hi50:+.1} %)"
        );
        // The "off" window before each "on" one (the run starts with an "off" window).
        let (m99, l99, h99) = paired_change(&self.on, &self.off, 0.99);
        let (m50, l50, h50) = paired_change(&self.on, &self.off, 0.5);
        println!(
            "- window by window ({} pairs), median change of the p99: {m99:+.1} % ({l99:+.1} % .. {h99:+.1} %), of the p50: {m50:+.1} % ({l50:+.1} % .. {h50:+.1} %)",
            self.on.len().min(self.off.len())
        );
    }
}

/// Runs the search load for `secs` while `switch(on)` is called at the start of alternate
/// windows of `window` s (off first); returns the searches by the window they started in.
fn alternate(
    server: &Server,
    items: u64,
    load: Load,
    secs: f64,
    window: f64,
    switch: impl Fn(bool) -> Res<()> + Sync,
) -> Res<Windows> {
    let origin = Instant::now();
    let done = AtomicBool::new(false);
    std::thread::scope(|scope| {
        // The windows: (start, end in seconds, on).
        let toggler = scope.spawn(|| -> Result<Vec<(f64, f64, bool)>, String> {
            let mut windows = Vec::new();
            let mut on = false;
            while !done.load(Ordering::Relaxed) {
                let start = origin.elapsed().as_secs_f64();
                switch(on).map_err(|e| e.to_string())?;
                while origin.elapsed().as_secs_f64() < start + window
                    && !done.load(Ordering::Relaxed)
                {
                    std::thread::sleep(Duration::from_millis(10));
                }
                windows.push((start, origin.elapsed().as_secs_f64(), on));
                on = !on;
            }
            Ok(windows)
        });
        let searches = match load {
            Load::Closed => search_load_timed(server, items, 2, secs, origin),
            Load::Paced(rate) => search_load_paced(server, items, 8, secs, origin, rate),
        };
        done.store(true, Ordering::Relaxed);
        let windows = toggler.join().map_err(|_| "toggler panicked")??;
        let searches = searches?;
        let pick = |want: bool| {
            let spans: Vec<(f64, f64)> = windows
                .iter()
                .filter(|w| w.2 == want)
                .map(|w| (w.0, w.1))
                .collect();
            group_by_windows(&searches, &spans)
        };
        Ok(Windows {
            on: pick(true),
            off: pick(false),
        })
    })
}

fn main() -> Res<()> {
    let mut items: u64 = 5000;
    let mut queries: Option<u64> = None;
    let mut vsa = PathBuf::from("target/release/vsa");
    let mut paced_rate = 50_000.0;
    let mut secs = 24.0;
    let mut window = 3.0;
    let mut absorb_only = false;
    let mut ctr_run = true;
    let mut click_ctr: f32 = 0.0;
    let mut senders_only = false;
    let mut burn_us: Option<u64> = None;
    let mut burn_mib: usize = 0;
    let mut rerank_depth: Option<usize> = None;
    let mut yield_us: Option<u64> = None;
    let mut batch: usize = 100;
    let mut absorb: u64 = 100_000;
    let mut load = Load::Closed;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--items" => items = args.next().ok_or("--items N")?.parse()?,
            "--queries" => queries = Some(args.next().ok_or("--queries N")?.parse()?),
            "--vsa" => vsa = args.next().ok_or("--vsa PATH")?.into(),
            "--rate" => paced_rate = args.next().ok_or("--rate CLICKS_PER_S")?.parse()?,
            "--interleave-s" => secs = args.next().ok_or("--interleave-s S")?.parse()?,
            "--window-s" => window = args.next().ok_or("--window-s S")?.parse()?,
            "--absorb-only" => absorb_only = true,
            "--no-ctr-run" => ctr_run = false,
            "--senders-only" => senders_only = true,
            "--burn-us" => burn_us = Some(args.next().ok_or("--burn-us MICROSECONDS")?.parse()?),
            "--burn-mib" => burn_mib = args.next().ok_or("--burn-mib MIB")?.parse()?,
            "--click-ctr" => click_ctr = args.next().ok_or("--click-ctr WEIGHT")?.parse()?,
            "--rerank-depth" => {
                rerank_depth = Some(args.next().ok_or("--rerank-depth N")?.parse()?)
            }
            "--yield-us" => yield_us = Some(args.next().ok_or("--yield-us MICROSECONDS")?.parse()?),
            "--absorb" => absorb = args.next().ok_or("--absorb CLICKS")?.parse()?,
            "--batch" => batch = args.next().ok_or("--batch CLICKS")?.parse()?,
            "--search-rate" => {
                load = Load::Paced(args.next().ok_or("--search-rate SEARCHES_PER_S")?.parse()?)
            }
            other => return Err(format!("unknown argument {other}").into()),
        }
    }
    // Enough searches (`SHOWN` results each) that the absorb phase and the "on" windows send
    // each click once: a repeat is counted once and never reaches an aggregator, so a stream
    // that wrapped around would understate the click load.
    let queries = queries.unwrap_or_else(|| {
        let needed = absorb as f64
            + if absorb_only {
                0.0
            } else {
                paced_rate * secs / 2.0 * 1.1
            };
        35_000u64.max((needed / SHOWN as f64).ceil() as u64)
    });
    let dir = std::env::temp_dir().join(format!("vsa-click-bench-{}", std::process::id()));
    let server = Server::start(
        &vsa,
        &dir,
        &format!(
            "[server]\nin_memory = true\n\n[clicks]\nquery_log = {}\n{}",
            // The searches of the latency runs are logged too: room for them.
            queries + 1_000_000,
            rerank_depth.map_or(String::new(), |d| format!("rerank_depth = {d}\n"))
                + &yield_us.map_or(String::new(), |us| format!("yield_to_searches_us = {us}\n"))
        ),
    )?;
    ingest(&server, 0, items, 4, 32)?;
    // The query log: `queries` searches over 4 connections, every shown (query, item,
    // position) clicked once (a shopper who scrolls: `SHOWN` results per search).
    let clicks = std::thread::scope(|s| -> Res<Vec<ClickRequest>> {
        let handles: Vec<_> = (0..4u64)
            .map(|c| {
                let client = server.client().map_err(|e| e.to_string());
                s.spawn(move || -> Result<Vec<ClickRequest>, String> {
                    let mut client = client?;
                    let mut clicks = Vec::new();
                    for q in (c..queries).step_by(4) {
                        let r = client
                            .search(SearchRequest::new(
                                QueryInput::Embedding(embedding((q * 7919) % items)),
                                SHOWN,
                            ))
                            .map_err(|e| e.to_string())?;
                        for (pos, h) in r.hits.iter().enumerate() {
                            clicks.push(ClickRequest {
                                query_id: r.query_id,
                                item_id: h.id.clone(),
                                position: pos as u32,
                            });
                        }
                    }
                    Ok(clicks)
                })
            })
            .collect();
        let mut all = Vec::new();
        for h in handles {
            all.extend(h.join().map_err(|_| "search thread panicked")??);
        }
        Ok(all)
    })?;
    // Interleave so consecutive clicks hit different queries and items.
    let n = clicks.len();
    let stride = 7919 % n.max(1);
    let order: Vec<&ClickRequest> = (0..n).map(|i| &clicks[(i * stride.max(1)) % n]).collect();
    let stream = Arc::new(ClickStream::new(&order, batch)?);
    drop(order);
    drop(clicks);
    println!("## clicks ({items} items, {n} distinct clicks over {queries} queries)");
    let never = Arc::new(AtomicBool::new(false));
    let first = absorb.min(n as u64);
    let t = Instant::now();
    let flat_out = Sending {
        rate: None,
        dry: false,
    };
    let (acked, took) = firehose(&server, &stream, 4, first, &never, flat_out)?;
    // A batch is acknowledged once checked; absorbed means applied by the aggregators.
    let applied = loop {
        let clicks = click_count(&server)?;
        if clicks >= acked || t.elapsed() > Duration::from_secs(600) {
            break t.elapsed().as_secs_f64();
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    println!(
        "- clicks absorbed: {:.0}/s applied by the aggregators ({:.0}/s acknowledged; 4 pipelined clients, {}, {first} distinct clicks, {acked} accepted)",
        acked as f64 / applied,
        acked as f64 / took,
        sending(batch)
    );
    if !absorb_only {
        let plan = Plan {
            load,
            rate: paced_rate,
            secs,
            window,
            ctr_run,
            click_ctr,
            dry: senders_only,
            burn: burn_us.map(|us| (us, burn_mib)),
        };
        interleaved(&server, items, &stream, &plan)?;
    }
    let stats = server
        .client()?
        .admin(AdminAction::ClickStats { top: 3 })?
        .payload
        .unwrap_or_default();
    let stats: serde_json::Value = serde_json::from_str(&stats)?;
    println!(
        "- tracked items: {}, memory {} B ({} B/item), clicks {}, impressions {}; runs of click work that waited for searches {} (of which gave up after the longest wait {})",
        stats["items_tracked"],
        stats["memory_bytes"],
        stats["bytes_per_item"],
        stats["clicks"],
        stats["impressions"],
        stats["yielded_to_searches"],
        stats["yield_gave_up"]
    );
    drop(server);
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

/// How the latency runs are made.
struct Plan {
    load: Load,
    /// Clicks/s while the click load is on (0: an A/A run).
    rate: f64,
    secs: f64,
    window: f64,
    /// Also the run with the CTR weight switched on and off.
    ctr_run: bool,
    /// The CTR weight held through the click-load run, on and off windows alike (0: the
    /// default ranking; 1: every search also reads the table the aggregators write).
    click_ctr: f32,
    /// The click senders only build and encode their requests (`--senders-only`).
    dry: bool,
    /// Instead of the click load, the burner control: busy µs per 2 ms, MiB read (`--burn-us`).
    burn: Option<(u64, usize)>,
}

/// Search latency with the click load and the CTR weight each switched on and off in turn.
fn interleaved(server: &Server, items: u64, stream: &Arc<ClickStream>, plan: &Plan) -> Res<()> {
    let Plan {
        load,
        rate,
        secs,
        window,
        ctr_run,
        click_ctr,
        dry,
        burn,
    } = *plan;
    let batch = stream.batch;
    // The CTR run below sets the weight in every window itself: nothing to reset after this.
    if click_ctr != 0.0 {
        admin_weights(server, click_ctr)?;
    }
    search_load(server, items, 2, 3.0)?; // warm-up
    if let Some((busy_us, mib)) = burn {
        // The control: no clicks, only the burner in the "on" windows.
        let burning = burner(busy_us, mib);
        let windows = alternate(server, items, load, secs, window, |on| burning.gate.set(on))?;
        let (periods, took) = burning.finish()?;
        println!(
            "\n### search load: {load}, {secs:.0} s, CTR weight {click_ctr}; no clicks: a lowest-priority thread busy {busy_us} µs of every 2 ms ({mib} MiB of random reads) on in alternate {window:.0} s windows"
        );
        println!(
            "- burner: {:.0} busy periods/s while on ({:.1} % of one core asked)",
            periods as f64 / took.max(1e-9),
            busy_us as f64 / 20.0
        );
        windows.report("burner off", "burner on", "with the burner vs without");
        return Ok(());
    }
    let sent_before = stream.next.load(Ordering::Relaxed);
    // `--rate 0`: the windows alternate with nothing switched, which shows the spread of the
    // measurement itself on this machine (an A/A comparison).
    let senders = if rate > 0.0 {
        let how = Sending {
            rate: Some(rate),
            dry,
        };
        Some(paced_senders(server, stream, 2, how)?)
    } else {
        None
    };
    let clicking = alternate(server, items, load, secs, window, |on| {
        senders.as_ref().map_or(Ok(()), |s| s.gate.set(on))
    })?;
    let (acked, took) = senders.map_or(Ok((0, 1.0)), Gated::finish)?;
    // In frames, which carry `batch` clicks each.
    let sent_after = stream.next.load(Ordering::Relaxed);
    let distinct = stream.ends.len() as u64;
    let repeats = sent_after.saturating_sub(distinct) - sent_before.saturating_sub(distinct);
    let sent = sent_after - sent_before;
    println!(
        "\n### search load: {load}, {secs:.0} s, CTR weight {click_ctr}; the click load (2 more clients, paced at {rate:.0}/s, {}{}) on in alternate {window:.0} s windows",
        sending(batch),
        if dry {
            "; senders only: each request built and encoded, none sent"
        } else {
            ""
        }
    );
    println!(
        "- clicks achieved while on: {:.0}/s ({acked} acknowledged; {:.0} % of those sent were repeats of an earlier click)",
        acked as f64 / took.max(1e-9),
        100.0 * repeats as f64 / sent.max(1) as f64
    );
    clicking.report(
        "click load off",
        &format!("click load on ({rate:.0}/s)"),
        "with the click load vs without",
    );
    if !ctr_run {
        return Ok(());
    }
    let weighting = alternate(server, items, load, secs, window, |on| {
        admin_weights(server, if on { 1.0 } else { 0.0 })
    })?;
    admin_weights(server, 0.0)?;
    println!(
        "\n### search load: {load}, {secs:.0} s; the CTR weight 1 in alternate {window:.0} s windows, 0 in the others (no clicks)"
    );
    weighting.report(
        "ctr weight 0",
        "ctr weight 1 (CTR lookups per search)",
        "with the CTR weight vs without",
    );
    Ok(())
}

fn click_count(server: &Server) -> Res<u64> {
    let stats = server
        .client()?
        .admin(AdminAction::ClickStats { top: 0 })?
        .payload
        .unwrap_or_default();
    let stats: serde_json::Value = serde_json::from_str(&stats)?;
    Ok(stats["clicks"].as_u64().unwrap_or(0))
}

fn sending(batch: usize) -> String {
    if batch <= 1 {
        "one Click request per click".into()
    } else {
        format!("Clicks requests of {batch}")
    }
}

fn admin_weights(server: &Server, ctr: f32) -> Res<()> {
    server
        .client()?
        .admin(AdminAction::SetRerankWeights(vec![("ctr".into(), ctr)]))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Polls `f` until it holds, for at most 10 s.
    fn eventually(f: impl Fn() -> bool) -> bool {
        let until = Instant::now() + Duration::from_secs(10);
        while Instant::now() < until {
            if f() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        f()
    }

    #[test]
    fn a_gated_thread_works_only_while_its_gate_is_on() {
        let gate = Arc::new(Gate::default());
        let steps = Arc::new(AtomicU64::new(0));
        // True while the thread is in its working loop.
        let working = Arc::new(AtomicBool::new(false));
        let (g, s, w) = (gate.clone(), steps.clone(), working.clone());
        let handle = std::thread::spawn(move || -> Result<u64, String> {
            let mut rounds = 0;
            while g.wait_on()? {
                rounds += 1;
                w.store(true, Ordering::SeqCst);
                while g.is_on() {
                    s.fetch_add(1, Ordering::SeqCst);
                    std::thread::yield_now();
                }
                w.store(false, Ordering::SeqCst);
            }
            Ok(rounds)
        });
        std::thread::sleep(Duration::from_millis(50));
        assert_eq!(
            steps.load(Ordering::SeqCst),
            0,
            "worked before the gate was on"
        );
        gate.set(true).unwrap();
        assert!(eventually(|| steps.load(Ordering::SeqCst) > 0));
        gate.set(false).unwrap();
        assert!(eventually(|| !working.load(Ordering::SeqCst)));
        // Back waiting on the gate: nothing more until it is on again.
        let stopped = steps.load(Ordering::SeqCst);
        std::thread::sleep(Duration::from_millis(50));
        assert_eq!(steps.load(Ordering::SeqCst), stopped, "worked while off");
        gate.set(true).unwrap();
        assert!(eventually(|| steps.load(Ordering::SeqCst) > stopped));
        let (rounds, on_secs) = Gated {
            gate,
            handles: vec![handle],
        }
        .finish()
        .unwrap();
        assert_eq!(rounds, 2, "one round per time the gate was switched on");
        assert!(on_secs > 0.0);
        assert!(
            !working.load(Ordering::SeqCst),
            "finish returned before the thread stopped"
        );
    }

    #[test]
    fn a_gate_never_switched_on_runs_nothing() {
        let burning = burner(100, 1);
        std::thread::sleep(Duration::from_millis(30));
        let (periods, on_secs) = burning.finish().unwrap();
        assert_eq!((periods, on_secs), (0, 0.0));
    }

    #[test]
    fn the_burner_counts_its_busy_periods_while_on() {
        let burning = burner(50, 1);
        burning.gate.set(true).unwrap();
        std::thread::sleep(Duration::from_millis(40));
        let (periods, on_secs) = burning.finish().unwrap();
        assert!(periods > 0, "no busy period ran while on");
        // At most one period per 2 ms it was on, and one that started as it was switched off.
        assert!(
            periods as f64 <= on_secs / 0.002 + 1.0,
            "{periods} in {on_secs} s"
        );
    }
}
