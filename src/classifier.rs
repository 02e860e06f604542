//! The shipped classifier: `model.json` + weights + taxonomy -> probabilities.
//!
//! Data flows one way: model input -> logits -> training-class probabilities ->
//! inference-node probabilities -> a [`Prediction`] (what the CLI and the UI show).
//! `meta` holds `model.json`'s layout, `prediction` one image's result, `weights` the weights
//! file's bytes.

use crate::eval::argmax;
use crate::context::Context;
use crate::gate::{Gate, Quality};
use crate::model::Net;
use crate::preprocess::{self, PreprocessError};
use crate::saliency::{OcclusionConfig, Saliency};
use crate::taxonomy::{Taxonomy, TaxonomyError};
use burn::prelude::*;

mod meta;
mod prediction;
mod weights;

pub use meta::{DomainConfig, ModelMeta, WeightsInfo};
pub use prediction::{ClassProb, image_stem, ImageResult, Prediction, Scores, UNSURE_BELOW};
pub use weights::{load_weights, net_from_bytes, sha256_hex, weights_to_bytes};

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
