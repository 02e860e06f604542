//! Photos read, preprocessed and classified a batch at a time.

use super::files::read_photo;
use super::problems::Problems;
use anyhow::Result;
use dermscreen::classifier::{Classifier, Prediction};
use dermscreen::context::Context as PatientContext;
use std::path::PathBuf;

/// Reads and preprocesses each file. Returns `(index into files, model input)` for the
/// readable ones and reports the others.
fn prepare(classifier: &Classifier, files: &[PathBuf], problems: &mut Problems) -> Vec<(usize, Vec<f32>)> {
    let input = |f: &PathBuf| -> Result<Vec<f32>> { Ok(classifier.input_from_bytes(&read_photo(f)?)?) };
    let mut ok = Vec::new();
    for (i, (f, input)) in files.iter().zip(in_parallel(files, input)).enumerate() {
        match input {
            Ok(x) => ok.push((i, x)),
            Err(e) => problems.file(f, &e),
        }
    }
    ok
}

/// The most photos decoded at once. A phone's 12 MP JPEG takes ~0.1 s to decode, most of
/// its time in `classify` (measured: 64 such photos, 9.4 s on one core), so a batch's
/// photos are decoded side by side; each may hold up to `preprocess::DECODE_BUDGET` (160 MB)
/// while it is decoded, so not on every core of a big machine.
const DECODE_THREADS: usize = 4;

/// `f` of each item, in order, on up to [`DECODE_THREADS`] threads.
fn in_parallel<T: Sync, R: Send>(items: &[T], f: impl Fn(&T) -> R + Sync) -> Vec<R> {
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get()).min(DECODE_THREADS);
    let per_thread = items.len().div_ceil(threads).max(1);
    std::thread::scope(|s| {
        let f = &f;
        let parts: Vec<_> = items.chunks(per_thread).map(|part| s.spawn(move || part.iter().map(f).collect::<Vec<R>>())).collect();
        parts.into_iter().flat_map(|h| h.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic))).collect()
    })
}

/// How many images go through the network at once.
pub(crate) const BATCH: usize = 32;

/// Reads, preprocesses and classifies `files` a batch of [`BATCH`] at a time, so memory
/// stays flat however many there are, and hands each batch's readable files (if any) to `each`:
/// `(index into files, model input)`, the inputs end to end (the network's batch) and
/// their predictions. `contexts` is per file (empty: none). Unreadable files are reported.
pub(crate) fn classify_in_batches(
    classifier: &Classifier,
    files: &[PathBuf],
    contexts: &[PatientContext],
    problems: &mut Problems,
    mut each: impl FnMut(&[(usize, Vec<f32>)], &[f32], &[Prediction]) -> Result<()>,
) -> Result<()> {
    for (start, chunk) in (0..).step_by(BATCH).zip(files.chunks(BATCH)) {
        let inputs: Vec<(usize, Vec<f32>)> = prepare(classifier, chunk, problems).into_iter().map(|(i, x)| (start + i, x)).collect();
        if !inputs.is_empty() {
            let batch: Vec<f32> = inputs.iter().flat_map(|(_, x)| x.iter().copied()).collect();
            let ctx: Vec<PatientContext> = inputs.iter().map(|(i, _)| contexts.get(*i).cloned().unwrap_or_default()).collect();
            let predictions = classifier.classify_inputs_with(&batch, &ctx)?;
            each(&inputs, &batch, &predictions)?;
        }
        problems.bar.inc(chunk.len() as u64);
    }
    problems.bar.finish_and_clear();
    Ok(())
}
