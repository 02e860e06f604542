//! The end of a run: the shipped artefacts and the validation written beside them.

use super::checkpoint::{write_json, RunPaths, TrainState};
use super::config::TrainConfig;
use super::data::RunData;
use super::Trainer;
use crate::classifier::{self, Classifier, ModelMeta, WeightsInfo, META_FORMAT};
use crate::dataset::Sample;
use crate::model::{Net, NetConfig};
use crate::report::{self, fmt_opt};
use crate::taxonomy::Taxonomy;
use anyhow::Result;
use burn::prelude::*;

/// The shipped artefacts: f16 weights and `model.json` with the high-risk threshold chosen on
/// validation, and `metrics.json` with validation scored through the shipped classifier (f16,
/// test-time flips, logit adjustment) beside the same classifier with f32 weights.
pub(super) fn ship(paths: &RunPaths, trainer: &Trainer, architecture: NetConfig, net: &Net, state: &TrainState) -> Result<()> {
    let (cfg, data, taxonomy) = (trainer.cfg, trainer.data, trainer.taxonomy);
    let weights = classifier::weights_to_bytes(net, true)?;
    let mut meta = ModelMeta {
        format: META_FORMAT,
        name: format!("dermscreen-resnet-{}px", cfg.input_size),
        architecture,
        preprocess: data.pre,
        training_classes: data.training_classes.clone(),
        max_class_size: data.max_class_size,
        taxonomy_version: taxonomy.version().to_string(),
        logit_adjustment: trainer.logit_adjustment.clone(),
        test_time_flips: true,
        high_risk_threshold: 0.5,
        weights: weights_info("model.bpk", &weights, "f16"),
        calibration: None,
        gate: None,
        domain: None,
        context: None,
    };
    let shipped = Classifier::from_parts(meta.clone(), weights.clone(), taxonomy.clone(), Device::flex())?;
    let probs = validation_probs(&shipped, &data.val_inputs)?;
    let (summary32, max_diff) = f32_validation(net, &meta, trainer, &probs)?;
    let summary = report::summarise(&data.training_classes, taxonomy, &data.val_labels, &probs)?;
    // What every shipped model carries: calibration, the flag's threshold on the calibrated
    // scale, and the gate, fitted on photos this run never trained on.
    let photos = crate::fit::export_photos(&cfg.data, &paths.file("val_labels.csv"))?;
    let (fitted, export) = crate::fit::fit_export(&shipped, &photos, cfg.target_sensitivity)?;
    fitted.apply(&mut meta);
    std::fs::write(paths.file("model.bpk"), &weights)?;
    write_json(&paths.file("model.json"), &meta)?;
    write_json(&paths.file("calibration.json"), &export)?;
    let by_source = validation_by_source(data, taxonomy, &probs)?;
    let metrics = serde_json::json!({
        "split": split_summary(cfg, data),
        "validation": summary,
        "validation_by_source": by_source,
        "high_risk_thresholds": export.high_risk_thresholds,
        "flag_by_source": export.flag_by_source,
        "f32_weights": {
            "max_abs_probability_difference_vs_f16": max_diff,
            "balanced_accuracy": summary32.balanced_accuracy,
            "auc_melanoma_vs_nevus": summary32.auc("melanoma_vs_nevus"),
            "auc_carcinoma_vs_keratosis": summary32.auc("carcinoma_vs_keratosis"),
            "auc_malignant_vs_benign": summary32.auc("malignant_vs_benign"),
        },
        "history": state.history,
    });
    write_json(&paths.file("metrics.json"), &metrics)?;
    eprintln!(
        "shipped-model validation (f16, test-time flips): balanced accuracy {:.3} (f32: {:.3}, max |p16 - p32| {:.1e}), AUC mel/nv {}, AUC kc/bkl {}; wrote {}",
        summary.balanced_accuracy,
        summary32.balanced_accuracy,
        max_diff,
        fmt_opt(summary.auc("melanoma_vs_nevus")),
        fmt_opt(summary.auc("carcinoma_vs_keratosis")),
        paths.0.display()
    );
    Ok(())
}

/// Validation through the same classifier with f32 weights, against the shipped f16 one's
/// probabilities `probs16`: its summary, and the largest difference in any probability.
fn f32_validation(net: &Net, meta: &ModelMeta, trainer: &Trainer, probs16: &[Vec<f32>]) -> Result<(report::Summary, f32)> {
    let (data, taxonomy) = (trainer.data, trainer.taxonomy);
    let f32_weights = classifier::weights_to_bytes(net, false)?;
    let mut meta32 = meta.clone();
    meta32.weights = weights_info("<f32 in memory>", &f32_weights, "f32");
    let full = Classifier::from_parts(meta32, f32_weights, taxonomy.clone(), Device::flex())?;
    let probs32 = validation_probs(&full, &data.val_inputs)?;
    let max_diff = probs16.iter().flatten().zip(probs32.iter().flatten()).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
    Ok((report::summarise(&data.training_classes, taxonomy, &data.val_labels, &probs32)?, max_diff))
}

/// How the photos were split: in `metrics.json`, and in `split.json` from the start of a run
/// (a timing run that never ships still says how many images an epoch has).
pub(super) fn split_summary(cfg: &TrainConfig, data: &RunData) -> serde_json::Value {
    serde_json::json!({
        "seed": cfg.split_seed(),
        "val_fraction": cfg.val_fraction,
        "train_images": data.train_items.len(),
        "val_images": data.val_labels.len(),
        "grouped_by": "lesion or patient, within each source",
    })
}

/// The validation summary of each source and each kind of photo (uncalibrated, class-balanced
/// probabilities, as during training).
fn validation_by_source(data: &RunData, taxonomy: &Taxonomy, probs: &[Vec<f32>]) -> Result<serde_json::Value> {
    let mut out = serde_json::Map::new();
    for (name, summary) in summaries_by(data, taxonomy, probs, |s| vec![s.source.clone(), s.kind.as_str().to_string()])? {
        out.insert(name, serde_json::to_value(summary)?);
    }
    Ok(serde_json::Value::Object(out))
}

/// The validation summary of each group of validation photos: `groups` names those a photo
/// belongs to (its source, say, and its kind). Groups come in the order they first appear.
pub(super) fn summaries_by(data: &RunData, taxonomy: &Taxonomy, probs: &[Vec<f32>], groups: impl Fn(&Sample) -> Vec<String>) -> Result<Vec<(String, report::Summary)>> {
    let mut members: Vec<(String, Vec<usize>)> = Vec::new();
    for (i, sample) in data.val_samples.iter().enumerate() {
        for name in groups(sample) {
            match members.iter_mut().find(|(g, _)| *g == name) {
                Some((_, at)) if at.last() == Some(&i) => {} // a source named like a kind: count the photo once
                Some((_, at)) => at.push(i),
                None => members.push((name, vec![i])),
            }
        }
    }
    members
        .into_iter()
        .map(|(name, at)| {
            let labels: Vec<usize> = at.iter().map(|&i| data.val_labels[i]).collect();
            let p: Vec<Vec<f32>> = at.iter().map(|&i| probs[i].clone()).collect();
            Ok((name, report::summarise(&data.training_classes, taxonomy, &labels, &p)?))
        })
        .collect()
}

fn weights_info(file: &str, bytes: &[u8], precision: &str) -> WeightsInfo {
    WeightsInfo {
        file: file.into(),
        bytes: bytes.len() as u64,
        sha256: classifier::sha256_hex(bytes),
        precision: precision.into(),
    }
}

/// Training-class probabilities of the validation inputs, as the classifier reports them.
fn validation_probs(classifier: &Classifier, inputs: &[f32]) -> Result<Vec<Vec<f32>>> {
    let per = classifier.meta().preprocess.input_len();
    let mut probs = Vec::new();
    for chunk in inputs.chunks(64 * per) {
        probs.extend(classifier.classify_inputs(chunk)?.iter().map(classifier::Prediction::class_probs));
    }
    Ok(probs)
}
