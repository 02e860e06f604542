//! `dermscreen` command line: classify images, evaluate a labelled folder, train (feature
//! `train`). A thin layer over the library.

/// Burn's CPU backend allocates and frees every activation each training step; glibc's malloc
/// gave those pages back to the kernel each time, and mimalloc keeps them: about 1.07x the
/// images/s of CPU training (model card, Training). Only with `train`, to keep the default build lean.
#[cfg(all(feature = "train", not(feature = "tch")))]
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// libtorch allocates each activation (~170 MB at batch 64 and 144 px) with C's malloc. glibc
/// serves blocks over 32 MB by mmap and unmaps them on free, so every step faulted in and zeroed fresh
/// pages: 22% of the CPU in the kernel's `clear_page`. jemalloc, exporting malloc itself, keeps
/// freed pages for the next step: 113-115 -> 166-170 images/s (model card, Training).
#[cfg(feature = "tch")]
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// jemalloc's options, read at its first call: keep every freed page (no decay back to the
/// kernel). The trainer's peak is its steady state, about 4 GB at the recipe's batch.
#[cfg(feature = "tch")]
#[unsafe(no_mangle)]
static malloc_conf: JemallocConf = JemallocConf(c"retain:true,dirty_decay_ms:-1,muzzy_decay_ms:-1".as_ptr());

/// A C string pointer that may be a `static` (it points at a literal).
#[cfg(feature = "tch")]
#[repr(transparent)]
struct JemallocConf(*const std::ffi::c_char);
#[cfg(feature = "tch")]
unsafe impl Sync for JemallocConf {}

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
    use clap::{CommandFactory, FromArgMatches, Parser, Subcommand, ValueEnum};
    use dermscreen::classifier::{image_stem, Classifier, ImageResult, Prediction, UNSURE_BELOW};
    use dermscreen::context::{Context as PatientContext, FIELDS};
    use dermscreen::dataset::{self, find_image, Label, IMAGE_EXTENSIONS};
    use dermscreen::gate::Gate;
    use dermscreen::saliency::{self, OcclusionConfig};
    use dermscreen::{preprocess, report};
    use indicatif::{ProgressBar, ProgressStyle};
    use std::fmt::Display;
    use std::io::Write;
    use std::path::{Path, PathBuf};
    use std::process::ExitCode;

    #[derive(Parser)]
    #[command(name = "dermscreen", version, about = "Skin-lesion screening (a screening aid, not a diagnosis)")]
    struct Cli {
        /// Add the decoder's own words to each file's error (for bug reports).
        #[arg(long, short, global = true)]
        verbose: bool,
        #[command(subcommand)]
        command: Command,
    }

    #[derive(Subcommand)]
    // `allow`, not `expect`: only with the trainer's options (`--features train`) is it large.
    #[allow(clippy::large_enum_variant, reason = "one per run, parsed once: boxing the training options would buy nothing")]
    enum Command {
        /// Classify image files and folders (walked recursively) with the shipped model.
        Classify {
            /// Image files or folders; `-` reads one photo from standard input.
            #[arg(required = true)]
            paths: Vec<PathBuf>,
            /// Folder holding model.json and its weights [default: the shipped model, built
            /// into this program].
            #[arg(long, value_name = "DIR")]
            model: Option<PathBuf>,
            /// Output format.
            #[arg(long, value_enum, default_value_t = Format::Text)]
            format: Format,
            /// Also write, per image given a risk, a PNG of where the model looked (DIR/<image>.png): the
            /// photo's centre square with the occlusion saliency of the diagnosis it leans to over it.
            /// DIR is not read as input, and an overlay never replaces a photo being classified.
            #[arg(long, value_name = "DIR")]
            saliency: Option<PathBuf>,
            /// Optional patient context per image: a CSV with an `image` column (file name, with
            /// or without folders and extension) and any of
            /// `age,sex,site,grew,changed,bled,itched,hurt,elevated` (empty = not given; sex
            /// male/female; site a HAM10000 localization; the questions true/false). A photo gets
            /// the row sharing the longest ending with its path, so folders tell apart photos
            /// of the same name.
            #[arg(long, value_name = "FILE.csv")]
            context: Option<PathBuf>,
        },
        /// Score a labelled folder: balanced accuracy, confusion matrices, ROC/AUC with intervals.
        Evaluate {
            /// Folder with the images.
            #[arg(long)]
            images: PathBuf,
            /// CSV with columns `image,dx` (image: file name or path, with or without extension;
            /// `image_id`, `img_id`, `isic_id`, `image_name`, `DDI_file` or `md5hash` are read as
            /// `image`), or a data set's own table as it comes: HAM10000's or PAD-UFES-20's
            /// metadata.csv, an ISIC challenge's ground truth, DDI's, Fitzpatrick17k's or
            /// derm7pt's (README). Without it, each photo under --images is labelled by the
            /// nearest folder above it named for a diagnosis: a taxonomy id in any case (`mel`,
            /// `BCC`, `benign`, `malignant`) or words (`melanoma`, `seborrheic keratosis`).
            #[arg(long)]
            labels: Option<PathBuf>,
            /// Also report each value of this column of the label table apart, a row per value
            /// beside the sources and kinds: `skin_tone` (DDI), `fitzpatrick_scale`
            /// (Fitzpatrick17k), `fitspatrick` (PAD-UFES-20), `sex`, ... Repeat for several;
            /// a photo with no value is in none of its rows.
            #[arg(long, value_name = "COLUMN")]
            by: Vec<String>,
            /// Output folder for metrics.json and SVG plots.
            #[arg(long)]
            out: PathBuf,
            /// Folder holding model.json and its weights [default: the shipped model, built
            /// into this program].
            #[arg(long, value_name = "DIR")]
            model: Option<PathBuf>,
        },
        /// Fit the model's calibration, high-risk threshold and "not a skin spot" gate on
        /// photos it was not trained on, and write them into its model.json (needs
        /// `--features train`; the trainer's export runs the same).
        #[cfg(feature = "train")]
        Calibrate {
            /// Folder holding model.json, its weights and its validation labels
            /// (validation_split.csv, or a training run's val_labels.csv).
            #[arg(long, default_value = "model")]
            model: PathBuf,
            /// Data root: the folders the validation labels' paths start from, and ood/.
            #[arg(long, default_value = "../shared/data")]
            data: PathBuf,
            /// Share of the malignant validation photos of each source the high-risk flag must catch (a threshold per kind of photo, set by its most demanding source).
            #[arg(long, default_value_t = 0.9)]
            target_sensitivity: f64,
        },
        /// Write the network as an ONNX graph, from the preprocessed input to the calibrated
        /// probabilities (needs `--features onnx`; `./build.sh bench` runs it in onnxruntime).
        #[cfg(feature = "onnx")]
        ExportOnnx {
            /// Folder holding model.json and its weights [default: the shipped model, built
            /// into this program].
            #[arg(long, value_name = "DIR")]
            model: Option<PathBuf>,
            /// The .onnx file to write.
            #[arg(long)]
            out: PathBuf,
        },
        /// Train from scratch on the sources of taxonomy/sources.json (needs `--features train`).
        #[cfg(feature = "train")]
        Train {
            #[command(flatten)]
            config: dermscreen::train::TrainConfig,
            /// Run folder: checkpoints, model.bpk, model.json, metrics.json.
            #[arg(long)]
            out: PathBuf,
            /// Continue the run in --out from its last checkpoint, with the settings it was
            /// started with (a setting typed here must be the same); --epochs N takes it further.
            #[arg(long)]
            resume: bool,
            /// Stop after the last epoch's checkpoint, without the final validation and the
            /// export (timing runs); `--resume` later ships the run without training again.
            #[arg(long)]
            no_export: bool,
        },
    }

    #[derive(Clone, Copy, ValueEnum)]
    enum Format {
        Text,
        Csv,
        Json,
    }

    /// Pictures people have that the app does not read: in a folder they are tried too, so each
    /// gets its own reason instead of being passed over in silence.
    const OTHER_IMAGE_EXTENSIONS: [&str; 8] = ["gif", "bmp", "tif", "tiff", "heic", "heif", "avif", "dng"];

    /// The problems reported to the user so far (a file that could not be read, a label with no
    /// image), one line each: the run goes on, and any of them makes the exit code 1.
    struct Problems {
        count: usize,
        verbose: bool,
        /// The progress over the photos, if shown ([`photo_bar`]): a problem's line is printed
        /// above it, not through it.
        bar: ProgressBar,
    }

    impl Problems {
        fn report(&mut self, message: impl Display) {
            let message = message.to_string();
            // One line per problem, whatever the message holds (some decoders end theirs in a newline).
            self.bar.suspend(|| eprintln!("dermscreen: {}", message.trim_end().replace(['\n', '\r'], " ")));
            self.count += 1;
        }

        /// A file that could not be used: the reason in words, with its causes under --verbose.
        fn file(&mut self, path: &Path, error: &anyhow::Error) {
            if self.verbose {
                self.report(format_args!("{}: {}", path.display(), dermscreen::error_message(error.as_ref())));
            } else {
                self.report(format_args!("{}: {error}", path.display()));
            }
        }
    }

    /// A progress bar on stderr over `n` photos, where [`progress_shown`]: a folder of thousands
    /// takes minutes.
    fn photo_bar(n: usize, results_on_stdout: bool) -> ProgressBar {
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
    fn step_spinner(message: String, n: usize) -> ProgressBar {
        if !progress_shown(n, false) {
            return ProgressBar::hidden();
        }
        let spinner = ProgressBar::new_spinner().with_message(message);
        spinner.enable_steady_tick(std::time::Duration::from_millis(200));
        spinner
    }

    fn extension_in(f: &Path, list: &[&str]) -> bool {
        f.extension()
            .and_then(|x| x.to_str())
            .is_some_and(|x| list.contains(&x.to_ascii_lowercase().as_str()))
    }

    /// Explicit files are always tried; folders contribute files with image extensions, and a
    /// folder with no JPEG, PNG or WebP file in it is a problem, not silence. Links are followed
    /// (a folder of links to photos is a common way to pick a set), and a link loop is reported.
    /// Inside a folder given, hidden files and folders are passed over, as ripgrep does: a
    /// phone's camera folder holds a thumbnail of each photo (`.thumbnails/`) and macOS leaves a
    /// `._` file beside each, neither a photo of its own. So is `output`, where this run writes
    /// images (`--saliency`): its overlays are not photos.
    fn collect_files(paths: &[PathBuf], output: Option<&Path>, problems: &mut Problems) -> Vec<PathBuf> {
        let output = output.and_then(|o| std::fs::canonicalize(o).ok());
        let not_read = |e: &walkdir::DirEntry| {
            let is_output = || e.file_type().is_dir() && output.is_some() && std::fs::canonicalize(e.path()).ok() == output;
            e.depth() > 0 && (e.file_name().to_string_lossy().starts_with('.') || is_output())
        };
        let mut files = Vec::new();
        for p in paths {
            if p.as_os_str() == STDIN {
                files.push(p.clone());
            } else if p.is_dir() {
                let mut found = Vec::new();
                let (mut usable, mut passed_over) = (0, 0);
                for entry in walkdir::WalkDir::new(p).follow_links(true).into_iter().filter_entry(|e| !not_read(e)) {
                    match entry {
                        Ok(e) if !e.file_type().is_file() => {}
                        Ok(e) if extension_in(e.path(), &IMAGE_EXTENSIONS) => {
                            usable += 1;
                            found.push(e.into_path());
                        }
                        Ok(e) if extension_in(e.path(), &OTHER_IMAGE_EXTENSIONS) => found.push(e.into_path()),
                        Ok(_) => passed_over += 1,
                        Err(err) => problems.report(walk_error(p, &err)),
                    }
                }
                if usable == 0 {
                    let others = if passed_over > 0 { format!(" ({passed_over} other files passed over)") } else { String::new() };
                    problems.report(format_args!("{}: no JPEG, PNG or WebP photo in this folder{others}", p.display()));
                }
                found.sort();
                files.extend(found);
            } else if p.exists() {
                files.push(p.clone());
            } else {
                problems.report(format_args!("{}: no such file or folder", p.display()));
            }
        }
        files
    }

    /// A folder walk's problem, named by the path it is about rather than the folder given: a
    /// link to a photo since moved or deleted, a link back up the tree, a folder not readable.
    fn walk_error(root: &Path, err: &walkdir::Error) -> String {
        match (err.path(), err.loop_ancestor(), err.io_error()) {
            (Some(path), Some(ancestor), _) => {
                format!("{}: a link back to {}, which is being read already (passed over)", path.display(), ancestor.display())
            }
            (Some(path), _, Some(io)) if io.kind() == std::io::ErrorKind::NotFound && path.is_symlink() => {
                format!("{}: a broken link (what it points to does not exist)", path.display())
            }
            (Some(path), _, Some(io)) => format!("{}: {io}", path.display()),
            _ => format!("{}: {err}", root.display()),
        }
    }

    /// The model in `model`, or without one the shipped model built into this program.
    fn load_classifier(model: Option<&Path>) -> Result<Classifier> {
        match model {
            Some(dir) => Classifier::load_dir(dir, Device::flex()).with_context(|| format!("loading the model from {}", dir.display())),
            None => Classifier::shipped(Device::flex()).context("loading the built-in model"),
        }
    }

    /// The path that stands for standard input (`curl ... | dermscreen classify -`); a file of
    /// that name is `./-`.
    const STDIN: &str = "-";

    /// The bytes of the photo at `path`. Standard input is read once and kept: `--saliency`
    /// decodes a photo a second time.
    fn read_photo(path: &Path) -> std::io::Result<Vec<u8>> {
        static PIPED: std::sync::OnceLock<Result<Vec<u8>, std::io::ErrorKind>> = std::sync::OnceLock::new();
        if path.as_os_str() != STDIN {
            return std::fs::read(path);
        }
        let piped = PIPED.get_or_init(|| {
            let mut bytes = Vec::new();
            std::io::Read::read_to_end(&mut std::io::stdin().lock(), &mut bytes).map(|_| bytes).map_err(|e| e.kind())
        });
        piped.clone().map_err(|kind| std::io::Error::new(kind, "reading standard input"))
    }

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
    const BATCH: usize = 32;

    /// The context file of `classify --context`. A row's `image` names a photo by its file name,
    /// or with folders, with or without extension. A photo gets the row whose path shares the
    /// longest ending with its own (at least the name), so photos sharing a name in different
    /// folders (IMG_0001.jpg) each get their own row, and a table written with other folders
    /// still matches by name. A value the context does not accept stops the run with the file,
    /// the row and the field named.
    #[derive(Default)]
    struct ContextRows {
        /// Per file stem: the row's path components (extension dropped), its answers, its row.
        by_stem: std::collections::HashMap<String, Vec<(Vec<String>, PatientContext, usize)>>,
        file: PathBuf,
    }

    impl ContextRows {
        /// A table with an `image` column and any of [`FIELDS`], or a data set's own table
        /// ([`dataset::source_contexts`]).
        fn read(path: &Path) -> Result<Self> {
            let table = dataset::Table::read(path)?;
            let answers = match dataset::source_contexts(&table)? {
                Some(answers) => answers,
                None => Self::read_fields(&table, path)?,
            };
            let mut rows = Self { file: path.to_path_buf(), ..Self::default() };
            for (row, (named, context)) in answers.into_iter().enumerate() {
                let (named, row) = (named.as_str(), row + 2);
                let parts = Self::components(named);
                let same = rows.by_stem.entry(image_stem(named)).or_default();
                match same.iter().find(|(p, _, _)| *p == parts) {
                    Some((_, answers, first)) if *answers != context => {
                        bail!("{}: row {row} ({named}) names the same photo as row {first} with other answers", path.display());
                    }
                    Some(_) => {}
                    None => same.push((parts, context, row)),
                }
            }
            Ok(rows)
        }

        /// Per row, the `image` column and the answers in the columns named as [`FIELDS`].
        fn read_fields(table: &dataset::Table, path: &Path) -> Result<Vec<(String, PatientContext)>> {
            let headers = table.headers();
            let image = headers.iter().position(|h| h == "image").with_context(|| {
                format!("{}: no `image` column (nor the columns of HAM10000's or PAD-UFES-20's own metadata.csv)", path.display())
            })?;
            let fields: Vec<(usize, &str)> = headers.iter().enumerate().filter_map(|(i, h)| FIELDS.iter().find(|f| **f == h).map(|f| (i, *f))).collect();
            let mut answers = Vec::new();
            for (row, rec) in table.rows().iter().enumerate() {
                let named = rec.get(image).unwrap_or_default().to_string();
                let context = PatientContext::from_pairs(fields.iter().map(|&(i, f)| (f, rec.get(i).unwrap_or_default())))
                    .with_context(|| format!("{}: row {} ({named})", path.display(), row + 2))?;
                answers.push((named, context));
            }
            Ok(answers)
        }

        /// A path's folders and file stem, in order.
        fn components(path: &str) -> Vec<String> {
            let mut parts: Vec<String> = path.split(['/', '\\']).filter(|p| !p.is_empty() && *p != ".").map(str::to_string).collect();
            if let Some(last) = parts.last_mut() {
                *last = image_stem(last);
            }
            parts
        }

        /// The answers for `file`, none without a row for its name, or an error naming the
        /// rows when several fit it equally well with different answers.
        fn for_file(&self, file: &Path) -> Result<PatientContext, String> {
            let parts = Self::components(&file.to_string_lossy());
            let Some(rows) = parts.last().and_then(|stem| self.by_stem.get(stem)) else {
                return Ok(PatientContext::default());
            };
            let shared = |row: &[String]| row.iter().rev().zip(parts.iter().rev()).take_while(|(a, b)| a == b).count();
            let best = rows.iter().map(|(row, _, _)| shared(row)).max().unwrap_or(0);
            let fits: Vec<&(Vec<String>, PatientContext, usize)> = rows.iter().filter(|(row, _, _)| shared(row) == best).collect();
            if fits.iter().all(|(_, answers, _)| *answers == fits[0].1) {
                return Ok(fits[0].1.clone());
            }
            let numbers: Vec<String> = fits.iter().map(|(_, _, n)| n.to_string()).collect();
            Err(format!(
                "{}: rows {} of {} fit it equally, with different answers; judged on the photo alone (name its folder in the `image` column)",
                file.display(),
                numbers.join(", "),
                self.file.display()
            ))
        }
    }

    const REMINDER: &str = "Screening aid only, not a diagnosis. If a lesion changes, bleeds or worries you, see a dermatologist.";

    fn write_text(out: &mut impl Write, rows: &[ImageResult]) -> Result<()> {
        for r in rows {
            let p = r.prediction;
            if let Some(message) = r.gate_message {
                writeln!(out, "{}: no risk given ({}): {message}", r.path, r.gate.id())?;
                continue;
            }
            let top: Vec<String> =
                p.ranked().iter().take(3).map(|c| format!("{} {:.1}%", c.short_name(), 100.0 * c.probability)).collect();
            let kind = p.domain.map_or(String::new(), |k| format!(" | taken for a {} photo", kind_words(k)));
            let kind = if p.context_used.is_empty() { kind } else { format!("{kind} | context: {}", p.context_used.join(", ")) };
            let unsure = if p.unsure() { format!(" | unsure: no diagnosis reaches {:.0}%", 100.0 * UNSURE_BELOW) } else { String::new() };
            writeln!(
                out,
                "{}: malignant {:.1}%{} | top: {}{unsure}{kind}",
                r.path,
                100.0 * p.malignant,
                if p.high_risk { " HIGH - see a dermatologist" } else { "" },
                top.join(", ")
            )?;
        }
        Ok(())
    }

    /// How the text output names a kind of photo.
    fn kind_words(k: dermscreen::dataset::Kind) -> &'static str {
        match k {
            dermscreen::dataset::Kind::Dermoscopic => "dermoscopic",
            dermscreen::dataset::Kind::Clinical => "plain camera (clinical)",
        }
    }

    /// One row per image: its name, the gate, the lesion score, the kind of photo it was taken
    /// for, P(malignant), the flag (true/false, as the page shows it) and the class-balanced
    /// call, then every training class and inference node, the context used and the path as
    /// given (two photos in different folders may share a name), and whether no diagnosis
    /// reaches [`UNSURE_BELOW`] (last, so the columns before it keep their places). A gated
    /// image's risk columns and `unsure` are empty.
    fn csv_header<W: Write>(w: &mut csv::Writer<W>, classifier: &Classifier) -> Result<()> {
        let ids = classifier.meta().training_classes.iter().chain(classifier.inference_nodes());
        let head = ["image", "gate", "lesion_score", "domain", "malignant", "high_risk", "diagnosis"];
        w.write_record(head.into_iter().chain(ids.map(String::as_str)).chain(["context_used", "path", "unsure"]))?;
        Ok(())
    }

    /// The rows under [`csv_header`].
    fn write_csv<W: Write>(w: &mut csv::Writer<W>, classifier: &Classifier, rows: &[ImageResult]) -> Result<()> {
        let width = classifier.meta().training_classes.len() + classifier.inference_nodes().len();
        for r in rows {
            let p = r.prediction;
            let gate = r.gate.id().to_string();
            let score = r.lesion_score.map(|s| format!("{s:.3}")).unwrap_or_default();
            let domain = r.domain.map_or("", |k| k.as_str()).to_string();
            let mut record = vec![r.image.clone(), gate, score, domain];
            match r.malignant {
                Some(m) => {
                    record.push(format!("{m:.6}"));
                    record.push(p.high_risk.to_string());
                    record.push(p.diagnosis.clone());
                    record.extend(p.classes.iter().chain(&p.nodes).map(|c| format!("{:.6}", c.probability)));
                }
                None => record.extend(std::iter::repeat_n(String::new(), 3 + width)),
            }
            record.push(r.context_used.join(";"));
            record.push(r.path.clone());
            record.push(r.unsure.map_or(String::new(), |u| u.to_string()));
            w.write_record(record)?;
        }
        Ok(())
    }

    /// Where `classify` writes its results, a chunk of images at a time: they appear as they
    /// are ready, and nothing about an image is kept once it is written.
    #[expect(clippy::large_enum_variant, reason = "one per run: boxing the CSV writer would buy nothing")]
    enum Results<W: Write> {
        Text { out: W, any: bool },
        Csv(csv::Writer<W>),
        /// One JSON array, its elements written as they come.
        Json { out: W, any: bool },
    }

    impl<W: Write> Results<W> {
        fn new(format: Format, classifier: &Classifier, out: W) -> Result<Self> {
            Ok(match format {
                Format::Text => Self::Text { out, any: false },
                Format::Csv => {
                    let mut w = csv::Writer::from_writer(out);
                    csv_header(&mut w, classifier)?;
                    Self::Csv(w)
                }
                Format::Json => Self::Json { out, any: false },
            })
        }

        fn write(&mut self, classifier: &Classifier, rows: &[ImageResult]) -> Result<()> {
            match self {
                Self::Text { out, any } => {
                    write_text(out, rows)?;
                    *any |= !rows.is_empty();
                    out.flush()?;
                }
                Self::Csv(w) => {
                    write_csv(w, classifier, rows)?;
                    w.flush()?;
                }
                Self::Json { out, any } => {
                    for row in rows {
                        out.write_all(if *any { b",\n" } else { b"[\n" })?;
                        serde_json::to_writer_pretty(&mut *out, row)?;
                        *any = true;
                    }
                    out.flush()?;
                }
            }
            Ok(())
        }

        /// Closes the JSON array; under text results, the reminder that this is not a diagnosis.
        fn finish(self) -> Result<()> {
            match self {
                Self::Text { mut out, any } if any => writeln!(out, "{REMINDER}")?,
                Self::Text { .. } => {}
                Self::Csv(mut w) => w.flush()?,
                Self::Json { mut out, any } => out.write_all(if any { b"\n]\n" } else { b"[]\n" })?,
            }
            Ok(())
        }
    }

    /// Saliency overlays written into one folder, each named after its image (a repeated name
    /// gets `-2`, `-3`, ...). A name that is one of the photos being classified (a PNG in that
    /// folder) is passed over for the next: an overlay never replaces a photo.
    struct Overlays<'a> {
        dir: &'a Path,
        used: std::collections::HashMap<String, usize>,
        photos: std::collections::HashSet<PathBuf>,
        written: usize,
        /// Photos given no risk: no map, as on the page (a map explains a diagnosis).
        gated: usize,
    }

    /// Creates the folder `option` names for what a run writes (`holds`), after [`not_a_file`].
    fn output_folder(dir: &Path, option: &str, holds: &str) -> Result<()> {
        not_a_file(dir, option, holds)?;
        std::fs::create_dir_all(dir).with_context(|| format!("creating {} ({option})", dir.display()))
    }

    /// A file where `option` wants a folder for `holds` is named, with what the option takes.
    fn not_a_file(dir: &Path, option: &str, holds: &str) -> Result<()> {
        if dir.is_file() {
            bail!("{} is a file: {option} takes a folder, for {holds}", dir.display());
        }
        Ok(())
    }

    impl<'a> Overlays<'a> {
        fn new(dir: &'a Path, files: &[PathBuf]) -> Result<Self> {
            // Made at the first overlay: a run with none leaves no empty folder.
            not_a_file(dir, "--saliency", "one PNG per photo")?;
            let photos = files.iter().filter_map(|f| std::fs::canonicalize(f).ok()).collect();
            Ok(Self { dir, used: Default::default(), photos, written: 0, gated: 0 })
        }

        /// The next free name for an overlay of a photo named `stem`.
        fn path_for(&mut self, stem: String) -> PathBuf {
            loop {
                let n = self.used.entry(stem.clone()).and_modify(|n| *n += 1).or_insert(1);
                let name = if *n == 1 { format!("{stem}.png") } else { format!("{stem}-{n}.png") };
                let path = self.dir.join(name);
                if !std::fs::canonicalize(&path).is_ok_and(|p| self.photos.contains(&p)) {
                    return path;
                }
            }
        }

        /// One overlay per classified input the gate passed; `files` is what the inputs'
        /// indices point into.
        fn write(&mut self, classifier: &Classifier, files: &[PathBuf], inputs: &[(usize, Vec<f32>)], predictions: &[Prediction]) -> Result<()> {
            for ((i, input), p) in inputs.iter().zip(predictions) {
                if p.gate == Gate::Ok {
                    self.write_one(classifier, &files[*i], input)?;
                } else {
                    self.gated += 1;
                }
            }
            Ok(())
        }

        /// What was written, for stderr.
        fn summary(&self) -> String {
            let mut line = match self.written {
                0 => "wrote no saliency overlay".to_string(),
                n => format!("wrote {n} saliency overlay{} to {}", plural(n), self.dir.display()),
            };
            if self.gated > 0 {
                line += &format!(" (none for the {} photo{} given no risk)", self.gated, plural(self.gated));
            }
            line
        }

        fn write_one(&mut self, classifier: &Classifier, file: &Path, input: &[f32]) -> Result<()> {
            let saliency = classifier.saliency_of(input, &OcclusionConfig::default())?;
            // The file decoded a moment ago; decode again for the display-size photo.
            let photo = preprocess::decode(&read_photo(file)?)?;
            if self.written == 0 {
                output_folder(self.dir, "--saliency", "one PNG per photo")?;
            }
            let path = self.path_for(image_stem(&file.to_string_lossy()));
            saliency::overlay_with_legend(&photo, &saliency)
                .save(&path)
                .with_context(|| format!("writing {}", path.display()))?;
            self.written += 1;
            Ok(())
        }
    }

    /// Reads, preprocesses and classifies `files` a batch of [`BATCH`] at a time, so memory
    /// stays flat however many there are, and hands each batch's readable files (if any) to `each`:
    /// `(index into files, model input)`, the inputs end to end (the network's batch) and
    /// their predictions. `contexts` is per file (empty: none). Unreadable files are reported.
    fn classify_in_batches(
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

    fn classify(paths: &[PathBuf], model: Option<&Path>, format: Format, saliency: Option<&Path>, context: Option<&Path>, mut problems: Problems) -> Result<bool> {
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

    /// What `evaluate` writes in `--out`, for the messages about that folder.
    const REPORT: &str = "metrics.json and the plots";

    fn evaluate(images: &Path, table_path: Option<&Path>, by: &[String], out: &Path, model: Option<&Path>, mut problems: Problems) -> Result<bool> {
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

    /// The plural ending of a noun counted `n` times.
    fn plural(n: usize) -> &'static str {
        if n == 1 { "" } else { "s" }
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
    pub(crate) fn not_built(args: &[String], optional: &[(&str, &str, bool)]) -> Option<String> {
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
        let problems = Problems { count: 0, verbose: cli.verbose, bar: ProgressBar::hidden() };
        let result = match cli.command {
            Command::Classify { paths, model, format, saliency, context } => classify(&paths, model.as_deref(), format, saliency.as_deref(), context.as_deref(), problems),
            Command::Evaluate { images, labels, by, out, model } => evaluate(&images, labels.as_deref(), &by, &out, model.as_deref(), problems),
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
}

#[cfg(all(test, not(target_arch = "wasm32")))]
mod tests {
    use super::native::not_built;

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
