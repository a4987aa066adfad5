//! Unit tests of the parts that need no model: the image front door and preprocessing.

use std::io::Cursor;

use image::{DynamicImage, ImageDecoder, ImageFormat, Rgb, RgbImage, Rgba, RgbaImage};
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

/// A GIF of a `screen` logical screen (what the header probe reads) whose one frame
/// descriptor declares `frame` and is followed by `data` as its LZW stream.
fn gif_with_frame(screen: (u16, u16), frame: (u16, u16), data: &[u8]) -> Vec<u8> {
    let mut b = b"GIF89a".to_vec();
    b.extend_from_slice(&screen.0.to_le_bytes());
    b.extend_from_slice(&screen.1.to_le_bytes());
    b.extend_from_slice(&[0x80, 0, 0]); // a global palette of 2 colours
    b.extend_from_slice(&[0, 0, 0, 255, 255, 255]);
    b.push(0x2c); // image descriptor at (0, 0)
    b.extend_from_slice(&[0, 0, 0, 0]);
    b.extend_from_slice(&frame.0.to_le_bytes());
    b.extend_from_slice(&frame.1.to_le_bytes());
    b.extend_from_slice(&[0, 2]); // no local palette; LZW minimum code size 2
    for block in data.chunks(255) {
        b.push(block.len() as u8);
        b.extend_from_slice(block);
    }
    b.extend_from_slice(&[0, 0x3b]);
    b
}

#[test]
fn a_gif_frame_larger_than_its_screen_is_refused_before_its_buffer_is_reserved() {
    // What the fuzzer found: an 8x8 logical screen, a frame descriptor of 9508x1573 and 200
    // bytes of LZW data. The image crate decodes a frame that is not the screen into a
    // buffer of the frame's size (~57 MiB here, and the gif crate's palette indices, a
    // quarter of that, besides) before cropping it; with the room of the largest accepted
    // image the 233 bytes reserved it all and then failed as truncated. Sized from the
    // header's 8x8, the limit refuses the frame before anything is reserved.
    let limits = DecodeLimits::default();
    let data: Vec<u8> = (0..200u8).collect();
    let bomb = gif_with_frame((8, 8), (9508, 1573), &data);
    assert!(bomb.len() < 300);
    assert_eq!(
        decode::probe(&bomb, &limits).unwrap(),
        (ImageFormat::Gif, 8, 8)
    );
    assert!(4 * 9508 * 1573 > decode::max_alloc(bomb.len(), 8, 8, &limits));
    let err = decode_rgb(&bomb, &limits).unwrap_err();
    assert!(err.is_bad_input(), "{err}");
    assert!(err.to_string().contains("Memory limit"), "{err}");

    // A whole, valid frame of 1000x600 behind an 8x8 screen was accepted (cropped to 8x8,
    // after a 2.4 MB frame buffer); now it is refused likewise.
    let frame =
        DynamicImage::ImageRgba8(RgbaImage::from_pixel(1000, 600, Rgba([200, 30, 30, 255])));
    let whole = encode(&frame, ImageFormat::Gif);
    assert_eq!(
        decode_rgb(&whole, &limits).unwrap().dimensions(),
        (1000, 600)
    );
    let mut small_screen = whole.clone();
    small_screen[6..10].copy_from_slice(&[8, 0, 8, 0]);
    let err = decode_rgb(&small_screen, &limits).unwrap_err();
    assert!(err.to_string().contains("Memory limit"), "{err}");
    // A frame smaller than its screen still decodes (into a buffer of its own size, which
    // the screen's size bounds).
    let mut large_screen = whole;
    large_screen[6..10].copy_from_slice(&[0xb0, 0x04, 0xbc, 0x02]); // 1200x700
    let out = decode_rgb(&large_screen, &limits).unwrap();
    assert_eq!(out.dimensions(), (1200, 700));
    assert_eq!(out.get_pixel(999, 599), &Rgb([200, 30, 30]));
}

/// A zlib stream that inflates to `n` zero bytes (fixed Huffman: one literal, then
/// matches of 258 at distance 1; `n - 1` must be a multiple of 258): ~1/160 of `n`.
fn zlib_zeros(n: usize) -> Vec<u8> {
    assert_eq!((n - 1) % 258, 0);
    let mut out = vec![0x78, 0x01];
    let (mut acc, mut bits) = (0u64, 0u32);
    let mut put = |out: &mut Vec<u8>, value: u64, len: u32| {
        acc |= value << bits;
        bits += len;
        while bits >= 8 {
            out.push(acc as u8);
            acc >>= 8;
            bits -= 8;
        }
    };
    // Huffman codes go most significant bit first: reverse them into the LSB-first stream.
    let code = |c: u64, len: u32| c.reverse_bits() >> (64 - len);
    put(&mut out, 0b011, 3); // final block, fixed Huffman
    put(&mut out, code(0x30, 8), 8); // literal 0
    for _ in 0..(n - 1) / 258 {
        put(&mut out, code(0xc5, 8), 8); // length 258 (symbol 285)
        put(&mut out, 0, 5); // distance 1
    }
    put(&mut out, 0, 7); // end of block
    put(&mut out, 0, 7); // to a byte boundary
    let b = (n % 65521) as u32; // Adler-32 of n zeros: a = 1, b = n
    out.extend_from_slice(&((b << 16) | 1).to_be_bytes());
    out
}

fn png_chunk(out: &mut Vec<u8>, kind: &[u8; 4], data: &[u8]) {
    out.extend_from_slice(&(data.len() as u32).to_be_bytes());
    out.extend_from_slice(kind);
    out.extend_from_slice(data);
    let mut crc = !0u32;
    for &byte in kind.iter().chain(data) {
        crc ^= u32::from(byte);
        for _ in 0..8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ 0xedb8_8320
            } else {
                crc >> 1
            };
        }
    }
    out.extend_from_slice(&(!crc).to_be_bytes());
}

#[test]
fn an_inflating_icc_profile_is_cut_off_and_the_png_still_decodes() {
    // A 1x1 PNG whose iCCP chunk inflates to 64 MiB from ~420 KB: the PNG decoder inflates
    // the profile while reading the header, up to its allocation limit (`image`'s default,
    // 512 MiB, for the header probe). Under the header's limit the profile is dropped at
    // the working room and the pixels decode as ever.
    let mut png = b"\x89PNG\r\n\x1a\n".to_vec();
    png_chunk(&mut png, b"IHDR", &[0, 0, 0, 1, 0, 0, 0, 1, 8, 2, 0, 0, 0]);
    let mut iccp = b"icc\0\0".to_vec();
    iccp.extend_from_slice(&zlib_zeros(64 * 258 * 4065 + 1));
    png_chunk(&mut png, b"iCCP", &iccp);
    let pixels = encode(
        &DynamicImage::ImageRgb8(RgbImage::from_pixel(1, 1, Rgb([9, 8, 7]))),
        ImageFormat::Png,
    );
    let idat_at = pixels.windows(4).position(|w| w == b"IDAT").unwrap() - 4;
    png.extend_from_slice(&pixels[idat_at..]); // IDAT and IEND of a real 1x1 PNG
    let limits = DecodeLimits::default();
    assert!(png.len() < 1 << 20);

    let inflated = |l: image::Limits| {
        let mut reader = image::ImageReader::with_format(Cursor::new(&png[..]), ImageFormat::Png);
        reader.limits(l);
        let mut decoder = reader.into_decoder().unwrap();
        decoder.icc_profile().unwrap().map_or(0, |p| p.len())
    };
    assert_eq!(inflated(image::Limits::default()), 64 * 258 * 4065 + 1);
    assert_eq!(inflated(decode::header_limits(png.len(), &limits)), 0);
    let out = decode_rgb(&png, &limits).unwrap();
    assert_eq!(out.get_pixel(0, 0), &Rgb([9, 8, 7]));
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
