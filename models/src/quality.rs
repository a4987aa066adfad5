//! Content quality signals of a catalogue image, each in `[0, 1]` (higher is better):
//!
//! - `resolution`: `min(1, sqrt(width·height) / 800)` — an 800×800 picture or larger scores 1;
//! - `sharpness`: variance of the Laplacian of the grey image (at most 512 px on the long
//!   side), mapped by `v / (v + 100)` — a blurred picture has little high-frequency energy;
//! - `coverage`: the share of the picture covered by the object's box, the box being the
//!   bounding box of pixels that differ from the border colour (product shots on a plain
//!   background); 1 when the object fills the frame.

use image::RgbImage;
use image::imageops::FilterType;

/// The signals of one image, `(name, value)`.
pub fn quality_signals(img: &RgbImage) -> Vec<(String, f32)> {
    let (w, h) = img.dimensions();
    if w == 0 || h == 0 {
        return Vec::new();
    }
    let resolution = ((f64::from(w) * f64::from(h)).sqrt() / 800.0).min(1.0) as f32;
    let long = w.max(h);
    let small = if long > 512 {
        let s = 512.0 / f64::from(long);
        image::imageops::resize(
            img,
            ((f64::from(w) * s).round() as u32).max(1),
            ((f64::from(h) * s).round() as u32).max(1),
            FilterType::Triangle,
        )
    } else {
        img.clone()
    };
    vec![
        ("resolution".to_string(), resolution),
        ("sharpness".to_string(), sharpness(&small)),
        ("coverage".to_string(), coverage(&small)),
    ]
}

/// The combined quality: the mean of the signals (0.5 when there are none).
pub fn quality_score(signals: &[(String, f32)]) -> f32 {
    if signals.is_empty() {
        return 0.5;
    }
    signals.iter().map(|(_, v)| v.clamp(0.0, 1.0)).sum::<f32>() / signals.len() as f32
}

fn grey(img: &RgbImage) -> Vec<f32> {
    img.pixels()
        .map(|p| 0.299 * f32::from(p[0]) + 0.587 * f32::from(p[1]) + 0.114 * f32::from(p[2]))
        .collect()
}

fn sharpness(img: &RgbImage) -> f32 {
    let (w, h) = (img.width() as usize, img.height() as usize);
    if w < 3 || h < 3 {
        return 0.0;
    }
    let g = grey(img);
    let mut sum = 0.0f64;
    let mut sq = 0.0f64;
    let mut n = 0.0f64;
    for y in 1..h - 1 {
        for x in 1..w - 1 {
            let c = g[y * w + x];
            let l = g[(y - 1) * w + x] + g[(y + 1) * w + x] + g[y * w + x - 1] + g[y * w + x + 1]
                - 4.0 * c;
            sum += f64::from(l);
            sq += f64::from(l) * f64::from(l);
            n += 1.0;
        }
    }
    let mean = sum / n;
    let var = (sq / n - mean * mean).max(0.0);
    (var / (var + 100.0)) as f32
}

fn coverage(img: &RgbImage) -> f32 {
    let (w, h) = img.dimensions();
    // The background: the median-ish border colour (the mean of the four corners).
    let corners = [(0, 0), (w - 1, 0), (0, h - 1), (w - 1, h - 1)];
    let mut bg = [0f32; 3];
    for (x, y) in corners {
        let p = img.get_pixel(x, y);
        for c in 0..3 {
            bg[c] += f32::from(p[c]) / 4.0;
        }
    }
    let (mut x0, mut y0, mut x1, mut y1) = (w, h, 0u32, 0u32);
    for (x, y, p) in img.enumerate_pixels() {
        let d: f32 = (0..3).map(|c| (f32::from(p[c]) - bg[c]).abs()).sum();
        if d > 60.0 {
            x0 = x0.min(x);
            y0 = y0.min(y);
            x1 = x1.max(x);
            y1 = y1.max(y);
        }
    }
    if x1 < x0 || y1 < y0 {
        return 0.0;
    }
    let area = f64::from(x1 - x0 + 1) * f64::from(y1 - y0 + 1);
    (area / (f64::from(w) * f64::from(h))) as f32
}

#[cfg(test)]
mod tests {
    use super::*;

    fn square(size: u32, box_side: u32, sharp: bool) -> RgbImage {
        let off = (size - box_side) / 2;
        RgbImage::from_fn(size, size, |x, y| {
            let inside = x >= off && x < off + box_side && y >= off && y < off + box_side;
            if !inside {
                return image::Rgb([255, 255, 255]);
            }
            if sharp && (x / 4 + y / 4) % 2 == 0 {
                image::Rgb([0, 0, 0])
            } else {
                image::Rgb([200, 30, 30])
            }
        })
    }

    fn get(s: &[(String, f32)], name: &str) -> f32 {
        s.iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| *v)
            .unwrap_or(f32::NAN)
    }

    #[test]
    fn signals_rank_what_they_should() {
        let big_sharp = quality_signals(&square(800, 700, true));
        let small_blurry = quality_signals(&image::imageops::blur(&square(200, 60, true), 3.0));
        assert!(get(&big_sharp, "resolution") > get(&small_blurry, "resolution"));
        assert!(get(&big_sharp, "sharpness") > get(&small_blurry, "sharpness"));
        assert!(get(&big_sharp, "coverage") > 0.7, "{big_sharp:?}");
        assert!(get(&small_blurry, "coverage") < 0.3, "{small_blurry:?}");
        assert!(quality_score(&big_sharp) > quality_score(&small_blurry));
        for (_, v) in big_sharp.iter().chain(&small_blurry) {
            assert!((0.0..=1.0).contains(v));
        }
        assert_eq!(quality_score(&[]), 0.5);
    }
}
