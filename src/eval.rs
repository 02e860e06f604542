//! Evaluation metrics: ROC curves and AUC with bootstrap intervals, confusion matrices,
//! balanced accuracy, sensitivity at fixed specificity.

use serde::Serialize;

/// A point of a ROC curve.
#[derive(Debug, Clone, Copy, Serialize, PartialEq)]
pub struct RocPoint {
    /// False positive rate (1 - specificity).
    pub fpr: f64,
    /// True positive rate (sensitivity).
    pub tpr: f64,
    /// Score at or above which a case is called positive.
    pub threshold: f64,
}

/// ROC curve from scores (higher = more positive) and labels; ties are handled as one step.
pub fn roc_curve(scores: &[f64], positive: &[bool]) -> Vec<RocPoint> {
    let mut idx: Vec<usize> = (0..scores.len()).collect();
    idx.sort_by(|&a, &b| scores[b].total_cmp(&scores[a]));
    let p = positive.iter().filter(|&&x| x).count() as f64;
    let n = positive.len() as f64 - p;
    // f64::MAX rather than infinity so the point survives JSON.
    let mut out = vec![RocPoint { fpr: 0.0, tpr: 0.0, threshold: f64::MAX }];
    let (mut tp, mut fp) = (0.0, 0.0);
    let mut i = 0;
    while i < idx.len() {
        let s = scores[idx[i]];
        while i < idx.len() && scores[idx[i]] == s {
            if positive[idx[i]] {
                tp += 1.0;
            } else {
                fp += 1.0;
            }
            i += 1;
        }
        out.push(RocPoint {
            fpr: if n > 0.0 { fp / n } else { 0.0 },
            tpr: if p > 0.0 { tp / p } else { 0.0 },
            threshold: s,
        });
    }
    out
}

/// Area under the ROC curve (Mann-Whitney statistic, ties count one half). `None` if a class is
/// absent.
pub fn auc(scores: &[f64], positive: &[bool]) -> Option<f64> {
    let p = positive.iter().filter(|&&x| x).count();
    let n = positive.len() - p;
    if p == 0 || n == 0 {
        return None;
    }
    let mut idx: Vec<usize> = (0..scores.len()).collect();
    idx.sort_by(|&a, &b| scores[a].total_cmp(&scores[b]));
    // Average ranks over ties.
    let mut rank_sum_pos = 0.0;
    let mut i = 0;
    while i < idx.len() {
        let mut j = i;
        while j < idx.len() && scores[idx[j]] == scores[idx[i]] {
            j += 1;
        }
        let avg_rank = (i + j + 1) as f64 / 2.0;
        for &k in &idx[i..j] {
            if positive[k] {
                rank_sum_pos += avg_rank;
            }
        }
        i = j;
    }
    let (p, n) = (p as f64, n as f64);
    Some((rank_sum_pos - p * (p + 1.0) / 2.0) / (p * n))
}

/// Small deterministic generator for bootstrap resampling (no RNG crate in the core).
struct SplitMix(u64);
impl SplitMix {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// 95% percentile bootstrap interval of the AUC, resampling positives and negatives separately
/// (stratified) so every replicate has both classes.
pub fn auc_bootstrap_ci(scores: &[f64], positive: &[bool], replicates: usize, seed: u64) -> Option<(f64, f64)> {
    let pos: Vec<f64> = scores.iter().zip(positive).filter(|(_, &p)| p).map(|(&s, _)| s).collect();
    let neg: Vec<f64> = scores.iter().zip(positive).filter(|(_, &p)| !p).map(|(&s, _)| s).collect();
    if pos.is_empty() || neg.is_empty() || replicates == 0 {
        return None;
    }
    let mut rng = SplitMix(seed);
    let mut aucs = Vec::with_capacity(replicates);
    let mut s = Vec::with_capacity(scores.len());
    let mut l = Vec::with_capacity(scores.len());
    for _ in 0..replicates {
        s.clear();
        l.clear();
        for _ in 0..pos.len() {
            s.push(pos[rng.below(pos.len())]);
            l.push(true);
        }
        for _ in 0..neg.len() {
            s.push(neg[rng.below(neg.len())]);
            l.push(false);
        }
        aucs.push(auc(&s, &l)?);
    }
    aucs.sort_by(f64::total_cmp);
    let q = |f: f64| aucs[((f * (replicates - 1) as f64).round() as usize).min(replicates - 1)];
    Some((q(0.025), q(0.975)))
}

/// Highest sensitivity reachable with specificity at least `specificity`.
pub fn sensitivity_at_specificity(roc: &[RocPoint], specificity: f64) -> f64 {
    roc.iter()
        .filter(|p| 1.0 - p.fpr >= specificity - 1e-12)
        .map(|p| p.tpr)
        .fold(0.0, f64::max)
}

/// Confusion matrix: `m[true][predicted]` counts.
pub fn confusion(truth: &[usize], predicted: &[usize], k: usize) -> Vec<Vec<u64>> {
    let mut m = vec![vec![0u64; k]; k];
    for (&t, &p) in truth.iter().zip(predicted) {
        m[t][p] += 1;
    }
    m
}

/// Recall of each class (`None` where a class has no cases).
pub fn per_class_recall(m: &[Vec<u64>]) -> Vec<Option<f64>> {
    m.iter()
        .enumerate()
        .map(|(i, row)| {
            let total: u64 = row.iter().sum();
            (total > 0).then(|| row[i] as f64 / total as f64)
        })
        .collect()
}

/// Mean recall over the classes that have cases.
pub fn balanced_accuracy(m: &[Vec<u64>]) -> f64 {
    let r: Vec<f64> = per_class_recall(m).into_iter().flatten().collect();
    if r.is_empty() {
        0.0
    } else {
        r.iter().sum::<f64>() / r.len() as f64
    }
}

/// Index of the largest value.
pub fn argmax(v: &[f32]) -> usize {
    v.iter()
        .enumerate()
        .max_by(|a, b| a.1.total_cmp(b.1))
        .map(|(i, _)| i)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auc_perfect_random_and_ties() {
        assert_eq!(auc(&[0.9, 0.8, 0.2, 0.1], &[true, true, false, false]), Some(1.0));
        assert_eq!(auc(&[0.1, 0.2, 0.8, 0.9], &[true, true, false, false]), Some(0.0));
        assert_eq!(auc(&[0.5, 0.5, 0.5, 0.5], &[true, false, true, false]), Some(0.5));
        // One positive above one of two negatives: 0.5.
        assert_eq!(auc(&[0.6, 0.7, 0.5], &[true, false, false]), Some(0.5));
        assert_eq!(auc(&[0.6, 0.7], &[true, true]), None);
    }

    #[test]
    fn roc_matches_auc_by_trapezoid() {
        let scores = [0.95, 0.9, 0.85, 0.7, 0.6, 0.55, 0.4, 0.3, 0.2, 0.1];
        let labels = [true, false, true, true, false, true, false, false, true, false];
        let roc = roc_curve(&scores, &labels);
        let area: f64 = roc.windows(2).map(|w| (w[1].fpr - w[0].fpr) * (w[1].tpr + w[0].tpr) / 2.0).sum();
        assert!((area - auc(&scores, &labels).unwrap()).abs() < 1e-12);
        assert_eq!(roc.last().map(|p| (p.fpr, p.tpr)), Some((1.0, 1.0)));
        assert_eq!(sensitivity_at_specificity(&roc, 1.0), 0.2);
    }

    #[test]
    fn bootstrap_interval_brackets_the_estimate() {
        let scores: Vec<f64> = (0..200).map(|i| (i % 17) as f64 + if i % 2 == 0 { 4.0 } else { 0.0 }).collect();
        let labels: Vec<bool> = (0..200).map(|i| i % 2 == 0).collect();
        let a = auc(&scores, &labels).unwrap();
        let (lo, hi) = auc_bootstrap_ci(&scores, &labels, 500, 1).unwrap();
        assert!(lo < a && a < hi && hi - lo < 0.2, "{lo} {a} {hi}");
    }

    #[test]
    fn balanced_accuracy_weights_classes_equally() {
        let truth = [0, 0, 0, 0, 1, 2];
        let pred = [0, 0, 0, 0, 0, 2];
        let m = confusion(&truth, &pred, 3);
        assert_eq!(m[1][0], 1);
        assert!((balanced_accuracy(&m) - 2.0 / 3.0).abs() < 1e-12);
        assert_eq!(per_class_recall(&confusion(&[0], &[0], 2))[1], None);
    }
}
