//! The shipped model, loaded as the CLI and the browser load it, on real HAM10000 images.
// Native only: these run the CLI and read files; `wasm-pack test` builds every test target for wasm32.
#![cfg(not(target_arch = "wasm32"))]

mod common;
mod malformed;

use burn::prelude::Device;
use dermscreen::classifier::{Classifier, ClassifierError, ModelMeta};
use dermscreen::preprocess;
use dermscreen::report;
use dermscreen::taxonomy::Taxonomy;

fn load() -> Classifier {
    Classifier::load_dir(&common::model_dir(), Device::flex()).expect("shipped model loads")
}

fn input(classifier: &Classifier, id: &str) -> Vec<f32> {
    classifier.input_from_bytes(&std::fs::read(common::image(id)).unwrap()).unwrap()
}

#[test]
fn shipped_model_reports_every_training_class_and_sums_to_one() {
    let c = load();
    assert_eq!(
        c.meta().training_classes,
        ["df", "vasc", "bkl", "nv", "akiec", "bcc", "scc", "mel"],
        "HAM10000's seven dx codes and squamous cell carcinoma, a class of its own from the partition"
    );
    let (id, _) = &common::validation_split()[0];
    let p = &c.classify_inputs(&input(&c, id)).unwrap()[0];
    let total: f32 = p.classes.iter().map(|x| x.probability).sum();
    assert!((total - 1.0).abs() < 1e-4, "class probabilities sum to {total}");
    let node = |id: &str| p.nodes.iter().find(|n| n.id == id).unwrap().probability;
    assert!((node("benign") + node("malignant") - 1.0).abs() < 1e-4);
    assert!((node("malignant") - p.malignant).abs() < 1e-6);
    let mel = p.classes.iter().find(|x| x.id == "mel").unwrap().probability;
    assert!((node("malignant_melanocytic") - mel).abs() < 1e-6);
}

/// Inference mode: an image's result does not depend on what else is in the batch (batch norm
/// uses its running statistics, dropout is off).
#[test]
fn result_does_not_depend_on_the_batch() {
    let c = load();
    let split = common::validation_split();
    let inputs: Vec<Vec<f32>> = split.iter().take(5).map(|(id, _)| input(&c, id)).collect();
    let alone = c.classify_inputs(&inputs[0]).unwrap().remove(0);
    let again = c.classify_inputs(&inputs[0]).unwrap().remove(0);
    let flat: Vec<f32> = inputs.iter().flatten().copied().collect();
    let batched = c.classify_inputs(&flat).unwrap().remove(0);
    for ((a, b), r) in alone.classes.iter().zip(&batched.classes).zip(&again.classes) {
        assert!((a.probability - b.probability).abs() < 1e-5, "{}: {} alone, {} in a batch", a.id, a.probability, b.probability);
        assert_eq!(a.probability, r.probability, "deterministic");
    }
}

/// Held-out lesions (the model's validation split): the shipped weights must keep clearly
/// better than chance performance. Thresholds sit below the model card's measured numbers to
/// leave room for the subsample, not for a broken model.
#[test]
fn held_out_images_get_sensible_diagnoses() {
    let c = load();
    let split = common::validation_split();
    let subset: Vec<_> = split.iter().step_by(4).collect();
    let classes = c.meta().training_classes.clone();
    let mut labels = Vec::new();
    let mut probs = Vec::new();
    for chunk in subset.chunks(32) {
        let flat: Vec<f32> = chunk.iter().flat_map(|(id, _)| input(&c, id)).collect();
        for (p, (_, dx)) in c.classify_inputs(&flat).unwrap().iter().zip(chunk) {
            probs.push(p.class_probs());
            labels.push(c.taxonomy().class_of(dx, &classes).unwrap());
        }
    }
    let s = report::summarise(&classes, c.taxonomy(), &labels, &probs).unwrap();
    eprintln!(
        "{} held-out images: balanced accuracy {:.3}, AUC mel/nv {:?}, AUC kc/bkl {:?}, AUC malignant {:?}",
        s.images,
        s.balanced_accuracy,
        s.auc("melanoma_vs_nevus"),
        s.auc("carcinoma_vs_keratosis"),
        s.auc("malignant_vs_benign")
    );
    // The calibrated argmax favours common diagnoses: 0.476 on all 2,018 (model card), 1/7 by chance.
    assert!(s.balanced_accuracy > 0.4, "balanced accuracy {}", s.balanced_accuracy);
    assert!(s.auc("melanoma_vs_nevus").unwrap() > 0.85);
    assert!(s.auc("carcinoma_vs_keratosis").unwrap() > 0.8);
    assert!(s.auc("malignant_vs_benign").unwrap() > 0.78);
}

/// A JPEG whose pixels are stored rotated, with EXIF orientation 6 ("rotate 90° clockwise to
/// display"), must be classified like the upright original.
#[test]
fn exif_orientation_is_applied_before_classification() {
    let c = load();
    let (id, _) = &common::validation_split()[3];
    let original = preprocess::decode(&std::fs::read(common::image(id)).unwrap()).unwrap();
    let stored = image::imageops::rotate270(&original);
    let mut jpeg = Vec::new();
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut jpeg, 95)
        .encode_image(&stored)
        .unwrap();
    let tagged = with_exif_orientation(&jpeg, 6);
    let upright = preprocess::decode(&tagged).unwrap();
    assert_eq!(upright.dimensions(), original.dimensions(), "orientation applied");
    let untagged = preprocess::decode(&jpeg).unwrap();
    assert_eq!(untagged.dimensions(), (original.height(), original.width()));
    let a = &c.classify_inputs(&input(&c, id)).unwrap()[0];
    let b = &c.classify_inputs(&c.input_from_bytes(&tagged).unwrap()).unwrap()[0];
    for (x, y) in a.classes.iter().zip(&b.classes) {
        assert!((x.probability - y.probability).abs() < 0.05, "{}: {} vs {}", x.id, x.probability, y.probability);
    }
}

/// A screenshot of a photo (the photo across the screen, flat bars above and below it, as a
/// phone shows a landscape photo upright, with or without the phone's words in them), and a
/// photo given a frame, get the photo's result: the bars are not read as skin. Before, the bars moved the risk: the first of these from
/// 29.7% to 35.4% (black bars), five other HAM10000 photos' from 1-6% to 5-26%, and frames
/// 10% wide two of them from 0.7% and 2.4% to 15% and 27%, over the flag's threshold.
#[test]
fn a_screenshot_of_a_photo_is_judged_as_the_photo() {
    let c = load();
    let photos = common::validation_split();
    assert!(photos.len() >= 6);
    for (id, _) in &photos[..6] {
        let photo = preprocess::decode(&std::fs::read(common::image(id)).unwrap()).unwrap();
        let original = &c.classify_inputs(&input(&c, id)).unwrap()[0];
        for bar in [image::Rgb([0, 0, 0]), image::Rgb([255, 255, 255])] {
            // A phone's screen: about 9:19.5.
            let (w, h) = (photo.width(), photo.width() * 13 / 6);
            let mut screen = image::RgbImage::from_pixel(w, h, bar);
            image::imageops::replace(&mut screen, &photo, 0, i64::from((h - photo.height()) / 2));
            let png = malformed::png(&screen);
            // Saved as a JPEG, the bars' edges blur into the photo's first rows; the photo itself
            // is compressed again, so its risk moves a little.
            let mut jpeg = Vec::new();
            image::codecs::jpeg::JpegEncoder::new_with_quality(&mut jpeg, 80).encode_image(&screen).unwrap();
            // The phone's own words and icons in the bars (the time, "Edit", a toolbar): marks
            // across a fifth of a bar's width, on a tenth of its lines.
            let mut chrome = screen.clone();
            let ink = image::Rgb(bar.0.map(|v| 255 - v));
            let top = (h - photo.height()) / 2;
            for y in (2..top - 2).step_by(10) {
                for x in (0..w).step_by(5).take((w / 25) as usize) {
                    chrome.put_pixel(x, y, ink);
                    chrome.put_pixel(x, h - 1 - y, ink);
                }
            }
            let with_chrome = malformed::png(&chrome);
            // A frame a tenth of the height wide all round.
            let border = photo.height() / 10;
            let mut framed = image::RgbImage::from_pixel(photo.width() + 2 * border, photo.height() + 2 * border, bar);
            image::imageops::replace(&mut framed, &photo, i64::from(border), i64::from(border));
            let frame = malformed::png(&framed);
            let cases = [("PNG", png, 0.005), ("JPEG", jpeg, 0.03), ("PNG with the phone's words", with_chrome, 0.005), ("framed PNG", frame, 0.005)];
            for (format, bytes, within) in cases {
                let shot = &c.classify_inputs(&c.input_from_bytes(&bytes).unwrap()).unwrap()[0];
                let (got, want) = (shot.malignant, original.malignant);
                assert!((got - want).abs() < within, "{id}, a {format} with {bar:?} bars: {got} vs {want}");
            }
        }
    }
}

/// Inserts a minimal big-endian EXIF block with one Orientation entry after the SOI marker.
fn with_exif_orientation(jpeg: &[u8], orientation: u16) -> Vec<u8> {
    let mut tiff = Vec::new();
    tiff.extend_from_slice(b"MM\x00\x2a\x00\x00\x00\x08");
    tiff.extend_from_slice(&1u16.to_be_bytes());
    tiff.extend_from_slice(&0x0112u16.to_be_bytes());
    tiff.extend_from_slice(&3u16.to_be_bytes());
    tiff.extend_from_slice(&1u32.to_be_bytes());
    tiff.extend_from_slice(&orientation.to_be_bytes());
    tiff.extend_from_slice(&[0, 0, 0, 0, 0, 0]);
    let mut seg = b"Exif\x00\x00".to_vec();
    seg.extend_from_slice(&tiff);
    let mut out = jpeg[..2].to_vec();
    out.extend_from_slice(&[0xFF, 0xE1]);
    out.extend_from_slice(&((seg.len() + 2) as u16).to_be_bytes());
    out.extend_from_slice(&seg);
    out.extend_from_slice(&jpeg[2..]);
    out
}

fn shipped_parts() -> (ModelMeta, Vec<u8>) {
    let dir = common::model_dir();
    let meta: ModelMeta = serde_json::from_slice(&std::fs::read(dir.join("model.json")).unwrap()).unwrap();
    let weights = std::fs::read(dir.join(&meta.weights.file)).unwrap();
    (meta, weights)
}

#[test]
fn corrupt_or_mismatched_weights_are_refused_with_the_reason() {
    let (meta, weights) = shipped_parts();
    let mut flipped = weights.clone();
    let mid = flipped.len() / 2;
    flipped[mid] ^= 0xFF;
    let err = Classifier::from_parts(meta.clone(), flipped, Taxonomy::bundled(), Device::flex()).unwrap_err();
    assert!(matches!(err, ClassifierError::Weights { .. }), "{err}");
    assert!(err.to_string().contains("model.bpk") && err.to_string().contains("SHA-256"), "{err}");

    let short = weights[..weights.len() - 10].to_vec();
    let err = Classifier::from_parts(meta.clone(), short, Taxonomy::bundled(), Device::flex()).unwrap_err();
    assert!(err.to_string().contains("bytes"), "{err}");

    // Right hash, wrong architecture: the weights do not fit the network.
    let mut wider = meta.clone();
    wider.architecture.stage_channels[0] *= 2;
    let err = Classifier::from_parts(wider, weights.clone(), Taxonomy::bundled(), Device::flex()).unwrap_err();
    assert!(err.to_string().contains("does not match the architecture"), "{err}");

    let mut other_tax = meta.clone();
    other_tax.taxonomy_version = "1999.1".into();
    let err = Classifier::from_parts(other_tax, weights, Taxonomy::bundled(), Device::flex()).unwrap_err();
    assert!(err.to_string().contains("taxonomy version"), "{err}");
}

#[test]
fn missing_model_folder_names_the_file() {
    let err = Classifier::load_dir(std::path::Path::new("no/such/model"), Device::flex()).unwrap_err();
    assert!(err.to_string().contains("no/such/model/model.json"), "{err}");
}

/// Squamous cell carcinoma is a training class under malignant epidermal tumours: its
/// probability counts towards both, and held-out carcinomas score as malignant.
#[test]
fn squamous_cell_carcinoma_maps_through_the_taxonomy() {
    let c = load();
    let root = common::data_root();
    let scc: Vec<_> = common::validation_rows().into_iter().filter(|l| l.dx == "scc").take(12).collect();
    assert!(scc.len() >= 8, "held-out scc photos in the split");
    let flat: Vec<f32> = scc.iter().flat_map(|l| c.input_from_bytes(&std::fs::read(root.join(&l.image)).unwrap()).unwrap()).collect();
    let preds = c.classify_inputs(&flat).unwrap();
    for p in &preds {
        let prob = |id: &str| p.classes.iter().chain(&p.nodes).find(|x| x.id == id).unwrap().probability;
        let epidermal = prob("akiec") + prob("bcc") + prob("scc");
        assert!((prob("malignant_epidermal") - epidermal).abs() < 1e-5);
        assert!(prob("malignant") >= prob("malignant_epidermal") - 1e-6);
    }
    let mean_malignant = preds.iter().map(|p| p.malignant).sum::<f32>() / preds.len() as f32;
    assert!(mean_malignant > 0.5, "held-out carcinomas score {mean_malignant} malignant on average");
}

/// The domain head tells a phone photo from a dermoscopic one, and the flag uses that kind's
/// threshold.
#[test]
fn phone_and_dermoscopic_photos_get_their_kind_and_its_threshold() {
    use dermscreen::dataset::Kind;
    let c = load();
    let root = common::data_root();
    let rows = common::validation_rows();
    let domain = c.meta().domain.as_ref().expect("the shipped model has a domain head");
    for (kind, source) in [(Kind::Clinical, "pad_ufes_20"), (Kind::Dermoscopic, "ham10000"), (Kind::Dermoscopic, "bcn_20000")] {
        let photos: Vec<_> = rows.iter().filter(|l| l.source.as_deref() == Some(source)).take(20).collect();
        let flat: Vec<f32> = photos.iter().flat_map(|l| c.input_from_bytes(&std::fs::read(root.join(&l.image)).unwrap()).unwrap()).collect();
        let preds = c.classify_inputs(&flat).unwrap();
        let right = preds.iter().filter(|p| p.domain == Some(kind)).count();
        assert!(right >= 17, "{source}: {right} of 20 taken for {}", kind.as_str());
        for p in &preds {
            let k = p.domain.unwrap();
            assert_eq!(p.high_risk, p.malignant >= domain.high_risk_thresholds[&k], "the flag uses the {} threshold", k.as_str());
        }
    }
}

/// Patient context changes a result only when some of it is given: with none, the result is
/// the image-only one exactly; with answers, P(malignant) moves, and it says which fields.
#[test]
fn context_changes_results_only_when_given() {
    use dermscreen::context::Context;
    let c = load();
    assert!(c.meta().context.is_some(), "the shipped model has a context head");
    let root = common::data_root();
    let rows: Vec<_> = common::validation_rows().into_iter().filter(|l| l.source.as_deref() == Some("pad_ufes_20")).take(6).collect();
    let flat: Vec<f32> = rows.iter().flat_map(|l| c.input_from_bytes(&std::fs::read(root.join(&l.image)).unwrap()).unwrap()).collect();
    let plain = c.classify_inputs(&flat).unwrap();
    let none = c.classify_inputs_with(&flat, &vec![Context::default(); rows.len()]).unwrap();
    assert_eq!(plain, none, "no answers: exactly the image-only result");
    assert!(none.iter().all(|p| p.context_used.is_empty()));
    let worrying = Context::from_pairs([("age", "78"), ("bled", "true"), ("grew", "true"), ("changed", "true")]).unwrap();
    let with = c.classify_inputs_with(&flat, &vec![worrying; rows.len()]).unwrap();
    for (a, b) in plain.iter().zip(&with) {
        assert_eq!(b.context_used, ["age", "grew", "changed", "bled"]);
        assert!((a.malignant - b.malignant).abs() > 1e-3, "the answers move P(malignant): {} -> {}", a.malignant, b.malignant);
        let total: f32 = b.classes.iter().map(|x| x.probability).sum();
        assert!((total - 1.0).abs() < 1e-4);
    }
    let mean = |v: &[dermscreen::classifier::Prediction]| v.iter().map(|p| p.malignant).sum::<f32>() / v.len() as f32;
    assert!(mean(&with) > mean(&plain), "an older patient with a bleeding, growing, changing spot is at higher risk");
}
