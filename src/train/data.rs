//! A run's data: the sources read and split, every image decoded once, and the sampler and
//! batch thread that feed the optimiser augmented batches.

use super::checkpoint::RunPaths;
use super::config::TrainConfig;
use crate::augment::{augment, Aug, AugConfig};
use crate::dataset::{self, Sample};
use crate::preprocess::{self, PreprocessConfig};
use crate::taxonomy::Taxonomy;
use anyhow::{bail, Context, Result};
use image::RgbImage;
use indicatif::{ProgressBar, ProgressStyle};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::collections::{HashMap, HashSet};
use std::path::Path;
use rayon::prelude::*;
use std::sync::mpsc::{sync_channel, Receiver};

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

/// A decoded image's centre square, kept in memory for the whole run.
pub(super) struct Item {
    pub(super) square: RgbImage,
    pub(super) class: usize,
    /// How often the sampler draws it relative to others of its class ([`dataset::SourceSpec::weight`]).
    pub(super) source_weight: f64,
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
pub(super) struct RunData {
    pub(super) training_classes: Vec<String>,
    pub(super) max_class_size: usize,
    /// Training images per training class.
    pub(super) class_counts: Vec<usize>,
    pub(super) train_items: Vec<Item>,
    /// `[n_val, 3, s, s]` floats, flattened.
    pub(super) val_inputs: Vec<f32>,
    pub(super) val_labels: Vec<usize>,
    /// The validation samples, in the order of `val_labels`.
    pub(super) val_samples: Vec<Sample>,
    pub(super) pre: PreprocessConfig,
}

/// About `limit` of `samples` (`--limit-train`): an evenly strided subset of each source's
/// diagnoses, each keeping at least its first image, so that every diagnosis of the
/// validation split still has a training class; at most one more per source and diagnosis.
pub(super) fn limit_samples(mut samples: Vec<Sample>, limit: usize) -> Vec<Sample> {
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
    pub(super) fn prepare(cfg: &TrainConfig, taxonomy: &Taxonomy, paths: &RunPaths) -> Result<Self> {
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
pub(super) struct Sampler {
    pub(super) cumulative: Vec<f64>,
}

impl Sampler {
    pub(super) fn new(items: &[Item], class_counts: &[usize], alpha: f64) -> Result<Self> {
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
pub(super) fn spawn_batches<'scope>(
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
