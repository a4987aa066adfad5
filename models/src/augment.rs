//! Synthetic "real-shot" views of a clean catalogue image, for learning what a shopper's photo
//! does to an embedding (the whitening pairs, `vsa_index::whiten`). A view imitates the crop the
//! query path embeds: the object cut out of its white background (flood fill from the border,
//! so white inside the object stays), rotated, scaled and shifted inside a square frame over a
//! blotchy, defocused background; an object-level light gain; sometimes an occluding
//! rectangle; a colour cast, contrast and saturation change; sometimes blur; resolution loss
//! (a small object's crop is upscaled); sensor noise; JPEG. Every draw comes from `seed`, so a
//! view is reproducible.

use image::{ImageBuffer, Rgb, RgbImage, imageops};

use crate::{ModelError, Result};

/// A small deterministic generator (splitmix64): the same seed gives the same view.
struct Draw(u64);

impl Draw {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// Uniform in `[lo, hi)`.
    fn range(&mut self, lo: f32, hi: f32) -> f32 {
        let u = (self.next() >> 40) as f32 / (1u64 << 24) as f32;
        lo + (hi - lo) * u
    }
    fn chance(&mut self, p: f32) -> bool {
        self.range(0.0, 1.0) < p
    }
    fn gaussian(&mut self) -> f32 {
        let u1 = self.range(1e-7, 1.0);
        let u2 = self.range(0.0, 1.0);
        (-2.0 * u1.ln()).sqrt() * (std::f32::consts::TAU * u2).cos()
    }
    fn colour(&mut self) -> [f32; 3] {
        [
            self.range(0.0, 255.0),
            self.range(0.0, 255.0),
            self.range(0.0, 255.0),
        ]
    }
}

/// A near-white pixel (the catalogue's background).
fn whitish(p: &Rgb<u8>) -> bool {
    p.0.iter().all(|c| *c >= 235)
}

/// Object mask of a catalogue image: 0 where the near-white background reaches from the
/// border (4-connected), 1 elsewhere.
pub fn object_mask(img: &RgbImage) -> Vec<f32> {
    let (w, h) = (img.width() as usize, img.height() as usize);
    let mut mask = vec![1f32; w * h];
    let mut stack = Vec::new();
    let seed = |x: usize, y: usize, mask: &mut [f32], stack: &mut Vec<(usize, usize)>| {
        if mask[y * w + x] == 1.0 && whitish(img.get_pixel(x as u32, y as u32)) {
            mask[y * w + x] = 0.0;
            stack.push((x, y));
        }
    };
    for x in 0..w {
        seed(x, 0, &mut mask, &mut stack);
        seed(x, h - 1, &mut mask, &mut stack);
    }
    for y in 0..h {
        seed(0, y, &mut mask, &mut stack);
        seed(w - 1, y, &mut mask, &mut stack);
    }
    while let Some((x, y)) = stack.pop() {
        if x > 0 {
            seed(x - 1, y, &mut mask, &mut stack);
        }
        if x + 1 < w {
            seed(x + 1, y, &mut mask, &mut stack);
        }
        if y > 0 {
            seed(x, y - 1, &mut mask, &mut stack);
        }
        if y + 1 < h {
            seed(x, y + 1, &mut mask, &mut stack);
        }
    }
    mask
}

/// A blotchy defocused background: a few random colours on a coarse grid, upscaled smoothly,
/// with some fine texture.
fn background(size: u32, draw: &mut Draw) -> Vec<f32> {
    let cells = 2 + (draw.next() % 5) as u32;
    let grid: RgbImage = ImageBuffer::from_fn(cells, cells, |_, _| {
        let c = draw.colour();
        Rgb([c[0] as u8, c[1] as u8, c[2] as u8])
    });
    let smooth = imageops::resize(&grid, size, size, imageops::FilterType::Triangle);
    let texture = draw.range(0.0, 25.0);
    smooth
        .as_raw()
        .iter()
        .map(|v| f32::from(*v) + texture * draw.gaussian())
        .collect()
}

/// Bilinear sample of an RGB image and its mask at (x, y); `None` outside.
fn sample(img: &RgbImage, mask: &[f32], x: f32, y: f32) -> Option<([f32; 3], f32)> {
    let (w, h) = (img.width() as i64, img.height() as i64);
    let (x0, y0) = (x.floor() as i64, y.floor() as i64);
    if x0 < 0 || y0 < 0 || x0 + 1 >= w || y0 + 1 >= h {
        return None;
    }
    let (fx, fy) = (x - x0 as f32, y - y0 as f32);
    let mut rgb = [0f32; 3];
    let mut a = 0f32;
    for (dx, dy, wgt) in [
        (0, 0, (1.0 - fx) * (1.0 - fy)),
        (1, 0, fx * (1.0 - fy)),
        (0, 1, (1.0 - fx) * fy),
        (1, 1, fx * fy),
    ] {
        let (px, py) = ((x0 + dx) as u32, (y0 + dy) as u32);
        let p = img.get_pixel(px, py);
        for (acc, v) in rgb.iter_mut().zip(p.0) {
            *acc += wgt * f32::from(v);
        }
        a += wgt * mask[(py as i64 * w + px as i64) as usize];
    }
    Some((rgb, a))
}

/// One synthetic real-shot view of the catalogue image `item`, `size` × `size`.
pub fn query_view(item: &RgbImage, size: u32, seed: u64) -> Result<RgbImage> {
    if item.width() < 8 || item.height() < 8 || size < 16 {
        return Err(ModelError::InvalidArgument(format!(
            "query_view needs an image of at least 8×8 and size ≥ 16, got {}×{} → {size}",
            item.width(),
            item.height()
        )));
    }
    let mut draw = Draw(seed ^ 0xA5A5_5A5A_C3C3_3C3C);
    // A large photo is cut down first: the view has `size` pixels a side anyway.
    let limit = 2 * size;
    let shrunk;
    let item = if item.width().max(item.height()) > limit {
        let f = limit as f32 / item.width().max(item.height()) as f32;
        let (w, h) = (
            ((item.width() as f32 * f).round() as u32).max(8),
            ((item.height() as f32 * f).round() as u32).max(8),
        );
        shrunk = imageops::resize(item, w, h, imageops::FilterType::Triangle);
        &shrunk
    } else {
        item
    };
    let mask = object_mask(item);
    let (iw, ih) = (item.width() as usize, item.height() as usize);
    // The object's bounding box in the item.
    let (mut x0, mut y0, mut x1, mut y1) = (iw, ih, 0usize, 0usize);
    for y in 0..ih {
        for x in 0..iw {
            if mask[y * iw + x] > 0.0 {
                x0 = x0.min(x);
                y0 = y0.min(y);
                x1 = x1.max(x);
                y1 = y1.max(y);
            }
        }
    }
    if x1 < x0 || y1 < y0 {
        (x0, y0, x1, y1) = (0, 0, iw - 1, ih - 1);
    }
    let (cx, cy) = ((x0 + x1) as f32 / 2.0, (y0 + y1) as f32 / 2.0);
    let side = ((x1 - x0).max(y1 - y0) + 1) as f32;

    // Geometry: the object's longer side fills `fill` of the frame, rotated, shifted.
    let s = size as f32;
    let fill = draw.range(0.7, 1.0);
    let scale = fill * s / side; // output px per item px
    let angle = draw.range(-25.0, 25.0).to_radians();
    let (sin, cos) = angle.sin_cos();
    let (tx, ty) = (draw.range(-0.08, 0.08) * s, draw.range(-0.08, 0.08) * s);
    let gain = draw.range(0.7, 1.3);
    let mut px = background(size, &mut draw);
    for oy in 0..size {
        for ox in 0..size {
            // Inverse map: output → item coordinates.
            let (dx, dy) = (ox as f32 - s / 2.0 - tx, oy as f32 - s / 2.0 - ty);
            let ix = (cos * dx + sin * dy) / scale + cx;
            let iy = (-sin * dx + cos * dy) / scale + cy;
            if let Some((rgb, a)) = sample(item, &mask, ix, iy)
                && a > 0.0
            {
                let o = 3 * (oy * size + ox) as usize;
                for c in 0..3 {
                    px[o + c] = (1.0 - a) * px[o + c] + a * gain * rgb[c];
                }
            }
        }
    }
    // Occlusion: a flat rectangle over part of the object.
    if draw.chance(0.35) {
        let obj = fill * s;
        let (rw, rh) = (draw.range(0.2, 0.5) * obj, draw.range(0.2, 0.5) * obj);
        let ox = s / 2.0 + tx + draw.range(-0.5, 0.5) * obj - rw / 2.0;
        let oy = s / 2.0 + ty + draw.range(-0.5, 0.5) * obj - rh / 2.0;
        let c = draw.colour();
        let (xa, xb) = (ox.max(0.0) as u32, ((ox + rw).min(s)) as u32);
        let (ya, yb) = (oy.max(0.0) as u32, ((oy + rh).min(s)) as u32);
        for y in ya..yb {
            for x in xa..xb {
                let o = 3 * (y * size + x) as usize;
                px[o..o + 3].copy_from_slice(&c);
            }
        }
    }
    // Camera: colour cast, contrast, saturation.
    let cast = if draw.chance(0.5) {
        [
            draw.range(0.9, 1.1),
            draw.range(0.9, 1.1),
            draw.range(0.9, 1.1),
        ]
    } else {
        [1.0; 3]
    };
    let contrast = draw.range(0.7, 1.3);
    let brightness = draw.range(0.7, 1.3);
    let saturation = draw.range(0.6, 1.4);
    for p in px.chunks_mut(3) {
        let grey = (p[0] + p[1] + p[2]) / 3.0;
        for c in 0..3 {
            let v = grey + saturation * (p[c] - grey);
            p[c] = ((v * cast[c] - 128.0) * contrast + 128.0) * brightness;
        }
    }
    let to_image = |px: &[f32]| -> RgbImage {
        let raw = px.iter().map(|v| v.clamp(0.0, 255.0) as u8).collect();
        RgbImage::from_raw(size, size, raw).unwrap_or_else(|| RgbImage::new(size, size))
    };
    let mut img = to_image(&px);
    if draw.chance(0.3) {
        img = imageops::blur(&img, draw.range(0.6, 2.5));
    }
    // Resolution: a small object's crop was upscaled from fewer pixels.
    let low = (s * draw.range(0.5, 1.0)) as u32;
    if low < size {
        let small = imageops::resize(&img, low, low, imageops::FilterType::Triangle);
        img = imageops::resize(&small, size, size, imageops::FilterType::Triangle);
    }
    if draw.chance(0.85) {
        let sigma = draw.range(1.5, 6.0);
        for v in img.iter_mut() {
            *v = (f32::from(*v) + sigma * draw.gaussian()).clamp(0.0, 255.0) as u8;
        }
    }
    let quality = draw.range(40.0, 85.0) as u8;
    let mut jpeg = Vec::new();
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut jpeg, quality)
        .encode_image(&img)
        .map_err(|e| ModelError::InvalidArgument(format!("jpeg encode: {e}")))?;
    let decoded = image::load_from_memory_with_format(&jpeg, image::ImageFormat::Jpeg)
        .map_err(|e| ModelError::InvalidArgument(format!("jpeg decode: {e}")))?;
    Ok(decoded.to_rgb8())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item() -> RgbImage {
        // A red disc with a white centre on white.
        ImageBuffer::from_fn(64, 64, |x, y| {
            let (dx, dy) = (x as f32 - 32.0, y as f32 - 32.0);
            let r = (dx * dx + dy * dy).sqrt();
            if (8.0..20.0).contains(&r) {
                Rgb([200, 20, 20])
            } else {
                Rgb([255, 255, 255])
            }
        })
    }

    #[test]
    fn mask_keeps_white_inside_the_object() {
        let m = object_mask(&item());
        assert_eq!(m[0], 0.0, "border white is background");
        assert_eq!(m[32 * 64 + 32], 1.0, "the white centre is enclosed: object");
        assert_eq!(m[32 * 64 + 32 + 14], 1.0, "the ring");
    }

    #[test]
    fn views_are_reproducible_and_differ_by_seed() {
        let a = query_view(&item(), 64, 1).unwrap();
        let b = query_view(&item(), 64, 1).unwrap();
        let c = query_view(&item(), 64, 2).unwrap();
        assert_eq!(a.dimensions(), (64, 64));
        assert_eq!(a, b);
        assert_ne!(a, c);
        // The background is not the catalogue's white any more.
        let white = a.pixels().filter(|p| whitish(p)).count();
        assert!(white < 64 * 64 / 2, "{white} white pixels");
        assert!(query_view(&RgbImage::new(4, 4), 64, 1).is_err());
        // A large photo is cut down first and still gives a view of the asked size.
        let big = imageops::resize(&item(), 1000, 700, imageops::FilterType::Nearest);
        assert_eq!(query_view(&big, 64, 3).unwrap().dimensions(), (64, 64));
    }
}
