//! The encoder: L2-normalise → centre → PCA → ITQ rotation → sign bits, plus the reduced
//! vector kept for reranking (int8 with a per-vector scale) and the per-item bias that makes
//! the rerank score approximate the cosine of the original embeddings.
//!
//! For unit vectors x, y and the training mean μ:
//! `x·y = (x−μ)·(y−μ) + μ·x + μ·y − |μ|²`. PCA keeps `(x−μ)·(y−μ) ≈ P(x−μ)·P(y−μ)`, and the
//! rest splits symmetrically into `b(v) = μ·v − |μ|²/2` per side, so one f32 per item (and
//! one per query vector) restores the missing terms: `score = zx·zy + b(x) + b(y)`.

use serde::{Deserialize, Serialize};

use crate::linalg::{self, Rng};
use crate::{Code, Error, Result};

/// Format version of a serialised [`Encoder`]; bumped on any change of meaning.
pub const ENCODER_VERSION: u32 = 1;

/// How to train an [`Encoder`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EncoderConfig {
    /// Dimensions of the reduced vector kept for reranking (default 256).
    pub dims: usize,
    /// ITQ iterations (default 50).
    pub itq_iterations: usize,
    /// At most this many samples are used for ITQ (the PCA uses all), default 10 000.
    pub itq_sample: usize,
    /// Subspace-iteration steps of the PCA when it does not solve the full eigenproblem.
    pub pca_iterations: usize,
    /// Seed for every random choice; same seed and data give the same encoder.
    pub seed: u64,
    /// Threads for the GEMMs (default 2).
    pub threads: usize,
}

impl Default for EncoderConfig {
    fn default() -> Self {
        Self {
            dims: 256,
            itq_iterations: 50,
            itq_sample: 10_000,
            pca_iterations: 12,
            seed: 0x5EED,
            threads: 2,
        }
    }
}

/// A trained encoder for `64·W`-bit codes. Serialisable; store it with the index.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Encoder<const W: usize = 4> {
    version: u32,
    input_dims: usize,
    dims: usize,
    /// PCA output size: `max(dims, bits)`.
    pca_dims: usize,
    mean: Vec<f32>,
    /// `pca_dims × input_dims` row-major; rows are principal directions, largest first.
    projection: Vec<f32>,
    /// `bits × bits` row-major ITQ rotation applied to the first `bits` PCA coordinates.
    rotation: Vec<f32>,
    /// `|μ|² / 2`, subtracted from each side's bias.
    half_mean_norm2: f32,
}

/// An item ready for a [`crate::Shard`]: its code, int8 reduced vector with scale, and bias.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Encoded<const W: usize = 4> {
    /// The binary code.
    #[serde(with = "crate::code::serde_words")]
    pub code: Code<W>,
    /// The reduced vector, quantised: `reduced[i] as f32 * scale ≈ z[i]`.
    pub reduced: Vec<i8>,
    /// Per-vector dequantisation scale.
    pub scale: f32,
    /// `μ·x − |μ|²/2` for the normalised input x.
    pub bias: f32,
}

/// One query vector: its code and the float reduced vector with bias.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct QueryVector<const W: usize = 4> {
    /// The binary code.
    #[serde(with = "crate::code::serde_words")]
    pub code: Code<W>,
    /// The reduced vector (float).
    pub reduced: Vec<f32>,
    /// `μ·x − |μ|²/2` for the normalised input x.
    pub bias: f32,
}

impl<const W: usize> Encoder<W> {
    /// Code length in bits.
    pub const BITS: usize = 64 * W;

    /// Learns the encoder from `samples`: `n × input_dims` row-major f32 embeddings.
    pub fn train(samples: &[f32], input_dims: usize, config: &EncoderConfig) -> Result<Self> {
        let bits = Self::BITS;
        if W == 0
            || input_dims == 0
            || samples.is_empty()
            || !samples.len().is_multiple_of(input_dims)
        {
            return Err(Error::BadInput(format!(
                "samples ({} floats) are not a non-empty multiple of {input_dims} dims",
                samples.len()
            )));
        }
        let n = samples.len() / input_dims;
        let pca_dims = config.dims.max(bits);
        if config.dims == 0 || pca_dims > input_dims {
            return Err(Error::BadInput(format!(
                "need 0 < dims ({}) and bits ({bits}) ≤ input dims ({input_dims})",
                config.dims
            )));
        }
        if n < 2 {
            return Err(Error::BadInput("need at least two samples".into()));
        }
        let threads = config.threads.max(1);
        let mut rng = Rng::new(config.seed);
        let d = input_dims;

        // 1. Normalise and centre.
        let mut x: Vec<f32> = samples.to_vec();
        for row in x.chunks_mut(d) {
            normalise(row);
        }
        let mut mean = vec![0f64; d];
        for row in x.chunks(d) {
            for (m, v) in mean.iter_mut().zip(row) {
                *m += f64::from(*v);
            }
        }
        let mean: Vec<f32> = mean.iter().map(|m| (m / n as f64) as f32).collect();
        for row in x.chunks_mut(d) {
            for (v, m) in row.iter_mut().zip(&mean) {
                *v -= m;
            }
        }

        // 2. PCA: covariance, then its top `pca_dims` eigenvectors.
        let mut cov = linalg::gram(&x, n, d, threads);
        cov.iter_mut().for_each(|c| *c /= n as f64);
        let (_, projection) = top_eigenvectors(&cov, d, pca_dims, config.pca_iterations, &mut rng);

        // 3. ITQ on (a sample of) the first `bits` PCA coordinates.
        let m = n.min(config.itq_sample.max(bits));
        let step = n as f64 / m as f64;
        let mut sample = Vec::with_capacity(m * d);
        for i in 0..m {
            let r = ((i as f64 * step) as usize).min(n - 1);
            sample.extend_from_slice(&x[r * d..(r + 1) * d]);
        }
        drop(x);
        // projᵀ for the first `bits` rows: d × bits.
        let mut proj_t = vec![0f32; d * bits];
        for k in 0..bits {
            for j in 0..d {
                proj_t[j * bits + k] = projection[k * d + j];
            }
        }
        let v = linalg::sgemm(&sample, &proj_t, m, d, bits, threads);
        let rotation = itq(&v, m, bits, config.itq_iterations, threads, &mut rng);

        let half_mean_norm2 = mean.iter().map(|m| m * m).sum::<f32>() / 2.0;
        Ok(Self {
            version: ENCODER_VERSION,
            input_dims,
            dims: config.dims,
            pca_dims,
            mean,
            projection,
            rotation,
            half_mean_norm2,
        })
    }

    /// Input (embedding) dimensions.
    pub fn input_dims(&self) -> usize {
        self.input_dims
    }

    /// Reduced (rerank) dimensions.
    pub fn dims(&self) -> usize {
        self.dims
    }

    /// Projects `n` embeddings (row-major) with GEMMs: (code, reduced vector of `dims`, bias)
    /// per row. Each row's result does not depend on the others, so single and batched
    /// encoding agree bit for bit.
    fn project(&self, embeddings: &[f32], threads: usize) -> Result<Vec<(Code<W>, Vec<f32>, f32)>> {
        self.project_with(embeddings, |a, b, m, k, n| {
            linalg::sgemm_bt(a, b, m, k, n, threads, true)
        })
    }

    /// As [`Encoder::project`], with `mul(a, bᵀ, m, k, n)` for the two products.
    fn project_with(
        &self,
        embeddings: &[f32],
        mul: impl Fn(&[f32], &[f32], usize, usize, usize) -> Vec<f32>,
    ) -> Result<Vec<(Code<W>, Vec<f32>, f32)>> {
        let d = self.input_dims;
        if !embeddings.len().is_multiple_of(d) {
            return Err(Error::BadInput(format!(
                "embeddings ({} floats) are not a multiple of the encoder's {d} dims",
                embeddings.len()
            )));
        }
        if embeddings.iter().any(|v| !v.is_finite()) {
            return Err(Error::BadInput("embedding has a non-finite value".into()));
        }
        let n = embeddings.len() / d;
        let mut x = embeddings.to_vec();
        let mut biases = Vec::with_capacity(n);
        for row in x.chunks_mut(d) {
            normalise(row);
            biases.push(dot(&self.mean, row) - self.half_mean_norm2);
            for (v, m) in row.iter_mut().zip(&self.mean) {
                *v -= m;
            }
        }
        let p = self.pca_dims;
        let bits = Self::BITS;
        let z = mul(&x, &self.projection, n, d, p);
        drop(x);
        let zb: Vec<f32> = z
            .chunks(p)
            .flat_map(|r| r[..bits].iter().copied())
            .collect();
        let rot = mul(&zb, &self.rotation, n, bits, bits);
        Ok(z.chunks(p)
            .zip(rot.chunks(bits))
            .zip(biases)
            .map(|((z, r), bias)| {
                let mut code = [0u64; W];
                for (k, v) in r.iter().enumerate() {
                    if *v > 0.0 {
                        code[k / 64] |= 1 << (k % 64);
                    }
                }
                (code, z[..self.dims].to_vec(), bias)
            })
            .collect())
    }

    fn check_one(&self, embedding: &[f32]) -> Result<()> {
        if embedding.len() != self.input_dims {
            return Err(Error::BadInput(format!(
                "embedding has {} dims, the encoder expects {}",
                embedding.len(),
                self.input_dims
            )));
        }
        Ok(())
    }

    /// Encodes an item for insertion.
    pub fn encode(&self, embedding: &[f32]) -> Result<Encoded<W>> {
        self.check_one(embedding)?;
        Ok(self.encode_batch(embedding, 1)?.remove(0))
    }

    /// Encodes `n` items (`n × input_dims` row-major) with GEMMs over up to `threads` threads.
    pub fn encode_batch(&self, embeddings: &[f32], threads: usize) -> Result<Vec<Encoded<W>>> {
        Ok(self
            .project(embeddings, threads)?
            .into_iter()
            .map(|(code, z, bias)| {
                let (reduced, scale) = quantise(&z);
                Encoded {
                    code,
                    reduced,
                    scale,
                    bias,
                }
            })
            .collect())
    }

    /// Encodes one query vector (float reduced vector, no quantisation). A search pays this,
    /// so its two products are plain dot products ([`linalg::gemv_bt`]): a GEMM packs the
    /// whole projection (input dims × PCA dims) for its one row, 5–10 times the arithmetic.
    /// The sums run in another order than the items' GEMM, so a query's code may differ from
    /// the same vector's item code where a projection is within rounding of 0.
    pub fn encode_query(&self, embedding: &[f32]) -> Result<QueryVector<W>> {
        self.check_one(embedding)?;
        let (code, reduced, bias) = self.project_with(embedding, linalg::gemv_bt)?.remove(0);
        Ok(QueryVector {
            code,
            reduced,
            bias,
        })
    }

    /// Serialises with bincode (standard config); the version travels inside.
    pub fn to_bytes(&self) -> Result<Vec<u8>> {
        bincode::serde::encode_to_vec(self, bincode::config::standard())
            .map_err(|e| Error::Codec(e.to_string()))
    }

    /// Reads what [`Encoder::to_bytes`] wrote; rejects other versions and code lengths.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self> {
        let (enc, _): (Self, usize) =
            bincode::serde::decode_from_slice(bytes, bincode::config::standard())
                .map_err(|e| Error::Codec(e.to_string()))?;
        if enc.version != ENCODER_VERSION {
            return Err(Error::Codec(format!(
                "encoder version {} (this build reads {ENCODER_VERSION})",
                enc.version
            )));
        }
        let bits = Self::BITS;
        // `checked_mul`: the two sizes come from the bytes, and a product that wraps around
        // to the projection's length would pass an encoder whose first use allocates
        // `pca_dims` floats per vector (or overflows).
        if enc.rotation.len() != bits * bits
            || enc.pca_dims.checked_mul(enc.input_dims) != Some(enc.projection.len())
            || enc.mean.len() != enc.input_dims
            || enc.dims > enc.pca_dims
            || enc.pca_dims < bits
        {
            return Err(Error::Codec(format!(
                "encoder shapes do not fit {bits}-bit codes"
            )));
        }
        Ok(enc)
    }
}

/// Quantises to int8 with a per-vector scale (`max|z| / 127`).
pub fn quantise(z: &[f32]) -> (Vec<i8>, f32) {
    let max = z.iter().fold(0f32, |m, v| m.max(v.abs()));
    if max == 0.0 {
        return (vec![0; z.len()], 0.0);
    }
    let scale = max / 127.0;
    let inv = 1.0 / scale;
    (
        z.iter()
            .map(|v| (v * inv).round().clamp(-127.0, 127.0) as i8)
            .collect(),
        scale,
    )
}

fn normalise(v: &mut [f32]) {
    let n = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    if n > 0.0 {
        v.iter_mut().for_each(|x| *x /= n);
    }
}

pub(crate) fn dot(a: &[f32], b: &[f32]) -> f32 {
    // Eight partial sums so the compiler can vectorise without reassociating.
    let mut acc = [0f32; 8];
    let ca = a.chunks_exact(8);
    let cb = b.chunks_exact(8);
    let (ra, rb) = (ca.remainder(), cb.remainder());
    for (x, y) in ca.zip(cb) {
        for i in 0..8 {
            acc[i] += x[i] * y[i];
        }
    }
    let mut s: f32 = acc.iter().sum();
    for (x, y) in ra.iter().zip(rb) {
        s += x * y;
    }
    s
}

/// Top-`p` eigenvalues (largest first; Ritz values when solved by subspace iteration) and
/// eigenvectors (rows, `p × d`) of the symmetric `cov` (d×d).
pub(crate) fn top_eigenvectors(
    cov: &[f64],
    d: usize,
    p: usize,
    iterations: usize,
    rng: &mut Rng,
) -> (Vec<f64>, Vec<f32>) {
    let block = (p + (p / 8).clamp(8, 64)).min(d);
    let (values, basis): (Vec<f64>, Vec<f64>) = if block * 10 >= d * 9 {
        // Small problem: solve it whole.
        linalg::sym_eigen(cov, d)
    } else {
        // Subspace iteration: Q ← orth(C Q), columns stored as contiguous vectors (qᵀ, block×d).
        let mut qt: Vec<f64> = (0..block * d).map(|_| rng.gaussian()).collect();
        linalg::orthonormalise(&mut qt, d, block, rng);
        for _ in 0..iterations.max(1) {
            // (C Q)ᵀ = Qᵀ C (C symmetric): block×d · d×d.
            qt = linalg::dgemm(&qt, cov, block, d, d);
            linalg::orthonormalise(&mut qt, d, block, rng);
        }
        // Rayleigh–Ritz: T = Qᵀ C Q (block×block), rotate the basis by T's eigenvectors.
        let qtc = linalg::dgemm(&qt, cov, block, d, d);
        let mut q = vec![0f64; d * block];
        for i in 0..block {
            for j in 0..d {
                q[j * block + i] = qt[i * d + j];
            }
        }
        let t = linalg::dgemm(&qtc, &q, block, d, block);
        let (values, vecs) = linalg::sym_eigen(&t, block);
        (values, linalg::dgemm(&vecs, &qt, block, block, d))
    };
    let mut out: Vec<f32> = basis[..p * d].iter().map(|v| *v as f32).collect();
    // Fix each direction's sign (largest |component| positive) so results do not depend on
    // the solver's arbitrary sign choices.
    for row in out.chunks_mut(d) {
        let idx = (0..d).fold(0, |b, i| if row[i].abs() > row[b].abs() { i } else { b });
        if row[idx] < 0.0 {
            row.iter_mut().for_each(|v| *v = -*v);
        }
    }
    (values[..p].to_vec(), out)
}

/// ITQ (Gong & Lazebnik): alternate B = sign(V R) and R = polar(Vᵀ B). Returns Rᵀ row-major
/// (`bits × bits`), so code bit k is `sign(rotation[k] · v)`.
fn itq(
    v: &[f32],
    n: usize,
    bits: usize,
    iterations: usize,
    threads: usize,
    rng: &mut Rng,
) -> Vec<f32> {
    let g: Vec<f64> = (0..bits * bits).map(|_| rng.gaussian()).collect();
    let mut r = linalg::polar(&g, bits, rng);
    let mut vt = vec![0f32; bits * n];
    for i in 0..n {
        for k in 0..bits {
            vt[k * n + i] = v[i * bits + k];
        }
    }
    for _ in 0..iterations {
        let rf: Vec<f32> = r.iter().map(|x| *x as f32).collect();
        let mut b = linalg::sgemm(v, &rf, n, bits, bits, threads);
        b.iter_mut()
            .for_each(|x| *x = if *x > 0.0 { 1.0 } else { -1.0 });
        let m = linalg::sgemm(&vt, &b, bits, n, bits, threads);
        let m: Vec<f64> = m.iter().map(|x| f64::from(*x)).collect();
        r = linalg::polar(&m, bits, rng);
    }
    // V R projects with columns of R; store Rᵀ so each code bit is a contiguous row.
    let mut rt = vec![0f32; bits * bits];
    for i in 0..bits {
        for j in 0..bits {
            rt[j * bits + i] = r[i * bits + j] as f32;
        }
    }
    rt
}

#[cfg(test)]
mod tests;
