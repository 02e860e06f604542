//! Bytes or camera frames -> a square RGB image -> a normalised CHW float tensor.
//!
//! One path for the trainer, the CLI and the browser: decode (JPEG/PNG/WebP, with limits),
//! apply the EXIF orientation, take the centre square, resize, normalise.

use image::{imageops::FilterType, DynamicImage, ImageDecoder, ImageReader, Limits, RgbImage};
use serde::{Deserialize, Serialize};
use std::io::Cursor;

/// Smallest side we accept: below this there is no lesion detail to classify.
pub const MIN_SIDE: u32 = 32;
/// Largest image we decode, in pixels (40 megapixels); bigger files are refused before decoding.
pub const MAX_PIXELS: u64 = 40_000_000;

/// Why an input could not be turned into a model input. Decoder errors stay attached as the
/// source; the CLI and the browser decide how much of that detail a person sees.
#[derive(Debug, thiserror::Error)]
pub enum PreprocessError {
    #[error("empty file (0 bytes)")]
    Empty,
    #[error("not a supported image (JPEG, PNG or WebP)")]
    Unrecognised,
    #[error("corrupt or truncated image: the JPEG ends before its end-of-image marker")]
    Truncated,
    #[error("corrupt or truncated image")]
    Decode(#[source] image::ImageError),
    #[error("image too small: {width}x{height} px, need at least {MIN_SIDE} px on each side")]
    TooSmall { width: u32, height: u32 },
    #[error("image too large: {width}x{height} px is over the {} megapixel limit; downscale it first", MAX_PIXELS / 1_000_000)]
    TooLarge { width: u32, height: u32 },
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

fn check_size(width: u32, height: u32) -> Result<(), PreprocessError> {
    if width < MIN_SIDE || height < MIN_SIDE {
        return Err(PreprocessError::TooSmall { width, height });
    }
    if u64::from(width) * u64::from(height) > MAX_PIXELS {
        return Err(PreprocessError::TooLarge { width, height });
    }
    Ok(())
}

/// What a decoder may allocate: the decoded image in 16-bit RGBA at the pixel limit, plus the
/// decoder's working buffers. Stated once, for every format.
fn decoder_limits() -> Limits {
    let mut limits = Limits::default();
    limits.max_alloc = Some(MAX_PIXELS * 8 + (64 << 20));
    limits
}

/// Decodes an encoded image, refusing empty, unknown, corrupt, tiny and huge inputs, and
/// applies its EXIF orientation so the picture is upright as the camera saw it.
pub fn decode(bytes: &[u8]) -> Result<RgbImage, PreprocessError> {
    if bytes.is_empty() {
        return Err(PreprocessError::Empty);
    }
    let mut reader = ImageReader::new(Cursor::new(bytes))
        .with_guessed_format()
        .map_err(|e| PreprocessError::Decode(e.into()))?;
    match reader.format() {
        None => return Err(PreprocessError::Unrecognised),
        // The JPEG decoder fills a cut-off scan with grey instead of failing; a photo that
        // lost its end must not be classified as if it were whole.
        Some(image::ImageFormat::Jpeg) if !has_jpeg_end(bytes) => return Err(PreprocessError::Truncated),
        Some(_) => {}
    }
    reader.limits(decoder_limits());
    let mut decoder = reader.into_decoder().map_err(PreprocessError::Decode)?;
    let (width, height) = decoder.dimensions();
    check_size(width, height)?;
    // A bad EXIF block should not cost the user the photo: fall back to "as stored".
    let orientation = decoder.orientation().unwrap_or(image::metadata::Orientation::NoTransforms);
    let mut img = DynamicImage::from_decoder(decoder).map_err(PreprocessError::Decode)?;
    img.apply_orientation(orientation);
    Ok(img.to_rgb8())
}

/// Whether a JPEG stream's end-of-image marker (FF D9) is present near the end of the file
/// (some writers pad after it).
fn has_jpeg_end(bytes: &[u8]) -> bool {
    let tail = &bytes[bytes.len().saturating_sub(1024)..];
    tail.windows(2).any(|w| w == [0xFF, 0xD9])
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

/// The largest centred square of the image.
pub fn centre_square(img: &RgbImage) -> RgbImage {
    let (w, h) = img.dimensions();
    let side = w.min(h);
    image::imageops::crop_imm(img, (w - side) / 2, (h - side) / 2, side, side).to_image()
}

/// Resizes a square image to `size` x `size` with a triangle (bilinear, area-aware) filter.
pub fn resize_square(img: &RgbImage, size: u32) -> RgbImage {
    if img.dimensions() == (size, size) {
        return img.clone();
    }
    image::imageops::resize(img, size, size, FilterType::Triangle)
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
        let square = resize_square(&centre_square(img), self.input_size);
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
        assert!(matches!(decode(cut), Err(PreprocessError::Truncated)), "truncated JPEG refused");
        let tiny = png(&RgbImage::new(1, 1));
        assert!(matches!(decode(&tiny), Err(PreprocessError::TooSmall { width: 1, height: 1 })));
    }

    #[test]
    fn refuses_huge_before_decoding() {
        // A valid PNG header claiming 8000x6000 (48 MP); refused on its header alone.
        let img = RgbImage::new(8000, 6000);
        let bytes = png(&img);
        assert!(matches!(decode(&bytes), Err(PreprocessError::TooLarge { width: 8000, height: 6000 })));
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
