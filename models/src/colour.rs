//! Colour of the object in a region: a histogram over named colours (HSV bins) with background
//! suppression, the dominant colour's name (the derived `color=<name>` attribute), and the
//! histogram-intersection similarity used to rerank.
//!
//! Background suppression: pixels close to the region's border colour (the median of its
//! outer ring) and near-white pixels (catalogue backgrounds) do not count; if that leaves
//! almost nothing, every pixel counts.

use image::RgbImage;

use crate::preprocess::Rect;

/// The colour names, in histogram-bin order.
pub const COLOURS: [&str; 12] = [
    "red", "orange", "yellow", "green", "cyan", "blue", "purple", "pink", "brown", "black",
    "white", "grey",
];

/// The bin of one RGB pixel.
pub fn colour_bin(px: [u8; 3]) -> usize {
    let [r, g, b] = px.map(|c| f32::from(c) / 255.0);
    let max = r.max(g).max(b);
    let min = r.min(g).min(b);
    let v = max;
    let s = if max > 0.0 { (max - min) / max } else { 0.0 };
    if v < 0.2 {
        return 9; // black
    }
    if s < 0.2 {
        return if v > 0.85 { 10 } else { 11 }; // white / grey
    }
    let d = max - min;
    let mut h = if max == r {
        60.0 * ((g - b) / d)
    } else if max == g {
        60.0 * ((b - r) / d + 2.0)
    } else {
        60.0 * ((r - g) / d + 4.0)
    };
    if h < 0.0 {
        h += 360.0;
    }
    match h {
        h if !(15.0..345.0).contains(&h) => {
            if s < 0.5 && v > 0.7 {
                7 // pink
            } else {
                0 // red
            }
        }
        h if h < 45.0 => {
            if v < 0.6 {
                8 // brown
            } else {
                1 // orange
            }
        }
        h if h < 70.0 => 2,  // yellow
        h if h < 165.0 => 3, // green
        h if h < 195.0 => 4, // cyan
        h if h < 255.0 => 5, // blue
        h if h < 290.0 => 6, // purple
        _ => 7,              // pink / magenta
    }
}

/// The normalised colour histogram of `rect` of `img` (the whole image when `None`) with the
/// background suppressed; 12 bins in [`COLOURS`] order, summing to 1 (all zero for an empty
/// region).
pub fn colour_histogram(img: &RgbImage, rect: Option<Rect>) -> Vec<f32> {
    let r = rect
        .and_then(|r| r.clamp_to(img.width(), img.height()))
        .unwrap_or_else(|| Rect::full(img));
    let (x0, y0) = (r.x as u32, r.y as u32);
    let (x1, y1) = (
        ((r.x + r.w) as u32).min(img.width()),
        ((r.y + r.h) as u32).min(img.height()),
    );
    let mut hist = vec![0.0f32; COLOURS.len()];
    if x1 <= x0 || y1 <= y0 {
        return hist;
    }
    // Subsample large regions to at most ~128 × 128 pixels.
    let step = ((x1 - x0).max(y1 - y0) / 128).max(1);
    let border = border_colour(img, x0, y0, x1, y1, step);
    let mut all = vec![0.0f32; COLOURS.len()];
    let mut kept = 0usize;
    let mut total = 0usize;
    for y in (y0..y1).step_by(step as usize) {
        for x in (x0..x1).step_by(step as usize) {
            let px = img.get_pixel(x, y).0;
            let bin = colour_bin(px);
            all[bin] += 1.0;
            total += 1;
            let near_border = px
                .iter()
                .zip(border)
                .map(|(a, b)| (i32::from(*a) - i32::from(b)).abs())
                .sum::<i32>()
                < 60;
            let near_white = px.iter().all(|c| *c > 235);
            if !near_border && !near_white {
                hist[bin] += 1.0;
                kept += 1;
            }
        }
    }
    if kept * 50 < total {
        hist = all;
    }
    let sum: f32 = hist.iter().sum();
    if sum > 0.0 {
        hist.iter_mut().for_each(|h| *h /= sum);
    }
    hist
}

/// The per-channel median of the region's outer ring (5 % of its size, at least one pixel).
fn border_colour(img: &RgbImage, x0: u32, y0: u32, x1: u32, y1: u32, step: u32) -> [u8; 3] {
    let ring = ((x1 - x0).min(y1 - y0) / 20).max(1);
    let mut ch: [Vec<u8>; 3] = [Vec::new(), Vec::new(), Vec::new()];
    for y in (y0..y1).step_by(step as usize) {
        for x in (x0..x1).step_by(step as usize) {
            let edge = x < x0 + ring || x + ring >= x1 || y < y0 + ring || y + ring >= y1;
            if edge {
                let p = img.get_pixel(x, y).0;
                for c in 0..3 {
                    ch[c].push(p[c]);
                }
            }
        }
    }
    let mut out = [255u8; 3];
    for c in 0..3 {
        if !ch[c].is_empty() {
            ch[c].sort_unstable();
            out[c] = ch[c][ch[c].len() / 2];
        }
    }
    out
}

/// The dominant colour's name of a histogram (`None` when it is empty).
pub fn colour_name(hist: &[f32]) -> Option<&'static str> {
    let (i, v) = hist.iter().enumerate().max_by(|a, b| a.1.total_cmp(b.1))?;
    (*v > 0.0).then(|| COLOURS.get(i).copied()).flatten()
}

/// Histogram intersection in [0, 1] (0 when either is empty or the lengths differ).
pub fn colour_similarity(a: &[f32], b: &[f32]) -> f32 {
    if a.len() != b.len() {
        return 0.0;
    }
    a.iter().zip(b).map(|(x, y)| x.min(*y)).sum()
}

#[cfg(test)]
mod tests {
    use super::*;
    use image::Rgb;

    #[test]
    fn names_of_plain_colours() {
        for (px, name) in [
            ([220, 30, 30], "red"),
            ([30, 60, 220], "blue"),
            ([30, 170, 60], "green"),
            ([20, 20, 20], "black"),
            ([240, 140, 20], "orange"),
            ([240, 230, 40], "yellow"),
            ([120, 70, 30], "brown"),
            ([128, 128, 128], "grey"),
            ([250, 250, 250], "white"),
            ([140, 40, 200], "purple"),
        ] {
            assert_eq!(COLOURS[colour_bin(px)], name, "{px:?}");
        }
    }

    #[test]
    fn background_is_suppressed() {
        // A small red square on white: red, not white.
        let mut img = RgbImage::from_pixel(100, 100, Rgb([255, 255, 255]));
        for y in 40..60 {
            for x in 40..60 {
                img.put_pixel(x, y, Rgb([200, 20, 20]));
            }
        }
        let h = colour_histogram(&img, None);
        assert_eq!(colour_name(&h), Some("red"));
        // A blue disc-ish blob on a green background inside a box: blue.
        let mut img = RgbImage::from_pixel(100, 100, Rgb([30, 160, 50]));
        for y in 30..70 {
            for x in 30..70 {
                img.put_pixel(x, y, Rgb([20, 40, 210]));
            }
        }
        let rect = Rect {
            x: 20.0,
            y: 20.0,
            w: 60.0,
            h: 60.0,
        };
        let h = colour_histogram(&img, Some(rect));
        assert_eq!(colour_name(&h), Some("blue"));
        assert!((colour_similarity(&h, &h) - 1.0).abs() < 1e-5);
    }
}
