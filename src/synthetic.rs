//! Drawn lesions: a dark irregular blot with pixel noise on skin-coloured ground, whose extent
//! is known. The browser engine warms up on one (a photo-like input costs what a photo costs;
//! an all-zero input ran three times faster on the CPU path), and the saliency tests and bench
//! check that the map falls on the blot.

use image::{Rgb, RgbImage};

/// A drawn lesion on a `side` px square: centre `(cx, cy)` and mean radius, as fractions of
/// the side.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DrawnLesion {
    pub side: u32,
    pub cx: f32,
    pub cy: f32,
    pub radius: f32,
}

impl Default for DrawnLesion {
    /// The warm-up input: 256 px, centred, radius 0.225 of the side.
    fn default() -> Self {
        Self { side: 256, cx: 0.5, cy: 0.5, radius: 0.225 }
    }
}

impl DrawnLesion {
    /// Whether the point at (x, y), in fractions of the side, is on the blot. The border is
    /// wavy (five lobes) so that it is not a perfect disc.
    pub fn contains(&self, x: f32, y: f32) -> bool {
        let (dx, dy) = (x - self.cx, y - self.cy);
        let r = (dx * dx + dy * dy).sqrt() + 0.04 * (5.0 * dy.atan2(dx)).sin();
        r < self.radius
    }

    /// The picture, deterministic: the same every call.
    pub fn image(&self) -> RgbImage {
        let mut state = 0x9E37_79B9_7F4A_7C15u64;
        let side = self.side as f32;
        RgbImage::from_fn(self.side, self.side, |x, y| {
            state = state.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
            let noise = (state >> 59) as u8;
            if self.contains((x as f32 + 0.5) / side, (y as f32 + 0.5) / side) {
                Rgb([90 + noise, 58 + noise, 44 + noise])
            } else {
                Rgb([200 + noise, 155 + noise, 135 + noise])
            }
        })
    }

    /// The blot's pixels on a `size` x `size` grid over the same square (a saliency map's),
    /// row-major.
    pub fn mask(&self, size: usize) -> Vec<bool> {
        let s = size as f32;
        (0..size * size)
            .map(|i| self.contains(((i % size) as f32 + 0.5) / s, ((i / size) as f32 + 0.5) / s))
            .collect()
    }
}
