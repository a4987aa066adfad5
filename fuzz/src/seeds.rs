//! The seed corpus: valid inputs for every target, made in code with the crates' own
//! encoders (`encode_frame`/`encode_body`, the `image` crate's encoders, `encode_record`,
//! `snapshot::write`, `model::encode`), so the seeds follow the formats as they change.

use std::io::Cursor;
use std::sync::Arc;

use vsa_actors::durability::model::{self, ModelState, StoredEncoder};
use vsa_actors::durability::record::{DiskItem, WalOp, WalRecord, encode_record};
use vsa_actors::durability::snapshot::{self, SnapshotHeader};
use vsa_actors::store::ItemRecord;
use vsa_models::image::{
    self, DynamicImage, ImageEncoder, ImageFormat, Luma, LumaA, Rgb, RgbImage, Rgba, RgbaImage,
};
use vsa_protocol::frame::{encode_body, encode_frame};
use vsa_protocol::{
    AdminAction, AdminRequest, BoxXywh, ClickRequest, DeleteRequest, FilterClause, Hello,
    ItemContent, QueryInput, Request, Response, Scope, SearchHit, SearchOptions, SearchRequest,
    SearchResponse, UpsertReply, UpsertRequest,
};

/// One request of every kind (every `Request`, `QueryInput`, `ItemContent` and `AdminAction`
/// variant), with optional fields both set and unset.
pub fn requests() -> Vec<Request> {
    let png = small_png();
    let full_options = SearchOptions {
        preset: Some("balanced".into()),
        roi: Some(BoxXywh {
            x: 1,
            y: 2,
            w: 30,
            h: 40,
        }),
        scope: Some(Scope::TopCategories(3)),
        candidates: Some(500),
        explain: true,
    };
    let mut requests = vec![
        Request::Hello(Hello::new("vsa-fuzz 0.1.0", Some("secret".into()))),
        Request::Hello(Hello::new("", None)),
        Request::Search(SearchRequest::new(QueryInput::Image(png.clone()), 10)),
        Request::Search(SearchRequest {
            query: QueryInput::ItemId("item-00042".into()),
            k: 5,
            category: Some("shoes".into()),
            filter: vec![
                FilterClause {
                    key: "colour".into(),
                    values: vec!["red".into(), "blue".into()],
                },
                FilterClause {
                    key: "size".into(),
                    values: vec![],
                },
            ],
            options: full_options.clone(),
        }),
        Request::Search(SearchRequest {
            query: QueryInput::Embedding(vec![0.25, -0.5, 1.0, f32::MIN_POSITIVE, 0.0, -0.0]),
            k: 1,
            category: None,
            filter: vec![],
            options: SearchOptions {
                scope: Some(Scope::All),
                ..SearchOptions::default()
            },
        }),
        Request::Upsert(UpsertRequest {
            id: "item-1".into(),
            content: ItemContent::Image(png),
            category: "bags".into(),
            attributes: vec![
                ("colour".into(), "red".into()),
                ("brand".into(), "x".into()),
            ],
            metadata: vec![("title".into(), "A red bag ✓".into())],
        }),
        Request::Upsert(UpsertRequest {
            id: "item-2".into(),
            content: ItemContent::Embedding(vec![0.5; 16]),
            category: "shoes".into(),
            attributes: vec![],
            metadata: vec![],
        }),
        Request::Delete(DeleteRequest {
            id: "item-1".into(),
        }),
        Request::Stats,
        Request::Health,
        Request::Metrics,
        Request::Click(ClickRequest {
            query_id: u64::MAX,
            item_id: "item-2".into(),
            position: 3,
        }),
        Request::Clicks(vec![
            ClickRequest {
                query_id: 7,
                item_id: "item-3".into(),
                position: 0,
            },
            ClickRequest {
                query_id: u64::MAX,
                item_id: String::new(),
                position: u32::MAX,
            },
        ]),
    ];
    let actions = vec![
        AdminAction::PanicActor {
            name: "p/shoes/0".into(),
        },
        AdminAction::Snapshot,
        AdminAction::SetRerankWeights(vec![("colour".into(), 0.2), ("ctr".into(), 0.05)]),
        AdminAction::RebalancePlan,
        AdminAction::RebalanceApply { plan_id: 7 },
        AdminAction::RebalanceCancel,
        AdminAction::RebalanceStatus,
        AdminAction::StallActor {
            name: "p/bags/1".into(),
            millis: 2500,
        },
        AdminAction::ClickStats { top: 10 },
        AdminAction::ExportClicks {
            offset: 100,
            limit: 50,
        },
        AdminAction::Telemetry { log_after: 12 },
    ];
    requests.extend(actions.into_iter().map(|action| {
        Request::Admin(AdminRequest {
            token: "admin-token".into(),
            action,
        })
    }));
    requests
}

/// A few responses (what a client decodes).
pub fn responses() -> Vec<Response> {
    vec![
        Response::SearchResults(SearchResponse {
            query_id: 9,
            hits: vec![SearchHit {
                id: "item-1".into(),
                score: 0.91,
                category: "bags".into(),
                components: vec![("visual".into(), 0.8), ("colour".into(), 0.1)],
            }],
            category: None,
            roi: None,
            timings: vec![("search".into(), 120)],
            degraded: true,
            epoch: 3,
            weights_version: 1,
        }),
        Response::Upserted(UpsertReply {
            id: "item-1".into(),
            seq: 77,
            replaced: false,
        }),
        Response::error(vsa_protocol::ErrorCode::BadRequest, "no such thing"),
    ]
}

/// Bodies of every request and a few responses.
pub fn request_bodies() -> Vec<Vec<u8>> {
    let mut out: Vec<Vec<u8>> = requests()
        .iter()
        .filter_map(|r| encode_body(r).ok())
        .collect();
    out.extend(responses().iter().filter_map(|r| encode_body(r).ok()));
    out
}

/// Byte streams of frames: each request alone, a few in a row, an oversized header before a
/// valid frame, a torn frame, and an HTTP request (what a confused client sends).
pub fn frames() -> Vec<Vec<u8>> {
    let one: Vec<Vec<u8>> = requests()
        .iter()
        .filter_map(|r| encode_frame(r, 1 << 20).ok())
        .collect();
    let mut out = one.clone();
    for w in one.windows(3) {
        out.push(w.concat());
    }
    if let Some(first) = one.first() {
        let mut oversized = 5000u32.to_be_bytes().to_vec();
        oversized.extend(std::iter::repeat_n(0x41, 5000));
        oversized.extend_from_slice(first);
        out.push(oversized);
        out.push(first[..first.len() / 2].to_vec());
    }
    out.push(b"GET / HTTP/1.1\r\nHost: vsa\r\n\r\n".to_vec());
    out.push(Vec::new());
    out
}

/// A tiny PNG (the image inside request seeds).
pub fn small_png() -> Vec<u8> {
    encode_image(&DynamicImage::ImageRgb8(gradient(4, 3)), ImageFormat::Png)
}

fn gradient(w: u32, h: u32) -> RgbImage {
    RgbImage::from_fn(w, h, |x, y| {
        Rgb([
            (x * 255 / w) as u8,
            (y * 255 / h) as u8,
            ((x + y) * 7) as u8,
        ])
    })
}

fn encode_image(img: &DynamicImage, format: ImageFormat) -> Vec<u8> {
    let mut out = Cursor::new(Vec::new());
    match img.write_to(&mut out, format) {
        Ok(()) => out.into_inner(),
        Err(_) => Vec::new(),
    }
}

/// An EXIF block (big-endian TIFF) with one tag: orientation `o`.
fn exif_orientation(o: u16) -> Vec<u8> {
    let mut e = b"MM\0\x2a\0\0\0\x08\0\x01".to_vec();
    e.extend_from_slice(&[0x01, 0x12, 0x00, 0x03, 0, 0, 0, 1]);
    e.extend_from_slice(&o.to_be_bytes());
    e.extend_from_slice(&[0, 0, 0, 0, 0, 0]);
    e
}

/// Small real images of every accepted format and several colour types, sizes and options
/// (palette, 16-bit, alpha, greyscale, EXIF orientation).
pub fn images() -> Vec<Vec<u8>> {
    let rgb = DynamicImage::ImageRgb8(gradient(16, 12));
    let rgba = DynamicImage::ImageRgba8(RgbaImage::from_fn(9, 7, |x, y| {
        Rgba([x as u8 * 20, y as u8 * 30, 200, (x * y * 5) as u8])
    }));
    let grey = DynamicImage::ImageLuma8(image::ImageBuffer::from_fn(8, 8, |x, y| {
        Luma([(x * 32 + y) as u8])
    }));
    let grey_alpha = DynamicImage::ImageLumaA8(image::ImageBuffer::from_fn(5, 6, |x, y| {
        LumaA([(x * 40) as u8, (y * 40) as u8])
    }));
    let one = DynamicImage::ImageRgb8(gradient(1, 1));
    let deep = DynamicImage::ImageRgb16(rgb.to_rgb16());
    let mut out = Vec::new();
    for img in [&rgb, &rgba, &grey, &grey_alpha, &one, &deep] {
        for format in [
            ImageFormat::Png,
            ImageFormat::Jpeg,
            ImageFormat::WebP,
            ImageFormat::Gif,
            ImageFormat::Bmp,
        ] {
            let img = match format {
                ImageFormat::Jpeg => DynamicImage::ImageRgb8(img.to_rgb8()),
                ImageFormat::Gif | ImageFormat::WebP => DynamicImage::ImageRgba8(img.to_rgba8()),
                _ => img.clone(),
            };
            let bytes = encode_image(&img, format);
            if !bytes.is_empty() {
                out.push(bytes);
            }
        }
    }
    // JPEG and PNG with an EXIF orientation (rotated on decode).
    let mut jpeg = Vec::new();
    let mut enc = image::codecs::jpeg::JpegEncoder::new_with_quality(&mut jpeg, 80);
    if enc.set_exif_metadata(exif_orientation(6)).is_ok()
        && enc
            .write_image(
                rgb.as_bytes(),
                rgb.width(),
                rgb.height(),
                image::ExtendedColorType::Rgb8,
            )
            .is_ok()
    {
        out.push(jpeg);
    }
    let mut png = Vec::new();
    let mut enc = image::codecs::png::PngEncoder::new(&mut png);
    if enc.set_exif_metadata(exif_orientation(8)).is_ok()
        && enc
            .write_image(
                rgb.as_bytes(),
                rgb.width(),
                rgb.height(),
                image::ExtendedColorType::Rgb8,
            )
            .is_ok()
    {
        out.push(png);
    }
    out
}

fn item(n: usize, dims: usize) -> ItemRecord {
    let embedding: Vec<f32> = (0..dims).map(|i| ((i + n) % 7) as f32 - 3.0).collect();
    let mut r = ItemRecord::new(
        format!("item-{n}"),
        if n.is_multiple_of(2) { "even" } else { "odd" }.into(),
        vec![("colour".into(), "red".into())],
        vec![("title".into(), format!("Item {n}"))],
        &embedding,
    );
    r.colour = vec![0.5, 0.25, 0.25];
    r.quality = vec![("sharpness".into(), 0.7)];
    r
}

/// One log record of every kind.
pub fn wal_records() -> Vec<WalRecord> {
    vec![
        WalRecord {
            seq: 1,
            op: WalOp::Upsert {
                item: DiskItem::from(&item(1, 8)),
                shard: 0,
                evict: None,
            },
        },
        WalRecord {
            seq: 2,
            op: WalOp::Upsert {
                item: DiskItem::from(&item(2, 3)),
                shard: 1,
                evict: Some(("odd".into(), 0)),
            },
        },
        WalRecord {
            seq: 3,
            op: WalOp::Delete {
                id: "item-1".into(),
                category: "odd".into(),
                shard: 0,
            },
        },
        WalRecord {
            seq: u64::MAX,
            op: WalOp::Layout {
                category: "even".into(),
                shards: 4,
            },
        },
    ]
}

/// Log segments: each record alone, and all of them in a row.
pub fn wal_logs() -> Vec<Vec<u8>> {
    let records: Vec<Vec<u8>> = wal_records()
        .iter()
        .filter_map(|r| encode_record(r).ok())
        .collect();
    let mut out = records.clone();
    out.push(records.concat());
    out.push(Vec::new());
    out
}

/// Snapshots of 0, 1 and 3 items, written by `snapshot::write` to a temporary file.
pub fn snapshots() -> Vec<Vec<u8>> {
    let dir = std::env::temp_dir();
    let mut out = Vec::new();
    for (i, n) in [0usize, 1, 3].into_iter().enumerate() {
        let items: Vec<Arc<ItemRecord>> = (0..n).map(|k| Arc::new(item(k, 6))).collect();
        let header = SnapshotHeader {
            category: "even".into(),
            shard: i as u32,
            seq: 40 + n as u64,
            items: n as u64,
        };
        let path = dir.join(format!("vsa-fuzz-seed-{}-{i}.snap", std::process::id()));
        if snapshot::write(&path, &header, &items).is_ok()
            && let Ok(bytes) = std::fs::read(&path)
        {
            out.push(bytes);
        }
        let _ = std::fs::remove_file(&path);
    }
    out
}

/// `n` pseudo-random vectors of `dim` values in [-0.5, 0.5) (xorshift, so the seeds are the
/// same on every run).
fn vectors(n: usize, dim: usize, seed: u64) -> Vec<Vec<f32>> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..n)
        .map(|_| {
            (0..dim)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    (x >> 40) as f32 / (1u64 << 24) as f32 - 0.5
                })
                .collect()
        })
        .collect()
}

/// A real encoder of 256-d embeddings (the smallest a 256-bit code allows) keeping `dims`
/// rerank dimensions, trained on a few dozen vectors.
fn encoder(dims: usize, generation: u64) -> Option<StoredEncoder> {
    const D: usize = 256;
    let sample: Vec<f32> = vectors(40, D, generation).concat();
    let config = vsa_index::EncoderConfig {
        dims,
        itq_iterations: 2,
        ..vsa_index::EncoderConfig::default()
    };
    let encoder = vsa_index::Encoder::train(&sample, D, &config).ok()?;
    Some(StoredEncoder {
        generation,
        fitted_at: 1000 * generation,
        encoder: Arc::new(encoder),
    })
}

fn centroids(
    names: &[&str],
    dim: usize,
) -> Option<Arc<vsa_actors::coordinator::CategoryCentroids>> {
    let rows = vectors(names.len(), dim, 11);
    Some(Arc::new(
        names.iter().map(|n| n.to_string()).zip(rows).collect(),
    ))
}

/// Model states: nothing fitted, each part alone (8-d prototypes and centroids, an empty
/// centroid table), and everything a coordinator stores with a real encoder. Every stored
/// encoder is an `Encoder<4>` (256-bit codes, the only width a model file holds), so the two
/// encoders differ in their rerank dimensions (16 and 64) instead.
pub fn model_states() -> Vec<ModelState> {
    let none = ModelState {
        encoder: None,
        prototypes: None,
        centroids: None,
    };
    let prototypes = |n: usize, dim: usize, at: u64| {
        Some((
            Arc::new(vsa_models::Prototypes::from_rows(&vectors(n, dim, 5), dim)),
            at,
        ))
    };
    vec![
        none.clone(),
        ModelState {
            centroids: centroids(&["shoes", "bags", "hats"], 8),
            ..none.clone()
        },
        ModelState {
            centroids: Some(Arc::new(Vec::new())),
            ..none.clone()
        },
        ModelState {
            prototypes: prototypes(4, 8, 40),
            ..none.clone()
        },
        ModelState {
            prototypes: prototypes(2, 8, 7),
            centroids: centroids(&["a", ""], 8),
            ..none.clone()
        },
        ModelState {
            encoder: encoder(16, 1),
            ..none.clone()
        },
        ModelState {
            encoder: encoder(64, 7),
            prototypes: prototypes(3, 256, 4000),
            centroids: centroids(&["even", "odd"], 256),
        },
    ]
}

/// Model files of every [`model_states`] state, written by `model::encode`.
pub fn models() -> Vec<Vec<u8>> {
    model_states()
        .iter()
        .filter_map(|s| model::encode(s).ok())
        .collect()
}
