//! Search-quality settings: the named query presets (how much localisation work a query gets)
//! and the ingest-side augmentation (rotated copies folded into one index vector).
//!
//! A preset says how the query photo becomes 1–8 query vectors:
//! - `plain`: the whole photo at the model's input size (what vsa did before localisation);
//! - `fast`: the whole photo once at 448×352 for the feature map, localise, one crop at 224,
//!   plus the map averaged inside the box (free);
//! - `best`: the same at 640×480 with three crops (three threshold levels).
//!
//! See docs/QUALITY.md for what each costs and buys.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// One query preset.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Preset {
    /// Localise the object before embedding (false: the whole photo only).
    pub localise: bool,
    /// Width of the whole-photo pass that gives the feature map (multiple of 32).
    pub map_width: u32,
    /// Height of that pass (multiple of 32).
    pub map_height: u32,
    /// Crops embedded at the model's input size (0–3; one per threshold level).
    pub crops: usize,
    /// Add the feature map averaged inside the first box as a query vector.
    pub map_vector: bool,
    /// Add the whole photo's pooled embedding from the map pass as a query vector.
    pub whole_vector: bool,
    /// Also embed the whole photo at the model's input size (one more crop): keeps
    /// catalogue-like photos (the object fills the frame) safe from a bad box.
    pub whole_crop: bool,
    /// Each square box shrinks by this fraction of its side (0.05 = 5 %).
    pub shrink: f32,
    /// Weight of the colour histogram intersection in the score (0: visual only).
    pub colour_weight: f32,
    /// An item's score adds this share of its second-best query vector's cosine (0: best-of).
    pub second_weight: f32,
    /// Category fusion: weight of the kNN vote; the model branch (nearest category
    /// centroid) gets the rest.
    pub knn_weight: f32,
    /// Search only the partitions of this many categories predicted by the model branch
    /// before the search (0: all); `options.scope` overrides it.
    pub top_categories: u32,
    /// Category decoding: choose the top level first, by the summed probability of its
    /// categories, then the most probable category within it (false: the most probable
    /// category, whatever its top level).
    pub hierarchical_category: bool,
    /// Each hit's visual score adds this × the fused probability of its category: the
    /// neighbours' consensus on the category as a soft prior (0: off).
    pub category_weight: f32,
    /// The model branch of category prediction: `centroid` (nearest category centroid) or
    /// `logits` (the model's ImageNet class probabilities through the catalogue's category
    /// codebook, `P(category | class)`).
    pub category_model: CategoryModel,
    /// Fuse by the vote's own confidence: the vote gets the weight of its top share and the
    /// model branch the rest, so the model decides mostly where the neighbours disagree
    /// (false: the fixed `knn_weight`).
    pub confidence_fusion: bool,
    /// α-query expansion: search again with the best query vector plus this many top hits'
    /// vectors weighted by `max(s, 0)^qe_alpha`, added as one more query vector (0: off).
    pub query_expansion: usize,
    /// The exponent of the expansion weights.
    pub qe_alpha: f32,
    /// One more crop: the first box widened by this fraction of its side (0: none).
    pub loose_crop: f32,
    /// Add the feature map averaged inside every box, not only the first (free).
    pub all_map_vectors: bool,
    /// Add the feature map pooled with the catalogue-similarity map as weights (a soft box).
    pub soft_map_vector: bool,
    /// Share of the learned-whitening similarity in the visual score (`[quality.whitening]`;
    /// 0: the plain cosine, 1: the whitened one alone). Without a fitted whitening: plain.
    pub whitened: f32,
}

/// Which model branch predicts the category next to the kNN vote.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CategoryModel {
    /// Softmax over the cosines with each category's mean embedding.
    #[default]
    Centroid,
    /// The classifier head's class probabilities through the category codebook.
    Logits,
}

impl Default for Preset {
    fn default() -> Self {
        Preset {
            localise: true,
            map_width: 640,
            map_height: 480,
            crops: 3,
            map_vector: true,
            whole_vector: false,
            whole_crop: false,
            shrink: 0.05,
            colour_weight: 0.0,
            second_weight: 0.0,
            // Measured on clipart-public-v1: the centroid branch alone is weak (0.37) and
            // any weight on it cost category accuracy; it is reported, not mixed in.
            knn_weight: 1.0,
            top_categories: 0,
            hierarchical_category: false,
            category_weight: 0.0,
            category_model: CategoryModel::Centroid,
            confidence_fusion: false,
            query_expansion: 0,
            qe_alpha: 3.0,
            loose_crop: 0.0,
            all_map_vectors: false,
            soft_map_vector: false,
            whitened: 0.0,
        }
    }
}

/// `[quality]`: presets and ingest augmentation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct QualityConfig {
    /// The preset a request without `options.preset` gets.
    pub default_preset: String,
    /// Named presets (the built-in `plain`, `fast` and `best` can be overridden).
    pub presets: BTreeMap<String, Preset>,
    /// Rotations (degrees) embedded at ingest; the item's index vector is the normalised sum.
    pub ingest_rotations: Vec<f32>,
    /// Gaussian blurs (σ in pixels of the model's input) of the upright item embedded at
    /// ingest and summed into the index vector with the rotations, for blurred and small
    /// real-shot objects (each costs one more model run per item). Empty: none.
    pub ingest_blurs: Vec<f32>,
    /// Learned whitening: synthetic real-shot views of each item teach which directions a
    /// photo's conditions move an embedding along (see `vsa_index::whiten`).
    pub whitening: WhiteningConfig,
}

/// `[quality.whitening]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WhiteningConfig {
    /// Synthetic views embedded per ingested item for the fit (0: no whitening). Each costs
    /// one model run at ingest; the views are not stored. Default 2 (4 measured no better).
    pub views: usize,
    /// Fit once this many pairs exist, and again each time the count doubles.
    pub min_pairs: u64,
    /// Eigen-directions kept.
    pub rank: usize,
    /// Shrinkage λ as a fraction of the mean eigenvalue.
    pub shrink: f32,
}

impl Default for WhiteningConfig {
    fn default() -> Self {
        Self {
            views: 2,
            min_pairs: 512,
            rank: 128,
            shrink: 0.1,
        }
    }
}

impl Default for QualityConfig {
    fn default() -> Self {
        let mut presets = BTreeMap::new();
        presets.insert(
            "plain".to_string(),
            Preset {
                localise: false,
                crops: 0,
                map_vector: false,
                ..Preset::default()
            },
        );
        presets.insert(
            "fast".to_string(),
            Preset {
                map_width: 448,
                map_height: 352,
                crops: 1,
                whitened: 0.8,
                ..Preset::default()
            },
        );
        presets.insert(
            "best".to_string(),
            Preset {
                whole_crop: true,
                // Measured on clipart-public-v1 (docs/QUALITY.md): 0.6–0.8 are within noise
                // of each other, both far above the plain cosine.
                whitened: 0.8,
                ..Preset::default()
            },
        );
        QualityConfig {
            default_preset: "best".to_string(),
            presets,
            ingest_rotations: vec![0.0, 10.0, -10.0, 20.0, -20.0],
            ingest_blurs: Vec::new(),
            whitening: WhiteningConfig::default(),
        }
    }
}

impl QualityConfig {
    /// Checks what types cannot; the message names the offending key.
    pub fn validate(&self) -> Result<(), String> {
        if !self.presets.contains_key(&self.default_preset) {
            return Err(format!(
                "quality.default_preset {:?} is not a preset",
                self.default_preset
            ));
        }
        for (name, p) in &self.presets {
            if p.localise
                && (p.map_width == 0
                    || p.map_height == 0
                    || p.map_width % 32 != 0
                    || p.map_height % 32 != 0
                    || p.map_width > 2048
                    || p.map_height > 2048)
            {
                return Err(format!(
                    "quality.presets.{name}: map_width and map_height must be positive multiples of 32 up to 2048"
                ));
            }
            if p.crops > 3 {
                return Err(format!("quality.presets.{name}.crops must be 0..=3"));
            }
            if p.query_expansion > 50 || !(0.0..=16.0).contains(&p.qe_alpha) {
                return Err(format!(
                    "quality.presets.{name}: query_expansion must be 0..=50 and qe_alpha in [0, 16]"
                ));
            }
            if !(0.0..=1.0).contains(&p.loose_crop) {
                return Err(format!(
                    "quality.presets.{name}.loose_crop must be in [0, 1]"
                ));
            }
            if !(0.0..=1.0).contains(&p.whitened) {
                return Err(format!("quality.presets.{name}.whitened must be in [0, 1]"));
            }
            if !(0.0..0.9).contains(&p.shrink) {
                return Err(format!("quality.presets.{name}.shrink must be in [0, 0.9)"));
            }
        }
        if self.ingest_rotations.is_empty()
            || self.ingest_rotations.len() > 16
            || self.ingest_rotations.iter().any(|a| !a.is_finite())
        {
            return Err("quality.ingest_rotations must hold 1..=16 finite angles".into());
        }
        if self.ingest_blurs.len() > 8
            || self.ingest_blurs.iter().any(|s| !(0.0..=16.0).contains(s))
        {
            return Err("quality.ingest_blurs must hold at most 8 blurs of σ in [0, 16]".into());
        }
        let w = &self.whitening;
        if w.views > 16
            || w.rank == 0
            || w.rank > 512
            || w.min_pairs < w.rank as u64
            || !(w.shrink.is_finite() && w.shrink > 0.0 && w.shrink <= 100.0)
        {
            return Err(
                "quality.whitening: views must be 0..=16, rank 1..=512, min_pairs ≥ rank and shrink in (0, 100]"
                    .into(),
            );
        }
        Ok(())
    }
}
