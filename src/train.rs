//! The trainer (feature `train`): the sources of `taxonomy/sources.json` (dermoscopy from three
//! clinics' collections, phone photos) -> a split grouped by lesion or patient within each
//! source -> augmented, class- and source-balanced batches -> AdamW with warm-up and cosine
//! decay -> checkpoints, validation metrics, and the shipped artefacts (`model.bpk`, `model.json`, `metrics.json`).
//!
//! [`run`] hands off in the order of a run (private items, so plain names here):
//! `RunData::prepare` (split, partition, decode; `data`), `Trainer::epoch` (the batch thread
//! feeds the optimiser), `Trainer::validate` (an `EpochLog`), `save_checkpoint` (`checkpoint`),
//! and `ship` (export, threshold, metrics; `ship`). The settings are `config`'s, and
//! `--init-from`'s checks `init_from`'s.

mod checkpoint;
mod config;
mod data;
mod init_from;
mod ship;

use checkpoint::{check_typed_settings, load_checkpoint, refuse_to_overwrite, save_checkpoint, write_json, EpochLog, RunPaths, TrainState};
use config::lr_at;
pub use config::TrainConfig;
use data::{spawn_batches, RunData, Sampler};
use init_from::{check_init_from, check_model_split, is_model_folder, load_initial_weights};
use ship::{ship, split_summary, summaries_by};
use crate::classifier;
use crate::model::{Net, NetConfig};
use crate::preprocess::PreprocessConfig;
use crate::report::{self, fmt_opt};
use crate::taxonomy::Taxonomy;
use anyhow::{bail, Context, Result};
use burn::optim::{AdamWConfig, GradientsParams, ModuleOptimizer};
use burn::prelude::*;
use burn::tensor::activation::log_softmax;
use indicatif::{ProgressBar, ProgressStyle};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::path::Path;
use std::time::Instant;

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
    use super::data::limit_samples;
    use super::init_from::read_model_meta;
    use super::*;

    use crate::dataset::{self, Sample};
    use std::collections::HashSet;

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

    /// `dermscreen train --out DIR` alone trains the shipped model's recipe: its network and
    /// input side are the shipped model.json's (its schedule, not recorded there, is the model
    /// card's).
    #[test]
    fn the_defaults_train_the_shipped_models_network_at_its_input_side() {
        let cfg = TrainConfig::default();
        let meta = read_model_meta(Path::new("model")).unwrap();
        assert_eq!(cfg.input_size, meta.preprocess.input_size);
        assert_eq!(cfg.low_res_size, None, "one input side throughout");
        assert_eq!(cfg.network(meta.training_classes.len()), meta.architecture);
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
