//! A training run's settings, each default written once, and its learning-rate schedule.

use crate::model::NetConfig;
use anyhow::{bail, Result};
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// Everything that defines a training run; saved as `train_config.json` in the run folder.
/// Each default is written once, as the command-line default below; [`Default`] parses an
/// empty command line, so the CLI and code agree.
#[derive(Debug, Clone, Serialize, Deserialize, clap::Args)]
#[serde(default)]
pub struct TrainConfig {
    /// Data root: the folders `--sources` names, and `ood/` for the export's gate.
    #[arg(long, default_value = "../shared/data")]
    pub data: PathBuf,
    /// The labelled photo sets to train on (folder, label table, grouping key, kind, label map).
    /// Outside the repository the default is the copy built into this program.
    #[arg(long, default_value = crate::dataset::DEFAULT_SOURCES)]
    pub sources: PathBuf,
    /// Passes over the training set.
    #[arg(long, default_value_t = 30)]
    pub epochs: usize,
    /// Score the validation split after every this many epochs, and after the last (the default:
    /// the last only, as a pass costs minutes on a CPU).
    #[arg(long, default_value_t = 30)]
    pub validate_every: usize,
    /// Images per optimiser step.
    #[arg(long, default_value_t = 64)]
    pub batch_size: usize,
    /// Peak learning rate (AdamW; linear warm-up, then cosine decay).
    #[arg(long = "lr", default_value_t = 2.8e-3)]
    pub learning_rate: f64,
    /// AdamW's decoupled weight decay.
    #[arg(long, default_value_t = 0.05)]
    pub weight_decay: f32,
    /// Epochs of linear learning-rate warm-up.
    #[arg(long, default_value_t = 1.0)]
    pub warmup_epochs: f64,
    /// Label smoothing of the cross-entropy targets.
    #[arg(long, default_value_t = 0.1)]
    pub label_smoothing: f32,
    /// Side of the square network input.
    #[arg(long, default_value_t = 144)]
    pub input_size: u32,
    /// Train the first `--low-res-epochs` epochs at this smaller input side, then the rest at
    /// `--input-size` (progressive resizing). The network pools globally, so its weights fit
    /// both; on the CPU an epoch costs about (low_res_size / input_size)^2 as much.
    #[arg(long)]
    pub low_res_size: Option<u32>,
    /// How many of the first epochs run at `--low-res-size`.
    #[arg(long, default_value_t = 0)]
    pub low_res_epochs: usize,
    /// Exponent of the class-balancing sampler: each image is drawn with weight n_c^-alpha
    /// (0 = natural frequencies, 1 = fully balanced).
    #[arg(long, default_value_t = 0.5)]
    pub balance_alpha: f64,
    /// Share of each diagnosis's lesions held out for validation.
    #[arg(long, default_value_t = 0.2)]
    pub val_fraction: f64,
    /// Seeds the split (unless `--split-seed` is given), the sampling order, the augmentation
    /// and the initial weights.
    #[arg(long, default_value_t = 20_171_025)]
    pub seed: u64,
    /// Seeds the split alone, instead of `--seed`: a second model with other initial weights,
    /// order and augmentation that holds out the same validation photos (to compare or
    /// average two runs on photos neither trained on).
    #[arg(long)]
    pub split_seed: Option<u64>,
    /// `maxClassSize` of the partitioning algorithm (default: the paper's 1,000 for 129,450
    /// images, scaled to the training set's size).
    #[arg(long)]
    pub max_class_size: Option<usize>,
    /// Stop each epoch after this many optimiser steps (quick runs and benchmarks).
    #[arg(long)]
    pub max_steps_per_epoch: Option<usize>,
    /// Use about this many training images, an even share of each source's diagnoses, each
    /// keeping at least one (smoke tests).
    #[arg(long)]
    pub limit_train: Option<usize>,
    /// Share of malignant validation photos the "high risk" threshold must flag, in each source
    /// (a threshold per kind of photo, dermoscopic or clinical, set by its most demanding source).
    #[arg(long, default_value_t = 0.9)]
    pub target_sensitivity: f64,
    /// Channel multiplier of the stem and every stage (1 = the shipped ~1.5 M parameters;
    /// compute grows with its square).
    #[arg(long, default_value_t = 1.0)]
    pub width: f64,
    /// Start from the last checkpoint of this run folder, or from the weights of this model
    /// folder (`model.json`, e.g. `model`), instead of random weights (fine-tuning, e.g. at a
    /// larger `--input-size`: the network pools globally, so its weights fit any size). It
    /// must have this run's architecture and split.
    #[arg(long)]
    pub init_from: Option<PathBuf>,
    /// Architecture; `None` is [`NetConfig::resnet_small`] widened by `width`. Set in code,
    /// not on the command line.
    #[arg(skip)]
    pub net: Option<NetConfig>,
}

impl Default for TrainConfig {
    fn default() -> Self {
        #[derive(clap::Parser)]
        struct Defaults {
            #[command(flatten)]
            config: TrainConfig,
        }
        <Defaults as clap::Parser>::parse_from(["train"]).config
    }
}

impl TrainConfig {
    /// The seed of the training/validation split: `--split-seed`, else `--seed`.
    pub fn split_seed(&self) -> u64 {
        self.split_seed.unwrap_or(self.seed)
    }

    /// Refuses a low-resolution phase that is not smaller than the input or has no epochs.
    pub(super) fn check_low_res(&self) -> Result<()> {
        match (self.low_res_size, self.low_res_epochs) {
            (None, 0) => Ok(()),
            (Some(size), n) if n > 0 && size > 0 && size < self.input_size => Ok(()),
            (size, n) => bail!(
                "--low-res-size {size:?} with --low-res-epochs {n}: both are needed, the size below --input-size {}",
                self.input_size
            ),
        }
    }

    /// The input side that epoch `epoch` (from 0) trains at.
    pub(super) fn input_size_at(&self, epoch: usize) -> u32 {
        match self.low_res_size {
            Some(size) if epoch < self.low_res_epochs => size,
            _ => self.input_size,
        }
    }

    /// The network this run trains for `classes` training classes: `net`, or
    /// [`NetConfig::resnet_small`] widened by `width`.
    pub(super) fn network(&self, classes: usize) -> NetConfig {
        self.net.clone().unwrap_or_else(|| NetConfig::resnet_small(classes).widened(self.width))
    }
}

pub(super) fn lr_at(cfg: &TrainConfig, step: usize, steps_per_epoch: usize) -> f64 {
    let t = step as f64 / steps_per_epoch as f64;
    if t < cfg.warmup_epochs {
        return cfg.learning_rate * (t + 1.0 / steps_per_epoch as f64) / cfg.warmup_epochs;
    }
    let progress = (t - cfg.warmup_epochs) / (cfg.epochs as f64 - cfg.warmup_epochs).max(1e-9);
    cfg.learning_rate * 0.5 * (1.0 + (std::f64::consts::PI * progress.min(1.0)).cos())
}
