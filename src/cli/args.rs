//! The command line: subcommands and their options (clap).

use clap::{Parser, Subcommand, ValueEnum};
use std::path::PathBuf;

#[derive(Parser)]
#[command(name = "dermscreen", version, about = "Skin-lesion screening (a screening aid, not a diagnosis)")]
pub(crate) struct Cli {
    /// Add the decoder's own words to each file's error (for bug reports).
    #[arg(long, short, global = true)]
    pub(crate) verbose: bool,
    #[command(subcommand)]
    pub(crate) command: Command,
}

#[derive(Subcommand)]
// `allow`, not `expect`: only with the trainer's options (`--features train`) is it large.
#[allow(clippy::large_enum_variant, reason = "one per run, parsed once: boxing the training options would buy nothing")]
pub(crate) enum Command {
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
        /// Also write, per image given a risk, a PNG of where the model looked (`DIR/<image>.png`): the
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
pub(crate) enum Format {
    Text,
    Csv,
    Json,
}
