//! The browser engine in headless Chromium (wasm-bindgen tests, run by `./build.sh test`):
//! the shipped weights load on the CPU backend and on WebGPU, a lesion-like image gives a full
//! result, both backends agree, and bad input is refused with a readable reason.
#![cfg(target_arch = "wasm32")]

mod malformed;

use dermscreen::context::Context;
use dermscreen::error_message;
use dermscreen::web::{BackendChoice, Engine, EngineError};
use image::{ImageFormat, Rgb, RgbImage};
use std::io::Cursor;
use wasm_bindgen_test::*;

wasm_bindgen_test_configure!(run_in_browser);

const MODEL_JSON: &str = include_str!("../model/model.json");
const WEIGHTS: &[u8] = include_bytes!("../model/model.bpk");
/// Largest difference allowed between any probability on WebGPU and on the CPU backend.
const BACKEND_TOLERANCE: f32 = 1e-3;

/// A dark, irregular blot on skin-coloured ground: HAM10000 pixels may not be committed, so
/// the browser tests draw their own lesion. Real images are compared with the CLI in the e2e test.
fn lesion_png(size: u32) -> Vec<u8> {
    let c = size as f32 / 2.0;
    let img = RgbImage::from_fn(size, size, |x, y| {
        let (dx, dy) = (x as f32 - c, y as f32 - c);
        let r = (dx * dx + dy * dy).sqrt() / c;
        let wobble = 0.08 * (5.0 * dy.atan2(dx)).sin();
        if r < 0.45 + wobble {
            Rgb([92, 58, 44])
        } else {
            Rgb([214, 160, 140])
        }
    });
    let mut out = Cursor::new(Vec::new());
    img.write_to(&mut out, ImageFormat::Png).unwrap();
    out.into_inner()
}

/// What the page would show for an error: the sentence with its causes.
fn message<T>(result: Result<T, EngineError>) -> String {
    match result {
        Ok(_) => panic!("expected an error"),
        Err(e) => error_message(&e),
    }
}

async fn cpu() -> Engine {
    Engine::open(MODEL_JSON, WEIGHTS.to_vec(), BackendChoice::Cpu).await.expect("shipped model loads")
}

fn assert_complete(p: &dermscreen::classifier::Prediction) {
    let ids: Vec<&str> = p.classes.iter().map(|c| c.id.as_str()).collect();
    assert_eq!(ids, ["df", "vasc", "bkl", "nv", "akiec", "bcc", "scc", "mel"]);
    let sum: f32 = p.classes.iter().map(|c| c.probability).sum();
    assert!((sum - 1.0).abs() < 1e-4, "probabilities sum to {sum}");
    let node = |id: &str| p.nodes.iter().find(|n| n.id == id).unwrap().probability;
    assert!((node("benign") + node("malignant") - 1.0).abs() < 1e-4);
    assert!((node("malignant") - p.malignant).abs() < 1e-6);
}

#[wasm_bindgen_test]
async fn cpu_backend_classifies_a_lesion_image() {
    let engine = cpu().await;
    assert_eq!(engine.backend_name(), "cpu");
    let p = engine.predict_file(&lesion_png(300), &Context::default()).await.unwrap();
    assert_complete(&p);
}

/// Every call from JavaScript into the module (each test, each resolved promise) must not re-run
/// the static constructors: when wasm-ld wrapped the exports in them, WebGPU work spent most of
/// its time there.
#[wasm_bindgen_test]
async fn static_constructors_run_once() {
    let engine = cpu().await;
    for size in [120, 160] {
        engine.predict_file(&lesion_png(size), &Context::default()).await.unwrap();
    }
    assert_eq!(dermscreen::web::static_constructor_runs(), 1);
}

#[wasm_bindgen_test]
async fn rgba_frames_match_encoded_files() {
    let engine = cpu().await;
    let png = lesion_png(240);
    let rgb = image::load_from_memory(&png).unwrap().to_rgba8();
    let from_file = engine.predict_file(&png, &Context::default()).await.unwrap();
    let from_frame = engine.predict_rgba(rgb.as_raw(), 240, 240, &Context::default()).await.unwrap();
    assert_eq!(from_file, from_frame);
}

#[wasm_bindgen_test]
async fn webgpu_matches_the_cpu_backend() {
    let gpu = match Engine::open(MODEL_JSON, WEIGHTS.to_vec(), BackendChoice::WebGpu).await {
        Ok(e) => e,
        // build.sh sets DERMSCREEN_REQUIRE_WEBGPU for Chromium started with --enable-unsafe-webgpu,
        // which has an adapter here; elsewhere a browser without one skips, saying why.
        Err(reason) if option_env!("DERMSCREEN_REQUIRE_WEBGPU").is_none() => {
            web_sys::console::log_1(&format!("SKIPPED webgpu_matches_the_cpu_backend: {reason}").into());
            return;
        }
        Err(reason) => panic!("no WebGPU adapter although one is required: {reason}"),
    };
    assert_eq!(gpu.backend_name(), "webgpu");
    let cpu = cpu().await;
    for size in [300, 113] {
        let png = lesion_png(size);
        let a = gpu.predict_file(&png, &Context::default()).await.unwrap();
        let b = cpu.predict_file(&png, &Context::default()).await.unwrap();
        assert_complete(&a);
        for (x, y) in a.classes.iter().chain(&a.nodes).zip(b.classes.iter().chain(&b.nodes)) {
            assert!(
                (x.probability - y.probability).abs() <= BACKEND_TOLERANCE,
                "{}: webgpu {} vs cpu {}",
                x.id,
                x.probability,
                y.probability
            );
        }
    }
}

#[wasm_bindgen_test]
async fn bad_images_are_refused_with_a_reason() {
    let engine = cpu().await;
    let err = message(engine.predict_file(&[], &Context::default()).await);
    assert!(err.contains("empty"), "{err}");
    let err = message(engine.predict_file(b"<html>not a photo</html>", &Context::default()).await);
    assert!(err.contains("not a supported image"), "{err}");
    let err = message(engine.predict_file(&lesion_png(1), &Context::default()).await);
    assert!(err.contains("too small"), "{err}");
    let png = lesion_png(300);
    let err = message(engine.predict_file(&png[..png.len() / 2], &Context::default()).await);
    assert!(!err.is_empty());
    let err = message(engine.predict_rgba(&[0; 12], 2, 2, &Context::default()).await);
    assert!(err.contains("2x2") || err.contains("bytes"), "{err}");
}

#[wasm_bindgen_test]
async fn mismatched_weights_are_refused() {
    let err = message(Engine::open(MODEL_JSON, WEIGHTS[..1000].to_vec(), BackendChoice::Cpu).await);
    assert!(err.contains("bytes, but model.json expects"), "{err}");
    let mut tampered = WEIGHTS.to_vec();
    tampered[5000] ^= 1;
    let err = message(Engine::open(MODEL_JSON, tampered, BackendChoice::Cpu).await);
    assert!(err.contains("SHA-256"), "{err}");
    let err = message(Engine::open("{\"format\": 1}", WEIGHTS.to_vec(), BackendChoice::Cpu).await);
    assert!(err.contains("model.json is not valid: missing field"), "{err}");
}

/// The kinds of bad file that once got a risk (a header claiming more pixels than the file
/// holds) or the wrong words, refused in the browser with the sentence the page shows.
#[wasm_bindgen_test]
async fn malformed_files_are_refused_with_the_sentence_the_page_shows() {
    let engine = cpu().await;
    let small = malformed::picture(200, 150, 11);
    let webp = malformed::webp(&small);
    let cases = [
        (malformed::jpeg_claiming(&malformed::jpeg(&small), 6000, 6000), "its header declares 6000x6000 px but its data ends"),
        (malformed::webp_claiming(&webp, 6000, 6000), "its header declares 6000x6000 px but its data ends"),
        (malformed::webp_animated(&webp, 6000, 6000), "animated WebP is not supported: save it as JPEG or PNG"),
        (malformed::png_claiming(&malformed::png(&small), 2_147_483_647, 2_147_483_647), "image too large: 2147483647x2147483647 px"),
        (malformed::png_rgba16(6324), "image too large: 6324x6324 px needs 320 MB to decode"),
        ([&b"GIF89a"[..], &[0; 64]].concat(), "GIF is not supported: save it as JPEG or PNG"),
        (malformed::png_cutout(&small, 0.8), "cut-out picture"),
    ];
    for (bytes, why) in cases {
        match engine.predict_file(&bytes, &Context::default()).await {
            Ok(p) => panic!("classified ({}% malignant) instead of refused: {why}", 100.0 * p.malignant),
            Err(e) => assert!(e.to_string().contains(why), "expected '{why}', the page would show '{e}'"),
        }
    }
}

/// Where the network looked, in the browser: the map falls on a drawn lesion on the CPU
/// backend, and WebGPU draws the same map (within 0.01 of the most salient value). The
/// comparison uses a 3x3 grid: the only adapter here is a software one, slow enough that the
/// page's 7x7 grid would outlast the test runner's patience.
#[wasm_bindgen_test]
async fn saliency_falls_on_the_lesion_and_matches_across_backends() {
    use dermscreen::saliency::OcclusionConfig;
    use dermscreen::synthetic::DrawnLesion;
    // Centred: the shipped model calls off-centre drawn spots nevi, whose maps spread over the
    // skin (tests/saliency.rs).
    let lesion = DrawnLesion { side: 256, cx: 0.5, cy: 0.5, radius: 0.2 };
    let cpu = cpu().await;
    let s = cpu.saliency_of(&lesion.image(), &OcclusionConfig::default()).await.unwrap();
    let mask = lesion.mask(s.size);
    let area = mask.iter().filter(|&&m| m).count() as f32 / mask.len() as f32;
    // The same bound as tests/saliency.rs: the shipped model puts 5.3x the uniform share here.
    assert!(s.mass_in(&mask) >= 1.5 * area, "{} of the mass on {area} of the area", s.mass_in(&mask));
    let Ok(gpu) = Engine::open(MODEL_JSON, WEIGHTS.to_vec(), BackendChoice::WebGpu).await else {
        assert!(option_env!("DERMSCREEN_REQUIRE_WEBGPU").is_none(), "no WebGPU adapter although one is required");
        return;
    };
    let small = OcclusionConfig { grid: 3 };
    let a = cpu.saliency_of(&lesion.image(), &small).await.unwrap();
    let b = gpu.saliency_of(&lesion.image(), &small).await.unwrap();
    assert_eq!(a.class, b.class);
    let worst = a.map.iter().zip(&b.map).map(|(x, y)| (x - y).abs()).fold(0.0f32, f32::max);
    assert!(worst <= 0.01, "maps differ by {worst}");
}

/// The patient context: none gives the image-only result exactly, answers move it and are named
/// in the result, and `checkContext` refuses a value naming its field. It is an argument of
/// each call, so one engine serves elements with different contexts.
#[wasm_bindgen_test]
async fn context_changes_the_result_only_when_given() {
    let engine = cpu().await;
    let png = lesion_png(200);
    let plain = engine.predict_file(&png, &Context::default()).await.unwrap();
    let answers = Context::from_pairs([("age", "80"), ("bled", "true"), ("grew", "true")]).unwrap();
    let with = engine.predict_file(&png, &answers).await.unwrap();
    assert_eq!(with.context_used, ["age", "grew", "bled"]);
    assert!((with.malignant - plain.malignant).abs() > 1e-3, "{} vs {}", with.malignant, plain.malignant);
    let fields = js_sys::Object::new();
    js_sys::Reflect::set(&fields, &"site".into(), &"elbow".into()).unwrap();
    let err = engine.check_context_js(fields.into()).unwrap_err();
    let text = js_sys::Error::from(err).message().as_string().unwrap();
    assert!(text.contains("context field 'site'"), "{text}");
    assert_eq!(engine.predict_file(&png, &Context::default()).await.unwrap(), plain, "no answers: the image-only result");
}
