//! Validation and evaluation reports: metrics at the training-class and inference level, the
//! paper's two binary tasks and malignant vs benign, and (natively) SVG plots.

use crate::eval;
use crate::taxonomy::{Taxonomy, TaxonomyError};
use serde::Serialize;

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
    let k = classes.len();
    let (fine, fine_labels): (Vec<usize>, Vec<usize>) = labels
        .iter()
        .enumerate()
        .filter_map(|(i, l)| classes.iter().position(|c| c == l).map(|c| (i, c)))
        .unzip();
    let fine_probs: Vec<&[f32]> = fine.iter().map(|&i| probs[i].as_slice()).collect();
    let predicted: Vec<usize> = fine_probs.iter().map(|p| eval::argmax(p)).collect();
    let m = eval::confusion(&fine_labels, &predicted, k);
    let correct = fine_labels.iter().zip(&predicted).filter(|(a, b)| a == b).count();
    let recall = eval::per_class_recall(&m);
    let mut confusion = vec![Confusion::new("training classes", classes.to_vec(), m.clone())];
    let root = taxonomy.root().to_string();
    let top: Vec<String> = taxonomy.children(&root)?.into_iter().map(str::to_string).collect();
    let second: Vec<String> = top
        .iter()
        .flat_map(|t| taxonomy.children(t).unwrap_or_default())
        .map(str::to_string)
        .collect();
    for (level, nodes) in [("first level", top), ("second level", second)] {
        // Keep the nodes the model can score and that hold at least one training class.
        let nodes: Vec<String> = nodes
            .into_iter()
            .filter(|n| classes.iter().any(|c| taxonomy.is_within(c, n).unwrap_or(false)))
            .collect();
        let Ok(map) = taxonomy.aggregation_map(classes, &nodes) else {
            continue; // training classes coarser than this level
        };
        // Each image whose label lies within one of the level's nodes (a label above the
        // level, such as `malignant` at the second, leaves its image out).
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
    let mut binary_tasks = Vec::new();
    for (name, pos, neg) in BINARY_TASKS {
        let pos_members = taxonomy.aggregation_map(classes, &[pos.to_string()])?.remove(0);
        let neg_members = taxonomy.aggregation_map(classes, &[neg.to_string()])?.remove(0);
        let mut scores = Vec::new();
        let mut truth = Vec::new();
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
        binary_tasks.push(BinaryTask {
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
        });
    }
    let malignant = taxonomy.aggregation_map(classes, &["malignant".to_string()])?.remove(0);
    // P(malignant) against the images whose label says whether they are malignant (all but
    // one labelled with a node above `malignant`, such as the root).
    let (mut p_mal, mut y_mal) = (Vec::new(), Vec::new());
    for (p, l) in probs.iter().zip(labels) {
        let is_malignant = taxonomy.is_within(l, "malignant")?;
        if is_malignant || !taxonomy.is_within("malignant", l)? {
            p_mal.push(malignant.iter().map(|&c| p[c]).sum::<f32>());
            y_mal.push(is_malignant);
        }
    }
    let n = p_mal.len().max(1) as f64;
    let calibration = CalibrationSummary {
        ece_malignant: crate::calibration::ece(&p_mal, &y_mal),
        mean_malignant: p_mal.iter().map(|&p| f64::from(p)).sum::<f64>() / n,
        share_malignant: y_mal.iter().filter(|&&m| m).count() as f64 / n,
        reliability: crate::calibration::reliability(&p_mal, &y_mal, 10),
    };
    Ok(Summary {
        calibration,
        images: labels.len(),
        above_classes: labels.len() - fine.len(),
        accuracy: correct as f64 / fine.len().max(1) as f64,
        balanced_accuracy: eval::balanced_accuracy(&m),
        per_class_recall: classes.iter().cloned().zip(recall).collect(),
        confusion,
        binary_tasks,
    })
}

/// The reliability diagram of P(malignant): observed share malignant against predicted, per
/// bin (dot size by count), with the diagonal a calibrated model follows.
#[cfg(not(target_arch = "wasm32"))]
fn write_reliability(summary: &Summary, path: &std::path::Path) -> anyhow::Result<()> {
    use plotters::prelude::*;
    let cal = &summary.calibration;
    let root = SVGBackend::new(path, (520, 520)).into_drawing_area();
    root.fill(&WHITE)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(format!("P(malignant) reliability: ECE {:.3}", cal.ece_malignant), ("sans-serif", 16))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(48)
        .build_cartesian_2d(0f64..1f64, 0f64..1f64)?;
    chart.configure_mesh().x_desc("predicted P(malignant)").y_desc("observed share malignant").draw()?;
    chart.draw_series(LineSeries::new([(0.0, 0.0), (1.0, 1.0)], &BLACK.mix(0.3)))?;
    chart
        .draw_series(LineSeries::new(cal.reliability.iter().map(|b| (b.predicted, b.observed)), BLUE.stroke_width(2)))?
        .label(format!("{} images in 10 bins", summary.images))
        .legend(|(x, y)| PathElement::new([(x, y), (x + 16, y)], BLUE));
    let most = cal.reliability.iter().map(|b| b.count).max().unwrap_or(1) as f64;
    chart.draw_series(cal.reliability.iter().map(|b| {
        Circle::new((b.predicted, b.observed), (3.0 + 7.0 * (b.count as f64 / most).sqrt()) as i32, BLUE.filled())
    }))?;
    chart.configure_series_labels().border_style(BLACK).position(SeriesLabelPosition::LowerRight).draw()?;
    root.present()?;
    Ok(())
}

/// Writes the reliability diagram, one SVG per binary task (ROC with AUC and interval) and one
/// per confusion matrix; returns their paths.
#[cfg(not(target_arch = "wasm32"))]
pub fn write_plots(summary: &Summary, dir: &std::path::Path) -> anyhow::Result<Vec<std::path::PathBuf>> {
    let reliability = dir.join("reliability_malignant.svg");
    write_reliability(summary, &reliability)?;
    let mut written = vec![reliability];
    for task in &summary.binary_tasks {
        let path = dir.join(format!("roc_{}.svg", task.name));
        write_roc(task, &path)?;
        written.push(path);
    }
    for c in &summary.confusion {
        let path = dir.join(format!("confusion_{}.svg", c.level.replace(' ', "_")));
        write_confusion(c, &path)?;
        written.push(path);
    }
    Ok(written)
}

/// One binary task's ROC curve, its AUC and interval in the title.
#[cfg(not(target_arch = "wasm32"))]
fn write_roc(task: &BinaryTask, path: &std::path::Path) -> anyhow::Result<()> {
    use plotters::prelude::*;
    let root = SVGBackend::new(path, (520, 520)).into_drawing_area();
    root.fill(&WHITE)?;
    let title = match (task.auc, task.auc_ci95) {
        (Some(a), Some((lo, hi))) => format!("{}: AUC {a:.3} (95% CI {lo:.3}-{hi:.3})", task.name),
        _ => format!("{}: not enough cases", task.name),
    };
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 16))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(48)
        .build_cartesian_2d(0f64..1f64, 0f64..1f64)?;
    chart
        .configure_mesh()
        .x_desc("1 - specificity")
        .y_desc("sensitivity")
        .draw()?;
    chart.draw_series(LineSeries::new([(0.0, 0.0), (1.0, 1.0)], &BLACK.mix(0.3)))?;
    chart
        .draw_series(LineSeries::new(task.roc.iter().map(|p| (p.fpr, p.tpr)), BLUE.stroke_width(2)))?
        .label(format!("{} positives, {} negatives", task.positives, task.negatives))
        .legend(|(x, y)| PathElement::new([(x, y), (x + 16, y)], BLUE));
    chart.configure_series_labels().border_style(BLACK).position(SeriesLabelPosition::LowerRight).draw()?;
    root.present()?;
    Ok(())
}

/// A confusion matrix, each row shaded by its share of the row's true cases.
#[cfg(not(target_arch = "wasm32"))]
fn write_confusion(c: &Confusion, path: &std::path::Path) -> anyhow::Result<()> {
    use plotters::prelude::*;
    let n = c.labels.len();
    let cell = 64u32.max(360 / n.max(1) as u32);
    let (w, h) = (170 + cell * n as u32, 110 + cell * n as u32);
    let root = SVGBackend::new(path, (w, h)).into_drawing_area();
    root.fill(&WHITE)?;
    let style = ("sans-serif", 13).into_font();
    root.draw(&Text::new(
        format!("Confusion ({}), balanced accuracy {}; rows: truth", c.level, fmt_opt(c.accuracies().map(|a| a.1))),
        (8, 8),
        style.clone(),
    ))?;
    for (i, row) in c.matrix.iter().enumerate() {
        let total: u64 = row.iter().sum::<u64>().max(1);
        let y = 60 + i as i32 * cell as i32;
        root.draw(&Text::new(c.labels[i].clone(), (8, y + cell as i32 / 2 - 6), style.clone()))?;
        for (j, &v) in row.iter().enumerate() {
            let x = 160 + j as i32 * cell as i32;
            let frac = v as f64 / total as f64;
            let shade = RGBColor(
                (255.0 - 200.0 * frac) as u8,
                (255.0 - 140.0 * frac) as u8,
                255,
            );
            root.draw(&Rectangle::new([(x, y), (x + cell as i32 - 2, y + cell as i32 - 2)], shade.filled()))?;
            root.draw(&Text::new(format!("{v}"), (x + 6, y + cell as i32 / 2 - 6), style.clone()))?;
        }
    }
    for (j, l) in c.labels.iter().enumerate() {
        let x = 160 + j as i32 * cell as i32;
        let short: String = l.chars().take(10).collect();
        root.draw(&Text::new(short, (x + 2, 40), ("sans-serif", 11).into_font()))?;
    }
    root.present()?;
    Ok(())
}

/// A 2-D t-SNE map of the last hidden layer, one point per image, coloured by its label.
#[derive(Debug, Clone)]
pub struct TsneMap {
    /// `(x, y)` per image.
    pub points: Vec<(f32, f32)>,
    /// Index into `classes` per image.
    pub labels: Vec<usize>,
    pub classes: Vec<String>,
}

impl TsneMap {
    /// Barnes-Hut t-SNE (bhtsne; perplexity 30, or less for a small set) of `rows` (one
    /// embedding per image), from a seeded start so the same rows give the same map, up to
    /// rounding: bhtsne sums on several threads in varying order, and a point moves in the
    /// fourth decimal from run to run. `None` for fewer than [`Self::MIN_IMAGES`] rows.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn compute(rows: &[Vec<f32>], labels: Vec<usize>, classes: Vec<String>) -> Option<Self> {
        let n = rows.len();
        if n < Self::MIN_IMAGES {
            return None;
        }
        // bhtsne needs n - 1 >= 3 * perplexity (it panics otherwise).
        let perplexity = ((n - 1) as f32 / 3.0).min(30.0);
        let mut seed = 0x2017_0115_u64;
        let start: Vec<f32> = (0..2 * n)
            .map(|_| {
                seed = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
                ((seed >> 40) as f32 / (1u64 << 24) as f32 - 0.5) * 1e-2
            })
            .collect();
        let samples: Vec<&[f32]> = rows.iter().map(Vec::as_slice).collect();
        let flat = bhtsne::tSNE::<f32, &[f32], 2>::new(&samples)
            .perplexity(perplexity)
            .epochs(1000)
            .initial_embedding(start)
            .barnes_hut(0.5, |a, b| a.iter().zip(b.iter()).map(|(x, y)| (x - y).powi(2)).sum::<f32>().sqrt())
            .embedding();
        Some(Self { points: flat.chunks(2).map(|p| (p[0], p[1])).collect(), labels, classes })
    }

    /// The fewest images bhtsne maps: perplexity 1 needs four.
    pub const MIN_IMAGES: usize = 4;
}

/// Draws a [`TsneMap`] as `tsne.svg`, with a legend of the classes.
#[cfg(not(target_arch = "wasm32"))]
pub fn write_tsne(map: &TsneMap, dir: &std::path::Path) -> anyhow::Result<std::path::PathBuf> {
    use plotters::prelude::*;
    let path = dir.join("tsne.svg");
    let range = |f: fn(&(f32, f32)) -> f32| {
        let (lo, hi) = map.points.iter().map(f).fold((f32::MAX, f32::MIN), |(a, b), v| (a.min(v), b.max(v)));
        let pad = 0.05 * (hi - lo).max(1e-3);
        (lo - pad)..(hi + pad)
    };
    {
        let root = SVGBackend::new(&path, (640, 560)).into_drawing_area();
        root.fill(&WHITE)?;
        let mut chart = ChartBuilder::on(&root)
            .caption(format!("t-SNE of the last hidden layer, {} images", map.points.len()), ("sans-serif", 16))
            .margin(12)
            .build_cartesian_2d(range(|p| p.0), range(|p| p.1))?;
        chart.configure_mesh().disable_mesh().disable_axes().draw()?;
        for (k, class) in map.classes.iter().enumerate() {
            let colour = Palette99::pick(k).to_rgba();
            let points = map.points.iter().zip(&map.labels).filter(|(_, &l)| l == k).map(|(&p, _)| p);
            chart
                .draw_series(points.map(|p| Circle::new(p, 2, colour.filled())))?
                .label(class.as_str())
                .legend(move |(x, y)| Circle::new((x + 6, y), 4, colour.filled()));
        }
        chart.configure_series_labels().border_style(BLACK).background_style(WHITE.mix(0.8)).draw()?;
        root.present()?;
    }
    Ok(path)
}

/// Writes `index.html`: the headline numbers and the plots, for a browser.
#[cfg(not(target_arch = "wasm32"))]
pub fn write_html(summary: &Summary, groups: &[GroupRow], title: &str, plots: &[std::path::PathBuf], dir: &std::path::Path) -> std::io::Result<()> {
    let esc = |s: &str| s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;");
    let mut h = String::new();
    h.push_str("<!doctype html><html lang=\"en\"><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width\">");
    h.push_str(&format!("<title>{}</title>", esc(title)));
    h.push_str("<style>body{font-family:sans-serif;max-width:1100px;margin:1em auto;padding:0 1em;color:#111}td,th{padding:4px 10px;border-bottom:1px solid #ccc;text-align:left}img{max-width:100%;margin:8px}</style>");
    h.push_str(&format!("<h1>{}</h1>", esc(title)));
    h.push_str("<p><strong>Screening aid, not a diagnosis.</strong> Numbers below are measured on the labelled images given to <code>dermscreen evaluate</code>.</p>");
    let classes = summary.confusion[0].accuracies();
    h.push_str(&format!(
        "<p>{} images; balanced accuracy <strong>{}</strong>; accuracy {}.",
        summary.images,
        fmt_opt(classes.map(|a| a.1)),
        fmt_opt(classes.map(|a| a.0))
    ));
    if summary.above_classes > 0 {
        h.push_str(&format!(" {} of them are labelled above the training classes (such as benign or malignant): they count in the binary tasks and taxonomy levels their labels decide, not in the training classes' accuracies and recalls.", summary.above_classes));
    }
    h.push_str("</p>");
    // Every photo, then each source, kind and --by value: the flag's numbers are only here.
    let row = |cell: &str, cells: &[String]| cells.iter().map(|c| format!("<{cell}>{}</{cell}>", esc(c))).collect::<String>();
    h.push_str(&format!("<h2>By group (AUC with 95% interval; the flag as the page shows it)</h2><table><tr>{}</tr>", row("th", &GROUP_COLUMNS.map(String::from))));
    for g in groups {
        h.push_str(&format!("<tr>{}</tr>", row("td", &g.cells())));
    }
    h.push_str("</table>");
    h.push_str("<h2>Binary tasks</h2><table><tr><th>task</th><th>positives</th><th>negatives</th><th>AUC</th><th>95% CI</th><th>sensitivity at specificity</th></tr>");
    for t in &summary.binary_tasks {
        let ci = t.auc_ci95.map_or("n/a".into(), |(a, b)| format!("{a:.3}-{b:.3}"));
        let sens: Vec<String> = t.sensitivity_at_specificity.iter().map(|(sp, se)| format!("{se:.2} @ {sp:.2}")).collect();
        let sens = if sens.is_empty() { vec!["n/a".to_string()] } else { sens };
        h.push_str(&format!(
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            esc(&t.name),
            t.positives,
            t.negatives,
            fmt_opt(t.auc),
            ci,
            sens.join(", ")
        ));
    }
    h.push_str("</table><h2>Taxonomy levels</h2><table><tr><th>level</th><th>classes</th><th>accuracy</th><th>balanced accuracy</th></tr>");
    for c in &summary.confusion {
        let a = c.accuracies();
        h.push_str(&format!(
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            esc(&c.level),
            esc(&c.labels.join(", ")),
            fmt_opt(a.map(|a| a.0)),
            fmt_opt(a.map(|a| a.1))
        ));
    }
    h.push_str("</table><h2>Recall per training class</h2><table><tr><th>class</th><th>recall</th></tr>");
    for (c, r) in &summary.per_class_recall {
        h.push_str(&format!("<tr><td>{}</td><td>{}</td></tr>", esc(c), fmt_opt(*r)));
    }
    h.push_str("</table><h2>Plots</h2>");
    for p in plots {
        if let Some(name) = p.file_name().and_then(|n| n.to_str()) {
            h.push_str(&format!("<img src=\"{0}\" alt=\"{0}\">", esc(name)));
        }
    }
    h.push_str("<p><a href=\"metrics.json\">metrics.json</a></p></html>\n");
    std::fs::write(dir.join("index.html"), h)
}

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
