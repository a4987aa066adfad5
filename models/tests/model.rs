//! Tests of the bundled model through ONNX Runtime. They need `scripts/setup.sh` to have put
//! libonnxruntime in `.ort/lib/` (or ORT_DYLIB_PATH); they fail, never skip, when it is missing.

#![allow(clippy::unwrap_used)]

use std::path::PathBuf;

use vsa_models::image::{RgbImage, imageops};
use vsa_models::{Batch, DecodeLimits, Embedder, EmbedderOptions, Manifest, cosine, decode_file};

fn embedder() -> Embedder {
    vsa_models::runtime::init(None).expect("ONNX Runtime (run scripts/setup.sh)");
    let manifest = Manifest::bundled().expect("bundled manifest");
    Embedder::load(&manifest, &EmbedderOptions::default()).expect("model loads")
}

fn testdata(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("testdata")
        .join(name)
}

fn photo(name: &str) -> RgbImage {
    decode_file(&testdata(name), &DecodeLimits::default()).expect("test photo decodes")
}

fn json(name: &str) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(testdata(name)).unwrap()).unwrap()
}

#[test]
fn golden_embedding_of_a_fixed_synthetic_input() {
    // The formula is pinned in testdata/golden.json, computed by Python onnxruntime on the
    // exported model: a changed model file or a changed run path shows up here.
    let golden = json("golden.json");
    let mut e = embedder();
    let mut data = vec![0f32; 3 * 224 * 224];
    for c in 0..3usize {
        for y in 0..224usize {
            for x in 0..224usize {
                let p = (x * 7 + y * 13 + c * 29) % 256;
                data[c * 224 * 224 + y * 224 + x] = (p as f32 - 127.0) / 128.0;
            }
        }
    }
    let mut batch = Batch::new(224, 224);
    batch.push_normalised(&data).unwrap();
    let out = e.run(&batch).unwrap();
    let emb = &out.embeddings[0];
    assert_eq!(emb.len(), 1280);
    let first: Vec<f64> = golden["embedding_first16"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap())
        .collect();
    for (i, (&got, &want)) in emb.iter().zip(&first).enumerate() {
        assert!(
            (f64::from(got) - want).abs() < 1e-3,
            "embedding[{i}] = {got}, golden {want}"
        );
    }
    let l2 = emb
        .iter()
        .map(|v| f64::from(*v).powi(2))
        .sum::<f64>()
        .sqrt();
    let want_l2 = golden["embedding_l2"].as_f64().unwrap();
    assert!(
        (l2 - want_l2).abs() / want_l2 < 1e-4,
        "l2 {l2} vs {want_l2}"
    );
    let sum: f64 = emb.iter().map(|v| f64::from(*v)).sum();
    let want_sum = golden["embedding_sum"].as_f64().unwrap();
    assert!(
        (sum - want_sum).abs() / want_sum < 1e-4,
        "sum {sum} vs {want_sum}"
    );
    let argmax = out.logits[0]
        .iter()
        .enumerate()
        .max_by(|a, b| a.1.total_cmp(b.1))
        .unwrap()
        .0;
    assert_eq!(argmax as u64, golden["logits_argmax"].as_u64().unwrap());
    let fm = &out.feature_maps[0];
    assert_eq!((fm.channels, fm.height, fm.width), (1280, 7, 7));
    // The embedding is the feature map's global average.
    let pooled = fm.mean_over(0, 7, 0, 7);
    assert!(cosine(&pooled, emb) > 0.9999);
}

#[test]
fn real_photos_get_sensible_imagenet_classes() {
    let reference = json("reference.json");
    let mut e = embedder();
    for (file, accepted) in [
        ("coffee.png", &["espresso"][..]),
        ("chelsea.png", &["Egyptian cat", "tiger cat", "tabby"][..]),
    ] {
        let img = photo(file);
        let out = e.embed_images(&[(&img, None)]).unwrap();
        let top = e.top_classes(&out.logits[0], 5);
        assert!(
            accepted.contains(&top[0].name.as_str()),
            "{file}: top-1 {:?}",
            top[0]
        );
        let want: Vec<u64> = reference["photos"][file]["top5"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["index"].as_u64().unwrap())
            .collect();
        let overlap = top
            .iter()
            .filter(|c| want.contains(&(c.index as u64)))
            .count();
        assert!(overlap >= 4, "{file}: top-5 {top:?} vs Python's {want:?}");
        let want_p = reference["photos"][file]["top5"][0]["probability"]
            .as_f64()
            .unwrap();
        assert!(
            (f64::from(top[0].probability) - want_p).abs() < 0.05,
            "{file}: {} vs {want_p}",
            top[0].probability
        );
    }
}

#[test]
fn a_photo_and_its_mirror_embed_close_unrelated_photos_far() {
    let mut e = embedder();
    let coffee = photo("coffee.png");
    let mirror = imageops::flip_horizontal(&coffee);
    let cat = photo("chelsea.png");
    let out = e
        .embed_images(&[(&coffee, None), (&mirror, None), (&cat, None)])
        .unwrap();
    let same = cosine(&out.embeddings[0], &out.embeddings[1]);
    let different = cosine(&out.embeddings[0], &out.embeddings[2]);
    assert!(same > 0.85, "mirror cosine {same}");
    assert!(different < 0.4, "unrelated cosine {different}");
    assert!(same - different > 0.5);
}

#[test]
fn batches_equal_single_runs_and_any_stride_multiple_works() {
    let mut e = embedder();
    let coffee = photo("coffee.png");
    let cat = photo("chelsea.png");
    let both = e.embed_images(&[(&coffee, None), (&cat, None)]).unwrap();
    let alone = e.embed_images(&[(&cat, None)]).unwrap();
    assert!(cosine(&both.embeddings[1], &alone.embeddings[0]) > 0.99999);

    // A whole photo at 640×480 gives a 20×15 feature map (what localisation needs).
    let big = e.preprocessor().resize(&coffee, None, 640, 480).unwrap();
    let mut batch = Batch::new(480, 640);
    batch.push(e.preprocessor(), &big).unwrap();
    let out = e.run(&batch).unwrap();
    let fm = &out.feature_maps[0];
    assert_eq!((fm.height, fm.width), (15, 20));

    // Not a multiple of the stride, or empty: typed errors.
    assert!(e.run(&Batch::new(100, 100)).is_err());
    let odd = e.preprocessor().resize(&coffee, None, 100, 100).unwrap();
    let mut batch = Batch::new(100, 100);
    batch.push(e.preprocessor(), &odd).unwrap();
    assert!(e.run(&batch).unwrap_err().is_bad_input());
}

#[test]
fn a_wrong_model_checksum_is_refused() {
    let mut manifest = Manifest::bundled().unwrap();
    manifest.model.sha256 = "00".repeat(32);
    let err = manifest.read_model_bytes().unwrap_err();
    assert!(err.to_string().contains("sha256"), "{err}");
}

#[test]
fn the_head_read_from_the_model_file_reproduces_its_logits() {
    let manifest = Manifest::bundled().unwrap();
    let bytes = manifest.read_model_bytes().unwrap();
    let output = manifest.outputs.logits.as_deref().unwrap();
    let head = vsa_models::ClassifierHead::from_onnx(&bytes, output).expect("a Gemm head");
    assert_eq!((head.classes, head.dim), (1000, 1280));
    let mut e = embedder();
    let img = photo("coffee.png");
    let out = e.embed_images(&[(&img, None)]).unwrap();
    let got = head.probabilities(&out.embeddings[0], 1.0);
    let mut want = out.logits[0].clone();
    vsa_models::head::softmax_in_place(&mut want);
    let worst = got
        .iter()
        .zip(&want)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0f32, f32::max);
    assert!(worst < 1e-4, "largest difference {worst}");
}
