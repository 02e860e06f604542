//! Training augmentation (feature `train`): the paper's rotation and flip invariance, plus the
//! gap between a dermatoscope and a phone camera. A phone photo frames the spot smaller and
//! off-centre, is often out of focus or shaken, compressed harder, lit by whatever lamp is near,
//! and has no dermatoscope's dark corners; skin has hair and shiny spots. [`Aug::sample`] draws
//! one of each from ranges written once in [`AugConfig`].

use image::{Rgb, RgbImage};
use rand::rngs::StdRng;
use rand::Rng;

/// Ranges and probabilities of the random augmentation.
#[derive(Debug, Clone, Copy)]
pub struct AugConfig {
    /// Side of the window as a share of the source's side: < 1 zooms in, > 1 shows more skin
    /// around the spot (the edges are mirrored), as a phone held further away does.
    pub scale: (f32, f32),
    /// Largest shift of the window's centre, as a share of the side.
    pub shift: f32,
    /// Brightness (exposure), contrast and saturation factors.
    pub brightness: (f32, f32),
    pub contrast: (f32, f32),
    pub saturation: (f32, f32),
    /// Largest per-channel gain away from 1 (white balance).
    pub white_balance: f32,
    /// Probability and sigma range (output pixels) of a defocus blur.
    pub defocus: (f64, f32, f32),
    /// Probability and largest length (output pixels) of a straight motion blur.
    pub motion: (f64, f32),
    /// Probability and range of radii (share of the half-diagonal) of dark dermatoscope corners.
    pub vignette: (f64, f32, f32),
    /// Probability of drawing 1-5 hairs.
    pub hair: f64,
    /// Probability of 1-3 specular highlights.
    pub glare: f64,
    /// Probability and quality range of a JPEG round trip.
    pub jpeg: (f64, u8, u8),
}

impl Default for AugConfig {
    fn default() -> Self {
        Self {
            scale: (0.6, 1.3),
            shift: 0.12,
            brightness: (0.75, 1.25),
            contrast: (0.8, 1.2),
            saturation: (0.7, 1.3),
            white_balance: 0.12,
            defocus: (0.25, 0.4, 1.6),
            motion: (0.15, 5.0),
            vignette: (0.15, 0.75, 1.0),
            hair: 0.15,
            glare: 0.15,
            jpeg: (0.3, 30, 90),
        }
    }
}

/// A hair: a quadratic curve through three points (output pixels), its width and darkness.
#[derive(Debug, Clone)]
pub struct Hair {
    pub points: [(f32, f32); 3],
    pub width: f32,
    pub colour: [f32; 3],
}

/// Parameters of one random augmentation (pixels are those of the `size` x `size` output).
#[derive(Debug, Clone)]
pub struct Aug {
    pub angle: f32,
    pub scale: f32,
    pub dx: f32,
    pub dy: f32,
    pub hflip: bool,
    pub brightness: f32,
    pub contrast: f32,
    pub saturation: f32,
    pub gains: [f32; 3],
    pub defocus: Option<f32>,
    /// Length and direction (radians).
    pub motion: Option<(f32, f32)>,
    /// Radius where darkening starts, as a share of the half-diagonal.
    pub vignette: Option<f32>,
    pub hairs: Vec<Hair>,
    /// Centre, radius (output pixels) and strength of each highlight.
    pub glare: Vec<(f32, f32, f32, f32)>,
    pub jpeg_quality: Option<u8>,
}

impl Aug {
    /// No change at all: the inference path's view.
    pub fn identity() -> Self {
        Self {
            angle: 0.0,
            scale: 1.0,
            dx: 0.0,
            dy: 0.0,
            hflip: false,
            brightness: 1.0,
            contrast: 1.0,
            saturation: 1.0,
            gains: [1.0; 3],
            defocus: None,
            motion: None,
            vignette: None,
            hairs: Vec::new(),
            glare: Vec::new(),
            jpeg_quality: None,
        }
    }

    /// Draws one augmentation for a `size` px output.
    pub fn sample(rng: &mut StdRng, c: &AugConfig, size: u32) -> Self {
        let s = size as f32;
        let mut range = |(lo, hi): (f32, f32)| rng.random_range(lo..=hi);
        let (angle, scale) = (range((0.0, std::f32::consts::TAU)), range(c.scale));
        let (dx, dy) = (range((-c.shift, c.shift)), range((-c.shift, c.shift)));
        let (brightness, contrast, saturation) = (range(c.brightness), range(c.contrast), range(c.saturation));
        let wb = c.white_balance;
        let gains = [range((1.0 - wb, 1.0 + wb)), 1.0, range((1.0 - wb, 1.0 + wb))];
        let mut aug = Self { angle, scale, dx, dy, hflip: rng.random_bool(0.5), brightness, contrast, saturation, gains, ..Self::identity() };
        if rng.random_bool(c.defocus.0) {
            aug.defocus = Some(rng.random_range(c.defocus.1..=c.defocus.2));
        }
        if rng.random_bool(c.motion.0) {
            aug.motion = Some((rng.random_range(2.0..=c.motion.1), rng.random_range(0.0..std::f32::consts::PI)));
        }
        if rng.random_bool(c.vignette.0) {
            aug.vignette = Some(rng.random_range(c.vignette.1..=c.vignette.2));
        }
        if rng.random_bool(c.hair) {
            let mut point = || (rng.random_range(-0.1 * s..1.1 * s), rng.random_range(-0.1 * s..1.1 * s));
            aug.hairs = (0..5)
                .map(|_| Hair { points: [point(), point(), point()], width: 0.0, colour: [0.0; 3] })
                .collect();
            let n = rng.random_range(1..=5);
            aug.hairs.truncate(n);
            for h in &mut aug.hairs {
                h.width = rng.random_range(0.5..1.3);
                let dark = rng.random_range(0.05..0.35);
                h.colour = [dark * 1.2, dark, dark * 0.8];
            }
        }
        if rng.random_bool(c.glare) {
            let n = rng.random_range(1..=3);
            aug.glare = (0..n)
                .map(|_| (rng.random_range(0.0..s), rng.random_range(0.0..s), rng.random_range(0.02..0.08) * s, rng.random_range(0.4..0.9)))
                .collect();
        }
        if rng.random_bool(c.jpeg.0) {
            aug.jpeg_quality = Some(rng.random_range(c.jpeg.1..=c.jpeg.2));
        }
        aug
    }
}

/// Reflects `v` into `[0, max]` (mirrored edges: a zoomed-out window shows plausible skin).
fn mirror(v: f32, max: f32) -> f32 {
    let period = 2.0 * max;
    let m = v.rem_euclid(period);
    if m > max { period - m } else { m }
}

/// Bilinear sample of channel values at (x, y), in [0, 1].
fn bilinear(raw: &[u8], w: usize, h: usize, x: f32, y: f32) -> [f32; 3] {
    let (x0, y0) = (x.floor() as usize, y.floor() as usize);
    let (x1, y1) = ((x0 + 1).min(w - 1), (y0 + 1).min(h - 1));
    let (fx, fy) = (x - x0 as f32, y - y0 as f32);
    [0, 1, 2].map(|c| {
        let p = |xx: usize, yy: usize| f32::from(raw[(yy * w + xx) * 3 + c]) / 255.0;
        let top = p(x0, y0) * (1.0 - fx) + p(x1, y0) * fx;
        let bottom = p(x0, y1) * (1.0 - fx) + p(x1, y1) * fx;
        top * (1.0 - fy) + bottom * fy
    })
}

/// The warped view as floats: rotation about the centre, zoom, shift, flip; a motion blur
/// averages taps along its direction.
fn warp(src: &RgbImage, size: u32, a: &Aug) -> Vec<[f32; 3]> {
    let (w, h) = (src.width() as usize, src.height() as usize);
    let side = src.width().min(src.height()) as f32;
    let (cos, sin) = (a.angle.cos(), a.angle.sin());
    let step = a.scale * side / size as f32;
    let (cx, cy) = (w as f32 / 2.0 + a.dx * side, h as f32 / 2.0 + a.dy * side);
    let taps: Vec<(f32, f32)> = match a.motion {
        Some((len, dir)) => (0..5).map(|i| (i as f32 / 4.0 - 0.5) * len).map(|t| (t * dir.cos(), t * dir.sin())).collect(),
        None => vec![(0.0, 0.0)],
    };
    let raw = src.as_raw();
    let half = size as f32 / 2.0;
    let mut out = Vec::with_capacity((size * size) as usize);
    for y in 0..size {
        for x in 0..size {
            let mut acc = [0f32; 3];
            for &(tx, ty) in &taps {
                let mut u = (x as f32 + 0.5 + tx - half) * step;
                let v = (y as f32 + 0.5 + ty - half) * step;
                if a.hflip {
                    u = -u;
                }
                let sx = mirror(cx + cos * u - sin * v - 0.5, (w - 1) as f32);
                let sy = mirror(cy + sin * u + cos * v - 0.5, (h - 1) as f32);
                let p = bilinear(raw, w, h, sx, sy);
                acc.iter_mut().zip(p).for_each(|(a, p)| *a += p);
            }
            out.push(acc.map(|v| v / taps.len() as f32));
        }
    }
    out
}

/// Exposure, white balance, saturation and contrast, in that order (what a camera and its
/// lighting change).
fn colour(px: [f32; 3], a: &Aug) -> [f32; 3] {
    let px = [0, 1, 2].map(|c| px[c] * a.gains[c]);
    let luma = 0.299 * px[0] + 0.587 * px[1] + 0.114 * px[2];
    px.map(|v| {
        let sat = luma + (v - luma) * a.saturation;
        let con = 0.5 + (sat - 0.5) * a.contrast;
        con * a.brightness
    })
}

/// Distance from (px, py) to the quadratic curve of `h`, by sampling it (hairs are few and short).
fn distance_to_hair(h: &Hair, px: f32, py: f32) -> f32 {
    let [p0, p1, p2] = h.points;
    (0..=24)
        .map(|i| {
            let t = i as f32 / 24.0;
            let (a, b, c) = ((1.0 - t) * (1.0 - t), 2.0 * t * (1.0 - t), t * t);
            let (x, y) = (a * p0.0 + b * p1.0 + c * p2.0, a * p0.1 + b * p1.1 + c * p2.1);
            ((x - px).powi(2) + (y - py).powi(2)).sqrt()
        })
        .fold(f32::INFINITY, f32::min)
}

/// Renders an augmented `size` x `size` view of `src`. [`Aug::identity`] on a `size` px square
/// gives the square back unchanged.
pub fn augment(src: &RgbImage, size: u32, a: &Aug) -> RgbImage {
    let pixels = warp(src, size, a);
    let half = size as f32 / 2.0;
    let half_diag = half * std::f32::consts::SQRT_2;
    let mut out = RgbImage::new(size, size);
    for (i, px) in out.pixels_mut().enumerate() {
        let (x, y) = ((i as u32 % size) as f32 + 0.5, (i as u32 / size) as f32 + 0.5);
        let mut rgb = colour(pixels[i], a);
        for h in &a.hairs {
            let d = distance_to_hair(h, x, y);
            let cover = (h.width + 0.5 - d).clamp(0.0, 1.0);
            rgb = [0, 1, 2].map(|c| rgb[c] * (1.0 - cover) + h.colour[c] * cover);
        }
        for &(gx, gy, r, strength) in &a.glare {
            let d2 = ((x - gx).powi(2) + (y - gy).powi(2)) / (r * r);
            let g = strength * (-d2).exp();
            rgb = rgb.map(|v| v + (1.0 - v) * g);
        }
        if let Some(start) = a.vignette {
            let r = ((x - half).powi(2) + (y - half).powi(2)).sqrt() / half_diag;
            let dark = ((r - start) / 0.12).clamp(0.0, 1.0);
            rgb = rgb.map(|v| v * (1.0 - 0.95 * dark));
        }
        *px = Rgb(rgb.map(|v| (v.clamp(0.0, 1.0) * 255.0).round() as u8));
    }
    if let Some(sigma) = a.defocus {
        out = image::imageops::blur(&out, sigma);
    }
    if let Some(q) = a.jpeg_quality {
        out = jpeg_round_trip(&out, q).unwrap_or(out);
    }
    out
}

/// Encodes at JPEG quality `q` and decodes again, as a phone's or a messenger's compression does.
fn jpeg_round_trip(img: &RgbImage, q: u8) -> Option<RgbImage> {
    let mut bytes = Vec::new();
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut bytes, q).encode_image(img).ok()?;
    Some(image::load_from_memory_with_format(&bytes, image::ImageFormat::Jpeg).ok()?.to_rgb8())
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    fn pattern(side: u32) -> RgbImage {
        RgbImage::from_fn(side, side, |x, y| Rgb([x as u8, y as u8, (x ^ y) as u8]))
    }

    #[test]
    fn identity_augmentation_matches_the_inference_path() {
        let src = pattern(150);
        assert_eq!(augment(&src, 150, &Aug::identity()), src);
    }

    #[test]
    fn each_phone_effect_changes_the_view_and_stays_in_range() {
        let src = pattern(120);
        let base = augment(&src, 112, &Aug::identity());
        let effects: Vec<(&str, Aug)> = vec![
            ("defocus", Aug { defocus: Some(1.5), ..Aug::identity() }),
            ("motion", Aug { motion: Some((5.0, 0.3)), ..Aug::identity() }),
            ("vignette", Aug { vignette: Some(0.75), ..Aug::identity() }),
            ("zoom out", Aug { scale: 1.3, ..Aug::identity() }),
            ("white balance", Aug { gains: [1.1, 1.0, 0.9], ..Aug::identity() }),
            ("jpeg", Aug { jpeg_quality: Some(30), ..Aug::identity() }),
            ("glare", Aug { glare: vec![(56.0, 56.0, 6.0, 0.9)], ..Aug::identity() }),
        ];
        for (name, aug) in effects {
            let out = augment(&src, 112, &aug);
            let diff: u64 = out.as_raw().iter().zip(base.as_raw()).map(|(a, b)| u64::from(a.abs_diff(*b))).sum();
            assert!(diff > 1000, "{name} changed the image (sum |diff| {diff})");
        }
        // The dark corners darken the corners, not the centre.
        let v = augment(&src, 112, &Aug { vignette: Some(0.75), ..Aug::identity() });
        assert_eq!(v.get_pixel(56, 56), base.get_pixel(56, 56));
        assert!(v.get_pixel(1, 1).0.iter().map(|&c| u32::from(c)).sum::<u32>() < 10);
        // Random draws from the default ranges: all sizes right, deterministic per seed.
        let cfg = AugConfig::default();
        let mut a = StdRng::seed_from_u64(5);
        let mut b = StdRng::seed_from_u64(5);
        for _ in 0..20 {
            let (x, y) = (augment(&src, 64, &Aug::sample(&mut a, &cfg, 64)), augment(&src, 64, &Aug::sample(&mut b, &cfg, 64)));
            assert_eq!(x, y);
            assert_eq!(x.dimensions(), (64, 64));
        }
    }
}
