//! Shared helpers for the vsa benchmarks (see `benches/README.md`).
pub mod appliance;

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
