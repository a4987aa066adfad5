//! `vsa embed IMAGE...`: the model on image files — top classes and a similarity table.

use std::path::PathBuf;

use anyhow::Context;
use clap::Args;
use vsa_models::{DecodeLimits, Embedder, cosine, decode_file};

use crate::cli::ModelArgs;

/// Arguments of `vsa embed`.
#[derive(Debug, Args)]
pub struct EmbedArgs {
    /// Image files (JPEG, PNG, WebP, GIF, BMP).
    #[arg(required = true)]
    pub images: Vec<PathBuf>,
    /// Classes to print per image.
    #[arg(long, default_value_t = 5)]
    pub top: usize,
    /// Model and runtime.
    #[command(flatten)]
    pub model: ModelArgs,
}

/// Runs `vsa embed`.
pub fn run(args: EmbedArgs) -> anyhow::Result<i32> {
    let mut embedder = super::load_embedder(&args.model)?;
    report(&mut embedder, &args.images, args.top)?;
    Ok(0)
}

/// Embeds `paths`, prints each image's top classes and the pairwise cosine table.
pub fn report(embedder: &mut Embedder, paths: &[PathBuf], top: usize) -> anyhow::Result<()> {
    let limits = DecodeLimits::default();
    let images = paths
        .iter()
        .map(|p| decode_file(p, &limits).with_context(|| format!("reading {}", p.display())))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let refs: Vec<_> = images.iter().map(|i| (i, None)).collect();
    let out = embedder.embed_images(&refs)?;
    let names: Vec<String> = paths
        .iter()
        .map(|p| {
            p.file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_else(|| p.display().to_string())
        })
        .collect();
    for (name, logits) in names.iter().zip(&out.logits) {
        println!("{name}:");
        for c in embedder.top_classes(logits, top) {
            println!("  {:>6.2}%  {}", c.probability * 100.0, c.name);
        }
    }
    let width = names.iter().map(String::len).max().unwrap_or(4).max(6);
    println!("\ncosine similarity of embeddings:");
    print!("{:width$}", "");
    for n in &names {
        print!("  {n:>width$}");
    }
    println!();
    for (i, a) in out.embeddings.iter().enumerate() {
        print!("{:width$}", names[i]);
        for b in &out.embeddings {
            print!("  {:>width$.3}", cosine(a, b));
        }
        println!();
    }
    Ok(())
}
