//! One row of headline numbers per group of photos (a source, a kind, a `--by` value), and
//! their table for the terminal.

use super::{fmt_opt, summarise_nodes};
use crate::eval;
use crate::taxonomy::{Taxonomy, TaxonomyError};
use serde::Serialize;

/// A binary task's name, its AUC and the AUC's 95% interval (`None` where the group lacks
/// either side).
pub type TaskAuc = (String, Option<f64>, Option<(f64, f64)>);

/// One source's or kind's headline numbers: what `evaluate` prints per group and the model card
/// tabulates.
#[derive(Debug, Clone, Serialize)]
pub struct GroupRow {
    /// Source (`ham10000`, ...) or kind (`dermoscopic`, `clinical`).
    pub group: String,
    pub images: usize,
    /// Balanced accuracy of the class-balanced call (the `diagnosis` column), over the images
    /// labelled with a training class (`None` without any).
    pub balanced_accuracy: Option<f64>,
    /// Melanoma vs nevus, carcinoma vs keratosis and malignant vs benign, in that order.
    pub aucs: Vec<TaskAuc>,
    pub malignant: usize,
    pub benign: usize,
    /// Share of malignant images the high-risk flag catches, and of benign ones it leaves alone.
    pub flag_sensitivity: Option<f64>,
    pub flag_specificity: Option<f64>,
    /// Melanomas among the images, and the share of them the flag catches (the cancer a
    /// missed flag costs most).
    pub melanomas: usize,
    pub flag_melanoma_sensitivity: Option<f64>,
    /// Share of images the domain head took for the kind the label table gives (when it gives one).
    pub kind_recognised: Option<f64>,
}

/// What [`GroupRow::new`] needs per image besides the probabilities: the class-balanced call,
/// whether it is malignant (a melanoma), whether it was flagged, and whether its kind was
/// recognised.
#[derive(Debug, Clone)]
pub struct GroupImage {
    /// The taxonomy node it is labelled with: a training class, or a node above them.
    pub label: String,
    pub call: usize,
    pub malignant: bool,
    pub melanoma: bool,
    pub flagged: bool,
    pub kind_recognised: Option<bool>,
}

impl GroupRow {
    /// The row for `images` and their training-class probabilities `probs`.
    pub fn new(group: &str, classes: &[String], taxonomy: &Taxonomy, images: &[GroupImage], probs: &[Vec<f32>]) -> Result<Self, TaxonomyError> {
        let labels: Vec<&str> = images.iter().map(|i| i.label.as_str()).collect();
        let summary = summarise_nodes(classes, taxonomy, &labels, probs)?;
        // The class-balanced call against the images labelled with a training class.
        let (fine, calls): (Vec<usize>, Vec<usize>) =
            images.iter().filter_map(|i| classes.iter().position(|c| *c == i.label).map(|l| (l, i.call))).unzip();
        let share = |num: usize, den: usize| (den > 0).then(|| num as f64 / den as f64);
        let (malignant, benign) = (images.iter().filter(|i| i.malignant).count(), images.iter().filter(|i| !i.malignant).count());
        let recognised: Vec<bool> = images.iter().filter_map(|i| i.kind_recognised).collect();
        let melanomas = images.iter().filter(|i| i.melanoma).count();
        Ok(Self {
            group: group.to_string(),
            images: images.len(),
            balanced_accuracy: (!fine.is_empty()).then(|| eval::balanced_accuracy(&eval::confusion(&fine, &calls, classes.len()))),
            aucs: ["melanoma_vs_nevus", "carcinoma_vs_keratosis", "malignant_vs_benign"]
                .iter()
                .map(|name| {
                    let t = summary.binary_tasks.iter().find(|t| t.name == *name);
                    (name.to_string(), t.and_then(|t| t.auc), t.and_then(|t| t.auc_ci95))
                })
                .collect(),
            malignant,
            benign,
            flag_sensitivity: share(images.iter().filter(|i| i.malignant && i.flagged).count(), malignant),
            flag_specificity: share(images.iter().filter(|i| !i.malignant && !i.flagged).count(), benign),
            melanomas,
            flag_melanoma_sensitivity: share(images.iter().filter(|i| i.melanoma && i.flagged).count(), melanomas),
            kind_recognised: share(recognised.iter().filter(|&&r| r).count(), recognised.len()),
        })
    }
}

/// The headings of a [`GroupRow`]'s cells ([`GroupRow::cells`]).
pub const GROUP_COLUMNS: [&str; 10] = [
    "photos",
    "images (malignant)",
    "AUC melanoma vs nevus",
    "AUC carcinoma vs keratosis",
    "AUC malignant vs benign",
    "balanced accuracy",
    "flag: cancers caught",
    "flag: melanomas caught",
    "flag: benign left alone",
    "kind recognised",
];

impl GroupRow {
    /// The row as printed, under [`GROUP_COLUMNS`]: AUCs with their 95% interval, shares in
    /// whole percent, "n/a" where nothing was measured.
    pub fn cells(&self) -> [String; 10] {
        let auc = |v: &TaskAuc| match (v.1, v.2) {
            (Some(a), Some((lo, hi))) => format!("{a:.3} ({lo:.3}-{hi:.3})"),
            (a, _) => fmt_opt(a),
        };
        let pct = |v: Option<f64>| v.map_or("n/a".into(), |x| format!("{:.0}%", 100.0 * x));
        [
            self.group.clone(),
            format!("{} ({})", self.images, self.malignant),
            auc(&self.aucs[0]),
            auc(&self.aucs[1]),
            auc(&self.aucs[2]),
            fmt_opt(self.balanced_accuracy),
            pct(self.flag_sensitivity),
            pct(self.flag_melanoma_sensitivity),
            pct(self.flag_specificity),
            pct(self.kind_recognised),
        ]
    }
}

/// The rows as a Markdown table (what the model card and README carry).
pub fn group_table(rows: &[GroupRow]) -> String {
    let line = |cells: &[String]| format!("| {} |\n", cells.join(" | "));
    let mut out = line(&GROUP_COLUMNS.map(String::from));
    out.push_str(&line(&GROUP_COLUMNS.map(|_| "---".to_string())).replace(' ', ""));
    for r in rows {
        out.push_str(&line(&r.cells()));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn group_row_counts_melanomas_caught_apart_from_all_cancers() {
        let classes: Vec<String> = ["df", "vasc", "bkl", "nv", "akiec", "bcc", "scc", "mel"].map(String::from).to_vec();
        let taxonomy = Taxonomy::bundled();
        let image = |dx: &str, flagged: bool| GroupImage {
            label: dx.to_string(),
            call: 3,
            malignant: taxonomy.is_within(dx, "malignant").unwrap(),
            melanoma: taxonomy.is_within(dx, "malignant_melanocytic").unwrap(),
            flagged,
            kind_recognised: None,
        };
        // 3 of 4 melanomas and 1 of 2 carcinomas flagged; 1 of 4 nevi.
        let images = [("mel", true), ("mel", true), ("mel", true), ("mel", false), ("bcc", true), ("bcc", false), ("nv", true), ("nv", false), ("nv", false), ("nv", false)]
            .map(|(dx, f)| image(dx, f));
        let probs = vec![vec![1.0 / 8.0; 8]; images.len()];
        let row = GroupRow::new("test", &classes, &taxonomy, &images, &probs).unwrap();
        assert_eq!((row.malignant, row.melanomas), (6, 4));
        assert_eq!(row.flag_melanoma_sensitivity, Some(0.75));
        assert_eq!(row.flag_sensitivity, Some(4.0 / 6.0));
        assert_eq!(row.flag_specificity, Some(0.75));
        assert!(group_table(&[row]).contains("| 67% | 75% | 75% |"));
    }
}
