//! The Hamming scan: one pass over contiguous codes for all of a query's vectors (an item's
//! distance is the minimum over them), feeding an exact top-R selector.
//!
//! Kernels, picked at run time with `is_x86_feature_detected!`: AVX-512 VPOPCNTDQ for 256-bit
//! codes (eight items per step), AVX2 for 256-bit codes (four items per step, popcount by
//! nibble lookup, Muła's method), and a portable kernel (`count_ones`, which is `popcnt` on
//! x86-64-v2) for every code length. All give identical results; tests check that.
//!
//! Ordering is total and deterministic: by (distance, row). Rows are scanned in increasing
//! order, so once R candidates are held with distance ≤ b, a later row needs distance < b.

use crate::code::{Code, hamming};

/// Exact top-R by (distance, row) with a counting select: candidates pile up in a buffer
/// while their distance is under the bound; when it fills, a histogram of distances (codes are
/// at most 512 bits) finds the R-th smallest, the buffer is cut to R and the bound drops.
#[derive(Debug)]
pub(crate) struct TopR {
    r: usize,
    /// Accept only distances strictly below this.
    pub(crate) bound: u32,
    buf: Vec<(u32, u32)>,
    cap: usize,
    hist: Vec<u32>,
}

impl TopR {
    pub(crate) fn new(r: usize, bits: usize) -> Self {
        let cap = (2 * r).max(r + 1024);
        Self {
            r,
            bound: if r == 0 { 0 } else { bits as u32 + 1 },
            buf: Vec::with_capacity(if r == 0 { 0 } else { cap }),
            cap,
            hist: vec![0; bits + 2],
        }
    }

    #[inline(always)]
    pub(crate) fn push(&mut self, d: u32, row: u32) {
        if d < self.bound {
            self.buf.push((d, row));
            if self.buf.len() >= self.cap {
                self.shrink();
            }
        }
    }

    /// Cuts the buffer to the best R (ties by buffer order = row order) and lowers the bound.
    fn shrink(&mut self) {
        if self.buf.len() <= self.r {
            return;
        }
        self.hist.iter_mut().for_each(|h| *h = 0);
        for &(d, _) in &self.buf {
            self.hist[d as usize] += 1;
        }
        let mut below = 0usize;
        let mut b = 0usize;
        while below + self.hist[b] as usize <= self.r.saturating_sub(1) {
            below += self.hist[b] as usize;
            b += 1;
        }
        // b is the R-th smallest distance; `below` items are strictly better.
        let mut ties = self.r - below;
        let b = b as u32;
        self.buf.retain(|&(d, _)| {
            if d < b {
                true
            } else if d == b && ties > 0 {
                ties -= 1;
                true
            } else {
                false
            }
        });
        self.bound = b;
    }

    /// The selected (distance, row) pairs, sorted by (distance, row).
    pub(crate) fn finish(mut self) -> Vec<(u32, u32)> {
        self.shrink();
        self.buf.sort_unstable();
        self.buf
    }
}

/// Merges per-chunk results into the global top R by (distance, row).
pub(crate) fn merge(parts: Vec<Vec<(u32, u32)>>, r: usize) -> Vec<(u32, u32)> {
    let mut all: Vec<(u32, u32)> = parts.into_iter().flatten().collect();
    all.sort_unstable();
    all.truncate(r);
    all
}

/// Minimum distance of `code` to any of `queries`, and the first query reaching it.
#[inline(always)]
pub(crate) fn min_distance<const W: usize>(code: &Code<W>, queries: &[Code<W>]) -> (u32, u8) {
    let mut best = (u32::MAX, 0u8);
    for (j, q) in queries.iter().enumerate() {
        let d = hamming(code, q);
        if d < best.0 {
            best = (d, j as u8);
        }
    }
    best
}

/// Which kernel a scan uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Kernel {
    /// Portable: `u64::count_ones` per word.
    Portable,
    /// AVX2, 256-bit codes only: byte popcounts by a nibble lookup (`vpshufb`), summed with
    /// `vpsadbw`.
    Avx2,
    /// AVX-512 VPOPCNTDQ, 256-bit codes only.
    Avx512,
}

impl Kernel {
    /// Whether this CPU can run the kernel on `64·W`-bit codes.
    pub fn available<const W: usize>(self) -> bool {
        match self {
            Kernel::Portable => true,
            #[cfg(target_arch = "x86_64")]
            Kernel::Avx2 => W == 4 && std::arch::is_x86_feature_detected!("avx2"),
            #[cfg(target_arch = "x86_64")]
            Kernel::Avx512 => {
                W == 4
                    && std::arch::is_x86_feature_detected!("avx512f")
                    && std::arch::is_x86_feature_detected!("avx512vpopcntdq")
            }
            #[cfg(not(target_arch = "x86_64"))]
            _ => false,
        }
    }
}

/// The best kernel this CPU supports for `64·W`-bit codes and `vectors` query vectors.
///
/// AVX-512 VPOPCNTDQ wins everywhere it exists. Without it, AVX2 is used for multi-vector
/// queries only: for one vector the scalar `popcnt` loop is as fast (both are bound by one
/// execution port per 64 bits on the CPUs measured, docs/BENCHMARKS.md §3).
pub fn best_kernel_for<const W: usize>(vectors: usize) -> Kernel {
    if Kernel::Avx512.available::<W>() {
        Kernel::Avx512
    } else if vectors > 1 && Kernel::Avx2.available::<W>() {
        Kernel::Avx2
    } else {
        Kernel::Portable
    }
}

/// The best kernel this CPU supports for `64·W`-bit codes (multi-vector queries).
pub fn best_kernel<const W: usize>() -> Kernel {
    best_kernel_for::<W>(MAX_VECTORS)
}

/// Most query vectors a SIMD kernel takes in one pass.
const MAX_VECTORS: usize = 8;

/// Scans `codes` (rows `base..base+codes.len()`), pushing every row with `accept(row)` into
/// `top` by its minimum distance over `queries`.
pub(crate) fn scan<const W: usize>(
    kernel: Kernel,
    codes: &[Code<W>],
    base: u32,
    queries: &[Code<W>],
    top: &mut TopR,
    accept: &mut impl FnMut(u32) -> bool,
) {
    if queries.is_empty() {
        return;
    }
    #[cfg(target_arch = "x86_64")]
    if kernel != Kernel::Portable
        && W == 4
        && queries.len() <= MAX_VECTORS
        && kernel.available::<W>()
    {
        // The SIMD kernels take whole steps (8 or 4 codes); the rest goes to the portable loop.
        let step = if kernel == Kernel::Avx512 { 8 } else { 4 };
        let (full, rest) = codes.split_at(codes.len() / step * step);
        let (ptr, n) = (full.as_ptr().cast::<u64>(), full.len());
        let qs = queries_w4(queries);
        // SAFETY: the kernel's CPU features were detected just above; W == 4 makes each code
        // exactly four u64 words, so the flat pointer covers `n * 4` words, n a multiple of
        // the kernel's step.
        unsafe {
            match kernel {
                Kernel::Avx512 => avx512::scan_w4(ptr, n, base, qs, top, accept),
                _ => avx2::scan_w4(ptr, n, base, qs, top, accept),
            }
        };
        scan_portable(rest, base + n as u32, queries, top, accept);
        return;
    }
    let _ = kernel;
    scan_portable(codes, base, queries, top, accept);
}

#[cfg(target_arch = "x86_64")]
fn queries_w4<const W: usize>(queries: &[Code<W>]) -> Vec<[u64; 4]> {
    queries.iter().map(|q| [q[0], q[1], q[2], q[3]]).collect()
}

fn scan_portable<const W: usize>(
    codes: &[Code<W>],
    base: u32,
    queries: &[Code<W>],
    top: &mut TopR,
    accept: &mut impl FnMut(u32) -> bool,
) {
    if let [q] = queries {
        for (i, c) in codes.iter().enumerate() {
            let d = hamming(c, q);
            if d < top.bound {
                let row = base + i as u32;
                if accept(row) {
                    top.push(d, row);
                }
            }
        }
        return;
    }
    for (i, c) in codes.iter().enumerate() {
        let mut d = u32::MAX;
        for q in queries {
            d = d.min(hamming(c, q));
        }
        if d < top.bound {
            let row = base + i as u32;
            if accept(row) {
                top.push(d, row);
            }
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod avx512 {
    use super::TopR;
    use std::arch::x86_64::*;

    /// Lane of the distance vector that holds item `i` of an 8-item group (see `scan_w4`).
    const LANE_OF: [usize; 8] = [0, 2, 1, 3, 4, 6, 5, 7];

    /// Eight 256-bit codes per step: four 512-bit loads, xor with the query repeated twice,
    /// VPOPCNTQ, then two unpack/add rounds and a 128-bit lane shuffle fold the four word
    /// counts of each item into one u64 lane (items land in lanes `LANE_OF`). Whole groups
    /// only: the caller scans the last `n % 8` codes.
    #[target_feature(enable = "avx512f,avx512vpopcntdq")]
    pub(super) unsafe fn scan_w4(
        codes: *const u64,
        n: usize,
        base: u32,
        queries: Vec<[u64; 4]>,
        top: &mut TopR,
        accept: &mut impl FnMut(u32) -> bool,
    ) {
        let nq = queries.len();
        let mut qv = [_mm512_setzero_si512(); super::MAX_VECTORS];
        for (v, q) in qv.iter_mut().zip(&queries) {
            // SAFETY: q is 4 u64 = 256 bits.
            *v = _mm512_broadcast_i64x4(unsafe { _mm256_loadu_si256(q.as_ptr().cast()) });
        }
        let groups = n / 8;
        let mut lanes = [0u64; 8];
        for g in 0..groups {
            // SAFETY: group g covers words g*32..g*32+32 < n*4.
            let p = unsafe { codes.add(g * 32) };
            let (x0, x1, x2, x3) = unsafe {
                (
                    _mm512_loadu_si512(p.cast()),
                    _mm512_loadu_si512(p.add(8).cast()),
                    _mm512_loadu_si512(p.add(16).cast()),
                    _mm512_loadu_si512(p.add(24).cast()),
                )
            };
            let mut dmin = _mm512_set1_epi64(i64::from(u32::MAX));
            for q in &qv[..nq] {
                let c0 = _mm512_popcnt_epi64(_mm512_xor_si512(x0, *q));
                let c1 = _mm512_popcnt_epi64(_mm512_xor_si512(x1, *q));
                let c2 = _mm512_popcnt_epi64(_mm512_xor_si512(x2, *q));
                let c3 = _mm512_popcnt_epi64(_mm512_xor_si512(x3, *q));
                let s01 =
                    _mm512_add_epi64(_mm512_unpacklo_epi64(c0, c1), _mm512_unpackhi_epi64(c0, c1));
                let s23 =
                    _mm512_add_epi64(_mm512_unpacklo_epi64(c2, c3), _mm512_unpackhi_epi64(c2, c3));
                let p = _mm512_shuffle_i64x2::<0x88>(s01, s23);
                let q2 = _mm512_shuffle_i64x2::<0xDD>(s01, s23);
                dmin = _mm512_min_epu64(dmin, _mm512_add_epi64(p, q2));
            }
            let mask = _mm512_cmplt_epu64_mask(dmin, _mm512_set1_epi64(i64::from(top.bound)));
            if mask != 0 {
                // SAFETY: lanes is 8 u64 = 512 bits.
                unsafe { _mm512_storeu_si512(lanes.as_mut_ptr().cast(), dmin) };
                for (item, &lane) in LANE_OF.iter().enumerate() {
                    if mask & (1 << lane) != 0 {
                        let d = lanes[lane] as u32;
                        let row = base + (g * 8 + item) as u32;
                        if d < top.bound && accept(row) {
                            top.push(d, row);
                        }
                    }
                }
            }
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod avx2 {
    use super::TopR;
    use std::arch::x86_64::*;

    /// Popcount of each u64 lane of `x`: nibble lookups (`lut` holds the counts of 0..16 in
    /// both halves), summed per byte, then `vpsadbw` against zero sums each lane's 8 bytes.
    #[inline]
    #[target_feature(enable = "avx2")]
    fn popcnt_u64x4(x: __m256i, lut: __m256i) -> __m256i {
        let low = _mm256_set1_epi8(0x0f);
        let lo = _mm256_shuffle_epi8(lut, _mm256_and_si256(x, low));
        let hi = _mm256_shuffle_epi8(lut, _mm256_and_si256(_mm256_srli_epi16::<4>(x), low));
        _mm256_sad_epu8(_mm256_add_epi8(lo, hi), _mm256_setzero_si256())
    }

    /// Four 256-bit codes per step: xor with the query, byte popcounts by a nibble lookup
    /// (`vpshufb` on the low and high nibbles), `vpsadbw` to four u64 sums per code, then one
    /// unpack/add and one 128-bit permute/add round fold them to one u64 per code, in order.
    /// Distances are at most 256, so the minimum over queries can use 32-bit signed `min`.
    /// Whole groups only: the caller scans the last `n % 4` codes.
    #[target_feature(enable = "avx2")]
    pub(super) unsafe fn scan_w4(
        codes: *const u64,
        n: usize,
        base: u32,
        queries: Vec<[u64; 4]>,
        top: &mut TopR,
        accept: &mut impl FnMut(u32) -> bool,
    ) {
        let nq = queries.len();
        let mut qv = [_mm256_setzero_si256(); super::MAX_VECTORS];
        for (v, q) in qv.iter_mut().zip(&queries) {
            // SAFETY: q is 4 u64 = 256 bits.
            *v = unsafe { _mm256_loadu_si256(q.as_ptr().cast()) };
        }
        let lut = _mm256_setr_epi8(
            0, 1, 1, 2, 1, 2, 2, 3, 1, 2, 2, 3, 2, 3, 3, 4, 0, 1, 1, 2, 1, 2, 2, 3, 1, 2, 2, 3, 2,
            3, 3, 4,
        );
        let popcnt = |x: __m256i| popcnt_u64x4(x, lut);
        let groups = n / 4;
        let mut lanes = [0u64; 4];
        for g in 0..groups {
            // SAFETY: group g covers words g*16..g*16+16 ≤ n*4.
            let p = unsafe { codes.add(g * 16) };
            let (x0, x1, x2, x3) = unsafe {
                (
                    _mm256_loadu_si256(p.cast()),
                    _mm256_loadu_si256(p.add(4).cast()),
                    _mm256_loadu_si256(p.add(8).cast()),
                    _mm256_loadu_si256(p.add(12).cast()),
                )
            };
            let mut dmin = _mm256_set1_epi64x(1 << 30);
            for q in &qv[..nq] {
                let s0 = popcnt(_mm256_xor_si256(x0, *q));
                let s1 = popcnt(_mm256_xor_si256(x1, *q));
                let s2 = popcnt(_mm256_xor_si256(x2, *q));
                let s3 = popcnt(_mm256_xor_si256(x3, *q));
                // [s0 w0+w1, s1 w0+w1, s0 w2+w3, s1 w2+w3] and the same for s2, s3.
                let u01 =
                    _mm256_add_epi64(_mm256_unpacklo_epi64(s0, s1), _mm256_unpackhi_epi64(s0, s1));
                let u23 =
                    _mm256_add_epi64(_mm256_unpacklo_epi64(s2, s3), _mm256_unpackhi_epi64(s2, s3));
                let d = _mm256_add_epi64(
                    _mm256_permute2x128_si256::<0x20>(u01, u23),
                    _mm256_permute2x128_si256::<0x31>(u01, u23),
                );
                dmin = _mm256_min_epi32(dmin, d);
            }
            let below = _mm256_cmpgt_epi64(_mm256_set1_epi64x(i64::from(top.bound)), dmin);
            let mask = _mm256_movemask_pd(_mm256_castsi256_pd(below));
            if mask != 0 {
                // SAFETY: lanes is 4 u64 = 256 bits.
                unsafe { _mm256_storeu_si256(lanes.as_mut_ptr().cast(), dmin) };
                for (item, &d) in lanes.iter().enumerate() {
                    if mask & (1 << item) != 0 {
                        let d = d as u32;
                        let row = base + (g * 4 + item) as u32;
                        if d < top.bound && accept(row) {
                            top.push(d, row);
                        }
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests;
