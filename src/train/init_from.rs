//! `--init-from`: starting from another run's or the shipped model's weights, refused unless
//! the network and the validation split are the same.

use super::checkpoint::RunPaths;
use super::config::TrainConfig;
use crate::classifier::{self, ModelMeta};
use crate::dataset::{self, Sample};
use crate::model::Net;
use anyhow::{bail, Context, Result};
use burn::prelude::*;
use std::collections::HashSet;
use std::path::Path;

/// Refuses `--init-from` unless that run has this architecture and this split: a network
/// trained on another split has seen some of this run's validation photos, and its scores here
/// would flatter it. Checked before the photos are decoded, so a mistake fails at once (a
/// model folder's split is checked once this run has split, by [`check_model_split`]).
pub(super) fn check_init_from(from: &Path, cfg: &TrainConfig) -> Result<()> {
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
pub(super) fn is_model_folder(from: &Path) -> bool {
    from.join("model.json").is_file() && !RunPaths(from.to_path_buf()).config().is_file()
}

pub(super) fn read_model_meta(from: &Path) -> Result<ModelMeta> {
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
pub(super) fn check_model_split(from: &Path, val: &[Sample]) -> Result<()> {
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
pub(super) fn load_initial_weights(from: &Path, net: Net, device: &Device) -> Result<Net> {
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
pub(super) fn load_net(net: Net, path: &Path, device: &Device) -> Result<Net> {
    let net = net.try_load_file(path).map_err(|e| anyhow::anyhow!("loading {}: {e}", path.display()))?;
    Ok(net.fork(device))
}
