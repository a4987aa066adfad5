//! The half-block image renderer: a picture drawn with `▀`, the upper pixel as the foreground
//! colour and the lower pixel as the background, so one terminal cell shows two square-ish
//! pixels.
//!
//! Written here on top of the `image` crate instead of pulling `ratatui-image`: the console
//! only needs a small query thumbnail, and this keeps the dependency list to the workspace's.

use image::imageops::FilterType;
use image::{DynamicImage, RgbImage};
use ratatui::buffer::Buffer;
use ratatui::layout::Rect;
use ratatui::style::Color;
use ratatui::widgets::Widget;

/// Largest side of a stored thumbnail: enough for any terminal pane, small enough to resize
/// every frame.
pub const THUMBNAIL_MAX: u32 = 256;

/// A decoded, downscaled picture.
#[derive(Debug, Clone, PartialEq)]
pub struct Thumbnail {
    image: RgbImage,
    /// The original picture's size.
    pub original: (u32, u32),
}

impl Thumbnail {
    /// Decodes encoded image bytes (with the `image` crate's default memory limits) and
    /// downscales the result to at most [`THUMBNAIL_MAX`] a side.
    pub fn decode(bytes: &[u8]) -> Result<Thumbnail, String> {
        let decoded = image::load_from_memory(bytes).map_err(|e| format!("cannot decode: {e}"))?;
        Ok(Thumbnail::from_image(&decoded))
    }

    /// Downscales an already decoded picture.
    pub fn from_image(image: &DynamicImage) -> Thumbnail {
        let original = (image.width(), image.height());
        let small = if image.width() > THUMBNAIL_MAX || image.height() > THUMBNAIL_MAX {
            image.thumbnail(THUMBNAIL_MAX, THUMBNAIL_MAX)
        } else {
            image.clone()
        };
        Thumbnail {
            image: small.to_rgb8(),
            original,
        }
    }

    /// The stored picture.
    pub fn image(&self) -> &RgbImage {
        &self.image
    }
}

/// Renders a [`Thumbnail`] into an area, fitted (aspect kept) and centred.
#[derive(Debug, Clone, Copy)]
pub struct HalfBlocks<'a> {
    thumbnail: &'a Thumbnail,
}

impl<'a> HalfBlocks<'a> {
    /// A renderer for this picture.
    pub fn new(thumbnail: &'a Thumbnail) -> HalfBlocks<'a> {
        HalfBlocks { thumbnail }
    }
}

/// The picture fitted into `cols × 2·rows` pixels, aspect kept; `None` for an empty area or
/// picture.
pub fn fit(image: &RgbImage, cols: u16, rows: u16) -> Option<RgbImage> {
    let (w, h) = (image.width(), image.height());
    let (max_w, max_h) = (u32::from(cols), u32::from(rows) * 2);
    if w == 0 || h == 0 || max_w == 0 || max_h == 0 {
        return None;
    }
    let scale = (max_w as f64 / w as f64).min(max_h as f64 / h as f64);
    let tw = ((w as f64 * scale).round() as u32).clamp(1, max_w);
    let th = ((h as f64 * scale).round() as u32).clamp(1, max_h);
    if (tw, th) == (w, h) {
        return Some(image.clone());
    }
    Some(image::imageops::resize(image, tw, th, FilterType::Triangle))
}

impl Widget for HalfBlocks<'_> {
    fn render(self, area: Rect, buf: &mut Buffer) {
        let area = area.intersection(*buf.area());
        let Some(img) = fit(self.thumbnail.image(), area.width, area.height) else {
            return;
        };
        let cols = img.width() as u16;
        let rows = img.height().div_ceil(2) as u16;
        let x0 = area.x + (area.width.saturating_sub(cols)) / 2;
        let y0 = area.y + (area.height.saturating_sub(rows)) / 2;
        let rgb = |x: u32, y: u32| {
            img.get_pixel_checked(x, y)
                .map(|p| Color::Rgb(p[0], p[1], p[2]))
        };
        for row in 0..rows {
            for col in 0..cols {
                let (x, y) = (u32::from(col), u32::from(row) * 2);
                let Some(cell) = buf.cell_mut((x0 + col, y0 + row)) else {
                    continue;
                };
                let upper = rgb(x, y).unwrap_or(Color::Reset);
                let lower = rgb(x, y + 1).unwrap_or(Color::Reset);
                cell.set_symbol("▀").set_fg(upper).set_bg(lower);
            }
        }
    }
}
