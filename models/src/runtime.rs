//! Finding and loading the ONNX Runtime shared library without any download.
//!
//! `ort` is built with `load-dynamic`: the library is opened at run time. The search order is
//! an explicit path (`--ort-lib`), then `ORT_DYLIB_PATH`, then the project-local `.ort/lib/`
//! that `scripts/setup.sh` fills from the PyPI `onnxruntime` wheel. `ort::init_from` is used
//! because plain `ort::init` panics when the library is missing; we return a typed error naming
//! every place we looked and the setup command.

use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};

use crate::error::{ModelError, Result};

/// File name of the library inside the project-local folder.
pub const LIB_NAME: &str = "libonnxruntime.so";
/// The project-local folder, relative to the project root.
pub const LOCAL_DIR: &str = ".ort/lib";

static ENV: OnceLock<(PathBuf, ort::environment::Environment)> = OnceLock::new();
static INIT_LOCK: Mutex<()> = Mutex::new(());

/// The candidate library paths. A path named explicitly (`--ort-lib`, then `ORT_DYLIB_PATH`) is
/// the only candidate: asking for one library and silently getting another would hide mistakes.
/// Otherwise the project-local `.ort/lib/` of each possible project root, in order.
pub fn candidates(explicit: Option<&Path>) -> Vec<PathBuf> {
    if let Some(p) = explicit {
        return vec![p.to_path_buf()];
    }
    if let Some(p) = std::env::var_os("ORT_DYLIB_PATH").filter(|p| !p.is_empty()) {
        return vec![PathBuf::from(p)];
    }
    let mut out: Vec<PathBuf> = Vec::new();
    for root in crate::project_roots() {
        let p = root.join(LOCAL_DIR).join(LIB_NAME);
        if !out.contains(&p) {
            out.push(p);
        }
    }
    out
}

/// Loads ONNX Runtime once per process and returns the path it came from.
///
/// Later calls return the first result; an explicit path given later is ignored (ONNX Runtime
/// cannot be loaded twice into one process).
pub fn init(explicit: Option<&Path>) -> Result<&'static Path> {
    if let Some((p, _)) = ENV.get() {
        return Ok(p);
    }
    // Only one thread may build the environment; the others wait and see its result.
    let _guard = INIT_LOCK
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    if let Some((p, _)) = ENV.get() {
        return Ok(p);
    }
    let tried = candidates(explicit);
    let Some(path) = tried.iter().find(|p| p.is_file()).cloned() else {
        return Err(ModelError::RuntimeNotFound { tried });
    };
    let builder = ort::init_from(&path).map_err(|e| ModelError::RuntimeLoad {
        path: path.clone(),
        reason: e.to_string(),
    })?;
    let env = builder
        .with_name("vsa")
        .build()
        .map_err(|e| ModelError::RuntimeLoad {
            path: path.clone(),
            reason: e.to_string(),
        })?;
    let (p, _) = ENV.get_or_init(|| (path, env));
    Ok(p)
}

/// The process-wide ONNX Runtime environment, loading the library from the default places if
/// [`init`] was not called first.
pub fn environment() -> Result<&'static ort::environment::Environment> {
    init(None)?;
    ENV.get()
        .map(|(_, env)| env)
        .ok_or_else(|| ModelError::Inference("ONNX Runtime environment missing after init".into()))
}
