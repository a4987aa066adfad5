//! The Embedder: one ONNX Runtime session (blocking, `&mut self`: one per worker thread) plus
//! its preprocessor, turning images into embeddings, feature maps and logits.

use image::RgbImage;
use ort::session::Session;
use ort::session::builder::GraphOptimizationLevel;
use ort::value::TensorRef;

use crate::error::{ModelError, Result};
use crate::manifest::Manifest;
use crate::preprocess::{Preprocessor, Rect};

/// How a session is built.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EmbedderOptions {
    /// ONNX Runtime intra-op threads for this session (1 = the worker's own thread only).
    pub intra_threads: usize,
}

impl Default for EmbedderOptions {
    fn default() -> Self {
        Self { intra_threads: 1 }
    }
}

/// A batch of images already resized to one shape, normalised into NCHW f32.
#[derive(Debug, Clone, PartialEq)]
pub struct Batch {
    height: u32,
    width: u32,
    len: usize,
    data: Vec<f32>,
}

impl Batch {
    /// An empty batch of `height` × `width` images.
    pub fn new(height: u32, width: u32) -> Self {
        Self {
            height,
            width,
            len: 0,
            data: Vec::new(),
        }
    }

    /// Number of images.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True if no image was added.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// `(height, width)` of every image in the batch.
    pub fn shape(&self) -> (u32, u32) {
        (self.height, self.width)
    }

    /// Appends an image that already has the batch's size.
    pub fn push(&mut self, pre: &Preprocessor, img: &RgbImage) -> Result<()> {
        if (img.height(), img.width()) != (self.height, self.width) {
            return Err(ModelError::InvalidArgument(format!(
                "image is {}x{}, batch takes {}x{}",
                img.width(),
                img.height(),
                self.width,
                self.height
            )));
        }
        let n = 3 * self.height as usize * self.width as usize;
        let start = self.data.len();
        self.data.resize(start + n, 0.0);
        pre.normalise_into(img, &mut self.data[start..])?;
        self.len += 1;
        Ok(())
    }

    /// Appends an already normalised CHW tensor of the batch's size.
    pub fn push_normalised(&mut self, chw: &[f32]) -> Result<()> {
        let n = 3 * self.height as usize * self.width as usize;
        if chw.len() != n {
            return Err(ModelError::InvalidArgument(format!(
                "tensor holds {} floats, batch takes {n}",
                chw.len()
            )));
        }
        self.data.extend_from_slice(chw);
        self.len += 1;
        Ok(())
    }

    /// The raw NCHW data.
    pub fn data(&self) -> &[f32] {
        &self.data
    }
}

/// A feature map of one image: `channels` × `height` × `width`, CHW order.
#[derive(Debug, Clone, PartialEq)]
pub struct FeatureMap {
    /// Channels (1280 for the bundled model).
    pub channels: usize,
    /// Rows (input height / 32).
    pub height: usize,
    /// Columns (input width / 32).
    pub width: usize,
    /// CHW data.
    pub data: Vec<f32>,
}

impl FeatureMap {
    /// The channel vector of one cell.
    pub fn cell(&self, y: usize, x: usize) -> Vec<f32> {
        let plane = self.height * self.width;
        (0..self.channels)
            .map(|c| self.data[c * plane + y * self.width + x])
            .collect()
    }

    /// The mean channel vector over cells `[y0, y1) × [x0, x1)` (clamped; empty → all cells).
    pub fn mean_over(&self, y0: usize, y1: usize, x0: usize, x1: usize) -> Vec<f32> {
        let (y1, x1) = (y1.min(self.height), x1.min(self.width));
        let (y0, y1, x0, x1) = if y0 >= y1 || x0 >= x1 {
            (0, self.height, 0, self.width)
        } else {
            (y0, y1, x0, x1)
        };
        let plane = self.height * self.width;
        let count = ((y1 - y0) * (x1 - x0)) as f32;
        (0..self.channels)
            .map(|c| {
                let base = c * plane;
                let mut s = 0.0f32;
                for y in y0..y1 {
                    let row = base + y * self.width;
                    s += self.data[row + x0..row + x1].iter().sum::<f32>();
                }
                s / count
            })
            .collect()
    }
}

/// What one model run returns, per image of the batch.
#[derive(Debug, Clone, PartialEq)]
pub struct Inference {
    /// Pooled embeddings (not normalised).
    pub embeddings: Vec<Vec<f32>>,
    /// Final feature maps.
    pub feature_maps: Vec<FeatureMap>,
    /// Classifier logits (empty vectors when the model has no head).
    pub logits: Vec<Vec<f32>>,
}

/// A class of the model's head with its softmax probability.
#[derive(Debug, Clone, PartialEq)]
pub struct ClassScore {
    /// Class index.
    pub index: usize,
    /// Class name (empty if the manifest names no class file).
    pub name: String,
    /// Softmax probability.
    pub probability: f32,
}

/// One model session with its preprocessing. Not `Sync`: give each worker thread its own.
pub struct Embedder {
    session: Session,
    manifest: Manifest,
    pre: Preprocessor,
    classes: Vec<String>,
}

impl Embedder {
    /// Builds a session for the model a manifest describes (sha256 checked).
    pub fn load(manifest: &Manifest, options: &EmbedderOptions) -> Result<Self> {
        let env = crate::runtime::environment()?;
        let bytes = manifest.read_model_bytes()?;
        let threads = options.intra_threads.max(1);
        let inference = |e: ort::Error<ort::session::builder::SessionBuilder>| {
            ModelError::Inference(e.to_string())
        };
        let session = Session::builder(env)?
            .with_optimization_level(GraphOptimizationLevel::All)
            .map_err(inference)?
            .with_intra_threads(threads)
            .map_err(inference)?
            .with_inter_threads(1)
            .map_err(inference)?
            .with_parallel_execution(false)
            .map_err(inference)?
            // Spinning burns a core while idle; workers wait on a channel instead.
            .with_intra_op_spinning(false)
            .map_err(inference)?
            .commit_from_memory(&bytes)?;
        let classes = manifest.class_names()?;
        Ok(Self {
            session,
            pre: Preprocessor::new(manifest.input.mean, manifest.input.scale),
            manifest: manifest.clone(),
            classes,
        })
    }

    /// The manifest this session was built from.
    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    /// The preprocessor (resizing, normalisation) matching this model.
    pub fn preprocessor(&mut self) -> &mut Preprocessor {
        &mut self.pre
    }

    /// Embedding input size `(height, width)`.
    pub fn input_size(&self) -> (u32, u32) {
        (self.manifest.input.height, self.manifest.input.width)
    }

    /// Runs one batch through the model.
    pub fn run(&mut self, batch: &Batch) -> Result<Inference> {
        if batch.is_empty() {
            return Err(ModelError::InvalidArgument("empty batch".into()));
        }
        let (h, w) = batch.shape();
        let stride = self.manifest.input.stride;
        if !h.is_multiple_of(stride) || !w.is_multiple_of(stride) {
            return Err(ModelError::InvalidArgument(format!(
                "input {w}x{h} is not a multiple of the model stride {stride}"
            )));
        }
        let n = batch.len();
        let input = TensorRef::from_array_view(([n, 3, h as usize, w as usize], batch.data()))?;
        let spec = &self.manifest.outputs;
        let outputs = self
            .session
            .run(ort::inputs![self.manifest.input.name.as_str() => input])?;

        let (shape, emb) = outputs
            .get(&spec.embedding)
            .ok_or_else(|| ModelError::Inference(format!("no output {}", spec.embedding)))?
            .try_extract_tensor::<f32>()?;
        let dim = spec.embedding_dim;
        if shape.len() != 2 || shape[0] as usize != n || shape[1] as usize != dim {
            return Err(ModelError::Inference(format!(
                "embedding shape {shape:?}, expected [{n}, {dim}]"
            )));
        }
        let embeddings = emb.chunks_exact(dim).map(<[f32]>::to_vec).collect();

        let (shape, fm) = outputs
            .get(&spec.feature_map)
            .ok_or_else(|| ModelError::Inference(format!("no output {}", spec.feature_map)))?
            .try_extract_tensor::<f32>()?;
        if shape.len() != 4 || shape[0] as usize != n || shape[1] as usize != spec.feature_channels
        {
            return Err(ModelError::Inference(format!(
                "feature map shape {shape:?}, expected [{n}, {}, H, W]",
                spec.feature_channels
            )));
        }
        let (fh, fw) = (shape[2] as usize, shape[3] as usize);
        let per = spec.feature_channels * fh * fw;
        let feature_maps = fm
            .chunks_exact(per)
            .map(|d| FeatureMap {
                channels: spec.feature_channels,
                height: fh,
                width: fw,
                data: d.to_vec(),
            })
            .collect();

        let logits = match (&spec.logits, spec.num_classes) {
            (Some(name), Some(k)) if k > 0 => {
                let (_, lg) = outputs
                    .get(name)
                    .ok_or_else(|| ModelError::Inference(format!("no output {name}")))?
                    .try_extract_tensor::<f32>()?;
                if lg.len() != n * k {
                    return Err(ModelError::Inference(format!(
                        "logits hold {} values, expected {}",
                        lg.len(),
                        n * k
                    )));
                }
                lg.chunks_exact(k).map(<[f32]>::to_vec).collect()
            }
            _ => vec![Vec::new(); n],
        };
        Ok(Inference {
            embeddings,
            feature_maps,
            logits,
        })
    }

    /// Resizes each image (or its region) to the embedding size and runs them as one batch.
    pub fn embed_images(&mut self, images: &[(&RgbImage, Option<Rect>)]) -> Result<Inference> {
        let (h, w) = self.input_size();
        let mut batch = Batch::new(h, w);
        for (img, rect) in images {
            let resized = self.pre.resize(img, *rect, w, h)?;
            batch.push(&self.pre, &resized)?;
        }
        self.run(&batch)
    }

    /// The `k` most probable classes of one image's logits.
    pub fn top_classes(&self, logits: &[f32], k: usize) -> Vec<ClassScore> {
        top_classes(logits, &self.classes, k)
    }
}

/// Softmax over `logits` and the `k` most probable classes, best first.
pub fn top_classes(logits: &[f32], names: &[String], k: usize) -> Vec<ClassScore> {
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let exp: Vec<f32> = logits.iter().map(|l| (l - max).exp()).collect();
    let sum: f32 = exp.iter().sum();
    let mut idx: Vec<usize> = (0..logits.len()).collect();
    idx.sort_by(|&a, &b| exp[b].total_cmp(&exp[a]).then(a.cmp(&b)));
    idx.into_iter()
        .take(k)
        .map(|i| ClassScore {
            index: i,
            name: names.get(i).cloned().unwrap_or_default(),
            probability: exp[i] / sum,
        })
        .collect()
}

/// L2-normalises a vector in place (a zero vector stays zero).
pub fn l2_normalise(v: &mut [f32]) {
    let n = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    if n > 0.0 {
        v.iter_mut().for_each(|x| *x /= n);
    }
}

/// Cosine similarity of two vectors (0 when either is zero).
pub fn cosine(a: &[f32], b: &[f32]) -> f32 {
    let (mut ab, mut aa, mut bb) = (0.0f32, 0.0f32, 0.0f32);
    for (x, y) in a.iter().zip(b) {
        ab += x * y;
        aa += x * x;
        bb += y * y;
    }
    if aa == 0.0 || bb == 0.0 {
        0.0
    } else {
        ab / (aa.sqrt() * bb.sqrt())
    }
}
