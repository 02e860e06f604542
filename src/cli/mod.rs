//! The command line, native only: each subcommand in its own module, all of them a thin layer
//! over the library. Problems with single files are reported as the run goes on
//! ([`problems::Problems`]) and make the exit code 1; an error that stops the run makes it 2.

mod args;
mod batches;
mod classify;
mod context_rows;
mod evaluate;
mod files;
mod overlays;
mod problems;
mod results;

use anyhow::{Context, Result};
use args::{Cli, Command};
use burn::prelude::Device;
use clap::{CommandFactory, FromArgMatches};
use dermscreen::classifier::Classifier;
use problems::Problems;
use std::path::Path;
use std::process::ExitCode;

/// The model in `model`, or without one the shipped model built into this program.
fn load_classifier(model: Option<&Path>) -> Result<Classifier> {
    match model {
        Some(dir) => Classifier::load_dir(dir, Device::flex()).with_context(|| format!("loading the model from {}", dir.display())),
        None => Classifier::shipped(Device::flex()).context("loading the built-in model"),
    }
}

/// `dermscreen calibrate`: fits, then rewrites model.json (weights untouched) and writes
/// calibration.json with what was measured.
#[cfg(feature = "train")]
fn calibrate(model: &Path, data: &Path, target_sensitivity: f64) -> Result<()> {
    use dermscreen::fit;
    let classifier = load_classifier(Some(model))?;
    // The shipped model's labels, or those of the training run the folder is.
    let labels = ["validation_split.csv", "val_labels.csv"].map(|f| model.join(f));
    let labels = labels.iter().find(|p| p.exists()).with_context(|| {
        format!("{}: no validation_split.csv or val_labels.csv (the photos the model was validated on)", model.display())
    })?;
    let photos = fit::export_photos(data, labels)?;
    eprintln!("calibrate: {} photos", photos.len());
    let (fitted, report) = fit::fit_export(&classifier, &photos, target_sensitivity)?;
    let path = model.join("model.json");
    let mut meta = dermscreen::classifier::ModelMeta::from_json(&std::fs::read(&path)?)?;
    fitted.apply(&mut meta);
    std::fs::write(&path, serde_json::to_string_pretty(&meta)? + "\n")?;
    std::fs::write(model.join("calibration.json"), serde_json::to_string_pretty(&report)? + "\n")?;
    println!("{}", serde_json::to_string_pretty(&serde_json::json!({
        "high_risk_thresholds": report.high_risk_thresholds,
        "calibration_by_source": report.calibration_by_source.iter().map(|r| serde_json::json!({"source": r.source, "photos": r.photos, "ece_malignant": r.ece_malignant, "ece_top_class": r.ece_top_class})).collect::<Vec<_>>(),
        "uncalibrated_ece_malignant": report.uncalibrated.ece_malignant,
        "flag_by_source": report.flag_by_source,
        "domain_by_source": report.domain_by_source,
        "context": report.context,
        "gate_auroc": report.gate.auroc,
        "gate_rows": report.gate.rows,
        "gated_by_source": report.gated_by_source,
    }))?);
    Ok(())
}

/// `dermscreen train`. On `--resume` every setting comes from the run's saved config, and
/// `--epochs` only when typed: its default would otherwise stretch a shorter run. Other
/// settings typed are checked against the saved ones.
#[cfg(feature = "train")]
fn train(config: dermscreen::train::TrainConfig, out: &Path, resume: bool, no_export: bool, matches: &clap::ArgMatches) -> Result<()> {
    use clap::parser::ValueSource;
    use dermscreen::train::{End, Start};
    let sub = matches.subcommand_matches("train");
    let is_typed = |id: &str| sub.and_then(|m| m.value_source(id)) == Some(ValueSource::CommandLine);
    let train_cmd = Cli::command();
    let typed = train_cmd
        .find_subcommand("train")
        .into_iter()
        .flat_map(|c| c.get_arguments())
        .filter(|a| a.get_id() != "epochs" && is_typed(a.get_id().as_str()))
        .filter_map(|a| Some((a.get_id().to_string(), a.get_long()?.to_string())))
        .collect();
    let start = if resume { Start::Resume { epochs: is_typed("epochs").then_some(config.epochs), typed } } else { Start::New };
    let end = if no_export { End::Checkpoint } else { End::Ship };
    dermscreen::train::run(config, out, start, end)
}

/// `dermscreen export-onnx`: the classifier as one ONNX graph.
#[cfg(feature = "onnx")]
fn export_onnx(model: Option<&Path>, out: &Path) -> Result<()> {
    let bytes = dermscreen::onnx::export(&load_classifier(model)?)?;
    std::fs::write(out, &bytes).with_context(|| out.display().to_string())?;
    println!("wrote {} ({} bytes, opset {})", out.display(), bytes.len(), dermscreen::onnx::OPSET);
    Ok(())
}

/// Whether writing the results failed because their reader closed the pipe. The csv and
/// JSON writers' errors hide their I/O cause from the source chain, so they are asked.
fn is_broken_pipe(e: &anyhow::Error) -> bool {
    let broken = |io: &std::io::Error| io.kind() == std::io::ErrorKind::BrokenPipe;
    e.chain().any(|c| {
        c.downcast_ref::<std::io::Error>().is_some_and(broken)
            || c.downcast_ref::<csv::Error>().is_some_and(|c| matches!(c.kind(), csv::ErrorKind::Io(io) if broken(io)))
            || c.downcast_ref::<serde_json::Error>().and_then(serde_json::Error::io_error_kind) == Some(std::io::ErrorKind::BrokenPipe)
    })
}

/// Subcommands only a build with a cargo feature has: (command, feature, built in).
const OPTIONAL_COMMANDS: [(&str, &str, bool); 3] = [
    ("train", "train", cfg!(feature = "train")),
    ("calibrate", "train", cfg!(feature = "train")),
    ("export-onnx", "onnx", cfg!(feature = "onnx")),
];

/// What to say when `args` (the command line) names one of `optional` that this build
/// lacks: clap alone would call it an unrecognized subcommand, as if it did not exist.
fn not_built(args: &[String], optional: &[(&str, &str, bool)]) -> Option<String> {
    let command = args.iter().skip(1).find(|a| !a.starts_with('-'))?;
    let (_, feature, _) = optional.iter().find(|(c, _, built)| c == command && !built)?;
    Some(format!(
        "`{command}` is not in this build of dermscreen: it needs the `{feature}` feature, as in `cargo run --release --features {feature} -- {command} ...`"
    ))
}

pub fn main() -> ExitCode {
    if let Some(why) = not_built(&std::env::args().collect::<Vec<_>>(), &OPTIONAL_COMMANDS) {
        eprintln!("dermscreen: error: {why}");
        return ExitCode::from(2);
    }
    let matches = Cli::command().get_matches();
    let cli = Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
    let problems = Problems::new(cli.verbose);
    let result = match cli.command {
        Command::Classify { paths, model, format, saliency, context } => classify::run(&paths, model.as_deref(), format, saliency.as_deref(), context.as_deref(), problems),
        Command::Evaluate { images, labels, by, out, model } => evaluate::run(&images, labels.as_deref(), &by, &out, model.as_deref(), problems),
        #[cfg(feature = "train")]
        Command::Calibrate { model, data, target_sensitivity } => {
            calibrate(&model, &data, target_sensitivity).map(|()| true)
        }
        #[cfg(feature = "onnx")]
        Command::ExportOnnx { model, out } => export_onnx(model.as_deref(), &out).map(|()| true),
        #[cfg(feature = "train")]
        Command::Train { config, out, resume, no_export } => train(config, &out, resume, no_export, &matches).map(|()| true),
    };
    match result {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        // The reader went away (`| head`): what it wanted was written; like ripgrep, say nothing.
        Err(e) if is_broken_pipe(&e) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("dermscreen: error: {e:#}");
            ExitCode::from(2)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::not_built;

    #[test]
    fn a_command_this_build_lacks_is_named_with_its_feature() {
        let args = |line: &str| line.split(' ').map(String::from).collect::<Vec<_>>();
        let optional = [("train", "train", false), ("export-onnx", "onnx", true)];
        let why = not_built(&args("dermscreen -v train --out runs/x"), &optional).unwrap();
        assert!(why.contains("`train` is not in this build") && why.contains("--features train -- train"), "{why}");
        assert_eq!(not_built(&args("dermscreen export-onnx --out m.onnx"), &optional), None, "built in");
        assert_eq!(not_built(&args("dermscreen classify train.jpg"), &optional), None, "a photo named train");
        assert_eq!(not_built(&args("dermscreen"), &optional), None);
    }
}
