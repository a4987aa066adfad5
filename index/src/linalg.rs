//! The little dense linear algebra the encoder needs: GEMM (through `matrixmultiply`, which
//! picks AVX2/FMA kernels at run time), Gram–Schmidt, a cyclic Jacobi symmetric eigensolver
//! for the small Rayleigh–Ritz problem, the polar factor (Newton–Schulz) for ITQ's orthogonal
//! Procrustes step, and a seeded RNG whose stream never changes between releases.
//!
//! All matrices are row-major slices with explicit shapes.

/// `c = a (m×k) · b (k×n)` in f32, split over up to `threads` row blocks of `a`.
pub(crate) fn sgemm(
    a: &[f32],
    b: &[f32],
    m: usize,
    k: usize,
    n: usize,
    threads: usize,
) -> Vec<f32> {
    sgemm_bt(a, b, m, k, n, threads, false)
}

/// As [`sgemm`]; with `b_trans` the slice `b` holds bᵀ (n×k row-major).
pub(crate) fn sgemm_bt(
    a: &[f32],
    b: &[f32],
    m: usize,
    k: usize,
    n: usize,
    threads: usize,
    b_trans: bool,
) -> Vec<f32> {
    assert!(a.len() >= m * k && b.len() >= k * n);
    let (rsb, csb) = if b_trans {
        (1, k as isize)
    } else {
        (n as isize, 1)
    };
    let mut c = vec![0f32; m * n];
    if m == 0 || n == 0 {
        return c;
    }
    let threads = threads.clamp(1, m.div_ceil(64).max(1));
    let rows_per = m.div_ceil(threads);
    let block = |i: usize, cc: &mut [f32]| {
        let rows = cc.len() / n;
        let aa = &a[i * rows_per * k..(i * rows_per + rows) * k];
        // SAFETY: shapes were checked above; row-major strides match the slices.
        unsafe {
            matrixmultiply::sgemm(
                rows,
                k,
                n,
                1.0,
                aa.as_ptr(),
                k as isize,
                1,
                b.as_ptr(),
                rsb,
                csb,
                0.0,
                cc.as_mut_ptr(),
                n as isize,
                1,
            );
        }
    };
    on_blocks(c.chunks_mut(rows_per * n), |(i, cc)| block(i, cc));
    c
}

/// `c = a (m×k) · b` with `b` given as bᵀ (n×k row-major), by one dot product per element:
/// for the few rows of a query, where a GEMM's packing of `b` would cost more than the
/// arithmetic.
pub(crate) fn gemv_bt(a: &[f32], bt: &[f32], m: usize, k: usize, n: usize) -> Vec<f32> {
    assert!(a.len() >= m * k && bt.len() >= n * k);
    if k == 0 {
        return vec![0.0; m * n];
    }
    a[..m * k]
        .chunks_exact(k)
        .flat_map(|row| {
            bt[..n * k]
                .chunks_exact(k)
                .map(move |col| crate::encoder::dot(row, col))
        })
        .collect()
}

/// Runs `f` on every item of `blocks` (with its index), the first on the calling thread and
/// each other one on a scoped thread of its own; results in the blocks' order, and a panic in
/// any block is propagated. A single block therefore starts no thread (a thread start per
/// product cost every search two thread creations and a hop to the other core). The GEMMs
/// and the shard's multi-threaded scan split their work with it.
pub(crate) fn on_blocks<I, T, R>(blocks: I, f: impl Fn((usize, I::Item)) -> R + Sync) -> Vec<R>
where
    I: IntoIterator<Item = T>,
    T: Send,
    R: Send,
{
    let mut blocks = blocks.into_iter().enumerate();
    let Some(first) = blocks.next() else {
        return Vec::new();
    };
    let rest: Vec<_> = blocks.collect();
    if rest.is_empty() {
        return vec![f(first)];
    }
    std::thread::scope(|s| {
        let f = &f;
        let handles: Vec<_> = rest.into_iter().map(|b| s.spawn(move || f(b))).collect();
        let mut out = vec![f(first)];
        // A panicking block is a bug; propagate it rather than return partial results.
        out.extend(
            handles
                .into_iter()
                .map(|h| h.join().unwrap_or_else(|e| std::panic::resume_unwind(e))),
        );
        out
    })
}

/// `c = aᵀ a` for `a` (m×k), f32 inputs, f64 output (k×k); row blocks summed over threads.
pub(crate) fn gram(a: &[f32], m: usize, k: usize, threads: usize) -> Vec<f64> {
    let threads = threads.clamp(1, m.div_ceil(256).max(1));
    let rows_per = m.div_ceil(threads).max(1);
    let parts = on_blocks(a[..m * k].chunks(rows_per * k), |(_, aa)| {
        let rows = aa.len() / k;
        let mut c = vec![0f32; k * k];
        // SAFETY: aa is rows×k row-major; read as its transpose (k×rows) with swapped strides.
        unsafe {
            matrixmultiply::sgemm(
                k,
                rows,
                k,
                1.0,
                aa.as_ptr(),
                1,
                k as isize,
                aa.as_ptr(),
                k as isize,
                1,
                0.0,
                c.as_mut_ptr(),
                k as isize,
                1,
            );
        }
        c
    });
    let mut out = vec![0f64; k * k];
    for p in parts {
        for (o, v) in out.iter_mut().zip(p) {
            *o += f64::from(v);
        }
    }
    out
}

/// `c = a (m×k) · b (k×n)` in f64.
pub(crate) fn dgemm(a: &[f64], b: &[f64], m: usize, k: usize, n: usize) -> Vec<f64> {
    dgemm_strided(a, b, m, k, n, false)
}

/// `c = aᵀ · b` where `a` is stored k×m and `b` k×n.
pub(crate) fn dgemm_tn(a: &[f64], b: &[f64], m: usize, k: usize, n: usize) -> Vec<f64> {
    dgemm_strided(a, b, m, k, n, true)
}

fn dgemm_strided(a: &[f64], b: &[f64], m: usize, k: usize, n: usize, trans_a: bool) -> Vec<f64> {
    assert!(a.len() >= m * k && b.len() >= k * n);
    let mut c = vec![0f64; m * n];
    if m == 0 || n == 0 || k == 0 {
        return c;
    }
    let (rsa, csa) = if trans_a {
        (1, m as isize)
    } else {
        (k as isize, 1)
    };
    // SAFETY: shapes checked above, strides describe the stated layouts.
    unsafe {
        matrixmultiply::dgemm(
            m,
            k,
            n,
            1.0,
            a.as_ptr(),
            rsa,
            csa,
            b.as_ptr(),
            n as isize,
            1,
            0.0,
            c.as_mut_ptr(),
            n as isize,
            1,
        );
    }
    c
}

/// Orthonormalises the `cols` columns of `q` (stored column-major: `cols` vectors of length
/// `n`, each contiguous) by modified Gram–Schmidt, twice for stability. A column that
/// collapses is replaced by a fresh random direction.
pub(crate) fn orthonormalise(q: &mut [f64], n: usize, cols: usize, rng: &mut Rng) {
    for _pass in 0..2 {
        for j in 0..cols {
            let (done, rest) = q.split_at_mut(j * n);
            let v = &mut rest[..n];
            for i in 0..j {
                let u = &done[i * n..(i + 1) * n];
                let d: f64 = u.iter().zip(v.iter()).map(|(a, b)| a * b).sum();
                for (x, y) in v.iter_mut().zip(u) {
                    *x -= d * y;
                }
            }
            let norm = v.iter().map(|x| x * x).sum::<f64>().sqrt();
            if norm > 1e-12 {
                v.iter_mut().for_each(|x| *x /= norm);
            } else {
                v.iter_mut().for_each(|x| *x = rng.gaussian());
                // Re-run this column on the next pass; a zero column is rare (rank < cols).
            }
        }
    }
}

/// Symmetric eigen decomposition by cyclic Jacobi. `a` is n×n row-major symmetric.
/// Returns (eigenvalues descending, eigenvectors as rows: `vecs[i*n..]` is the i-th).
pub(crate) fn sym_eigen(a: &[f64], n: usize) -> (Vec<f64>, Vec<f64>) {
    let mut a = a.to_vec();
    // v holds eigenvectors as rows (v = Vᵀ), so rotations touch two contiguous rows.
    let mut v = vec![0f64; n * n];
    for i in 0..n {
        v[i * n + i] = 1.0;
    }
    let total: f64 = a.iter().map(|x| x * x).sum::<f64>().max(f64::MIN_POSITIVE);
    for _sweep in 0..60 {
        let mut off = 0f64;
        for p in 0..n {
            for q in p + 1..n {
                off += a[p * n + q] * a[p * n + q];
            }
        }
        if off <= 1e-26 * total {
            break;
        }
        for p in 0..n {
            for q in p + 1..n {
                let apq = a[p * n + q];
                if apq.abs() <= 1e-300 {
                    continue;
                }
                let app = a[p * n + p];
                let aqq = a[q * n + q];
                let theta = (aqq - app) / (2.0 * apq);
                let t = theta.signum() / (theta.abs() + (theta * theta + 1.0).sqrt());
                let t = if theta == 0.0 { 1.0 } else { t };
                let c = 1.0 / (t * t + 1.0).sqrt();
                let s = t * c;
                // Rows p and q of A (then columns by symmetry).
                rotate_rows(&mut a, n, p, q, c, s);
                for k in 0..n {
                    let akp = a[k * n + p];
                    let akq = a[k * n + q];
                    a[k * n + p] = c * akp - s * akq;
                    a[k * n + q] = s * akp + c * akq;
                }
                rotate_rows(&mut v, n, p, q, c, s);
            }
        }
    }
    let mut order: Vec<usize> = (0..n).collect();
    order.sort_by(|&i, &j| a[j * n + j].total_cmp(&a[i * n + i]).then(i.cmp(&j)));
    let vals = order.iter().map(|&i| a[i * n + i]).collect();
    let mut vecs = Vec::with_capacity(n * n);
    for &i in &order {
        vecs.extend_from_slice(&v[i * n..(i + 1) * n]);
    }
    (vals, vecs)
}

fn rotate_rows(m: &mut [f64], n: usize, p: usize, q: usize, c: f64, s: f64) {
    let (lo, hi) = m.split_at_mut(q * n);
    let rp = &mut lo[p * n..(p + 1) * n];
    let rq = &mut hi[..n];
    for (x, y) in rp.iter_mut().zip(rq.iter_mut()) {
        let (xp, xq) = (*x, *y);
        *x = c * xp - s * xq;
        *y = s * xp + c * xq;
    }
}

/// Orthogonal polar factor of the square matrix `m` (n×n): the orthogonal `u` closest to `m`,
/// i.e. `u = S Ŝᵀ` for the SVD `m = S Σ Ŝᵀ`. Newton–Schulz iteration, which is all GEMMs.
pub(crate) fn polar(m: &[f64], n: usize, rng: &mut Rng) -> Vec<f64> {
    // Estimate σ_max by power iteration on mᵀm, so the scaled start has σ ≤ ~1 (< √3 needed).
    let mut x: Vec<f64> = (0..n).map(|_| rng.gaussian()).collect();
    let mut sigma = 0f64;
    for _ in 0..30 {
        let y = dgemm(m, &x, n, n, 1);
        let z = dgemm_tn(m, &y, n, n, 1);
        let nz = z.iter().map(|v| v * v).sum::<f64>().sqrt();
        if nz == 0.0 {
            break;
        }
        sigma = nz.sqrt();
        x = z.into_iter().map(|v| v / nz).collect();
    }
    let fro = m.iter().map(|v| v * v).sum::<f64>().sqrt();
    let scale = (1.05 * sigma).min(fro).max(f64::MIN_POSITIVE);
    let mut x: Vec<f64> = m.iter().map(|v| v / scale).collect();
    for _ in 0..100 {
        let xtx = dgemm_tn(&x, &x, n, n, n);
        let mut err = 0f64;
        let mut t = xtx;
        for i in 0..n {
            for j in 0..n {
                let id = if i == j { 1.0 } else { 0.0 };
                let e = t[i * n + j] - id;
                err = err.max(e.abs());
                t[i * n + j] = 1.5 * id - 0.5 * t[i * n + j];
            }
        }
        x = dgemm(&x, &t, n, n, n);
        if err < 1e-12 {
            break;
        }
    }
    x
}

/// SplitMix64: tiny, seedable, and its stream is fixed forever (unlike `rand`'s `StdRng`),
/// so a trained encoder is reproducible across releases.
#[derive(Debug, Clone)]
pub(crate) struct Rng(u64);

impl Rng {
    pub(crate) fn new(seed: u64) -> Self {
        Self(seed ^ 0x5DEE_CE66_D1CE_4E5B)
    }

    pub(crate) fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in (0, 1].
    pub(crate) fn uniform(&mut self) -> f64 {
        ((self.next_u64() >> 11) + 1) as f64 / (1u64 << 53) as f64
    }

    /// Standard normal (Box–Muller, one of the pair).
    pub(crate) fn gaussian(&mut self) -> f64 {
        let u = self.uniform();
        let v = self.uniform();
        (-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos()
    }
}

#[cfg(test)]
mod tests;
