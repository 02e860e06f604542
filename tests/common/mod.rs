//! Shared helpers for the integration tests: where the data and the shipped model live.
#![allow(dead_code)]

use std::path::PathBuf;

/// The repository root.
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The shipped model folder.
pub fn model_dir() -> PathBuf {
    root().join("model")
}

/// HAM10000: `$DERMSCREEN_DATA`, else `../shared/data/ham10000` beside the checkout. The images
/// are never copied into the repository, so tests that need them read them from here and fail
/// with this message when they are missing.
pub fn data_dir() -> PathBuf {
    let dir = std::env::var_os("DERMSCREEN_DATA")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join("../shared/data/ham10000"));
    assert!(
        dir.join("metadata.csv").is_file(),
        "HAM10000 not found at {} (set DERMSCREEN_DATA to the folder with metadata.csv and images/)",
        dir.display()
    );
    dir
}

/// Path of one HAM10000 image.
pub fn image(id: &str) -> PathBuf {
    data_dir().join("images").join(format!("{id}.jpg"))
}

/// The shipped model's HAM10000 validation images as (image id, dx): lesions the model never
/// saw in training.
pub fn validation_split() -> Vec<(String, String)> {
    validation_rows()
        .into_iter()
        .filter(|l| l.source.as_deref() == Some("ham10000"))
        .map(|l| (dermscreen::classifier::image_stem(&l.image), l.dx))
        .collect()
}

/// Every row of the shipped model's validation split, all sources (images relative to the
/// data root).
pub fn validation_rows() -> Vec<dermscreen::dataset::Label> {
    dermscreen::dataset::read_labels(&model_dir().join("validation_split.csv")).expect("model/validation_split.csv")
}

/// The data root holding HAM10000 and the other data sets.
pub fn data_root() -> PathBuf {
    data_dir().parent().expect("HAM10000 sits in a data folder").to_path_buf()
}

/// A fresh temporary folder under target/.
pub fn temp_dir(name: &str) -> PathBuf {
    let dir = root().join("target/test-tmp").join(format!("{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A folder of `../shared/data` beside HAM10000 (`pad-ufes-20-subset`, `isic2019-extra`, `ood`).
pub fn shared_data(name: &str) -> PathBuf {
    let dir = data_dir().parent().expect("HAM10000 sits in a data folder").join(name);
    assert!(dir.is_dir(), "{} not found beside HAM10000", dir.display());
    dir
}

/// The first `n` images (sorted) in `folder/images` whose names start with `prefix`.
pub fn shared_images(folder: &str, prefix: &str, n: usize) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(shared_data(folder).join("images"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.file_name().unwrap().to_string_lossy().starts_with(prefix))
        .collect();
    v.sort();
    v.truncate(n);
    v
}
