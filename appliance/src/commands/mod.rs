//! One module per `vsa` subcommand.

pub mod admin;
pub mod bench_load;
pub mod client_common;
#[cfg(test)]
mod client_fake;
pub mod console;
pub mod demo;
pub mod embed;
pub mod eval;
pub mod export_clicks;
pub mod health;
pub mod ingest;
pub mod search;
pub mod serve;
pub mod stats;

use anyhow::Context;
use vsa_models::{Embedder, EmbedderOptions, Manifest};

use crate::cli::ModelArgs;

/// Loads ONNX Runtime and the model named by the arguments (or the bundled one).
pub fn load_embedder(args: &ModelArgs) -> anyhow::Result<Embedder> {
    vsa_models::runtime::init(args.ort_lib.as_deref())?;
    let manifest = match &args.model {
        Some(p) => Manifest::load(p)?,
        None => Manifest::bundled()?,
    };
    Embedder::load(
        &manifest,
        &EmbedderOptions {
            intra_threads: args.threads,
        },
    )
    .with_context(|| format!("loading model {}", manifest.model_path().display()))
}
