//! The browser engine: the same classifier, compiled to wasm32 and driven from JavaScript.
//!
//! [`Engine`] runs on WebGPU (burn-wgpu) when the browser gives an adapter and on Burn's flex
//! CPU backend (SIMD128, one thread) otherwise. Everything that can fail returns a rejected
//! promise whose `Error.message` reads as a sentence; results are read back from the GPU only
//! asynchronously. The JSON a result carries is the CLI's `--format json` object.
//!
//! Built with `--cfg dermscreen_cpu_only` (the CPU-only engine of `./build.sh site`, a quarter of
//! the download), there is no WebGPU: `auto` runs on the CPU and `webgpu` rejects, as where a
//! browser has no adapter.

use crate::classifier::{Classifier, ClassifierError, ImageResult, ModelMeta, Prediction, UNSURE_BELOW};
use crate::context::{Context, FIELDS, SITES};
use crate::error_message;
use crate::preprocess::{self, PreprocessError};
use crate::saliency::{self, OcclusionConfig, Saliency, OVERLAY_SIDE};
use crate::synthetic::DrawnLesion;
use crate::taxonomy::Taxonomy;
use burn::prelude::*;
#[cfg(not(dermscreen_cpu_only))]
use burn::tensor::wgpu::WgpuBackend;
use serde::Serialize;
use std::cell::RefCell;
use std::rc::Rc;
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::future_to_promise;

/// Name of the global function the panic hook calls, so the JavaScript wrapper can reject the
/// promises a trap would otherwise leave pending forever.
const PANIC_CALLBACK: &str = "__dermscreenPanic";

#[wasm_bindgen(start)]
fn start() {
    run_static_constructors();
    std::panic::set_hook(Box::new(|info| {
        console_error_panic_hook::hook(info);
        let global = js_sys::global();
        if let Ok(f) = js_sys::Reflect::get(&global, &PANIC_CALLBACK.into()) {
            if let Some(f) = f.dyn_ref::<js_sys::Function>() {
                let _ = f.call1(&JsValue::NULL, &info.to_string().into());
            }
        }
    }));
}

/// Runs the module's static constructors, once.
///
/// CubeCL's IR (through `pliron`) registers its dialects with `inventory`, that is, with static
/// constructors. When nothing in a module calls `__wasm_call_ctors`, wasm-ld links it as a
/// "command" and wraps *every* export in a call to it. Every call from JavaScript into the
/// engine then re-ran all of them, and WebGPU work makes thousands of such calls per photo
/// (promise callbacks, externref-table slots for each GPU object): measured in Chromium, over
/// 90% of a WebGPU classification. One explicit call turns the wrappers off (see lld's
/// `Writer::createCommandExportWrappers`). Called from the start function and, because test
/// runners may skip that, when an engine opens.
fn run_static_constructors() {
    extern "C" {
        fn __wasm_call_ctors();
    }
    static ONCE: std::sync::Once = std::sync::Once::new();
    // SAFETY: a linker-synthesised function with no arguments; `Once` keeps it to one call, as
    // a reactor module expects.
    ONCE.call_once(|| unsafe { __wasm_call_ctors() });
}

static CONSTRUCTOR_RUNS: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);

extern "C" fn count_constructor_run() {
    CONSTRUCTOR_RUNS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
}

// A static constructor of our own, beside CubeCL's, so that the runs can be counted.
#[used]
#[link_section = ".init_array"]
static COUNT_CONSTRUCTOR_RUNS: extern "C" fn() = count_constructor_run;

/// How many times the module's static constructors have run: 1 once an engine is open. More
/// means wasm-ld wraps every export in them again (see `run_static_constructors`), which made
/// a WebGPU classification several times slower; the browser tests hold this to 1.
#[wasm_bindgen(js_name = staticConstructorRuns)]
pub fn static_constructor_runs() -> u32 {
    CONSTRUCTOR_RUNS.load(std::sync::atomic::Ordering::Relaxed)
}

thread_local! {
    // WebGPU can be initialised only once per page, so the outcome (device or reason) is kept.
    static WEBGPU: RefCell<Option<Result<Device, String>>> = const { RefCell::new(None) };
}

/// Why the engine could not load a model or classify an image.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("WebGPU unavailable: {0}")]
    WebGpuUnavailable(String),
    #[error("unknown backend '{0}' (expected auto, webgpu or cpu)")]
    UnknownBackend(String),
    #[error(transparent)]
    Classifier(#[from] ClassifierError),
    #[error(transparent)]
    Input(#[from] PreprocessError),
    #[error("reading the result back failed: {0}")]
    Readback(String),
}

/// The page's WebGPU device, initialised on first use; `Err` says why there is none.
async fn webgpu_device() -> Result<Device, String> {
    if let Some(known) = WEBGPU.with(|w| w.borrow().clone()) {
        return known;
    }
    #[cfg(not(dermscreen_cpu_only))]
    let result = Device::wgpu_options()
        .graphics_api(WgpuBackend::WebGpu)
        .init_async()
        .await
        .map_err(|e| e.to_string());
    #[cfg(dermscreen_cpu_only)]
    let result = Err("this copy of the engine is built for the CPU only".to_string());
    WEBGPU.with(|w| *w.borrow_mut() = Some(result.clone()));
    result
}

/// Which backend to run on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BackendChoice {
    /// WebGPU when an adapter is there, else the CPU.
    Auto,
    /// WebGPU or an error.
    WebGpu,
    /// The CPU backend.
    Cpu,
}

impl std::str::FromStr for BackendChoice {
    type Err = EngineError;

    /// Parses "auto" (or ""), "webgpu" or "cpu".
    fn from_str(s: &str) -> Result<Self, EngineError> {
        match s {
            "auto" | "" => Ok(Self::Auto),
            "webgpu" => Ok(Self::WebGpu),
            "cpu" => Ok(Self::Cpu),
            other => Err(EngineError::UnknownBackend(other.to_string())),
        }
    }
}

/// A node of the tree the UI draws: display name and parent, for the model's classes and nodes.
#[derive(Serialize)]
struct TreeNode {
    id: String,
    name: String,
    parent: Option<String>,
    training_class: bool,
}

/// What the UI needs to know about the loaded model.
#[derive(Serialize)]
struct ModelInfo<'a> {
    name: &'a str,
    input_size: u32,
    high_risk_threshold: f32,
    /// The flag's threshold for each kind of photo (`dermoscopic`, `clinical`), when the model
    /// tells them apart; a result's `domain` says which applied.
    high_risk_thresholds: Option<&'a std::collections::BTreeMap<crate::dataset::Kind, f32>>,
    /// Below this top probability a result is `unsure` ([`UNSURE_BELOW`]),
    /// so the page's note names the number the result used.
    unsure_below: f32,
    /// The patient-context fields the model uses, and the body sites `site` takes (empty when
    /// the model has no context head).
    context_fields: Vec<&'static str>,
    context_sites: Vec<&'static str>,
    /// Whom the percentages refer to (absent for an uncalibrated model).
    population: Option<&'a str>,
    taxonomy_version: &'a str,
    weights_bytes: u64,
    weights_sha256: &'a str,
    tree: Vec<TreeNode>,
}

/// A loaded classifier on its device. Clones share the same model.
#[wasm_bindgen]
#[derive(Clone)]
pub struct Engine {
    inner: Rc<Inner>,
}

struct Inner {
    /// What runs now: on WebGPU, until the browser takes the device away; then on the CPU.
    running: RefCell<Rc<Running>>,
    /// The weights, kept on WebGPU only, to load the model on the CPU then (its `model.json`
    /// is the running classifier's).
    weights: Option<Vec<u8>>,
}

/// The classifier on one backend.
struct Running {
    classifier: Classifier,
    backend: &'static str,
    fallback_reason: Option<String>,
}

/// A failed readback as a short cause: the error's last own words ("Destroyed: Device was
/// destroyed."), without the chain of "Caused by" headings and the empty backtrace around them.
fn readback_error(e: impl std::fmt::Debug) -> EngineError {
    let text = format!("{e:?}");
    let cause = text
        .lines()
        .map(str::trim)
        .take_while(|l| !l.starts_with("Backtrace"))
        .filter(|l| !l.is_empty() && *l != "Caused by:")
        .last()
        .unwrap_or("no reason given");
    EngineError::Readback(cause.trim_end_matches('.').to_string())
}

/// Where errors become sentences: a rejected promise's `Error.message` is the error's own
/// sentence; its causes (a decoder's or parser's words) go to the console for developers.
fn js_err(e: impl std::error::Error) -> JsValue {
    if e.source().is_some() {
        web_sys::console::warn_1(&error_message(&e).into());
    }
    JsError::new(&e.to_string()).into()
}

fn to_js<T: Serialize>(value: &T) -> Result<JsValue, JsValue> {
    value
        .serialize(&serde_wasm_bindgen::Serializer::json_compatible())
        .map_err(js_err)
}

/// A patient context from JavaScript: an object with any of `age`, `sex`, `site`, `grew`,
/// `changed`, `bled`, `itched`, `hurt`, `elevated` as strings (empty or absent = not given; the
/// values `classify --context` takes); undefined or null = none.
fn context_from_js(fields: JsValue) -> Result<Context, JsValue> {
    if fields.is_undefined() || fields.is_null() {
        return Ok(Context::default());
    }
    let fields: std::collections::BTreeMap<String, String> = serde_wasm_bindgen::from_value(fields).map_err(js_err)?;
    Context::from_pairs(fields.iter().map(|(k, v)| (k.as_str(), v.as_str()))).map_err(js_err)
}

/// Rust-side API (also what the wasm-bindgen tests call).
impl Engine {
    /// Checks `model.json` against the weights (size, SHA-256, taxonomy) and loads them on the
    /// chosen backend.
    pub async fn open(model_json: &str, weights: Vec<u8>, choice: BackendChoice) -> Result<Engine, EngineError> {
        run_static_constructors();
        let meta = ModelMeta::from_json(model_json.as_bytes())?;
        let (device, backend, fallback_reason) = match choice {
            BackendChoice::Cpu => (Device::flex(), "cpu", None),
            BackendChoice::WebGpu => (webgpu_device().await.map_err(EngineError::WebGpuUnavailable)?, "webgpu", None),
            BackendChoice::Auto => match webgpu_device().await {
                Ok(d) => (d, "webgpu", None),
                Err(reason) => (Device::flex(), "cpu", Some(EngineError::WebGpuUnavailable(reason).to_string())),
            },
        };
        let kept = (backend == "webgpu").then(|| weights.clone());
        let classifier = Classifier::from_parts(meta, weights, Taxonomy::bundled(), device)?;
        let running = Running { classifier, backend, fallback_reason };
        Ok(Engine {
            inner: Rc::new(Inner { running: RefCell::new(Rc::new(running)), weights: kept }),
        })
    }

    /// The backend in use: "webgpu", or "cpu" (from the start, or since WebGPU stopped working).
    pub fn backend_name(&self) -> &'static str {
        self.running().backend
    }

    /// What runs now. A clone of the `Rc`, not a borrow: a switch to the CPU during another
    /// photo's await must not find the cell borrowed.
    fn running(&self) -> Rc<Running> {
        self.inner.running.borrow().clone()
    }

    /// Runs `work` on the current backend. When WebGPU fails in it (the browser took the device
    /// back: the GPU process restarted, a phone reclaimed memory), the model is loaded on the
    /// CPU, which takes over for good, and `work` runs again there; so the photo is still
    /// checked, and the next ones too, where every call would otherwise fail until a reload.
    async fn on_backend<T, F, Fut>(&self, work: F) -> Result<T, EngineError>
    where
        F: Fn(Rc<Running>) -> Fut,
        Fut: std::future::Future<Output = Result<T, EngineError>>,
    {
        let running = self.running();
        match work(running.clone()).await {
            Err(EngineError::Readback(cause)) if running.backend == "webgpu" => work(self.switch_to_cpu(&running, &cause)?).await,
            done => done,
        }
    }

    /// Loads the model on the CPU in place of `failed` (unless another call has already), and
    /// makes later engines on this page start there too: the lost device cannot be made again.
    fn switch_to_cpu(&self, failed: &Rc<Running>, cause: &str) -> Result<Rc<Running>, EngineError> {
        WEBGPU.with(|w| *w.borrow_mut() = Some(Err(format!("it stopped working on this page ({cause})"))));
        let current = self.running();
        if !Rc::ptr_eq(&current, failed) {
            return Ok(current);
        }
        let Some(weights) = self.inner.weights.clone() else {
            return Err(EngineError::Readback(cause.to_string()));
        };
        let reason = format!("WebGPU stopped working ({cause}), so the processor checks the photos from now on");
        let meta = failed.classifier.meta().clone();
        let classifier = Classifier::from_parts(meta, weights, Taxonomy::bundled(), Device::flex())?;
        let cpu = Rc::new(Running { classifier, backend: "cpu", fallback_reason: Some(reason) });
        *self.inner.running.borrow_mut() = cpu.clone();
        Ok(cpu)
    }

    /// Runs the network on preprocessed inputs and reads the logits back asynchronously (the
    /// only readback WebGPU allows), judging each with the patient `context` (the default: none,
    /// image only). The context is an argument, not engine state, because one loaded engine
    /// serves every element on a page.
    pub async fn predict_inputs(&self, inputs: &[f32], context: &Context) -> Result<Vec<Prediction>, EngineError> {
        self.on_backend(|running| async move {
            let c = &running.classifier;
            let data = c.outputs(inputs)?.into_data_async().await.map_err(readback_error)?;
            Ok(c.scores(data, inputs)?.iter().map(|s| c.prediction_with(s, context)).collect())
        })
        .await
    }

    /// Decodes an image file (JPEG, PNG, WebP; EXIF orientation applied) and classifies it.
    pub async fn predict_file(&self, bytes: &[u8], context: &Context) -> Result<Prediction, EngineError> {
        let input = self.running().classifier.input_from_bytes(bytes)?;
        self.predict_one(&input, context).await
    }

    /// Classifies an RGBA frame (a canvas's `ImageData`).
    pub async fn predict_rgba(&self, rgba: &[u8], width: u32, height: u32, context: &Context) -> Result<Prediction, EngineError> {
        let input = self.running().classifier.input_from_rgba(rgba, width, height)?;
        self.predict_one(&input, context).await
    }

    async fn predict_one(&self, input: &[f32], context: &Context) -> Result<Prediction, EngineError> {
        let mut out = self.predict_inputs(input, context).await?;
        Ok(out.remove(0))
    }

    /// Where the network looked on an image, on an occlusion `grid` (the page and the CLI use
    /// the default one), read back asynchronously.
    pub async fn saliency_of(&self, img: &image::RgbImage, grid: &OcclusionConfig) -> Result<Saliency, EngineError> {
        self.on_backend(|running| async move {
            let c = &running.classifier;
            let input = c.meta().preprocess.to_input(img);
            let data = c.occlusion_logits(&input, grid)?.into_data_async().await.map_err(readback_error)?;
            Ok(c.saliency(data, grid)?)
        })
        .await
    }

    /// The map for `img` as JavaScript gets it: the [`Saliency`] fields, `map` as a
    /// Float32Array, `overlay` (the photo's centre square with the map over it, RGBA, ready for
    /// `ImageData`) with its `overlaySide`, `ramp` (CSS colours for the legend) and `ms`.
    async fn saliency_js(&self, img: image::RgbImage) -> Result<JsValue, JsValue> {
        let t0 = js_sys::Date::now();
        let s = self.saliency_of(&img, &OcclusionConfig::default()).await.map_err(js_err)?;
        let rgba: Vec<u8> = saliency::overlay(&img, &s, OVERLAY_SIDE)
            .pixels()
            .flat_map(|p| [p[0], p[1], p[2], 255])
            .collect();
        let out = to_js(&SaliencyInfo {
            class: &s.class,
            name: &s.name,
            probability: s.probability,
            size: s.size,
            overlay_side: OVERLAY_SIDE,
            ramp: saliency::ramp_css(8),
            ms: js_sys::Date::now() - t0,
        })?;
        js_sys::Reflect::set(&out, &"map".into(), &js_sys::Float32Array::from(&s.map[..]))?;
        js_sys::Reflect::set(&out, &"overlay".into(), &js_sys::Uint8ClampedArray::from(&rgba[..]))?;
        Ok(out)
    }
}

/// The plain fields of a saliency result for JavaScript (the arrays are added as typed arrays).
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct SaliencyInfo<'a> {
    class: &'a str,
    name: &'a str,
    probability: f32,
    size: usize,
    overlay_side: u32,
    ramp: Vec<String>,
    ms: f64,
}

/// JavaScript API.
#[wasm_bindgen]
impl Engine {
    /// Loads a model. `backend` is "auto" (WebGPU, else CPU), "webgpu" or "cpu". Rejects with a
    /// readable message when `model.json` and the weights do not match or no backend works.
    #[wasm_bindgen(js_name = load)]
    pub async fn load_js(model_json: String, weights: Vec<u8>, backend: String) -> Result<Engine, JsValue> {
        let choice: BackendChoice = backend.parse().map_err(js_err)?;
        Engine::open(&model_json, weights, choice).await.map_err(js_err)
    }

    /// "webgpu" or "cpu".
    #[wasm_bindgen(getter)]
    pub fn backend(&self) -> String {
        self.backend_name().to_string()
    }

    /// Why WebGPU is not used, if it is not: under "auto", or since it stopped working.
    #[wasm_bindgen(getter, js_name = fallbackReason)]
    pub fn fallback_reason(&self) -> Option<String> {
        self.running().fallback_reason.clone()
    }

    /// Checks a patient context as `classifyFile` and `classifyRgba` take it and returns the
    /// fields it would use; a value it does not accept throws an error naming the field.
    #[wasm_bindgen(js_name = checkContext)]
    pub fn check_context_js(&self, fields: JsValue) -> Result<JsValue, JsValue> {
        to_js(&context_from_js(fields)?.used())
    }

    /// What the network sees for an encoded image: `3 * s * s` normalised floats, CHW (the
    /// bench feeds them to onnxruntime to check that it gives the same probabilities).
    #[wasm_bindgen(js_name = inputFile)]
    pub fn input_file(&self, bytes: Vec<u8>) -> Result<Vec<f32>, JsValue> {
        self.running().classifier.input_from_bytes(&bytes).map_err(|e| js_err(EngineError::from(e)))
    }

    /// Model name, high-risk threshold, input size and the taxonomy nodes the results refer to.
    #[wasm_bindgen(js_name = modelInfo)]
    pub fn model_info(&self) -> Result<JsValue, JsValue> {
        let running = self.running();
        let c = &running.classifier;
        let meta = c.meta();
        let tax = c.taxonomy();
        let tree = c
            .inference_nodes()
            .iter()
            .map(|id| (id, false))
            .chain(meta.training_classes.iter().map(|id| (id, true)))
            .filter_map(|(id, training_class)| {
                tax.node(id).ok().map(|n| TreeNode {
                    id: n.id.clone(),
                    name: n.name.clone(),
                    parent: n.parent.clone(),
                    training_class,
                })
            })
            .collect();
        to_js(&ModelInfo {
            name: &meta.name,
            input_size: meta.preprocess.input_size,
            high_risk_threshold: meta.high_risk_threshold,
            high_risk_thresholds: meta.domain.as_ref().map(|d| &d.high_risk_thresholds),
            unsure_below: UNSURE_BELOW,
            context_fields: if meta.context.is_some() { FIELDS.to_vec() } else { Vec::new() },
            context_sites: if meta.context.is_some() { SITES.to_vec() } else { Vec::new() },
            population: meta.calibration.as_ref().map(|c| c.population.as_str()),
            taxonomy_version: &meta.taxonomy_version,
            weights_bytes: meta.weights.bytes,
            weights_sha256: &meta.weights.sha256,
            tree,
        })
    }

    /// Runs the network once on a drawn lesion, so that shaders compile and buffers are
    /// allocated before the first photo. Resolves to the time it took in milliseconds; a second
    /// call measures the steady per-photo time (how `auto` compares backends). The input is
    /// photo-like on purpose: an all-zero input ran three times faster than a photo on the CPU
    /// path, so it would neither warm up nor measure what a photo costs.
    #[wasm_bindgen(js_name = warmUp)]
    pub fn warm_up(&self) -> js_sys::Promise {
        let engine = self.clone();
        future_to_promise(async move {
            let t0 = js_sys::Date::now();
            let input = engine.running().classifier.meta().preprocess.to_input(&DrawnLesion::default().image());
            engine.predict_inputs(&input, &Context::default()).await.map_err(js_err)?;
            Ok((js_sys::Date::now() - t0).into())
        })
    }

    /// Classifies an image file's bytes with an optional patient `context` (see
    /// `checkContext`; undefined = none). Resolves to the CLI's JSON object for it (`image` is
    /// `name` without its extension, `path` is `name`).
    #[wasm_bindgen(js_name = classifyFile)]
    pub fn classify_file(&self, bytes: Vec<u8>, name: String, context: JsValue) -> js_sys::Promise {
        let engine = self.clone();
        future_to_promise(async move {
            let context = context_from_js(context)?;
            let p = engine.predict_file(&bytes, &context).await.map_err(js_err)?;
            to_js(&ImageResult::new(name, &p))
        })
    }

    /// Where the network looked on an image file: resolves to { class, name, probability,
    /// size, map (Float32Array, size * size), overlay (RGBA, overlaySide squared), overlaySide,
    /// ramp, ms }. Occlusion runs the network 50 times, about the work of 17 classifications,
    /// so call it only when asked.
    #[wasm_bindgen(js_name = saliencyFile)]
    pub fn saliency_file(&self, bytes: Vec<u8>) -> js_sys::Promise {
        let engine = self.clone();
        future_to_promise(async move {
            let img = preprocess::decode(&bytes).map_err(js_err)?;
            engine.saliency_js(img).await
        })
    }

    /// [`Self::saliency_file`] for an RGBA frame of `width` x `height`.
    #[wasm_bindgen(js_name = saliencyRgba)]
    pub fn saliency_rgba(&self, rgba: Vec<u8>, width: u32, height: u32) -> js_sys::Promise {
        let engine = self.clone();
        future_to_promise(async move {
            let img = preprocess::from_rgba(width, height, &rgba).map_err(js_err)?;
            engine.saliency_js(img).await
        })
    }

    /// Classifies an RGBA frame of `width` x `height` (a canvas's `ImageData.data`), as
    /// `classifyFile` does.
    #[wasm_bindgen(js_name = classifyRgba)]
    pub fn classify_rgba(&self, rgba: Vec<u8>, width: u32, height: u32, name: String, context: JsValue) -> js_sys::Promise {
        let engine = self.clone();
        future_to_promise(async move {
            let context = context_from_js(context)?;
            let p = engine.predict_rgba(&rgba, width, height, &context).await.map_err(js_err)?;
            to_js(&ImageResult::new(name, &p))
        })
    }
}
