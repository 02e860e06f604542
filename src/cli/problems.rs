//! The problems a run reports as it goes, and its progress on stderr.

use super::batches::BATCH;
use indicatif::{ProgressBar, ProgressStyle};
use std::fmt::Display;
use std::path::Path;

/// The problems reported to the user so far (a file that could not be read, a label with no
/// image), one line each: the run goes on, and any of them makes the exit code 1.
pub(crate) struct Problems {
    pub(crate) count: usize,
    verbose: bool,
    /// The progress over the photos, if shown ([`photo_bar`]): a problem's line is printed
    /// above it, not through it.
    pub(crate) bar: ProgressBar,
}

impl Problems {
    /// None yet, and no progress shown; `verbose` adds the causes to each file's reason.
    pub(crate) fn new(verbose: bool) -> Self {
        Self { count: 0, verbose, bar: ProgressBar::hidden() }
    }

    /// One problem, on its own line (above the progress bar, if shown).
    pub(crate) fn report(&mut self, message: impl Display) {
        let message = message.to_string();
        // One line per problem, whatever the message holds (some decoders end theirs in a newline).
        self.bar.suspend(|| eprintln!("dermscreen: {}", message.trim_end().replace(['\n', '\r'], " ")));
        self.count += 1;
    }

    /// A file that could not be used: the reason in words, with its causes under --verbose.
    pub(crate) fn file(&mut self, path: &Path, error: &anyhow::Error) {
        if self.verbose {
            self.report(format_args!("{}: {}", path.display(), dermscreen::error_message(error.as_ref())));
        } else {
            self.report(format_args!("{}: {error}", path.display()));
        }
    }
}

/// A progress bar on stderr over `n` photos, where [`progress_shown`]: a folder of thousands
/// takes minutes.
pub(crate) fn photo_bar(n: usize, results_on_stdout: bool) -> ProgressBar {
    if !progress_shown(n, results_on_stdout) {
        return ProgressBar::hidden();
    }
    ProgressBar::new(n as u64).with_style(ProgressStyle::with_template("{pos}/{len} photos [{bar:30}] eta {eta}").expect("valid template"))
}

/// Whether progress over `n` photos is shown: someone watches stderr (a terminal, and
/// stdout not one when results stream to it, where lines would tangle with the bar), and
/// there is more than one batch.
fn progress_shown(n: usize, results_on_stdout: bool) -> bool {
    use std::io::IsTerminal;
    n > BATCH && std::io::stderr().is_terminal() && !(results_on_stdout && std::io::stdout().is_terminal())
}

/// A spinner with the step's name, for work after the photos that would otherwise look like
/// a hang with the bar full: on HAM10000's 10,015 photos, 4 s of scoring and 23 s of t-SNE.
/// Shown where [`photo_bar`] would be; the caller clears it when the step ends.
pub(crate) fn step_spinner(message: String, n: usize) -> ProgressBar {
    if !progress_shown(n, false) {
        return ProgressBar::hidden();
    }
    let spinner = ProgressBar::new_spinner().with_message(message);
    spinner.enable_steady_tick(std::time::Duration::from_millis(200));
    spinner
}

/// The plural ending of a noun counted `n` times.
pub(crate) fn plural(n: usize) -> &'static str {
    if n == 1 { "" } else { "s" }
}
