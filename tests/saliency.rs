//! Where the network looked: the occlusion map of the shipped model on drawn lesions whose
//! extent is known, and `classify --saliency`.
// Native only: `wasm-pack test` builds every test target for wasm32.
#![cfg(not(target_arch = "wasm32"))]

mod common;

use burn::prelude::Device;
use dermscreen::classifier::Classifier;
use dermscreen::saliency::{OcclusionConfig, OVERLAY_SIDE};
use dermscreen::synthetic::DrawnLesion;

/// A drawn spot in the middle of the frame: the map puts clearly more mass on it than a uniform
/// map (whose share is the spot's area), and its centre of mass lies on the spot.
#[test]
fn map_falls_on_a_drawn_spot() {
    let c = Classifier::load_dir(&common::model_dir(), Device::flex()).unwrap();
    // Only the centred spot: the shipped model calls off-centre drawn spots nevi (with about
    // 0.37), and a nevus call's map spreads over the plain skin around them (below the uniform
    // share at 34 of 75 drawn positions; the model card's Limits). Whether the map follows a
    // lesion that moves is checked on real photos below.
    let (cx, cy, radius) = (0.5, 0.5, 0.2);
    let lesion = DrawnLesion { side: 256, cx, cy, radius };
    let input = c.meta().preprocess.to_input(&lesion.image());
    let s = c.saliency_of(&input, &OcclusionConfig::default()).unwrap();
    let mask = lesion.mask(s.size);
    let area = mask.iter().filter(|&&m| m).count() as f32 / mask.len() as f32;
    let mass = s.mass_in(&mask);
    assert!(mass >= 1.5 * area, "{mass:.3} of the mass on {area:.3} of the area");
    let total: f32 = s.map.iter().sum();
    let centroid = |axis: fn(usize, usize) -> usize| {
        s.map.iter().enumerate().map(|(i, v)| v * (axis(i, s.size) as f32 + 0.5)).sum::<f32>() / total / s.size as f32
    };
    let (mx, my) = (centroid(|i, n| i % n), centroid(|i, n| i / n));
    let off = ((mx - cx).powi(2) + (my - cy).powi(2)).sqrt();
    assert!(off < radius, "the map's centre of mass is at ({mx:.2}, {my:.2})");
}

/// The map follows the lesion in real photos: each of 50 HAM10000 validation photos (200 x 150,
/// the lesion near the middle) is framed twice, as its left and its right 150 px square, so the
/// lesion sits a third of the frame further left in the second. The share of the map's mass in
/// the left half must grow, on average and for most photos. Measured 2026-11-27: the shipped
/// model +0.14 on average, 35 of 50 photos; the two models before it +0.18 (37) and +0.15 (35).
/// A map blind to the lesion gives 0, a mirrored one a loss.
#[test]
fn map_follows_the_lesion_in_real_photos() {
    let c = Classifier::load_dir(&common::model_dir(), Device::flex()).unwrap();
    let left_share = |img: &image::RgbImage, x0: u32| {
        let square = image::imageops::crop_imm(img, x0, 0, 150, 150).to_image();
        let s = c.saliency_of(&c.meta().preprocess.to_input(&square), &OcclusionConfig::default()).unwrap();
        let left_half: Vec<bool> = (0..s.map.len()).map(|i| (i % s.size) * 2 < s.size).collect();
        s.mass_in(&left_half)
    };
    let gains: Vec<f32> = common::validation_split()
        .iter()
        .step_by(40)
        .take(50)
        .map(|(id, _)| {
            let img = image::open(common::image(id)).unwrap().to_rgb8();
            assert_eq!(img.dimensions(), (200, 150), "{id}");
            left_share(&img, 50) - left_share(&img, 0)
        })
        .collect();
    let mean = gains.iter().sum::<f32>() / gains.len() as f32;
    let grew = gains.iter().filter(|&&g| g > 0.0).count();
    assert_eq!(gains.len(), 50);
    assert!(mean >= 0.07 && grew >= 30, "left-half share grew by {mean:.3} on average, in {grew} of 50 photos");
}

/// The map explains the class the classifier predicts, and its numbers are a map.
#[test]
fn map_explains_the_predicted_class() {
    let c = Classifier::load_dir(&common::model_dir(), Device::flex()).unwrap();
    let (id, _) = &common::validation_split()[3];
    let input = c.input_from_bytes(&std::fs::read(common::image(id)).unwrap()).unwrap();
    let s = c.saliency_of(&input, &OcclusionConfig::default()).unwrap();
    assert_eq!(s.map.len(), s.size * s.size);
    assert!(s.map.iter().all(|v| (0.0..=1.0).contains(v)));
    assert!(s.map.contains(&1.0), "scaled so the most salient pixel is 1");
    // One view, no flips: the top class of the unflipped logits.
    assert!(c.meta().training_classes.contains(&s.class));
    assert!(s.probability > 1.0 / c.meta().training_classes.len() as f32);
    assert!(c.saliency_of(&input[1..], &OcclusionConfig::default()).is_err(), "a wrong-sized input is an error");
}

/// `classify --saliency DIR` writes one overlay PNG per image given a risk, named after it,
/// and leaves the classification output as it was. A photo given no risk gets no map, as on
/// the page: a map explains a diagnosis, and there is none.
#[test]
fn cli_writes_one_overlay_per_image_given_a_risk() {
    let dir = common::temp_dir("saliency-cli");
    let ids: Vec<String> = common::validation_split().into_iter().take(2).map(|(id, _)| id).collect();
    let mut images: Vec<_> = ids.iter().map(|id| common::image(id)).collect();
    let dark = dir.join("dark.png");
    image::RgbImage::from_pixel(200, 200, image::Rgb([5, 3, 3])).save(&dark).unwrap();
    images.push(dark);
    let run = |extra: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_dermscreen"))
            .arg("classify")
            .args(&images)
            .args(["--format", "csv", "--model"])
            .arg(common::model_dir())
            .args(extra)
            .output()
            .unwrap()
    };
    let out_dir = dir.join("maps");
    let with = run(&["--saliency", out_dir.to_str().unwrap()]);
    assert!(with.status.success(), "{}", String::from_utf8_lossy(&with.stderr));
    assert_eq!(with.stdout, run(&[]).stdout, "the results do not change");
    for id in &ids {
        let png = image::open(out_dir.join(format!("{id}.png"))).expect("one PNG per image").to_rgb8();
        assert_eq!(png.width(), OVERLAY_SIDE);
        assert!(png.height() > OVERLAY_SIDE, "the colour ramp sits under the photo");
    }
    assert!(!out_dir.join("dark.png").exists(), "no map for a photo given no risk");
    let said = String::from_utf8_lossy(&with.stderr);
    assert!(said.contains("wrote 2 saliency overlays") && said.contains("none for the 1 photo given no risk"), "{said}");
}
