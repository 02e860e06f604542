//! Benchmarks for `./build.sh bench`: one JSON object per line on stdout, so runs can be
//! compared as ratios within one run (absolute times on shared machines wander).
//!
//! Usage: `cargo run --release --example bench [-- DATA_DIR [ITERATIONS]]`

#[cfg(not(target_arch = "wasm32"))]
fn main() {
    native::main()
}

/// The benchmarks are native; this stub lets `wasm-pack test`, which builds every target for
/// wasm32, build the example.
#[cfg(target_arch = "wasm32")]
fn main() {}

#[cfg(not(target_arch = "wasm32"))]
mod native {
    use burn::prelude::Device;
    use dermscreen::classifier::Classifier;
    use dermscreen::saliency::OcclusionConfig;
    use dermscreen::synthetic::DrawnLesion;
    use std::path::PathBuf;
    use std::time::Instant;

    fn emit(name: &str, unit: &str, value: f64, extra: serde_json::Value) {
        let mut v = serde_json::json!({ "bench": name, "unit": unit, "value": (value * 1000.0).round() / 1000.0 });
        if let (Some(o), Some(e)) = (v.as_object_mut(), extra.as_object()) {
            o.extend(e.clone());
        }
        println!("{v}");
    }

    /// Median of `iters` timings of `f`, in seconds.
    fn median_secs(iters: usize, mut f: impl FnMut()) -> f64 {
        let mut t: Vec<f64> = (0..iters)
            .map(|_| {
                let s = Instant::now();
                f();
                s.elapsed().as_secs_f64()
            })
            .collect();
        t.sort_by(f64::total_cmp);
        t[t.len() / 2]
    }

    pub fn main() {
        let args: Vec<String> = std::env::args().collect();
        let data = PathBuf::from(args.get(1).cloned().unwrap_or_else(|| "../shared/data/ham10000".into()));
        let iters: usize = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(10);
        let (device, device_name) = device();
        let classifier = Classifier::load_dir(&PathBuf::from("model"), device).expect("load model/");
        let pre = classifier.meta().preprocess;
        let input = |b: &[u8]| classifier.input_from_bytes(b).expect("a HAM10000 image decodes");
        let mut files: Vec<PathBuf> = std::fs::read_dir(data.join("images"))
            .expect("HAM10000 images folder")
            .map(|e| e.unwrap().path())
            .collect();
        files.sort();
        files.truncate(64);
        let bytes: Vec<Vec<u8>> = files.iter().map(|f| std::fs::read(f).unwrap()).collect();
        let info = serde_json::json!({ "input_size": pre.input_size, "test_time_flips": classifier.meta().test_time_flips, "device": device_name });

        let decode = median_secs(iters, || {
            for b in &bytes {
                std::hint::black_box(input(b));
            }
        });
        emit("decode_preprocess_200x150_jpeg", "ms/image", 1e3 * decode / bytes.len() as f64, info.clone());

        let inputs: Vec<Vec<f32>> = bytes.iter().map(|b| input(b)).collect();
        classifier.classify_inputs(&inputs[0]).unwrap(); // warm-up
        let single = median_secs(iters, || {
            std::hint::black_box(classifier.classify_inputs(&inputs[0]).unwrap());
        });
        emit(&format!("classify_batch1_{device_name}"), "ms/image", 1e3 * single, info.clone());

        let batch: Vec<f32> = inputs.iter().take(32).flatten().copied().collect();
        let batched = median_secs(iters.div_ceil(3), || {
            std::hint::black_box(classifier.classify_inputs(&batch).unwrap());
        });
        emit(&format!("classify_batch32_{device_name}"), "images/s", 32.0 / batched, info.clone());
        emit("batch32_throughput_over_batch1", "ratio", 32.0 * single / batched, info.clone());
        saliency(&classifier, &inputs[0], single, iters, info, device_name);
        real_photos_refused(&data);
        phone_sized_photos(&bytes[..PHONE_PHOTOS], &PathBuf::from("target/bench/phone-photos"));
    }

    /// How many phone-sized photos [`phone_sized_photos`] writes.
    const PHONE_PHOTOS: usize = 32;

    /// Writes `photos` enlarged to 4000x3000 (a phone camera's 12 MP) as JPEGs at quality 90
    /// into `dir`, for `./build.sh bench` to time the CLI on: there decoding, not the network,
    /// takes most of a photo's time.
    fn phone_sized_photos(photos: &[Vec<u8>], dir: &std::path::Path) {
        use image::{codecs::jpeg::JpegEncoder, imageops::FilterType};
        std::fs::create_dir_all(dir).expect("target/bench is writable");
        for (i, bytes) in photos.iter().enumerate() {
            let big = image::imageops::resize(&dermscreen::preprocess::decode(bytes).expect("a HAM10000 photo decodes"), 4000, 3000, FilterType::Triangle);
            let mut out = std::io::BufWriter::new(std::fs::File::create(dir.join(format!("phone-{i:02}.jpg"))).expect("create a photo"));
            JpegEncoder::new_with_quality(&mut out, 90).encode_image(&big).expect("encode a photo");
        }
    }

    /// The device the classifier runs on: Burn's CPU backend, or with `--features vulkan` and
    /// `DERMSCREEN_BENCH_DEVICE=vulkan` a Vulkan GPU (the native baseline for the browser's WebGPU
    /// path on a lent GPU machine).
    fn device() -> (Device, &'static str) {
        #[cfg(feature = "vulkan")]
        if std::env::var("DERMSCREEN_BENCH_DEVICE").as_deref() == Ok("vulkan") {
            return (Device::vulkan(burn::tensor::DeviceKind::DefaultDevice), "vulkan");
        }
        (Device::flex(), "flex")
    }

    /// Occlusion saliency: its time per photo (and over one classification), and how much of
    /// the map falls on drawn lesions at nine places in the frame, over what a uniform map gives.
    fn saliency(classifier: &Classifier, input: &[f32], classify_secs: f64, iters: usize, info: serde_json::Value, device_name: &str) {
        let grid = OcclusionConfig::default();
        let secs = median_secs(iters.div_ceil(3), || {
            std::hint::black_box(classifier.saliency_of(input, &grid).unwrap());
        });
        emit(&format!("saliency_occlusion_{device_name}"), "ms/image", 1e3 * secs, serde_json::json!({ "over_classify": secs / classify_secs, "grid": grid.grid }));
        let mut ratios = Vec::new();
        for cy in [0.3, 0.5, 0.7] {
            for cx in [0.3, 0.5, 0.7] {
                let lesion = DrawnLesion { side: 256, cx, cy, radius: 0.18 };
                let s = classifier.saliency_of(&classifier.meta().preprocess.to_input(&lesion.image()), &grid).unwrap();
                let mask = lesion.mask(s.size);
                let area = mask.iter().filter(|&&m| m).count() as f32 / mask.len() as f32;
                ratios.push(f64::from(s.mass_in(&mask) / area));
            }
        }
        ratios.sort_by(f64::total_cmp);
        let extra = serde_json::json!({ "lesions": ratios.len(), "min": ratios[0], "uniform_map": 1.0, "input": info });
        emit("saliency_mass_on_lesion_over_uniform", "ratio", ratios[ratios.len() / 2], extra);
    }

    /// How many real photos the decoder refuses, over every data set beside HAM10000 (each
    /// `images/` folder): the strict checks for damaged files must not cost real photos.
    fn real_photos_refused(ham: &std::path::Path) {
        let Some(root) = ham.parent() else { return };
        let mut sets: Vec<PathBuf> = std::fs::read_dir(root)
            .map(|d| d.filter_map(|e| e.ok().map(|e| e.path().join("images"))).filter(|p| p.is_dir()).collect())
            .unwrap_or_default();
        sets.sort();
        let (mut photos, mut refused) = (0usize, 0usize);
        let started = Instant::now();
        for dir in &sets {
            for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
                photos += 1;
                let bytes = std::fs::read(entry.path()).unwrap_or_default();
                if let Err(e) = dermscreen::preprocess::decode(&bytes) {
                    refused += 1;
                    eprintln!("bench: {}: {e}", entry.path().display());
                }
            }
        }
        let names: Vec<String> = sets.iter().filter_map(|p| p.parent()?.file_name()?.to_str().map(String::from)).collect();
        let extra = serde_json::json!({ "photos": photos, "data_sets": names, "seconds": started.elapsed().as_secs_f64() });
        emit("real_photos_refused_by_decode", "photos", refused as f64, extra);
    }
}
