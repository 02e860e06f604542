//! Fitting what every shipped model carries besides its weights (feature `train`): the
//! calibration of its probabilities and the gate's "is it a skin spot" head, with the
//! measurements that justify them. `dermscreen calibrate` runs it on a model folder and the
//! trainer's export runs it on the model it ships.
//!
//! Both fits minimise a convex, smooth loss with L-BFGS (argmin). Reported figures are
//! out-of-fold: each half of the data (split by lesion or patient) is scored by a fit on the
//! other half; the shipped parameters are then fitted on all of it.
//!
//! Here the fits themselves; `export` runs them on a model's validation photos and the photos
//! that are not skin spots, with the kind-of-photo head and the thresholds per kind.

use crate::calibration::{binary_outcomes, ece, reliability, Calibration, ReliabilityBin};
use crate::dataset::fnv1a;
use crate::eval::{argmax, auc as roc_auc};
use crate::gate::{GateConfig, LesionHead, MAX_CLIPPED, MIN_COLOUR, MIN_LUMINANCE, MIN_REDNESS, MIN_SHARPNESS, MIN_SPOT, MIN_SPOT_CONTRAST};
use argmin::core::{CostFunction, Error, Executor, Gradient, State};
use argmin::solver::linesearch::MoreThuenteLineSearch;
use argmin::solver::quasinewton::LBFGS;
use serde::Serialize;

mod export;

pub use export::{export_photos, fit_export, ood_photos, ExportReport, Fitted, LabelledPhoto, POPULATION};

/// The most lesion photos of any one source the lesion-score threshold may gate (out of fold).
pub const MAX_GATED_PER_SOURCE: f64 = 0.02;
/// L2 weight of the lesion head (on standardised features) and of the calibration bias.
const L2: f64 = 1e-3;

/// A smooth loss that computes its value and gradient together.
pub(crate) trait Smooth {
    fn eval(&self, p: &[f64]) -> (f64, Vec<f64>);
}

/// A [`Smooth`] loss as argmin sees it.
struct Objective<L>(L);

impl<L: Smooth> CostFunction for Objective<L> {
    type Param = Vec<f64>;
    type Output = f64;
    fn cost(&self, p: &Vec<f64>) -> Result<f64, Error> {
        Ok(self.0.eval(p).0)
    }
}

impl<L: Smooth> Gradient for Objective<L> {
    type Param = Vec<f64>;
    type Gradient = Vec<f64>;
    fn gradient(&self, p: &Vec<f64>) -> Result<Vec<f64>, Error> {
        Ok(self.0.eval(p).1)
    }
}

/// Minimises `loss` from `init` with L-BFGS; returns the best parameters found.
pub(crate) fn minimise(loss: impl Smooth, init: Vec<f64>) -> Vec<f64> {
    let solver = LBFGS::new(MoreThuenteLineSearch::new(), 10);
    let run = Executor::new(Objective(loss), solver).configure(|s| s.param(init.clone()).max_iters(500)).run();
    match run {
        Ok(r) => r.state().get_best_param().cloned().unwrap_or(init),
        Err(_) => init,
    }
}

/// Negative log-likelihood of `softmax(scale * z + bias)` for the labels, plus a small L2 on
/// the bias (the softmax ignores a shift common to all classes, so without it the optimum is
/// not unique). Parameters: `[scale, bias...]`.
struct CalibrationLoss<'a> {
    z: &'a [Vec<f32>],
    labels: &'a [usize],
}

impl Smooth for CalibrationLoss<'_> {
    fn eval(&self, p: &[f64]) -> (f64, Vec<f64>) {
        let k = p.len() - 1;
        let mut loss = 0.0;
        let mut grad = vec![0.0; k + 1];
        for (z, &y) in self.z.iter().zip(self.labels) {
            let s: Vec<f64> = (0..k).map(|j| p[0] * f64::from(z[j]) + p[1 + j]).collect();
            let max = s.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            let lse = max + s.iter().map(|v| (v - max).exp()).sum::<f64>().ln();
            loss += lse - s[y];
            for j in 0..k {
                let q = (s[j] - lse).exp() - f64::from(u8::from(j == y));
                grad[0] += q * f64::from(z[j]);
                grad[1 + j] += q;
            }
        }
        let n = self.z.len() as f64;
        loss /= n;
        grad.iter_mut().for_each(|g| *g /= n);
        for j in 0..k {
            loss += 0.5 * L2 * p[1 + j] * p[1 + j];
            grad[1 + j] += L2 * p[1 + j];
        }
        (loss, grad)
    }
}

/// Fits `scale` and `bias` on averaged, logit-adjusted logits `z` (one row per image) and
/// their training-class labels.
pub fn fit_calibration(z: &[Vec<f32>], labels: &[usize], population: &str) -> Calibration {
    let k = z.first().map_or(0, Vec::len);
    let mut init = vec![0.0; k + 1];
    init[0] = 1.0;
    let p = minimise(CalibrationLoss { z, labels }, init);
    Calibration {
        scale: p[0] as f32,
        bias: p[1..].iter().map(|&b| b as f32).collect(),
        population: population.to_string(),
    }
}

/// Weighted logistic loss of `w . x + b` on standardised features, plus L2 on `w`.
/// Parameters: `[w..., b]`.
struct HeadLoss<'a> {
    x: &'a [Vec<f32>],
    y: &'a [bool],
    weight: &'a [f64],
}

impl Smooth for HeadLoss<'_> {
    fn eval(&self, p: &[f64]) -> (f64, Vec<f64>) {
        let d = p.len() - 1;
        let total: f64 = self.weight.iter().sum();
        let mut loss = 0.0;
        let mut grad = vec![0.0; d + 1];
        for ((x, &y), &w) in self.x.iter().zip(self.y).zip(self.weight) {
            let t = p[d] + x.iter().zip(p).map(|(&a, &b)| f64::from(a) * b).sum::<f64>();
            let sign = if y { 1.0 } else { -1.0 };
            // log(1 + exp(-sign * t)), stably.
            let m = -sign * t;
            loss += w * (m.max(0.0) + (-m.abs()).exp().ln_1p());
            let dt = -sign / (1.0 + (sign * t).exp()) * w;
            for (g, &a) in grad.iter_mut().zip(x) {
                *g += dt * f64::from(a);
            }
            grad[d] += dt;
        }
        loss /= total;
        grad.iter_mut().for_each(|g| *g /= total);
        for j in 0..d {
            loss += 0.5 * L2 * p[j] * p[j];
            grad[j] += L2 * p[j];
        }
        (loss, grad)
    }
}

/// A photo for the gate's fit: its embedding, whether it shows a skin spot, and the source
/// or kind it belongs to (each source weighs the same in the fit).
pub struct GatePhoto {
    pub embedding: Vec<f32>,
    pub lesion: bool,
    pub source: String,
}

/// Fits the lesion head on `photos`, each source weighted equally within its side and the two
/// sides equally.
pub fn fit_head(photos: &[&GatePhoto]) -> LesionHead {
    let d = photos[0].embedding.len();
    let n = photos.len() as f32;
    let mean: Vec<f32> = (0..d).map(|j| photos.iter().map(|p| p.embedding[j]).sum::<f32>() / n).collect();
    let scale: Vec<f32> = (0..d)
        .map(|j| {
            let var = photos.iter().map(|p| (p.embedding[j] - mean[j]).powi(2)).sum::<f32>() / n;
            var.sqrt().max(1e-6)
        })
        .collect();
    let x: Vec<Vec<f32>> = photos
        .iter()
        .map(|p| p.embedding.iter().zip(&mean).zip(&scale).map(|((e, m), s)| (e - m) / s).collect())
        .collect();
    let y: Vec<bool> = photos.iter().map(|p| p.lesion).collect();
    let mut counts = std::collections::HashMap::new();
    for p in photos {
        *counts.entry((p.lesion, p.source.as_str())).or_insert(0usize) += 1;
    }
    let sources_per_side = |side: bool| counts.keys().filter(|(l, _)| *l == side).count() as f64;
    let weight: Vec<f64> = photos
        .iter()
        .map(|p| 1.0 / (counts[&(p.lesion, p.source.as_str())] as f64 * sources_per_side(p.lesion)))
        .collect();
    let p = minimise(HeadLoss { x: &x, y: &y, weight: &weight }, vec![0.0; d + 1]);
    LesionHead { mean, scale, weights: p[..d].iter().map(|&w| w as f32).collect(), bias: p[d] as f32 }
}

/// Which of two folds a group (lesion, patient) falls in: a stable hash, so that a group's
/// photos never straddle folds.
pub fn fold_of(group: &str) -> usize {
    (fnv1a(group) >> 17) as usize % 2
}

/// Out-of-fold lesion scores: each photo scored by the head fitted on the other fold.
pub fn out_of_fold_scores(photos: &[GatePhoto], folds: &[usize]) -> Vec<f32> {
    let mut scores = vec![0.0; photos.len()];
    for f in 0..2 {
        let train: Vec<&GatePhoto> = photos.iter().zip(folds).filter(|(_, &g)| g != f).map(|(p, _)| p).collect();
        let head = fit_head(&train);
        for (i, p) in photos.iter().enumerate() {
            if folds[i] == f {
                scores[i] = head.score(&p.embedding);
            }
        }
    }
    scores
}

/// The `q` quantile of `v` (nearest rank).
fn quantile(v: &[f32], q: f64) -> f32 {
    let mut s = v.to_vec();
    s.sort_by(f32::total_cmp);
    s[((q * s.len() as f64).floor() as usize).min(s.len() - 1)]
}

/// How the gate did on one source or kind, out of fold.
#[derive(Debug, Clone, Serialize)]
pub struct GateRow {
    pub source: String,
    pub lesion: bool,
    pub photos: usize,
    /// AUROC of the lesion score against all non-lesion photos (lesion sources only).
    pub auroc_vs_non_lesion: Option<f64>,
    /// Share turned away by the lesion score at the shipped threshold.
    pub gated_by_lesion_score: f64,
}

/// What [`fit_gate`] measured.
#[derive(Debug, Clone, Serialize)]
pub struct GateReport {
    pub auroc: f64,
    pub threshold: f32,
    pub rows: Vec<GateRow>,
}

/// Fits the gate: the head on every photo, the threshold as the lowest per-source
/// [`MAX_GATED_PER_SOURCE`] quantile of out-of-fold lesion scores, the quality limits above.
pub fn fit_gate(photos: &[GatePhoto], groups: &[String]) -> (GateConfig, GateReport) {
    let folds: Vec<usize> = groups.iter().map(|g| fold_of(g)).collect();
    let oof = out_of_fold_scores(photos, &folds);
    let mut sources: Vec<(bool, String)> = photos.iter().map(|p| (p.lesion, p.source.clone())).collect();
    sources.sort();
    sources.dedup();
    let of = |lesion: bool, source: &str| -> Vec<f32> {
        photos.iter().zip(&oof).filter(|(p, _)| p.lesion == lesion && p.source == source).map(|(_, &s)| s).collect()
    };
    let threshold = sources
        .iter()
        .filter(|(l, _)| *l)
        .map(|(_, s)| quantile(&of(true, s), MAX_GATED_PER_SOURCE))
        .fold(f32::INFINITY, f32::min);
    let negatives: Vec<f32> = photos.iter().zip(&oof).filter(|(p, _)| !p.lesion).map(|(_, &s)| s).collect();
    let auc = |pos: &[f32]| {
        let scores: Vec<f64> = pos.iter().chain(&negatives).map(|&s| f64::from(s)).collect();
        let labels: Vec<bool> = pos.iter().map(|_| true).chain(negatives.iter().map(|_| false)).collect();
        roc_auc(&scores, &labels).unwrap_or(f64::NAN)
    };
    let positives: Vec<f32> = photos.iter().zip(&oof).filter(|(p, _)| p.lesion).map(|(_, &s)| s).collect();
    let rows = sources
        .iter()
        .map(|(lesion, source)| {
            let s = of(*lesion, source);
            GateRow {
                source: source.clone(),
                lesion: *lesion,
                photos: s.len(),
                auroc_vs_non_lesion: lesion.then(|| auc(&s)),
                gated_by_lesion_score: s.iter().filter(|&&v| v < threshold).count() as f64 / s.len() as f64,
            }
        })
        .collect();
    let all: Vec<&GatePhoto> = photos.iter().collect();
    let gate = GateConfig {
        head: fit_head(&all),
        min_lesion_score: threshold,
        min_luminance: MIN_LUMINANCE,
        max_clipped: MAX_CLIPPED,
        min_sharpness: MIN_SHARPNESS,
        min_spot: MIN_SPOT,
        min_spot_contrast: MIN_SPOT_CONTRAST,
        min_redness: MIN_REDNESS,
        min_colour: MIN_COLOUR,
    };
    (gate, GateReport { auroc: auc(&positives), threshold, rows })
}

/// Calibration measured on one set of photos.
#[derive(Debug, Clone, Serialize)]
pub struct CalibrationRow {
    pub source: String,
    pub photos: usize,
    /// ECE of P(malignant).
    pub ece_malignant: f64,
    /// ECE of the top class's probability (confidence).
    pub ece_top_class: f64,
    pub reliability_malignant: Vec<ReliabilityBin>,
}

/// Calibration figures for probabilities `probs` (one row per photo, training classes), the
/// labels, and which classes are malignant.
pub fn calibration_row(source: &str, probs: &[Vec<f32>], labels: &[usize], malignant: &[usize]) -> CalibrationRow {
    let (p_mal, y_mal) = binary_outcomes(probs, labels, malignant);
    let top: Vec<(f32, bool)> = probs
        .iter()
        .zip(labels)
        .map(|(p, &l)| {
            let k = argmax(p);
            (p[k], k == l)
        })
        .collect();
    let (conf, hit): (Vec<f32>, Vec<bool>) = top.into_iter().unzip();
    CalibrationRow {
        source: source.to_string(),
        photos: probs.len(),
        ece_malignant: ece(&p_mal, &y_mal),
        ece_top_class: ece(&conf, &hit),
        reliability_malignant: reliability(&p_mal, &y_mal, 10),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn calibration_fit_recovers_a_known_temperature_and_prior() {
        // Labels drawn from softmax(0.5 * z + [1, 0]): the fit should find about that.
        let mut state = 7u64;
        let mut uniform = || {
            state = state.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
            (state >> 11) as f64 / (1u64 << 53) as f64
        };
        let (mut z, mut labels) = (Vec::new(), Vec::new());
        for _ in 0..4000 {
            let a = (uniform() * 8.0 - 4.0) as f32;
            let truth = Calibration { scale: 0.5, bias: vec![1.0, 0.0], population: String::new() }.probabilities(&[a, -a]);
            labels.push(usize::from(uniform() >= f64::from(truth[0])));
            z.push(vec![a, -a]);
        }
        let c = fit_calibration(&z, &labels, "test");
        assert!((c.scale - 0.5).abs() < 0.05, "scale {}", c.scale);
        assert!(((c.bias[0] - c.bias[1]) - 1.0).abs() < 0.15, "bias {:?}", c.bias);
    }

    #[test]
    fn head_separates_two_clouds_and_folds_keep_groups_together() {
        let photo = |x: f32, lesion: bool, source: &str| GatePhoto { embedding: vec![x, 1.0], lesion, source: source.into() };
        let photos: Vec<GatePhoto> = (0..200)
            .map(|i| {
                let jitter = (i % 10) as f32 / 10.0;
                if i % 2 == 0 { photo(2.0 + jitter, true, "a") } else { photo(-2.0 - jitter, false, "b") }
            })
            .collect();
        let groups: Vec<String> = (0..200).map(|i| format!("g{}", i / 4)).collect();
        let (gate, report) = fit_gate(&photos, &groups);
        assert!(report.auroc > 0.99);
        assert!(gate.head.score(&[2.5, 1.0]) > gate.min_lesion_score);
        assert!(gate.head.score(&[-2.5, 1.0]) < gate.min_lesion_score);
        assert_eq!(fold_of("g1"), fold_of("g1"));
        let folds: std::collections::HashSet<usize> = (0..50).map(|g| fold_of(&format!("g{g}"))).collect();
        assert_eq!(folds.len(), 2, "both folds used");
    }
}
