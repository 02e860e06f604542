//! Probabilities that mean what they say: temperature scaling with a class-prior correction,
//! and how to check it (expected calibration error, reliability bins).
//!
//! The network's logits, averaged over the test-time views and logit-adjusted (class-balanced),
//! become `softmax(scale * z + bias)`: `scale` is one over the temperature, `bias` puts back the
//! class mix of the population the probabilities refer to. Both are fitted at export on the
//! validation split (see `fit`), so "30%" means that about 30 of 100 such spots are.

use crate::classifier::softmax;
use serde::{Deserialize, Serialize};

/// The calibration stored in `model.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Calibration {
    /// Multiplies the averaged, logit-adjusted logits (one over the temperature).
    pub scale: f32,
    /// Added after scaling, per training class: the population's class mix.
    pub bias: Vec<f32>,
    /// Whom the percentages refer to, in words the page and the model card show.
    pub population: String,
}

impl Calibration {
    /// No change: the class-balanced probabilities (what an uncalibrated export ships).
    pub fn identity(classes: usize, population: impl Into<String>) -> Self {
        Self { scale: 1.0, bias: vec![0.0; classes], population: population.into() }
    }

    /// The calibrated logits `scale * z + bias` (what the softmax and the context head see).
    pub fn logits(&self, z: &[f32]) -> Vec<f32> {
        z.iter().zip(&self.bias).map(|(z, b)| self.scale * z + b).collect()
    }

    /// Calibrated training-class probabilities for averaged, logit-adjusted logits `z`.
    pub fn probabilities(&self, z: &[f32]) -> Vec<f32> {
        softmax(&self.logits(z))
    }
}

/// A binary task read off training-class probabilities: for each image, the summed probability
/// of the `members` classes and whether its label is one of them (P(malignant) and "is
/// malignant", say).
pub fn binary_outcomes(probs: &[Vec<f32>], labels: &[usize], members: &[usize]) -> (Vec<f32>, Vec<bool>) {
    let p = probs.iter().map(|p| members.iter().map(|&k| p[k]).sum()).collect();
    let y = labels.iter().map(|l| members.contains(l)).collect();
    (p, y)
}

/// One bin of a reliability diagram: predictions with confidence in `[lo, hi)`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ReliabilityBin {
    pub lo: f64,
    pub hi: f64,
    /// Predictions in the bin.
    pub count: usize,
    /// Their mean predicted probability.
    pub predicted: f64,
    /// The share of them that were positive.
    pub observed: f64,
}

/// Reliability of binary probabilities `p` against outcomes `y` in `bins` equal-width bins
/// (empty bins left out).
pub fn reliability(p: &[f32], y: &[bool], bins: usize) -> Vec<ReliabilityBin> {
    let mut out = Vec::new();
    for b in 0..bins {
        let (lo, hi) = (b as f64 / bins as f64, (b + 1) as f64 / bins as f64);
        let members: Vec<usize> = (0..p.len())
            .filter(|&i| {
                let v = f64::from(p[i]);
                v >= lo && (v < hi || (b == bins - 1 && v <= hi))
            })
            .collect();
        if members.is_empty() {
            continue;
        }
        let n = members.len() as f64;
        out.push(ReliabilityBin {
            lo,
            hi,
            count: members.len(),
            predicted: members.iter().map(|&i| f64::from(p[i])).sum::<f64>() / n,
            observed: members.iter().filter(|&&i| y[i]).count() as f64 / n,
        });
    }
    out
}

/// Expected calibration error over 10 equal-width bins: the count-weighted mean gap between
/// predicted and observed frequency.
pub fn ece(p: &[f32], y: &[bool]) -> f64 {
    let total = p.len().max(1) as f64;
    reliability(p, y, 10)
        .iter()
        .map(|b| b.count as f64 / total * (b.predicted - b.observed).abs())
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identity_is_the_softmax_and_bias_shifts_the_mix() {
        let z = [1.0, 0.0, -1.0];
        let id = Calibration::identity(3, "x");
        assert_eq!(id.probabilities(&z), softmax(&z));
        let shifted = Calibration { bias: vec![0.0, 2.0, 0.0], ..id.clone() };
        assert!(shifted.probabilities(&z)[1] > id.probabilities(&z)[1]);
        let cold = Calibration { scale: 0.5, ..id };
        assert!(cold.probabilities(&z)[0] < softmax(&z)[0], "a higher temperature is less sure");
    }

    #[test]
    fn ece_is_zero_when_frequencies_match_and_large_when_not() {
        // In the 0.2-0.3 bin, 1 of 4 positive: predicted 0.25, observed 0.25.
        let p = [0.25f32; 4];
        assert!(ece(&p, &[true, false, false, false]) < 1e-9);
        assert!((ece(&p, &[true, true, true, true]) - 0.75).abs() < 1e-6);
        let bins = reliability(&[0.05, 0.95, 1.0], &[false, true, true], 10);
        assert_eq!(bins.len(), 2);
        assert_eq!(bins[1].count, 2, "1.0 falls in the last bin");
    }
}
