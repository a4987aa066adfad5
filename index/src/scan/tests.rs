use super::*;

fn reference<const W: usize>(codes: &[Code<W>], queries: &[Code<W>], r: usize) -> Vec<(u32, u32)> {
    let mut all: Vec<(u32, u32)> = codes
        .iter()
        .enumerate()
        .map(|(i, c)| (min_distance(c, queries).0, i as u32))
        .collect();
    all.sort_unstable();
    all.truncate(r);
    all
}

proptest::proptest! {
    #[test]
    fn kernels_match_reference(seed in 0u64..1000, n in 0usize..600, nq in 1usize..9, r in 0usize..300, bias in 0u32..4) {
        let mut rng = crate::linalg::Rng::new(seed);
        // Biased bits make many ties and small distances.
        let mut word = || { let mut w = rng.next_u64(); for _ in 0..bias { w &= rng.next_u64(); } w };
        let codes: Vec<Code<4>> = (0..n).map(|_| [word(), word(), word(), word()]).collect();
        let queries: Vec<Code<4>> = (0..nq).map(|_| [word(), word(), word(), word()]).collect();
        let want = reference(&codes, &queries, r);
        for kernel in [Kernel::Portable, Kernel::Avx2, Kernel::Avx512] {
            let mut top = TopR::new(r, 256);
            scan(kernel, &codes, 0, &queries, &mut top, &mut |_| true);
            proptest::prop_assert_eq!(top.finish(), want.clone(), "kernel {:?} (available: {})", kernel, kernel.available::<4>());
        }
    }
}
