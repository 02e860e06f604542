//! The labelled photo sets (`taxonomy/sources.json`): each source's photos, labels and patient
//! context as the trainer reads them. Its parts: `table` (CSV files read once), `labels` (the
//! label tables `evaluate` reads, ours and published sets' own) and `split` (the group-wise,
//! diagnosis-stratified, seeded train/validation split within each source).

use crate::context::{Context, ContextError};
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

mod labels;
mod split;
mod table;

pub use labels::{
    folder_diagnosis, label_table, read_label_table, read_labels, Label, WordTable, DIAGNOSIS_WORDS, IMAGE_COLUMNS, ONE_HOT_CODES, PAIRED_IMAGE_COLUMNS,
    WORD_TABLES,
};
pub use split::{fnv1a, split_by_group, Split};
pub use table::{read_columns, Table};

/// What a photo looks like: taken through a dermatoscope, or a plain (phone) camera photo.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    Dermoscopic,
    Clinical,
}

impl Kind {
    /// Both kinds, in the order results list them.
    pub const ALL: [Kind; 2] = [Kind::Dermoscopic, Kind::Clinical];

    /// The word used in CSV, JSON and `model.json`.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Dermoscopic => "dermoscopic",
            Kind::Clinical => "clinical",
        }
    }

    /// Parses [`Kind::as_str`], in any case and with spaces around (a spreadsheet's
    /// `Clinical`).
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str().eq_ignore_ascii_case(s.trim()))
    }
}

/// Keep only the rows of a shared table whose `column` holds `value`.
#[derive(Debug, Clone, serde::Deserialize)]
pub struct RowFilter {
    pub column: String,
    pub value: String,
}

/// One labelled photo set, as `taxonomy/sources.json` describes it.
#[derive(Debug, Clone, serde::Deserialize)]
pub struct SourceSpec {
    /// Short name used in reports (`ham10000`, `bcn_20000`, ...).
    pub name: String,
    pub kind: Kind,
    /// Folder under the data root.
    pub folder: PathBuf,
    /// Label table, relative to `folder`.
    pub table: String,
    /// Image folder, relative to `folder`.
    pub images: String,
    pub image_column: String,
    pub dx_column: String,
    /// Lesion or patient; an empty cell makes the image its own group.
    pub group_column: String,
    #[serde(default)]
    pub only: Option<RowFilter>,
    /// Diagnosis codes of the table -> taxonomy node ids (codes not listed are used as they are).
    #[serde(default)]
    pub dx_map: BTreeMap<String, String>,
    /// How often the sampler draws this source's images, relative to the others.
    #[serde(default = "one")]
    pub weight: f64,
    /// Patient context: field (`age`, `sex`, `site`, a question) -> column of the table.
    #[serde(default)]
    pub context_columns: BTreeMap<String, String>,
    /// Per context field: the table's values -> the context's (empty = not given); values not
    /// listed are used as they are.
    #[serde(default)]
    pub context_values: BTreeMap<String, BTreeMap<String, String>>,
}

fn one() -> f64 {
    1.0
}

#[derive(serde::Deserialize)]
struct SourcesFile {
    sources: Vec<SourceSpec>,
}

/// The trainer's default sources file: the repository's, relative to where the program runs.
pub const DEFAULT_SOURCES: &str = "taxonomy/sources.json";

/// [`DEFAULT_SOURCES`] as it was when this program was built.
const BUILT_IN_SOURCES: &str = include_str!("../taxonomy/sources.json");

/// Reads a sources file (`taxonomy/sources.json`). The default path, where it is not there (a
/// run from another folder, an installed program), reads the copy built into the program.
pub fn read_sources(path: &Path) -> Result<Vec<SourceSpec>, DatasetError> {
    let bytes = if path == Path::new(DEFAULT_SOURCES) && !path.exists() {
        BUILT_IN_SOURCES.as_bytes().to_vec()
    } else {
        std::fs::read(path).map_err(|source| DatasetError::Io { path: path.to_path_buf(), source })?
    };
    let file: SourcesFile =
        serde_json::from_slice(&bytes).map_err(|source| DatasetError::Json { path: path.to_path_buf(), source })?;
    Ok(file.sources)
}

/// One labelled image.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    /// Source name ([`SourceSpec::name`]).
    pub source: String,
    pub kind: Kind,
    /// Lesion or patient the image shows; a group's images never straddle splits.
    pub group: String,
    /// Image path relative to the data root (`ham10000/images/ISIC_0024306.jpg`).
    pub image: String,
    /// Diagnosis, a taxonomy node id.
    pub dx: String,
    /// What the source recorded about the patient and the spot.
    pub context: Context,
}

/// Reads one source's labelled images under the data root `root`. Every image the table names
/// must exist.
pub fn read_source(root: &Path, spec: &SourceSpec) -> Result<Vec<Sample>, DatasetError> {
    let folder = root.join(&spec.folder);
    let table = folder.join(&spec.table);
    let filter = spec.only.as_ref().map_or(spec.dx_column.as_str(), |f| f.column.as_str());
    let rows = Table::read(&table)?;
    let contexts = read_contexts(&rows, spec)?;
    let rows = rows.columns([spec.image_column.as_str(), spec.dx_column.as_str(), spec.group_column.as_str(), filter])?;
    let images = folder.join(&spec.images);
    let mut out = Vec::new();
    for ([image, dx, group, filter_value], context) in rows.into_iter().zip(contexts) {
        if spec.only.as_ref().is_some_and(|f| f.value != filter_value) {
            continue;
        }
        let path = find_image(&images, &image).ok_or_else(|| DatasetError::MissingImage { table: table.clone(), image: image.clone() })?;
        let rel = path.strip_prefix(root).unwrap_or(&path).to_string_lossy().replace('\\', "/");
        let dx = spec.dx_map.get(&dx).cloned().unwrap_or(dx);
        let group = if group.is_empty() { image } else { group };
        out.push(Sample { source: spec.name.clone(), kind: spec.kind, group, image: rel, dx, context });
    }
    Ok(out)
}

/// A source's own table (HAM10000's or PAD-UFES-20's `metadata.csv`, by its column of image
/// names and all its context columns) read as patient context as the trainer reads it:
/// per row its image name and answers. `None` for any other table.
pub fn source_contexts(table: &Table) -> Result<Option<Vec<(String, Context)>>, DatasetError> {
    let own = |s: &SourceSpec| !s.context_columns.is_empty() && table.has(&s.image_column) && s.context_columns.values().all(|c| table.has(c));
    let Some(spec) = built_in_sources().into_iter().find(own) else {
        return Ok(None);
    };
    Ok(Some(table.column(&spec.image_column)?.into_iter().zip(read_contexts(table, &spec)?).collect()))
}

/// Each row's context, from the columns and value maps `spec` names.
fn read_contexts(table: &Table, spec: &SourceSpec) -> Result<Vec<Context>, DatasetError> {
    let mut contexts = vec![Context::default(); table.rows().len()];
    for (field, column) in &spec.context_columns {
        let values = table.column(column)?;
        let map = spec.context_values.get(field);
        for (c, raw) in contexts.iter_mut().zip(values) {
            let value = map.and_then(|m| m.get(&raw)).cloned().unwrap_or(raw);
            c.set(field, &value).map_err(|source| DatasetError::Context { table: table.path().to_path_buf(), source })?;
        }
    }
    Ok(contexts)
}

/// Errors reading a dataset folder. The message names the file; the cause is the error's
/// `source()` (printed after it by `{:#}`), never repeated in the message.
#[derive(Debug, thiserror::Error)]
pub enum DatasetError {
    #[error("{path}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{path}")]
    Csv { path: PathBuf, source: csv::Error },
    #[error("{path}: missing column '{column}'")]
    MissingColumn { path: PathBuf, column: String },
    #[error("{path}: no column of image names (one of {}; or derm7pt's derm and clinic)", IMAGE_COLUMNS.join(", "))]
    NoImageColumn { path: PathBuf },
    #[error("{path}: no column 'dx' (taxonomy ids such as mel, nv), nor an ISIC challenge's one-hot columns (MEL, NV, ...), nor diagnoses in words with their outcome ({}), nor derm7pt's (derm, clinic, diagnosis), nor a known data set's own column of diagnoses: {known}", labels::word_tables())]
    NoDiagnosisColumn { path: PathBuf, known: String },
    #[error("{path}")]
    Json { path: PathBuf, source: serde_json::Error },
    #[error("{table}")]
    Context { table: PathBuf, source: ContextError },
    #[error("{path}: unknown kind of photo '{kind}' (dermoscopic or clinical)")]
    UnknownKind { path: PathBuf, kind: String },
    #[error("{table}: no image file for '{image}'")]
    MissingImage { table: PathBuf, image: String },
    #[error("{path}: the row of {image} marks {marked}; a one-hot table (an ISIC challenge's ground truth) marks exactly one diagnosis with 1")]
    OneHotRow { path: PathBuf, image: String, marked: String },
}

/// The sources of [`DEFAULT_SOURCES`] as built into this program: what it knows of the data
/// sets' own tables, wherever it runs.
fn built_in_sources() -> Vec<SourceSpec> {
    serde_json::from_str::<SourcesFile>(BUILT_IN_SOURCES).expect("the built-in sources file parses").sources
}

/// The image files the app reads, by extension.
pub const IMAGE_EXTENSIONS: [&str; 5] = ["jpg", "jpeg", "png", "webp", "jfif"];

/// The image a label names in `dir`: the name as given, else with one of [`IMAGE_EXTENSIONS`],
/// in lower or upper case (cameras write IMG_0001.JPG).
pub fn find_image(dir: &Path, name: &str) -> Option<PathBuf> {
    let extensions = IMAGE_EXTENSIONS.iter().map(|e| e.to_string()).chain(IMAGE_EXTENSIONS.iter().map(|e| e.to_ascii_uppercase()));
    let find = |n: &str| std::iter::once(dir.join(n)).chain(extensions.clone().map(|e| dir.join(format!("{n}.{e}")))).find(|p| p.is_file());
    // A table written on Windows separates folders with '\', which Unix reads as part of a name.
    find(name).or_else(|| name.contains('\\').then(|| find(&name.replace('\\', "/"))).flatten())
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

    #[test]
    fn kinds_are_read_as_spreadsheets_write_them() {
        assert_eq!(Kind::parse("Clinical "), Some(Kind::Clinical));
        assert_eq!(Kind::parse("DERMOSCOPIC"), Some(Kind::Dermoscopic));
        assert_eq!(Kind::parse("phone"), None);
    }

    #[test]
    fn the_bundled_sources_map_every_diagnosis_into_the_taxonomy() {
        let sources = read_sources(&Path::new(env!("CARGO_MANIFEST_DIR")).join("taxonomy/sources.json")).unwrap();
        let taxonomy = crate::taxonomy::Taxonomy::bundled();
        assert!(sources.iter().any(|s| s.kind == Kind::Clinical) && sources.iter().any(|s| s.kind == Kind::Dermoscopic));
        for s in &sources {
            for dx in s.dx_map.values() {
                assert!(taxonomy.is_within(dx, "root").unwrap_or(false), "{}: {dx} is a taxonomy node", s.name);
            }
        }
        let pad = sources.iter().find(|s| s.name == "pad_ufes_20").unwrap();
        assert_eq!(pad.dx_map["SCC"], "scc");
        assert!(taxonomy.is_within("scc", "malignant_epidermal").unwrap());
    }
}
