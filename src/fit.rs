//! Fitting what every shipped model carries besides its weights (feature `train`): the
//! calibration of its probabilities and the gate's "is it a skin spot" head, with the
//! measurements that justify them. `dermscreen calibrate` runs it on a model folder and the
//! trainer's export runs it on the model it ships.
//!
//! Both fits minimise a convex, smooth loss with L-BFGS (argmin). Reported figures are
//! out-of-fold: each half of the data (split by lesion or patient) is scored by a fit on the
//! other half; the shipped parameters are then fitted on all of it.

use crate::calibration::{binary_outcomes, ece, reliability, Calibration, ReliabilityBin};
use crate::classifier::{Classifier, DomainConfig, Scores};
use crate::context::{Context, ContextHead, FIELDS};
use crate::dataset::Kind;
use anyhow::Context as _;
use std::collections::BTreeMap;
use crate::dataset::{find_image, fnv1a, read_columns, Table};
use crate::eval::{argmax, auc as roc_auc};
use crate::gate::{GateConfig, LesionHead, MAX_CLIPPED, MIN_COLOUR, MIN_LUMINANCE, MIN_REDNESS, MIN_SHARPNESS, MIN_SPOT, MIN_SPOT_CONTRAST};
use argmin::core::{CostFunction, Error, Executor, Gradient, State};
use argmin::solver::linesearch::MoreThuenteLineSearch;
use argmin::solver::quasinewton::LBFGS;
use serde::Serialize;

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
    fn the_flag_catches_the_target_share_in_every_source() {
        // A source whose cancers score high and one whose cancers score lower.
        let clear: Vec<f32> = (0..100).map(|i| 0.5 + i as f32 / 250.0).collect();
        let hard: Vec<f32> = (0..20).map(|i| 0.1 + i as f32 / 50.0).collect();
        let pooled = threshold_for([clear.clone(), hard.clone()].concat(), 0.9);
        let each = threshold_for_each(vec![clear.clone(), hard.clone()], 0.9);
        let caught = |m: &[f32], t: f32| m.iter().filter(|&&p| p >= t).count() as f64 / m.len() as f64;
        assert!(caught(&hard, pooled) < 0.9, "pooled, the hard source falls short");
        assert!(caught(&clear, each) >= 0.9 && caught(&hard, each) >= 0.9, "threshold {each}");
        assert_eq!(each, threshold_for(hard, 0.9), "the most demanding source sets it");
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

/// A photo with what the export knows about it.
#[derive(Debug, Clone)]
pub struct LabelledPhoto {
    pub path: std::path::PathBuf,
    /// Diagnosis code (`nv`, `scc`, ...) for a lesion; the kind (`natural_photo`, ...) otherwise.
    pub dx: String,
    /// Lesion or patient: photos of one group stay in one fold.
    pub group: String,
    /// `ham10000`, `bcn_20000`, `msk`, `pad_ufes_20`, or the kind of a non-lesion photo.
    pub source: String,
    /// Dermoscopic or clinical, for lesion photos.
    pub kind: Option<Kind>,
    pub lesion: bool,
    /// What the source recorded about the patient and the spot.
    pub context: Context,
}

/// The photos the export fits and measures on, under `root` (`../shared/data`): the model's
/// validation split (`val_labels`: `image,dx,source,kind,group`, images relative to `root`)
/// and the non-lesion photos of `ood/`. None of these was trained on.
pub fn export_photos(root: &std::path::Path, val_labels: &std::path::Path) -> anyhow::Result<Vec<LabelledPhoto>> {
    let mut out = Vec::new();
    let table = Table::read(val_labels)?;
    let contexts = table.columns(FIELDS)?;
    for ([image, dx, source, kind, group], values) in table.columns(["image", "dx", "source", "kind", "group"])?.into_iter().zip(contexts) {
        let kind = Kind::parse(&kind).ok_or_else(|| anyhow::anyhow!("{}: unknown kind '{kind}'", val_labels.display()))?;
        let context = Context::from_pairs(FIELDS.into_iter().zip(values.iter().map(String::as_str)))?;
        out.push(LabelledPhoto { path: root.join(image), dx, group, source, kind: Some(kind), lesion: true, context });
    }
    out.extend(ood_photos(root)?);
    Ok(out)
}

/// The photos of `root/ood/` that are not skin spots, which the export fits the gate on. The
/// trainer reads them before its first epoch too, so a missing folder is found before hours
/// of training rather than after.
pub fn ood_photos(root: &std::path::Path) -> anyhow::Result<Vec<LabelledPhoto>> {
    let ood = root.join("ood");
    let read = || -> anyhow::Result<Vec<LabelledPhoto>> {
        let mut out = Vec::new();
        for [image, kind] in read_columns(&ood.join("labels.csv"), ["image", "kind"])? {
            let path = find_image(&ood.join("images"), &image).ok_or_else(|| anyhow::anyhow!("no ood image {image}"))?;
            out.push(LabelledPhoto { path, dx: kind.clone(), group: image, source: kind, kind: None, lesion: false, context: Context::default() });
        }
        Ok(out)
    };
    read().with_context(|| format!("{}: the photos that are not skin spots, which the export fits the gate on", ood.display()))
}

/// What [`fit_export`] fits: everything `model.json` carries besides the weights.
pub struct Fitted {
    pub calibration: Calibration,
    pub domain: DomainConfig,
    pub context: ContextHead,
    pub gate: GateConfig,
}

impl Fitted {
    /// Writes the fitted parts into `meta`; the single threshold is the dermoscopic one.
    pub fn apply(self, meta: &mut crate::classifier::ModelMeta) {
        meta.calibration = Some(self.calibration);
        meta.gate = Some(self.gate);
        meta.high_risk_threshold = self.domain.high_risk_thresholds[&Kind::Dermoscopic];
        meta.domain = Some(self.domain);
        meta.context = Some(self.context);
    }
}

/// Everything the export measured, written beside `model.json` as `calibration.json`.
#[derive(Debug, Clone, Serialize)]
pub struct ExportReport {
    pub population: String,
    pub calibration: Calibration,
    /// Per source and kind: ECE after calibration, out of fold (by lesion or patient).
    pub calibration_by_source: Vec<CalibrationRow>,
    /// All validation photos before calibration (the class-balanced scores), for comparison.
    pub uncalibrated: CalibrationRow,
    pub high_risk_thresholds: BTreeMap<Kind, f32>,
    pub target_sensitivity: f64,
    /// Per source and kind: sensitivity and specificity of the flag as shipped (each photo's
    /// threshold is that of the kind the domain head takes it for).
    pub flag_by_source: Vec<serde_json::Value>,
    /// Per source: the share of photos the domain head takes for dermoscopic, out of fold.
    pub domain_by_source: Vec<serde_json::Value>,
    pub gate: GateReport,
    /// Per source or kind: the share turned away for each reason by the shipped gate.
    pub gated_by_source: Vec<serde_json::Value>,
    /// The patient context: validation with and without it (out of fold), each field's effect.
    pub context: serde_json::Value,
}

/// Whom the shipped percentages refer to.
pub const POPULATION: &str = "the validation photos of this model's sources taken together: spots photographed through a dermatoscope at clinics in Vienna, Queensland, Barcelona and New York (HAM10000, BCN20000, MSK) and with smartphones in Brazil (PAD-UFES-20), about 38% of them malignant";

/// Images of each source (or kind) that [`fit_export`] fits and reports on, as groups of indices.
fn groups_by<K: Ord + Clone>(photos: &[LabelledPhoto], key: impl Fn(&LabelledPhoto) -> Option<K>) -> BTreeMap<K, Vec<usize>> {
    let mut m: BTreeMap<K, Vec<usize>> = BTreeMap::new();
    for (i, p) in photos.iter().enumerate() {
        if let Some(k) = key(p) {
            m.entry(k).or_default().push(i);
        }
    }
    m
}

/// Scores every photo that reads; reports and drops the others.
fn score_photos(classifier: &Classifier, photos: &[LabelledPhoto]) -> anyhow::Result<(Vec<LabelledPhoto>, Vec<Scores>)> {
    let mut scores = Vec::with_capacity(photos.len());
    let mut kept = Vec::with_capacity(photos.len());
    for chunk in photos.chunks(32) {
        let mut inputs = Vec::new();
        for p in chunk {
            match std::fs::read(&p.path).map_err(anyhow::Error::from).and_then(|b| Ok(classifier.input_from_bytes(&b)?)) {
                Ok(x) => {
                    inputs.extend(x);
                    kept.push(p.clone());
                }
                Err(e) => eprintln!("calibrate: {}: {e}", p.path.display()),
            }
        }
        if !inputs.is_empty() {
            scores.extend(classifier.scores_of(&inputs)?);
        }
    }
    Ok((kept, scores))
}

/// The calibration fitted on all labelled photos, and each photo's probabilities from the fit
/// on the other fold (groups kept whole).
fn fit_calibration_out_of_fold(z: &[Vec<f32>], y: &[usize], groups: &[&str]) -> (Calibration, Vec<Vec<f32>>) {
    let fold: Vec<usize> = groups.iter().map(|g| fold_of(g)).collect();
    let mut oof = vec![Vec::new(); z.len()];
    for f in 0..2 {
        let pick = |want: bool| (0..z.len()).filter(|&j| (fold[j] == f) == want).collect::<Vec<_>>();
        let train: Vec<usize> = pick(false);
        let c = fit_calibration(&train.iter().map(|&j| z[j].clone()).collect::<Vec<_>>(), &train.iter().map(|&j| y[j]).collect::<Vec<_>>(), POPULATION);
        for j in pick(true) {
            oof[j] = c.probabilities(&z[j]);
        }
    }
    (fit_calibration(z, y, POPULATION), oof)
}

/// The kind-of-photo head: dermoscopic validation photos against camera photos (the phone
/// photos, and the healthy-skin photos of `ood/`, which are camera photos of skin too), each
/// source weighted equally within its side; with the share of each source's photos taken for
/// dermoscopic, out of fold.
fn fit_domain(photos: &[LabelledPhoto], scores: &[Scores]) -> (LesionHead, Vec<serde_json::Value>) {
    let used: Vec<usize> = (0..photos.len()).filter(|&i| photos[i].lesion || photos[i].source == "healthy_skin").collect();
    let domain_photos: Vec<GatePhoto> = used
        .iter()
        .map(|&i| GatePhoto { embedding: scores[i].embedding.clone(), lesion: photos[i].kind == Some(Kind::Dermoscopic), source: photos[i].source.clone() })
        .collect();
    let folds: Vec<usize> = used.iter().map(|&i| fold_of(&photos[i].group)).collect();
    let oof = out_of_fold_scores(&domain_photos, &folds);
    let mut tally: BTreeMap<&str, (usize, usize)> = BTreeMap::new();
    for (p, &score) in domain_photos.iter().zip(&oof) {
        let t = tally.entry(&p.source).or_default();
        t.0 += 1;
        t.1 += usize::from(score >= 0.0);
    }
    let by_source = tally
        .iter()
        .map(|(source, (n, dermoscopic))| serde_json::json!({ "source": source, "photos": n, "taken_for_dermoscopic": *dermoscopic as f64 / *n as f64, "out_of_fold": true }))
        .collect();
    (fit_head(&domain_photos.iter().collect::<Vec<_>>()), by_source)
}

/// The largest threshold (rounded down to 0.001) that flags at least `target` of `malignant`.
fn threshold_for(mut malignant: Vec<f32>, target: f64) -> f32 {
    malignant.sort_by(|a, b| b.total_cmp(a));
    let at = ((target * malignant.len() as f64).ceil() as usize).clamp(1, malignant.len()) - 1;
    ((malignant[at] * 1000.0).floor() / 1000.0).max(0.001)
}

/// The largest threshold that flags at least `target` of the malignant photos of every source
/// (P(malignant) per source, none empty). Pooled, the largest and most malignant source sets it:
/// the shipped model's pooled dermoscopic threshold caught 93% of BCN's cancers but 84% of
/// HAM10000's and 78% of MSK's.
fn threshold_for_each(by_source: Vec<Vec<f32>>, target: f64) -> f32 {
    by_source.into_iter().map(|m| threshold_for(m, target)).fold(f32::INFINITY, f32::min)
}

/// Fits calibration, thresholds, domain head and gate for `classifier` on `photos` (from
/// [`export_photos`]) and returns them with what was measured. Photos whose diagnosis has no
/// training class count for the gate and P(malignant) only.
pub fn fit_export(classifier: &Classifier, photos: &[LabelledPhoto], target_sensitivity: f64) -> anyhow::Result<(Fitted, ExportReport)> {
    let meta = classifier.meta();
    let (classes, taxonomy) = (&meta.training_classes, classifier.taxonomy());
    let malignant: Vec<usize> = (0..classes.len()).filter(|&k| taxonomy.is_within(&classes[k], "malignant").unwrap_or(false)).collect();
    let (photos, scores) = score_photos(classifier, photos)?;
    let is_malignant = |p: &LabelledPhoto| taxonomy.is_within(&p.dx, "malignant").unwrap_or(false);
    // Calibration on every labelled lesion photo: figures out of fold, the fit on all.
    let labelled: Vec<usize> = (0..photos.len()).filter(|&i| photos[i].lesion && taxonomy.class_of(&photos[i].dx, classes).is_some()).collect();
    let z: Vec<Vec<f32>> = labelled.iter().map(|&i| scores[i].logits.clone()).collect();
    let y: Vec<usize> = labelled.iter().map(|&i| taxonomy.class_of(&photos[i].dx, classes).unwrap_or(0)).collect();
    let groups: Vec<&str> = labelled.iter().map(|&i| photos[i].group.as_str()).collect();
    let (calibration, oof) = fit_calibration_out_of_fold(&z, &y, &groups);
    let balanced: Vec<Vec<f32>> = z.iter().map(|z| crate::classifier::softmax(z)).collect();
    let (domain_head, domain_by_source) = fit_domain(&photos, &scores);
    let all_probs: Vec<Vec<f32>> = scores.iter().map(|s| calibration.probabilities(&s.logits)).collect();
    let (p_mal, _) = binary_outcomes(&all_probs, &[], &malignant);
    let thresholds = high_risk_thresholds(&photos, &p_mal, &is_malignant, target_sensitivity)?;
    let domain = DomainConfig { head: domain_head, high_risk_thresholds: thresholds.clone() };
    // Each photo is flagged as the page would: with the threshold of the kind it is taken for.
    let threshold: Vec<f32> = scores.iter().map(|s| thresholds[&domain.kind(&s.embedding)]).collect();
    let flagged: Vec<bool> = p_mal.iter().zip(&threshold).map(|(p, t)| p >= t).collect();
    let (gate, gate_report, gated_by_source) = fit_gate_reported(&photos, &scores);
    let report = ExportReport {
        population: POPULATION.into(),
        calibration: calibration.clone(),
        calibration_by_source: calibration_by_group(&photos, &labelled, &oof, &y, &malignant),
        uncalibrated: calibration_row("all validation photos (class-balanced scores, before calibration)", &balanced, &y, &malignant),
        high_risk_thresholds: thresholds.clone(),
        target_sensitivity,
        flag_by_source: flag_by_group(&photos, &flagged, &is_malignant),
        domain_by_source,
        gate: gate_report,
        gated_by_source,
        context: serde_json::Value::Null,
    };
    let calibrated: Vec<Vec<f32>> = z.iter().map(|z| calibration.logits(z)).collect();
    let contexts: Vec<Context> = labelled.iter().map(|&i| photos[i].context.clone()).collect();
    let sources: Vec<&str> = labelled.iter().map(|&i| photos[i].source.as_str()).collect();
    let photo_thresholds: Vec<f32> = labelled.iter().map(|&i| threshold[i]).collect();
    let (context, context_report) = crate::fit_context::fit_and_measure(&calibrated, &y, &contexts, &groups, &sources, &photo_thresholds, classes, taxonomy)?;
    let report = ExportReport { context: context_report, ..report };
    Ok((Fitted { calibration, domain, context, gate }, report))
}

/// Out-of-fold calibration figures per source, then per kind, of the `labelled` lesion photos
/// (indices into `photos`; `oof` and `y` are in their order).
fn calibration_by_group(photos: &[LabelledPhoto], labelled: &[usize], oof: &[Vec<f32>], y: &[usize], malignant: &[usize]) -> Vec<CalibrationRow> {
    let rows_of = |key: &dyn Fn(&LabelledPhoto) -> String| -> Vec<CalibrationRow> {
        groups_by(photos, |p| p.lesion.then(|| key(p)))
            .iter()
            .map(|(name, idx)| {
                let members: std::collections::HashSet<usize> = idx.iter().copied().collect();
                let at: Vec<usize> = (0..labelled.len()).filter(|&j| members.contains(&labelled[j])).collect();
                let probs: Vec<Vec<f32>> = at.iter().map(|&j| oof[j].clone()).collect();
                calibration_row(name, &probs, &at.iter().map(|&j| y[j]).collect::<Vec<_>>(), malignant)
            })
            .collect()
    };
    let mut rows = rows_of(&|p| p.source.clone());
    rows.extend(rows_of(&|p| p.kind.map_or(String::new(), |k| k.as_str().to_string())));
    rows
}

/// The flag: per kind (as labelled), the threshold on P(malignant) (`p_mal`, per photo) that
/// catches `target_sensitivity` of the malignant validation photos of each of its sources, so
/// that it holds for a clinic like each of them and not only on their sum. A screening aid
/// should rather send too many people to a dermatologist than too few.
fn high_risk_thresholds(
    photos: &[LabelledPhoto],
    p_mal: &[f32],
    is_malignant: &dyn Fn(&LabelledPhoto) -> bool,
    target_sensitivity: f64,
) -> anyhow::Result<BTreeMap<Kind, f32>> {
    let mut thresholds = BTreeMap::new();
    for kind in Kind::ALL {
        let mut by_source: BTreeMap<&str, Vec<f32>> = BTreeMap::new();
        for (i, p) in photos.iter().enumerate().filter(|(_, p)| p.kind == Some(kind) && is_malignant(p)) {
            by_source.entry(p.source.as_str()).or_default().push(p_mal[i]);
        }
        anyhow::ensure!(!by_source.is_empty(), "no malignant {} validation photo to set the high-risk threshold on", kind.as_str());
        thresholds.insert(kind, threshold_for_each(by_source.into_values().collect(), target_sensitivity));
    }
    Ok(thresholds)
}

/// Sensitivity and specificity of the flag (`flagged`, per photo) per source, then per kind.
fn flag_by_group(photos: &[LabelledPhoto], flagged: &[bool], is_malignant: &dyn Fn(&LabelledPhoto) -> bool) -> Vec<serde_json::Value> {
    let flag_row = |name: &str, idx: &[usize]| {
        let (mut tp, mut pos, mut tn, mut neg) = (0, 0, 0, 0);
        for &i in idx {
            if is_malignant(&photos[i]) {
                pos += 1;
                tp += usize::from(flagged[i]);
            } else {
                neg += 1;
                tn += usize::from(!flagged[i]);
            }
        }
        serde_json::json!({
            "source": name, "malignant": pos, "benign": neg,
            "sensitivity": tp as f64 / pos.max(1) as f64, "specificity": tn as f64 / neg.max(1) as f64,
        })
    };
    let mut rows: Vec<serde_json::Value> = groups_by(photos, |p| p.lesion.then(|| p.source.clone())).iter().map(|(s, idx)| flag_row(s, idx)).collect();
    rows.extend(groups_by(photos, |p| p.kind.map(|k| k.as_str().to_string())).iter().map(|(s, idx)| flag_row(s, idx)));
    rows
}

/// The gate fitted on every photo, lesion or not, with its out-of-fold report and, per source,
/// the share of photos the shipped gate turns away for each reason.
fn fit_gate_reported(photos: &[LabelledPhoto], scores: &[Scores]) -> (GateConfig, GateReport, Vec<serde_json::Value>) {
    let gate_photos: Vec<GatePhoto> = photos
        .iter()
        .zip(scores)
        .map(|(p, s)| GatePhoto { embedding: s.embedding.clone(), lesion: p.lesion, source: p.source.clone() })
        .collect();
    let gate_groups: Vec<String> = photos.iter().map(|p| format!("{}/{}", p.source, p.group)).collect();
    let (gate, gate_report) = fit_gate(&gate_photos, &gate_groups);
    let gated_by_source = groups_by(photos, |p| Some(p.source.clone()))
        .iter()
        .map(|(s, idx)| {
            let mut reasons = BTreeMap::new();
            for &i in idx {
                let g = gate.decide(&scores[i].quality, gate.head.score(&scores[i].embedding));
                *reasons.entry(g.id()).or_insert(0usize) += 1;
            }
            let share: serde_json::Map<String, serde_json::Value> = reasons.iter().map(|(k, &v)| (k.to_string(), serde_json::json!(v as f64 / idx.len() as f64))).collect();
            serde_json::json!({ "source": s, "photos": idx.len(), "share": share, "note": "in-sample for the lesion head; out-of-fold figures are under gate" })
        })
        .collect();
    (gate, gate_report, gated_by_source)
}
