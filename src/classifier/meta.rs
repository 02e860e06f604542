//! `model.json`: everything needed to use the weights, and what was written about them.

use crate::calibration::Calibration;
use crate::context::ContextHead;
use crate::dataset::Kind;
use crate::gate::{GateConfig, LesionHead};
use crate::model::NetConfig;
use crate::preprocess::PreprocessConfig;
use serde::{Deserialize, Serialize};
use super::ClassifierError;

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
    /// Whether conv and linear weights are stored in f16 (the `half` of [`net_from_bytes`](super::net_from_bytes)).
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
    /// Layout version of this file ([`META_FORMAT`](super::META_FORMAT)).
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
