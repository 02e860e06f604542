//! HAM10000 metadata and the lesion-grouped, class-stratified, seeded train/validation split.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

/// One labelled image from `metadata.csv`.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    /// Lesion the image shows; images of one lesion never straddle splits.
    pub lesion_id: String,
    /// File stem (`ISIC_0024306`).
    pub image_id: String,
    /// Diagnosis code, a taxonomy node id.
    pub dx: String,
}

/// Errors reading a dataset folder.
#[derive(Debug, thiserror::Error)]
pub enum DatasetError {
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{path}: {source}")]
    Csv { path: PathBuf, source: csv::Error },
    #[error("{path}: missing column '{column}'")]
    MissingColumn { path: PathBuf, column: String },
    #[error("lesion {lesion} has images with different diagnoses ({a} and {b})")]
    MixedLesion { lesion: String, a: String, b: String },
}

/// Reads the named columns of a CSV file, in that order, for every row.
pub fn read_columns<const N: usize>(path: &Path, columns: [&str; N]) -> Result<Vec<[String; N]>, DatasetError> {
    let csv_err = |source| DatasetError::Csv { path: path.to_path_buf(), source };
    let mut rdr = csv::Reader::from_path(path).map_err(csv_err)?;
    let headers = rdr.headers().map_err(csv_err)?.clone();
    let mut at = [0usize; N];
    for (slot, name) in at.iter_mut().zip(columns) {
        *slot = headers.iter().position(|h| h == name).ok_or_else(|| DatasetError::MissingColumn {
            path: path.to_path_buf(),
            column: name.to_string(),
        })?;
    }
    rdr.records()
        .map(|rec| {
            let rec = rec.map_err(csv_err)?;
            Ok(at.map(|i| rec.get(i).unwrap_or_default().to_string()))
        })
        .collect()
}

/// Reads `metadata.csv` (HAM10000 layout: lesion_id, image_id, dx, ...).
pub fn read_metadata(path: &Path) -> Result<Vec<Sample>, DatasetError> {
    let rows = read_columns(path, ["lesion_id", "image_id", "dx"])?;
    Ok(rows
        .into_iter()
        .map(|[lesion_id, image_id, dx]| Sample { lesion_id, image_id, dx })
        .collect())
}

/// One row of a label table (`image,dx`), what `evaluate` scores against.
#[derive(Debug, Clone, PartialEq)]
pub struct Label {
    /// Image file name, with or without its extension.
    pub image: String,
    /// Diagnosis code, a taxonomy node id.
    pub dx: String,
}

/// Reads a label table with columns `image` and `dx` (others are ignored), such as
/// `model/validation_split.csv`.
pub fn read_labels(path: &Path) -> Result<Vec<Label>, DatasetError> {
    let rows = read_columns(path, ["image", "dx"])?;
    Ok(rows.into_iter().map(|[image, dx]| Label { image, dx }).collect())
}

/// The image files the app reads, by extension.
pub const IMAGE_EXTENSIONS: [&str; 5] = ["jpg", "jpeg", "png", "webp", "jfif"];

/// The image a label names in `dir`: the name as given, else with one of [`IMAGE_EXTENSIONS`].
pub fn find_image(dir: &Path, name: &str) -> Option<PathBuf> {
    std::iter::once(dir.join(name))
        .chain(IMAGE_EXTENSIONS.iter().map(|e| dir.join(format!("{name}.{e}"))))
        .find(|p| p.is_file())
}

/// Train and validation samples.
#[derive(Debug, Clone)]
pub struct Split {
    pub train: Vec<Sample>,
    pub val: Vec<Sample>,
}

fn splitmix64(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

/// FNV-1a hash of a string: stable across runs and platforms, for seeded orders and folds.
pub fn fnv1a(s: &str) -> u64 {
    s.bytes()
        .fold(0xcbf2_9ce4_8422_2325, |h, b| (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3))
}

/// Splits by lesion: within each diagnosis, lesions are ordered by a seeded hash of their id and
/// the first `round(val_fraction * n)` go to validation. Deterministic for a given seed and
/// independent of file order.
pub fn split_by_lesion(samples: &[Sample], val_fraction: f64, seed: u64) -> Result<Split, DatasetError> {
    let mut lesion_dx: HashMap<&str, &str> = HashMap::new();
    for s in samples {
        if let Some(prev) = lesion_dx.insert(&s.lesion_id, &s.dx) {
            if prev != s.dx {
                return Err(DatasetError::MixedLesion {
                    lesion: s.lesion_id.clone(),
                    a: prev.to_string(),
                    b: s.dx.clone(),
                });
            }
        }
    }
    let mut by_dx: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for (lesion, dx) in &lesion_dx {
        by_dx.entry(dx).or_default().push(lesion);
    }
    let mut val_lesions = std::collections::HashSet::new();
    for lesions in by_dx.values_mut() {
        lesions.sort_by_key(|l| (splitmix64(seed ^ fnv1a(l)), *l));
        let n_val = (val_fraction * lesions.len() as f64).round() as usize;
        val_lesions.extend(lesions.iter().take(n_val).copied());
    }
    let (val, train) = samples
        .iter()
        .cloned()
        .partition(|s| val_lesions.contains(s.lesion_id.as_str()));
    Ok(Split { train, val })
}

/// Images per diagnosis.
pub fn class_counts(samples: &[Sample]) -> HashMap<String, usize> {
    let mut m = HashMap::new();
    for s in samples {
        *m.entry(s.dx.clone()).or_insert(0) += 1;
    }
    m
}

#[cfg(test)]
mod tests {
    use super::*;

    fn synthetic() -> Vec<Sample> {
        let mut v = Vec::new();
        for i in 0..200 {
            let dx = if i % 10 == 0 { "mel" } else { "nv" };
            for k in 0..(1 + i % 3) {
                v.push(Sample {
                    lesion_id: format!("L{i}"),
                    image_id: format!("I{i}_{k}"),
                    dx: dx.into(),
                });
            }
        }
        v
    }

    #[test]
    fn split_groups_lesions_stratifies_and_is_deterministic() {
        let s = synthetic();
        let a = split_by_lesion(&s, 0.2, 7).unwrap();
        let b = split_by_lesion(&s, 0.2, 7).unwrap();
        assert_eq!(a.val, b.val);
        let train_lesions: std::collections::HashSet<_> = a.train.iter().map(|s| &s.lesion_id).collect();
        assert!(a.val.iter().all(|s| !train_lesions.contains(&s.lesion_id)));
        let val_mel_lesions: std::collections::HashSet<_> =
            a.val.iter().filter(|s| s.dx == "mel").map(|s| &s.lesion_id).collect();
        assert_eq!(val_mel_lesions.len(), 4, "20% of the 20 melanoma lesions");
        let mut reversed = s.clone();
        reversed.reverse();
        let c = split_by_lesion(&reversed, 0.2, 7).unwrap();
        let mut v1: Vec<_> = a.val.iter().map(|s| &s.image_id).collect();
        let mut v2: Vec<_> = c.val.iter().map(|s| &s.image_id).collect();
        v1.sort();
        v2.sort();
        assert_eq!(v1, v2, "independent of file order");
        let d = split_by_lesion(&s, 0.2, 8).unwrap();
        assert_ne!(a.val, d.val, "the seed matters");
    }

    #[test]
    fn mixed_lesion_is_an_error() {
        let mut s = synthetic();
        s[1].dx = "bcc".into();
        assert!(matches!(split_by_lesion(&s, 0.2, 1), Err(DatasetError::MixedLesion { .. })));
    }
}
