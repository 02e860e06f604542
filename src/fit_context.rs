//! Fitting the patient-context head (feature `train`): `softmax(s + W . features(context))` on
//! the calibrated logits `s` of validation photos, every photo seen with its full context and
//! with fields dropped at random, so that any subset of answers (or none) gives a sensible
//! result. Reported with and without context out of fold (groups kept whole), per source.

use crate::classifier::softmax;
use crate::context::{Context, ContextHead, FEATURES, FIELDS};
use crate::dataset::fnv1a;
use crate::fit::{fold_of, minimise, Smooth};
use crate::report;
use crate::taxonomy::Taxonomy;

/// L2 weight on the context weights.
const L2: f64 = 1e-3;
/// Copies of each photo with fields dropped at random, beside the one with its full context.
const MASKED_COPIES: u64 = 3;

/// One training row: calibrated logits, label, context features.
struct Row {
    s: Vec<f32>,
    y: usize,
    f: Vec<f32>,
}

/// Mean negative log-likelihood of `softmax(s + W f)` plus L2 on `W` (`[class][feature]`, flat).
struct ContextLoss<'a>(&'a [Row]);

impl Smooth for ContextLoss<'_> {
    fn eval(&self, p: &[f64]) -> (f64, Vec<f64>) {
        let mut loss = 0.0;
        let mut grad = vec![0.0; p.len()];
        for r in self.0 {
            let logits: Vec<f64> = r
                .s
                .iter()
                .enumerate()
                .map(|(k, &s)| f64::from(s) + r.f.iter().enumerate().map(|(j, &f)| p[k * FEATURES + j] * f64::from(f)).sum::<f64>())
                .collect();
            let max = logits.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            let lse = max + logits.iter().map(|v| (v - max).exp()).sum::<f64>().ln();
            loss += lse - logits[r.y];
            for (k, &l) in logits.iter().enumerate() {
                let q = (l - lse).exp() - f64::from(u8::from(k == r.y));
                for (j, &f) in r.f.iter().enumerate() {
                    grad[k * FEATURES + j] += q * f64::from(f);
                }
            }
        }
        let n = self.0.len().max(1) as f64;
        loss /= n;
        for (g, &w) in grad.iter_mut().zip(p) {
            *g = *g / n + L2 * w;
            loss += 0.5 * L2 * w * w;
        }
        (loss, grad)
    }
}

/// The photo's context with each field kept with probability 1/2, by a stable hash (copy `r`).
fn masked(context: &Context, key: &str, r: u64) -> Context {
    context.only(|field| fnv1a(&format!("{key}/{r}/{field}")).is_multiple_of(2))
}

fn probs_with(s: &[f32], offsets: &[f32]) -> Vec<f32> {
    softmax(&s.iter().zip(offsets).map(|(a, b)| a + b).collect::<Vec<_>>())
}

/// Fits the shipped head on every photo and measures it: per source, the validation summary
/// and the flag (each photo's `thresholds`) without and with context (out of fold), and each
/// field's mean effect on P(malignant).
#[allow(clippy::too_many_arguments)]
pub fn fit_and_measure(
    s: &[Vec<f32>],
    y: &[usize],
    contexts: &[Context],
    groups: &[&str],
    sources: &[&str],
    thresholds: &[f32],
    classes: &[String],
    taxonomy: &Taxonomy,
) -> anyhow::Result<(ContextHead, serde_json::Value)> {
    let keys: Vec<String> = sources.iter().zip(groups).enumerate().map(|(i, (s, g))| format!("{s}/{g}/{i}")).collect();
    let photos = Photos { s, y, contexts, keys: &keys };
    let with = photos.out_of_fold(groups);
    let without: Vec<Vec<f32>> = s.iter().map(|z| softmax(z)).collect();
    let malignant: Vec<usize> = (0..classes.len()).filter(|&k| taxonomy.is_within(&classes[k], "malignant").unwrap_or(false)).collect();
    let p_mal = |p: &[f32]| malignant.iter().map(|&k| p[k]).sum::<f32>();
    // (sensitivity, specificity) of the flag on `idx` with probabilities `p`.
    let flag = |idx: &[usize], p: &[Vec<f32>]| {
        let (pos, neg): (Vec<usize>, Vec<usize>) = idx.iter().partition(|&&i| malignant.contains(&y[i]));
        let caught = pos.iter().filter(|&&i| p_mal(&p[i]) >= thresholds[i]).count() as f64;
        let spared = neg.iter().filter(|&&i| p_mal(&p[i]) < thresholds[i]).count() as f64;
        (caught / pos.len().max(1) as f64, spared / neg.len().max(1) as f64)
    };
    let mut names: Vec<&str> = sources.to_vec();
    names.sort();
    names.dedup();
    let mut rows = Vec::new();
    for name in std::iter::once("all").chain(names) {
        let idx: Vec<usize> = (0..s.len()).filter(|&i| name == "all" || sources[i] == name).collect();
        let labels: Vec<usize> = idx.iter().map(|&i| y[i]).collect();
        let summary = |p: &[Vec<f32>]| report::summarise(classes, taxonomy, &labels, &idx.iter().map(|&i| p[i].clone()).collect::<Vec<_>>());
        let (a, b) = (summary(&without)?, summary(&with)?);
        let fields: Vec<&str> = FIELDS.into_iter().filter(|f| idx.iter().any(|&i| contexts[i].has(f))).collect();
        let task = |t: &str| serde_json::json!([a.auc(t), b.auc(t)]);
        let (flag_without, flag_with) = (flag(&idx, &without), flag(&idx, &with));
        rows.push(serde_json::json!({
            "source": name, "photos": idx.len(), "fields_recorded": fields,
            "auc_malignant_vs_benign": task("malignant_vs_benign"),
            "auc_melanoma_vs_nevus": task("melanoma_vs_nevus"),
            "auc_carcinoma_vs_keratosis": task("carcinoma_vs_keratosis"),
            "balanced_accuracy": [a.balanced_accuracy, b.balanced_accuracy],
            "flag_sensitivity": [flag_without.0, flag_with.0],
            "flag_specificity": [flag_without.1, flag_with.1],
            "note": "[without, with] context; out of fold by lesion or patient",
        }));
    }
    let head = photos.fit(&(0..s.len()).collect::<Vec<_>>());
    let effects = photos.field_effects(&head, p_mal);
    Ok((head, serde_json::json!({ "by_source": rows, "field_effects": effects, "masked_copies": MASKED_COPIES })))
}

/// The photos the head is fitted on: calibrated logits, labels, contexts, and a stable key
/// each (for the masked copies' draws).
struct Photos<'a> {
    s: &'a [Vec<f32>],
    y: &'a [usize],
    contexts: &'a [Context],
    keys: &'a [String],
}

impl Photos<'_> {
    /// Fits the head on the photos `idx`.
    fn fit(&self, idx: &[usize]) -> ContextHead {
        let mut rows = Vec::new();
        for &i in idx {
            let (s, y, context) = (&self.s[i], self.y[i], &self.contexts[i]);
            rows.push(Row { s: s.clone(), y, f: context.features() });
            for r in 0..MASKED_COPIES {
                rows.push(Row { s: s.clone(), y, f: masked(context, &self.keys[i], r).features() });
            }
        }
        let k = self.s.first().map_or(0, Vec::len);
        let p = minimise(ContextLoss(&rows), vec![0.0; k * FEATURES]);
        ContextHead { weights: p.chunks(FEATURES).map(|w| w.iter().map(|&x| x as f32).collect()).collect() }
    }

    /// Each photo's probabilities with context from a head fitted on the other fold (two folds,
    /// by `groups`: a lesion's or patient's photos stay in one).
    fn out_of_fold(&self, groups: &[&str]) -> Vec<Vec<f32>> {
        let folds: Vec<usize> = groups.iter().map(|g| fold_of(g)).collect();
        let mut with = vec![Vec::new(); self.s.len()];
        for f in 0..2 {
            let head = self.fit(&(0..self.s.len()).filter(|&i| folds[i] != f).collect::<Vec<_>>());
            for i in (0..self.s.len()).filter(|&i| folds[i] == f) {
                with[i] = probs_with(&self.s[i], &head.offsets(&self.contexts[i]));
            }
        }
        with
    }

    /// Each field's mean change of P(malignant) (`p_mal` of the probabilities) when `head` is
    /// given that field alone, over the photos that have it.
    fn field_effects(&self, head: &ContextHead, p_mal: impl Fn(&[f32]) -> f32) -> Vec<serde_json::Value> {
        FIELDS
            .iter()
            .map(|field| {
                let idx: Vec<usize> = (0..self.s.len()).filter(|&i| self.contexts[i].has(field)).collect();
                let deltas: Vec<f32> = idx
                    .iter()
                    .map(|&i| {
                        let alone = head.offsets(&self.contexts[i].only(|f| f == *field));
                        p_mal(&probs_with(&self.s[i], &alone)) - p_mal(&softmax(&self.s[i]))
                    })
                    .collect();
                let n = deltas.len().max(1) as f32;
                serde_json::json!({
                    "field": field, "photos_with_it": idx.len(),
                    "mean_abs_change_p_malignant": deltas.iter().map(|d| d.abs()).sum::<f32>() / n,
                    "mean_change_p_malignant": deltas.iter().sum::<f32>() / n,
                })
            })
            .collect()
    }
}
