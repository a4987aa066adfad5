//! Learned whitening against nuisance (Radenović et al.'s "learned whitening", in a shrunk,
//! low-rank form): from pairs of embeddings of the *same* item under different conditions
//! (an ingest view against the item's index vector), the scatter of their differences
//! `Σw = E[(a − x)(a − x)ᵀ]` says which directions a photo's conditions move an embedding
//! along. Similarity is then measured with `M = (Σw + λI)⁻¹`, so moves along those directions
//! cost little:
//!
//! `sim(q, x) = qᵀMx / √(qᵀMq · xᵀMx)`.
//!
//! Only the top `r` eigen-directions of Σw are kept (the rest count as 0 before the shrinkage
//! `λ = shrink × trace(Σw)/d`), so with `cᵢ = Dᵢ/(Dᵢ+λ)` and up to the constant 1/λ,
//! `M = I − Σᵢ cᵢ vᵢvᵢᵀ`: a query vector costs `r` dot products to transform and an item
//! `r` dot products for its norm; a stored vector never changes.

use serde::{Deserialize, Serialize};

use crate::encoder::dot;
use crate::linalg::{self, Rng};
use crate::{Error, Result};

/// Difference vectors buffered before they are folded into the scatter matrix.
const FLUSH_ROWS: usize = 256;

/// Format version of a serialised [`WhiteningState`]; bumped on any change of meaning.
pub const WHITENING_VERSION: u32 = 1;

/// Accumulates the scatter of difference vectors (`d × d`, f64).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScatterAccumulator {
    dims: usize,
    pairs: u64,
    scatter: Vec<f64>,
    buffer: Vec<f32>,
}

impl ScatterAccumulator {
    /// An empty accumulator for `dims`-dimensional vectors.
    pub fn new(dims: usize) -> Self {
        Self {
            dims,
            pairs: 0,
            scatter: vec![0.0; dims * dims],
            buffer: Vec::with_capacity(FLUSH_ROWS * dims),
        }
    }

    /// Dimensions of the vectors.
    pub fn dims(&self) -> usize {
        self.dims
    }

    /// Pairs added so far.
    pub fn pairs(&self) -> u64 {
        self.pairs
    }

    /// Adds the pair (`view`, `anchor`): both unit vectors of the same item.
    pub fn add_pair(&mut self, view: &[f32], anchor: &[f32]) -> Result<()> {
        if view.len() != self.dims || anchor.len() != self.dims {
            return Err(Error::BadInput(format!(
                "pair of {} and {} dims for a {}-dim accumulator",
                view.len(),
                anchor.len(),
                self.dims
            )));
        }
        if view.iter().chain(anchor).any(|v| !v.is_finite()) {
            return Err(Error::BadInput("non-finite value in a pair".into()));
        }
        self.buffer
            .extend(view.iter().zip(anchor).map(|(a, b)| a - b));
        self.pairs += 1;
        if self.buffer.len() >= FLUSH_ROWS * self.dims {
            self.flush();
        }
        Ok(())
    }

    fn flush(&mut self) {
        let rows = self.buffer.len() / self.dims;
        if rows == 0 {
            return;
        }
        let g = linalg::gram(&self.buffer, rows, self.dims, 1);
        for (s, v) in self.scatter.iter_mut().zip(g) {
            *s += v;
        }
        self.buffer.clear();
    }

    /// Fits a [`Whitening`] keeping `rank` directions, shrinkage `shrink` (λ as a fraction of
    /// the mean eigenvalue). Needs at least `rank` pairs.
    pub fn fit(&mut self, rank: usize, shrink: f32, seed: u64) -> Result<Whitening> {
        self.flush();
        let d = self.dims;
        let r = rank.min(d);
        if r == 0 || self.pairs < r as u64 {
            return Err(Error::BadInput(format!(
                "need at least {r} pairs (and rank > 0), have {}",
                self.pairs
            )));
        }
        if !(shrink.is_finite() && shrink > 0.0) {
            return Err(Error::BadInput(format!("shrink must be > 0, got {shrink}")));
        }
        let n = self.pairs as f64;
        let cov: Vec<f64> = self.scatter.iter().map(|v| v / n).collect();
        let trace: f64 = (0..d).map(|i| cov[i * d + i]).sum();
        let lambda = f64::from(shrink) * trace / d as f64;
        if lambda <= 0.0 {
            return Err(Error::BadInput("the pairs do not differ".into()));
        }
        let mut rng = Rng::new(seed);
        let (values, dirs) = crate::encoder::top_eigenvectors(&cov, d, r, 12, &mut rng);
        let coef = values
            .iter()
            .map(|e| (e.max(0.0) / (e.max(0.0) + lambda)) as f32)
            .collect();
        Ok(Whitening {
            dims: d,
            dirs,
            coef,
            pairs: self.pairs,
        })
    }
}

/// What survives a restart: the accumulated pairs (so refits go on) and the fitted transform.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WhiteningState {
    version: u32,
    /// The pairs so far.
    pub accumulator: ScatterAccumulator,
    /// The transform in force, if fitted.
    pub fitted: Option<Whitening>,
}

impl WhiteningState {
    /// Bundles an accumulator and a fit for saving.
    pub fn new(accumulator: ScatterAccumulator, fitted: Option<Whitening>) -> Self {
        Self {
            version: WHITENING_VERSION,
            accumulator,
            fitted,
        }
    }

    /// Serialises (bincode).
    pub fn to_bytes(&self) -> Result<Vec<u8>> {
        bincode::serde::encode_to_vec(self, bincode::config::standard())
            .map_err(|e| Error::Codec(e.to_string()))
    }

    /// Reads what [`WhiteningState::to_bytes`] wrote for `dims`-dimensional embeddings;
    /// a file of another version, size or shape is an error, never a wrong transform.
    pub fn from_bytes(bytes: &[u8], dims: usize) -> Result<Self> {
        let (s, _): (Self, usize) =
            bincode::serde::decode_from_slice(bytes, bincode::config::standard())
                .map_err(|e| Error::Codec(e.to_string()))?;
        if s.version != WHITENING_VERSION {
            return Err(Error::Codec(format!(
                "whitening format {} (this build reads {WHITENING_VERSION})",
                s.version
            )));
        }
        let a = &s.accumulator;
        let shape_ok = a.dims == dims
            && a.scatter.len() == dims * dims
            && a.buffer.len().is_multiple_of(dims.max(1))
            && s.fitted.as_ref().is_none_or(|w| {
                w.dims == dims
                    && w.dirs.len() == w.coef.len() * dims
                    && w.coef.iter().all(|c| (0.0..=1.0).contains(c))
                    && w.dirs.iter().all(|v| v.is_finite())
            });
        if !shape_ok {
            return Err(Error::Codec(format!(
                "whitening state does not fit {dims}-dim embeddings"
            )));
        }
        Ok(s)
    }
}

/// A fitted whitening: `M = I − Σᵢ cᵢ vᵢvᵢᵀ` (see the module docs).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Whitening {
    dims: usize,
    /// `r × dims` row-major unit directions, largest within-item variance first.
    dirs: Vec<f32>,
    /// `cᵢ = Dᵢ/(Dᵢ+λ)` per direction, in `[0, 1)`.
    coef: Vec<f32>,
    /// Pairs it was fitted on.
    pairs: u64,
}

impl Whitening {
    /// Dimensions of the vectors it takes.
    pub fn dims(&self) -> usize {
        self.dims
    }

    /// Directions kept.
    pub fn rank(&self) -> usize {
        self.coef.len()
    }

    /// Pairs it was fitted on.
    pub fn pairs(&self) -> u64 {
        self.pairs
    }

    /// The kept directions with their coefficients `(vᵢ, cᵢ)`, so a caller holding vectors in
    /// another format (f16) can compute [`Whitening::norm2_with`] itself.
    pub fn directions(&self) -> impl Iterator<Item = (&[f32], f32)> + '_ {
        self.dirs.chunks(self.dims).zip(self.coef.iter().copied())
    }

    /// `xᵀMx` given `|x|²` and a function returning `v·x` for a direction `v`.
    pub fn norm2_with(&self, sq_norm: f32, mut dot_x: impl FnMut(&[f32]) -> f32) -> f32 {
        let mut n = sq_norm;
        for (v, c) in self.directions() {
            let p = dot_x(v);
            n -= c * p * p;
        }
        n.max(0.0)
    }

    /// `xᵀMx` for a vector `x`.
    pub fn norm2(&self, x: &[f32]) -> f32 {
        self.norm2_with(dot(x, x), |v| dot(v, x))
    }

    /// `Mq / √(qᵀMq)`: dotted with a stored vector x and divided by `√(xᵀMx)`, it gives
    /// `sim(q, x)`. `None` for a vector of the wrong size or zero norm.
    pub fn transform_query(&self, q: &[f32]) -> Option<Vec<f32>> {
        if q.len() != self.dims {
            return None;
        }
        let mut out = q.to_vec();
        let mut n2 = dot(q, q);
        for (v, c) in self.directions() {
            let p = dot(v, q);
            n2 -= c * p * p;
            for (o, vi) in out.iter_mut().zip(v) {
                *o -= c * p * vi;
            }
        }
        if !(n2.is_finite() && n2 > 0.0) {
            return None;
        }
        let inv = n2.sqrt().recip();
        out.iter_mut().for_each(|o| *o *= inv);
        Some(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unit(v: &mut [f32]) {
        let n = v.iter().map(|x| x * x).sum::<f32>().sqrt();
        v.iter_mut().for_each(|x| *x /= n);
    }

    /// Items differ along every axis; views of an item differ from it only along axis 0.
    /// The whitening must learn to ignore axis 0: a view then matches its own item better
    /// than the raw cosine says, and better than another item that is close along axis 0.
    #[test]
    fn learns_to_ignore_the_nuisance_direction() {
        let d = 16;
        let mut rng = Rng::new(7);
        let mut acc = ScatterAccumulator::new(d);
        for _ in 0..400 {
            let mut x: Vec<f32> = (0..d).map(|_| rng.gaussian() as f32).collect();
            unit(&mut x);
            let mut a = x.clone();
            a[0] += 2.0 * rng.gaussian() as f32;
            unit(&mut a);
            acc.add_pair(&a, &x).unwrap();
        }
        let w = acc.fit(2, 0.05, 1).unwrap();
        assert_eq!(w.rank(), 2);
        // The first direction is axis 0, its coefficient near 1.
        assert!(w.dirs[0].abs() > 0.95, "{:?}", &w.dirs[..d]);
        assert!(w.coef[0] > 0.8 && w.coef[0] < 1.0, "{:?}", w.coef);
        let item = {
            let mut v = vec![0.0; d];
            v[1] = 1.0;
            v
        };
        let view = {
            let mut v = item.clone();
            v[0] = 1.5;
            unit(&mut v);
            v
        };
        let other = {
            let mut v = vec![0.0; d];
            v[0] = 0.8;
            v[2] = 0.6;
            v
        };
        let sim = |q: &[f32], x: &[f32]| {
            let t = w.transform_query(q).unwrap();
            dot(&t, x) / w.norm2(x).sqrt()
        };
        let raw_item = dot(&view, &item);
        assert!(raw_item < dot(&view, &other), "the raw cosine is fooled");
        assert!(sim(&view, &item) > 0.9, "{}", sim(&view, &item));
        assert!(sim(&view, &item) > sim(&view, &other));
        // Self-similarity stays 1.
        assert!((sim(&item, &item) - 1.0).abs() < 1e-4);
    }

    #[test]
    fn rejects_bad_pairs_and_fits() {
        let mut acc = ScatterAccumulator::new(4);
        assert!(acc.add_pair(&[1.0; 3], &[1.0; 4]).is_err());
        assert!(acc.add_pair(&[f32::NAN; 4], &[1.0; 4]).is_err());
        assert_eq!(acc.pairs(), 0);
        assert!(acc.fit(2, 0.1, 0).is_err(), "no pairs yet");
        acc.add_pair(&[1.0, 0.0, 0.0, 0.0], &[1.0, 0.0, 0.0, 0.0])
            .unwrap();
        acc.add_pair(&[1.0, 0.0, 0.0, 0.0], &[1.0, 0.0, 0.0, 0.0])
            .unwrap();
        assert!(acc.fit(2, 0.1, 0).is_err(), "identical pairs");
        assert!(acc.fit(2, -1.0, 0).is_err());
    }

    #[test]
    fn state_round_trips_and_rejects_other_shapes() {
        let mut acc = ScatterAccumulator::new(4);
        for i in 0..8 {
            let mut a = [1.0, 0.1 * i as f32, 0.0, 0.0];
            unit(&mut a);
            acc.add_pair(&a, &[1.0, 0.0, 0.0, 0.0]).unwrap();
        }
        let w = acc.fit(2, 0.1, 0).unwrap();
        let state = WhiteningState::new(acc, Some(w));
        let bytes = state.to_bytes().unwrap();
        assert_eq!(WhiteningState::from_bytes(&bytes, 4).unwrap(), state);
        assert!(WhiteningState::from_bytes(&bytes, 8).is_err(), "other dims");
        assert!(WhiteningState::from_bytes(&bytes[..bytes.len() / 2], 4).is_err());
        assert!(WhiteningState::from_bytes(b"junk", 4).is_err());
    }
}
