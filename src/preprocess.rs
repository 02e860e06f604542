//! Bytes or camera frames -> a square RGB image -> a normalised CHW float tensor.
//!
//! One path for the trainer, the CLI and the browser: decode (JPEG/PNG/WebP, with limits;
//! [`decode()`]), apply the EXIF orientation, take the centre square, resize, normalise.

mod decode;

pub use decode::{decode, DECODE_BUDGET};
use image::{imageops::FilterType, GenericImageView, Rgb, RgbImage};
use serde::{Deserialize, Serialize};

/// Smallest side we accept: below this there is no lesion detail to classify.
pub const MIN_SIDE: u32 = 32;
/// Largest image we decode, in pixels: an 8-bit RGB picture (what every JPEG decodes to)
/// that fills [`DECODE_BUDGET`], 53 megapixels, so the 48 and 50 megapixel modes of phone
/// cameras fit. Bigger files are refused before decoding.
pub const MAX_PIXELS: u64 = DECODE_BUDGET / 3;

/// Why an input could not be turned into a model input. Each message is one line a person
/// can act on; decoder errors stay attached as the source, for `--verbose` and the console.
#[derive(Debug, thiserror::Error)]
pub enum PreprocessError {
    #[error("empty file (0 bytes)")]
    Empty,
    #[error("not a supported image (JPEG, PNG or WebP)")]
    Unrecognised,
    #[error("{0} is not supported: save it as JPEG or PNG")]
    Unsupported(&'static str),
    /// Most iPhone photos: the setting that makes JPEGs instead is named.
    #[error("HEIC (an iPhone's default) is not supported: save it as JPEG or PNG (on an iPhone: Settings > Camera > Formats > Most Compatible)")]
    Heic,
    #[error("corrupt or truncated image: its header declares {width}x{height} px but its data ends before the picture does")]
    Incomplete { width: u32, height: u32 },
    #[error("corrupt or truncated image: its data could not be decoded")]
    Decode(#[source] image::ImageError),
    #[error("image too small: {width}x{height} px, need at least {MIN_SIDE} px on each side")]
    TooSmall { width: u32, height: u32 },
    #[error("image too large: {width}x{height} px is over the {} megapixel limit; downscale it first", MAX_PIXELS / 1_000_000)]
    TooLarge { width: u32, height: u32 },
    #[error("image too large: {width}x{height} px needs {megabytes} MB to decode, over the {} MB limit; save it as an 8-bit JPEG or PNG", DECODE_BUDGET / 1_000_000)]
    TooLargeToDecode { width: u32, height: u32, megabytes: u64 },
    /// Within the budget, but the memory is not there (in a browser: the page's allowance).
    #[error("not enough memory: a {width}x{height} px photo needs {megabytes} MB to decode, more than can be had here now (a browser gives a page less than the device has); use a smaller copy of it, such as a screenshot or one sent by e-mail or chat")]
    OutOfMemory { width: u32, height: u32, megabytes: u64 },
    /// A phone's "copy subject" cut-out: the skin around the spot is see-through.
    #[error("cut-out picture: {percent}% of its middle is see-through, and the skin around the spot matters; choose the photo as it was taken")]
    SeeThrough { percent: u32 },
    #[error("frame buffer holds {got} bytes, expected {expected} for {width}x{height} RGBA")]
    FrameSize {
        got: usize,
        expected: usize,
        width: u32,
        height: u32,
    },
}

/// How pixels become model input; stored in `model.json` with the weights it was trained for.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct PreprocessConfig {
    /// Side of the square model input in pixels.
    pub input_size: u32,
    /// Per-channel mean subtracted from pixel values in [0, 1] (RGB order).
    pub mean: [f32; 3],
    /// Per-channel standard deviation divided out after the mean (RGB order).
    pub std: [f32; 3],
}

/// Refuses sizes outside [`MIN_SIDE`] and [`MAX_PIXELS`], from a header or a frame.
fn check_size(width: u32, height: u32) -> Result<(), PreprocessError> {
    if width < MIN_SIDE || height < MIN_SIDE {
        return Err(PreprocessError::TooSmall { width, height });
    }
    if u64::from(width) * u64::from(height) > MAX_PIXELS {
        return Err(PreprocessError::TooLarge { width, height });
    }
    Ok(())
}

/// Wraps a raw RGBA frame (what a browser canvas gives) as an RGB image.
pub fn from_rgba(width: u32, height: u32, rgba: &[u8]) -> Result<RgbImage, PreprocessError> {
    let expected = width as usize * height as usize * 4;
    if rgba.len() != expected {
        return Err(PreprocessError::FrameSize {
            got: rgba.len(),
            expected,
            width,
            height,
        });
    }
    check_size(width, height)?;
    let rgb: Vec<u8> = rgba
        .chunks_exact(4)
        .flat_map(|p| [p[0], p[1], p[2]])
        .collect();
    Ok(RgbImage::from_raw(width, height, rgb).expect("buffer length checked above"))
}

/// The largest centred square of the photo inside its letterbox bars ([`photo_region`]).
pub fn centre_square(img: &RgbImage) -> RgbImage {
    centre_square_view(img).to_image()
}

/// [`centre_square`] as a view into the photo, without copying its pixels.
fn centre_square_view(img: &RgbImage) -> image::SubImage<&RgbImage> {
    let (x, y, side) = centred_square(photo_region(img));
    image::imageops::crop_imm(img, x, y, side, side)
}

/// The largest square centred in the rectangle `(x, y, width, height)`: its corner and side.
/// The part of a picture the model sees, and so the part the decoder checks for see-through.
fn centred_square((x, y, w, h): (u32, u32, u32, u32)) -> (u32, u32, u32) {
    let side = w.min(h);
    (x + (w - side) / 2, y + (h - side) / 2, side)
}

/// Bars and frames taken away: flat rows (or columns) at the two opposite edges that together
/// take at least this share of the height (or width), as a screenshot of a photo, a photo
/// shown on a screen, or a photo given a frame has. Thinner ones stay (a line or two at an
/// edge). A dermatoscope's black frame is taken away too: the model had learnt it as a sign of
/// BCN20000's clinic, where more spots are malignant, and a black frame 10% wide took a nevus
/// from 0.7% to 15% and the flag. On the validation split this costs BCN20000's photos little
/// (146 of its 2,509 have such frames; carcinoma vs keratosis 0.839 -> 0.836, the flag's
/// specificity 0.267 -> 0.263, sensitivity unchanged), and a model trained from now on learns
/// without the cue.
const MIN_BARS: f64 = 0.08;
/// How far a bar's pixels may stray from its colour, per channel (a flat area in a JPEG).
const BAR_TOLERANCE: u8 = 2;
/// The share of a line's pixels that must be within the tolerance of the bar's colour.
const BAR_SHARE: f64 = 0.99;
/// A screenshot's bars hold the phone's own words and icons (the time, "Edit", a toolbar):
/// lines that are at least this share flat carry a bar on...
const CHROME_SHARE: f64 = 0.5;
/// ...where most of the bar's lines (this share) are flat to [`BAR_SHARE`]. A dermatoscope's
/// round field leaves lines that are partly black too, but few fully black ones: its frame is
/// judged by the full lines alone, as the model saw it.
const CHROME_FULL_LINES: f64 = 0.75;
/// A JPEG's blocks (up to 16 px) smear a bar's edge into the lines next to the picture: once
/// bars are found, up to this many more lines within [`EDGE_TOLERANCE`] are bar too.
const BAR_EDGE: u32 = 16;
const EDGE_TOLERANCE: u8 = 32;

/// The part of `img` inside its letterbox bars ([`MIN_BARS`]), as `(x, y, width, height)`; the
/// whole image where there are none, or where what is left would be under [`MIN_SIDE`]. Read
/// as skin, bars moved the risk: a screenshot of a HAM10000 nevus with black or white bars above
/// and below took it from 1.4% to 9%, and another's from 6% to 26% and the high-risk flag.
pub fn photo_region(img: &RgbImage) -> (u32, u32, u32, u32) {
    let (w, h) = img.dimensions();
    let within = |p: &Rgb<u8>, colour: Rgb<u8>, tolerance: u8| p.0.iter().zip(colour.0).all(|(a, b)| a.abs_diff(b) <= tolerance);
    let flat = |pixels: &mut dyn Iterator<Item = &Rgb<u8>>, n: u32, colour: Rgb<u8>, tolerance: u8| {
        pixels.filter(|p| within(p, colour, tolerance)).count() as f64 / f64::from(n)
    };
    // The bars' colours: the top-left corner's at the top and left, the bottom-right's at the
    // bottom and right.
    let (first, last) = (*img.get_pixel(0, 0), *img.get_pixel(w - 1, h - 1));
    let (y, height) = inside(h, |i, from_end, tolerance| {
        let (y, colour) = if from_end { (h - 1 - i, last) } else { (i, first) };
        flat(&mut (0..w).map(|x| img.get_pixel(x, y)), w, colour, tolerance)
    });
    // The columns are read between the bars above and below: beside a photo narrower than the
    // screen's half, a whole column through it would be mostly bar.
    let (first, last) = (*img.get_pixel(0, y), *img.get_pixel(w - 1, y + height - 1));
    let (x, width) = inside(w, |i, from_end, tolerance| {
        let (x, colour) = if from_end { (w - 1 - i, last) } else { (i, first) };
        flat(&mut (y..y + height).map(|y| img.get_pixel(x, y)), height, colour, tolerance)
    });
    (x, y, width, height)
}

/// Along a side of `side` lines, `(start, length)` inside its bars, or `(0, side)` where they
/// do not count as bars. `flat(i, from_end, tolerance)`: the share of the `i`th line from the
/// start (or from the end) within `tolerance` of the bar's colour.
fn inside(side: u32, flat: impl Fn(u32, bool, u8) -> f64) -> (u32, u32) {
    let kept = |start: u32, end: u32| u64::from(side).checked_sub(u64::from(start) + u64::from(end)).filter(|&k| k >= u64::from(MIN_SIDE));
    // From one end: the bar of full lines, and the bar with the phone's words in it where most
    // of its lines are full ([`CHROME_FULL_LINES`]; else the full lines' again).
    let runs = |from_end: bool| {
        let shares: Vec<f64> = (0..side).map(|i| flat(i, from_end, BAR_TOLERANCE)).take_while(|&s| s >= CHROME_SHARE).collect();
        let full = shares.iter().take_while(|&&s| s >= BAR_SHARE).count() as u32;
        let full_lines = shares.iter().filter(|&&s| s >= BAR_SHARE).count() as f64;
        let with_words = if full_lines >= CHROME_FULL_LINES * shares.len() as f64 { shares.len() as u32 } else { full };
        (with_words, full)
    };
    let ((words_start, full_start), (words_end, full_end)) = (runs(false), runs(true));
    // The bars with words first; where they leave no photo (a photo under half the screen's
    // width makes every line across it mostly bar), the full lines alone.
    let counts = |s: u32, e: u32| f64::from(s) + f64::from(e) >= MIN_BARS * f64::from(side) && kept(s, e).is_some();
    let Some((start, end)) = [(words_start, words_end), (full_start, full_end)].into_iter().find(|&(s, e)| counts(s, e)) else {
        return (0, side);
    };
    let edge = |from_end: bool, n: u32| {
        if n == 0 {
            return 0;
        }
        (n..side.min(n + BAR_EDGE)).take_while(|&i| flat(i, from_end, EDGE_TOLERANCE) >= BAR_SHARE).count() as u32
    };
    let (start, end) = match (start + edge(false, start), end + edge(true, end)) {
        (s, e) if kept(s, e).is_some() => (s, e),
        _ => (start, end),
    };
    (start, kept(start, end).map_or(side, |k| k as u32))
}

/// [`centre_square`] resized as [`resize_square`] resizes it, read through a view of the
/// photo: a copy of the square would cost as much memory again as the photo (112 MB at 50 MP),
/// and the page's wasm memory keeps its peak.
pub fn resize_centre_square(img: &RgbImage, size: u32) -> RgbImage {
    let square = centre_square_view(img);
    if square.dimensions() == (size, size) {
        return square.to_image();
    }
    shrink(&*square, size)
}

/// Resizes a square image to `size` x `size` with a triangle (bilinear, area-aware) filter.
pub fn resize_square(img: &RgbImage, size: u32) -> RgbImage {
    if img.dimensions() == (size, size) {
        return img.clone();
    }
    shrink(img, size)
}

/// Above this many times the output side, a square is first averaged down in boxes.
const BOX_FIRST_RATIO: u32 = 4;

/// Resizes a square to `size` x `size` with the triangle filter. The filter's reach grows with
/// the square's side over `size`: resizing a phone's 12 MP photo cost 90 ms natively, a 50 MP
/// one 0.6 s and, in the page, 14 MB more wasm memory (its float intermediate, `size` rows as
/// wide as the photo). Above [`BOX_FIRST_RATIO`] the square is first box-averaged to twice
/// `size` (the image crate's `thumbnail`, one read per pixel): about 3x faster, and on average
/// a tenth of a level from the direct filter (a few levels at a sharp edge). Every image the
/// model was trained and validated on (squares of at most 400 px) is below the ratio and is
/// resized exactly as before.
fn shrink<I: GenericImageView<Pixel = Rgb<u8>>>(square: &I, size: u32) -> RgbImage {
    if square.width() > BOX_FIRST_RATIO * size {
        let halfway = image::imageops::thumbnail(square, 2 * size, 2 * size);
        return image::imageops::resize(&halfway, size, size, FilterType::Triangle);
    }
    image::imageops::resize(square, size, size, FilterType::Triangle)
}

impl PreprocessConfig {
    /// Normalises a `input_size` x `input_size` RGB image into `out` as CHW floats.
    pub fn normalise_into(&self, img: &RgbImage, out: &mut [f32]) {
        let s = self.input_size as usize;
        assert_eq!(img.dimensions(), (self.input_size, self.input_size));
        assert_eq!(out.len(), 3 * s * s);
        for (i, p) in img.pixels().enumerate() {
            for c in 0..3 {
                out[c * s * s + i] = (f32::from(p[c]) / 255.0 - self.mean[c]) / self.std[c];
            }
        }
    }

    /// The inference path: centre square, resize, normalise. Returns `3 * size * size` floats.
    pub fn to_input(&self, img: &RgbImage) -> Vec<f32> {
        let square = resize_centre_square(img, self.input_size);
        let s = self.input_size as usize;
        let mut out = vec![0.0; 3 * s * s];
        self.normalise_into(&square, &mut out);
        out
    }

    /// Number of floats in one model input.
    pub fn input_len(&self) -> usize {
        3 * (self.input_size as usize).pow(2)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use image::{ImageEncoder, Rgb};

    fn png(img: &RgbImage) -> Vec<u8> {
        let mut out = Vec::new();
        image::codecs::png::PngEncoder::new(&mut out)
            .write_image(img.as_raw(), img.width(), img.height(), image::ExtendedColorType::Rgb8)
            .unwrap();
        out
    }

    #[test]
    fn refuses_empty_garbage_truncated_tiny() {
        assert!(matches!(decode(&[]), Err(PreprocessError::Empty)));
        assert!(matches!(decode(b"hello, not an image"), Err(PreprocessError::Unrecognised)));
        let good = png(&RgbImage::from_pixel(64, 64, Rgb([10, 20, 30])));
        assert!(decode(&good).is_ok());
        let truncated = &good[..good.len() / 2];
        assert!(matches!(decode(truncated), Err(PreprocessError::Decode(_))));
        let mut jpeg = Vec::new();
        image::codecs::jpeg::JpegEncoder::new(&mut jpeg)
            .encode_image(&RgbImage::from_fn(256, 256, |x, y| Rgb([x as u8, y as u8, 7])))
            .unwrap();
        assert!(decode(&jpeg).is_ok());
        let cut = &jpeg[..jpeg.len() * 2 / 3];
        assert!(matches!(decode(cut), Err(PreprocessError::Incomplete { .. })), "truncated JPEG refused");
        let tiny = png(&RgbImage::new(1, 1));
        assert!(matches!(decode(&tiny), Err(PreprocessError::TooSmall { width: 1, height: 1 })));
    }

    #[test]
    fn resizing_through_a_view_equals_resizing_a_copy() {
        let img = RgbImage::from_fn(301, 187, |x, y| Rgb([(x * 7 % 256) as u8, (y * 13 % 256) as u8, ((x + y) % 256) as u8]));
        for size in [144, 187, 300] {
            assert_eq!(resize_centre_square(&img, size), resize_square(&centre_square(&img), size), "{size}");
        }
        let square = centre_square(&img);
        assert_eq!(resize_centre_square(&square, 187), square);
    }

    #[test]
    fn large_photos_shrink_close_to_the_direct_filter() {
        // Skin-like shading, a dark spot and fine texture, at a 12 MP phone photo's square.
        let side = 3000;
        let img = RgbImage::from_fn(side, side, |x, y| {
            let (u, v) = (x as f32 / side as f32 - 0.5, y as f32 / side as f32 - 0.5);
            let spot = if u * u + v * v < 0.02 { 90.0 } else { 0.0 };
            let grain = ((x * 7919 + y * 104_729) % 31) as f32;
            let shade = 200.0 - 60.0 * u - spot + grain;
            Rgb([shade as u8, (shade * 0.75) as u8, (shade * 0.6) as u8])
        });
        let direct = image::imageops::resize(&img, 144, 144, FilterType::Triangle);
        let fast = resize_square(&img, 144);
        let diffs: Vec<u8> = direct.as_raw().iter().zip(fast.as_raw()).map(|(a, b)| a.abs_diff(*b)).collect();
        let mean = diffs.iter().map(|&d| f64::from(d)).sum::<f64>() / diffs.len() as f64;
        let worst = *diffs.iter().max().unwrap();
        assert!(mean < 0.25 && worst <= 6, "mean {mean:.3}, worst {worst} levels from the triangle filter");
        // Up to the ratio nothing changes: the sizes the model was trained and validated on.
        let square = RgbImage::from_fn(576, 576, |x, y| img.get_pixel(x * 5, y * 5).to_owned());
        assert_eq!(resize_square(&square, 144), image::imageops::resize(&square, 144, 144, FilterType::Triangle));
    }

    #[test]
    fn refuses_huge_before_decoding() {
        // A valid PNG header claiming 8000x7000 (56 MP); refused on its header alone.
        let img = RgbImage::new(8000, 7000);
        let bytes = png(&img);
        assert!(matches!(decode(&bytes), Err(PreprocessError::TooLarge { width: 8000, height: 7000 })));
    }

    #[test]
    fn bars_and_frames_are_taken_away_and_edge_lines_kept() {
        let photo = |w, h| RgbImage::from_fn(w, h, |x, y| Rgb([100 + ((x * 7 + y * 13) % 50) as u8, 80, 70]));
        let on = |bar: [u8; 3], w, h, inner: &RgbImage, x, y| {
            let mut img = RgbImage::from_pixel(w, h, Rgb(bar));
            image::imageops::replace(&mut img, inner, x, y);
            img
        };
        let inner = photo(120, 90);
        // Bars above and below (a screenshot), beside (a portrait photo on a wide screen), both.
        assert_eq!(photo_region(&on([0, 0, 0], 120, 260, &inner, 0, 85)), (0, 85, 120, 90));
        assert_eq!(photo_region(&on([255, 255, 255], 300, 90, &inner, 100, 0)), (100, 0, 120, 90));
        assert_eq!(photo_region(&on([28, 28, 30], 200, 200, &inner, 40, 55)), (40, 55, 120, 90));
        // A photo under half the screen's width and height, bars all round.
        assert_eq!(photo_region(&on([0, 0, 0], 400, 800, &inner, 140, 355)), (140, 355, 120, 90));
        // A frame all round, black or white (a dermatoscope's, a photo's border), goes too.
        assert_eq!(photo_region(&on([255, 255, 255], 140, 110, &inner, 10, 10)), (10, 10, 120, 90));
        // A screenshot's bars with the phone's words in them: a few lines a fifth inked.
        let mut chrome = on([0, 0, 0], 120, 260, &inner, 0, 85);
        for y in [10, 11, 40, 41, 200, 201] {
            for x in 0..24 {
                chrome.put_pixel(x * 5, y, Rgb([255, 255, 255]));
            }
        }
        assert_eq!(photo_region(&chrome), (0, 85, 120, 90));
        // A dermatoscope's round field: above and below it, 9 lines each over half black but
        // only 2 all black. Those 2 + 2 (under 8%) are all that count, so it stays whole.
        let round = RgbImage::from_fn(120, 100, |x, y| {
            let (dx, dy) = (x as f32 - 59.5, (y as f32 - 49.5) * 1.22);
            if dx * dx + dy * dy < 58.0 * 58.0 { Rgb([150 + (x % 7) as u8 * 9, 90, 80]) } else { Rgb([0, 0, 0]) }
        });
        assert_eq!(photo_region(&round).1, 0, "{:?}", photo_region(&round));
        // A line or two at an edge (under 8% of the side in all) stays.
        assert_eq!(photo_region(&on([0, 0, 0], 120, 96, &inner, 0, 3)), (0, 0, 120, 96));
        // A flat picture, or bars that would leave under MIN_SIDE, leave the image whole.
        assert_eq!(photo_region(&RgbImage::from_pixel(64, 64, Rgb([9, 9, 9]))), (0, 0, 64, 64));
        assert_eq!(photo_region(&on([0, 0, 0], 120, 400, &photo(120, 20), 0, 190)), (0, 0, 120, 400));
        // What the model sees of a screenshot is the photo's centre square.
        let shot = on([0, 0, 0], 120, 260, &inner, 0, 85);
        assert_eq!(resize_centre_square(&shot, 64), resize_centre_square(&inner, 64));
        // Saved as a JPEG, the lines next to the photo are smeared: they go with the bars.
        let mut smeared = shot.clone();
        for (y, level) in [(81, 6), (82, 12), (83, 20), (84, 28), (175, 25), (176, 9)] {
            for x in 0..120 {
                smeared.put_pixel(x, y, Rgb([level, level / 2, level]));
            }
        }
        assert_eq!(photo_region(&smeared), (0, 85, 120, 90));
    }

    #[test]
    fn centre_square_and_normalise() {
        let mut img = RgbImage::from_pixel(200, 150, Rgb([0, 0, 0]));
        img.put_pixel(100, 75, Rgb([255, 255, 255]));
        let sq = centre_square(&img);
        assert_eq!(sq.dimensions(), (150, 150));
        assert_eq!(sq.get_pixel(75, 75), &Rgb([255, 255, 255]));
        let cfg = PreprocessConfig {
            input_size: 2,
            mean: [0.5, 0.5, 0.5],
            std: [0.5, 0.25, 0.5],
        };
        let tiny = RgbImage::from_fn(2, 2, |x, _| if x == 0 { Rgb([255, 255, 255]) } else { Rgb([0, 0, 0]) });
        let mut out = vec![0.0; 12];
        cfg.normalise_into(&tiny, &mut out);
        assert_eq!(&out[0..4], &[1.0, -1.0, 1.0, -1.0]);
        assert_eq!(&out[4..8], &[2.0, -2.0, 2.0, -2.0]);
    }

    #[test]
    fn rgba_frames_match_decoded_pixels() {
        let img = RgbImage::from_fn(40, 36, |x, y| Rgb([x as u8, y as u8, (x + y) as u8]));
        let rgba: Vec<u8> = img.pixels().flat_map(|p| [p[0], p[1], p[2], 255]).collect();
        assert_eq!(from_rgba(40, 36, &rgba).unwrap(), img);
        assert!(matches!(from_rgba(40, 36, &rgba[4..]), Err(PreprocessError::FrameSize { .. })));
        assert!(matches!(from_rgba(8, 8, &[0; 256]), Err(PreprocessError::TooSmall { .. })));
    }
}
