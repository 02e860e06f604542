//! Encoded bytes -> an upright RGB image, or the reason in words why not.
//!
//! Each file is measured before any pixel is decoded: its signature says what it is (JPEG, PNG
//! and WebP are read; GIF, BMP, TIFF, HEIC and others are named and refused), its header's size
//! is checked against [`MAX_PIXELS`](super::MAX_PIXELS) and its decoded size against
//! [`DECODE_BUDGET`], what a phone's browser tab can hold. Then the pixels must be backed by
//! data. zune-jpeg (the image crate's JPEG decoder) decodes a baseline scan that reaches the
//! end-of-image marker early by reading zero bits for the rest of the frame, and reports
//! success; here a baseline JPEG is decoded in strict mode without that marker, so a scan
//! that does not fill its frame runs out of data and is refused. A WebP's canvas must be
//! exactly its one frame.

use super::{centred_square, check_size, PreprocessError};
use image::error::{DecodingError, ImageFormatHint};
use image::metadata::Orientation;
use image::{DynamicImage, ImageDecoder, ImageError, ImageFormat, ImageReader, Limits, RgbImage};
use std::io::Cursor;
use zune_jpeg::zune_core::bytestream::ZCursor;
use zune_jpeg::zune_core::colorspace::ColorSpace;
use zune_jpeg::zune_core::options::DecoderOptions;

/// Most bytes an image's decoded pixels may take (160 MB), what a phone's browser tab can hold.
/// It sets the pixel limit: 53 megapixels of 8-bit RGB (a JPEG); 40 of 8-bit RGBA; a 16-bit
/// image up to 26 (RGB) or 20 (RGBA). Peak memory for one photo is this plus one 8-bit RGB
/// copy (a turn by its EXIF orientation, or RGBA to RGB).
pub const DECODE_BUDGET: u64 = 160_000_000;

/// The allocation limit every decoder gets: the budget plus room for its working buffers.
fn decoder_limits() -> Limits {
    let mut limits = Limits::default();
    limits.max_alloc = Some(DECODE_BUDGET + (64 << 20));
    limits
}

/// Decodes an encoded image, refusing empty, unsupported, corrupt, incomplete, tiny and huge
/// inputs, and applies its EXIF orientation so the picture is upright as the camera saw it.
pub fn decode(bytes: &[u8]) -> Result<RgbImage, PreprocessError> {
    let (mut img, orientation) = match sniff(bytes)? {
        ImageFormat::Jpeg => decode_jpeg(bytes)?,
        ImageFormat::WebP => {
            check_webp_frame(bytes)?;
            decode_with_image(bytes, ImageFormat::WebP)?
        }
        format => {
            // The PNG decoder refuses an absurd IHDR as "insufficient memory" before it can be
            // asked for the size, so the size is read from the IHDR (always the first chunk).
            if let Some((width, height)) = png_size(bytes) {
                check_size(width, height)?;
            }
            decode_with_image(bytes, format)?
        }
    };
    img.apply_orientation(orientation);
    check_opaque(&img)?;
    Ok(img.into_rgb8())
}

/// Above this share of see-through pixels in the square the model sees, a picture is a cut-out.
/// A screenshot's rounded corners lie outside that square; a "copy subject" cut-out of a spot
/// leaves a third or more of it.
const MAX_SEE_THROUGH: f64 = 0.01;

/// Refuses a picture whose centre square, the part the model sees, is more than
/// [`MAX_SEE_THROUGH`] transparent: a phone's cut-out keeps the spot and makes the skin around
/// it transparent black, which as RGB is black skin, and the model then gave a benign nevus
/// many times its risk. Read on a grid of at most 256 x 256 pixels, without a copy.
fn check_opaque(img: &DynamicImage) -> Result<(), PreprocessError> {
    use image::GenericImageView;
    if !img.color().has_alpha() {
        return Ok(());
    }
    let (w, h) = img.dimensions();
    let (x0, y0, side) = centred_square((0, 0, w, h));
    let step = (side / 256).max(1);
    let grid = || (0..side).step_by(step as usize);
    let (mut seen, mut clear) = (0u64, 0u64);
    for y in grid() {
        for x in grid() {
            seen += 1;
            clear += u64::from(img.get_pixel(x0 + x, y0 + y)[3] < 128);
        }
    }
    let share = clear as f64 / seen as f64;
    if share > MAX_SEE_THROUGH {
        return Err(PreprocessError::SeeThrough { percent: (100.0 * share).round() as u32 });
    }
    Ok(())
}

/// What the file is: JPEG, PNG or WebP, or an error naming the format it is.
fn sniff(bytes: &[u8]) -> Result<ImageFormat, PreprocessError> {
    if bytes.is_empty() {
        return Err(PreprocessError::Empty);
    }
    // HEIF (an iPhone's HEIC) has no signature the image crate knows.
    const HEIF_BRANDS: [&[u8]; 8] = [b"heic", b"heix", b"hevc", b"hevx", b"heim", b"heis", b"mif1", b"msf1"];
    if bytes.len() >= 12 && &bytes[4..8] == b"ftyp" && HEIF_BRANDS.contains(&&bytes[8..12]) {
        return Err(PreprocessError::Heic);
    }
    match image::guess_format(bytes) {
        Ok(f @ (ImageFormat::Jpeg | ImageFormat::Png | ImageFormat::WebP)) => Ok(f),
        Ok(other) => Err(PreprocessError::Unsupported(format_name(other))),
        Err(_) => Err(PreprocessError::Unrecognised),
    }
}

fn format_name(format: ImageFormat) -> &'static str {
    match format {
        ImageFormat::Gif => "GIF",
        ImageFormat::Bmp => "BMP",
        ImageFormat::Tiff => "TIFF",
        ImageFormat::Avif => "AVIF",
        ImageFormat::Ico => "ICO",
        ImageFormat::Pnm => "PNM",
        ImageFormat::Dds => "DDS",
        ImageFormat::Hdr => "HDR",
        ImageFormat::OpenExr => "OpenEXR",
        ImageFormat::Qoi => "QOI",
        ImageFormat::Farbfeld => "Farbfeld",
        ImageFormat::Tga => "TGA",
        _ => "this image format",
    }
}

/// Refuses a decode that would not fit the budget, from the header's numbers alone, or that
/// this process cannot get the memory for: the decoded pixels are asked for (and handed back)
/// before the decoder asks, because in wasm a failed allocation aborts, and a browser that gives
/// the page less than the budget (a phone's) would lose the engine and leave the photo's check
/// pending forever. Natively the request is only address space: it costs microseconds.
fn check_budget(width: u32, height: u32, decoded_bytes: u64) -> Result<(), PreprocessError> {
    let megabytes = decoded_bytes.div_ceil(1_000_000);
    if decoded_bytes > DECODE_BUDGET {
        return Err(PreprocessError::TooLargeToDecode { width, height, megabytes });
    }
    if Vec::<u8>::new().try_reserve_exact(decoded_bytes as usize).is_err() {
        return Err(PreprocessError::OutOfMemory { width, height, megabytes });
    }
    Ok(())
}

/// JPEG through zune-jpeg in strict mode: a scan that ends before its frame is an error.
fn decode_jpeg(bytes: &[u8]) -> Result<(DynamicImage, Orientation), PreprocessError> {
    // Without the end-of-image marker a short baseline scan meets the end of the data, which
    // strict mode refuses. A progressive file needs the marker to end its last scan, and its
    // strict decode already fails on a frame larger than its scans.
    let data = match jpeg_layout(bytes) {
        Some(layout) if !layout.progressive => &bytes[..layout.end],
        _ => bytes,
    };
    let options = DecoderOptions::default()
        .set_strict_mode(true)
        .set_max_width(usize::MAX)
        .set_max_height(usize::MAX);
    let mut decoder = zune_jpeg::JpegDecoder::new_with_options(ZCursor::new(data), options);
    decoder.decode_headers().map_err(jpeg_error)?;
    let (w, h) = decoder.dimensions().ok_or(PreprocessError::Unrecognised)?;
    let (width, height) = (w as u32, h as u32);
    check_size(width, height)?;
    check_budget(width, height, 3 * u64::from(width) * u64::from(height))?;
    // A bad EXIF block should not cost the user the photo: fall back to "as stored".
    let orientation = decoder
        .exif()
        .and_then(|exif| Orientation::from_exif_chunk(exif))
        .unwrap_or(Orientation::NoTransforms);
    decoder.set_options(decoder.options().jpeg_set_out_colorspace(ColorSpace::RGB));
    let pixels = decoder.decode().map_err(|e| {
        let message = e.to_string();
        if message.contains("Premature end") || message.contains("Exhausted data") {
            PreprocessError::Incomplete { width, height }
        } else {
            jpeg_error(e)
        }
    })?;
    let img = RgbImage::from_raw(width, height, pixels).ok_or(PreprocessError::Incomplete { width, height })?;
    Ok((DynamicImage::ImageRgb8(img), orientation))
}

fn jpeg_error(e: zune_jpeg::errors::DecodeErrors) -> PreprocessError {
    PreprocessError::Decode(ImageError::Decoding(DecodingError::new(ImageFormatHint::Exact(ImageFormat::Jpeg), e.to_string())))
}

/// Where a JPEG's own end-of-image marker is, and whether its frame is progressive.
struct JpegLayout {
    end: usize,
    progressive: bool,
}

/// Walks a JPEG's segments from the start, skipping each scan's entropy-coded data to the next
/// marker (FF 00 is a stuffed byte, FF D0-D7 a restart, FF FF fill), up to the end-of-image
/// marker. Data after it (a second picture, a maker's trailer) is not the photo's. `None` when
/// the structure is broken; the decoder then says what is wrong.
fn jpeg_layout(bytes: &[u8]) -> Option<JpegLayout> {
    let mut at = 2;
    let mut progressive = false;
    loop {
        if *bytes.get(at)? != 0xFF {
            return None;
        }
        while *bytes.get(at + 1)? == 0xFF {
            at += 1;
        }
        let marker = bytes[at + 1];
        match marker {
            0xD9 => return Some(JpegLayout { end: at, progressive }),
            0x01 | 0xD0..=0xD7 => at += 2,
            _ => {
                let len = usize::from(u16::from_be_bytes([*bytes.get(at + 2)?, *bytes.get(at + 3)?]));
                progressive |= matches!(marker, 0xC2 | 0xC6 | 0xCA | 0xCE);
                at += 2 + len;
                if marker == 0xDA {
                    at = scan_end(bytes, at)?;
                }
            }
        }
    }
}

/// The offset of the marker that ends the entropy-coded data starting at `at`.
fn scan_end(bytes: &[u8], mut at: usize) -> Option<usize> {
    loop {
        let ff = at + bytes.get(at..)?.iter().position(|&b| b == 0xFF)?;
        match *bytes.get(ff + 1)? {
            0x00 | 0xD0..=0xD7 => at = ff + 2,
            _ => return Some(ff),
        }
    }
}

/// The size a PNG's IHDR declares.
fn png_size(bytes: &[u8]) -> Option<(u32, u32)> {
    let be = |at: usize| Some(u32::from_be_bytes(bytes.get(at..at + 4)?.try_into().ok()?));
    (bytes.get(12..16)? == b"IHDR").then_some(())?;
    Some((be(16)?, be(20)?))
}


/// PNG and WebP through the image crate: header first, then the pixels within the limits.
fn decode_with_image(bytes: &[u8], format: ImageFormat) -> Result<(DynamicImage, Orientation), PreprocessError> {
    let mut reader = ImageReader::with_format(Cursor::new(bytes), format);
    reader.limits(decoder_limits());
    let mut decoder = reader.into_decoder().map_err(PreprocessError::Decode)?;
    let (width, height) = decoder.dimensions();
    check_size(width, height)?;
    check_budget(width, height, decoder.total_bytes())?;
    // A bad EXIF block should not cost the user the photo: fall back to "as stored".
    let orientation = decoder.orientation().unwrap_or(Orientation::NoTransforms);
    let img = DynamicImage::from_decoder(decoder).map_err(PreprocessError::Decode)?;
    Ok((img, orientation))
}

/// The chunks of a RIFF file after its 12-byte header: (four-character code, data).
fn riff_chunks(mut rest: &[u8]) -> impl Iterator<Item = (&[u8], &[u8])> {
    std::iter::from_fn(move || {
        if rest.len() < 8 {
            return None;
        }
        let size = u32::from_le_bytes(rest[4..8].try_into().expect("4 bytes")) as usize;
        let (id, body) = (&rest[..4], &rest[8..]);
        let data = &body[..size.min(body.len())];
        rest = &body[(size + (size & 1)).min(body.len())..];
        Some((id, data))
    })
}

/// A WebP's extended header (VP8X) may declare a canvas larger than the one frame it holds; the
/// decoder then returns mostly blank pixels. The canvas must be the frame, and animations
/// (frames that may cover nothing) are refused.
fn check_webp_frame(bytes: &[u8]) -> Result<(), PreprocessError> {
    let u24 = |b: &[u8]| u32::from(b[0]) | u32::from(b[1]) << 8 | u32::from(b[2]) << 16;
    let mut canvas = None;
    let mut frame = None;
    for (id, data) in riff_chunks(bytes.get(12..).unwrap_or_default()) {
        match id {
            b"ANIM" | b"ANMF" => return Err(PreprocessError::Unsupported("animated WebP")),
            b"VP8X" if data.len() >= 10 => {
                if data[0] & 0x02 != 0 {
                    return Err(PreprocessError::Unsupported("animated WebP"));
                }
                canvas = Some((u24(&data[4..7]) + 1, u24(&data[7..10]) + 1));
            }
            // Lossy: 3-byte frame tag, 3-byte start code, then 14-bit width and height.
            b"VP8 " if data.len() >= 10 => {
                let dim = |b: &[u8]| u32::from(u16::from_le_bytes([b[0], b[1]]) & 0x3fff);
                frame = Some((dim(&data[6..8]), dim(&data[8..10])));
            }
            // Lossless: signature byte, then 14-bit width - 1 and height - 1.
            b"VP8L" if data.len() >= 5 => {
                let bits = u32::from_le_bytes(data[1..5].try_into().expect("4 bytes"));
                frame = Some(((bits & 0x3fff) + 1, ((bits >> 14) & 0x3fff) + 1));
            }
            _ => {}
        }
    }
    match (canvas, frame) {
        (Some((width, height)), Some(f)) if f != (width, height) => {
            check_size(width, height)?;
            Err(PreprocessError::Incomplete { width, height })
        }
        _ => Ok(()),
    }
}
