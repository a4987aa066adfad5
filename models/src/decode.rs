//! The image front door: bytes from outside → RGB pixels, with limits checked before any
//! pixel is decoded.
//!
//! Order of checks: byte length, then the format is sniffed from the magic bytes, then the
//! header's dimensions against the pixel limits, and only then the pixels (with the decoder's
//! own allocation limit as a second fence against decompression bombs). EXIF orientation is
//! applied; transparent pixels are composited onto white, as catalogue images are shown.

use std::io::Cursor;

use image::{DynamicImage, ImageDecoder, ImageReader, RgbImage};

use crate::error::{ModelError, Result};

/// Limits applied to every image that comes from outside.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DecodeLimits {
    /// Largest accepted encoded size in bytes.
    pub max_bytes: usize,
    /// Largest accepted width × height.
    pub max_pixels: u64,
    /// Largest accepted width or height.
    pub max_side: u32,
}

impl Default for DecodeLimits {
    fn default() -> Self {
        Self {
            max_bytes: 16 << 20,
            max_pixels: 40_000_000,
            max_side: 16_384,
        }
    }
}

/// Image formats accepted at the front door.
const ACCEPTED: &[image::ImageFormat] = &[
    image::ImageFormat::Jpeg,
    image::ImageFormat::Png,
    image::ImageFormat::WebP,
    image::ImageFormat::Gif,
    image::ImageFormat::Bmp,
];

/// Reads only the header: the format and dimensions of an encoded image.
pub fn probe(bytes: &[u8], limits: &DecodeLimits) -> Result<(image::ImageFormat, u32, u32)> {
    if bytes.len() > limits.max_bytes {
        return Err(ModelError::TooManyBytes {
            len: bytes.len(),
            max: limits.max_bytes,
        });
    }
    let format = image::guess_format(bytes).map_err(|_| ModelError::UnsupportedFormat)?;
    if !ACCEPTED.contains(&format) {
        return Err(ModelError::UnsupportedFormat);
    }
    if format == image::ImageFormat::Jpeg && !has_jpeg_end(bytes) {
        // The JPEG decoder pads a truncated scan with grey instead of failing; a photo cut
        // short in transit must not be embedded as if it were whole.
        return Err(ModelError::Decode(
            "truncated JPEG (no end-of-image marker)".into(),
        ));
    }
    let reader = ImageReader::with_format(Cursor::new(bytes), format);
    let (w, h) = reader
        .into_dimensions()
        .map_err(|e| ModelError::Decode(e.to_string()))?;
    check_pixels(w, h, limits)?;
    Ok((format, w, h))
}

/// True when the end-of-image marker `FF D9` is in the last KiB (trailing bytes after it are
/// tolerated, as many encoders and cameras leave some).
fn has_jpeg_end(bytes: &[u8]) -> bool {
    let tail = &bytes[bytes.len().saturating_sub(1024)..];
    tail.windows(2).any(|w| w == [0xFF, 0xD9])
}

fn check_pixels(w: u32, h: u32, limits: &DecodeLimits) -> Result<()> {
    if w == 0 || h == 0 {
        return Err(ModelError::Decode(format!("empty image {w}x{h}")));
    }
    if w > limits.max_side || h > limits.max_side || u64::from(w) * u64::from(h) > limits.max_pixels
    {
        return Err(ModelError::TooManyPixels {
            width: w,
            height: h,
            max_pixels: limits.max_pixels,
            max_side: limits.max_side,
        });
    }
    Ok(())
}

/// Decodes an encoded image to RGB8, honouring EXIF orientation, compositing alpha on white.
pub fn decode_rgb(bytes: &[u8], limits: &DecodeLimits) -> Result<RgbImage> {
    let (format, _, _) = probe(bytes, limits)?;
    let mut reader = ImageReader::with_format(Cursor::new(bytes), format);
    let mut decoder_limits = image::Limits::default();
    decoder_limits.max_image_width = Some(limits.max_side);
    decoder_limits.max_image_height = Some(limits.max_side);
    // RGBA8 of the largest accepted image plus working room for the decoder.
    decoder_limits.max_alloc = Some(limits.max_pixels.saturating_mul(4).saturating_add(64 << 20));
    reader.limits(decoder_limits);
    let mut decoder = reader
        .into_decoder()
        .map_err(|e| ModelError::Decode(e.to_string()))?;
    let (w, h) = decoder.dimensions();
    check_pixels(w, h, limits)?;
    let orientation = decoder
        .orientation()
        .unwrap_or(image::metadata::Orientation::NoTransforms);
    let mut img =
        DynamicImage::from_decoder(decoder).map_err(|e| ModelError::Decode(e.to_string()))?;
    img.apply_orientation(orientation);
    Ok(to_rgb_on_white(img))
}

/// Converts any decoded image to RGB8, compositing transparent pixels onto white.
pub fn to_rgb_on_white(img: DynamicImage) -> RgbImage {
    if !img.color().has_alpha() {
        return img.into_rgb8();
    }
    let rgba = img.into_rgba8();
    let (w, h) = rgba.dimensions();
    let mut out = RgbImage::new(w, h);
    for (dst, src) in out.pixels_mut().zip(rgba.pixels()) {
        let a = u32::from(src.0[3]);
        for c in 0..3 {
            let v = u32::from(src.0[c]) * a + 255 * (255 - a);
            dst.0[c] = ((v + 127) / 255) as u8;
        }
    }
    out
}

/// Reads a file and decodes it with [`decode_rgb`].
pub fn decode_file(path: &std::path::Path, limits: &DecodeLimits) -> Result<RgbImage> {
    let meta = std::fs::metadata(path)
        .map_err(|e| ModelError::Decode(format!("{}: {e}", path.display())))?;
    if meta.len() > limits.max_bytes as u64 {
        return Err(ModelError::TooManyBytes {
            len: usize::try_from(meta.len()).unwrap_or(usize::MAX),
            max: limits.max_bytes,
        });
    }
    let bytes =
        std::fs::read(path).map_err(|e| ModelError::Decode(format!("{}: {e}", path.display())))?;
    decode_rgb(&bytes, limits)
}
