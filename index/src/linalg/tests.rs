use super::*;

#[test]
fn jacobi_reconstructs() {
    let n = 12;
    let mut rng = Rng::new(1);
    let b: Vec<f64> = (0..n * n).map(|_| rng.gaussian()).collect();
    let a = dgemm_tn(&b, &b, n, n, n);
    let (vals, vecs) = sym_eigen(&a, n);
    for i in 0..n {
        let v = &vecs[i * n..(i + 1) * n];
        let av = dgemm(&a, v, n, n, 1);
        for k in 0..n {
            assert!((av[k] - vals[i] * v[k]).abs() < 1e-8, "{i} {k}");
        }
    }
    assert!(vals.windows(2).all(|w| w[0] >= w[1]));
}

#[test]
fn polar_is_orthogonal_and_closest() {
    let n = 16;
    let mut rng = Rng::new(2);
    let m: Vec<f64> = (0..n * n).map(|_| rng.gaussian()).collect();
    let u = polar(&m, n, &mut rng);
    let utu = dgemm_tn(&u, &u, n, n, n);
    for i in 0..n {
        for j in 0..n {
            let id = if i == j { 1.0 } else { 0.0 };
            assert!((utu[i * n + j] - id).abs() < 1e-9);
        }
    }
    // uᵀm is symmetric positive semi-definite for the polar factor.
    let h = dgemm_tn(&u, &m, n, n, n);
    for i in 0..n {
        for j in 0..n {
            assert!((h[i * n + j] - h[j * n + i]).abs() < 1e-8);
        }
    }
}

/// `len` draws of a standard normal, as f32.
fn gaussian(rng: &mut Rng, len: usize) -> Vec<f32> {
    (0..len).map(|_| rng.gaussian() as f32).collect()
}

#[test]
fn gemms_agree_with_naive() {
    let (m, k, n) = (7, 5, 3);
    let mut rng = Rng::new(3);
    let a = gaussian(&mut rng, m * k);
    let b = gaussian(&mut rng, k * n);
    let c = sgemm(&a, &b, m, k, n, 2);
    for i in 0..m {
        for j in 0..n {
            let want: f32 = (0..k).map(|t| a[i * k + t] * b[t * n + j]).sum();
            assert!((c[i * n + j] - want).abs() < 1e-4);
        }
    }
    let g = gram(&a, m, k, 2);
    for i in 0..k {
        for j in 0..k {
            let want: f64 = (0..m)
                .map(|t| f64::from(a[t * k + i]) * f64::from(a[t * k + j]))
                .sum();
            assert!((g[i * k + j] - want).abs() < 1e-4);
        }
    }
}

#[test]
fn gemms_split_over_threads_agree_with_one_thread() {
    // Tall enough that the rows are split into blocks (64 rows a block at least for sgemm,
    // 256 for gram), so the spawned blocks' results are checked, in their places.
    let (m, k, n) = (600, 9, 4);
    let mut rng = Rng::new(5);
    let a = gaussian(&mut rng, m * k);
    let b = gaussian(&mut rng, k * n);
    let one = sgemm(&a, &b, m, k, n, 1);
    let three = sgemm(&a, &b, m, k, n, 3);
    assert_eq!(one.len(), m * n);
    for (x, y) in one.iter().zip(&three) {
        assert!((x - y).abs() < 1e-4, "{x} vs {y}");
    }
    let (g1, g2) = (gram(&a, m, k, 1), gram(&a, m, k, 2));
    for (x, y) in g1.iter().zip(&g2) {
        assert!((x - y).abs() < 1e-3, "{x} vs {y}");
    }
}

#[test]
fn one_block_runs_on_the_calling_thread_and_more_keep_their_order() {
    let me = std::thread::current().id();
    let ran = on_blocks([10], |(i, v)| (i, v, std::thread::current().id()));
    assert_eq!(
        ran,
        vec![(0, 10, me)],
        "a single block must not start a thread"
    );
    let ran = on_blocks([10, 11, 12], |(i, v)| (i, v, std::thread::current().id()));
    assert_eq!(
        ran.iter().map(|r| (r.0, r.1)).collect::<Vec<_>>(),
        vec![(0, 10), (1, 11), (2, 12)]
    );
    assert_eq!(ran[0].2, me, "the first block runs on the calling thread");
    assert!(ran[1..].iter().all(|r| r.2 != me));
    assert!(on_blocks(Vec::<u8>::new(), |(_, v)| v).is_empty());
}

#[test]
fn gemv_agrees_with_the_gemm() {
    let (m, k, n) = (3, 37, 11);
    let mut rng = Rng::new(9);
    let a = gaussian(&mut rng, m * k);
    let bt = gaussian(&mut rng, n * k);
    let g = sgemm_bt(&a, &bt, m, k, n, 1, true);
    let v = gemv_bt(&a, &bt, m, k, n);
    assert_eq!(v.len(), m * n);
    for (x, y) in g.iter().zip(&v) {
        assert!((x - y).abs() < 1e-4, "{x} vs {y}");
    }
    assert_eq!(gemv_bt(&a, &bt, m, 0, n), vec![0.0; m * n]);
}
