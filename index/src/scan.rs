//! The Hamming scan: one pass over contiguous codes for all of a query's vectors (an item's
//! distance is the minimum over them), feeding an exact top-R selector.
//!
//! Kernels: AVX-512 VPOPCNTDQ for 256-bit codes (eight items per step, picked at run time with
//! `is_x86_feature_detected!`), and a portable kernel (`count_ones`, which is `popcnt` on
//! x86-64-v2) for every code length. Both give identical results; tests check that.
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
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kernel {
    /// Portable: `u64::count_ones` per word.
    Portable,
    /// AVX-512 VPOPCNTDQ, 256-bit codes only.
    Avx512,
}

/// The best kernel this CPU supports for `64·W`-bit codes.
pub fn best_kernel<const W: usize>() -> Kernel {
    #[cfg(target_arch = "x86_64")]
    {
        if W == 4
            && std::arch::is_x86_feature_detected!("avx512f")
            && std::arch::is_x86_feature_detected!("avx512vpopcntdq")
        {
            return Kernel::Avx512;
        }
    }
    Kernel::Portable
}

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
    if kernel == Kernel::Avx512
        && W == 4
        && queries.len() <= 8
        && best_kernel::<W>() == Kernel::Avx512
    {
        // SAFETY: the CPU features were detected just above; W == 4 makes each code exactly
        // four u64 words, so the flat pointer covers `codes.len() * 4` words.
        unsafe {
            avx512::scan_w4(
                codes.as_ptr().cast::<u64>(),
                codes.len(),
                base,
                queries_w4(queries),
                top,
                accept,
            )
        };
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
    /// counts of each item into one u64 lane (items land in lanes `LANE_OF`).
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
        let mut qv = [_mm512_setzero_si512(); 8];
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
        for i in groups * 8..n {
            // SAFETY: i < n.
            let c: [u64; 4] = unsafe {
                [
                    *codes.add(i * 4),
                    *codes.add(i * 4 + 1),
                    *codes.add(i * 4 + 2),
                    *codes.add(i * 4 + 3),
                ]
            };
            let mut d = u32::MAX;
            for q in &queries {
                d = d.min(crate::code::hamming(&c, q));
            }
            let row = base + i as u32;
            if d < top.bound && accept(row) {
                top.push(d, row);
            }
        }
    }
}

#[cfg(test)]
mod tests;
