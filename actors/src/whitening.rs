//! The engine's learned whitening (`[quality.whitening]`): ingest adds pairs (a synthetic
//! real-shot view of an item, the item's index vector) to a scatter accumulator; once
//! `min_pairs` exist, and again whenever the count doubles, a [`Whitening`] is fitted off the
//! executor and published. Searches whose preset has `whitened > 0` send the transformed
//! query vectors to the partitions, which score `(1 − β)·cos + β·sim_M` per item.
//!
//! With a data folder the state (pairs and fit) is saved to `model/whitening.bin` after each
//! fit and at every checkpoint, and read back at start, so a restart keeps the transform;
//! pairs added after the last save are lost with a crash (they only delay the next refit).

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use vsa_index::{ScatterAccumulator, Whitening, WhiteningState};

use crate::quality::WhiteningConfig;

/// Accumulator, fitted whitening and the fit schedule.
#[derive(Debug)]
pub struct Whitener {
    config: WhiteningConfig,
    acc: Mutex<ScatterAccumulator>,
    fitted: RwLock<Option<Arc<Whitening>>>,
    next_fit: AtomicU64,
    fitting: AtomicBool,
    /// Where the state is kept (None: in memory only).
    file: Option<PathBuf>,
    /// One save at a time.
    saving: Mutex<()>,
}

impl Whitener {
    /// A whitener for `dims`-dimensional embeddings, with the state saved in `dir` when there
    /// is one (an unreadable file is logged and set aside, and the whitener starts empty).
    pub fn new(config: WhiteningConfig, dims: usize, dir: Option<PathBuf>) -> Self {
        let file = dir.map(|d| d.join("model").join("whitening.bin"));
        let state = file.as_deref().and_then(|f| match std::fs::read(f) {
            Ok(bytes) => match WhiteningState::from_bytes(&bytes, dims) {
                Ok(s) => Some(s),
                Err(e) => {
                    let aside = f.with_extension("bad");
                    tracing::error!(file = %f.display(), error = %e, aside = %aside.display(), "whitening state unreadable; starting without it");
                    let _ = std::fs::rename(f, aside);
                    None
                }
            },
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => {
                tracing::error!(file = %f.display(), error = %e, "whitening state unreadable; starting without it");
                None
            }
        });
        let (acc, fitted) = match state {
            Some(s) => (s.accumulator, s.fitted.map(Arc::new)),
            None => (ScatterAccumulator::new(dims), None),
        };
        let next = match &fitted {
            Some(w) => w.pairs().saturating_mul(2),
            None => config.min_pairs,
        };
        Self {
            next_fit: AtomicU64::new(next.max(1)),
            config,
            acc: Mutex::new(acc),
            fitted: RwLock::new(fitted),
            fitting: AtomicBool::new(false),
            file,
            saving: Mutex::new(()),
        }
    }

    /// Writes the pairs and the fit to the data folder (no-op without one).
    pub fn save(&self) -> Result<(), String> {
        let Some(file) = &self.file else {
            return Ok(());
        };
        let _one = self
            .saving
            .lock()
            .map_err(|_| "whitening save lock poisoned")?;
        let acc = self
            .acc
            .lock()
            .map_err(|_| "whitening lock poisoned")?
            .clone();
        let fitted = self.current().map(|w| (*w).clone());
        let bytes = WhiteningState::new(acc, fitted)
            .to_bytes()
            .map_err(|e| e.to_string())?;
        if let Some(dir) = file.parent() {
            std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        }
        crate::durability::write_atomic(file, &bytes).map_err(|e| e.to_string())
    }

    /// Synthetic views wanted per ingested item (0: whitening off).
    pub fn views(&self) -> usize {
        self.config.views
    }

    /// The current whitening, once fitted.
    pub fn current(&self) -> Option<Arc<Whitening>> {
        self.fitted.read().ok().and_then(|w| w.clone())
    }

    /// Pairs accumulated so far.
    pub fn pairs(&self) -> u64 {
        self.acc.lock().map_or(0, |a| a.pairs())
    }

    /// Adds one item's pairs; true when a fit is due (the caller runs [`Whitener::fit`]
    /// off the executor).
    pub fn add(&self, views: &[Vec<f32>], anchor: &[f32]) -> bool {
        let Ok(mut acc) = self.acc.lock() else {
            return false;
        };
        for v in views {
            if let Err(e) = acc.add_pair(v, anchor) {
                tracing::warn!(error = %e, "whitening pair left out");
            }
        }
        acc.pairs() >= self.next_fit.load(Ordering::Relaxed)
            && !self.fitting.swap(true, Ordering::AcqRel)
    }

    /// Fits on a copy of the accumulator (ingest goes on meanwhile) and publishes the result.
    pub fn fit(&self) {
        let snapshot = self.acc.lock().map(|a| a.clone());
        if let Ok(mut acc) = snapshot {
            let pairs = acc.pairs();
            let t = std::time::Instant::now();
            match acc.fit(self.config.rank, self.config.shrink, 0x3417E) {
                Ok(w) => {
                    tracing::info!(
                        pairs,
                        rank = w.rank(),
                        ms = t.elapsed().as_millis() as u64,
                        "whitening fitted"
                    );
                    if let Ok(mut f) = self.fitted.write() {
                        *f = Some(Arc::new(w));
                    }
                    if let Err(e) = self.save() {
                        tracing::error!(error = %e, "saving the whitening failed");
                    }
                }
                Err(e) => tracing::warn!(pairs, error = %e, "whitening fit failed"),
            }
            // Failed or not, the next try waits for twice the pairs.
            self.next_fit
                .store(pairs.saturating_mul(2).max(1), Ordering::Relaxed);
        }
        self.fitting.store(false, Ordering::Release);
    }
}
