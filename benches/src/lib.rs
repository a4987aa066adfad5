//! Shared helpers for the vsa benchmarks (see `benches/README.md`).
pub mod appliance;

/// SplitMix64: a tiny seedable generator whose stream never changes, for reproducible data
/// and resampling in the benchmarks.
pub struct SplitMix(pub u64);

impl SplitMix {
    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A uniform index below `n` (> 0).
    pub fn below(&mut self, n: usize) -> usize {
        ((u128::from(self.next_u64()) * n as u128) >> 64) as usize
    }
}

/// One sequential read of `data` with eight independent sums, so the loop is load-bound, not
/// add-latency-bound: the STREAM-like read the scan's GB/s are compared with (the criterion
/// `memory_read` group and `index_compare` both use it).
pub fn read_sum(data: &[u64]) -> [u64; 8] {
    let mut acc = [0u64; 8];
    for ch in data.chunks_exact(8) {
        for i in 0..8 {
            acc[i] = acc[i].wrapping_add(ch[i]);
        }
    }
    acc
}
