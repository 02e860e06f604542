//! The trainer (feature `train`): the sources of `taxonomy/sources.json` (dermoscopy from three
//! clinics' collections, phone photos) -> a split grouped by lesion or patient within each
//! source -> augmented, class- and source-balanced batches -> AdamW with warm-up and cosine
//! decay -> checkpoints, validation metrics, and the shipped artefacts (`model.bpk`, `model.json`, `metrics.json`).
//!
//! [`run`] hands off in the order of a run (private items, so plain names here):
//! `RunData::prepare` (split, partition, decode), `Trainer::epoch` (the batch thread feeds the
//! optimiser), `Trainer::validate` (an `EpochLog`), `save_checkpoint`, and `ship` (export,
//! threshold, metrics).

use crate::classifier::{self, Classifier, ModelMeta, WeightsInfo, META_FORMAT};
use crate::augment::{augment, Aug, AugConfig};
use crate::dataset::{self, Sample};
use crate::model::{Net, NetConfig};
use crate::preprocess::{self, PreprocessConfig};
use crate::report::{self, fmt_opt};
use crate::taxonomy::Taxonomy;
use anyhow::{bail, Context, Result};
use burn::optim::{AdamWConfig, GradientsParams, ModuleOptimizer};
use burn::prelude::*;
use burn::tensor::activation::log_softmax;
use image::RgbImage;
use indicatif::{ProgressBar, ProgressStyle};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};
use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use rayon::prelude::*;
use std::sync::mpsc::{sync_channel, Receiver};
use std::time::Instant;

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
    #[arg(long, default_value_t = 12)]
    pub epochs: usize,
    /// Score the validation split after every this many epochs (and after the last).
    #[arg(long, default_value_t = 4)]
    pub validate_every: usize,
    /// Images per optimiser step.
    #[arg(long, default_value_t = 32)]
    pub batch_size: usize,
    /// Peak learning rate (AdamW; linear warm-up, then cosine decay).
    #[arg(long = "lr", default_value_t = 2e-3)]
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
    #[arg(long, default_value_t = 112)]
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
    fn check_low_res(&self) -> Result<()> {
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
    fn input_size_at(&self, epoch: usize) -> u32 {
        match self.low_res_size {
            Some(size) if epoch < self.low_res_epochs => size,
            _ => self.input_size,
        }
    }

    /// The network this run trains for `classes` training classes: `net`, or
    /// [`NetConfig::resnet_small`] widened by `width`.
    fn network(&self, classes: usize) -> NetConfig {
        self.net.clone().unwrap_or_else(|| NetConfig::resnet_small(classes).widened(self.width))
    }
}

/// The files of a run folder, named once.
struct RunPaths(PathBuf);

impl RunPaths {
    fn file(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
    fn config(&self) -> PathBuf {
        self.file("train_config.json")
    }
    fn checkpoint(&self) -> PathBuf {
        self.file("checkpoint")
    }
    fn checkpoint_model(&self) -> PathBuf {
        self.file("checkpoint/model.bpk")
    }
    fn checkpoint_optimizer(&self) -> PathBuf {
        self.file("checkpoint/optimizer.bpk")
    }
    fn checkpoint_state(&self) -> PathBuf {
        self.file("checkpoint/state.json")
    }
}

fn write_json(path: &Path, value: &impl Serialize) -> Result<()> {
    std::fs::write(path, serde_json::to_vec_pretty(value)?).with_context(|| format!("writing {}", path.display()))
}

/// Per-channel mean and standard deviation of the training images' centre squares, in [0, 1].
/// (ImageNet statistics are a poor fit for dermoscopy's skin tones.)
fn channel_stats(items: &[Item]) -> ([f32; 3], [f32; 3]) {
    let mut sum = [0f64; 3];
    let mut sq = [0f64; 3];
    let mut n = 0f64;
    for it in items {
        for p in it.square.pixels() {
            for c in 0..3 {
                let v = f64::from(p[c]) / 255.0;
                sum[c] += v;
                sq[c] += v * v;
            }
        }
        n += f64::from(it.square.width() * it.square.height());
    }
    let mean = sum.map(|s| s / n.max(1.0));
    let std: Vec<f64> = (0..3).map(|c| (sq[c] / n.max(1.0) - mean[c] * mean[c]).max(1e-6).sqrt()).collect();
    (mean.map(|m| (m * 1e4).round() as f32 / 1e4), [0, 1, 2].map(|c| (std[c] * 1e4).round() as f32 / 1e4))
}

/// Progress saved with each checkpoint.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct TrainState {
    epochs_done: usize,
    history: Vec<EpochLog>,
}

/// What one epoch measured.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct EpochLog {
    epoch: usize,
    train_loss: f64,
    val_loss: Option<f64>,
    val_balanced_accuracy: Option<f64>,
    val_auc_mel_nv: Option<f64>,
    val_auc_kc_bkl: Option<f64>,
    /// Melanoma vs nevus on each source's validation photos: one source can fall behind while
    /// the pooled AUC rises.
    #[serde(default)]
    val_auc_mel_nv_by_source: Vec<(String, Option<f64>)>,
    /// The input side the epoch trained at (`--low-res-size` early on, else `--input-size`).
    #[serde(default)]
    input_size: u32,
    images_per_second: f64,
    seconds: f64,
}

/// A decoded image's centre square, kept in memory for the whole run.
struct Item {
    square: RgbImage,
    class: usize,
    /// How often the sampler draws it relative to others of its class ([`dataset::SourceSpec::weight`]).
    source_weight: f64,
}

/// Squares are kept at most this many pixels wide: enough for the 112 px input after a zoom,
/// and the warp's bilinear taps then never skip source pixels (no aliasing on 300 px phone photos).
const MAX_SQUARE: u32 = 160;

fn load_items(samples: &[Sample], root: &Path, classes: &HashMap<String, usize>, weights: &HashMap<String, f64>) -> Result<Vec<Item>> {
    let bar = ProgressBar::new(samples.len() as u64).with_style(
        ProgressStyle::with_template("decoding {pos}/{len} images [{bar:30}] {eta}").expect("valid template"),
    );
    let threads = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(2);
    let chunk = samples.len().div_ceil(threads).max(1);
    let results: Vec<Result<Vec<Item>>> = std::thread::scope(|s| {
        let handles: Vec<_> = samples
            .chunks(chunk)
            .map(|part| {
                let bar = bar.clone();
                s.spawn(move || {
                    part.iter()
                        .map(|smp| {
                            let path = root.join(&smp.image);
                            let bytes = std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
                            let img = preprocess::decode(&bytes).with_context(|| path.display().to_string())?;
                            let square = preprocess::centre_square(&img);
                            let square = if square.width() > MAX_SQUARE { preprocess::resize_square(&square, MAX_SQUARE) } else { square };
                            bar.inc(1);
                            Ok(Item { square, class: classes[&smp.dx], source_weight: weights[&smp.source] })
                        })
                        .collect()
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().expect("decoder thread")).collect()
    });
    bar.finish_and_clear();
    let mut out = Vec::with_capacity(samples.len());
    for r in results {
        out.extend(r?);
    }
    Ok(out)
}

/// A run's data, decoded once: the partition into training classes, the training images, and
/// the validation images through the inference path (centre square, resize, normalise).
struct RunData {
    training_classes: Vec<String>,
    max_class_size: usize,
    /// Training images per training class.
    class_counts: Vec<usize>,
    train_items: Vec<Item>,
    /// `[n_val, 3, s, s]` floats, flattened.
    val_inputs: Vec<f32>,
    val_labels: Vec<usize>,
    /// The validation samples, in the order of `val_labels`.
    val_samples: Vec<Sample>,
    pre: PreprocessConfig,
}

/// About `limit` of `samples` (`--limit-train`): an evenly strided subset of each source's
/// diagnoses, each keeping at least its first image, so that every diagnosis of the
/// validation split still has a training class; at most one more per source and diagnosis.
fn limit_samples(mut samples: Vec<Sample>, limit: usize) -> Vec<Sample> {
    samples.sort_by(|a, b| (&a.source, &a.dx, &a.image).cmp(&(&b.source, &b.dx, &b.image)));
    let stride = samples.len().div_ceil(limit.max(1)).max(1);
    samples
        .chunk_by(|a, b| (&a.source, &a.dx) == (&b.source, &b.dx))
        .flat_map(|diagnosis| diagnosis.iter().step_by(stride).cloned())
        .collect()
}

impl RunData {
    /// Reads the sources, splits each by group, partitions the taxonomy, writes the validation
    /// labels to the run folder and decodes every image.
    fn prepare(cfg: &TrainConfig, taxonomy: &Taxonomy, paths: &RunPaths) -> Result<Self> {
        let sources = dataset::read_sources(&cfg.sources)?;
        let mut samples = Vec::new();
        for spec in &sources {
            let read = dataset::read_source(&cfg.data, spec).with_context(|| {
                format!("source '{}' of {} (--sources FILE names the sets to train on)", spec.name, cfg.sources.display())
            })?;
            samples.extend(read);
        }
        let weights: HashMap<String, f64> = sources.iter().map(|s| (s.name.clone(), s.weight)).collect();
        let split = dataset::split_by_group(&samples, cfg.val_fraction, cfg.split_seed());
        let train_samples = match cfg.limit_train {
            Some(limit) => limit_samples(split.train, limit),
            None => split.train,
        };
        let n_train = train_samples.len();
        let max_class_size = cfg
            .max_class_size
            .unwrap_or_else(|| ((1000.0 * n_train as f64 / 129_450.0).round() as usize).max(1));
        let training_classes = taxonomy.partition(&dataset::class_counts(&train_samples), max_class_size);
        let mut class_of: HashMap<String, usize> = HashMap::new();
        for s in train_samples.iter().chain(&split.val) {
            let k = taxonomy
                .class_of(&s.dx, &training_classes)
                .with_context(|| format!("diagnosis '{}' is not under any training class", s.dx))?;
            class_of.insert(s.dx.clone(), k);
        }
        check_flag_photos(&split.val, taxonomy)?;
        let mut class_counts = vec![0usize; training_classes.len()];
        for s in &train_samples {
            class_counts[class_of[&s.dx]] += 1;
        }
        eprintln!(
            "{} train / {} validation images ({} lesions or patients held out); maxClassSize {} -> {} training classes: {}",
            n_train,
            split.val.len(),
            split.val.iter().map(|s| (&s.source, &s.group)).collect::<HashSet<_>>().len(),
            max_class_size,
            training_classes.len(),
            training_classes.iter().zip(&class_counts).map(|(c, n)| format!("{c} ({n})")).collect::<Vec<_>>().join(", ")
        );
        write_val_labels(&paths.file("val_labels.csv"), &split.val)?;
        let train_items = load_items(&train_samples, &cfg.data, &class_of, &weights)?;
        let val_items = load_items(&split.val, &cfg.data, &class_of, &weights)?;
        let (mean, std) = channel_stats(&train_items);
        let pre = PreprocessConfig { input_size: cfg.input_size, mean, std };
        eprintln!("channel mean {mean:?}, std {std:?}");
        Ok(Self {
            training_classes,
            max_class_size,
            class_counts,
            val_inputs: val_items.iter().flat_map(|it| pre.to_input(&it.square)).collect(),
            val_labels: val_items.iter().map(|it| it.class).collect(),
            val_samples: split.val,
            train_items,
            pre,
        })
    }
}

/// The export sets the high-risk flag's threshold for each kind of photo on that kind's
/// malignant validation photos; without them it would fail only after the whole run.
fn check_flag_photos(val: &[Sample], taxonomy: &Taxonomy) -> Result<()> {
    for kind in dataset::Kind::ALL {
        if !val.iter().any(|s| s.kind == kind && taxonomy.is_within(&s.dx, "malignant").unwrap_or(false)) {
            bail!(
                "no malignant {kind} photo among the validation photos: the export sets the high-risk flag's threshold \
                 for each kind of photo on them, so --sources needs {kind} photos with malignant diagnoses \
                 (taxonomy/sources.json has both kinds)",
                kind = kind.as_str()
            );
        }
    }
    Ok(())
}

/// The validation split as a label table (`image,dx,source,kind,group`, then the patient
/// context's fields; images relative to the data root), what `evaluate` and `calibrate` read,
/// and a context file for `classify --context`.
fn write_val_labels(path: &Path, val: &[Sample]) -> Result<()> {
    let mut w = csv::Writer::from_path(path)?;
    w.write_record(["image", "dx", "source", "kind", "group"].into_iter().chain(crate::context::FIELDS))?;
    for s in val {
        let context = crate::context::FIELDS.map(|f| s.context.get(f));
        w.write_record([s.image.as_str(), &s.dx, &s.source, s.kind.as_str(), &s.group].into_iter().chain(context.iter().map(String::as_str)))?;
    }
    w.flush()?;
    Ok(())
}

/// Class-balanced sampling with replacement: image `i` is drawn with weight
/// `source_weight(i) * n_class(i)^-alpha`.
struct Sampler {
    cumulative: Vec<f64>,
}

impl Sampler {
    fn new(items: &[Item], class_counts: &[usize], alpha: f64) -> Result<Self> {
        let cumulative: Vec<f64> = items
            .iter()
            .scan(0.0, |acc, it| {
                *acc += it.source_weight * (class_counts[it.class] as f64).powf(-alpha);
                Some(*acc)
            })
            .collect();
        if cumulative.is_empty() {
            bail!("no training images");
        }
        Ok(Self { cumulative })
    }

    fn draw(&self, rng: &mut StdRng) -> usize {
        let total = self.cumulative[self.cumulative.len() - 1];
        let r = rng.random_range(0.0..total);
        self.cumulative.partition_point(|&c| c <= r).min(self.cumulative.len() - 1)
    }
}

/// A batch: `[batch, 3, s, s]` normalised floats and the training-class labels.
type Batch = (Vec<f32>, Vec<usize>);

/// Prepares `steps` augmented batches on a thread of `scope` while the network trains.
fn spawn_batches<'scope>(
    scope: &'scope std::thread::Scope<'scope, '_>,
    data: &'scope RunData,
    pre: PreprocessConfig,
    sampler: &'scope Sampler,
    batch_size: usize,
    steps: usize,
    seed: u64,
) -> Receiver<Batch> {
    let (tx, rx) = sync_channel::<Batch>(3);
    scope.spawn(move || {
        let mut rng = StdRng::seed_from_u64(seed);
        let per = pre.input_len();
        let aug_cfg = AugConfig::default();
        for _ in 0..steps {
            // Draw in the same order as one image at a time, so a seed gives the same batches;
            // then warp in parallel: on a GPU one thread of augmentation was the limit.
            let picks: Vec<(&Item, Aug)> =
                (0..batch_size).map(|_| (&data.train_items[sampler.draw(&mut rng)], Aug::sample(&mut rng, &aug_cfg, pre.input_size))).collect();
            let mut x = vec![0f32; batch_size * per];
            x.par_chunks_mut(per).zip(&picks).for_each(|(out, (item, aug))| {
                pre.normalise_into(&augment(&item.square, pre.input_size, aug), out);
            });
            let y = picks.iter().map(|(item, _)| item.class).collect();
            if tx.send((x, y)).is_err() {
                return;
            }
        }
    });
    rx
}

/// Logit adjustment that removes the sampler's effective class prior (prior_c ∝ n_c^(1-alpha)).
fn logit_adjustment(counts: &[usize], alpha: f64) -> Vec<f32> {
    let w: Vec<f64> = counts.iter().map(|&n| (n.max(1) as f64).powf(1.0 - alpha)).collect();
    let total: f64 = w.iter().sum();
    let k = counts.len() as f64;
    w.iter().map(|x| -((x / total) * k).ln() as f32).collect()
}

fn smoothed_targets(labels: &[usize], k: usize, eps: f32) -> Vec<f32> {
    let mut t = vec![eps / k as f32; labels.len() * k];
    for (i, &l) in labels.iter().enumerate() {
        t[i * k + l] += 1.0 - eps;
    }
    t
}

/// Cross-entropy against (smoothed) one-hot targets.
fn loss(logits: Tensor<2>, targets: Tensor<2>) -> Tensor<1> {
    (log_softmax(logits, 1) * targets).sum_dim(1).mean().neg()
}

fn lr_at(cfg: &TrainConfig, step: usize, steps_per_epoch: usize) -> f64 {
    let t = step as f64 / steps_per_epoch as f64;
    if t < cfg.warmup_epochs {
        return cfg.learning_rate * (t + 1.0 / steps_per_epoch as f64) / cfg.warmup_epochs;
    }
    let progress = (t - cfg.warmup_epochs) / (cfg.epochs as f64 - cfg.warmup_epochs).max(1e-9);
    cfg.learning_rate * 0.5 * (1.0 + (std::f64::consts::PI * progress.min(1.0)).cos())
}

/// The training device: a Vulkan GPU with the `vulkan` feature, libtorch on the CPU with `tch`,
/// else Burn's CPU backend (flex).
pub fn training_device() -> Device {
    #[cfg(feature = "vulkan")]
    {
        Device::vulkan(burn::tensor::DeviceKind::DefaultDevice).autodiff()
    }
    #[cfg(all(feature = "tch", not(feature = "vulkan")))]
    #[allow(deprecated)]
    {
        Device::libtorch().autodiff()
    }
    #[cfg(not(any(feature = "vulkan", feature = "tch")))]
    {
        Device::flex().autodiff()
    }
}

/// One run's fixed parts: configuration, data, sampler and device. Holds no network state.
struct Trainer<'a> {
    cfg: &'a TrainConfig,
    data: &'a RunData,
    taxonomy: &'a Taxonomy,
    sampler: Sampler,
    steps_per_epoch: usize,
    logit_adjustment: Vec<f32>,
    device: Device,
}

impl Trainer<'_> {
    /// Trains one epoch. Returns the network after it and the mean training loss.
    fn epoch(&self, mut net: Net, optim: &mut ModuleOptimizer, epoch: usize) -> Result<(Net, f64)> {
        let (cfg, steps) = (self.cfg, self.steps_per_epoch);
        let started = Instant::now();
        let mut rng = StdRng::seed_from_u64(cfg.seed ^ (epoch as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15));
        let bar = progress_bar(steps, format!("{}/{}", epoch + 1, cfg.epochs));
        let pre = PreprocessConfig { input_size: cfg.input_size_at(epoch), ..self.data.pre };
        let (s, k) = (pre.input_size as usize, self.data.training_classes.len());
        let mut loss_sum = 0.0;
        std::thread::scope(|scope| -> Result<()> {
            let batches = spawn_batches(scope, self.data, pre, &self.sampler, cfg.batch_size, steps, rng.random());
            let mut seen = 0usize;
            for step in 0..steps {
                let (x, y) = batches.recv().context("batch thread stopped")?;
                let lr = lr_at(cfg, epoch * steps + step, steps);
                let n = y.len();
                let input = Tensor::<4>::from_data(TensorData::new(x, [n, 3, s, s]), &self.device);
                let targets = Tensor::<2>::from_data(
                    TensorData::new(smoothed_targets(&y, k, cfg.label_smoothing), [n, k]),
                    &self.device,
                );
                let l = loss(net.forward(input), targets);
                let loss_value: f32 = l.clone().into_scalar::<f32>();
                if !loss_value.is_finite() {
                    bail!("loss became {loss_value} at epoch {} step {step}", epoch + 1);
                }
                let grads = GradientsParams::from_grads(l.backward(), &net);
                net = optim.step(lr, net.clone(), grads);
                loss_sum += f64::from(loss_value);
                seen += n;
                let rate = seen as f64 / started.elapsed().as_secs_f64();
                let progress = format!("loss {:.4} lr {:.2e} {:.0} img/s", loss_sum / (step + 1) as f64, lr, rate);
                bar.set_message(progress.clone());
                bar.inc(1);
                if !console_is_tty() && (step + 1) % 50 == 0 {
                    let eta = (steps - step - 1) as f64 * cfg.batch_size as f64 / rate;
                    eprintln!("epoch {}/{} step {}/{} {progress} eta {eta:.0}s", epoch + 1, cfg.epochs, step + 1, steps);
                }
            }
            Ok(())
        })?;
        bar.finish_and_clear();
        Ok((net, loss_sum / steps as f64))
    }

    /// The epoch's record, with the network scored on the validation images when `scored`
    /// (5,000 photos take a minute or so on the CPU).
    fn validate(&self, net: &Net, epoch: usize, train_loss: f64, started: Instant, scored: bool) -> Result<EpochLog> {
        let train_secs = started.elapsed().as_secs_f64();
        let images_per_second = (self.steps_per_epoch * self.cfg.batch_size) as f64 / train_secs;
        let input_size = self.cfg.input_size_at(epoch);
        if !scored {
            let log = EpochLog { epoch: epoch + 1, train_loss, val_loss: None, val_balanced_accuracy: None, val_auc_mel_nv: None, val_auc_kc_bkl: None, val_auc_mel_nv_by_source: Vec::new(), input_size, images_per_second, seconds: train_secs };
            eprintln!("epoch {}/{}: train loss {:.4}, {:.0} img/s at {input_size} px, {:.0} s", log.epoch, self.cfg.epochs, train_loss, images_per_second, train_secs);
            return Ok(log);
        }
        let d = self.data;
        let (val_probs, val_loss) = predict_probs(&net.valid(), &d.pre, &d.val_inputs, &d.val_labels, &self.logit_adjustment);
        let summary = report::summarise(&d.training_classes, self.taxonomy, &d.val_labels, &val_probs)?;
        let log = EpochLog {
            epoch: epoch + 1,
            train_loss,
            val_loss: Some(val_loss),
            val_balanced_accuracy: Some(summary.balanced_accuracy),
            val_auc_mel_nv: summary.auc("melanoma_vs_nevus"),
            val_auc_kc_bkl: summary.auc("carcinoma_vs_keratosis"),
            val_auc_mel_nv_by_source: self.mel_nv_by_source(&val_probs)?,
            input_size,
            images_per_second,
            seconds: started.elapsed().as_secs_f64(),
        };
        eprintln!(
            "epoch {}/{}: train loss {:.4}, val loss {:.4}, balanced acc {:.3}, AUC mel/nv {}, AUC kc/bkl {}, {:.0} img/s at {input_size} px, {:.0} s",
            log.epoch,
            self.cfg.epochs,
            log.train_loss,
            val_loss,
            summary.balanced_accuracy,
            fmt_opt(log.val_auc_mel_nv),
            fmt_opt(log.val_auc_kc_bkl),
            log.images_per_second,
            log.seconds
        );
        let by_source: Vec<String> = log.val_auc_mel_nv_by_source.iter().map(|(s, auc)| format!("{s} {}", fmt_opt(*auc))).collect();
        eprintln!("  AUC mel/nv by source: {}", by_source.join(", "));
        Ok(log)
    }

    /// Melanoma vs nevus AUC on each source's validation photos, in the order the sources come.
    fn mel_nv_by_source(&self, probs: &[Vec<f32>]) -> Result<Vec<(String, Option<f64>)>> {
        let by_source = summaries_by(self.data, self.taxonomy, probs, |s| vec![s.source.clone()])?;
        Ok(by_source.into_iter().map(|(source, summary)| (source, summary.auc("melanoma_vs_nevus"))).collect())
    }
}

fn progress_bar(steps: usize, prefix: String) -> ProgressBar {
    let bar = ProgressBar::new(steps as u64).with_style(
        ProgressStyle::with_template("epoch {prefix} [{bar:25}] step {pos}/{len} {msg} eta {eta}").expect("valid template"),
    );
    bar.set_prefix(prefix);
    if !console_is_tty() {
        bar.set_draw_target(indicatif::ProgressDrawTarget::hidden());
    }
    bar
}

/// Saves the network (full precision, so a resumed run continues exactly), the optimiser and
/// the progress. The network goes through a temporary file so a crash never leaves half a checkpoint.
fn save_checkpoint(paths: &RunPaths, net: &Net, optim: &ModuleOptimizer, state: &TrainState) -> Result<()> {
    let tmp = paths.file("checkpoint/model.tmp.bpk");
    net.clone().save_file(&tmp).map_err(|e| anyhow::anyhow!("saving checkpoint: {e}"))?;
    std::fs::rename(&tmp, paths.checkpoint_model())?;
    let _ = std::fs::remove_file(paths.checkpoint_optimizer());
    optim
        .save(paths.checkpoint_optimizer())
        .map_err(|e| anyhow::anyhow!("saving optimizer: {e}"))?;
    write_json(&paths.checkpoint_state(), state)?;
    write_json(&paths.file("history.json"), &state.history)
}

/// The network, optimiser and progress of the last checkpoint.
fn load_checkpoint(paths: &RunPaths, net: Net, optim: ModuleOptimizer, device: &Device) -> Result<(Net, ModuleOptimizer, TrainState)> {
    let state: TrainState = serde_json::from_slice(&std::fs::read(paths.checkpoint_state())?)?;
    let net = load_net(net, &paths.checkpoint_model(), device)?;
    let optim = optim
        .load(paths.checkpoint_optimizer())
        .map_err(|e| anyhow::anyhow!("loading optimizer state: {e}"))?;
    eprintln!("resuming after epoch {}", state.epochs_done);
    Ok((net, optim, state))
}

/// Refuses `--init-from` unless that run has this architecture and this split: a network
/// trained on another split has seen some of this run's validation photos, and its scores here
/// would flatter it. Checked before the photos are decoded, so a mistake fails at once (a
/// model folder's split is checked once this run has split, by [`check_model_split`]).
fn check_init_from(from: &Path, cfg: &TrainConfig) -> Result<()> {
    if is_model_folder(from) {
        return check_model_network(from, cfg);
    }
    let path = RunPaths(from.to_path_buf()).config();
    let saved = std::fs::read(&path).with_context(|| format!("--init-from: reading {}", path.display()))?;
    let theirs: TrainConfig = serde_json::from_slice(&saved).with_context(|| format!("--init-from: reading {}", path.display()))?;
    if (theirs.width, &theirs.net) != (cfg.width, &cfg.net) {
        bail!("--init-from {}: its network differs from this run's (--width {} there, {} here)", from.display(), theirs.width, cfg.width);
    }
    let split = |c: &TrainConfig| (c.data.clone(), c.sources.clone(), c.split_seed(), c.val_fraction.to_bits(), c.limit_train, c.max_class_size);
    if split(&theirs) != split(cfg) {
        bail!(
            "--init-from {}: it was split differently (data, sources, seed, --val-fraction, --limit-train or --max-class-size differ), so it has trained on this run's validation photos",
            from.display()
        );
    }
    Ok(())
}

/// Whether `--init-from` names a model folder (what `model/` holds) rather than a run folder.
fn is_model_folder(from: &Path) -> bool {
    from.join("model.json").is_file() && !RunPaths(from.to_path_buf()).config().is_file()
}

fn read_model_meta(from: &Path) -> Result<ModelMeta> {
    let path = from.join("model.json");
    let text = std::fs::read(&path).with_context(|| format!("--init-from: reading {}", path.display()))?;
    ModelMeta::from_json(&text).with_context(|| format!("--init-from: reading {}", path.display()))
}

/// A model folder's network must be the one this run builds.
fn check_model_network(from: &Path, cfg: &TrainConfig) -> Result<()> {
    let theirs = read_model_meta(from)?.architecture;
    let ours = cfg.network(theirs.num_classes);
    if ours != theirs {
        bail!("--init-from {}: its network differs from this run's (model.json's architecture against --width {})", from.display(), cfg.width);
    }
    Ok(())
}

/// A model folder must have held out exactly this run's validation photos
/// (`validation_split.csv`), so that none of them was trained on.
fn check_model_split(from: &Path, val: &[Sample]) -> Result<()> {
    let path = from.join("validation_split.csv");
    let theirs: HashSet<String> = dataset::read_labels(&path)
        .with_context(|| format!("--init-from: reading {}", path.display()))?
        .into_iter()
        .map(|l| l.image)
        .collect();
    let ours: HashSet<String> = val.iter().map(|s| s.image.clone()).collect();
    if theirs != ours {
        bail!(
            "--init-from {}: it held out other validation photos ({} of its {} are not among this run's {}), so it has trained on some of this run's",
            from.display(),
            theirs.difference(&ours).count(),
            theirs.len(),
            ours.len()
        );
    }
    Ok(())
}

/// The network to fine-tune: the last checkpoint of run folder `from`, or the weights of model
/// folder `from` (f16 ones widened).
fn load_initial_weights(from: &Path, net: Net, device: &Device) -> Result<Net> {
    if is_model_folder(from) {
        let meta = read_model_meta(from)?;
        let path = from.join(&meta.weights.file);
        eprintln!("starting from the weights of {}", path.display());
        let bytes = std::fs::read(&path).with_context(|| format!("--init-from: reading {}", path.display()))?;
        let net = classifier::load_weights(net, bytes, meta.weights.is_half()?, &path.display().to_string())?;
        return Ok(net.fork(device));
    }
    let path = RunPaths(from.to_path_buf()).checkpoint_model();
    eprintln!("starting from the weights of {}", path.display());
    load_net(net, &path, device).context("--init-from")
}

/// `net` with the weights saved at `path` (a checkpoint), on `device`.
fn load_net(net: Net, path: &Path, device: &Device) -> Result<Net> {
    let net = net.try_load_file(path).map_err(|e| anyhow::anyhow!("loading {}: {e}", path.display()))?;
    Ok(net.fork(device))
}

/// A new run into a folder that holds another would start over and overwrite its checkpoint
/// (hours of training, and what `--resume` continues), so it is refused.
fn refuse_to_overwrite(paths: &RunPaths) -> Result<()> {
    let state = paths.checkpoint_state();
    if !state.exists() {
        return Ok(());
    }
    let saved = std::fs::read(&state).ok().and_then(|b| serde_json::from_slice::<TrainState>(&b).ok());
    let config = std::fs::read(paths.config()).ok().and_then(|b| serde_json::from_slice::<TrainConfig>(&b).ok());
    let progress = match (saved, config) {
        (Some(s), Some(c)) => format!(" ({} of {} epochs done)", s.epochs_done, c.epochs),
        _ => String::new(),
    };
    bail!(
        "{} already holds a training run{progress}: --resume continues it (with --epochs N to go further); \
         for a new run choose another --out, or delete that folder first",
        paths.0.display()
    )
}

/// How a run ends after its last epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum End {
    /// Score validation and write the shipped model (`model.bpk`, `model.json`, `metrics.json`).
    Ship,
    /// Stop at the last checkpoint, before the final scoring and the export: a timing run
    /// (`./build.sh bench`). `--resume` later ships it without training again.
    Checkpoint,
}

/// How a run starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Start {
    /// A new run with the given settings (a folder that already holds one is refused).
    New,
    /// The run in the folder, from its last checkpoint and with its saved settings; `epochs`,
    /// when given and more than saved, takes it further. `typed` names the settings given
    /// besides (`TrainConfig` field, command-line flag): each must equal the saved one.
    Resume { epochs: Option<usize>, typed: Vec<(String, String)> },
}

/// Refuses a setting typed with `--resume` (`typed`: field, flag) whose value in `given` is not
/// the run's `saved` one: the run goes on with its own, so the typed one would go unused.
/// Paths naming the same folder are the same setting.
fn check_typed_settings(given: &TrainConfig, saved: &TrainConfig, typed: &[(String, String)], out: &Path) -> Result<()> {
    let (given, saved) = (serde_json::to_value(given)?, serde_json::to_value(saved)?);
    let same_folder = |a: &serde_json::Value, b: &serde_json::Value| match (a.as_str(), b.as_str()) {
        (Some(a), Some(b)) => std::fs::canonicalize(a).ok().is_some_and(|a| std::fs::canonicalize(b).ok() == Some(a)),
        _ => false,
    };
    let show = |v: &serde_json::Value| v.as_str().map_or_else(|| v.to_string(), str::to_string);
    for (field, flag) in typed {
        let (g, s) = (&given[field.as_str()], &saved[field.as_str()]);
        if g != s && !same_folder(g, s) {
            bail!(
                "{}: --resume continues the run with the settings it was started with, and --{flag} {} is not its {} (train_config.json); leave --{flag} out, or start a new run with another --out",
                out.display(),
                show(g),
                show(s)
            );
        }
    }
    Ok(())
}

/// Runs (or resumes) a training run into `out`. On [`Start::Resume`], `cfg` is not used: the
/// run's saved settings are.
pub fn run(cfg: TrainConfig, out: &Path, start: Start, end: End) -> Result<()> {
    let paths = RunPaths(out.to_path_buf());
    let cfg = settle_config(cfg, &paths, &start)?;
    let resuming = start != Start::New && paths.checkpoint_state().exists();
    if let (false, Some(from)) = (resuming, &cfg.init_from) {
        check_init_from(from, &cfg)?;
    }
    crate::fit::ood_photos(&cfg.data)?;
    write_json(&paths.config(), &cfg)?;
    let taxonomy = Taxonomy::bundled();
    let data = RunData::prepare(&cfg, &taxonomy, &paths)?;
    write_json(&paths.file("split.json"), &split_summary(&cfg, &data))?;
    if let (false, Some(from)) = (resuming, &cfg.init_from) {
        if is_model_folder(from) {
            check_model_split(from, &data.val_samples)?;
        }
    }
    let k = data.training_classes.len();
    let net_cfg = cfg.network(k);
    if net_cfg.num_classes != k {
        bail!("architecture has {} outputs but the partition gives {k} classes", net_cfg.num_classes);
    }
    let device = training_device();
    let (mut net, mut optim, mut state) = starting_point(&cfg, &net_cfg, &paths, resuming, &device)?;
    let full_steps = data.train_items.len() / cfg.batch_size;
    let trainer = Trainer {
        cfg: &cfg,
        data: &data,
        taxonomy: &taxonomy,
        sampler: Sampler::new(&data.train_items, &data.class_counts, cfg.balance_alpha)?,
        steps_per_epoch: cfg.max_steps_per_epoch.map_or(full_steps, |m| m.min(full_steps)).max(1),
        logit_adjustment: logit_adjustment(&data.class_counts, cfg.balance_alpha),
        device,
    };
    for epoch in state.epochs_done..cfg.epochs {
        let started = Instant::now();
        let train_loss;
        (net, train_loss) = trainer.epoch(net, &mut optim, epoch)?;
        let last = epoch + 1 == cfg.epochs && end == End::Ship;
        let scored = (epoch + 1) % cfg.validate_every.max(1) == 0 || last;
        state.history.push(trainer.validate(&net, epoch, train_loss, started, scored)?);
        state.epochs_done = epoch + 1;
        save_checkpoint(&paths, &net, &optim, &state)?;
    }
    match end {
        End::Ship => ship(&paths, &trainer, net_cfg, &net.valid(), &state),
        End::Checkpoint => Ok(()),
    }
}

/// The run's settings: as given for a new run (whose folder must not hold one already), or as
/// saved for `--resume` (a setting typed again must be the saved one; `--epochs` may take the
/// run further). The run folder and its checkpoint folder exist afterwards.
fn settle_config(cfg: TrainConfig, paths: &RunPaths, start: &Start) -> Result<TrainConfig> {
    if *start == Start::New {
        refuse_to_overwrite(paths)?;
    }
    std::fs::create_dir_all(paths.checkpoint()).with_context(|| format!("creating {}", paths.0.display()))?;
    let cfg = match start {
        Start::New => cfg,
        Start::Resume { epochs, typed } => {
            let saved = std::fs::read(paths.config()).context("--resume: no train_config.json in the run folder")?;
            let saved: TrainConfig = serde_json::from_slice(&saved)?;
            check_typed_settings(&cfg, &saved, typed, &paths.0)?;
            TrainConfig { epochs: epochs.map_or(saved.epochs, |e| e.max(saved.epochs)), ..saved }
        }
    };
    cfg.check_low_res()?;
    Ok(cfg)
}

/// The network, optimiser and progress the epochs start from: the last checkpoint when
/// `resuming`, else seeded new weights, or `--init-from`'s, and a fresh optimiser.
fn starting_point(cfg: &TrainConfig, net_cfg: &NetConfig, paths: &RunPaths, resuming: bool, device: &Device) -> Result<(Net, ModuleOptimizer, TrainState)> {
    device.seed(cfg.seed);
    let net = net_cfg.init(device);
    let optim: ModuleOptimizer = AdamWConfig::new().with_weight_decay(cfg.weight_decay).init();
    if resuming {
        return load_checkpoint(paths, net, optim, device);
    }
    let net = match &cfg.init_from {
        Some(from) => load_initial_weights(from, net, device)?,
        None => net,
    };
    Ok((net, optim, TrainState::default()))
}

/// The shipped artefacts: f16 weights and `model.json` with the high-risk threshold chosen on
/// validation, and `metrics.json` with validation scored through the shipped classifier (f16,
/// test-time flips, logit adjustment) beside the same classifier with f32 weights.
fn ship(paths: &RunPaths, trainer: &Trainer, architecture: NetConfig, net: &Net, state: &TrainState) -> Result<()> {
    let (cfg, data, taxonomy) = (trainer.cfg, trainer.data, trainer.taxonomy);
    let weights = classifier::weights_to_bytes(net, true)?;
    let mut meta = ModelMeta {
        format: META_FORMAT,
        name: format!("dermscreen-resnet-{}px", cfg.input_size),
        architecture,
        preprocess: data.pre,
        training_classes: data.training_classes.clone(),
        max_class_size: data.max_class_size,
        taxonomy_version: taxonomy.version().to_string(),
        logit_adjustment: trainer.logit_adjustment.clone(),
        test_time_flips: true,
        high_risk_threshold: 0.5,
        weights: weights_info("model.bpk", &weights, "f16"),
        calibration: None,
        gate: None,
        domain: None,
        context: None,
    };
    let shipped = Classifier::from_parts(meta.clone(), weights.clone(), taxonomy.clone(), Device::flex())?;
    let probs = validation_probs(&shipped, &data.val_inputs)?;
    let (summary32, max_diff) = f32_validation(net, &meta, trainer, &probs)?;
    let summary = report::summarise(&data.training_classes, taxonomy, &data.val_labels, &probs)?;
    // What every shipped model carries: calibration, the flag's threshold on the calibrated
    // scale, and the gate, fitted on photos this run never trained on.
    let photos = crate::fit::export_photos(&cfg.data, &paths.file("val_labels.csv"))?;
    let (fitted, export) = crate::fit::fit_export(&shipped, &photos, cfg.target_sensitivity)?;
    fitted.apply(&mut meta);
    std::fs::write(paths.file("model.bpk"), &weights)?;
    write_json(&paths.file("model.json"), &meta)?;
    write_json(&paths.file("calibration.json"), &export)?;
    let by_source = validation_by_source(data, taxonomy, &probs)?;
    let metrics = serde_json::json!({
        "split": split_summary(cfg, data),
        "validation": summary,
        "validation_by_source": by_source,
        "high_risk_thresholds": export.high_risk_thresholds,
        "flag_by_source": export.flag_by_source,
        "f32_weights": {
            "max_abs_probability_difference_vs_f16": max_diff,
            "balanced_accuracy": summary32.balanced_accuracy,
            "auc_melanoma_vs_nevus": summary32.auc("melanoma_vs_nevus"),
            "auc_carcinoma_vs_keratosis": summary32.auc("carcinoma_vs_keratosis"),
            "auc_malignant_vs_benign": summary32.auc("malignant_vs_benign"),
        },
        "history": state.history,
    });
    write_json(&paths.file("metrics.json"), &metrics)?;
    eprintln!(
        "shipped-model validation (f16, test-time flips): balanced accuracy {:.3} (f32: {:.3}, max |p16 - p32| {:.1e}), AUC mel/nv {}, AUC kc/bkl {}; wrote {}",
        summary.balanced_accuracy,
        summary32.balanced_accuracy,
        max_diff,
        fmt_opt(summary.auc("melanoma_vs_nevus")),
        fmt_opt(summary.auc("carcinoma_vs_keratosis")),
        paths.0.display()
    );
    Ok(())
}

/// Validation through the same classifier with f32 weights, against the shipped f16 one's
/// probabilities `probs16`: its summary, and the largest difference in any probability.
fn f32_validation(net: &Net, meta: &ModelMeta, trainer: &Trainer, probs16: &[Vec<f32>]) -> Result<(report::Summary, f32)> {
    let (data, taxonomy) = (trainer.data, trainer.taxonomy);
    let f32_weights = classifier::weights_to_bytes(net, false)?;
    let mut meta32 = meta.clone();
    meta32.weights = weights_info("<f32 in memory>", &f32_weights, "f32");
    let full = Classifier::from_parts(meta32, f32_weights, taxonomy.clone(), Device::flex())?;
    let probs32 = validation_probs(&full, &data.val_inputs)?;
    let max_diff = probs16.iter().flatten().zip(probs32.iter().flatten()).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
    Ok((report::summarise(&data.training_classes, taxonomy, &data.val_labels, &probs32)?, max_diff))
}

/// How the photos were split: in `metrics.json`, and in `split.json` from the start of a run
/// (a timing run that never ships still says how many images an epoch has).
fn split_summary(cfg: &TrainConfig, data: &RunData) -> serde_json::Value {
    serde_json::json!({
        "seed": cfg.split_seed(),
        "val_fraction": cfg.val_fraction,
        "train_images": data.train_items.len(),
        "val_images": data.val_labels.len(),
        "grouped_by": "lesion or patient, within each source",
    })
}

/// The validation summary of each source and each kind of photo (uncalibrated, class-balanced
/// probabilities, as during training).
fn validation_by_source(data: &RunData, taxonomy: &Taxonomy, probs: &[Vec<f32>]) -> Result<serde_json::Value> {
    let mut out = serde_json::Map::new();
    for (name, summary) in summaries_by(data, taxonomy, probs, |s| vec![s.source.clone(), s.kind.as_str().to_string()])? {
        out.insert(name, serde_json::to_value(summary)?);
    }
    Ok(serde_json::Value::Object(out))
}

/// The validation summary of each group of validation photos: `groups` names those a photo
/// belongs to (its source, say, and its kind). Groups come in the order they first appear.
fn summaries_by(data: &RunData, taxonomy: &Taxonomy, probs: &[Vec<f32>], groups: impl Fn(&Sample) -> Vec<String>) -> Result<Vec<(String, report::Summary)>> {
    let mut members: Vec<(String, Vec<usize>)> = Vec::new();
    for (i, sample) in data.val_samples.iter().enumerate() {
        for name in groups(sample) {
            match members.iter_mut().find(|(g, _)| *g == name) {
                Some((_, at)) if at.last() == Some(&i) => {} // a source named like a kind: count the photo once
                Some((_, at)) => at.push(i),
                None => members.push((name, vec![i])),
            }
        }
    }
    members
        .into_iter()
        .map(|(name, at)| {
            let labels: Vec<usize> = at.iter().map(|&i| data.val_labels[i]).collect();
            let p: Vec<Vec<f32>> = at.iter().map(|&i| probs[i].clone()).collect();
            Ok((name, report::summarise(&data.training_classes, taxonomy, &labels, &p)?))
        })
        .collect()
}

fn weights_info(file: &str, bytes: &[u8], precision: &str) -> WeightsInfo {
    WeightsInfo {
        file: file.into(),
        bytes: bytes.len() as u64,
        sha256: classifier::sha256_hex(bytes),
        precision: precision.into(),
    }
}

/// Training-class probabilities of the validation inputs, as the classifier reports them.
fn validation_probs(classifier: &Classifier, inputs: &[f32]) -> Result<Vec<Vec<f32>>> {
    let per = classifier.meta().preprocess.input_len();
    let mut probs = Vec::new();
    for chunk in inputs.chunks(64 * per) {
        probs.extend(classifier.classify_inputs(chunk)?.iter().map(classifier::Prediction::class_probs));
    }
    Ok(probs)
}

fn console_is_tty() -> bool {
    use std::io::IsTerminal;
    std::io::stderr().is_terminal()
}

/// Probabilities (logit-adjusted, as shipped; no test-time flips) and the mean unadjusted
/// cross-entropy, on the CPU in batches of 128.
fn predict_probs(net: &Net, pre: &PreprocessConfig, inputs: &[f32], labels: &[usize], adjust: &[f32]) -> (Vec<Vec<f32>>, f64) {
    let device = Device::flex();
    let net = net.clone().to_device(&device);
    let (per, s) = (pre.input_len(), pre.input_size as usize);
    let mut probs = Vec::new();
    let mut loss_sum = 0.0;
    for (chunk, lab) in inputs.chunks(128 * per).zip(labels.chunks(128)) {
        let n = chunk.len() / per;
        let x = Tensor::<4>::from_data(TensorData::new(chunk.to_vec(), [n, 3, s, s]), &device);
        let logits = net.forward(x).into_data().try_into_vec::<f32>().expect("f32 logits");
        for (row, &l) in logits.chunks(adjust.len()).zip(lab) {
            let p = classifier::softmax(row);
            loss_sum -= f64::from(p[l].max(1e-12).ln());
            let adjusted: Vec<f32> = row.iter().zip(adjust).map(|(z, a)| z + a).collect();
            probs.push(classifier::softmax(&adjusted));
        }
    }
    (probs, loss_sum / labels.len().max(1) as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_small_limit_keeps_every_source_and_diagnosis() {
        let sample = |source: &str, dx: &str, i: usize| Sample {
            source: source.into(),
            kind: crate::dataset::Kind::Dermoscopic,
            group: format!("{source}-{dx}-{i}"),
            image: format!("{source}/{dx}/{i:05}.jpg"),
            dx: dx.into(),
            context: Default::default(),
        };
        // 6,000 nevi and 40 vascular lesions in one source, 100 melanomas in another.
        let samples: Vec<Sample> =
            (0..6000).map(|i| sample("a", "nv", i)).chain((0..40).map(|i| sample("a", "vasc", i))).chain((0..100).map(|i| sample("b", "mel", i))).collect();
        let kept = limit_samples(samples, 100);
        let kinds: HashSet<(&str, &str)> = kept.iter().map(|s| (s.source.as_str(), s.dx.as_str())).collect();
        assert_eq!(kinds.len(), 3, "every source's every diagnosis: {kinds:?}");
        assert!((100..=103).contains(&kept.len()), "about the limit: {}", kept.len());
    }

    #[test]
    fn logit_adjustment_undoes_the_sampling_prior() {
        // Fully balanced sampling (alpha = 1) leaves nothing to undo.
        assert!(logit_adjustment(&[100, 10], 1.0).iter().all(|a| a.abs() < 1e-6));
        // Natural sampling: the frequent class is pushed down.
        let a = logit_adjustment(&[900, 100], 0.0);
        assert!(a[0] < 0.0 && a[1] > 0.0);
        assert!(((a[1] - a[0]) as f64 - 9f64.ln()).abs() < 1e-5);
    }

    #[test]
    fn low_res_epochs_come_first_and_must_be_smaller() {
        let cfg = TrainConfig { input_size: 144, low_res_size: Some(112), low_res_epochs: 2, ..Default::default() };
        cfg.check_low_res().unwrap();
        assert_eq!((0..4).map(|e| cfg.input_size_at(e)).collect::<Vec<_>>(), [112, 112, 144, 144]);
        assert!(TrainConfig { low_res_size: Some(160), ..cfg.clone() }.check_low_res().is_err(), "larger than the input");
        assert!(TrainConfig { low_res_epochs: 0, ..cfg.clone() }.check_low_res().is_err(), "a size without epochs");
        assert!(TrainConfig { low_res_size: None, ..cfg }.check_low_res().is_err(), "epochs without a size");
        assert_eq!(TrainConfig::default().input_size_at(0), TrainConfig::default().input_size);
    }

    #[test]
    fn learning_rate_warms_up_then_decays() {
        let cfg = TrainConfig { epochs: 10, learning_rate: 1.0, warmup_epochs: 1.0, ..Default::default() };
        assert!(lr_at(&cfg, 0, 100) < 0.05);
        assert!((lr_at(&cfg, 100, 100) - 1.0).abs() < 1e-9);
        assert!(lr_at(&cfg, 999, 100) < 1e-3);
    }

    #[test]
    fn init_from_takes_that_runs_weights_and_refuses_another_split_or_network() {
        let dir = std::env::temp_dir().join(format!("dermscreen-init-from-{}", std::process::id()));
        let paths = RunPaths(dir.clone());
        std::fs::create_dir_all(paths.checkpoint()).unwrap();
        let cfg = TrainConfig::default();
        write_json(&paths.config(), &cfg).unwrap();
        let device = training_device();
        device.seed(1);
        let theirs = NetConfig::resnet_small(8).init(&device);
        theirs.clone().save_file(paths.checkpoint_model()).unwrap();
        device.seed(2);
        let fresh = NetConfig::resnet_small(8).init(&device);
        let head = |n: &Net| n.head.weight.val().into_data().try_to_vec::<f32>().unwrap();
        assert_ne!(head(&fresh), head(&theirs), "two seeds give two networks");

        check_init_from(&dir, &cfg).unwrap();
        let loaded = load_initial_weights(&dir, fresh, &device).unwrap();
        assert_eq!(head(&loaded), head(&theirs));

        let other_split = check_init_from(&dir, &TrainConfig { seed: 7, ..cfg.clone() }).unwrap_err();
        assert!(other_split.to_string().contains("split differently"), "{other_split}");
        let same_split = TrainConfig { seed: 7, split_seed: Some(cfg.seed), ..cfg.clone() };
        check_init_from(&dir, &same_split).expect("--split-seed holds the split while --seed changes");
        let wider = check_init_from(&dir, &TrainConfig { width: 1.5, ..cfg }).unwrap_err();
        assert!(wider.to_string().contains("network differs"), "{wider}");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn init_from_the_shipped_model_folder_takes_its_f16_weights_and_refuses_another_split_or_network() {
        let model = Path::new("model");
        let cfg = TrainConfig::default();
        check_init_from(model, &cfg).unwrap();
        let wider = check_init_from(model, &TrainConfig { width: 1.5, ..cfg }).unwrap_err();
        assert!(wider.to_string().contains("network differs"), "{wider}");

        let labels = dataset::read_labels(&model.join("validation_split.csv")).unwrap();
        let mut val: Vec<Sample> = labels
            .into_iter()
            .map(|l| Sample { source: String::new(), kind: dataset::Kind::Dermoscopic, group: String::new(), image: l.image, dx: l.dx, context: Default::default() })
            .collect();
        check_model_split(model, &val).unwrap();
        val.pop();
        let other = check_model_split(model, &val).unwrap_err();
        assert!(other.to_string().contains("other validation photos"), "{other}");

        // The weights are the shipped ones, widened from f16 (training on f16 tensors panics).
        let device = training_device();
        let fresh = NetConfig::resnet_small(8).init(&device);
        let head = |n: &Net| n.head.weight.val().into_data().try_to_vec::<f32>().unwrap();
        let before = head(&fresh);
        let loaded = load_initial_weights(model, fresh, &device).unwrap();
        let meta = read_model_meta(model).unwrap();
        let shipped = classifier::net_from_bytes(&meta.architecture, std::fs::read(model.join("model.bpk")).unwrap(), true, "model.bpk", &Device::flex()).unwrap();
        assert_ne!(head(&loaded), before);
        assert_eq!(head(&loaded), head(&shipped));
    }
}
