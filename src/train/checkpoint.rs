//! The run folder: its files, the checkpoint saved after each epoch, and the checks that
//! keep a run from overwriting or silently changing another.

use super::config::TrainConfig;
use super::init_from::load_net;
use crate::model::Net;
use anyhow::{bail, Context, Result};
use burn::optim::ModuleOptimizer;
use burn::prelude::*;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// The files of a run folder, named once.
pub(super) struct RunPaths(pub(super) PathBuf);

impl RunPaths {
    pub(super) fn file(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
    pub(super) fn config(&self) -> PathBuf {
        self.file("train_config.json")
    }
    pub(super) fn checkpoint(&self) -> PathBuf {
        self.file("checkpoint")
    }
    pub(super) fn checkpoint_model(&self) -> PathBuf {
        self.file("checkpoint/model.bpk")
    }
    fn checkpoint_optimizer(&self) -> PathBuf {
        self.file("checkpoint/optimizer.bpk")
    }
    pub(super) fn checkpoint_state(&self) -> PathBuf {
        self.file("checkpoint/state.json")
    }
}

pub(super) fn write_json(path: &Path, value: &impl Serialize) -> Result<()> {
    std::fs::write(path, serde_json::to_vec_pretty(value)?).with_context(|| format!("writing {}", path.display()))
}

/// Progress saved with each checkpoint.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub(super) struct TrainState {
    pub(super) epochs_done: usize,
    pub(super) history: Vec<EpochLog>,
}

/// What one epoch measured.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct EpochLog {
    pub(super) epoch: usize,
    pub(super) train_loss: f64,
    pub(super) val_loss: Option<f64>,
    pub(super) val_balanced_accuracy: Option<f64>,
    pub(super) val_auc_mel_nv: Option<f64>,
    pub(super) val_auc_kc_bkl: Option<f64>,
    /// Melanoma vs nevus on each source's validation photos: one source can fall behind while
    /// the pooled AUC rises.
    #[serde(default)]
    pub(super) val_auc_mel_nv_by_source: Vec<(String, Option<f64>)>,
    /// The input side the epoch trained at (`--low-res-size` early on, else `--input-size`).
    #[serde(default)]
    pub(super) input_size: u32,
    pub(super) images_per_second: f64,
    pub(super) seconds: f64,
}

/// Saves the network (full precision, so a resumed run continues exactly), the optimiser and
/// the progress. The network goes through a temporary file so a crash never leaves half a checkpoint.
pub(super) fn save_checkpoint(paths: &RunPaths, net: &Net, optim: &ModuleOptimizer, state: &TrainState) -> Result<()> {
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
pub(super) fn load_checkpoint(paths: &RunPaths, net: Net, optim: ModuleOptimizer, device: &Device) -> Result<(Net, ModuleOptimizer, TrainState)> {
    let state: TrainState = serde_json::from_slice(&std::fs::read(paths.checkpoint_state())?)?;
    let net = load_net(net, &paths.checkpoint_model(), device)?;
    let optim = optim
        .load(paths.checkpoint_optimizer())
        .map_err(|e| anyhow::anyhow!("loading optimizer state: {e}"))?;
    eprintln!("resuming after epoch {}", state.epochs_done);
    Ok((net, optim, state))
}

/// A new run into a folder that holds another would start over and overwrite its checkpoint
/// (hours of training, and what `--resume` continues), so it is refused.
pub(super) fn refuse_to_overwrite(paths: &RunPaths) -> Result<()> {
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

/// Refuses a setting typed with `--resume` (`typed`: field, flag) whose value in `given` is not
/// the run's `saved` one: the run goes on with its own, so the typed one would go unused.
/// Paths naming the same folder are the same setting.
pub(super) fn check_typed_settings(given: &TrainConfig, saved: &TrainConfig, typed: &[(String, String)], out: &Path) -> Result<()> {
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
