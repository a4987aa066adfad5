//! The crate's one error type.

use std::path::PathBuf;

/// Everything that can go wrong in `vsa-models`.
///
/// Variants split into *bad input* (the caller sent something we refuse: [`ModelError::is_bad_input`])
/// and *service faults* (the runtime, the model files or the machine).
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    /// No ONNX Runtime shared library was found at any of the candidate paths.
    #[error(
        "ONNX Runtime library not found (looked at: {}); run `scripts/setup.sh` to fetch it, or pass --ort-lib / set ORT_DYLIB_PATH",
        tried.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", ")
    )]
    RuntimeNotFound {
        /// Every path that was tried, in order.
        tried: Vec<PathBuf>,
    },
    /// The library exists but could not be loaded or initialised.
    #[error("could not load ONNX Runtime from {path}: {reason}")]
    RuntimeLoad {
        /// The library path.
        path: PathBuf,
        /// What ONNX Runtime or the loader said.
        reason: String,
    },
    /// A model file or its manifest is missing or unreadable.
    #[error("model file {path}: {reason}")]
    ModelFile {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// The manifest does not parse or contradicts itself.
    #[error("model manifest {path}: {reason}")]
    Manifest {
        /// The manifest file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// ONNX Runtime failed while building a session or running the model.
    #[error("inference failed: {0}")]
    Inference(String),
    /// The input is larger than the configured byte limit (checked before decoding).
    #[error("image is {len} bytes, over the limit of {max}")]
    TooManyBytes {
        /// Input length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The image header declares more pixels than allowed (checked before decoding pixels).
    #[error(
        "image is {width}x{height}, over the limit of {max_pixels} pixels or {max_side} per side"
    )]
    TooManyPixels {
        /// Declared width.
        width: u32,
        /// Declared height.
        height: u32,
        /// Pixel-count limit.
        max_pixels: u64,
        /// Side-length limit.
        max_side: u32,
    },
    /// The bytes are not an image in a supported format (JPEG, PNG, WebP, GIF, BMP).
    #[error("not a supported image (JPEG, PNG, WebP, GIF or BMP)")]
    UnsupportedFormat,
    /// The image could not be decoded (truncated, corrupt).
    #[error("image could not be decoded: {0}")]
    Decode(String),
    /// A caller-side argument is invalid (empty batch, bad box, wrong shape).
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
}

impl ModelError {
    /// True when the error is the caller's input, not a fault of the service.
    pub fn is_bad_input(&self) -> bool {
        matches!(
            self,
            Self::TooManyBytes { .. }
                | Self::TooManyPixels { .. }
                | Self::UnsupportedFormat
                | Self::Decode(_)
                | Self::InvalidArgument(_)
        )
    }
}

impl From<ort::Error> for ModelError {
    fn from(e: ort::Error) -> Self {
        Self::Inference(e.to_string())
    }
}

/// `Result` with [`ModelError`].
pub type Result<T, E = ModelError> = std::result::Result<T, E>;
