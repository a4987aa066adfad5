//! `vsa-models`: everything between an image's bytes and the CNN's outputs.
//!
//! It owns the bundled model files and their manifest, the discovery and loading of the ONNX
//! Runtime shared library (no download at run time), the image front door with its limits, the
//! resize + normalise preprocessing and the [`Embedder`] (one ort session, blocking, one per
//! worker thread). It is a leaf crate: no tokio, no other vsa crate.
//!
//! Modules:
//! - [`runtime`]: find `libonnxruntime` (`--ort-lib` → `ORT_DYLIB_PATH` → `.ort/lib/`), load it once.
//! - [`manifest`]: `models/manifest.toml`, the model contract, sha256 check.
//! - [`decode`]: bytes → RGB with byte and pixel limits checked before decoding, EXIF orientation.
//! - [`preprocess`]: fast_image_resize bilinear resize and crop, `(x − mean) / scale` into NCHW.
//! - [`embedder`]: the session, batches, typed outputs, class names, vector helpers.
//! - [`head`]: the classifier head read from the ONNX file (class probabilities of a stored
//!   embedding) and the category codebook built on it.
//! - [`roi`]: localisation by catalogue similarity (feature map × prototypes → boxes), k-means,
//!   rotation on white.
//! - [`colour`]: named-colour histogram with background suppression, dominant colour name.
//! - [`error`]: [`ModelError`], split into bad input and service faults.

pub mod augment;
pub mod colour;
pub mod decode;
pub mod embedder;
pub mod error;
pub mod head;
pub mod manifest;
pub mod preprocess;
pub mod quality;
pub mod roi;
pub mod runtime;

use std::path::PathBuf;

pub use augment::query_view;
pub use colour::{COLOURS, colour_histogram, colour_name, colour_similarity};
pub use decode::{DecodeLimits, decode_file, decode_rgb};
pub use embedder::{
    Batch, ClassScore, Embedder, EmbedderOptions, FeatureMap, Inference, cosine, l2_normalise,
    top_classes,
};
pub use error::{ModelError, Result};
pub use head::{CategoryCodebook, ClassifierHead};
pub use image;
pub use manifest::Manifest;
pub use preprocess::{Preprocessor, Rect};
pub use quality::{quality_score, quality_signals};
pub use roi::{Prototypes, kmeans, localise, rotate_white};

/// Folders that may be the vsa project root, most specific first: `VSA_HOME`, the ancestors of
/// the running executable (a binary in `target/release/` finds the checkout it was built in),
/// then the checkout this crate was compiled from.
pub fn project_roots() -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = Vec::new();
    let mut push = |p: PathBuf| {
        if !out.contains(&p) {
            out.push(p);
        }
    };
    if let Some(home) = std::env::var_os("VSA_HOME").filter(|h| !h.is_empty()) {
        push(PathBuf::from(home));
    }
    if let Ok(exe) = std::env::current_exe() {
        for dir in exe.ancestors().skip(1).take(4) {
            if dir.join("models").join("manifest.toml").is_file() || dir.join(".ort").is_dir() {
                push(dir.to_path_buf());
            }
        }
    }
    let compiled = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    if let Some(root) = compiled.parent() {
        push(root.to_path_buf());
    }
    out
}

#[cfg(test)]
mod tests;
