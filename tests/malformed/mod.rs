//! Malformed image files for the bad-input tests, built from pictures drawn here: the
//! reproducers of the four kinds of bad file that once got a risk or the wrong words, and a
//! seeded generator of damaged JPEG, PNG and WebP files. Pure functions of bytes, so the native
//! tests and the browser tests share them.
#![allow(dead_code)]

use image::{ImageEncoder, Rgb, RgbImage};

/// A lesion-like picture with texture (JPEG noise alone would make it flat).
pub fn picture(width: u32, height: u32, seed: u64) -> RgbImage {
    let mut rng = Rng(seed);
    let (cx, cy) = (width as f32 / 2.0, height as f32 / 2.0);
    RgbImage::from_fn(width, height, |x, y| {
        let r = ((x as f32 - cx).powi(2) + (y as f32 - cy).powi(2)).sqrt() / cx.min(cy);
        let n = (rng.next() % 24) as u8;
        if r < 0.5 {
            Rgb([80 + n, 50 + n, 40 + n])
        } else {
            Rgb([200 + n / 2, 150 + n, 130 + n])
        }
    })
}

pub fn jpeg(img: &RgbImage) -> Vec<u8> {
    let mut out = Vec::new();
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, 90).encode_image(img).unwrap();
    out
}

pub fn png(img: &RgbImage) -> Vec<u8> {
    let mut out = Vec::new();
    image::codecs::png::PngEncoder::new(&mut out)
        .write_image(img.as_raw(), img.width(), img.height(), image::ExtendedColorType::Rgb8)
        .unwrap();
    out
}

/// A lossless WebP (a RIFF file with one VP8L chunk).
pub fn webp(img: &RgbImage) -> Vec<u8> {
    let mut out = Vec::new();
    image::codecs::webp::WebPEncoder::new_lossless(&mut out)
        .write_image(img.as_raw(), img.width(), img.height(), image::ExtendedColorType::Rgb8)
        .unwrap();
    out
}

/// Offset of the first start-of-frame segment's data (SOF0..SOF2) in a JPEG.
fn jpeg_sof(jpeg: &[u8]) -> Option<usize> {
    let mut at = 2;
    while at + 4 <= jpeg.len() && jpeg[at] == 0xFF {
        let marker = jpeg[at + 1];
        let len = usize::from(u16::from_be_bytes([jpeg[at + 2], jpeg[at + 3]]));
        if (0xC0..=0xC2).contains(&marker) {
            return Some(at + 4);
        }
        at += 2 + len;
    }
    None
}

/// The JPEG with its frame header claiming `width` x `height`: more pixels than its scan holds.
pub fn jpeg_claiming(jpeg: &[u8], width: u16, height: u16) -> Vec<u8> {
    let mut out = jpeg.to_vec();
    let sof = jpeg_sof(jpeg).expect("a frame header");
    out[sof + 1..sof + 3].copy_from_slice(&height.to_be_bytes());
    out[sof + 3..sof + 5].copy_from_slice(&width.to_be_bytes());
    out
}

/// The PNG with its IHDR claiming `width` x `height`, the CRC fixed so only the size is wrong.
pub fn png_claiming(png: &[u8], width: u32, height: u32) -> Vec<u8> {
    let mut out = png.to_vec();
    out[16..20].copy_from_slice(&width.to_be_bytes());
    out[20..24].copy_from_slice(&height.to_be_bytes());
    let crc = crc32fast::hash(&out[12..29]);
    out[29..33].copy_from_slice(&crc.to_be_bytes());
    out
}

/// The WebP wrapped with an extended header (VP8X) that declares a `width` x `height` canvas
/// around its smaller frame.
pub fn webp_claiming(webp: &[u8], width: u32, height: u32) -> Vec<u8> {
    let mut vp8x = b"VP8X".to_vec();
    vp8x.extend_from_slice(&10u32.to_le_bytes());
    vp8x.extend_from_slice(&[0, 0, 0, 0]);
    vp8x.extend_from_slice(&(width - 1).to_le_bytes()[..3]);
    vp8x.extend_from_slice(&(height - 1).to_le_bytes()[..3]);
    let body = [&b"WEBP"[..], &vp8x, &webp[12..]].concat();
    [&b"RIFF"[..], &(body.len() as u32).to_le_bytes(), &body].concat()
}

/// The WebP as the one frame of an animation on a `width` x `height` canvas (VP8X with the
/// animation flag, ANIM, one ANMF at the top left): most of the canvas is covered by nothing.
pub fn webp_animated(webp: &[u8], width: u32, height: u32) -> Vec<u8> {
    let chunk = |id: &[u8], data: &[u8]| {
        let pad: &[u8] = if data.len() % 2 == 1 { &[0] } else { &[] };
        [id, &(data.len() as u32).to_le_bytes(), data, pad].concat()
    };
    let u24 = |v: u32| v.to_le_bytes()[..3].to_vec();
    // A lossless frame's size: 14 bits each after the VP8L signature byte.
    let bits = u32::from_le_bytes(webp[21..25].try_into().unwrap());
    let (fw, fh) = ((bits & 0x3fff) + 1, ((bits >> 14) & 0x3fff) + 1);
    let vp8x = [&[0x02u8, 0, 0, 0][..], &u24(width - 1), &u24(height - 1)].concat();
    let anim = [0u8; 6];
    let anmf = [&u24(0)[..], &u24(0), &u24(fw - 1), &u24(fh - 1), &u24(100), &[0], &webp[12..]].concat();
    let body = [&b"WEBP"[..], &chunk(b"VP8X", &vp8x), &chunk(b"ANIM", &anim), &chunk(b"ANMF", &anmf)].concat();
    [&b"RIFF"[..], &(body.len() as u32).to_le_bytes(), &body].concat()
}

/// `img` as an RGBA PNG whose pixels outside the centred ellipse reaching `reach` of the way
/// to each edge are transparent black, as a phone's "copy subject" cut-out writes them;
/// `reach` 2.0 or more leaves every pixel opaque.
pub fn png_cutout(img: &RgbImage, reach: f32) -> Vec<u8> {
    let (cx, cy) = (img.width() as f32 / 2.0, img.height() as f32 / 2.0);
    let rgba = image::RgbaImage::from_fn(img.width(), img.height(), |x, y| {
        let r = ((x as f32 + 0.5 - cx) / (reach * cx)).powi(2) + ((y as f32 + 0.5 - cy) / (reach * cy)).powi(2);
        let [red, green, blue] = img.get_pixel(x, y).0;
        if r <= 1.0 { image::Rgba([red, green, blue, 255]) } else { image::Rgba([0, 0, 0, 0]) }
    });
    let mut out = Vec::new();
    image::codecs::png::PngEncoder::new(&mut out)
        .write_image(rgba.as_raw(), rgba.width(), rgba.height(), image::ExtendedColorType::Rgba8)
        .unwrap();
    out
}

/// A valid 16-bit RGBA PNG of `side` x `side` that is small on disk (every row the same
/// gradient, so the Up filter leaves zeros) and large decoded (8 bytes a pixel), written row by row.
pub fn png_rgba16(side: u32) -> Vec<u8> {
    let mut out = Vec::new();
    let mut encoder = png::Encoder::new(std::io::Cursor::new(&mut out), side, side);
    encoder.set_color(png::ColorType::Rgba);
    encoder.set_depth(png::BitDepth::Sixteen);
    encoder.set_compression(png::Compression::Fast);
    encoder.set_filter(png::Filter::Up);
    let mut writer = encoder.write_header().unwrap();
    let mut stream = writer.stream_writer().unwrap();
    let mut row = vec![0u8; side as usize * 8];
    for (x, px) in row.chunks_exact_mut(8).enumerate() {
        let v = (x * 10) as u16;
        px[..2].copy_from_slice(&v.to_be_bytes());
        px[2..4].copy_from_slice(&(v / 2).to_be_bytes());
        px[4..6].copy_from_slice(&(v / 3).to_be_bytes());
        px[6..].copy_from_slice(&u16::MAX.to_be_bytes());
    }
    for _ in 0..side {
        std::io::Write::write_all(&mut stream, &row).unwrap();
    }
    stream.finish().unwrap();
    drop(writer);
    out
}

/// A small seeded generator (SplitMix64): the same cases on every run and machine.
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

/// One damaged file: what was done to it, and whether its header now claims more pixels than
/// its data holds (such a file must never be classified).
pub struct Case {
    pub name: String,
    pub bytes: Vec<u8>,
    pub header_enlarged: bool,
}

/// The `i`th case of a seeded run: a JPEG, PNG or WebP of a drawn picture, damaged one way.
pub fn case(seed: u64, i: usize) -> Case {
    let mut rng = Rng(seed ^ (i as u64).wrapping_mul(0xD129_0B37_4F2A_1C55));
    let (w, h) = (40 + rng.below(120) as u32, 40 + rng.below(120) as u32);
    let img = picture(w, h, rng.next());
    let (kind, good) = match rng.below(3) {
        0 => ("jpeg", jpeg(&img)),
        1 => ("png", png(&img)),
        _ => ("webp", webp(&img)),
    };
    let mut bytes = good.clone();
    let damage = rng.below(7);
    let name = match damage {
        0 => {
            let n = 1 + rng.below(8);
            for _ in 0..n {
                let at = rng.below(bytes.len());
                bytes[at] ^= 1 << rng.below(8);
            }
            format!("{kind} with {n} flipped bits")
        }
        1 => {
            let at = rng.below(bytes.len());
            bytes.truncate(at);
            format!("{kind} cut at byte {at}")
        }
        2 => {
            let at = rng.below(bytes.len());
            let len = rng.below(64).min(bytes.len() - at);
            bytes[at..at + len].fill(0);
            format!("{kind} with {len} bytes zeroed at {at}")
        }
        3 => {
            let at = rng.below(bytes.len());
            let junk: Vec<u8> = (0..1 + rng.below(32)).map(|_| rng.next() as u8).collect();
            bytes.splice(at..at, junk.iter().copied());
            format!("{kind} with {} random bytes inserted at {at}", junk.len())
        }
        4 => {
            let at = rng.below(bytes.len());
            let len = rng.below(256).min(bytes.len() - at);
            let copy = bytes[at..at + len].to_vec();
            bytes.splice(at..at, copy);
            format!("{kind} with {len} bytes repeated at {at}")
        }
        _ => {
            // The header claims 2 to 40 times the pixels of each side, within the size limits.
            let (cw, ch) = (w * (2 + rng.below(39)) as u32, h * (2 + rng.below(39)) as u32);
            let (cw, ch) = (cw.min(6000), ch.min(6000));
            let name = format!("{kind} {w}x{h} whose header claims {cw}x{ch}");
            let bytes = match kind {
                "jpeg" => jpeg_claiming(&good, cw as u16, ch as u16),
                "png" => png_claiming(&good, cw, ch),
                _ => webp_claiming(&good, cw, ch),
            };
            return Case { name, bytes, header_enlarged: true };
        }
    };
    Case { name, bytes, header_enlarged: false }
}
