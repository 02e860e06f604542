//! `dermscreen` command line: classify images, evaluate a labelled folder, train (feature
//! `train`). A thin layer over the library.

#[cfg(not(target_arch = "wasm32"))]
fn main() -> std::process::ExitCode {
    native::main()
}

/// The CLI is native only (files, processes); in the browser the library's `web` module is the
/// entry point. This stub lets `cargo test --target wasm32-unknown-unknown` build the bin target.
#[cfg(target_arch = "wasm32")]
fn main() {}

#[cfg(not(target_arch = "wasm32"))]
mod native {
    use anyhow::{bail, Context, Result};
    use burn::prelude::Device;
    use clap::{Parser, Subcommand, ValueEnum};
    use dermscreen::classifier::{image_stem, Classifier, ImageResult, Prediction};
    use dermscreen::{preprocess, report};
    use std::io::Write;
    use std::path::{Path, PathBuf};
    use std::process::ExitCode;

    #[derive(Parser)]
    #[command(name = "dermscreen", version, about = "Skin-lesion screening (a screening aid, not a diagnosis)")]
    struct Cli {
        #[command(subcommand)]
        command: Command,
    }

    #[derive(Subcommand)]
    enum Command {
        /// Classify image files and folders (walked recursively) with the shipped model.
        Classify {
            /// Image files or folders.
            #[arg(required = true)]
            paths: Vec<PathBuf>,
            /// Folder holding model.json and its weights.
            #[arg(long, default_value = "model")]
            model: PathBuf,
            /// Output format.
            #[arg(long, value_enum, default_value_t = Format::Text)]
            format: Format,
        },
        /// Score a labelled folder: balanced accuracy, confusion matrices, ROC/AUC with intervals.
        Evaluate {
            /// Folder with the images.
            #[arg(long)]
            images: PathBuf,
            /// CSV with columns `image,dx` (image: file name with or without extension).
            #[arg(long)]
            labels: PathBuf,
            /// Output folder for metrics.json and SVG plots.
            #[arg(long)]
            out: PathBuf,
            /// Folder holding model.json and its weights.
            #[arg(long, default_value = "model")]
            model: PathBuf,
        },
        /// Train from scratch on HAM10000 (needs `--features train`).
        #[cfg(feature = "train")]
        Train(TrainArgs),
    }

    #[derive(Clone, Copy, ValueEnum)]
    enum Format {
        Text,
        Csv,
        Json,
    }

    #[cfg(feature = "train")]
    #[derive(clap::Args)]
    struct TrainArgs {
        /// HAM10000 folder (metadata.csv and images/).
        #[arg(long)]
        data: PathBuf,
        /// Run folder: checkpoints, model.bpk, model.json, metrics.json.
        #[arg(long)]
        out: PathBuf,
        /// Continue the run in --out from its last checkpoint.
        #[arg(long)]
        resume: bool,
        #[arg(long, default_value_t = 30)]
        epochs: usize,
        #[arg(long, default_value_t = 32)]
        batch_size: usize,
        #[arg(long, default_value_t = 2e-3)]
        lr: f64,
        /// Side of the square network input.
        #[arg(long, default_value_t = 112)]
        input_size: u32,
        #[arg(long, default_value_t = 20_171_025)]
        seed: u64,
        /// maxClassSize of the partitioning algorithm (default: the paper's 1,000 scaled to the data).
        #[arg(long)]
        max_class_size: Option<usize>,
        /// Stop each epoch after this many steps (quick runs).
        #[arg(long)]
        max_steps_per_epoch: Option<usize>,
        /// Use at most this many training images (smoke tests).
        #[arg(long)]
        limit_train: Option<usize>,
        /// Class-balancing exponent: sample weight n_class^-alpha.
        #[arg(long, default_value_t = 0.5)]
        balance_alpha: f64,
    }

    const IMAGE_EXTENSIONS: [&str; 5] = ["jpg", "jpeg", "png", "webp", "jfif"];

    /// Explicit files are always tried; folders contribute files with image extensions.
    fn collect_files(paths: &[PathBuf]) -> (Vec<PathBuf>, Vec<String>) {
        let mut files = Vec::new();
        let mut errors = Vec::new();
        for p in paths {
            if p.is_dir() {
                let mut found: Vec<PathBuf> = walkdir::WalkDir::new(p)
                    .into_iter()
                    .filter_map(|e| match e {
                        Ok(e) => Some(e),
                        Err(err) => {
                            errors.push(format!("{}: {err}", p.display()));
                            None
                        }
                    })
                    .filter(|e| e.file_type().is_file())
                    .map(|e| e.into_path())
                    .filter(|f| {
                        f.extension()
                            .and_then(|x| x.to_str())
                            .is_some_and(|x| IMAGE_EXTENSIONS.contains(&x.to_ascii_lowercase().as_str()))
                    })
                    .collect();
                found.sort();
                files.extend(found);
            } else if p.exists() {
                files.push(p.clone());
            } else {
                errors.push(format!("{}: no such file or folder", p.display()));
            }
        }
        (files, errors)
    }

    fn load_classifier(model: &Path) -> Result<Classifier> {
        Classifier::load_dir(model, Device::flex()).with_context(|| format!("loading the model from {}", model.display()))
    }

    /// Reads, decodes and preprocesses each file; returns the inputs of the readable ones.
    fn prepare(classifier: &Classifier, files: &[PathBuf]) -> (Vec<(PathBuf, Vec<f32>)>, usize) {
        let pre = classifier.meta().preprocess;
        let mut ok = Vec::new();
        let mut failed = 0;
        for f in files {
            let result = std::fs::read(f)
                .map_err(|e| e.to_string())
                .and_then(|bytes| preprocess::decode(&bytes).map_err(|e| e.to_string()));
            match result {
                Ok(img) => ok.push((f.clone(), pre.to_input(&img))),
                Err(e) => {
                    eprintln!("dermscreen: {}: {e}", f.display());
                    failed += 1;
                }
            }
        }
        (ok, failed)
    }

    fn classify_all(classifier: &Classifier, inputs: &[(PathBuf, Vec<f32>)]) -> Result<Vec<Prediction>> {
        let mut out = Vec::with_capacity(inputs.len());
        for chunk in inputs.chunks(32) {
            let flat: Vec<f32> = chunk.iter().flat_map(|(_, x)| x.iter().copied()).collect();
            out.extend(classifier.classify_inputs(&flat)?);
        }
        Ok(out)
    }

    fn classify(paths: &[PathBuf], model: &Path, format: Format) -> Result<bool> {
        let classifier = load_classifier(model)?;
        let (files, walk_errors) = collect_files(paths);
        for e in &walk_errors {
            eprintln!("dermscreen: {e}");
        }
        let (inputs, failed) = prepare(&classifier, &files);
        let predictions = classify_all(&classifier, &inputs)?;
        let stdout = std::io::stdout();
        let mut out = stdout.lock();
        match format {
            Format::Text => {
                for ((path, _), p) in inputs.iter().zip(&predictions) {
                    let top: Vec<String> = p
                        .ranked()
                        .iter()
                        .take(3)
                        .map(|c| format!("{} {:.1}%", c.id, 100.0 * c.probability))
                        .collect();
                    writeln!(
                        out,
                        "{}: malignant {:.1}%{} | top: {}",
                        path.display(),
                        100.0 * p.malignant,
                        if p.high_risk { " HIGH - see a dermatologist" } else { "" },
                        top.join(", ")
                    )?;
                }
                if !predictions.is_empty() {
                    writeln!(out, "Screening aid only, not a diagnosis. If a lesion changes, bleeds or worries you, see a dermatologist.")?;
                }
            }
            Format::Csv => {
                let mut w = csv::Writer::from_writer(out);
                let mut header = vec!["image".to_string()];
                header.extend(classifier.meta().training_classes.iter().cloned());
                header.extend(classifier.inference_nodes().iter().cloned());
                w.write_record(&header)?;
                for ((path, _), p) in inputs.iter().zip(&predictions) {
                    let mut row = vec![image_stem(&path.to_string_lossy())];
                    row.extend(p.classes.iter().chain(&p.nodes).map(|c| format!("{:.6}", c.probability)));
                    w.write_record(&row)?;
                }
                w.flush()?;
            }
            Format::Json => {
                let rows: Vec<ImageResult> = inputs
                    .iter()
                    .zip(&predictions)
                    .map(|((path, _), p)| ImageResult::new(path.display().to_string(), p))
                    .collect();
                serde_json::to_writer_pretty(&mut out, &rows)?;
                writeln!(out)?;
            }
        }
        Ok(failed == 0 && walk_errors.is_empty())
    }

    fn evaluate(images: &Path, labels: &Path, out: &Path, model: &Path) -> Result<bool> {
        let classifier = load_classifier(model)?;
        let classes = classifier.meta().training_classes.clone();
        let taxonomy = classifier.taxonomy().clone();
        let mut rdr = csv::Reader::from_path(labels).with_context(|| format!("reading {}", labels.display()))?;
        let headers = rdr.headers()?.clone();
        let col = |n: &str| headers.iter().position(|h| h == n).with_context(|| format!("{}: no '{n}' column", labels.display()));
        let (ci, cd) = (col("image")?, col("dx")?);
        let mut files = Vec::new();
        let mut label_idx = Vec::new();
        let mut problems = 0;
        for rec in rdr.records() {
            let rec = rec?;
            let (name, dx) = (&rec[ci], &rec[cd]);
            let Some(k) = classes.iter().position(|c| taxonomy.is_within(dx, c).unwrap_or(false)) else {
                eprintln!("dermscreen: {}: label '{dx}' of {name} is not under any training class", labels.display());
                problems += 1;
                continue;
            };
            let direct = images.join(name);
            let path = if direct.is_file() {
                direct
            } else {
                match IMAGE_EXTENSIONS.iter().map(|e| images.join(format!("{name}.{e}"))).find(|p| p.is_file()) {
                    Some(p) => p,
                    None => {
                        eprintln!("dermscreen: {}: no image file for '{name}'", images.display());
                        problems += 1;
                        continue;
                    }
                }
            };
            files.push(path);
            label_idx.push(k);
        }
        let (inputs, failed) = prepare(&classifier, &files);
        let kept: std::collections::HashSet<&PathBuf> = inputs.iter().map(|(p, _)| p).collect();
        let labels_kept: Vec<usize> = files.iter().zip(&label_idx).filter(|(f, _)| kept.contains(f)).map(|(_, &l)| l).collect();
        if inputs.is_empty() {
            bail!("no readable labelled images");
        }
        let predictions = classify_all(&classifier, &inputs)?;
        let probs: Vec<Vec<f32>> = predictions
            .iter()
            .map(|p| p.classes.iter().map(|c| c.probability).collect())
            .collect();
        let summary = report::summarise(&classes, &taxonomy, &labels_kept, &probs)?;
        std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
        let metrics = serde_json::json!({
            "model": classifier.meta().name,
            "weights_sha256": classifier.meta().weights.sha256,
            "images_dir": images.display().to_string(),
            "labels": labels.display().to_string(),
            "skipped": problems + failed,
            "summary": summary,
        });
        std::fs::write(out.join("metrics.json"), serde_json::to_vec_pretty(&metrics)?)?;
        let plots = report::write_plots(&summary, out)?;
        report::write_html(&summary, &format!("dermscreen evaluation: {}", classifier.meta().name), &plots, out)?;
        println!("{} images, balanced accuracy {:.3}, accuracy {:.3}", summary.images, summary.balanced_accuracy, summary.accuracy);
        for (c, r) in &summary.per_class_recall {
            println!("  recall {c:>6}: {}", r.map_or("n/a".into(), |r| format!("{r:.3}")));
        }
        for t in &summary.binary_tasks {
            let ci = t.auc_ci95.map_or(String::new(), |(lo, hi)| format!(" (95% CI {lo:.3}-{hi:.3})"));
            let sens: Vec<String> = t
                .sensitivity_at_specificity
                .iter()
                .map(|(sp, se)| format!("sens {se:.3} @ spec {sp:.2}"))
                .collect();
            println!(
                "  {}: AUC {}{ci}, {} vs {} images; {}",
                t.name,
                t.auc.map_or("n/a".into(), |a| format!("{a:.3}")),
                t.positives,
                t.negatives,
                sens.join(", ")
            );
        }
        println!("wrote {} and {} plots", out.join("metrics.json").display(), plots.len());
        Ok(problems + failed == 0)
    }

    #[cfg(feature = "train")]
    fn train(a: TrainArgs) -> Result<bool> {
        let cfg = dermscreen::train::TrainConfig {
            data: a.data,
            epochs: a.epochs,
            batch_size: a.batch_size,
            learning_rate: a.lr,
            input_size: a.input_size,
            seed: a.seed,
            max_class_size: a.max_class_size,
            max_steps_per_epoch: a.max_steps_per_epoch,
            limit_train: a.limit_train,
            balance_alpha: a.balance_alpha,
            ..Default::default()
        };
        dermscreen::train::run(cfg, &a.out, a.resume)?;
        Ok(true)
    }

    pub fn main() -> ExitCode {
        let cli = Cli::parse();
        let result = match cli.command {
            Command::Classify { paths, model, format } => classify(&paths, &model, format),
            Command::Evaluate { images, labels, out, model } => evaluate(&images, &labels, &out, &model),
            #[cfg(feature = "train")]
            Command::Train(a) => train(a),
        };
        match result {
            Ok(true) => ExitCode::SUCCESS,
            Ok(false) => ExitCode::from(1),
            Err(e) => {
                eprintln!("dermscreen: error: {e:#}");
                ExitCode::from(2)
            }
        }
    }
}
