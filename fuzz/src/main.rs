//! `vsa-fuzz`: runs the fuzz targets of `vsa_fuzz::targets` on the stable toolchain.
//!
//! ```text
//! cargo run --release -p vsa-fuzz -- all --inputs 10M
//! cargo run --release -p vsa-fuzz -- image --inputs 10M --seconds 300 --seed 7
//! cargo run --release -p vsa-fuzz -- wal --replay fuzz/findings/wal-panic-….bin
//! ```
//!
//! Exit status: 0 when no target found anything, 1 on findings, 2 on a usage or I/O error,
//! 3 when the watchdog caught a hang.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use vsa_fuzz::alloc::Counting;
use vsa_fuzz::driver::{self, Options};
use vsa_fuzz::targets::{self, TARGETS, Target};

#[global_allocator]
static ALLOC: Counting = Counting;

/// Fuzz vsa's decoders: frame, request, image, wal, snapshot, model (or all).
#[derive(Debug, Parser)]
#[command(name = "vsa-fuzz", version)]
struct Args {
    /// A target name, or `all`.
    target: String,
    /// Inputs per target, seeds included (`10M`, `500k` and `10_000_000` are accepted).
    #[arg(long, default_value = "1M", value_parser = parse_count)]
    inputs: u64,
    /// Stop each target after this many seconds even if it has not run `--inputs` yet.
    #[arg(long)]
    seconds: Option<f64>,
    /// Seed of the mutator (the same seed and counts repeat a run exactly).
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Largest generated input in bytes (default: the target's own, 8 KiB to 576 KiB).
    #[arg(long)]
    max_len: Option<usize>,
    /// Where findings are saved.
    #[arg(long)]
    findings: Option<PathBuf>,
    /// An input running longer than this many milliseconds is a hang.
    #[arg(long, default_value_t = 10_000)]
    hang_ms: u64,
    /// Refuse allocations beyond this many MiB live in total (the process then aborts and
    /// the input is kept as a crash finding).
    #[arg(long, default_value_t = 2048)]
    hard_limit_mb: usize,
    /// Add the files of `<DIR>/<target>/` to the seeds (e.g. `fuzz/libfuzzer/corpus`, grown
    /// by `cargo fuzz`).
    #[arg(long)]
    corpus: Option<PathBuf>,
    /// Save the input with the highest allocation peak as `<findings>/<target>-peak.bin`.
    #[arg(long)]
    keep_peak: bool,
    /// Run this one saved input through the target, uncaught, and exit.
    #[arg(long)]
    replay: Option<PathBuf>,
    /// Write the target's seed corpus into this folder (one subfolder per target) and exit.
    #[arg(long)]
    write_corpus: Option<PathBuf>,
}

fn parse_count(s: &str) -> Result<u64, String> {
    let s = s.replace('_', "");
    let (digits, factor) = match s.chars().last() {
        Some('k' | 'K') => (&s[..s.len() - 1], 1_000),
        Some('m' | 'M') => (&s[..s.len() - 1], 1_000_000),
        _ => (&s[..], 1),
    };
    digits
        .parse::<u64>()
        .map(|n| n * factor)
        .map_err(|e| format!("{s:?}: {e}"))
}

fn main() -> ExitCode {
    let args = Args::parse();
    alloc_limit(args.hard_limit_mb);
    let chosen: Vec<&'static Target> = if args.target == "all" {
        TARGETS.iter().collect()
    } else if let Some(t) = targets::by_name(&args.target) {
        vec![t]
    } else {
        let names: Vec<&str> = TARGETS.iter().map(|t| t.name).collect();
        eprintln!(
            "unknown target {:?}; one of {} or all",
            args.target,
            names.join(", ")
        );
        return ExitCode::from(2);
    };
    if let Some(dir) = &args.write_corpus {
        for t in &chosen {
            match driver::write_corpus(t, &dir.join(t.name)) {
                Ok(n) => println!("{}: {n} seeds in {}", t.name, dir.join(t.name).display()),
                Err(e) => {
                    eprintln!("{}: {e}", dir.display());
                    return ExitCode::from(2);
                }
            }
        }
        return ExitCode::SUCCESS;
    }
    if let Some(path) = &args.replay {
        let input = match std::fs::read(path) {
            Ok(b) => b,
            Err(e) => {
                eprintln!("{}: {e}", path.display());
                return ExitCode::from(2);
            }
        };
        for t in &chosen {
            let (outcome, peak) = driver::replay(t, &input);
            println!(
                "{}: {outcome:?}, peak allocation {peak} bytes (cap {})",
                t.name,
                (t.cap)(input.len())
            );
        }
        return ExitCode::SUCCESS;
    }
    let mut opts = Options {
        inputs: args.inputs,
        time_limit: args.seconds.map(Duration::from_secs_f64),
        seed: args.seed,
        max_len: args.max_len,
        hang_ms: args.hang_ms,
        keep_peak: args.keep_peak,
        corpus: args.corpus,
        ..Options::default()
    };
    if let Some(f) = args.findings {
        opts.findings = f;
    }
    println!(
        "vsa-fuzz: seed {}, up to {} inputs per target{}",
        opts.seed,
        opts.inputs,
        args.seconds
            .map(|s| format!(" or {s} s"))
            .unwrap_or_default()
    );
    match driver::run(&chosen, &opts) {
        Ok(reports) => {
            print!("{}", driver::table(&reports));
            let findings: usize = reports.iter().map(|r| r.findings.len()).sum();
            for f in reports.iter().flat_map(|r| &r.findings) {
                println!("finding ({}): {} — {}", f.kind, f.path.display(), f.message);
            }
            if findings == 0 {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            }
        }
        Err(e) => {
            eprintln!("vsa-fuzz: {e}");
            ExitCode::from(2)
        }
    }
}

fn alloc_limit(mb: usize) {
    vsa_fuzz::alloc::set_hard_limit(mb.saturating_mul(1 << 20));
}
