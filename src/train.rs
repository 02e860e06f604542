//! The trainer (feature `train`): HAM10000 -> lesion-grouped split -> augmented, class-balanced
//! batches -> AdamW with warm-up and cosine decay -> checkpoints, validation metrics, and the
//! shipped artefacts (`model.bpk`, `model.json`, `metrics.json`).

use crate::classifier::{self, Classifier, ModelMeta, WeightsInfo, META_FORMAT};
use crate::dataset::{self, Sample};
use crate::model::{Net, NetConfig};
use crate::preprocess::{self, PreprocessConfig};
use crate::report;
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
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// Everything that defines a training run; saved as `train_config.json` in the run folder.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TrainConfig {
    pub data: PathBuf,
    pub epochs: usize,
    pub batch_size: usize,
    pub learning_rate: f64,
    pub weight_decay: f32,
    pub warmup_epochs: f64,
    pub label_smoothing: f32,
    pub input_size: u32,
    /// Exponent of the class-balancing sampler: each image is drawn with weight n_c^-alpha
    /// (0 = natural frequencies, 1 = fully balanced).
    pub balance_alpha: f64,
    pub val_fraction: f64,
    pub seed: u64,
    /// `maxClassSize` of the partitioning algorithm; `None` scales the paper's 1,000 (for
    /// 129,450 images) to the training set's size.
    pub max_class_size: Option<usize>,
    /// Stop after this many optimiser steps per epoch (quick runs and benchmarks).
    pub max_steps_per_epoch: Option<usize>,
    /// Use at most this many training images (smoke tests).
    pub limit_train: Option<usize>,
    /// Share of malignant validation lesions the "high risk" threshold must flag.
    #[serde(default = "default_target_sensitivity")]
    pub target_sensitivity: f64,
    pub net: Option<NetConfig>,
}

fn default_target_sensitivity() -> f64 {
    0.85
}

impl Default for TrainConfig {
    fn default() -> Self {
        Self {
            data: PathBuf::from("../shared/data/ham10000"),
            epochs: 30,
            batch_size: 32,
            learning_rate: 2e-3,
            weight_decay: 0.05,
            warmup_epochs: 1.0,
            label_smoothing: 0.1,
            input_size: 112,
            balance_alpha: 0.5,
            val_fraction: 0.2,
            seed: 20_171_025,
            max_class_size: None,
            max_steps_per_epoch: None,
            limit_train: None,
            target_sensitivity: default_target_sensitivity(),
            net: None,
        }
    }
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
#[derive(Debug, Clone, Serialize, Deserialize)]
struct TrainState {
    epochs_done: usize,
    history: Vec<EpochLog>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct EpochLog {
    epoch: usize,
    train_loss: f64,
    val_loss: f64,
    val_balanced_accuracy: f64,
    val_auc_mel_nv: Option<f64>,
    val_auc_kc_bkl: Option<f64>,
    images_per_second: f64,
    seconds: f64,
}

/// A decoded image's centre square, kept in memory for the whole run.
struct Item {
    square: RgbImage,
    class: usize,
}

/// Parameters of one random augmentation.
struct Aug {
    angle: f32,
    scale: f32,
    dx: f32,
    dy: f32,
    hflip: bool,
    brightness: f32,
    contrast: f32,
    saturation: f32,
}

impl Aug {
    fn sample(rng: &mut StdRng) -> Self {
        Self {
            angle: rng.random_range(0.0..std::f32::consts::TAU),
            scale: rng.random_range(0.75..1.0),
            dx: rng.random_range(-0.08..0.08),
            dy: rng.random_range(-0.08..0.08),
            hflip: rng.random_bool(0.5),
            brightness: rng.random_range(0.85..1.15),
            contrast: rng.random_range(0.85..1.15),
            saturation: rng.random_range(0.8..1.2),
        }
    }
}

/// Renders an augmented `size` x `size` view of a square source: rotation about the centre by
/// any angle, zoom (a window of `scale` times the side), shift, flip (the paper's rotation and
/// flip invariance), then brightness, contrast and saturation jitter. Bilinear, edge-clamped.
fn augment(src: &RgbImage, size: u32, a: &Aug) -> RgbImage {
    let side = src.width() as f32;
    let (cos, sin) = (a.angle.cos(), a.angle.sin());
    let step = a.scale * side / size as f32;
    let (cx, cy) = (side / 2.0 + a.dx * side, side / 2.0 + a.dy * side);
    let max = side - 1.0;
    let raw = src.as_raw();
    let w = src.width() as usize;
    let mut out = RgbImage::new(size, size);
    let mean_luma = 0.5;
    for (x, y, px) in out.enumerate_pixels_mut() {
        let mut u = (x as f32 + 0.5 - size as f32 / 2.0) * step;
        let v = (y as f32 + 0.5 - size as f32 / 2.0) * step;
        if a.hflip {
            u = -u;
        }
        let sx = (cx + cos * u - sin * v - 0.5).clamp(0.0, max);
        let sy = (cy + sin * u + cos * v - 0.5).clamp(0.0, max);
        let (x0, y0) = (sx.floor() as usize, sy.floor() as usize);
        let (x1, y1) = ((x0 + 1).min(w - 1), (y0 + 1).min(w - 1));
        let (fx, fy) = (sx - x0 as f32, sy - y0 as f32);
        let mut rgb = [0f32; 3];
        for (c, val) in rgb.iter_mut().enumerate() {
            let p = |xx: usize, yy: usize| f32::from(raw[(yy * w + xx) * 3 + c]) / 255.0;
            let top = p(x0, y0) * (1.0 - fx) + p(x1, y0) * fx;
            let bottom = p(x0, y1) * (1.0 - fx) + p(x1, y1) * fx;
            *val = top * (1.0 - fy) + bottom * fy;
        }
        let luma = 0.299 * rgb[0] + 0.587 * rgb[1] + 0.114 * rgb[2];
        for val in rgb.iter_mut() {
            let sat = luma + (*val - luma) * a.saturation;
            let con = mean_luma + (sat - mean_luma) * a.contrast;
            *val = (con * a.brightness).clamp(0.0, 1.0);
        }
        *px = image::Rgb(rgb.map(|v| (v * 255.0).round() as u8));
    }
    out
}

fn load_items(samples: &[Sample], images: &Path, classes: &HashMap<String, usize>) -> Result<Vec<Item>> {
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
                            let path = images.join(format!("{}.jpg", smp.image_id));
                            let bytes = std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
                            let img = preprocess::decode(&bytes).with_context(|| path.display().to_string())?;
                            bar.inc(1);
                            Ok(Item {
                                square: preprocess::centre_square(&img),
                                class: classes[&smp.dx],
                            })
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

/// The training device: a Vulkan GPU with the `vulkan` feature, else Burn's CPU backend (flex).
pub fn training_device() -> Device {
    #[cfg(feature = "vulkan")]
    {
        Device::vulkan(burn::tensor::DeviceKind::DefaultDevice).autodiff()
    }
    #[cfg(not(feature = "vulkan"))]
    {
        Device::flex().autodiff()
    }
}

/// Runs (or resumes) a training run into `out`.
pub fn run(cfg: TrainConfig, out: &Path, resume: bool) -> Result<()> {
    std::fs::create_dir_all(out.join("checkpoint")).with_context(|| format!("creating {}", out.display()))?;
    let cfg_path = out.join("train_config.json");
    let cfg = if resume {
        let saved: TrainConfig = serde_json::from_slice(&std::fs::read(&cfg_path).context("--resume: no train_config.json in the run folder")?)?;
        TrainConfig { epochs: cfg.epochs.max(saved.epochs), ..saved }
    } else {
        cfg
    };
    std::fs::write(&cfg_path, serde_json::to_vec_pretty(&cfg)?)?;

    let taxonomy = Taxonomy::bundled();
    let samples = dataset::read_metadata(&cfg.data.join("metadata.csv"))?;
    let split = dataset::split_by_lesion(&samples, cfg.val_fraction, cfg.seed)?;
    let mut train_samples = split.train;
    if let Some(limit) = cfg.limit_train {
        // An evenly strided subset keeps every diagnosis (metadata.csv is sorted by dx).
        let stride = train_samples.len().div_ceil(limit.max(1));
        train_samples = train_samples.into_iter().step_by(stride).collect();
    }
    let counts = dataset::class_counts(&train_samples);
    let n_train = train_samples.len();
    let max_class_size = cfg
        .max_class_size
        .unwrap_or_else(|| ((1000.0 * n_train as f64 / 129_450.0).round() as usize).max(1));
    let training_classes = taxonomy.partition(&counts, max_class_size);
    // Each diagnosis maps to the training class that contains it.
    let mut class_of: HashMap<String, usize> = HashMap::new();
    for dx in counts.keys().chain(dataset::class_counts(&split.val).keys()) {
        let k = training_classes
            .iter()
            .position(|c| taxonomy.is_within(dx, c).unwrap_or(false))
            .with_context(|| format!("diagnosis '{dx}' is not under any training class"))?;
        class_of.insert(dx.clone(), k);
    }
    let k = training_classes.len();
    let mut class_counts = vec![0usize; k];
    for s in &train_samples {
        class_counts[class_of[&s.dx]] += 1;
    }
    eprintln!(
        "{} train / {} validation images ({} lesions held out); maxClassSize {} -> {} training classes: {}",
        n_train,
        split.val.len(),
        split.val.iter().map(|s| &s.lesion_id).collect::<std::collections::HashSet<_>>().len(),
        max_class_size,
        k,
        training_classes.iter().zip(&class_counts).map(|(c, n)| format!("{c} ({n})")).collect::<Vec<_>>().join(", ")
    );
    let mut val_csv = csv::Writer::from_path(out.join("val_labels.csv"))?;
    val_csv.write_record(["image", "dx"])?;
    for s in &split.val {
        val_csv.write_record([&s.image_id, &s.dx])?;
    }
    val_csv.flush()?;

    let images = cfg.data.join("images");
    let train_items = load_items(&train_samples, &images, &class_of)?;
    let val_items = load_items(&split.val, &images, &class_of)?;
    let (mean, std) = channel_stats(&train_items);
    let pre = PreprocessConfig { input_size: cfg.input_size, mean, std };
    eprintln!("channel mean {mean:?}, std {std:?}");
    // Validation goes through the inference path: centre square, resize, normalise.
    let val_inputs: Vec<f32> = val_items.iter().flat_map(|it| pre.to_input(&it.square)).collect();
    let val_labels: Vec<usize> = val_items.iter().map(|it| it.class).collect();

    let net_cfg = cfg.net.clone().unwrap_or_else(|| NetConfig::resnet_small(k));
    if net_cfg.num_classes != k {
        bail!("architecture has {} outputs but the partition gives {k} classes", net_cfg.num_classes);
    }
    let device = training_device();
    device.seed(cfg.seed);
    let mut net = net_cfg.init(&device);
    let mut optim: ModuleOptimizer = AdamWConfig::new().with_weight_decay(cfg.weight_decay).init();
    let state_path = out.join("checkpoint/state.json");
    let mut state = TrainState { epochs_done: 0, history: Vec::new() };
    if resume && state_path.exists() {
        state = serde_json::from_slice(&std::fs::read(&state_path)?)?;
        net = net
            .load_file(out.join("checkpoint/model.bpk"))
            .fork(&device);
        optim = optim
            .load(out.join("checkpoint/optimizer.bpk"))
            .map_err(|e| anyhow::anyhow!("loading optimizer state: {e}"))?;
        eprintln!("resuming after epoch {}", state.epochs_done);
    }

    let sample_weight: Vec<f64> = train_items
        .iter()
        .map(|it| (class_counts[it.class] as f64).powf(-cfg.balance_alpha))
        .collect();
    let cumulative: Vec<f64> = sample_weight
        .iter()
        .scan(0.0, |acc, w| {
            *acc += w;
            Some(*acc)
        })
        .collect();
    let total_weight = *cumulative.last().context("no training images")?;
    let full_steps = n_train / cfg.batch_size;
    let steps_per_epoch = cfg.max_steps_per_epoch.map_or(full_steps, |m| m.min(full_steps)).max(1);
    let logit_adj = logit_adjustment(&class_counts, cfg.balance_alpha);
    let s = cfg.input_size as usize;
    let per = 3 * s * s;

    for epoch in state.epochs_done..cfg.epochs {
        let started = Instant::now();
        let mut rng = StdRng::seed_from_u64(cfg.seed ^ (epoch as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15));
        let bar = ProgressBar::new(steps_per_epoch as u64).with_style(
            ProgressStyle::with_template(
                "epoch {prefix} [{bar:25}] step {pos}/{len} {msg} eta {eta}",
            )
            .expect("valid template"),
        );
        bar.set_prefix(format!("{}/{}", epoch + 1, cfg.epochs));
        if !console_is_tty() {
            bar.set_draw_target(indicatif::ProgressDrawTarget::hidden());
        }
        // Batches are prepared on a second thread while the network trains.
        let (tx, rx) = std::sync::mpsc::sync_channel::<(Vec<f32>, Vec<usize>)>(3);
        let mut loss_sum = 0.0;
        std::thread::scope(|scope| -> Result<()> {
            let items = &train_items;
            let cumulative = &cumulative;
            let pre = &pre;
            let bs = cfg.batch_size;
            let mut batch_rng = StdRng::seed_from_u64(rng.random());
            scope.spawn(move || {
                for _ in 0..steps_per_epoch {
                    let mut x = vec![0f32; bs * per];
                    let mut y = Vec::with_capacity(bs);
                    for b in 0..bs {
                        let r = batch_rng.random_range(0.0..total_weight);
                        let i = cumulative.partition_point(|&c| c <= r).min(items.len() - 1);
                        let aug = Aug::sample(&mut batch_rng);
                        let view = augment(&items[i].square, s as u32, &aug);
                        pre.normalise_into(&view, &mut x[b * per..(b + 1) * per]);
                        y.push(items[i].class);
                    }
                    if tx.send((x, y)).is_err() {
                        return;
                    }
                }
            });
            let mut seen = 0usize;
            for step in 0..steps_per_epoch {
                let (x, y) = rx.recv().context("batch thread stopped")?;
                let global_step = epoch * steps_per_epoch + step;
                let lr = lr_at(&cfg, global_step, steps_per_epoch);
                let n = y.len();
                let input = Tensor::<4>::from_data(TensorData::new(x, [n, 3, s, s]), &device);
                let targets = Tensor::<2>::from_data(
                    TensorData::new(smoothed_targets(&y, k, cfg.label_smoothing), [n, k]),
                    &device,
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
                bar.set_message(format!(
                    "loss {:.4} lr {:.2e} {:.0} img/s",
                    loss_sum / (step + 1) as f64,
                    lr,
                    rate
                ));
                bar.inc(1);
                if !console_is_tty() && (step + 1) % 50 == 0 {
                    eprintln!(
                        "epoch {}/{} step {}/{} loss {:.4} lr {:.2e} {:.0} img/s eta {:.0}s",
                        epoch + 1,
                        cfg.epochs,
                        step + 1,
                        steps_per_epoch,
                        loss_sum / (step + 1) as f64,
                        lr,
                        rate,
                        (steps_per_epoch - step - 1) as f64 * cfg.batch_size as f64 / rate
                    );
                }
            }
            Ok(())
        })?;
        bar.finish_and_clear();
        let train_secs = started.elapsed().as_secs_f64();
        let train_rate = (steps_per_epoch * cfg.batch_size) as f64 / train_secs;

        let valid = net.valid();
        let (val_probs, val_loss) = predict_probs(&valid, &val_inputs, &val_labels, per, s, k, &logit_adj, false);
        let summary = report::summarise(&training_classes, &taxonomy, &val_labels, &val_probs)?;
        let log = EpochLog {
            epoch: epoch + 1,
            train_loss: loss_sum / steps_per_epoch as f64,
            val_loss,
            val_balanced_accuracy: summary.balanced_accuracy,
            val_auc_mel_nv: summary.auc("melanoma_vs_nevus"),
            val_auc_kc_bkl: summary.auc("carcinoma_vs_keratosis"),
            images_per_second: train_rate,
            seconds: started.elapsed().as_secs_f64(),
        };
        eprintln!(
            "epoch {}/{}: train loss {:.4}, val loss {:.4}, balanced acc {:.3}, AUC mel/nv {}, AUC kc/bkl {}, {:.0} img/s, {:.0} s",
            log.epoch,
            cfg.epochs,
            log.train_loss,
            log.val_loss,
            log.val_balanced_accuracy,
            fmt_opt(log.val_auc_mel_nv),
            fmt_opt(log.val_auc_kc_bkl),
            log.images_per_second,
            log.seconds
        );
        state.history.push(log);
        state.epochs_done = epoch + 1;
        // Checkpoint in full precision so a resumed run continues exactly.
        net.clone().save_file(out.join("checkpoint/model.bpk.tmp"))
            .map_err(|e| anyhow::anyhow!("saving checkpoint: {e}"))?;
        std::fs::rename(out.join("checkpoint/model.bpk.tmp.bpk"), out.join("checkpoint/model.bpk"))
            .or_else(|_| std::fs::rename(out.join("checkpoint/model.bpk.tmp"), out.join("checkpoint/model.bpk")))?;
        let _ = std::fs::remove_file(out.join("checkpoint/optimizer.bpk"));
        optim
            .save(out.join("checkpoint/optimizer.bpk"))
            .map_err(|e| anyhow::anyhow!("saving optimizer: {e}"))?;
        std::fs::write(&state_path, serde_json::to_vec_pretty(&state)?)?;
        std::fs::write(out.join("history.json"), serde_json::to_vec_pretty(&state.history)?)?;
    }

    // Ship: f16 weights, model.json, then score validation through the shipped classifier.
    let valid = net.valid();
    let weights = classifier::weights_to_bytes(&valid, true)?;
    std::fs::write(out.join("model.bpk"), &weights)?;
    let meta = ModelMeta {
        format: META_FORMAT,
        name: format!("dermscreen-resnet-{}px", cfg.input_size),
        architecture: net_cfg,
        preprocess: pre,
        training_classes: training_classes.clone(),
        max_class_size,
        taxonomy_version: taxonomy.version().to_string(),
        logit_adjustment: logit_adj,
        test_time_flips: true,
        high_risk_threshold: 0.5,
        weights: WeightsInfo {
            file: "model.bpk".into(),
            bytes: weights.len() as u64,
            sha256: classifier::sha256_hex(&weights),
            precision: "f16".into(),
        },
    };
    std::fs::write(out.join("model.json"), serde_json::to_vec_pretty(&meta)?)?;
    // Score validation through the shipped classifier (f16 weights, test-time flips, logit
    // adjustment), and through the same classifier with f32 weights to show what f16 costs.
    let shipped = Classifier::load_dir(out, Device::flex())?;
    let f32_weights = classifier::weights_to_bytes(&valid, false)?;
    let mut meta32 = meta.clone();
    meta32.weights = WeightsInfo {
        file: "<f32 in memory>".into(),
        bytes: f32_weights.len() as u64,
        sha256: classifier::sha256_hex(&f32_weights),
        precision: "f32".into(),
    };
    let full = Classifier::from_parts(meta32, f32_weights, taxonomy.clone(), Device::flex())?;
    let mut probs = Vec::new();
    let mut probs32 = Vec::new();
    for chunk in val_inputs.chunks(64 * per) {
        for (c, dst) in [(&shipped, &mut probs), (&full, &mut probs32)] {
            for p in c.classify_inputs(chunk)? {
                dst.push(p.classes.iter().map(|c| c.probability).collect::<Vec<f32>>());
            }
        }
    }
    let max_diff = probs
        .iter()
        .flatten()
        .zip(probs32.iter().flatten())
        .map(|(a, b)| (a - b).abs())
        .fold(0f32, f32::max);
    let summary = report::summarise(&training_classes, &taxonomy, &val_labels, &probs)?;
    let summary32 = report::summarise(&training_classes, &taxonomy, &val_labels, &probs32)?;
    // A screening aid should rather send too many people to a dermatologist than too few: the
    // "high risk" threshold is the highest P(malignant) that still flags the target share of
    // malignant validation lesions (chosen on validation, so expect a little less on new data).
    let mut meta = meta;
    let malignant_task = summary.binary_tasks.iter().find(|t| t.name == "malignant_vs_benign");
    if let Some(point) = malignant_task.and_then(|t| t.roc.iter().find(|p| p.tpr >= cfg.target_sensitivity)) {
        meta.high_risk_threshold = ((point.threshold * 100.0).floor() / 100.0).clamp(0.01, 0.99) as f32;
        std::fs::write(out.join("model.json"), serde_json::to_vec_pretty(&meta)?)?;
    }
    let operating_point = malignant_task
        .and_then(|t| t.roc.iter().rev().find(|p| p.threshold >= f64::from(meta.high_risk_threshold)).copied());
    let metrics = serde_json::json!({
        "split": {
            "seed": cfg.seed,
            "val_fraction": cfg.val_fraction,
            "train_images": n_train,
            "val_images": val_labels.len(),
            "grouped_by": "lesion_id",
        },
        "validation": summary,
        "high_risk_threshold": meta.high_risk_threshold,
        "high_risk_operating_point": operating_point.map(|p| serde_json::json!({
            "sensitivity": p.tpr,
            "specificity": 1.0 - p.fpr,
        })),
        "f32_weights": {
            "max_abs_probability_difference_vs_f16": max_diff,
            "balanced_accuracy": summary32.balanced_accuracy,
            "auc_melanoma_vs_nevus": summary32.auc("melanoma_vs_nevus"),
            "auc_carcinoma_vs_keratosis": summary32.auc("carcinoma_vs_keratosis"),
            "auc_malignant_vs_benign": summary32.auc("malignant_vs_benign"),
        },
        "history": state.history,
    });
    std::fs::write(out.join("metrics.json"), serde_json::to_vec_pretty(&metrics)?)?;
    eprintln!(
        "shipped-model validation (f16, test-time flips): balanced accuracy {:.3} (f32: {:.3}, max |p16 - p32| {:.1e}), AUC mel/nv {}, AUC kc/bkl {}; wrote {}",
        summary.balanced_accuracy,
        summary32.balanced_accuracy,
        max_diff,
        fmt_opt(summary.auc("melanoma_vs_nevus")),
        fmt_opt(summary.auc("carcinoma_vs_keratosis")),
        out.display()
    );
    Ok(())
}

fn fmt_opt(v: Option<f64>) -> String {
    v.map_or("n/a".into(), |x| format!("{x:.3}"))
}

fn console_is_tty() -> bool {
    use std::io::IsTerminal;
    std::io::stderr().is_terminal()
}

/// Probabilities (logit-adjusted, as shipped) and the mean unadjusted cross-entropy.
#[allow(clippy::too_many_arguments)]
fn predict_probs(
    net: &Net,
    inputs: &[f32],
    labels: &[usize],
    per: usize,
    s: usize,
    k: usize,
    adjust: &[f32],
    _flips: bool,
) -> (Vec<Vec<f32>>, f64) {
    let device = Device::flex();
    let net = net.clone().to_device(&device);
    let mut probs = Vec::new();
    let mut loss_sum = 0.0;
    for (chunk, lab) in inputs.chunks(128 * per).zip(labels.chunks(128)) {
        let n = chunk.len() / per;
        let x = Tensor::<4>::from_data(TensorData::new(chunk.to_vec(), [n, 3, s, s]), &device);
        let logits = net.forward(x).into_data().try_to_vec::<f32>().expect("f32 logits");
        for (row, &l) in logits.chunks(k).zip(lab) {
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
    fn identity_augmentation_matches_the_inference_path() {
        let src = RgbImage::from_fn(150, 150, |x, y| image::Rgb([x as u8, y as u8, (x ^ y) as u8]));
        let id = Aug { angle: 0.0, scale: 1.0, dx: 0.0, dy: 0.0, hflip: false, brightness: 1.0, contrast: 1.0, saturation: 1.0 };
        let out = augment(&src, 150, &id);
        assert_eq!(out, src);
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
    fn learning_rate_warms_up_then_decays() {
        let cfg = TrainConfig { epochs: 10, learning_rate: 1.0, warmup_epochs: 1.0, ..Default::default() };
        assert!(lr_at(&cfg, 0, 100) < 0.05);
        assert!((lr_at(&cfg, 100, 100) - 1.0).abs() < 1e-9);
        assert!(lr_at(&cfg, 999, 100) < 1e-3);
    }
}
