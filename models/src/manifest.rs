//! The model manifest (`models/manifest.toml`): what the `.onnx` file expects and returns.
//!
//! Any model that follows the contract (one image input, pooled embedding, feature map,
//! optional logits) drops in by pointing the appliance at another manifest.

use std::path::{Path, PathBuf};

use serde::Deserialize;
use sha2::{Digest, Sha256};

use crate::error::{ModelError, Result};

/// The parsed manifest, with the paths of the files it names resolved.
#[derive(Debug, Clone, Deserialize)]
pub struct Manifest {
    /// Identity and provenance.
    pub model: ModelInfo,
    /// The input tensor.
    pub input: InputSpec,
    /// The output tensors.
    pub outputs: OutputSpec,
    /// Folder the manifest was read from (file names are relative to it).
    #[serde(skip)]
    pub dir: PathBuf,
}

/// `[model]`: identity and provenance.
#[derive(Debug, Clone, Deserialize)]
pub struct ModelInfo {
    /// Short name, e.g. `efficientnet_lite0`.
    pub name: String,
    /// The `.onnx` file, relative to the manifest.
    pub file: String,
    /// Hex sha256 of the `.onnx` file; checked at load.
    pub sha256: String,
    /// Where the weights and architecture came from.
    pub source: String,
    /// Licence of the weights.
    pub licence: String,
    /// ONNX opset.
    pub opset: u32,
    /// Class names, one per line, relative to the manifest (optional).
    pub classes_file: Option<String>,
}

/// `[input]`: the image tensor the model takes.
#[derive(Debug, Clone, Deserialize)]
pub struct InputSpec {
    /// Input name in the graph.
    pub name: String,
    /// Must be `NCHW`.
    pub layout: String,
    /// Must be `RGB`.
    pub color: String,
    /// Height for embeddings.
    pub height: u32,
    /// Width for embeddings.
    pub width: u32,
    /// Input sides must be multiples of this (the network's total stride).
    pub stride: u32,
    /// Normalisation: `(x - mean) / scale`, x in 0..=255.
    pub mean: f32,
    /// See `mean`.
    pub scale: f32,
}

/// `[outputs]`: names and sizes of the outputs.
#[derive(Debug, Clone, Deserialize)]
pub struct OutputSpec {
    /// Pooled embedding output name.
    pub embedding: String,
    /// Its dimension.
    pub embedding_dim: usize,
    /// Feature map output name.
    pub feature_map: String,
    /// Its channel count.
    pub feature_channels: usize,
    /// Logits output name, if the model has a classifier head.
    pub logits: Option<String>,
    /// Number of classes of the head.
    pub num_classes: Option<usize>,
}

impl Manifest {
    /// Reads and validates a manifest file.
    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| ModelError::Manifest {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })?;
        let mut m: Manifest = toml::from_str(&text).map_err(|e| ModelError::Manifest {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })?;
        m.dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
        m.validate(path)?;
        Ok(m)
    }

    /// The bundled model's manifest, found next to the binary's project root
    /// (see [`crate::project_roots`]) or in `VSA_MODEL_DIR`.
    pub fn bundled() -> Result<Self> {
        let mut tried = Vec::new();
        let env_dir = std::env::var_os("VSA_MODEL_DIR").map(PathBuf::from);
        let dirs = env_dir
            .into_iter()
            .chain(crate::project_roots().into_iter().map(|r| r.join("models")));
        for dir in dirs {
            let p = dir.join("manifest.toml");
            if p.is_file() {
                return Self::load(&p);
            }
            tried.push(p);
        }
        Err(ModelError::ModelFile {
            path: tried.first().cloned().unwrap_or_default(),
            reason: format!(
                "bundled model manifest not found (looked at: {}); set VSA_MODEL_DIR or pass --model",
                tried
                    .iter()
                    .map(|p| p.display().to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        })
    }

    fn validate(&self, path: &Path) -> Result<()> {
        let bad = |reason: String| ModelError::Manifest {
            path: path.to_path_buf(),
            reason,
        };
        if self.input.layout != "NCHW" {
            return Err(bad(format!(
                "layout {} unsupported (NCHW only)",
                self.input.layout
            )));
        }
        if self.input.color != "RGB" {
            return Err(bad(format!(
                "colour order {} unsupported (RGB only)",
                self.input.color
            )));
        }
        if self.input.stride == 0
            || !self.input.height.is_multiple_of(self.input.stride)
            || !self.input.width.is_multiple_of(self.input.stride)
        {
            return Err(bad(
                "input height/width must be non-zero multiples of stride".into(),
            ));
        }
        if self.input.scale == 0.0 || !self.input.scale.is_finite() || !self.input.mean.is_finite()
        {
            return Err(bad("normalisation scale must be finite and non-zero".into()));
        }
        if self.outputs.embedding_dim == 0 || self.outputs.feature_channels == 0 {
            return Err(bad("output dimensions must be non-zero".into()));
        }
        Ok(())
    }

    /// Path of the `.onnx` file.
    pub fn model_path(&self) -> PathBuf {
        self.dir.join(&self.model.file)
    }

    /// Reads the `.onnx` file and checks its sha256 against the manifest.
    pub fn read_model_bytes(&self) -> Result<Vec<u8>> {
        let path = self.model_path();
        let bytes = std::fs::read(&path).map_err(|e| ModelError::ModelFile {
            path: path.clone(),
            reason: e.to_string(),
        })?;
        let digest = hex(&Sha256::digest(&bytes));
        if !digest.eq_ignore_ascii_case(&self.model.sha256) {
            return Err(ModelError::ModelFile {
                path,
                reason: format!(
                    "sha256 {digest} does not match the manifest's {} (rebuild with models/scripts/build_model.sh or fix the manifest)",
                    self.model.sha256
                ),
            });
        }
        Ok(bytes)
    }

    /// Class names of the classifier head, if the manifest names a file.
    pub fn class_names(&self) -> Result<Vec<String>> {
        let Some(file) = &self.model.classes_file else {
            return Ok(Vec::new());
        };
        let path = self.dir.join(file);
        let text = std::fs::read_to_string(&path).map_err(|e| ModelError::ModelFile {
            path: path.clone(),
            reason: e.to_string(),
        })?;
        let names: Vec<String> = text.lines().map(|l| l.trim().to_string()).collect();
        if let Some(n) = self.outputs.num_classes
            && n != names.len()
        {
            return Err(ModelError::ModelFile {
                path,
                reason: format!("{} class names for {n} classes", names.len()),
            });
        }
        Ok(names)
    }
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes
        .iter()
        .fold(String::with_capacity(bytes.len() * 2), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
}
