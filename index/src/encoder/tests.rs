use super::*;
use crate::linalg::Rng;

/// Clustered unit-ish vectors: `clusters` centres with a decaying spectrum plus noise.
fn clustered(n: usize, d: usize, clusters: usize, noise: f64, seed: u64) -> Vec<f32> {
    let mut rng = Rng::new(seed);
    let scale: Vec<f64> = (0..d).map(|i| 1.0 / (1.0 + i as f64 / 8.0)).collect();
    let centres: Vec<f64> = (0..clusters * d)
        .map(|i| rng.gaussian() * scale[i % d])
        .collect();
    let mut out = Vec::with_capacity(n * d);
    for _ in 0..n {
        let c = (rng.next_u64() % clusters as u64) as usize;
        for j in 0..d {
            out.push((centres[c * d + j] + noise * rng.gaussian() * scale[j]) as f32);
        }
    }
    out
}

fn cos(a: &[f32], b: &[f32]) -> f32 {
    let n = |v: &[f32]| v.iter().map(|x| x * x).sum::<f32>().sqrt();
    dot(a, b) / (n(a) * n(b))
}

fn small_config() -> EncoderConfig {
    EncoderConfig {
        dims: 48,
        itq_iterations: 20,
        itq_sample: 2000,
        pca_iterations: 10,
        seed: 7,
        threads: 2,
    }
}

#[test]
fn deterministic_and_round_trips() {
    let d = 128;
    let data = clustered(1500, d, 20, 0.5, 1);
    let a = Encoder::<1>::train(&data, d, &small_config()).unwrap();
    let b = Encoder::<1>::train(&data, d, &small_config()).unwrap();
    assert_eq!(a, b);
    let bytes = a.to_bytes().unwrap();
    let c = Encoder::<1>::from_bytes(&bytes).unwrap();
    assert_eq!(a, c);
    for row in data.chunks(d).take(200) {
        assert_eq!(a.encode(row).unwrap(), c.encode(row).unwrap());
        assert_eq!(a.encode_query(row).unwrap(), c.encode_query(row).unwrap());
    }
    // Batched encoding equals one-by-one, whatever the thread count.
    let batch = a.encode_batch(&data[..300 * d], 2).unwrap();
    for (row, e) in data.chunks(d).zip(&batch) {
        assert_eq!(&a.encode(row).unwrap(), e);
    }
    // Another code length or a damaged version is refused.
    assert!(Encoder::<2>::from_bytes(&bytes).is_err());
    assert!(Encoder::<1>::from_bytes(&bytes[..bytes.len() / 2]).is_err());
    let mut other = a.clone();
    other.version = 99;
    assert!(Encoder::<1>::from_bytes(&other.to_bytes().unwrap()).is_err());
}

#[test]
fn shapes_whose_product_wraps_around_are_refused() {
    // pca_dims × input_dims = 2^64 + 64·64 wraps to the projection's real length: accepted,
    // such an encoder made its first `encode` allocate 2^58 + 64 floats per vector (an abort,
    // not a panic). Decoded from a model file whose CRCs were recomputed over the change.
    let d = 64;
    let data = clustered(200, d, 4, 0.5, 3);
    let mut enc = Encoder::<1>::train(&data, d, &small_config()).unwrap();
    assert_eq!(enc.projection.len(), 64 * 64);
    enc.pca_dims = (1 << 58) + 64;
    assert_eq!(enc.pca_dims.wrapping_mul(d), enc.projection.len());
    let err = Encoder::<1>::from_bytes(&enc.to_bytes().unwrap()).unwrap_err();
    assert!(err.to_string().contains("shapes"), "{err}");
}

#[test]
fn full_rank_score_is_cosine() {
    // dims = input dims: PCA loses nothing, so the score is the cosine up to int8 rounding.
    let d = 64;
    let data = clustered(800, d, 10, 0.7, 2);
    let cfg = EncoderConfig {
        dims: 64,
        ..small_config()
    };
    let enc = Encoder::<1>::train(&data, d, &cfg).unwrap();
    let rows: Vec<&[f32]> = data.chunks(d).take(60).collect();
    for x in &rows {
        let q = enc.encode_query(x).unwrap();
        for y in &rows {
            let e = enc.encode(y).unwrap();
            let s = e.scale * crate::shard::search::dot_f32_i8(&q.reduced, &e.reduced)
                + e.bias
                + q.bias;
            assert!((s - cos(x, y)).abs() < 0.02, "{s} vs {}", cos(x, y));
        }
    }
}

#[test]
fn subspace_pca_codes_track_cosine() {
    // Input 256 → 48 dims via subspace iteration; 128-bit codes (PCA keeps 128).
    let d = 256;
    let data = clustered(3000, d, 30, 0.4, 3);
    let cfg = EncoderConfig {
        dims: 48,
        ..small_config()
    };
    let enc = Encoder::<2>::train(&data, d, &cfg).unwrap();
    assert_eq!(enc.dims(), 48);
    assert_eq!(enc.input_dims(), d);
    let rows: Vec<&[f32]> = data.chunks(d).take(100).collect();
    // Near pairs (same cluster ⇒ high cosine) must have smaller Hamming distances than far.
    let mut near = Vec::new();
    let mut far = Vec::new();
    let mut err = 0f32;
    for x in &rows {
        let qx = enc.encode_query(x).unwrap();
        for y in &rows {
            let ey = enc.encode(y).unwrap();
            let h = crate::hamming(&qx.code, &ey.code);
            let c = cos(x, y);
            let s = ey.scale * crate::shard::search::dot_f32_i8(&qx.reduced, &ey.reduced)
                + ey.bias
                + qx.bias;
            err = err.max((s - c).abs());
            if c > 0.8 {
                near.push(h);
            } else if c < 0.3 {
                far.push(h);
            }
        }
    }
    let mean = |v: &[u32]| v.iter().sum::<u32>() as f32 / v.len().max(1) as f32;
    assert!(!near.is_empty() && !far.is_empty());
    assert!(
        mean(&near) + 20.0 < mean(&far),
        "near {} far {}",
        mean(&near),
        mean(&far)
    );
    assert!(err < 0.2, "max rerank error {err}");
}

#[test]
fn itq_balances_bits() {
    let d = 128;
    let data = clustered(2000, d, 40, 0.6, 4);
    let enc = Encoder::<1>::train(&data, d, &small_config()).unwrap();
    let mut ones = [0usize; 64];
    for row in data.chunks(d) {
        let c = enc.encode(row).unwrap().code[0];
        for (b, o) in ones.iter_mut().enumerate() {
            *o += (c >> b & 1) as usize;
        }
    }
    // Centred data and a rotation: no bit is (almost) constant.
    assert!(ones.iter().all(|&o| o > 100 && o < 1900), "{ones:?}");
}

#[test]
fn bad_input() {
    let d = 16;
    let data = clustered(100, d, 3, 0.5, 5);
    let cfg = EncoderConfig {
        dims: 8,
        ..small_config()
    };
    assert!(
        Encoder::<1>::train(&data, d, &cfg).is_err(),
        "64 bits > 16 input dims"
    );
    assert!(Encoder::<1>::train(&data[..5], 64, &cfg).is_err());
    assert!(Encoder::<1>::train(&[], 64, &cfg).is_err());
    let d = 64;
    let data = clustered(100, d, 3, 0.5, 5);
    let enc = Encoder::<1>::train(&data, d, &cfg).unwrap();
    assert!(enc.encode(&data[..10]).is_err());
    let mut nan = data[..d].to_vec();
    nan[3] = f32::NAN;
    assert!(enc.encode_query(&nan).is_err());
    let (q, s) = quantise(&[0.0; 4]);
    assert_eq!((q, s), (vec![0; 4], 0.0));
}
