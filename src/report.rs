//! Validation and evaluation reports: metrics at the training-class and inference level, the
//! paper's two binary tasks and malignant vs benign (here), a row per group of photos
//! (`groups`), and natively the SVG plots (`plots`), the t-SNE map (`tsne`) and `index.html`
//! (`html`).

use crate::eval;
use crate::taxonomy::{Taxonomy, TaxonomyError};
use serde::Serialize;

mod groups;
#[cfg(not(target_arch = "wasm32"))]
mod html;
#[cfg(not(target_arch = "wasm32"))]
mod plots;
mod tsne;

pub use groups::{group_table, GroupImage, GroupRow, TaskAuc, GROUP_COLUMNS};
#[cfg(not(target_arch = "wasm32"))]
pub use html::write_html;
#[cfg(not(target_arch = "wasm32"))]
pub use plots::write_plots;
pub use tsne::TsneMap;
#[cfg(not(target_arch = "wasm32"))]
pub use tsne::write_tsne;

/// The binary tasks scored in every report: (name, positive node, negative node).
pub const BINARY_TASKS: [(&str, &str, &str); 3] = [
    ("carcinoma_vs_keratosis", "malignant_epidermal", "benign_epidermal"),
    ("melanoma_vs_nevus", "malignant_melanocytic", "benign_melanocytic"),
    ("malignant_vs_benign", "malignant", "benign"),
];

/// Specificities at which sensitivity is reported.
pub const SPECIFICITIES: [f64; 3] = [0.80, 0.90, 0.95];

/// A labelled confusion matrix, `matrix[true][predicted]`, at one level of the taxonomy: the
/// training classes, the first level (the paper's 3-way split: benign, malignant,
/// non-neoplastic, where the data has them) or the second (the paper's 9-way split, the nodes
/// the data reaches).
#[derive(Debug, Clone, Serialize)]
pub struct Confusion {
    pub level: String,
    pub labels: Vec<String>,
    pub matrix: Vec<Vec<u64>>,
    pub accuracy: f64,
    pub balanced_accuracy: f64,
}

impl Confusion {
    /// `(accuracy, balanced accuracy)`; `None` when no image is labelled at this level.
    pub fn accuracies(&self) -> Option<(f64, f64)> {
        (self.matrix.iter().flatten().sum::<u64>() > 0).then_some((self.accuracy, self.balanced_accuracy))
    }

    fn new(level: &str, labels: Vec<String>, matrix: Vec<Vec<u64>>) -> Self {
        let total: u64 = matrix.iter().flatten().sum();
        let correct: u64 = (0..matrix.len()).map(|i| matrix[i][i]).sum();
        Self {
            level: level.into(),
            labels,
            accuracy: correct as f64 / total.max(1) as f64,
            balanced_accuracy: eval::balanced_accuracy(&matrix),
            matrix,
        }
    }
}

/// One binary task's ROC analysis.
#[derive(Debug, Clone, Serialize)]
pub struct BinaryTask {
    pub name: String,
    pub positive: String,
    pub negative: String,
    pub positives: usize,
    pub negatives: usize,
    /// Score: P(positive) / (P(positive) + P(negative)) over the images of the two classes.
    pub auc: Option<f64>,
    /// 95% stratified percentile bootstrap interval (2,000 replicates).
    pub auc_ci95: Option<(f64, f64)>,
    /// `(specificity, sensitivity)`; empty, like `auc`, without both classes.
    pub sensitivity_at_specificity: Vec<(f64, f64)>,
    pub roc: Vec<eval::RocPoint>,
}

/// Everything measured on one labelled set.
#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    pub images: usize,
    /// Of `images`, those labelled above the training classes (only `benign` or `malignant`,
    /// say): in the binary tasks, the calibration and the levels at or above their label, not
    /// in the training classes' accuracies, recalls and confusion matrix.
    pub above_classes: usize,
    pub accuracy: f64,
    pub balanced_accuracy: f64,
    pub per_class_recall: Vec<(String, Option<f64>)>,
    pub confusion: Vec<Confusion>,
    pub binary_tasks: Vec<BinaryTask>,
    /// How well P(malignant) means what it says on these images.
    pub calibration: CalibrationSummary,
}

/// Reliability of P(malignant): expected calibration error and the diagram's bins.
#[derive(Debug, Clone, Serialize)]
pub struct CalibrationSummary {
    /// Expected calibration error of P(malignant) over 10 bins.
    pub ece_malignant: f64,
    /// Mean P(malignant) and the share of images that are malignant.
    pub mean_malignant: f64,
    pub share_malignant: f64,
    pub reliability: Vec<crate::calibration::ReliabilityBin>,
}

impl Summary {
    /// AUC of a binary task by name.
    pub fn auc(&self, task: &str) -> Option<f64> {
        self.binary_tasks.iter().find(|t| t.name == task).and_then(|t| t.auc)
    }
}

/// A metric to three decimals, or "n/a" where it could not be measured.
pub fn fmt_opt(v: Option<f64>) -> String {
    v.map_or("n/a".into(), |x| format!("{x:.3}"))
}

/// The headline numbers as plain text, a line each: what `evaluate` prints.
pub fn summary_text(summary: &Summary) -> String {
    let classes = summary.confusion[0].accuracies();
    let mut out = format!(
        "{} images, balanced accuracy {}, accuracy {}\n",
        summary.images,
        fmt_opt(classes.map(|a| a.1)),
        fmt_opt(classes.map(|a| a.0))
    );
    if summary.above_classes > 0 {
        out.push_str(&format!(
            "  {} images labelled above the training classes (such as benign or malignant): in the binary tasks and taxonomy levels their labels decide and in P(malignant), not in the training classes' accuracies and recalls\n",
            summary.above_classes
        ));
    }
    for (c, r) in &summary.per_class_recall {
        out.push_str(&format!("  recall {c:>6}: {}\n", fmt_opt(*r)));
    }
    let cal = &summary.calibration;
    out.push_str(&format!(
        "  P(malignant): ECE {:.3}, mean {:.3} vs {:.3} malignant\n",
        cal.ece_malignant, cal.mean_malignant, cal.share_malignant
    ));
    for c in &summary.confusion[1..] {
        let a = c.accuracies();
        out.push_str(&format!(
            "  {} ({}-way): accuracy {}, balanced accuracy {}\n",
            c.level,
            c.labels.len(),
            fmt_opt(a.map(|a| a.0)),
            fmt_opt(a.map(|a| a.1))
        ));
    }
    for t in &summary.binary_tasks {
        let ci = t.auc_ci95.map_or(String::new(), |(lo, hi)| format!(" (95% CI {lo:.3}-{hi:.3})"));
        let sens: Vec<String> = t
            .sensitivity_at_specificity
            .iter()
            .map(|(sp, se)| format!("sens {se:.3} @ spec {sp:.2}"))
            .collect();
        let sens = if sens.is_empty() { vec!["sensitivity n/a".to_string()] } else { sens };
        out.push_str(&format!(
            "  {}: AUC {}{ci}, {} vs {} images; {}\n",
            t.name,
            fmt_opt(t.auc),
            t.positives,
            t.negatives,
            sens.join(", ")
        ));
    }
    out
}

/// Scores `probs` (training-class probabilities per image) against `labels` (training-class
/// index per image).
pub fn summarise(
    classes: &[String],
    taxonomy: &Taxonomy,
    labels: &[usize],
    probs: &[Vec<f32>],
) -> Result<Summary, TaxonomyError> {
    let nodes: Vec<&str> = labels.iter().map(|&l| classes[l].as_str()).collect();
    summarise_nodes(classes, taxonomy, &nodes, probs)
}

/// [`summarise`] against labels that are taxonomy node ids: a training class, or a node above
/// training classes (a table that knows only `benign` or `malignant`). An image labelled above
/// them counts in the binary tasks its label decides, in P(malignant)'s calibration and in the
/// confusion matrices of the taxonomy's levels at or above its node; the training classes'
/// recalls, accuracy and confusion matrix leave it out.
pub fn summarise_nodes(
    classes: &[String],
    taxonomy: &Taxonomy,
    labels: &[&str],
    probs: &[Vec<f32>],
) -> Result<Summary, TaxonomyError> {
    let (fine, fine_labels): (Vec<usize>, Vec<usize>) = labels
        .iter()
        .enumerate()
        .filter_map(|(i, l)| classes.iter().position(|c| c == l).map(|c| (i, c)))
        .unzip();
    let predicted: Vec<usize> = fine.iter().map(|&i| eval::argmax(&probs[i])).collect();
    let m = eval::confusion(&fine_labels, &predicted, classes.len());
    let correct = fine_labels.iter().zip(&predicted).filter(|(a, b)| a == b).count();
    let recall = eval::per_class_recall(&m);
    let mut confusion = vec![Confusion::new("training classes", classes.to_vec(), m.clone())];
    confusion.extend(level_confusions(classes, taxonomy, labels, probs)?);
    let binary_tasks = BINARY_TASKS
        .iter()
        .map(|&task| binary_task(classes, taxonomy, labels, probs, task))
        .collect::<Result<_, _>>()?;
    Ok(Summary {
        calibration: calibration_summary(classes, taxonomy, labels, probs)?,
        images: labels.len(),
        above_classes: labels.len() - fine.len(),
        accuracy: correct as f64 / fine.len().max(1) as f64,
        balanced_accuracy: eval::balanced_accuracy(&m),
        per_class_recall: classes.iter().cloned().zip(recall).collect(),
        confusion,
        binary_tasks,
    })
}

/// The confusion matrices of the taxonomy's first and second levels (the paper's 3-way and
/// 9-way partitions), each over the level's nodes that hold a training class. A level the
/// training classes are coarser than is left out; so is an image labelled above the level.
fn level_confusions(
    classes: &[String],
    taxonomy: &Taxonomy,
    labels: &[&str],
    probs: &[Vec<f32>],
) -> Result<Vec<Confusion>, TaxonomyError> {
    let top: Vec<String> = taxonomy.children(taxonomy.root())?.into_iter().map(str::to_string).collect();
    let second: Vec<String> = top
        .iter()
        .flat_map(|t| taxonomy.children(t).unwrap_or_default())
        .map(str::to_string)
        .collect();
    let mut confusion = Vec::new();
    for (level, nodes) in [("first level", top), ("second level", second)] {
        let nodes: Vec<String> = nodes
            .into_iter()
            .filter(|n| classes.iter().any(|c| taxonomy.is_within(c, n).unwrap_or(false)))
            .collect();
        let Ok(map) = taxonomy.aggregation_map(classes, &nodes) else {
            continue;
        };
        let (mut truth, mut pred) = (Vec::new(), Vec::new());
        for (p, l) in probs.iter().zip(labels) {
            let Some(t) = nodes.iter().position(|n| taxonomy.is_within(l, n).unwrap_or(false)) else {
                continue;
            };
            let agg: Vec<f32> = map.iter().map(|mem| mem.iter().map(|&c| p[c]).sum()).collect();
            truth.push(t);
            pred.push(eval::argmax(&agg));
        }
        confusion.push(Confusion::new(level, nodes.clone(), eval::confusion(&truth, &pred, nodes.len())));
    }
    Ok(confusion)
}

/// One of [`BINARY_TASKS`], `(name, pos, neg)`, over the images labelled within `pos` or
/// `neg`: the score is P(pos) / (P(pos) + P(neg)), each the sum of the training classes below
/// the node.
fn binary_task(
    classes: &[String],
    taxonomy: &Taxonomy,
    labels: &[&str],
    probs: &[Vec<f32>],
    (name, pos, neg): (&str, &str, &str),
) -> Result<BinaryTask, TaxonomyError> {
    let pos_members = taxonomy.aggregation_map(classes, &[pos.to_string()])?.remove(0);
    let neg_members = taxonomy.aggregation_map(classes, &[neg.to_string()])?.remove(0);
    let (mut scores, mut truth) = (Vec::new(), Vec::new());
    for (p, l) in probs.iter().zip(labels) {
        let (is_pos, is_neg) = (taxonomy.is_within(l, pos)?, taxonomy.is_within(l, neg)?);
        if !is_pos && !is_neg {
            continue;
        }
        let pp: f32 = pos_members.iter().map(|&c| p[c]).sum();
        let pn: f32 = neg_members.iter().map(|&c| p[c]).sum();
        scores.push(f64::from(pp) / (f64::from(pp + pn)).max(1e-12));
        truth.push(is_pos);
    }
    let roc = eval::roc_curve(&scores, &truth);
    let auc = eval::auc(&scores, &truth);
    // Without both classes a sensitivity at a specificity is undefined, not 0.
    let defined = if auc.is_some() { SPECIFICITIES.as_slice() } else { &[] };
    Ok(BinaryTask {
        name: name.into(),
        positive: pos.into(),
        negative: neg.into(),
        positives: truth.iter().filter(|&&t| t).count(),
        negatives: truth.iter().filter(|&&t| !t).count(),
        auc,
        auc_ci95: eval::auc_bootstrap_ci(&scores, &truth, 2000, 17),
        sensitivity_at_specificity: defined
            .iter()
            .map(|&s| (s, eval::sensitivity_at_specificity(&roc, s)))
            .collect(),
        roc,
    })
}

/// P(malignant)'s calibration against the images whose label says whether they are malignant
/// (all but those labelled with a node above `malignant`, such as the root).
fn calibration_summary(
    classes: &[String],
    taxonomy: &Taxonomy,
    labels: &[&str],
    probs: &[Vec<f32>],
) -> Result<CalibrationSummary, TaxonomyError> {
    let malignant = taxonomy.aggregation_map(classes, &["malignant".to_string()])?.remove(0);
    let (mut p_mal, mut y_mal) = (Vec::new(), Vec::new());
    for (p, l) in probs.iter().zip(labels) {
        let is_malignant = taxonomy.is_within(l, "malignant")?;
        if is_malignant || !taxonomy.is_within("malignant", l)? {
            p_mal.push(malignant.iter().map(|&c| p[c]).sum::<f32>());
            y_mal.push(is_malignant);
        }
    }
    let n = p_mal.len().max(1) as f64;
    Ok(CalibrationSummary {
        ece_malignant: crate::calibration::ece(&p_mal, &y_mal),
        mean_malignant: p_mal.iter().map(|&p| f64::from(p)).sum::<f64>() / n,
        share_malignant: y_mal.iter().filter(|&&m| m).count() as f64 / n,
        reliability: crate::calibration::reliability(&p_mal, &y_mal, 10),
    })
}
