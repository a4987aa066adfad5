//! Unit tests of the parts that need no model: the image front door and preprocessing.

use std::io::Cursor;

use image::{DynamicImage, ImageFormat, Rgb, RgbImage, Rgba, RgbaImage};
use proptest::prelude::*;
use proptest::test_runner::TestCaseError;

use super::*;

fn encode(img: &DynamicImage, format: ImageFormat) -> Vec<u8> {
    let mut out = Cursor::new(Vec::new());
    img.write_to(&mut out, format).unwrap();
    out.into_inner()
}

fn gradient(w: u32, h: u32) -> RgbImage {
    RgbImage::from_fn(w, h, |x, y| {
        Rgb([(x * 255 / w) as u8, (y * 255 / h) as u8, 128])
    })
}

#[test]
fn decodes_png_jpeg_and_webp() {
    let img = DynamicImage::ImageRgb8(gradient(64, 48));
    for format in [ImageFormat::Png, ImageFormat::Jpeg, ImageFormat::WebP] {
        let bytes = encode(&img, format);
        let out = decode_rgb(&bytes, &DecodeLimits::default()).unwrap();
        assert_eq!(out.dimensions(), (64, 48), "{format:?}");
    }
}

#[test]
fn garbage_is_a_typed_error() {
    let limits = DecodeLimits::default();
    for bytes in [
        &b""[..],
        b"hello world",
        &[0u8; 1000][..],
        &[0xFF, 0xD8, 0xFF, 0xE0, 0, 16][..],
    ] {
        let err = decode_rgb(bytes, &limits).unwrap_err();
        assert!(err.is_bad_input(), "{err}");
    }
}

#[test]
fn truncated_image_is_an_error() {
    let bytes = encode(
        &DynamicImage::ImageRgb8(gradient(200, 200)),
        ImageFormat::Png,
    );
    for cut in [8, 40, bytes.len() / 2, bytes.len() - 10] {
        let err = decode_rgb(&bytes[..cut], &DecodeLimits::default()).unwrap_err();
        assert!(err.is_bad_input(), "cut at {cut}: {err}");
    }
}

#[test]
fn truncated_jpeg_is_an_error() {
    let bytes = encode(
        &DynamicImage::ImageRgb8(gradient(300, 200)),
        ImageFormat::Jpeg,
    );
    assert!(decode_rgb(&bytes, &DecodeLimits::default()).is_ok());
    for cut in [bytes.len() / 3, bytes.len() - 2] {
        let err = decode_rgb(&bytes[..cut], &DecodeLimits::default()).unwrap_err();
        assert!(err.is_bad_input(), "cut at {cut}: {err}");
    }
    // Trailing bytes after the end marker are tolerated.
    let mut padded = bytes.clone();
    padded.extend_from_slice(&[0u8; 100]);
    assert!(decode_rgb(&padded, &DecodeLimits::default()).is_ok());
}

#[test]
fn byte_limit_is_checked_first() {
    let bytes = encode(&DynamicImage::ImageRgb8(gradient(64, 64)), ImageFormat::Png);
    let limits = DecodeLimits {
        max_bytes: bytes.len() - 1,
        ..DecodeLimits::default()
    };
    assert!(matches!(
        decode_rgb(&bytes, &limits),
        Err(ModelError::TooManyBytes { .. })
    ));
}

#[test]
fn pixel_limit_refuses_a_decompression_bomb_from_its_header() {
    // A 10000×10000 white PNG compresses to a few hundred KB; the header alone must refuse it.
    let side = 10_000u32;
    let bomb =
        DynamicImage::ImageLuma8(image::GrayImage::from_pixel(side, side, image::Luma([255])));
    let bytes = encode(&bomb, ImageFormat::Png);
    assert!(bytes.len() < 2 << 20);
    let limits = DecodeLimits {
        max_pixels: 20_000_000,
        ..DecodeLimits::default()
    };
    match decode_rgb(&bytes, &limits) {
        Err(ModelError::TooManyPixels { width, height, .. }) => {
            assert_eq!((width, height), (side, side))
        }
        other => panic!("expected TooManyPixels, got {other:?}"),
    }
}

#[test]
fn transparent_pixels_become_white() {
    let mut rgba = RgbaImage::from_pixel(4, 4, Rgba([0, 0, 0, 0]));
    rgba.put_pixel(0, 0, Rgba([255, 0, 0, 255]));
    let bytes = encode(&DynamicImage::ImageRgba8(rgba), ImageFormat::Png);
    let out = decode_rgb(&bytes, &DecodeLimits::default()).unwrap();
    assert_eq!(out.get_pixel(0, 0), &Rgb([255, 0, 0]));
    assert_eq!(out.get_pixel(3, 3), &Rgb([255, 255, 255]));
}

#[test]
fn exif_orientation_is_applied() {
    // A 40×20 JPEG tagged "rotate 90° clockwise" (orientation 6) must come out 20×40.
    let img = DynamicImage::ImageRgb8(gradient(40, 20));
    let jpeg = encode(&img, ImageFormat::Jpeg);
    let exif_tagged = insert_exif_orientation(&jpeg, 6);
    let out = decode_rgb(&exif_tagged, &DecodeLimits::default()).unwrap();
    assert_eq!(out.dimensions(), (20, 40));
}

/// Inserts an APP1 Exif segment with one Orientation entry right after the JPEG SOI marker.
fn insert_exif_orientation(jpeg: &[u8], orientation: u16) -> Vec<u8> {
    let mut tiff = Vec::new();
    tiff.extend_from_slice(b"MM\0\x2a\0\0\0\x08"); // big-endian TIFF header, IFD at 8
    tiff.extend_from_slice(&1u16.to_be_bytes()); // one entry
    tiff.extend_from_slice(&0x0112u16.to_be_bytes()); // Orientation
    tiff.extend_from_slice(&3u16.to_be_bytes()); // SHORT
    tiff.extend_from_slice(&1u32.to_be_bytes()); // count
    tiff.extend_from_slice(&orientation.to_be_bytes());
    tiff.extend_from_slice(&[0, 0]);
    tiff.extend_from_slice(&0u32.to_be_bytes()); // no next IFD
    let mut payload = b"Exif\0\0".to_vec();
    payload.extend_from_slice(&tiff);
    let mut out = jpeg[..2].to_vec();
    out.extend_from_slice(&[0xFF, 0xE1]);
    out.extend_from_slice(&((payload.len() + 2) as u16).to_be_bytes());
    out.extend_from_slice(&payload);
    out.extend_from_slice(&jpeg[2..]);
    out
}

#[test]
fn resize_and_normalise_layout() {
    let img = RgbImage::from_pixel(50, 30, Rgb([255, 127, 0]));
    let mut pre = Preprocessor::new(127.0, 128.0);
    let small = pre.resize(&img, None, 8, 4).unwrap();
    assert_eq!(small.dimensions(), (8, 4));
    let mut out = vec![0.0; 3 * 8 * 4];
    pre.normalise_into(&small, &mut out).unwrap();
    assert!(out[..32].iter().all(|&v| (v - 1.0).abs() < 1e-6), "R plane");
    assert!(out[32..64].iter().all(|&v| v.abs() < 1e-6), "G plane");
    assert!(
        out[64..].iter().all(|&v| (v + 127.0 / 128.0).abs() < 1e-6),
        "B plane"
    );
    assert!(pre.normalise_into(&small, &mut out[1..]).is_err());
}

#[test]
fn crop_takes_the_region() {
    let mut img = RgbImage::from_pixel(100, 100, Rgb([0, 0, 0]));
    for y in 50..100 {
        for x in 50..100 {
            img.put_pixel(x, y, Rgb([255, 255, 255]));
        }
    }
    let mut pre = Preprocessor::new(127.0, 128.0);
    let rect = Rect {
        x: 60.0,
        y: 60.0,
        w: 30.0,
        h: 30.0,
    };
    let crop = pre.resize(&img, Some(rect), 16, 16).unwrap();
    assert!(crop.pixels().all(|p| p.0 == [255, 255, 255]));
    let outside = Rect {
        x: 200.0,
        y: 0.0,
        w: 10.0,
        h: 10.0,
    };
    assert!(pre.resize(&img, Some(outside), 16, 16).is_err());
}

#[test]
fn missing_runtime_is_a_clear_error() {
    let tried = runtime::candidates(Some(std::path::Path::new("/nonexistent/libonnxruntime.so")));
    assert_eq!(
        tried[0],
        std::path::PathBuf::from("/nonexistent/libonnxruntime.so")
    );
    let err = ModelError::RuntimeNotFound { tried };
    let msg = err.to_string();
    assert!(
        msg.contains("/nonexistent/libonnxruntime.so") && msg.contains("scripts/setup.sh"),
        "{msg}"
    );
}

#[test]
fn top_classes_orders_by_probability() {
    let names: Vec<String> = ["a", "b", "c"].iter().map(|s| s.to_string()).collect();
    let top = top_classes(&[0.0, 2.0, 1.0], &names, 2);
    assert_eq!(top.iter().map(|c| c.index).collect::<Vec<_>>(), vec![1, 2]);
    assert_eq!(top[0].name, "b");
    let total: f32 = top_classes(&[0.0, 2.0, 1.0], &names, 3)
        .iter()
        .map(|c| c.probability)
        .sum();
    assert!((total - 1.0).abs() < 1e-5);
}

#[test]
fn feature_map_mean_over_region() {
    let fm = FeatureMap {
        channels: 2,
        height: 2,
        width: 2,
        data: vec![1.0, 2.0, 3.0, 4.0, 10.0, 20.0, 30.0, 40.0],
    };
    assert_eq!(fm.cell(1, 0), vec![3.0, 30.0]);
    assert_eq!(fm.mean_over(0, 1, 0, 2), vec![1.5, 15.0]);
    assert_eq!(fm.mean_over(0, 0, 0, 0), vec![2.5, 25.0]);
}

/// Small limits so that a mutated header claiming the largest accepted image costs
/// milliseconds; the checks are the production ones.
const FUZZ_LIMITS: DecodeLimits = DecodeLimits {
    max_bytes: 1 << 20,
    max_pixels: 1 << 20,
    max_side: 2048,
};

/// The magic bytes of every accepted format, so random bodies reach each format's decoder.
const MAGICS: &[&[u8]] = &[
    b"\x89PNG\r\n\x1a\n",
    b"\xff\xd8\xff",
    b"GIF89a",
    b"BM",
    b"RIFF\x00\x01\x00\x00WEBPVP8L",
    b"RIFF\x00\x01\x00\x00WEBPVP8 ",
];

/// Small real images of every accepted format (encoded once).
fn seed_images() -> &'static [Vec<u8>] {
    static SEEDS: std::sync::OnceLock<Vec<Vec<u8>>> = std::sync::OnceLock::new();
    SEEDS.get_or_init(|| {
        let rgb = DynamicImage::ImageRgb8(gradient(13, 9));
        let rgba = DynamicImage::ImageRgba8(RgbaImage::from_fn(6, 5, |x, y| {
            Rgba([x as u8 * 40, y as u8 * 50, 90, (x * y * 9) as u8])
        }));
        let mut seeds: Vec<Vec<u8>> = [ImageFormat::Png, ImageFormat::Jpeg, ImageFormat::Bmp]
            .into_iter()
            .map(|f| encode(&rgb, f))
            .collect();
        seeds.push(encode(&rgba, ImageFormat::Png));
        seeds.push(encode(&rgba, ImageFormat::WebP));
        seeds.push(encode(&rgba, ImageFormat::Gif));
        seeds
    })
}

/// What the front door may answer: an image within the limits, or a bad-input error.
fn check_front_door(bytes: &[u8]) -> Result<(), TestCaseError> {
    match decode_rgb(bytes, &FUZZ_LIMITS) {
        Ok(img) => {
            let (w, h) = img.dimensions();
            prop_assert!(w > 0 && h > 0);
            prop_assert!(w <= FUZZ_LIMITS.max_side && h <= FUZZ_LIMITS.max_side);
            prop_assert!(u64::from(w) * u64::from(h) <= FUZZ_LIMITS.max_pixels);
        }
        Err(e) => prop_assert!(e.is_bad_input(), "not a bad-input error: {e}"),
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// Random bytes, bare or behind each accepted format's magic: never a panic, always a
    /// typed bad-input error (or, by luck, a valid image).
    #[test]
    fn random_bytes_never_panic_the_front_door(
        magic in 0..=MAGICS.len(),
        body in proptest::collection::vec(any::<u8>(), 0..2048),
    ) {
        let mut bytes = MAGICS.get(magic).map(|m| m.to_vec()).unwrap_or_default();
        bytes.extend_from_slice(&body);
        check_front_door(&bytes)?;
    }

    /// Real images with flipped bytes, a cut, an insertion and a repeated block: never a
    /// panic, errors typed.
    #[test]
    fn mutated_images_never_panic_the_front_door(
        seed in any::<prop::sample::Index>(),
        flips in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..8),
        interesting in proptest::collection::vec(
            (any::<prop::sample::Index>(), prop::sample::select(vec![0u8, 0x7f, 0x80, 0xff])),
            0..4,
        ),
        insert in proptest::option::of((any::<prop::sample::Index>(), proptest::collection::vec(any::<u8>(), 1..64))),
        repeat in proptest::option::of((any::<prop::sample::Index>(), 1usize..32, 2usize..8)),
        cut in proptest::option::of(any::<prop::sample::Index>()),
    ) {
        let seeds = seed_images();
        let mut bytes = seeds[seed.index(seeds.len())].clone();
        for (at, x) in &flips {
            let i = at.index(bytes.len());
            bytes[i] ^= x;
        }
        for (at, v) in &interesting {
            let i = at.index(bytes.len());
            bytes[i] = *v;
        }
        if let Some((at, block)) = &insert {
            let i = at.index(bytes.len() + 1);
            bytes.splice(i..i, block.iter().copied());
        }
        if let Some((at, len, times)) = repeat {
            let i = at.index(bytes.len());
            let block = bytes[i..(i + len).min(bytes.len())].to_vec();
            let at_end = i + block.len();
            bytes.splice(at_end..at_end, block.repeat(times - 1));
        }
        if let Some(cut) = cut {
            bytes.truncate(cut.index(bytes.len() + 1));
        }
        check_front_door(&bytes)?;
    }
}
