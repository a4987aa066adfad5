//! Unit tests of the pure parts: the item store, filters, the category vote.

use vsa_index::Filter;

use crate::engine::{
    centroid_distribution, expand_query, fuse_categories, mean_probabilities, predict_category,
    top_level, vote_category, vote_distribution,
};
use crate::partition::PartitionHit;
use crate::quality::QualityConfig;
use crate::store::{ItemRecord, ItemStore};

fn record(id: &str, e: &[f32], attrs: &[(&str, &str)]) -> ItemRecord {
    ItemRecord::new(
        id.into(),
        "c".into(),
        attrs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        vec![],
        e,
    )
}

#[test]
fn store_upsert_replaces_and_remove_forgets() {
    let mut s = ItemStore::default();
    let (k1, old) = s.upsert(record("a", &[1.0, 0.0], &[]));
    assert!(old.is_none());
    let (k2, old) = s.upsert(record("a", &[0.0, 1.0], &[]));
    assert_eq!(old, Some(k1));
    assert_ne!(k1, k2);
    assert_eq!(s.len(), 1);
    assert!(s.get(k1).is_none());
    assert_eq!(
        s.get_by_id("a").map(|r| r.embedding_f32()),
        Some(vec![0.0, 1.0])
    );
    assert_eq!(s.remove("a"), Some(k2));
    assert!(s.is_empty());
    assert_eq!(s.remove("a"), None);
}

#[test]
fn records_are_normalised_and_score_their_best_query_vector() {
    let r = record("a", &[3.0, 4.0], &[]);
    let e = r.embedding_f32();
    assert!((e[0] - 0.6).abs() < 1e-3 && (e[1] - 0.8).abs() < 1e-3);
    let (s, which) = r.best_dot(&[vec![1.0, 0.0], vec![0.0, 1.0]]);
    assert_eq!(which, 1);
    assert!((s - 0.8).abs() < 1e-3);
}

#[test]
fn filters_are_and_across_keys_or_within() {
    let r = record("a", &[1.0], &[("color", "red"), ("size", "m")]);
    assert!(r.matches(&Filter::default()));
    assert!(r.matches(&Filter::default().with("color", ["red", "blue"])));
    assert!(!r.matches(&Filter::default().with("color", ["blue"])));
    assert!(
        r.matches(
            &Filter::default()
                .with("color", ["red"])
                .with("size", ["m", "l"])
        )
    );
    assert!(!r.matches(&Filter::default().with("color", ["red"]).with("size", ["s"])));
    assert!(!r.matches(&Filter::default().with("brand", ["x"])));
}

fn hit(id: &str, category: &str, score: f32) -> PartitionHit {
    PartitionHit {
        id: id.into(),
        category: category.into(),
        score,
        visual: score,
        colour: 0.0,
        quality: 0.5,
        hamming: None,
        vector: 0,
    }
}

#[test]
fn category_vote_weights_close_neighbours() {
    // One strong neighbour of A beats three much weaker neighbours of B.
    let hits = vec![
        hit("1", "A", 0.90),
        hit("2", "B", 0.85),
        hit("3", "B", 0.84),
        hit("4", "B", 0.83),
    ];
    let p = vote_category(&hits, 30, 0.01).unwrap();
    assert_eq!(p.category, "A");
    assert!(p.confidence > 0.5 && p.confidence < 1.0);
    assert_eq!(p.alternatives[0].0, "B");
    // With a flat temperature the majority wins.
    assert_eq!(vote_category(&hits, 30, 10.0).unwrap().category, "B");
    // Only the top vote_k neighbours vote.
    assert_eq!(vote_category(&hits, 1, 10.0).unwrap().category, "A");
    assert!(vote_category(&[], 30, 0.01).is_none());
}

#[test]
fn category_branches_fuse_and_are_reported() {
    let hits = vec![hit("a", "x", 0.9), hit("b", "x", 0.89), hit("c", "y", 0.7)];
    let knn = vote_distribution(&hits, 30, 0.01);
    assert_eq!(knn[0].0, "x");
    let centroids = vec![
        ("x".to_string(), vec![1.0, 0.0]),
        ("y".to_string(), vec![0.0, 1.0]),
    ];
    let model = centroid_distribution(&[vec![0.0, 1.0]], &centroids, 0.02);
    assert_eq!(model[0].0, "y");
    assert!((model.iter().map(|m| m.1).sum::<f32>() - 1.0).abs() < 1e-5);
    // The kNN vote wins at weight 1, the model at weight 0, both branches are reported.
    let p = fuse_categories(&knn, &model, 1.0).expect("prediction");
    assert_eq!(p.category, "x");
    assert_eq!(p.branches.len(), 2);
    assert_eq!(p.branches[1].1, "y");
    assert_eq!(fuse_categories(&knn, &model, 0.0).expect("p").category, "y");
    // Either branch alone decides when the other is empty.
    assert_eq!(fuse_categories(&[], &model, 1.0).expect("p").category, "y");
    assert!(fuse_categories(&[], &[], 0.5).is_none());
}

#[test]
fn hierarchical_decoding_picks_the_top_level_first() {
    // "animals" holds 0.55 over two categories, though "food/fruit" is the single best one.
    let fused = vec![
        ("food/fruit".to_string(), 0.45),
        ("animals/birds".to_string(), 0.30),
        ("animals".to_string(), 0.25),
    ];
    let flat = predict_category(fused.clone(), &fused, &[], false).expect("flat");
    assert_eq!(flat.category, "food/fruit");
    let h = predict_category(fused.clone(), &fused, &[], true).expect("hierarchical");
    assert_eq!(h.category, "animals/birds");
    assert!((h.confidence - 0.30).abs() < 1e-6);
    assert_eq!(h.alternatives[0].0, "animals");
    assert_eq!(h.alternatives[1].0, "food/fruit");
    assert_eq!(top_level("animals/birds"), "animals");
    assert_eq!(top_level("people"), "people");
    // One top level: the same answer either way.
    let one = vec![("a/x".to_string(), 0.6), ("a/y".to_string(), 0.4)];
    assert_eq!(
        predict_category(one.clone(), &one, &[], true).map(|p| p.category),
        Some("a/x".to_string())
    );
    assert!(predict_category(Vec::new(), &[], &[], true).is_none());
}

#[test]
fn quality_presets_validate() {
    let q = QualityConfig::default();
    assert!(q.validate().is_ok());
    assert!(q.presets.contains_key("fast") && q.presets.contains_key("plain"));
    let mut bad = q.clone();
    bad.default_preset = "nope".into();
    assert!(bad.validate().is_err());
    let mut bad = q.clone();
    if let Some(p) = bad.presets.get_mut("best") {
        p.map_width = 100;
    }
    assert!(bad.validate().is_err());
    let mut bad = q.clone();
    if let Some(p) = bad.presets.get_mut("best") {
        p.loose_crop = 2.0;
    }
    assert!(bad.validate().is_err());
    let mut bad = q.clone();
    if let Some(p) = bad.presets.get_mut("best") {
        p.qe_alpha = f32::NAN;
    }
    assert!(bad.validate().is_err());
    let mut bad = q.clone();
    bad.ingest_rotations.clear();
    assert!(bad.validate().is_err());
    let mut bad = q.clone();
    bad.ingest_blurs = vec![f32::NAN];
    assert!(bad.validate().is_err());
    let mut bad = q.clone();
    bad.ingest_blurs = vec![1.0; 9];
    assert!(bad.validate().is_err());
    let mut bad = q.clone();
    if let Some(p) = bad.presets.get_mut("best") {
        p.whitened = 1.5;
    }
    assert!(bad.validate().is_err());
    let mut bad = q.clone();
    bad.whitening.rank = 0;
    assert!(bad.validate().is_err());
    let mut bad = q.clone();
    bad.whitening.shrink = f32::NAN;
    assert!(bad.validate().is_err());
    let mut bad = q.clone();
    bad.whitening.min_pairs = 4;
    assert!(bad.validate().is_err(), "fewer pairs than directions");
    let mut good = q;
    good.ingest_blurs = vec![2.0];
    good.whitening.views = 0;
    assert!(good.validate().is_ok());
}

#[test]
fn query_expansion_leans_towards_close_neighbours() {
    let q = vec![vec![1.0, 0.0, 0.0], vec![0.0, 0.0, 1.0]];
    // The first neighbour is closest to the first query vector, so that one is expanded.
    let near = (0.9, vec![0.8, 0.6, 0.0]);
    let far = (0.1, vec![0.0, 1.0, 0.0]);
    let e = expand_query(&q, &[near, far.clone()], 3.0).expect("expanded");
    assert!((e.iter().map(|x| x * x).sum::<f32>() - 1.0).abs() < 1e-5);
    assert_eq!(e[2], 0.0);
    assert!(e[0] > e[1] && e[1] > 0.0, "{e:?}");
    // A distant neighbour barely moves it; α = 0 weighs all neighbours alike.
    let barely = expand_query(&q, &[(0.9, q[0].clone()), far.clone()], 3.0).expect("expanded");
    assert!(barely[1] < 0.001, "{barely:?}");
    let flat = expand_query(&q, &[(0.9, q[0].clone()), far], 0.0).expect("expanded");
    assert!(flat[1] > 0.3, "{flat:?}");
    assert!(expand_query(&q, &[], 3.0).is_none());
}

#[test]
fn mean_probabilities_average_the_heads_softmax() {
    // Two classes reading one coordinate each.
    let head = vsa_models::ClassifierHead::new(2, 2, vec![1.0, 0.0, 0.0, 1.0], vec![0.0, 0.0])
        .expect("head");
    let p = mean_probabilities(&head, &[vec![1.0, 0.0], vec![0.0, 1.0]], 5.0);
    assert!(
        (p[0] - 0.5).abs() < 1e-6 && (p[1] - 0.5).abs() < 1e-6,
        "{p:?}"
    );
    let p = mean_probabilities(&head, &[vec![1.0, 0.0]], 5.0);
    assert!(p[0] > 0.99, "{p:?}");
}

proptest::proptest! {
    /// The f16 dot product (SIMD where the CPU has it, and the portable form) agrees with an
    /// f64 reference on every length, tails included.
    #[test]
    fn f16_dot_products_agree_with_the_reference(
        pairs in proptest::collection::vec((-1.0f32..1.0, -1.0f32..1.0), 0..300),
    ) {
        let q: Vec<f32> = pairs.iter().map(|p| p.0).collect();
        let e: Vec<half::f16> = pairs.iter().map(|p| half::f16::from_f32(p.1)).collect();
        let reference: f64 = q.iter().zip(&e).map(|(a, b)| f64::from(*a) * f64::from(b.to_f32())).sum();
        let tolerance = 1e-5 * (1.0 + pairs.len() as f64);
        let simd = crate::store::dot_f16(&q, &e);
        let portable = crate::store::dot_f16_portable(&q, &e);
        proptest::prop_assert!((f64::from(simd) - reference).abs() < tolerance, "{simd} vs {reference}");
        proptest::prop_assert!((f64::from(portable) - reference).abs() < tolerance, "{portable} vs {reference}");
        // The shorter length counts.
        let longer: Vec<f32> = q.iter().copied().chain([5.0, 5.0, 5.0]).collect();
        proptest::prop_assert_eq!(crate::store::dot_f16(&longer, &e), simd);
    }
}
