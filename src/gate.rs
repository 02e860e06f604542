//! The gate before any risk is shown: is this a usable photo of a skin spot?
//!
//! Two kinds of check, both on exactly what the network sees (the model input):
//! - **quality**: too dark, overexposed, too blurry, black and white, the spot too small in the
//!   frame, measured from the pixels;
//! - **"is it a skin spot"**: a logistic head on the network's last hidden layer
//!   ([`LesionHead`]), fitted at export on lesion photos of every kind the model was validated
//!   on against photos that are not skin spots, giving `lesion_score` (higher = more like the
//!   spots the model knows).
//!
//! A gated photo gets a plain message of what is wrong and what to do, and no risk number.

use crate::preprocess::PreprocessConfig;
use serde::{Deserialize, Serialize};

/// Why a photo gets no risk number, or `Ok`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Gate {
    /// A usable photo of a skin spot: the risk is shown.
    Ok,
    /// It does not look like a close-up of a skin spot.
    NotASkinSpot,
    /// Too dark to judge.
    TooDark,
    /// Mostly blown-out white.
    Overexposed,
    /// Too blurry to judge.
    TooBlurry,
    /// No colour (a black-and-white filter or scan): the model reads a spot's colours.
    BlackAndWhite,
    /// A darker spot that fills too little of the frame to show its detail.
    SpotTooSmall,
}

impl Gate {
    /// The gate's name in results (`ok`, `not_a_skin_spot`, ...), as serialised.
    pub fn id(self) -> &'static str {
        match self {
            Gate::Ok => "ok",
            Gate::NotASkinSpot => "not_a_skin_spot",
            Gate::TooDark => "too_dark",
            Gate::Overexposed => "overexposed",
            Gate::TooBlurry => "too_blurry",
            Gate::BlackAndWhite => "black_and_white",
            Gate::SpotTooSmall => "spot_too_small",
        }
    }

    /// What is wrong and what to do, in words a person can act on. None reads as reassurance.
    pub fn message(self) -> &'static str {
        match self {
            Gate::Ok => "",
            // A photo unlike any it was trained on may still be of skin that needs a doctor.
            Gate::NotASkinSpot => "This does not look like a close-up of a skin spot, so no risk is given. This checks skin spots only: fill the square with the spot, about a hand's width away, in daylight. If it is skin that worries you but not a spot (a rash, a sore that does not heal, a lump), see a dermatologist: this check cannot judge it.",
            Gate::TooDark => "The photo is too dark to judge, so no risk is given. Retake it in daylight or with more light on the spot.",
            Gate::Overexposed => "The photo is too bright (washed out) to judge, so no risk is given. Retake it without a flash or direct glare on the spot.",
            Gate::TooBlurry => "The photo is too blurry to judge, so no risk is given. Hold the phone still, let it focus on the spot, and retake it.",
            Gate::BlackAndWhite => "The photo is black and white, and the colours of a spot matter, so no risk is given. Retake it in colour (turn off any black-and-white filter).",
            Gate::SpotTooSmall => "The spot is too small in the photo to judge, so no risk is given. Move closer so that the spot fills most of the square, and keep it sharp.",
        }
    }
}

/// Pixel measures of the model input.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Quality {
    /// Mean luminance (Rec. 601), 0 black to 1 white.
    pub luminance: f32,
    /// Share of pixels whose three channels are all at 250 or more (blown-out white).
    pub clipped: f32,
    /// Variance of the 4-neighbour Laplacian of luminance, times 10^4, in units of a
    /// [`SHARPNESS_REFERENCE_SIZE`] px input: low means blurry.
    pub sharpness: f32,
    /// Share of pixels in the darker of the two luminance classes Otsu's threshold separates:
    /// the spot's share of the frame when a darker spot sits on lighter skin.
    pub spot: f32,
    /// Mean luminance of the lighter class minus that of the darker one: how clearly they differ.
    pub contrast: f32,
    /// Mean of red minus green, -1 to 1. Skin of every tone, through a dermatoscope or not, is
    /// at least about as red as it is green; a green or blue frame is not skin.
    pub redness: f32,
    /// Mean over pixels of the largest minus the smallest channel, 0 to 1: 0 for a
    /// black-and-white photo.
    #[serde(default)]
    pub colour: f32,
}

/// Otsu's threshold over luminance in [0, 1] (64 bins): the split that maximises the variance
/// between the two classes. Returns the darker class's share and the gap between class means.
fn otsu_split(luma: &[f32]) -> (f32, f32) {
    const BINS: usize = 64;
    let mut hist = [0usize; BINS];
    for &l in luma {
        hist[((l.clamp(0.0, 1.0) * (BINS - 1) as f32).round()) as usize] += 1;
    }
    let total = luma.len() as f64;
    let centre = |b: usize| b as f64 / (BINS - 1) as f64;
    let sum_all: f64 = hist.iter().enumerate().map(|(b, &n)| n as f64 * centre(b)).sum();
    let (mut best, mut split) = (-1.0, (0.0, 0.0));
    let (mut n_dark, mut sum_dark) = (0.0, 0.0);
    for (b, &n) in hist.iter().enumerate().take(BINS - 1) {
        n_dark += n as f64;
        sum_dark += n as f64 * centre(b);
        let n_light = total - n_dark;
        if n_dark == 0.0 || n_light == 0.0 {
            continue;
        }
        let (m_dark, m_light) = (sum_dark / n_dark, (sum_all - sum_dark) / n_light);
        let between = n_dark * n_light * (m_light - m_dark).powi(2);
        if between > best {
            best = between;
            split = ((n_dark / total) as f32, (m_light - m_dark) as f32);
        }
    }
    split
}

impl Quality {
    /// Measures one model input (`3 * s * s` floats, CHW, normalised with `pre`).
    pub fn of_input(input: &[f32], pre: &PreprocessConfig) -> Self {
        let s = pre.input_size as usize;
        let n = s * s;
        let channel = |c: usize, i: usize| input[c * n + i] * pre.std[c] + pre.mean[c];
        let luma: Vec<f32> = (0..n)
            .map(|i| 0.299 * channel(0, i) + 0.587 * channel(1, i) + 0.114 * channel(2, i))
            .collect();
        let clipped = (0..n).filter(|&i| (0..3).all(|c| channel(c, i) >= 250.0 / 255.0)).count();
        let mut lap = Vec::with_capacity((s - 2) * (s - 2));
        for y in 1..s - 1 {
            for x in 1..s - 1 {
                let at = |x: usize, y: usize| luma[y * s + x];
                lap.push(4.0 * at(x, y) - at(x - 1, y) - at(x + 1, y) - at(x, y - 1) - at(x, y + 1));
            }
        }
        let mean = lap.iter().sum::<f32>() / lap.len() as f32;
        let var = lap.iter().map(|v| (v - mean).powi(2)).sum::<f32>() / lap.len() as f32;
        let (spot, contrast) = otsu_split(&luma);
        let redness = (0..n).map(|i| channel(0, i) - channel(1, i)).sum::<f32>() / n as f32;
        let spread = |i: usize| {
            let rgb = [channel(0, i), channel(1, i), channel(2, i)];
            rgb.iter().copied().fold(f32::MIN, f32::max) - rgb.iter().copied().fold(f32::MAX, f32::min)
        };
        let colour = (0..n).map(spread).sum::<f32>() / n as f32;
        Self {
            luminance: luma.iter().sum::<f32>() / n as f32,
            clipped: clipped as f32 / n as f32,
            sharpness: var * 1e4 * (s as f32 / SHARPNESS_REFERENCE_SIZE).powi(4),
            spot,
            contrast,
            redness,
            colour,
        }
    }
}

/// Logistic regression on the last hidden layer: `score = w . ((e - mean) / scale) + bias`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LesionHead {
    pub mean: Vec<f32>,
    pub scale: Vec<f32>,
    pub weights: Vec<f32>,
    pub bias: f32,
}

impl LesionHead {
    /// The lesion score of one embedding (log-odds of "a skin spot").
    pub fn score(&self, embedding: &[f32]) -> f32 {
        embedding
            .iter()
            .zip(&self.mean)
            .zip(&self.scale)
            .zip(&self.weights)
            .map(|(((e, m), s), w)| w * (e - m) / s)
            .sum::<f32>()
            + self.bias
    }
}

/// Pixel-quality limits, chosen by measurement on every lesion photo in `../shared/data`
/// (HAM10000 validation, BCN, MSK, PAD phone photos) so that well under 1% of them are gated,
/// while a frame darkened to 15% or blurred by 2 px (at the 112 px model input) is.
pub const MIN_LUMINANCE: f32 = 0.15;
/// See [`MIN_LUMINANCE`].
pub const MAX_CLIPPED: f32 = 0.5;
/// See [`MIN_LUMINANCE`].
pub const MIN_SHARPNESS: f32 = 0.5;
/// The input size [`MIN_SHARPNESS`] was measured at. On a smooth (blurred) frame the Laplacian
/// shrinks with the square of the pixel's size, so its variance goes as size^-4: a model with a
/// larger input would call sharp photos blurry (at 144 px, 2.8% of BCN's 84 px photos) unless
/// [`Quality::sharpness`] is rescaled to this size, which makes one limit mean the same blur at
/// any input size.
pub const SHARPNESS_REFERENCE_SIZE: f32 = 112.0;
/// A darker class (Otsu) under 0.8% of the frame, clearly darker than the rest, is a spot too
/// small to judge: a drawn spot of radius 3% of the frame is (0.6%), one of 5% is not (1.1%).
/// 1.1% of the MSK photos and 0.05% of HAM10000's fall under it, none of BCN's or the phone
/// photos' (MSK then loses 2.9% of its photos to the gate in all, the most of any source).
pub const MIN_SPOT: f32 = 0.008;
/// See [`MIN_SPOT`].
pub const MIN_SPOT_CONTRAST: f32 = 0.15;
/// Frames with a mean red-minus-green below this are "not a skin spot", whatever the lesion head
/// says: the learned head was fitted on photos, and a flat green test pattern (a browser's fake
/// camera) once scored as a confident lesion. The lowest of all 25,784 lesion photos in
/// `../shared/data` measured -0.151 (an 84 px ISIC image); this leaves a margin of 0.1.
pub const MIN_REDNESS: f32 = -0.25;

fn default_min_redness() -> f32 {
    MIN_REDNESS
}

/// Frames with less [`Quality::colour`] than this are black and white. Without its colours the
/// shipped model flagged 17 of 40 HAM10000 validation melanomas instead of 31, so such a photo
/// gets no risk. The least colourful of all 25,784 lesion photos in `../shared/data` (an 84 px
/// BCN nevus, a small brown spot in a wide grey field) measured 0.0068; a greyscale JPEG
/// measures 0.
pub const MIN_COLOUR: f32 = 0.003;

fn default_min_colour() -> f32 {
    MIN_COLOUR
}

/// The gate's settings, fitted at export and stored in `model.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GateConfig {
    /// The "is it a skin spot" head.
    pub head: LesionHead,
    /// Lesion scores below this are "not a skin spot".
    pub min_lesion_score: f32,
    /// Darker than this mean luminance is "too dark".
    pub min_luminance: f32,
    /// A larger share of blown-out pixels is "overexposed".
    pub max_clipped: f32,
    /// Less Laplacian variance than this is "too blurry".
    pub min_sharpness: f32,
    /// A darker class smaller than this share of the frame, when it clearly differs from the
    /// rest (`min_spot_contrast`), is "the spot is too small".
    #[serde(default)]
    pub min_spot: f32,
    /// See `min_spot`.
    #[serde(default)]
    pub min_spot_contrast: f32,
    /// A lower mean red-minus-green is "not a skin spot" ([`MIN_REDNESS`] when not stored).
    #[serde(default = "default_min_redness")]
    pub min_redness: f32,
    /// Less colour than this is "black and white" ([`MIN_COLOUR`] when not stored).
    #[serde(default = "default_min_colour")]
    pub min_colour: f32,
}

impl GateConfig {
    /// The gate for a photo: quality first (a dark or blurred frame also looks unlike a spot,
    /// and "retake it in daylight" is the more useful message), then the lesion score.
    pub fn decide(&self, quality: &Quality, lesion_score: f32) -> Gate {
        if quality.luminance < self.min_luminance {
            Gate::TooDark
        } else if quality.clipped > self.max_clipped {
            Gate::Overexposed
        } else if quality.sharpness < self.min_sharpness {
            Gate::TooBlurry
        } else if quality.colour < self.min_colour {
            Gate::BlackAndWhite
        } else if quality.spot < self.min_spot && quality.contrast > self.min_spot_contrast {
            Gate::SpotTooSmall
        } else if lesion_score < self.min_lesion_score || quality.redness < self.min_redness {
            Gate::NotASkinSpot
        } else {
            Gate::Ok
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pre(size: u32) -> PreprocessConfig {
        PreprocessConfig { input_size: size, mean: [0.5, 0.5, 0.5], std: [0.25, 0.25, 0.25] }
    }

    fn input(size: usize, pixel: impl Fn(usize, usize) -> f32) -> Vec<f32> {
        let n = size * size;
        (0..3 * n).map(|i| (pixel((i % n) % size, (i % n) / size) - 0.5) / 0.25).collect()
    }

    #[test]
    fn quality_measures_what_it_says() {
        let black = Quality::of_input(&input(16, |_, _| 0.0), &pre(16));
        assert!(black.luminance < 1e-6 && black.sharpness < 1e-6 && black.clipped == 0.0);
        let white = Quality::of_input(&input(16, |_, _| 1.0), &pre(16));
        assert!((white.luminance - 1.0).abs() < 1e-5 && white.clipped == 1.0);
        assert!(black.redness.abs() < 1e-6 && white.redness.abs() < 1e-6, "grey is neither red nor green");
        assert!(black.colour < 1e-6 && white.colour < 1e-6, "grey has no colour");
        // Every pixel (0.8, 0.5, 0.3): a brown whose channels span 0.5.
        let brown: Vec<f32> = [0.8f32, 0.5, 0.3].iter().flat_map(|&v| vec![(v - 0.5) / 0.25; 16 * 16]).collect();
        assert!((Quality::of_input(&brown, &pre(16)).colour - 0.5).abs() < 1e-5);
        let checks = Quality::of_input(&input(112, |x, y| ((x + y) % 2) as f32), &pre(112));
        assert!(checks.sharpness > 1e4, "a checkerboard is sharp: {}", checks.sharpness);
    }

    #[test]
    fn sharpness_of_a_smooth_frame_does_not_depend_on_the_input_size() {
        // The same soft pattern (two and one waves across the frame) at two input sizes.
        let soft = |s: usize| {
            let wave = move |x: usize, y: usize| {
                let (u, v) = (x as f32 / s as f32, y as f32 / s as f32);
                0.5 + 0.4 * (std::f32::consts::TAU * 2.0 * u).sin() * (std::f32::consts::TAU * v).sin()
            };
            Quality::of_input(&input(s, wave), &pre(s as u32)).sharpness
        };
        let (at_112, at_144) = (soft(112), soft(144));
        assert!(at_112 < MIN_SHARPNESS, "the pattern is blurry at 112 px: {at_112}");
        assert!((at_144 / at_112 - 1.0).abs() < 0.05, "112 px {at_112}, 144 px {at_144}");
    }

    #[test]
    fn quality_problems_come_before_the_lesion_score() {
        let head = LesionHead { mean: vec![0.0], scale: vec![1.0], weights: vec![1.0], bias: 0.0 };
        let gate = GateConfig {
            head,
            min_lesion_score: 0.0,
            min_luminance: 0.15,
            max_clipped: 0.5,
            min_sharpness: 0.5,
            min_spot: 0.008,
            min_spot_contrast: 0.15,
            min_redness: MIN_REDNESS,
            min_colour: MIN_COLOUR,
        };
        let good = Quality { luminance: 0.5, clipped: 0.0, sharpness: 5.0, spot: 0.2, contrast: 0.3, redness: 0.2, colour: 0.1 };
        assert_eq!(gate.decide(&good, 1.0), Gate::Ok);
        assert_eq!(gate.decide(&good, -1.0), Gate::NotASkinSpot);
        assert_eq!(gate.decide(&Quality { luminance: 0.05, ..good }, -1.0), Gate::TooDark);
        assert_eq!(gate.decide(&Quality { clipped: 0.9, ..good }, 1.0), Gate::Overexposed);
        assert_eq!(gate.decide(&Quality { sharpness: 0.1, ..good }, 1.0), Gate::TooBlurry);
        assert_eq!(gate.decide(&Quality { spot: 0.004, ..good }, 1.0), Gate::SpotTooSmall);
        assert_eq!(gate.decide(&Quality { spot: 0.004, contrast: 0.05, ..good }, 1.0), Gate::Ok, "no clear spot: nothing to be small");
        assert_eq!(gate.decide(&Quality { redness: -0.5, ..good }, 5.0), Gate::NotASkinSpot, "a green frame is not skin");
        assert_eq!(gate.decide(&Quality { redness: -0.1, ..good }, 1.0), Gate::Ok, "a cool-toned skin photo still passes");
        assert_eq!(gate.decide(&Quality { redness: 0.0, colour: 0.0, ..good }, 1.0), Gate::BlackAndWhite);
        assert_eq!(gate.decide(&Quality { colour: 0.0, luminance: 0.05, ..good }, 1.0), Gate::TooDark, "black is dark first");
        assert_eq!(gate.head.score(&[2.0]), 2.0);
        assert!(Gate::TooBlurry.message().contains("no risk is given"));
        for g in [Gate::Ok, Gate::NotASkinSpot, Gate::TooDark, Gate::Overexposed, Gate::TooBlurry, Gate::BlackAndWhite, Gate::SpotTooSmall] {
            assert_eq!(serde_json::to_value(g).unwrap(), g.id(), "id() is the serialised name");
        }
    }
}
