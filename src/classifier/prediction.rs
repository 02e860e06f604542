//! One image's result: the probabilities of the training classes and inference nodes, the
//! flag and the call, and the row the CLI prints and the browser's event carries.

use crate::dataset::Kind;
use crate::gate::{Gate, Quality};
use serde::{Deserialize, Serialize};

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
