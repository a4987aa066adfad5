//! `vsa demo`: the README's main job on the embedded default.

use std::path::PathBuf;

use clap::Args;

use crate::cli::ModelArgs;

/// Arguments of `vsa demo`.
#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Model and runtime.
    #[command(flatten)]
    pub model: ModelArgs,
}

/// Runs the demo on the bundled sample photos.
pub fn run(args: DemoArgs) -> anyhow::Result<i32> {
    let dir = bundled_samples_dir()?;
    let mut paths: Vec<PathBuf> = std::fs::read_dir(&dir)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            matches!(
                p.extension().and_then(|e| e.to_str()),
                Some("png" | "jpg" | "jpeg" | "webp")
            )
        })
        .collect();
    paths.sort();
    anyhow::ensure!(!paths.is_empty(), "no sample images in {}", dir.display());
    let mut embedder = super::load_embedder(&args.model)?;
    println!(
        "vsa demo: model {} ({}), ONNX Runtime {}\n",
        embedder.manifest().model.name,
        embedder.manifest().model.file,
        vsa_models::runtime::init(None)?.display()
    );
    super::embed::report(&mut embedder, &paths, 5)?;
    Ok(0)
}

fn bundled_samples_dir() -> anyhow::Result<PathBuf> {
    vsa_models::project_roots()
        .into_iter()
        .map(|r| r.join("models").join("testdata"))
        .find(|d| d.is_dir())
        .ok_or_else(|| {
            anyhow::anyhow!("bundled sample images (models/testdata) not found; set VSA_HOME")
        })
}
