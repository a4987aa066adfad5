//! Command-line interface of `vsa`.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::commands;

/// vsa — visual search appliance.
#[derive(Debug, Parser)]
#[command(name = "vsa", version, about)]
pub struct Cli {
    /// More log output (-v info, -vv debug, -vvv trace); RUST_LOG overrides.
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    pub verbose: u8,
    /// The subcommand.
    #[command(subcommand)]
    pub command: Command,
}

/// Where the model and ONNX Runtime come from.
#[derive(Debug, Clone, Args, Default)]
pub struct ModelArgs {
    /// Path of libonnxruntime.so (default: ORT_DYLIB_PATH, then .ort/lib/ of the project).
    #[arg(long, env = "ORT_DYLIB_PATH")]
    pub ort_lib: Option<PathBuf>,
    /// Model manifest (default: the bundled models/manifest.toml).
    #[arg(long)]
    pub model: Option<PathBuf>,
    /// ONNX Runtime intra-op threads per model session.
    #[arg(long, default_value_t = 1)]
    pub threads: usize,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the appliance: model workers, index partitions, TCP server.
    Serve(commands::serve::ServeArgs),
    /// Run the bundled demo: embed the bundled sample photos, print their classes and similarities.
    Demo(commands::demo::DemoArgs),
    /// Embed image files with the model: top classes, and a cosine similarity table.
    Embed(commands::embed::EmbedArgs),
    /// Stream a catalogue (JSONL manifest) into a running appliance.
    Ingest(commands::ingest::IngestArgs),
    /// Search a running appliance with a photo.
    Search(commands::search::SearchArgs),
    /// Evaluate a running appliance on an evalset (recall@k, MRR, category accuracy, latency).
    Eval(commands::eval::EvalArgs),
    /// One-line health check; exit 0 healthy, 1 degraded, 2 down.
    Health(commands::health::HealthArgs),
    /// Server statistics.
    Stats(commands::stats::StatsArgs),
    /// Operator actions (admin token): snapshot now; panic or stall an actor (rehearsals).
    Admin(commands::admin::AdminArgs),
    /// Shard rebalancing (admin token): `--plan`, `--apply PLAN_ID`, `--status`, `--cancel`.
    Rebalance(commands::admin::RebalanceArgs),
    /// Export training data mined from clicks: triplets and co-click virtual ids (JSONL).
    ExportClicks(commands::export_clicks::ExportClicksArgs),
    /// The operator console: watch the live system, rebalance shards, rerank (admin token).
    Console(commands::console::ConsoleArgs),
    /// Load generator on loopback: N clients, bounded requests and time, optional rate.
    BenchLoad(commands::bench_load::BenchLoadArgs),
}

/// Runs a parsed command line; returns the process exit code.
pub fn run(cli: Cli) -> anyhow::Result<i32> {
    match cli.command {
        Command::Serve(args) => commands::serve::run(args),
        Command::Demo(args) => commands::demo::run(args),
        Command::Embed(args) => commands::embed::run(args),
        Command::Ingest(args) => commands::ingest::run(args),
        Command::Search(args) => commands::search::run(args),
        Command::Eval(args) => commands::eval::run(args),
        Command::Health(args) => commands::health::run(args),
        Command::Stats(args) => commands::stats::run(args),
        Command::Admin(args) => commands::admin::run(args),
        Command::Rebalance(args) => commands::admin::run_rebalance(args),
        Command::ExportClicks(args) => commands::export_clicks::run(args),
        Command::Console(args) => commands::console::run(args),
        Command::BenchLoad(args) => commands::bench_load::run(args),
    }
}
