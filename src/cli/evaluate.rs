//! `dermscreen evaluate`: a labelled folder scored, with plots and a report.

use super::batches::classify_in_batches;
use super::files::{collect_files, not_a_file, output_folder};
use super::load_classifier;
use super::problems::{photo_bar, plural, step_spinner, Problems};
use anyhow::{bail, Context, Result};
use dermscreen::classifier::{image_stem, Classifier, Prediction};
use dermscreen::dataset::{self, find_image, Label};
use dermscreen::report;
use std::path::{Path, PathBuf};

/// What `evaluate` writes in `--out`, for the messages about that folder.
const REPORT: &str = "metrics.json and the plots";

/// Scores the labelled photos under `images` and writes the report into `out`; `Ok(false)`
/// where some photo or label row was a problem.
pub(crate) fn run(images: &Path, table_path: Option<&Path>, by: &[String], out: &Path, model: Option<&Path>, mut problems: Problems) -> Result<bool> {
    if !images.is_dir() {
        bail!("{}: no such folder (--images)", images.display());
    }
    if table_path.is_none() && !by.is_empty() {
        bail!("--by names a column of the label table (--labels), and there is none");
    }
    // First of all: a wrong --out is the one error named, not one among the table's.
    not_a_file(out, "--out", REPORT)?;
    let classifier = load_classifier(model)?;
    let photos = LabelledPhotos::find(images, table_path, by, out, &classifier, &mut problems)?;
    // Once the table has photos to score, before any is read: a run over thousands would
    // otherwise end in this error, and a run that fails before it leaves no empty folder.
    output_folder(out, "--out", REPORT)?;
    problems.bar = photo_bar(photos.files.len(), false);
    // Per readable image: its index into files, prediction and last hidden layer (t-SNE).
    let (mut kept, mut predictions, mut embeddings) = (Vec::new(), Vec::new(), Vec::new());
    classify_in_batches(&classifier, &photos.files, &[], &mut problems, |inputs, batch, batch_predictions| {
        kept.extend(inputs.iter().map(|(i, _)| *i));
        predictions.extend_from_slice(batch_predictions);
        embeddings.extend(classifier.embeddings(batch)?);
        Ok(())
    })?;
    if kept.is_empty() {
        bail!("no readable labelled images");
    }
    let evaluation = Evaluation::score(&classifier, &photos, &kept, &predictions, &embeddings)?;
    let metrics = serde_json::json!({
        "model": classifier.meta().name,
        "weights_sha256": classifier.meta().weights.sha256,
        "images_dir": images.display().to_string(),
        "labels": table_path.map(|p| p.display().to_string()),
        "skipped": problems.count,
        "gate": evaluation.gated,
        "class_balanced_call": { "balanced_accuracy": evaluation.call_balanced_accuracy() },
        "high_risk_thresholds": classifier.meta().domain.as_ref().map(|d| &d.high_risk_thresholds),
        "by_source_and_kind": evaluation.groups,
        "summary": evaluation.summary,
    });
    let plots = evaluation.write(&metrics, &classifier, &photos.files, &kept, out)?;
    evaluation.print(by, out, plots);
    Ok(problems.count == 0)
}

/// The photos `evaluate` scores, each found once: its file, the taxonomy node it is scored
/// against, its label, and each `--by` column's values per row of the label table.
struct LabelledPhotos {
    files: Vec<PathBuf>,
    nodes: Vec<String>,
    labels: Vec<Label>,
    by_values: Vec<(String, Vec<String>)>,
}

/// The label rows `evaluate` cannot score, each kind named in one line (a wrong --images or
/// a table in another vocabulary would otherwise fill the screen with one line per row).
#[derive(Default)]
struct Unscored {
    /// Images listed but not found under --images.
    missing: Vec<String>,
    /// Labels that are no taxonomy node: rows carrying each, and the first such image.
    unknown: std::collections::BTreeMap<String, (usize, String)>,
    /// Rows repeating an image listed before (its first row is scored), how many of them
    /// with another label, and the first image repeated.
    repeats: usize,
    relabelled: usize,
    first_repeat: Option<String>,
}

impl LabelledPhotos {
    /// The label table's rows (or without one, the photos' folders) matched to the photos
    /// under `images`; the rows that cannot be scored are reported.
    fn find(images: &Path, table_path: Option<&Path>, by: &[String], out: &Path, classifier: &Classifier, problems: &mut Problems) -> Result<Self> {
        let (classes, taxonomy) = (&classifier.meta().training_classes, classifier.taxonomy());
        let (table, own, by_values) = match table_path {
            Some(path) => {
                let rows = dataset::Table::read(path)?;
                let (labels, own) = dataset::label_table(&rows)?;
                let by_values = by.iter().map(|column| Ok((column.clone(), rows.column(column)?))).collect::<Result<Vec<_>>>()?;
                (labels, own, by_values)
            }
            None => (folder_labels(images, out, taxonomy, problems), None, Vec::new()),
        };
        // What the messages name as the labels' home.
        let home = table_path.unwrap_or(images);
        if let Some(source) = own {
            // Not a problem with the run, but what its numbers mean: most of these photos may
            // have trained the model.
            eprintln!(
                "dermscreen: note: {} is {}'s own table; models trained on taxonomy/sources.json, the shipped one among them, learnt from its photos except the validation photos (model/validation_split.csv, on which the model card reports), so scores on the others are optimistic",
                home.display(),
                source.name
            );
        }
        let mut photos = LabelledPhotos { files: Vec::new(), nodes: Vec::new(), labels: Vec::new(), by_values };
        let mut unscored = Unscored::default();
        // An image listed twice would count twice: its first row is scored, the repeats reported.
        let mut first_label: std::collections::HashMap<PathBuf, String> = std::collections::HashMap::new();
        for label in table {
            let image = &label.image;
            // Taxonomy ids are lower case; ISIC's tables write them in capitals.
            let Some(node) = taxonomy.scored_node(&label.dx.trim().to_ascii_lowercase(), classes) else {
                unscored.unknown.entry(label.dx.clone()).or_insert_with(|| (0, image.clone())).0 += 1;
                continue;
            };
            let Some(path) = find_image(images, image) else {
                unscored.missing.push(image.clone());
                continue;
            };
            let key = std::fs::canonicalize(&path).unwrap_or_else(|_| path.clone());
            if let Some(dx) = first_label.get(&key) {
                unscored.repeats += 1;
                unscored.relabelled += usize::from(!dx.eq_ignore_ascii_case(label.dx.trim()));
                unscored.first_repeat.get_or_insert_with(|| image.clone());
                continue;
            }
            first_label.insert(key, label.dx.trim().to_string());
            photos.files.push(path);
            photos.nodes.push(node);
            photos.labels.push(label);
        }
        unscored.report(home, images, table_path.is_some(), classes, problems);
        if photos.files.is_empty() {
            bail!("{}: no labelled photo to score under {}", home.display(), images.display());
        }
        Ok(photos)
    }
}

impl Unscored {
    /// One line per kind of row not scored; `home` is the label table, or the images folder
    /// whose folders' names are the labels (`from_table` false).
    fn report(&self, home: &Path, images: &Path, from_table: bool, classes: &[String], problems: &mut Problems) {
        if !self.missing.is_empty() {
            let more = if self.missing.len() > 3 { ", ..." } else { "" };
            let n = self.missing.len();
            problems.report(format_args!(
                "{}: {n} labelled image{} {} not under {}: {}{more}",
                home.display(),
                plural(n),
                if n == 1 { "is" } else { "are" },
                images.display(),
                self.missing[..n.min(3)].join(", ")
            ));
        }
        if let Some(first) = &self.first_repeat {
            let (repeats, relabelled) = (self.repeats, self.relabelled);
            problems.report(format_args!(
                "{}: {repeats} row{} {} an image listed before (the first, {first}); {relabelled} of them with another label; each image is scored once, with its first row's label",
                home.display(),
                plural(repeats),
                if repeats == 1 { "repeats" } else { "repeat" }
            ));
        }
        // Without a table, the labels are folders' names and the rows photos.
        let (row, field) = if from_table { ("row", "`dx` takes") } else { ("photo", "a folder may name") };
        for (dx, (rows, first)) in &self.unknown {
            problems.report(format_args!(
                "{}: label '{dx}' ({rows} {row}{}, the first {first}) is not a taxonomy id at, under or above a training class; {field} a taxonomy id (taxonomy/taxonomy.json), such as {}, or benign or malignant where only that is known",
                home.display(),
                plural(*rows),
                classes.join(", ")
            ));
        }
    }
}

/// What `evaluate` measured on the photos it could read.
struct Evaluation {
    summary: report::Summary,
    /// All photos first, then each source, kind and `--by` value.
    groups: Vec<report::GroupRow>,
    /// How many photos the page would have turned away, by gate; every photo is scored.
    gated: std::collections::BTreeMap<&'static str, usize>,
    /// The photos labelled with a training class (index into the photos read, class): what
    /// the accuracies and the t-SNE map need.
    fine: Vec<(usize, usize)>,
    tsne: Option<report::TsneMap>,
}

impl Evaluation {
    /// Scores the photos read (`kept`: their indices into `photos`), with a spinner.
    fn score(classifier: &Classifier, photos: &LabelledPhotos, kept: &[usize], predictions: &[Prediction], embeddings: &[Vec<f32>]) -> Result<Self> {
        let (classes, taxonomy) = (&classifier.meta().training_classes, classifier.taxonomy());
        let spinner = step_spinner(format!("scoring {} photos with 95% intervals", kept.len()), kept.len());
        let nodes: Vec<&str> = kept.iter().map(|i| photos.nodes[*i].as_str()).collect();
        let fine: Vec<(usize, usize)> =
            nodes.iter().enumerate().filter_map(|(j, n)| classes.iter().position(|c| c == n).map(|c| (j, c))).collect();
        let probs: Vec<Vec<f32>> = predictions.iter().map(Prediction::class_probs).collect();
        let mut gated = std::collections::BTreeMap::new();
        for p in predictions {
            *gated.entry(p.gate.id()).or_insert(0usize) += 1;
        }
        // The class-balanced call, scored as balanced accuracy (the calibrated probabilities'
        // argmax favours common diagnoses, as it should for "most likely").
        let calls: Vec<usize> = predictions.iter().map(|p| classes.iter().position(|c| *c == p.diagnosis).unwrap_or(0)).collect();
        let summary = report::summarise_nodes(classes, taxonomy, &nodes, &probs)?;
        let by_kept: Vec<(String, Vec<String>)> = photos
            .by_values
            .iter()
            .map(|(column, values)| (column.clone(), kept.iter().map(|&i| values[photos.labels[i].row].trim().to_string()).collect()))
            .collect();
        let groups = evaluate_groups(classifier, kept, &photos.labels, &by_kept, &nodes, &calls, predictions)?;
        let fine_embeddings: Vec<Vec<f32>> = fine.iter().map(|&(j, _)| embeddings[j].clone()).collect();
        spinner.set_message(format!("mapping {} photos with t-SNE", fine_embeddings.len()));
        let tsne = report::TsneMap::compute(&fine_embeddings, fine.iter().map(|&(_, c)| c).collect(), classes.clone());
        spinner.finish_and_clear();
        Ok(Evaluation { summary, groups, gated, fine, tsne })
    }

    /// Balanced accuracy of the class-balanced call over every photo (the first group).
    fn call_balanced_accuracy(&self) -> Option<f64> {
        self.groups[0].balanced_accuracy
    }

    /// Writes `metrics`, the plots, the t-SNE map and its points, and index.html into `out`;
    /// returns the plots written.
    fn write(&self, metrics: &serde_json::Value, classifier: &Classifier, files: &[PathBuf], kept: &[usize], out: &Path) -> Result<Vec<PathBuf>> {
        let metrics_path = out.join("metrics.json");
        std::fs::write(&metrics_path, serde_json::to_vec_pretty(metrics)?).with_context(|| format!("writing {}", metrics_path.display()))?;
        let classes = &classifier.meta().training_classes;
        let mut plots = report::write_plots(&self.summary, out)?;
        match &self.tsne {
            Some(tsne) => {
                plots.push(report::write_tsne(tsne, out)?);
                let mut points = csv::Writer::from_path(out.join("tsne.csv"))?;
                points.write_record(["image", "label", "x", "y"])?;
                for (&(j, _), (&(x, y), &l)) in self.fine.iter().zip(tsne.points.iter().zip(&tsne.labels)) {
                    points.write_record([image_stem(&files[kept[j]].to_string_lossy()), classes[l].clone(), x.to_string(), y.to_string()])?;
                }
                points.flush()?;
            }
            None => eprintln!(
                "dermscreen: no t-SNE map: it needs at least {} images labelled with a training class, and {} are",
                report::TsneMap::MIN_IMAGES,
                self.fine.len()
            ),
        }
        report::write_html(&self.summary, &self.groups, &format!("dermscreen evaluation: {}", classifier.meta().name), &plots, out)?;
        Ok(plots)
    }

    /// The report in words on standard output.
    fn print(&self, by: &[String], out: &Path, plots: Vec<PathBuf>) {
        print!("{}", report::summary_text(&self.summary));
        println!("class-balanced call (the `diagnosis` column): balanced accuracy {}", report::fmt_opt(self.call_balanced_accuracy()));
        println!("gate (scored anyway): {}", self.gated.iter().map(|(k, v)| format!("{k} {v}")).collect::<Vec<_>>().join(", "));
        if self.groups.len() > 1 {
            let by: String = by.iter().map(|c| format!(", {c}")).collect();
            println!("by source, kind of photo{by} (AUC with 95% interval; the flag as the page shows it):\n{}", report::group_table(&self.groups));
        }
        println!("wrote {} and {} plots", out.join("metrics.json").display(), plots.len());
    }
}

/// Without a label table: each photo under `images` (not under `out`) labelled by its folders
/// ([`dataset::folder_diagnosis`]); the photos under no folder named for a diagnosis are
/// counted in one line.
fn folder_labels(images: &Path, out: &Path, taxonomy: &dermscreen::taxonomy::Taxonomy, problems: &mut Problems) -> Vec<Label> {
    let is_node = |id: &str| id != taxonomy.root() && taxonomy.is_within(id, taxonomy.root()).unwrap_or(false);
    let mut unlabelled = Vec::new();
    let mut labels = Vec::new();
    for (row, file) in collect_files(&[images.to_path_buf()], Some(out), problems).into_iter().enumerate() {
        let image = file.strip_prefix(images).unwrap_or(&file).to_path_buf();
        match dataset::folder_diagnosis(&image, is_node) {
            Some(dx) => labels.push(Label { image: image.display().to_string(), dx, source: None, kind: None, row }),
            None => unlabelled.push(image.display().to_string()),
        }
    }
    if let Some(first) = unlabelled.first() {
        let n = unlabelled.len();
        let (is, which) = if n == 1 { ("is", format!("({first})")) } else { ("are", format!("(the first, {first})")) };
        problems.report(format_args!(
            "{}: {n} photo{} {is} under no folder named for a diagnosis {which}, so not scored: without --labels, a photo's folder names its diagnosis, a taxonomy id such as mel, nv or bcc, benign or malignant, or words such as melanoma or seborrheic keratosis",
            images.display(),
            plural(n)
        ));
    }
    labels
}

/// The headline numbers of all images, then of each source and each kind of photo the
/// label table names (the kind as labelled, not as recognised), then of each value of each
/// `by` column (`(column, value per scored image)`; an empty value is in no group).
fn evaluate_groups(
    classifier: &Classifier,
    kept: &[usize],
    labels: &[Label],
    by: &[(String, Vec<String>)],
    nodes: &[&str],
    calls: &[usize],
    predictions: &[Prediction],
) -> Result<Vec<report::GroupRow>> {
    let taxonomy = classifier.taxonomy();
    let classes = &classifier.meta().training_classes;
    let images: Vec<report::GroupImage> = kept
        .iter()
        .zip(predictions)
        .enumerate()
        .map(|(j, (i, p))| report::GroupImage {
            label: nodes[j].to_string(),
            call: calls[j],
            malignant: taxonomy.is_within(nodes[j], "malignant").unwrap_or(false),
            melanoma: taxonomy.is_within(nodes[j], "malignant_melanocytic").unwrap_or(false),
            flagged: p.high_risk,
            kind_recognised: labels[*i].kind.zip(p.domain).map(|(a, b)| a == b),
        })
        .collect();
    let mut groups: Vec<(String, Vec<usize>)> = vec![("all".into(), (0..images.len()).collect())];
    let mut add = |name: Option<String>, j: usize| {
        if let Some(name) = name {
            match groups.iter_mut().find(|(g, _)| *g == name) {
                Some((_, v)) => v.push(j),
                None => groups.push((name, vec![j])),
            }
        }
    };
    for (j, i) in kept.iter().enumerate() {
        add(labels[*i].source.clone(), j);
    }
    for (j, i) in kept.iter().enumerate() {
        add(labels[*i].kind.map(|k| k.as_str().to_string()), j);
    }
    for (column, values) in by {
        let mut sorted: Vec<(&String, usize)> = values.iter().zip(0..).filter(|(v, _)| !v.is_empty()).collect();
        sorted.sort();
        for (value, j) in sorted {
            add(Some(format!("{column} {value}")), j);
        }
    }
    groups
        .iter()
        .map(|(name, idx)| {
            let subset: Vec<report::GroupImage> = idx.iter().map(|&j| images[j].clone()).collect();
            let probs: Vec<Vec<f32>> = idx.iter().map(|&j| predictions[j].class_probs()).collect();
            Ok(report::GroupRow::new(name, classes, taxonomy, &subset, &probs)?)
        })
        .collect()
}
