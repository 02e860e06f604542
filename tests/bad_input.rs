//! Bad input, as a careless or unlucky user supplies it: files whose header claims more pixels
//! than their data holds, formats the app does not read, absurd sizes, and a seeded stream of
//! damaged JPEG, PNG and WebP files. Every file is either decoded or refused with one line that
//! says why, and a file whose header was enlarged is never decoded (so never gets a risk).
#![cfg(not(target_arch = "wasm32"))]

mod malformed;

use dermscreen::preprocess::{self, PreprocessError};
use malformed::*;

fn refusal(bytes: &[u8]) -> PreprocessError {
    match preprocess::decode(bytes) {
        Ok(img) => panic!("decoded into {}x{} pixels instead of being refused", img.width(), img.height()),
        Err(e) => e,
    }
}

#[test]
fn a_jpeg_whose_header_claims_more_pixels_than_its_scan_is_refused() {
    let good = jpeg(&picture(200, 150, 1));
    assert!(preprocess::decode(&good).is_ok());
    for (w, h) in [(6000, 6000), (400, 300), (216, 150)] {
        let e = refusal(&jpeg_claiming(&good, w, h));
        assert!(matches!(e, PreprocessError::Incomplete { .. }), "{w}x{h}: {e}");
        assert!(e.to_string().contains("data ends before"), "{e}");
    }
}

#[test]
fn a_webp_whose_canvas_is_larger_than_its_frame_is_refused() {
    let good = webp(&picture(200, 150, 2));
    assert!(preprocess::decode(&good).is_ok());
    assert!(preprocess::decode(&webp_claiming(&good, 200, 150)).is_ok(), "a canvas that is the frame is fine");
    let e = refusal(&webp_claiming(&good, 6000, 6000));
    assert!(matches!(e, PreprocessError::Incomplete { width: 6000, height: 6000 }), "{e}");
    // An animation's frames need not cover its canvas; the old decoder returned it mostly blank.
    let e = refusal(&webp_animated(&good, 6000, 6000));
    assert_eq!(e.to_string(), "animated WebP is not supported: save it as JPEG or PNG");
}

#[test]
fn a_png_claiming_two_billion_pixels_a_side_is_too_large_not_out_of_memory() {
    let e = refusal(&png_claiming(&png(&picture(64, 64, 3)), 2_147_483_647, 2_147_483_647));
    assert!(matches!(e, PreprocessError::TooLarge { .. }), "{e}");
    assert!(e.to_string().contains("2147483647x2147483647"), "{e}");
}

#[test]
fn a_large_16_bit_png_is_refused_from_its_header_within_the_memory_budget() {
    let big = png_rgba16(6324);
    assert!(big.len() < 64 << 20, "small on disk: {} bytes", big.len());
    let e = refusal(&big);
    assert!(matches!(e, PreprocessError::TooLargeToDecode { width: 6324, height: 6324, .. }), "{e}");
    assert!(e.to_string().contains("320 MB"), "{e}");
}

/// A cut-out (a phone's "copy subject", pasted or shared as a PNG) has transparent black where
/// the skin was: read as black skin it got a cancer risk many times the photo's. It is refused
/// with what to do; a picture with an alpha channel that is opaque, or transparent only outside
/// the square the model sees (a wide picture's sides), is read as before.
#[test]
fn a_cut_out_with_a_transparent_background_is_refused() {
    let img = picture(200, 150, 4);
    let e = refusal(&png_cutout(&img, 0.8));
    assert!(matches!(e, PreprocessError::SeeThrough { .. }), "{e}");
    assert!(e.to_string().contains("choose the photo as it was taken"), "{e}");
    let opaque = preprocess::decode(&png_cutout(&img, 2.0)).expect("an opaque alpha channel");
    assert_eq!(opaque, preprocess::decode(&png(&img)).unwrap(), "read as the RGB picture");
    let wide = picture(400, 150, 5);
    // Transparent only at the left and right ends, outside the centre 150 px square.
    let sides = png_cutout(&wide, 1.6);
    assert!(preprocess::decode(&sides).is_ok(), "transparent outside the square the model sees");
}

#[test]
fn other_formats_are_named_with_what_to_do() {
    let img = picture(64, 64, 4);
    for (format, name) in [
        (image::ImageFormat::Gif, "GIF"),
        (image::ImageFormat::Bmp, "BMP"),
        (image::ImageFormat::Tiff, "TIFF"),
    ] {
        let mut bytes = std::io::Cursor::new(Vec::new());
        // The image crate here decodes only JPEG, PNG and WebP, but these signatures are enough.
        let header: &[u8] = match format {
            image::ImageFormat::Gif => b"GIF89a\x40\x00\x40\x00",
            image::ImageFormat::Bmp => b"BM\x00\x00\x00\x00",
            _ => b"II*\x00\x08\x00\x00\x00",
        };
        std::io::Write::write_all(&mut bytes, header).unwrap();
        std::io::Write::write_all(&mut bytes, img.as_raw()).unwrap();
        let e = refusal(bytes.get_ref());
        assert_eq!(e.to_string(), format!("{name} is not supported: save it as JPEG or PNG"));
    }
    let heic = [&b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00mif1heic"[..], &[0; 64]].concat();
    // Most iPhone photos are HEIC: the message says where the setting is.
    assert_eq!(
        refusal(&heic).to_string(),
        "HEIC (an iPhone's default) is not supported: save it as JPEG or PNG (on an iPhone: Settings > Camera > Formats > Most Compatible)"
    );
}

/// Seeded damage to small JPEG, PNG and WebP files: no panic, every refusal one line, and a
/// file whose header claims more pixels than it holds is never decoded. More cases:
/// `DERMSCREEN_FUZZ_CASES=20000 cargo test --release --test bad_input`.
#[test]
fn damaged_files_are_decoded_or_refused_in_one_line_never_with_an_enlarged_header() {
    let cases: usize = std::env::var("DERMSCREEN_FUZZ_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(400);
    let (mut decoded, mut refused, mut enlarged) = (0, 0, 0);
    for i in 0..cases {
        let case = case(20_261_126, i);
        let result = std::panic::catch_unwind(|| preprocess::decode(&case.bytes));
        let result = result.unwrap_or_else(|_| panic!("case {i} ({}) panicked", case.name));
        enlarged += usize::from(case.header_enlarged);
        match result {
            Ok(img) => {
                assert!(!case.header_enlarged, "case {i} ({}) was decoded into {}x{}", case.name, img.width(), img.height());
                decoded += 1;
            }
            Err(e) => {
                let line = e.to_string();
                assert!(!line.is_empty() && !line.contains('\n'), "case {i} ({}): {line:?}", case.name);
                refused += 1;
            }
        }
    }
    eprintln!("{cases} damaged files: {decoded} decoded, {refused} refused ({enlarged} with an enlarged header, all refused)");
    assert!(enlarged > cases / 8 && refused > cases / 4, "the generator covers both kinds");
}
