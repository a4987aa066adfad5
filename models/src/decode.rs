//! The image front door: bytes from outside → RGB pixels, with limits checked before any
//! pixel is decoded.
//!
//! Order of checks: byte length, then the format is sniffed from the magic bytes, then the
//! header's dimensions against the pixel limits, and only then the pixels (with the decoder's
//! own allocation limit as a second fence against decompression bombs). EXIF orientation is
//! applied; transparent pixels are composited onto white, as catalogue images are shown.
//!
//! The decoders' allocation limit (`image::Limits::max_alloc`) is sized from the input, not
//! from the largest accepted image: reading the header may use [`working_room`] (what a
//! PNG's metadata chunks and its ICC profile, inflated, take), decoding the pixels that plus
//! 4 bytes per pixel of the size the header declares (the RGBA frame buffer a GIF decodes a
//! frame into when the frame is not the logical screen). So a few hundred bytes cannot make
//! a decoder reserve what a 40-megapixel image would need: a GIF frame larger than its
//! logical screen, or a PNG `iCCP` chunk that inflates to hundreds of MiB, is refused or cut
//! off at that bound.

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
    let mut reader = ImageReader::with_format(Cursor::new(bytes), format);
    reader.limits(header_limits(bytes.len(), limits));
    let (w, h) = reader
        .into_dimensions()
        .map_err(|e| ModelError::Decode(e.to_string()))?;
    check_pixels(w, h, limits)?;
    Ok((format, w, h))
}

/// What reading the header of `len` bytes may allocate. It needs no pixel buffers, but the
/// PNG decoder reserves one output row (at most 8 bytes a pixel) and inflates the ICC profile
/// while it reads the header, and `image`'s default limit (512 MiB) would let a small `iCCP`
/// chunk inflate that far. Width and height are left to [`check_pixels`], for its typed error
/// (a PNG so wide that one output row does not fit, over ~140 000 pixels, is a
/// [`ModelError::Decode`] first).
pub(crate) fn header_limits(len: usize, limits: &DecodeLimits) -> image::Limits {
    let mut l = image::Limits::default();
    l.max_alloc = Some(working_room(len).saturating_add(8 * u64::from(limits.max_side)));
    l
}

/// Allocation room a decoder gets beyond the pixels: 1 MiB + 4 bytes per input byte. What it
/// holds is read from the input: a PNG's metadata chunks (a chunk's buffer grows by doubling
/// and a text chunk is counted again when parsed, so up to 3 bytes per input byte) and its
/// inflated ICC profile (which the PNG decoder drops, and the image still decodes, when it
/// does not fit; vsa does not use it).
pub fn working_room(len: usize) -> u64 {
    (len as u64).saturating_mul(4).saturating_add(1 << 20)
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
    let (format, w, h) = probe(bytes, limits)?;
    let mut reader = ImageReader::with_format(Cursor::new(bytes), format);
    let mut decoder_limits = image::Limits::default();
    decoder_limits.max_image_width = Some(limits.max_side);
    decoder_limits.max_image_height = Some(limits.max_side);
    // Sized from the header just read: a GIF frame larger than its logical screen would
    // otherwise get the room of the largest accepted image.
    decoder_limits.max_alloc = Some(max_alloc(bytes.len(), w, h, limits));
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

/// The decoders' allocation limit for an input of `len` bytes whose header declares `w`×`h`:
/// RGBA8 of that size plus [`working_room`], never more than RGBA8 of the largest accepted
/// image plus 64 MiB.
///
/// The limit is what the decoders count, not everything they allocate: the output buffer is
/// outside it (the header's size, checked already), and so is the gif crate's buffer of
/// palette indices (a quarter of the frame buffer the limit admits).
pub fn max_alloc(len: usize, w: u32, h: u32, limits: &DecodeLimits) -> u64 {
    let declared = (u64::from(w) * u64::from(h))
        .saturating_mul(4)
        .saturating_add(working_room(len));
    let largest = limits.max_pixels.saturating_mul(4).saturating_add(64 << 20);
    declared.min(largest)
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
