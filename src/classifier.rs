//! The shipped classifier: `model.json` + weights + taxonomy -> probabilities.
//!
//! Data flows one way: model input -> logits -> training-class probabilities ->
//! inference-node probabilities -> a [`Prediction`] (what the CLI and the UI show).

use crate::calibration::Calibration;
use crate::eval::argmax;
use crate::context::{Context, ContextHead};
use crate::dataset::Kind;
use crate::gate::{Gate, GateConfig, LesionHead, Quality};
use crate::model::{Net, NetConfig};
use crate::preprocess::{self, PreprocessConfig, PreprocessError};
use crate::saliency::{OcclusionConfig, Saliency};
use crate::taxonomy::{Taxonomy, TaxonomyError};
use burn::prelude::*;
use burn::store::{BurnpackStore, HalfPrecisionAdapter, ModuleSnapshot};
use burn::tensor::Bytes;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// Version of the `model.json` layout this build reads and writes.
pub const META_FORMAT: u32 = 1;

/// Occluded copies per forward pass when computing saliency: the batch of one photo's three
/// test-time views, plus a little, so saliency needs no more memory than classifying.
const OCCLUSION_CHUNK: usize = 4;

/// A cause that comes from another crate's error type (the weights store), kept for its chain.
type BoxedSource = Box<dyn std::error::Error + Send + Sync>;

/// Errors loading or running the classifier. Causes stay attached as sources; the CLI and the
/// browser turn the chain into one sentence.
#[derive(Debug, thiserror::Error)]
pub enum ClassifierError {
    #[error("{file}")]
    Read {
        file: String,
        #[source]
        source: std::io::Error,
    },
    #[error("model.json is not valid")]
    InvalidMeta(#[source] serde_json::Error),
    #[error("model.json: {0}")]
    Meta(String),
    #[error("weights file {file}: {message}")]
    Weights { file: String, message: String },
    #[error("weights file {file}: {what}")]
    Store {
        file: String,
        what: &'static str,
        #[source]
        source: BoxedSource,
    },
    #[error("taxonomy")]
    Taxonomy(#[from] TaxonomyError),
    #[error("input has {got} floats, expected a multiple of {per_image}")]
    InputSize { got: usize, per_image: usize },
    #[error("the network's output could not be read: {0}")]
    Logits(String),
}

/// What was written about the weights file, so a mismatched file is caught before use.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct WeightsInfo {
    /// File name, relative to `model.json`.
    pub file: String,
    /// Size in bytes.
    pub bytes: u64,
    /// Lower-case hex SHA-256 of the file.
    pub sha256: String,
    /// Storage precision of conv and linear weights ("f16" or "f32"); batch norm stays f32.
    pub precision: String,
}

impl WeightsInfo {
    /// Whether conv and linear weights are stored in f16 (the `half` of [`net_from_bytes`]).
    pub fn is_half(&self) -> Result<bool, ClassifierError> {
        match self.precision.as_str() {
            "f16" => Ok(true),
            "f32" => Ok(false),
            other => Err(ClassifierError::Meta(format!("unknown weights precision '{other}' (expected f16 or f32)"))),
        }
    }
}

/// Everything needed to use the weights: `model.json`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ModelMeta {
    /// Layout version of this file ([`META_FORMAT`]).
    pub format: u32,
    /// Model name and version, shown in the UI.
    pub name: String,
    /// Network architecture.
    pub architecture: NetConfig,
    /// Preprocessing the weights were trained with.
    pub preprocess: PreprocessConfig,
    /// Training classes, in logit order: taxonomy node ids.
    pub training_classes: Vec<String>,
    /// `maxClassSize` used by the partitioning algorithm.
    pub max_class_size: usize,
    /// Version of the taxonomy the classes refer to.
    pub taxonomy_version: String,
    /// Added to the logits before the softmax (logit adjustment, Menon et al. 2021): removes the
    /// class prior the network saw in training, so probabilities are balanced across classes.
    pub logit_adjustment: Vec<f32>,
    /// Average the prediction over horizontal and vertical flips.
    pub test_time_flips: bool,
    /// P(malignant) at or above which the UI says "see a dermatologist" (on the calibrated
    /// scale when `calibration` is present).
    pub high_risk_threshold: f32,
    /// The weights file.
    pub weights: WeightsInfo,
    /// Turns the class-balanced scores into probabilities for a stated population. Absent in
    /// an export that was not calibrated: its numbers are class-balanced scores.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub calibration: Option<Calibration>,
    /// The gate before any risk is shown. Absent: every photo passes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gate: Option<GateConfig>,
    /// Tells a dermoscopic photo from a plain camera photo, with the flag's threshold for each.
    /// Absent: no kind is reported and `high_risk_threshold` applies to every photo.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub domain: Option<DomainConfig>,
    /// How optional patient context (age, sex, site, the questions) moves the calibrated
    /// logits. Absent: context is not used.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub context: Option<ContextHead>,
}

/// The kind-of-photo head: a linear head on the embedding, like the gate's.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct DomainConfig {
    /// Log-odds that the photo was taken through a dermatoscope.
    pub head: LesionHead,
    /// P(malignant) at or above which a photo of each kind is flagged: chosen so that the same
    /// share of malignant validation photos of each kind is flagged.
    pub high_risk_thresholds: std::collections::BTreeMap<Kind, f32>,
}

impl DomainConfig {
    /// The kind an embedding looks like.
    pub fn kind(&self, embedding: &[f32]) -> Kind {
        if self.head.score(embedding) >= 0.0 { Kind::Dermoscopic } else { Kind::Clinical }
    }
}

impl ModelMeta {
    /// The flag's threshold for a photo of `kind` (the single threshold without a domain head).
    pub fn high_risk_threshold_for(&self, kind: Option<Kind>) -> f32 {
        match (&self.domain, kind) {
            (Some(d), Some(k)) => d.high_risk_thresholds.get(&k).copied().unwrap_or(self.high_risk_threshold),
            _ => self.high_risk_threshold,
        }
    }

    /// How many views of each photo the network sees: the photo, and with test-time flips its
    /// left-right and upside-down mirror images (in that order, views first in the batch).
    pub fn views(&self) -> usize {
        if self.test_time_flips { 3 } else { 1 }
    }

    /// Parses `model.json` (the one parser for the CLI and the browser).
    pub fn from_json(text: &[u8]) -> Result<Self, ClassifierError> {
        serde_json::from_slice(text).map_err(ClassifierError::InvalidMeta)
    }
}

/// One image's result, whatever the gate says (evaluation scores every image).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Prediction {
    /// Training-class probabilities (sum to 1), in `model.json` order.
    pub classes: Vec<ClassProb>,
    /// Inference-node probabilities (benign, malignant, second-level classes).
    pub nodes: Vec<ClassProb>,
    /// P(malignant), the screening number (calibrated when the model is).
    pub malignant: f32,
    /// Whether `malignant` reaches the model's high-risk threshold for this kind of photo.
    pub high_risk: bool,
    /// Whether the photo looks dermoscopic or like a plain camera photo (absent when the model
    /// has no domain head).
    pub domain: Option<Kind>,
    /// The patient-context fields that moved this result (empty: image only).
    pub context_used: Vec<String>,
    /// The class-balanced call: the training class the model would name if every diagnosis
    /// were equally common (the largest logit-adjusted logit). What balanced accuracy scores;
    /// the calibrated `classes` rank diagnoses as common as they are in the population.
    pub diagnosis: String,
    /// How much the photo looks like the skin spots the model knows (log-odds; higher = more);
    /// absent when the model has no gate.
    pub lesion_score: Option<f32>,
    /// Pixel measures of the model input.
    pub quality: Quality,
    /// `Ok`, or why no risk should be shown.
    pub gate: Gate,
}

/// One image's network outputs, averaged over the test-time views, and its pixel quality.
#[derive(Debug, Clone, PartialEq)]
pub struct Scores {
    /// Logit-adjusted (class-balanced) logits, one per training class.
    pub logits: Vec<f32>,
    /// The last hidden layer.
    pub embedding: Vec<f32>,
    pub quality: Quality,
}

/// A node id, its display name and probability.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ClassProb {
    pub id: String,
    pub name: String,
    pub probability: f32,
}

impl ClassProb {
    /// The name less the examples the taxonomy lists in brackets ("Benign keratosis-like
    /// lesion" for `bkl`), short enough for one line of text output.
    pub fn short_name(&self) -> &str {
        self.name.split_once(" (").map_or(self.name.as_str(), |(short, _)| short)
    }
}

/// Below this, the most likely training class is no more likely than the rest together: every
/// output then says the model is unsure (the page, the text line, `unsure` in CSV and JSON).
pub const UNSURE_BELOW: f32 = 0.5;

/// One image's result as `dermscreen classify --format json` prints it and the browser's
/// `dermscreen:result` event carries it: the image's name and path, the gate, then (only when
/// the gate is `ok`) the probabilities. A gated photo carries no risk number at all.
#[derive(Debug, Clone, Serialize)]
pub struct ImageResult<'a> {
    /// File name without folders or extension.
    pub image: String,
    /// The path (CLI) or file name (browser) as given.
    pub path: String,
    /// `ok`, or why no risk is given.
    pub gate: Gate,
    /// What is wrong and what to do, when gated.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gate_message: Option<&'static str>,
    /// See [`Prediction::lesion_score`].
    pub lesion_score: Option<f32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub malignant: Option<f32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub high_risk: Option<bool>,
    /// See [`Prediction::unsure`] (only when the gate is `ok`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unsure: Option<bool>,
    /// See [`Prediction::domain`] (only when the gate is `ok`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub domain: Option<Kind>,
    /// See [`Prediction::context_used`] (empty when gated: no result was moved).
    pub context_used: &'a [String],
    /// See [`Prediction::diagnosis`].
    #[serde(skip_serializing_if = "Option::is_none")]
    pub diagnosis: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub classes: Option<&'a [ClassProb]>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub nodes: Option<&'a [ClassProb]>,
    /// The prediction in full, for callers that need it whatever the gate (not serialised).
    #[serde(skip)]
    pub prediction: &'a Prediction,
}

impl<'a> ImageResult<'a> {
    /// The row for the image at `path`.
    pub fn new(path: impl Into<String>, p: &'a Prediction) -> Self {
        let path = path.into();
        let shown = p.gate == Gate::Ok;
        Self {
            image: image_stem(&path),
            path,
            gate: p.gate,
            gate_message: (!shown).then(|| p.gate.message()),
            lesion_score: p.lesion_score,
            malignant: shown.then_some(p.malignant),
            high_risk: shown.then_some(p.high_risk),
            unsure: shown.then(|| p.unsure()),
            domain: p.domain.filter(|_| shown),
            context_used: if shown { &p.context_used } else { &[] },
            diagnosis: shown.then_some(p.diagnosis.as_str()),
            classes: shown.then_some(&p.classes[..]),
            nodes: shown.then_some(&p.nodes[..]),
            prediction: p,
        }
    }
}

/// A file's name without folders or extension: how results name their image.
pub fn image_stem(path: &str) -> String {
    std::path::Path::new(path)
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default()
}

impl Prediction {
    /// Training-class probabilities in `model.json` order.
    pub fn class_probs(&self) -> Vec<f32> {
        self.classes.iter().map(|c| c.probability).collect()
    }

    /// Whether no training class reaches [`UNSURE_BELOW`].
    pub fn unsure(&self) -> bool {
        self.classes.iter().all(|c| c.probability < UNSURE_BELOW)
    }

    /// Training classes sorted by probability, most likely first.
    pub fn ranked(&self) -> Vec<&ClassProb> {
        let mut v: Vec<_> = self.classes.iter().collect();
        v.sort_by(|a, b| b.probability.total_cmp(&a.probability));
        v
    }
}

/// SHA-256 as lower-case hex.
pub fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes).iter().map(|b| format!("{b:02x}")).collect()
}

/// Saves weights as burnpack, conv/linear weights in f16 when `half` is set. Returns the bytes.
pub fn weights_to_bytes(net: &Net, half: bool) -> Result<Vec<u8>, ClassifierError> {
    let mut store = BurnpackStore::from_bytes(None);
    if half {
        store = store.with_to_adapter(HalfPrecisionAdapter::new());
    }
    let err = |source: BoxedSource| ClassifierError::Store { file: "<memory>".into(), what: "could not be written", source };
    net.save_into(&mut store).map_err(|e| err(e.into()))?;
    let bytes = store.get_bytes().map_err(|e| err(e.into()))?;
    Ok(bytes.to_vec())
}

/// Loads burnpack weights into a network of the given architecture, for inference; `half` when
/// conv and linear weights are stored in f16 (they are widened to f32 on load).
pub fn net_from_bytes(config: &NetConfig, bytes: Vec<u8>, half: bool, file: &str, device: &Device) -> Result<Net, ClassifierError> {
    // Freshly built modules are in training mode (batch-statistics batch norm, dropout on);
    // loaded weights are for inference.
    Ok(load_weights(config.init(device), bytes, half, file)?.valid())
}

/// `net` with the burnpack weights `bytes` (see [`net_from_bytes`]), on `net`'s device and in
/// its mode: the trainer starts from a shipped model this way.
pub fn load_weights(mut net: Net, bytes: Vec<u8>, half: bool, file: &str) -> Result<Net, ClassifierError> {
    let mut store = BurnpackStore::from_bytes(Some(Bytes::from_bytes_vec(bytes)));
    if half {
        // The adapter converts in whichever direction the stored dtype implies, so it must
        // only see f16 files.
        store = store.with_from_adapter(HalfPrecisionAdapter::new());
    }
    let err = |message: String| ClassifierError::Weights { file: file.to_string(), message };
    let result = net.load_from(&mut store).map_err(|e| ClassifierError::Store {
        file: file.to_string(),
        what: "does not match the architecture in model.json",
        source: e.into(),
    })?;
    if !result.errors.is_empty() || !result.missing.is_empty() || !result.unused.is_empty() {
        return Err(err(format!(
            "does not match the architecture in model.json ({} errors, {} missing, {} unexpected tensors; first: {})",
            result.errors.len(),
            result.missing.len(),
            result.unused.len(),
            result
                .errors
                .first()
                .map(|e| e.to_string())
                .or_else(|| result.missing.first().map(|m| format!("missing {}", m.0)))
                .or_else(|| result.unused.first().map(|u| format!("unexpected {u}")))
                .unwrap_or_default()
        )));
    }
    Ok(net)
}

/// Reads floats back from a tensor's data (any float dtype).
pub(crate) fn read_f32(data: TensorData) -> Result<Vec<f32>, ClassifierError> {
    data.convert::<f32>()
        .try_into_vec::<f32>()
        .map_err(|e| ClassifierError::Logits(format!("{e:?}")))
}

/// Numerically stable softmax.
pub fn softmax(logits: &[f32]) -> Vec<f32> {
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let exps: Vec<f32> = logits.iter().map(|&z| (z - max).exp()).collect();
    let sum: f32 = exps.iter().sum();
    exps.iter().map(|e| e / sum).collect()
}

/// A loaded, ready classifier.
#[derive(Debug)]
pub struct Classifier {
    net: Net,
    meta: ModelMeta,
    taxonomy: Taxonomy,
    nodes: Vec<String>,
    node_map: Vec<Vec<usize>>,
    malignant_map: Vec<usize>,
    device: Device,
}

impl Classifier {
    /// Checks `model.json` against the weights bytes (size, hash) and the taxonomy, then loads.
    pub fn from_parts(meta: ModelMeta, weights: Vec<u8>, taxonomy: Taxonomy, device: Device) -> Result<Self, ClassifierError> {
        if meta.format != META_FORMAT {
            return Err(ClassifierError::Meta(format!(
                "format {} is not supported by this build (reads format {META_FORMAT})",
                meta.format
            )));
        }
        if meta.taxonomy_version != taxonomy.version() {
            return Err(ClassifierError::Meta(format!(
                "trained against taxonomy version {}, but the taxonomy is version {}",
                meta.taxonomy_version,
                taxonomy.version()
            )));
        }
        let n = meta.training_classes.len();
        if meta.architecture.num_classes != n || meta.logit_adjustment.len() != n {
            return Err(ClassifierError::Meta(format!(
                "{} training classes but {} logits and {} logit adjustments",
                n,
                meta.architecture.num_classes,
                meta.logit_adjustment.len()
            )));
        }
        let file = meta.weights.file.clone();
        if weights.len() as u64 != meta.weights.bytes {
            return Err(ClassifierError::Weights {
                file,
                message: format!("{} bytes, but model.json expects {}", weights.len(), meta.weights.bytes),
            });
        }
        let hash = sha256_hex(&weights);
        if hash != meta.weights.sha256 {
            return Err(ClassifierError::Weights {
                file,
                message: format!("SHA-256 {hash} does not match model.json ({})", meta.weights.sha256),
            });
        }
        let nodes = taxonomy.default_inference_nodes(&meta.training_classes);
        let node_map = taxonomy.aggregation_map(&meta.training_classes, &nodes)?;
        let malignant_map = taxonomy
            .aggregation_map(&meta.training_classes, &["malignant".to_string()])?
            .remove(0);
        let half = meta.weights.is_half()?;
        let net = net_from_bytes(&meta.architecture, weights, half, &file, &device)?.fold_batch_norms();
        Ok(Self {
            net,
            meta,
            taxonomy,
            nodes,
            node_map,
            malignant_map,
            device,
        })
    }

    /// The shipped model, as `model/` held it when this program was built. Native programs carry
    /// it so that they run from any folder; the browser fetches its weights instead, to keep the
    /// wasm small.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn shipped(device: Device) -> Result<Self, ClassifierError> {
        const WEIGHTS: &str = "model.bpk";
        let meta = ModelMeta::from_json(include_bytes!("../model/model.json"))?;
        if meta.weights.file != WEIGHTS {
            return Err(ClassifierError::Meta(format!(
                "names weights {}, but programs are built with model/{WEIGHTS}",
                meta.weights.file
            )));
        }
        Self::from_parts(meta, include_bytes!("../model/model.bpk").to_vec(), Taxonomy::bundled(), device)
    }

    /// Loads `model.json` and its weights from a directory, with the bundled taxonomy.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn load_dir(dir: &std::path::Path, device: Device) -> Result<Self, ClassifierError> {
        let read = |p: &std::path::Path| {
            std::fs::read(p).map_err(|source| ClassifierError::Read { file: p.display().to_string(), source })
        };
        let mut meta = ModelMeta::from_json(&read(&dir.join("model.json"))?)?;
        let weights_path = dir.join(&meta.weights.file);
        let weights = read(&weights_path)?;
        meta.weights.file = weights_path.display().to_string();
        Self::from_parts(meta, weights, Taxonomy::bundled(), device)
    }

    /// The network, batch norms folded.
    #[cfg(feature = "onnx")]
    pub(crate) fn net(&self) -> &Net {
        &self.net
    }

    /// The model's metadata.
    pub fn meta(&self) -> &ModelMeta {
        &self.meta
    }

    /// The taxonomy in use.
    pub fn taxonomy(&self) -> &Taxonomy {
        &self.taxonomy
    }

    /// Inference nodes reported next to the training classes.
    pub fn inference_nodes(&self) -> &[String] {
        &self.nodes
    }

    /// Decodes an encoded image (JPEG, PNG, WebP; EXIF orientation applied) into one model
    /// input: `3 * s * s` floats, CHW.
    pub fn input_from_bytes(&self, bytes: &[u8]) -> Result<Vec<f32>, PreprocessError> {
        Ok(self.meta.preprocess.to_input(&preprocess::decode(bytes)?))
    }

    /// Turns an RGBA frame of `width` x `height` (a canvas's pixels) into one model input.
    pub fn input_from_rgba(&self, rgba: &[u8], width: u32, height: u32) -> Result<Vec<f32>, PreprocessError> {
        Ok(self.meta.preprocess.to_input(&preprocess::from_rgba(width, height, rgba)?))
    }

    /// Runs the network on `n` preprocessed inputs (`n * 3 * s * s` floats). Returns the logits
    /// and the last hidden layer side by side, `[views * n, classes + embedding]`, still on the
    /// device; the caller reads them back (synchronously natively, asynchronously in the
    /// browser) and hands them with the inputs to [`Self::predictions`].
    pub fn outputs(&self, inputs: &[f32]) -> Result<Tensor<2>, ClassifierError> {
        let (x, _) = self.input_tensor(inputs)?;
        Ok(self.net.forward_with_embedding(x))
    }

    /// Builds the input tensor for a batch of preprocessed images, adding flipped copies when
    /// test-time flips are on: `[views * n, 3, s, s]`, views first.
    fn input_tensor(&self, inputs: &[f32]) -> Result<(Tensor<4>, usize), ClassifierError> {
        let (x, n) = self.batch(inputs)?;
        let x = if self.meta.test_time_flips {
            Tensor::cat(vec![x.clone(), x.clone().flip([3]), x.flip([2])], 0)
        } else {
            x
        };
        Ok((x, n))
    }

    /// `n` preprocessed inputs as one tensor, `[n, 3, s, s]`, and `n`.
    fn batch(&self, inputs: &[f32]) -> Result<(Tensor<4>, usize), ClassifierError> {
        let per = self.meta.preprocess.input_len();
        if inputs.is_empty() || !inputs.len().is_multiple_of(per) {
            return Err(ClassifierError::InputSize { got: inputs.len(), per_image: per });
        }
        let n = inputs.len() / per;
        let s = self.meta.preprocess.input_size as usize;
        Ok((Tensor::<4>::from_data(TensorData::new(inputs.to_vec(), [n, 3, s, s]), &self.device), n))
    }

    /// The last hidden layer (global-average-pooled features of the photo as given, no flips)
    /// of `n` preprocessed inputs: `n` rows of the last stage's width. What the t-SNE shows.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn embeddings(&self, inputs: &[f32]) -> Result<Vec<Vec<f32>>, ClassifierError> {
        let (x, n) = self.batch(inputs)?;
        let flat = read_f32(self.net.embed(x).into_data())?;
        Ok(flat.chunks(flat.len() / n).map(<[f32]>::to_vec).collect())
    }

    /// Runs the network on one preprocessed input and its occluded copies (see
    /// [`crate::saliency`]): logits `[1 + windows, classes]`, the input's row first, still on the
    /// device. The caller reads them back and hands them to [`Self::saliency`]. The copies run
    /// a few at a time, so the peak memory is that of classifying one photo.
    pub fn occlusion_logits(&self, input: &[f32], grid: &OcclusionConfig) -> Result<Tensor<2>, ClassifierError> {
        let per = self.meta.preprocess.input_len();
        if input.len() != per {
            return Err(ClassifierError::InputSize { got: input.len(), per_image: per });
        }
        let all = grid.occluded_inputs(input, self.meta.preprocess.input_size as usize);
        let chunks = all
            .chunks(per * OCCLUSION_CHUNK)
            .map(|chunk| Ok(self.net.forward(self.batch(chunk)?.0)))
            .collect::<Result<Vec<_>, ClassifierError>>()?;
        Ok(Tensor::cat(chunks, 0))
    }

    /// Turns logits read back from [`Self::occlusion_logits`] into the map for the class-balanced
    /// call on the photo as given (one view).
    pub fn saliency(&self, logits: TensorData, grid: &OcclusionConfig) -> Result<Saliency, ClassifierError> {
        let logits = read_f32(logits)?;
        let k = self.meta.training_classes.len();
        // The class-balanced probabilities: the map shows the evidence for the diagnosis the
        // network leans to (`Prediction::diagnosis`), not how common that diagnosis is; under
        // the population's prior the top class of most photos is simply "nevus".
        let probs: Vec<Vec<f32>> = logits.chunks(k).map(|row| softmax(&self.adjusted(row))).collect();
        let base = &probs[0];
        let class = argmax(base);
        // The drop in log-probability is the rise in the loss whose gradient the paper draws;
        // it also counts a fall from 0.9 to 0.45 as much as one from 0.2 to 0.1.
        let log = |p: f32| p.max(1e-12).ln();
        let occluded: Vec<f32> = probs[1..].iter().map(|p| log(p[class])).collect();
        let size = self.meta.preprocess.input_size as usize;
        let id = &self.meta.training_classes[class];
        Ok(Saliency {
            class: id.clone(),
            name: self.display_name(id),
            probability: base[class],
            size,
            map: grid.map(size, log(base[class]), &occluded),
        })
    }

    /// Training-class probabilities for logit-adjusted logits: calibrated when the model is.
    pub fn probabilities(&self, z: &[f32]) -> Vec<f32> {
        match &self.meta.calibration {
            Some(c) => c.probabilities(z),
            None => softmax(z),
        }
    }

    /// Calibrated probabilities with `offsets` added to the calibrated logits (the context's shift).
    pub fn probabilities_with(&self, z: &[f32], offsets: &[f32]) -> Vec<f32> {
        let calibrated: Vec<f32> = match &self.meta.calibration {
            Some(c) => c.logits(z),
            None => z.to_vec(),
        };
        softmax(&calibrated.iter().zip(offsets).map(|(a, b)| a + b).collect::<Vec<_>>())
    }

    /// Logits with the model's logit adjustment added (what the softmax sees).
    fn adjusted(&self, row: &[f32]) -> Vec<f32> {
        row.iter().zip(&self.meta.logit_adjustment).map(|(z, a)| z + a).collect()
    }

    /// Where the network looked on one preprocessed input, synchronously.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn saliency_of(&self, input: &[f32], grid: &OcclusionConfig) -> Result<Saliency, ClassifierError> {
        self.saliency(self.occlusion_logits(input, grid)?.into_data(), grid)
    }

    /// Turns outputs read back from [`Self::outputs`] for `inputs` into one prediction per input:
    /// calibrated probabilities from the logits averaged over the views, the lesion score from
    /// the averaged embedding, pixel quality from the input, and the gate.
    pub fn predictions(&self, outputs: TensorData, inputs: &[f32]) -> Result<Vec<Prediction>, ClassifierError> {
        Ok(self.scores(outputs, inputs)?.iter().map(|s| self.prediction_from(s)).collect())
    }

    /// What [`Self::predictions`] is made from, before calibration and the gate (what the
    /// export fits them on).
    pub fn scores(&self, outputs: TensorData, inputs: &[f32]) -> Result<Vec<Scores>, ClassifierError> {
        let flat = read_f32(outputs)?;
        let per = self.meta.preprocess.input_len();
        let n = inputs.len() / per;
        let views = self.meta.views();
        let width = flat.len() / (views * n);
        let k = self.meta.training_classes.len();
        Ok((0..n)
            .map(|i| {
                let mut mean = vec![0.0f32; width];
                for v in 0..views {
                    let row = &flat[(v * n + i) * width..(v * n + i + 1) * width];
                    mean.iter_mut().zip(row).for_each(|(m, x)| *m += x / views as f32);
                }
                Scores {
                    logits: self.adjusted(&mean[..k]),
                    embedding: mean[k..].to_vec(),
                    quality: Quality::of_input(&inputs[i * per..(i + 1) * per], &self.meta.preprocess),
                }
            })
            .collect())
    }

    /// Scores synchronously (native): [`Self::outputs`] then [`Self::scores`].
    #[cfg(not(target_arch = "wasm32"))]
    pub fn scores_of(&self, inputs: &[f32]) -> Result<Vec<Scores>, ClassifierError> {
        self.scores(self.outputs(inputs)?.into_data(), inputs)
    }

    /// The prediction for one image's scores: calibrated probabilities aggregated to the
    /// inference nodes, the class-balanced call, then the gate.
    pub fn prediction_from(&self, s: &Scores) -> Prediction {
        self.prediction_with(s, &Context::default())
    }

    /// [`Self::prediction_from`] with the patient's context: with none given (or a model
    /// without a context head) the result is exactly the image-only one.
    pub fn prediction_with(&self, s: &Scores, context: &Context) -> Prediction {
        let (probs, context_used) = match (&self.meta.context, context.used().is_empty()) {
            (Some(head), false) => (self.probabilities_with(&s.logits, &head.offsets(context)), context.used().iter().map(|f| f.to_string()).collect()),
            _ => (self.probabilities(&s.logits), Vec::new()),
        };
        let class_prob = |id: &String, probability: f32| ClassProb { id: id.clone(), name: self.display_name(id), probability };
        let classes = self.meta.training_classes.iter().zip(&probs).map(|(id, &p)| class_prob(id, p)).collect();
        let nodes = self
            .nodes
            .iter()
            .zip(&self.node_map)
            .map(|(id, members)| class_prob(id, members.iter().map(|&k| probs[k]).sum()))
            .collect();
        let malignant: f32 = self.malignant_map.iter().map(|&k| probs[k]).sum();
        let lesion_score = self.meta.gate.as_ref().map(|g| g.head.score(&s.embedding));
        let gate = match (&self.meta.gate, lesion_score) {
            (Some(g), Some(score)) => g.decide(&s.quality, score),
            _ => Gate::Ok,
        };
        let domain = self.meta.domain.as_ref().map(|d| d.kind(&s.embedding));
        Prediction {
            classes,
            nodes,
            malignant,
            high_risk: malignant >= self.meta.high_risk_threshold_for(domain),
            domain,
            context_used,
            diagnosis: self.meta.training_classes[argmax(&s.logits)].clone(),
            lesion_score,
            quality: s.quality,
            gate,
        }
    }

    /// A taxonomy node's display name ("" for an id the taxonomy lacks, which loading rules out).
    fn display_name(&self, id: &str) -> String {
        self.taxonomy.node(id).map(|n| n.name.clone()).unwrap_or_default()
    }

    /// [`Self::classify_inputs`] with one patient context per input.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn classify_inputs_with(&self, inputs: &[f32], contexts: &[Context]) -> Result<Vec<Prediction>, ClassifierError> {
        Ok(self.scores_of(inputs)?.iter().zip(contexts).map(|(s, c)| self.prediction_with(s, c)).collect())
    }

    /// Classifies preprocessed inputs (`n * 3 * s * s` floats) synchronously.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn classify_inputs(&self, inputs: &[f32]) -> Result<Vec<Prediction>, ClassifierError> {
        self.predictions(self.outputs(inputs)?.into_data(), inputs)
    }
}
