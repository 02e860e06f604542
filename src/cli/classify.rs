//! `dermscreen classify`.

use super::args::Format;
use super::batches::classify_in_batches;
use super::context_rows::ContextRows;
use super::files::collect_files;
use super::load_classifier;
use super::overlays::Overlays;
use super::problems::{photo_bar, Problems};
use super::results::Results;
use anyhow::Result;
use dermscreen::classifier::ImageResult;
use dermscreen::context::Context as PatientContext;
use std::path::{Path, PathBuf};

/// Classifies the photos in `paths` (files, folders walked, `-` for standard input) and writes
/// the results to standard output as they come; `Ok(false)` where some photo was a problem.
pub(crate) fn run(paths: &[PathBuf], model: Option<&Path>, format: Format, saliency: Option<&Path>, context: Option<&Path>, mut problems: Problems) -> Result<bool> {
    let classifier = load_classifier(model)?;
    let by_image = context.map(ContextRows::read).transpose()?.unwrap_or_default();
    let files = collect_files(paths, saliency, &mut problems);
    let contexts: Vec<PatientContext> = files
        .iter()
        .map(|f| by_image.for_file(f).unwrap_or_else(|why| {
            problems.report(format_args!("{why}"));
            PatientContext::default()
        }))
        .collect();
    let mut results = Results::new(format, &classifier, std::io::stdout().lock())?;
    problems.bar = photo_bar(files.len(), true);
    let mut overlays = saliency.map(|dir| Overlays::new(dir, &files)).transpose()?;
    classify_in_batches(&classifier, &files, &contexts, &mut problems, |inputs, _, predictions| {
        let rows: Vec<ImageResult> = inputs
            .iter()
            .zip(predictions)
            .map(|((i, _), p)| ImageResult::new(files[*i].display().to_string(), p))
            .collect();
        results.write(&classifier, &rows)?;
        match &mut overlays {
            Some(o) => o.write(&classifier, &files, inputs, predictions),
            None => Ok(()),
        }
    })?;
    results.finish()?;
    if let Some(o) = overlays {
        eprintln!("dermscreen: {}", o.summary());
    }
    Ok(problems.count == 0)
}
