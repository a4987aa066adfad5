//! Resizing (fast_image_resize, bilinear convolution like Pillow's) and normalisation into the
//! model's NCHW f32 input.

use fast_image_resize::images::{Image, ImageRef};
use fast_image_resize::{FilterType, PixelType, ResizeAlg, ResizeOptions, Resizer};
use image::RgbImage;

use crate::error::{ModelError, Result};

/// A rectangle in pixel coordinates of an image: left, top, width, height.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rect {
    /// Left edge.
    pub x: f32,
    /// Top edge.
    pub y: f32,
    /// Width.
    pub w: f32,
    /// Height.
    pub h: f32,
}

impl Rect {
    /// The whole image.
    pub fn full(img: &RgbImage) -> Self {
        Self {
            x: 0.0,
            y: 0.0,
            w: img.width() as f32,
            h: img.height() as f32,
        }
    }

    /// Clamps the rectangle to the image; `None` if nothing of it is left.
    pub fn clamp_to(&self, width: u32, height: u32) -> Option<Self> {
        let x0 = self.x.max(0.0);
        let y0 = self.y.max(0.0);
        let x1 = (self.x + self.w).min(width as f32);
        let y1 = (self.y + self.h).min(height as f32);
        (x1 - x0 >= 1.0 && y1 - y0 >= 1.0).then_some(Self {
            x: x0,
            y: y0,
            w: x1 - x0,
            h: y1 - y0,
        })
    }
}

/// Resizes images; keeps its scratch buffers between calls (one per worker thread).
pub struct Preprocessor {
    resizer: Resizer,
    mean: f32,
    scale: f32,
}

impl Preprocessor {
    /// A preprocessor normalising with `(x - mean) / scale`.
    pub fn new(mean: f32, scale: f32) -> Self {
        Self {
            resizer: Resizer::new(),
            mean,
            scale,
        }
    }

    /// Resizes the region `rect` of `img` (the whole image if `None`) to `width` × `height`.
    pub fn resize(
        &mut self,
        img: &RgbImage,
        rect: Option<Rect>,
        width: u32,
        height: u32,
    ) -> Result<RgbImage> {
        if width == 0 || height == 0 {
            return Err(ModelError::InvalidArgument(format!(
                "target size {width}x{height}"
            )));
        }
        let src = ImageRef::new(img.width(), img.height(), img.as_raw(), PixelType::U8x3)
            .map_err(|e| ModelError::InvalidArgument(e.to_string()))?;
        let mut dst = Image::new(width, height, PixelType::U8x3);
        let mut options =
            ResizeOptions::new().resize_alg(ResizeAlg::Convolution(FilterType::Bilinear));
        if let Some(r) = rect {
            let r = r.clamp_to(img.width(), img.height()).ok_or_else(|| {
                ModelError::InvalidArgument(format!("box {r:?} is outside the image"))
            })?;
            options = options.crop(
                f64::from(r.x),
                f64::from(r.y),
                f64::from(r.w),
                f64::from(r.h),
            );
        }
        self.resizer
            .resize(&src, &mut dst, &options)
            .map_err(|e| ModelError::InvalidArgument(e.to_string()))?;
        RgbImage::from_raw(width, height, dst.into_vec())
            .ok_or_else(|| ModelError::InvalidArgument("resize produced a short buffer".into()))
    }

    /// Writes `img` into `out` as normalised CHW f32 (`out.len() == 3 * w * h`).
    pub fn normalise_into(&self, img: &RgbImage, out: &mut [f32]) -> Result<()> {
        let plane = img.width() as usize * img.height() as usize;
        if out.len() != 3 * plane {
            return Err(ModelError::InvalidArgument(format!(
                "output buffer holds {} floats, image needs {}",
                out.len(),
                3 * plane
            )));
        }
        let inv = 1.0 / self.scale;
        let (r, rest) = out.split_at_mut(plane);
        let (g, b) = rest.split_at_mut(plane);
        for (i, px) in img.as_raw().chunks_exact(3).enumerate() {
            r[i] = (f32::from(px[0]) - self.mean) * inv;
            g[i] = (f32::from(px[1]) - self.mean) * inv;
            b[i] = (f32::from(px[2]) - self.mean) * inv;
        }
        Ok(())
    }
}
