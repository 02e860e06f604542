//! Where the network looked: occlusion saliency (Zeiler and Fergus 2014), and the overlay the
//! CLI writes and the page shows.
//!
//! Each window of a half-overlapping grid over the model input is covered with the training
//! mean colour (zero after normalisation), and the drop in the class-balanced call's
//! log-probability (the rise in the loss) is recorded; a pixel's saliency is the mean drop
//! over the windows that cover it. Chosen over the paper's input gradient because it needs
//! only the forward pass the page already runs: no autodiff code in the download and the same
//! kernels on WebGPU and the CPU, so both backends draw the same map (README, "Where the model
//! looked", has the measurements).

use crate::preprocess::resize_centre_square;
use image::{imageops, ImageBuffer, Luma, Rgb, RgbImage};
use serde::Serialize;

/// Side of the overlay the CLI writes and the page shows, in pixels.
pub const OVERLAY_SIDE: u32 = 336;
/// Opacity of the colour at the most salient pixel; less salient pixels show more of the photo.
const MAX_ALPHA: f32 = 0.7;
/// Height of the colour ramp under the CLI's overlay, in pixels.
const LEGEND_HEIGHT: u32 = 16;

/// The occlusion grid.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OcclusionConfig {
    /// Windows per side. Windows overlap by half: at input size `s` they step by
    /// `s / (grid + 1)` and are twice that wide (7 at 112 px: 49 windows of 28 px).
    pub grid: usize,
}

impl Default for OcclusionConfig {
    fn default() -> Self {
        Self { grid: 7 }
    }
}

impl OcclusionConfig {
    fn stride(&self, size: usize) -> usize {
        size / (self.grid + 1)
    }

    /// Top-left corners `(x, y)` of the windows on a `size` x `size` input, row by row.
    pub fn windows(&self, size: usize) -> Vec<(usize, usize)> {
        let step = self.stride(size);
        (0..self.grid).flat_map(|j| (0..self.grid).map(move |i| (i * step, j * step))).collect()
    }

    /// The input (`3 * size * size` floats, CHW) followed by one copy per window with that
    /// window set to zero: `(1 + windows) * 3 * size * size` floats.
    pub fn occluded_inputs(&self, input: &[f32], size: usize) -> Vec<f32> {
        let patch = 2 * self.stride(size);
        let windows = self.windows(size);
        let mut out = Vec::with_capacity(input.len() * (1 + windows.len()));
        out.extend_from_slice(input);
        for (x0, y0) in windows {
            let start = out.len();
            out.extend_from_slice(input);
            let copy = &mut out[start..];
            for c in 0..3 {
                for y in y0..y0 + patch {
                    let row = c * size * size + y * size;
                    copy[row + x0..row + x0 + patch].fill(0.0);
                }
            }
        }
        out
    }

    /// The map, `size * size` values row-major: for each pixel, the mean over the windows
    /// covering it of how much covering lowered the score (`base - occluded[w]`; a rise
    /// counts as 0), scaled so the largest is 1. All zero when no window lowered it; pixels
    /// no window reaches (when `size` is not a multiple of `grid + 1`) are 0.
    pub fn map(&self, size: usize, base: f32, occluded: &[f32]) -> Vec<f32> {
        let patch = 2 * self.stride(size);
        let mut sum = vec![0.0f32; size * size];
        let mut count = vec![0u32; size * size];
        for (&(x0, y0), &p) in self.windows(size).iter().zip(occluded) {
            let drop = (base - p).max(0.0);
            for y in y0..y0 + patch {
                for x in x0..x0 + patch {
                    sum[y * size + x] += drop;
                    count[y * size + x] += 1;
                }
            }
        }
        let mut map: Vec<f32> = sum.iter().zip(&count).map(|(&s, &n)| if n > 0 { s / n as f32 } else { 0.0 }).collect();
        let max = map.iter().copied().fold(0.0f32, f32::max);
        if max > 0.0 {
            map.iter_mut().for_each(|v| *v /= max);
        }
        map
    }
}

/// Where the network looked for one photo, for its class-balanced call.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Saliency {
    /// The training class (taxonomy id) the map explains: the class-balanced call on the photo
    /// as given (the largest logit-adjusted logit, one view).
    pub class: String,
    /// Its display name.
    pub name: String,
    /// Its class-balanced probability on the photo as given (one view, no flips).
    pub probability: f32,
    /// Side of the map: the model's input size.
    pub size: usize,
    /// `size * size` values in [0, 1], row-major over the model's input square (the photo's
    /// centre square): how much hiding that area lowered the log-probability, relative to the most.
    pub map: Vec<f32>,
}

impl Saliency {
    /// The share of the map's total mass on the pixels where `mask` (row-major, `size * size`)
    /// is true; 0 for an all-zero map. A uniform map gives the mask's area fraction.
    pub fn mass_in(&self, mask: &[bool]) -> f32 {
        let total: f32 = self.map.iter().sum();
        if total <= 0.0 {
            return 0.0;
        }
        self.map.iter().zip(mask).filter(|(_, &m)| m).map(|(v, _)| v).sum::<f32>() / total
    }

    /// The map at `side` x `side`, resampled and softened: the windows' square edges are an
    /// artefact of the grid, not something the network saw.
    fn resized(&self, side: u32) -> ImageBuffer<Luma<f32>, Vec<f32>> {
        let s = self.size as u32;
        let map = ImageBuffer::<Luma<f32>, _>::from_raw(s, s, self.map.clone()).expect("map holds size * size values");
        let map = imageops::resize(&map, side, side, imageops::FilterType::Triangle);
        imageops::fast_blur(&map, side as f32 / 40.0)
    }
}

/// The colour of saliency `v` in [0, 0.9] of d3's inferno ramp (the top tenth is a pale yellow
/// that vanishes on light skin).
pub fn ramp(v: f32) -> [u8; 3] {
    let c = colorous::INFERNO.eval_continuous(0.9 * f64::from(v.clamp(0.0, 1.0)));
    [c.r, c.g, c.b]
}

/// `stops` CSS colours (`#rrggbb`) along the ramp, least salient first: the page's legend.
pub fn ramp_css(stops: usize) -> Vec<String> {
    (0..stops)
        .map(|i| {
            let [r, g, b] = ramp(i as f32 / (stops.max(2) - 1) as f32);
            format!("#{r:02x}{g:02x}{b:02x}")
        })
        .collect()
}

/// The photo's centre square (what the model saw) at `side` px with the map blended over it:
/// the more salient, the more of the ramp's colour and the less of the photo.
pub fn overlay(photo: &RgbImage, saliency: &Saliency, side: u32) -> RgbImage {
    let mut square = resize_centre_square(photo, side);
    let map = saliency.resized(side);
    for (p, m) in square.pixels_mut().zip(map.pixels()) {
        let v = m[0].clamp(0.0, 1.0);
        let a = MAX_ALPHA * v;
        let colour = ramp(v);
        for c in 0..3 {
            p[c] = (f32::from(p[c]) * (1.0 - a) + f32::from(colour[c]) * a).round() as u8;
        }
    }
    square
}

/// What `classify --saliency` writes: the overlay at [`OVERLAY_SIDE`] with the colour ramp
/// under it (left: hiding that area changed nothing; right: changed the answer most).
pub fn overlay_with_legend(photo: &RgbImage, saliency: &Saliency) -> RgbImage {
    let side = OVERLAY_SIDE;
    let top = overlay(photo, saliency, side);
    let mut out = RgbImage::from_pixel(side, side + LEGEND_HEIGHT + 4, Rgb([255, 255, 255]));
    imageops::replace(&mut out, &top, 0, 0);
    for x in 0..side {
        let colour = Rgb(ramp(x as f32 / (side - 1) as f32));
        for y in side + 4..side + 4 + LEGEND_HEIGHT {
            out.put_pixel(x, y, colour);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_tile_the_input_with_half_overlap() {
        let cfg = OcclusionConfig::default();
        let w = cfg.windows(112);
        assert_eq!(w.len(), 49);
        assert_eq!(w[0], (0, 0));
        assert_eq!(w[48], (84, 84), "the last 28 px window ends at the edge");
    }

    #[test]
    fn occluded_copies_zero_exactly_their_window() {
        let cfg = OcclusionConfig { grid: 3 };
        let size = 8; // stride 2, patch 4
        let input = vec![1.0f32; 3 * size * size];
        let out = cfg.occluded_inputs(&input, size);
        assert_eq!(out.len(), 10 * input.len());
        assert!(out[..input.len()].iter().all(|&v| v == 1.0), "the first copy is the input");
        let second = &out[input.len()..2 * input.len()];
        for c in 0..3 {
            for y in 0..size {
                for x in 0..size {
                    let hidden = x < 4 && y < 4;
                    assert_eq!(second[c * 64 + y * 8 + x] == 0.0, hidden, "c{c} x{x} y{y}");
                }
            }
        }
    }

    #[test]
    fn map_peaks_where_hiding_hurts_and_ignores_rises() {
        let cfg = OcclusionConfig { grid: 3 };
        let size = 8;
        // Hiding the centre window (index 4, x 2..6, y 2..6) drops the probability by 0.5; one
        // other window raises it, which must not count.
        let mut occluded = vec![0.9f32; 9];
        occluded[4] = 0.4;
        occluded[0] = 0.99;
        let map = cfg.map(size, 0.9, &occluded);
        assert!((map[3 * size + 3] - 1.0).abs() < 1e-6, "pixels covered only by windows that hurt peak at 1");
        assert_eq!(map[0], 0.0);
        assert!(map.iter().all(|&v| (0.0..=1.0).contains(&v)));
        assert_eq!(cfg.map(size, 0.9, &[0.9; 9]), vec![0.0; 64], "nothing hurt: an empty map, not noise");
    }

    #[test]
    fn overlay_keeps_the_photo_where_nothing_mattered() {
        let photo = RgbImage::from_pixel(200, 150, Rgb([200, 150, 130]));
        let mut map = vec![0.0; 16 * 16];
        map[8 * 16 + 8] = 1.0;
        let s = Saliency { class: "x".into(), name: "x".into(), probability: 0.5, size: 16, map };
        let img = overlay_with_legend(&photo, &s);
        assert_eq!(img.dimensions(), (OVERLAY_SIDE, OVERLAY_SIDE + LEGEND_HEIGHT + 4));
        assert_eq!(img.get_pixel(5, 5), &Rgb([200, 150, 130]));
        assert_ne!(img.get_pixel(OVERLAY_SIDE / 2 + 10, OVERLAY_SIDE / 2 + 10), &Rgb([200, 150, 130]));
        let css = ramp_css(5);
        assert_eq!(css.len(), 5);
        assert!(css.iter().all(|c| c.len() == 7 && c.starts_with('#')));
        assert_ne!(css[0], css[4], "the legend runs from one colour to another");
    }
}
