//! A small fixture catalogue made by the tests themselves: the two CC0 photos shipped with the
//! model and a set of synthetic product-like images (distinct shapes, colours, patterns), plus
//! distorted "shopper photos" of them (crop, rotation, JPEG).

use std::io::Cursor;
use std::path::{Path, PathBuf};

use vsa_models::image::{self, DynamicImage, ImageFormat, Rgb, RgbImage};

/// One fixture item.
pub(crate) struct Item {
    pub(crate) id: String,
    pub(crate) category: String,
    pub(crate) colour: &'static str,
    pub(crate) path: PathBuf,
}

fn models_testdata(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../models/testdata")
        .join(name)
}

fn shape(kind: usize, fg: [u8; 3], bg: [u8; 3]) -> RgbImage {
    let n = 256u32;
    RgbImage::from_fn(n, n, |x, y| {
        let (fx, fy) = (x as f32 / n as f32 - 0.5, y as f32 / n as f32 - 0.5);
        let r = (fx * fx + fy * fy).sqrt();
        let inside = match kind {
            0 => r < 0.35,                                                // disc
            1 => fx.abs() < 0.3 && fy.abs() < 0.3,                        // square
            2 => (0.2..0.38).contains(&r),                                // ring
            3 => fy > -0.35 && fy < 0.3 && fx.abs() < (fy + 0.35) * 0.5,  // triangle
            4 => ((x / 32) + (y / 32)) % 2 == 0 && r < 0.42,              // checker disc
            5 => (x / 20) % 2 == 0 && fx.abs() < 0.38 && fy.abs() < 0.38, // stripes
            6 => fx.abs() < 0.08 || fy.abs() < 0.08,                      // cross
            7 => (fx.abs() + fy.abs()) < 0.38,                            // diamond
            8 => r < 0.38 && (fy * 3.0).sin() > fx * 2.0,                 // swirl-ish
            _ => (fx * 12.0).sin() * (fy * 12.0).sin() > 0.2 && r < 0.4,  // dots
        };
        Rgb(if inside { fg } else { bg })
    })
}

/// Writes the catalogue (images + `items.jsonl`) into `dir` and returns its items.
pub(crate) fn catalogue(dir: &Path) -> Vec<Item> {
    let mut items = Vec::new();
    let colours: [(&str, [u8; 3]); 5] = [
        ("red", [220, 30, 30]),
        ("blue", [30, 60, 220]),
        ("green", [30, 170, 60]),
        ("black", [20, 20, 20]),
        ("orange", [240, 140, 20]),
    ];
    for kind in 0..10 {
        let (name, fg) = colours[kind % colours.len()];
        let img = shape(kind, fg, [255, 255, 255]);
        let id = format!("shape-{kind}");
        let path = dir.join(format!("{id}.png"));
        img.save(&path).expect("write fixture");
        items.push(Item {
            id,
            category: if kind < 5 {
                "shapes/round".into()
            } else {
                "shapes/pattern".into()
            },
            colour: name,
            path,
        });
    }
    for (id, file, category, colour) in [
        ("coffee", "coffee.png", "food/beverages", "brown"),
        ("chelsea", "chelsea.png", "animals/mammals", "grey"),
    ] {
        let path = dir.join(file);
        std::fs::copy(models_testdata(file), &path).expect("copy photo");
        items.push(Item {
            id: id.into(),
            category: category.into(),
            colour,
            path,
        });
    }
    let mut jsonl = String::new();
    for it in &items {
        jsonl.push_str(&format!(
            "{{\"id\":\"{}\",\"image\":\"{}\",\"category\":\"{}\",\"attributes\":{{\"color\":\"{}\"}}}}\n",
            it.id,
            it.path.file_name().and_then(|f| f.to_str()).unwrap_or_default(),
            it.category,
            it.colour
        ));
    }
    std::fs::write(dir.join("items.jsonl"), jsonl).expect("write items.jsonl");
    items
}

/// A "shopper photo" of an image: cropped to 80 % off-centre, rotated by `degrees` on a grey
/// background, JPEG quality 60.
pub(crate) fn distorted(path: &Path, degrees: f32) -> Vec<u8> {
    let img = image::open(path).expect("open fixture").to_rgb8();
    let (w, h) = img.dimensions();
    let crop = image::imageops::crop_imm(&img, w / 20, h / 8, w * 4 / 5, h * 4 / 5).to_image();
    let rotated = rotate(&crop, degrees);
    let mut out = Cursor::new(Vec::new());
    DynamicImage::ImageRgb8(rotated)
        .write_to(&mut out, ImageFormat::Jpeg)
        .expect("encode jpeg");
    let jpeg = out.into_inner();
    // Re-encode at a low quality for compression artefacts.
    let decoded = image::load_from_memory(&jpeg).expect("decode").to_rgb8();
    let mut out = Cursor::new(Vec::new());
    let mut enc = image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, 60);
    enc.encode_image(&decoded).expect("encode");
    out.into_inner()
}

fn rotate(img: &RgbImage, degrees: f32) -> RgbImage {
    let (w, h) = img.dimensions();
    let (s, c) = degrees.to_radians().sin_cos();
    let (cx, cy) = (w as f32 / 2.0, h as f32 / 2.0);
    RgbImage::from_fn(w, h, |x, y| {
        let (dx, dy) = (x as f32 - cx, y as f32 - cy);
        let sx = c * dx + s * dy + cx;
        let sy = -s * dx + c * dy + cy;
        if sx >= 0.0 && sy >= 0.0 && (sx as u32) < w && (sy as u32) < h {
            *img.get_pixel(sx as u32, sy as u32)
        } else {
            Rgb([128, 128, 128])
        }
    })
}
