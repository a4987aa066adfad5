//! The stable driver: generates inputs from a target's seeds with the [`Mutator`], runs them
//! in-process, and turns panics, allocation peaks over the cap and hangs into findings.
//!
//! Per input: the bytes are mirrored into a memory-mapped crash file
//! (`<findings>/.current-<target>`), the allocation peak is reset, the target runs under
//! `catch_unwind`, and the peak is checked against the target's cap. A panic or an
//! allocation over the cap stops the target: the input is printed as hex and saved as
//! `<findings>/<target>-<kind>-<hash>.bin`. If the process dies instead (abort, stack
//! overflow, a signal), the crash file keeps the input; the next run of the target saves it
//! as a `crash` finding. A watchdog saves an input that runs longer than `hang_ms` as a
//! `hang` finding and exits.

use std::fs::OpenOptions;
use std::os::fd::AsRawFd;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::alloc;
use crate::mutate::Mutator;
use crate::targets::{Outcome, Target};

/// What to run.
#[derive(Debug, Clone)]
pub struct Options {
    /// Inputs per target (the seeds included).
    pub inputs: u64,
    /// Stop a target after this long even if it has not run `inputs` yet.
    pub time_limit: Option<Duration>,
    /// Seed of the mutator; the same seed and counts repeat a run exactly.
    pub seed: u64,
    /// Largest input; `None`: the target's default.
    pub max_len: Option<usize>,
    /// Where findings (and the crash files) go.
    pub findings: PathBuf,
    /// An input running longer than this is a hang.
    pub hang_ms: u64,
    /// Print progress every this often.
    pub progress: Duration,
    /// Extra seeds: every file in this folder's `<target>/` subfolder (e.g. the corpus a
    /// `cargo fuzz` run grew), added to the seeds made in code.
    pub corpus: Option<PathBuf>,
    /// Save the input with the highest allocation peak as `<target>-peak.bin` (not a
    /// finding: for looking at what the largest allocations come from).
    pub keep_peak: bool,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            inputs: 1_000_000,
            time_limit: None,
            seed: 0,
            max_len: None,
            findings: PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/findings")),
            hang_ms: 10_000,
            progress: Duration::from_secs(15),
            corpus: None,
            keep_peak: false,
        }
    }
}

/// One finding.
#[derive(Debug, Clone)]
pub struct Finding {
    /// `panic`, `alloc`, `crash` or `hang`.
    pub kind: &'static str,
    /// The saved input.
    pub path: PathBuf,
    /// What happened.
    pub message: String,
}

/// What running one target found.
#[derive(Debug, Clone)]
pub struct Report {
    /// The target.
    pub target: &'static str,
    /// Inputs run (the seeds included).
    pub inputs: u64,
    /// Inputs the decoder accepted.
    pub accepted: u64,
    /// Wall time.
    pub elapsed: Duration,
    /// Findings (the run of a target stops at its first).
    pub findings: Vec<Finding>,
    /// The highest allocation peak of one input (bytes).
    pub peak: usize,
    /// The length of that input.
    pub peak_len: usize,
    /// The cap for an input of the largest length (bytes).
    pub cap_at_max: usize,
    /// The slowest input.
    pub slowest: Duration,
}

impl Report {
    /// Inputs per second.
    pub fn rate(&self) -> f64 {
        self.inputs as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

/// When the current input started (ns since `EPOCH`, 0 when idle), for the watchdog.
static STARTED: AtomicU64 = AtomicU64::new(0);
static WATCHED: Mutex<Option<(&'static str, PathBuf, PathBuf)>> = Mutex::new(None);
static EPOCH: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();

fn now_ns() -> u64 {
    EPOCH.get_or_init(Instant::now).elapsed().as_nanos() as u64 + 1
}

/// Runs `targets` one after the other.
pub fn run(targets: &[&'static Target], opts: &Options) -> std::io::Result<Vec<Report>> {
    std::fs::create_dir_all(&opts.findings)?;
    start_watchdog(opts.hang_ms);
    let mut reports = Vec::new();
    for t in targets {
        reports.push(run_target(t, opts)?);
    }
    Ok(reports)
}

/// Runs one target for `opts.inputs` inputs (or `opts.time_limit`), stopping at a finding.
pub fn run_target(t: &'static Target, opts: &Options) -> std::io::Result<Report> {
    std::fs::create_dir_all(&opts.findings)?;
    let max_len = opts.max_len.unwrap_or(t.max_len);
    let mut report = Report {
        target: t.name,
        inputs: 0,
        accepted: 0,
        elapsed: Duration::ZERO,
        findings: Vec::new(),
        peak: 0,
        peak_len: 0,
        cap_at_max: (t.cap)(max_len),
        slowest: Duration::ZERO,
    };
    let crash_path = opts.findings.join(format!(".current-{}", t.name));
    if let Some(previous) = CrashFile::leftover(&crash_path) {
        let path = save(&opts.findings, t.name, "crash", &previous)?;
        let message = "a previous run died on this input (abort, stack overflow or signal)";
        print_finding(t.name, message, &previous, &path);
        report.findings.push(Finding {
            kind: "crash",
            path,
            message: message.into(),
        });
    }
    let mut seeds = (t.seeds)();
    if let Some(dir) = &opts.corpus {
        seeds.extend(read_corpus(&dir.join(t.name))?);
    }
    let mut mirror = CrashFile::create(&crash_path, max_len.max(seeds_max(&seeds)))?;
    if let Ok(mut w) = WATCHED.lock() {
        *w = Some((t.name, crash_path.clone(), opts.findings.clone()));
    }
    let mut mutator = Mutator::new(opts.seed, max_len);
    let mut input = Vec::with_capacity(2 * max_len);
    let started = Instant::now();
    let mut last_progress = started;
    let mut peak_input = Vec::new();
    while report.inputs < opts.inputs {
        let i = report.inputs as usize;
        if i < seeds.len() {
            input.clear();
            input.extend_from_slice(&seeds[i]);
        } else {
            mutator.next_input(&seeds, &mut input);
        }
        mirror.set(&input);
        let base = alloc::reset_peak();
        let t0 = Instant::now();
        STARTED.store(now_ns(), Ordering::Relaxed);
        mirror.running(true);
        let result = catch_unwind(AssertUnwindSafe(|| (t.run)(&input)));
        mirror.running(false);
        STARTED.store(0, Ordering::Relaxed);
        let took = t0.elapsed();
        let peak = alloc::peak_since(base);
        report.inputs += 1;
        report.slowest = report.slowest.max(took);
        if peak > report.peak {
            report.peak = peak;
            report.peak_len = input.len();
            if opts.keep_peak {
                peak_input.clone_from(&input);
            }
        }
        let finding = match result {
            Ok(Outcome::Accepted) => {
                report.accepted += 1;
                None
            }
            Ok(Outcome::Rejected) => None,
            Err(payload) => Some(("panic", panic_message(payload.as_ref()))),
        };
        let cap = (t.cap)(input.len());
        let finding = finding.or_else(|| {
            (peak > cap).then(|| {
                (
                    "alloc",
                    format!(
                        "one input allocated a peak of {} (cap {} for {} bytes)",
                        mib(peak),
                        mib(cap),
                        input.len()
                    ),
                )
            })
        });
        if let Some((kind, message)) = finding {
            let path = save(&opts.findings, t.name, kind, &input)?;
            print_finding(t.name, &message, &input, &path);
            report.findings.push(Finding {
                kind,
                path,
                message,
            });
            break;
        }
        if report.inputs.is_multiple_of(1024) {
            let now = Instant::now();
            if opts.time_limit.is_some_and(|l| now - started >= l) {
                break;
            }
            if now - last_progress >= opts.progress {
                last_progress = now;
                let secs = (now - started).as_secs_f64();
                eprintln!(
                    "[{}] {} inputs in {secs:.0} s ({:.0}/s), {} accepted, peak {}",
                    t.name,
                    report.inputs,
                    report.inputs as f64 / secs,
                    report.accepted,
                    mib(report.peak)
                );
            }
        }
    }
    report.elapsed = started.elapsed();
    if opts.keep_peak {
        std::fs::write(
            opts.findings.join(format!("{}-peak.bin", t.name)),
            &peak_input,
        )?;
    }
    if let Ok(mut w) = WATCHED.lock() {
        *w = None;
    }
    drop(mirror);
    Ok(report)
}

/// Runs one saved input through a target without catching anything (to reproduce a finding
/// with its backtrace); returns the outcome and the allocation peak.
pub fn replay(t: &Target, input: &[u8]) -> (Outcome, usize) {
    let base = alloc::reset_peak();
    let outcome = (t.run)(input);
    (outcome, alloc::peak_since(base))
}

/// Writes every seed of `t` to `dir` (a starting corpus for `cargo fuzz`).
pub fn write_corpus(t: &Target, dir: &Path) -> std::io::Result<usize> {
    std::fs::create_dir_all(dir)?;
    let seeds = (t.seeds)();
    for s in &seeds {
        std::fs::write(dir.join(format!("seed-{:016x}", fnv(s))), s)?;
    }
    Ok(seeds.len())
}

/// The table `all` prints at the end.
pub fn table(reports: &[Report]) -> String {
    let mut s = format!(
        "{:<9} {:>11} {:>8} {:>10} {:>9} {:>8} {:>11} {:>11} {:>9}\n",
        "target",
        "inputs",
        "time",
        "inputs/s",
        "accepted",
        "findings",
        "peak alloc",
        "cap",
        "slowest"
    );
    for r in reports {
        s.push_str(&format!(
            "{:<9} {:>11} {:>7.1}s {:>10.0} {:>8.1}% {:>8} {:>11} {:>11} {:>7.1}ms\n",
            r.target,
            r.inputs,
            r.elapsed.as_secs_f64(),
            r.rate(),
            100.0 * r.accepted as f64 / r.inputs.max(1) as f64,
            r.findings.len(),
            mib(r.peak),
            mib(r.cap_at_max),
            r.slowest.as_secs_f64() * 1e3,
        ));
    }
    s
}

/// The files of a corpus folder, in name order (none if it does not exist).
fn read_corpus(dir: &Path) -> std::io::Result<Vec<Vec<u8>>> {
    let mut paths: Vec<PathBuf> = match std::fs::read_dir(dir) {
        Ok(entries) => entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.is_file())
            .collect(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    paths.sort();
    paths.iter().map(std::fs::read).collect()
}

fn seeds_max(seeds: &[Vec<u8>]) -> usize {
    seeds.iter().map(Vec::len).max().unwrap_or(0)
}

fn mib(bytes: usize) -> String {
    if bytes < 1 << 20 {
        format!("{:.1} KiB", bytes as f64 / 1024.0)
    } else {
        format!("{:.1} MiB", bytes as f64 / (1u64 << 20) as f64)
    }
}

fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        format!("panic: {s}")
    } else if let Some(s) = payload.downcast_ref::<String>() {
        format!("panic: {s}")
    } else {
        "panic with a non-text payload".into()
    }
}

fn fnv(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

fn save(dir: &Path, target: &str, kind: &str, input: &[u8]) -> std::io::Result<PathBuf> {
    let path = dir.join(format!("{target}-{kind}-{:016x}.bin", fnv(input)));
    std::fs::write(&path, input)?;
    Ok(path)
}

fn print_finding(target: &str, message: &str, input: &[u8], path: &Path) {
    eprintln!("\n[{target}] FINDING: {message}");
    eprintln!(
        "[{target}] input ({} bytes), saved as {}:",
        input.len(),
        path.display()
    );
    for line in input.chunks(32).take(64) {
        let hex: Vec<String> = line.iter().map(|b| format!("{b:02x}")).collect();
        eprintln!("  {}", hex.join(""));
    }
    if input.len() > 32 * 64 {
        eprintln!("  ... ({} more bytes in the file)", input.len() - 32 * 64);
    }
}

fn start_watchdog(hang_ms: u64) {
    static STARTED_ONCE: std::sync::Once = std::sync::Once::new();
    STARTED_ONCE.call_once(|| {
        let _ = EPOCH.get_or_init(Instant::now);
        let spawned = std::thread::Builder::new()
            .name("watchdog".into())
            .spawn(move || {
                loop {
                    std::thread::sleep(Duration::from_millis(100));
                    let s = STARTED.load(Ordering::Relaxed);
                    if s == 0 || now_ns().saturating_sub(s) < hang_ms * 1_000_000 {
                        continue;
                    }
                    let watched = WATCHED.lock().ok().and_then(|w| w.clone());
                    if let Some((target, crash, findings)) = watched
                        && let Some(input) = CrashFile::leftover(&crash)
                        && let Ok(path) = save(&findings, target, "hang", &input)
                    {
                        let message = format!("an input ran for more than {hang_ms} ms");
                        print_finding(target, &message, &input, &path);
                    }
                    std::process::exit(3);
                }
            });
        if let Err(e) = spawned {
            eprintln!("no watchdog (hangs will not be detected): {e}");
        }
    });
}

/// The current input, mirrored into a memory-mapped file so that it survives the process
/// dying: `[len u64 LE][running u64][bytes]`, `running` set while the target runs (so a run
/// interrupted between inputs, e.g. by Ctrl-C, leaves nothing to report). Removed when
/// dropped (the run ended normally).
struct CrashFile {
    ptr: *mut u8,
    size: usize,
    path: PathBuf,
}

/// Bytes before the input in a crash file.
const HEAD: usize = 16;

impl CrashFile {
    fn create(path: &Path, max_len: usize) -> std::io::Result<CrashFile> {
        let size = HEAD + max_len;
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(path)?;
        file.set_len(size as u64)?;
        // SAFETY: a fresh shared read-write mapping of a file we just sized; it is unmapped
        // only in `drop`, and only this struct touches it.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                size,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                file.as_raw_fd(),
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(std::io::Error::last_os_error());
        }
        Ok(CrashFile {
            ptr: ptr.cast(),
            size,
            path: path.to_path_buf(),
        })
    }

    /// Mirrors `input` (its first `size - HEAD` bytes).
    fn set(&mut self, input: &[u8]) {
        let n = input.len().min(self.size - HEAD);
        // SAFETY: the mapping is `size` bytes long and writable; `HEAD + n <= size`.
        unsafe {
            std::ptr::copy_nonoverlapping(input.as_ptr(), self.ptr.add(HEAD), n);
            self.ptr.cast::<[u8; 8]>().write((n as u64).to_le_bytes());
        }
    }

    /// Marks whether the target is running the mirrored input.
    fn running(&mut self, yes: bool) {
        // SAFETY: bytes 8..16 of the mapping, which is at least `HEAD` long.
        unsafe {
            self.ptr
                .add(8)
                .cast::<[u8; 8]>()
                .write(u64::from(yes).to_le_bytes());
        }
    }

    /// The input a crash file holds, if a run died while running it.
    fn leftover(path: &Path) -> Option<Vec<u8>> {
        let bytes = std::fs::read(path).ok()?;
        let _ = std::fs::remove_file(path);
        let len = u64::from_le_bytes(bytes.get(..8)?.try_into().ok()?) as usize;
        let running = u64::from_le_bytes(bytes.get(8..HEAD)?.try_into().ok()?);
        if running == 0 {
            return None;
        }
        Some(bytes.get(HEAD..HEAD.checked_add(len)?)?.to_vec())
    }
}

impl Drop for CrashFile {
    fn drop(&mut self) {
        // SAFETY: `ptr`/`size` are the mapping made in `create`, unmapped once.
        unsafe {
            libc::munmap(self.ptr.cast(), self.size);
        }
        let _ = std::fs::remove_file(&self.path);
    }
}
