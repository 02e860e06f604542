//! The labelled photo sets (`taxonomy/sources.json`) and the group-wise (lesion or patient),
//! diagnosis-stratified, seeded train/validation split within each source.

use crate::context::{Context, ContextError};
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

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
    let mut contexts = vec![Context::default(); table.rows.len()];
    for (field, column) in &spec.context_columns {
        let values = table.column(column)?;
        let map = spec.context_values.get(field);
        for (c, raw) in contexts.iter_mut().zip(values) {
            let value = map.and_then(|m| m.get(&raw)).cloned().unwrap_or(raw);
            c.set(field, &value).map_err(|source| DatasetError::Context { table: table.path.clone(), source })?;
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
    #[error("{path}: no column 'dx' (taxonomy ids such as mel, nv), nor an ISIC challenge's one-hot columns (MEL, NV, ...), nor diagnoses in words with their outcome ({}), nor derm7pt's (derm, clinic, diagnosis), nor a known data set's own column of diagnoses: {known}", word_tables())]
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

/// Opens a CSV file, comma-separated or, as spreadsheets save CSV in many locales, separated
/// by semicolons (or tabs): its header line says which.
fn csv_reader(path: &Path) -> csv::Result<csv::Reader<std::fs::File>> {
    use std::io::BufRead;
    let mut header = String::new();
    std::io::BufReader::new(std::fs::File::open(path)?).read_line(&mut header)?;
    let delimiter = [b',', b';', b'\t'].into_iter().find(|&d| header.contains(char::from(d))).unwrap_or(b',');
    csv::ReaderBuilder::new().delimiter(delimiter).from_path(path)
}

/// `e`, or where the bytes were not UTF-8 (a photo given as a table, a spreadsheet saved as
/// "CSV" in a Windows code page) an error saying what was expected, and on which line: the
/// decoder's own words ("stream did not contain valid UTF-8") do not.
fn explain_csv(e: csv::Error) -> csv::Error {
    let line = match e.kind() {
        csv::ErrorKind::Utf8 { pos, .. } => pos.as_ref().map(csv::Position::line),
        csv::ErrorKind::Io(io) if io.kind() == std::io::ErrorKind::InvalidData => None,
        _ => return e,
    };
    let at = line.map_or(String::new(), |l| format!("line {l} is "));
    let why = format!("{at}not UTF-8 text: a CSV file is expected (a spreadsheet saves one as \"CSV UTF-8\")");
    std::io::Error::new(std::io::ErrorKind::InvalidData, why).into()
}

/// A CSV file read once: its header and its rows, for picking columns by name.
pub struct Table {
    path: PathBuf,
    headers: csv::StringRecord,
    rows: Vec<csv::StringRecord>,
}

impl Table {
    /// Reads the whole file at `path`.
    pub fn read(path: &Path) -> Result<Self, DatasetError> {
        let csv_err = |source| DatasetError::Csv { path: path.to_path_buf(), source: explain_csv(source) };
        let mut rdr = csv_reader(path).map_err(csv_err)?;
        let headers = rdr.headers().map_err(csv_err)?.clone();
        let rows = rdr.records().collect::<Result<_, _>>().map_err(csv_err)?;
        Ok(Self { path: path.to_path_buf(), headers, rows })
    }

    /// The header's column names.
    pub fn headers(&self) -> &csv::StringRecord {
        &self.headers
    }

    /// Every row, in the file's order.
    pub fn rows(&self) -> &[csv::StringRecord] {
        &self.rows
    }

    /// Whether the header names `column`.
    pub fn has(&self, column: &str) -> bool {
        self.headers.iter().any(|h| h == column)
    }

    /// The named columns, in that order, for every row; an error names a missing column.
    pub fn columns<const N: usize>(&self, columns: [&str; N]) -> Result<Vec<[String; N]>, DatasetError> {
        let mut at = [0usize; N];
        for (slot, name) in at.iter_mut().zip(columns) {
            *slot = self.headers.iter().position(|h| h == name).ok_or_else(|| DatasetError::MissingColumn {
                path: self.path.clone(),
                column: name.to_string(),
            })?;
        }
        Ok(self.rows.iter().map(|rec| at.map(|i| rec.get(i).unwrap_or_default().to_string())).collect())
    }

    /// The named column for every row ([`Table::columns`] of one).
    pub fn column(&self, name: &str) -> Result<Vec<String>, DatasetError> {
        Ok(self.columns([name])?.into_iter().map(|[v]| v).collect())
    }
}

/// Reads the named columns of a CSV file, in that order, for every row.
pub fn read_columns<const N: usize>(path: &Path, columns: [&str; N]) -> Result<Vec<[String; N]>, DatasetError> {
    Table::read(path)?.columns(columns)
}

/// One row of a label table (`image,dx`, optionally `source` and `kind`), what `evaluate`
/// scores against.
#[derive(Debug, Clone, PartialEq)]
pub struct Label {
    /// Image file name or path (relative to the images folder), with or without its extension.
    pub image: String,
    /// Diagnosis code, a taxonomy node id.
    pub dx: String,
    /// Where the photo comes from, when the table says (`evaluate` reports each source apart).
    pub source: Option<String>,
    /// The kind of photo, when the table says.
    pub kind: Option<Kind>,
    /// The table row it was read from (0 is the first under the header); a derm7pt row gives
    /// two labels ([`PAIRED_IMAGE_COLUMNS`]).
    pub row: usize,
}

/// What a label table's column of image names is called: ours, then HAM10000's metadata,
/// PAD-UFES-20's, the ISIC Archive's, ISIC 2020's, DDI's and Fitzpatrick17k's, so their
/// tables are read as they come.
pub const IMAGE_COLUMNS: [&str; 7] = ["image", "image_id", "img_id", "isic_id", "image_name", "DDI_file", "md5hash"];

/// Reads a label table with columns `image` (or another of [`IMAGE_COLUMNS`]) and `dx`, and
/// `source` and `kind` where present (others are ignored), such as
/// `model/validation_split.csv` or HAM10000's `metadata.csv`. A table without `dx` may be an
/// ISIC challenge's ground truth (one-hot, [`ONE_HOT_CODES`]), a table of diagnoses in words
/// with their outcome ([`WORD_TABLES`]: ISIC 2020, DDI, Fitzpatrick17k), derm7pt's table of
/// paired photos ([`PAIRED_IMAGE_COLUMNS`]) or a known source's own ([`known_source`]): these
/// are read as they come.
pub fn read_labels(path: &Path) -> Result<Vec<Label>, DatasetError> {
    Ok(read_label_table(path)?.0)
}

/// The ISIC challenges publish their ground truth one-hot: a column per diagnosis, 1.0 in the
/// row's own (ISIC 2018: MEL to VASC, with AKIEC; ISIC 2019: AK for AKIEC, SCC, and UNK for
/// none of these). Their columns -> taxonomy ids; UNK has none and is kept as it is, so that
/// it is reported as a label the model has no class for.
pub const ONE_HOT_CODES: [(&str, &str); 10] = [
    ("MEL", "mel"),
    ("NV", "nv"),
    ("BCC", "bcc"),
    ("AKIEC", "akiec"),
    ("AK", "akiec"),
    ("BKL", "bkl"),
    ("DF", "df"),
    ("VASC", "vasc"),
    ("SCC", "scc"),
    ("UNK", "UNK"),
];

/// A published table that gives each photo's diagnosis in words and, beside it, its outcome
/// (benign or malignant, or non-neoplastic), the pathology's verdict where the words name a
/// disease the model has no class for.
pub struct WordTable {
    /// The data set, as errors name it.
    pub name: &'static str,
    /// Its column of diagnoses in words ([`DIAGNOSIS_WORDS`]).
    pub words: &'static str,
    /// Its column of outcomes ([`outcome_node`]).
    pub outcome: &'static str,
    /// The kind of its photos.
    pub kind: Kind,
}

/// [`WORD_TABLES`] in words, for an error: each data set with its two columns.
fn word_tables() -> String {
    WORD_TABLES.iter().map(|t| format!("{}'s {} and {}", t.name, t.words, t.outcome)).collect::<Vec<_>>().join("; ")
}

/// The tables of diagnoses in words read as they come, told apart by their two columns.
pub const WORD_TABLES: [WordTable; 3] = [
    // `unknown` for most of its benign photos.
    WordTable { name: "ISIC 2020", words: "diagnosis", outcome: "benign_malignant", kind: Kind::Dermoscopic },
    // Stanford's Diverse Dermatology Images: `malignant` is True/False.
    WordTable { name: "DDI", words: "disease", outcome: "malignant", kind: Kind::Clinical },
    // Its outcome is the paper's first level: benign, malignant, non-neoplastic.
    WordTable { name: "Fitzpatrick17k", words: "label", outcome: "three_partition_label", kind: Kind::Clinical },
];

/// Diagnoses in words, as [`WORD_TABLES`] and derm7pt write them (in any case, with `-` or
/// `_` for spaces) -> taxonomy ids. Diseases a class holds are listed, and two benign ones of
/// derm7pt; another word (`unknown`, `verruca vulgaris`, and nevi that are not melanocytic,
/// such as `epidermal nevus`) is scored as the row's outcome. Squamous cell carcinoma in situ
/// is Bowen's disease, `akiec`.
pub const DIAGNOSIS_WORDS: [(&str, &str); 52] = [
    ("melanoma", "mel"),
    ("melanoma in situ", "mel"),
    ("melanoma acral lentiginous", "mel"),
    ("nodular melanoma (nm)", "mel"),
    ("lentigo maligna", "mel"),
    ("malignant melanoma", "mel"),
    ("superficial spreading melanoma ssm", "mel"),
    ("melanoma (in situ)", "mel"),
    ("melanoma (less than 0.76 mm)", "mel"),
    ("melanoma (0.76 to 1.5 mm)", "mel"),
    ("melanoma (more than 1.5 mm)", "mel"),
    ("melanoma metastasis", "mel"),
    ("nevus", "nv"),
    ("melanocytic nevi", "nv"),
    ("melanocytic nevus", "nv"),
    ("dysplastic nevus", "nv"),
    ("blue nevus", "nv"),
    ("congenital nevus", "nv"),
    ("halo nevus", "nv"),
    ("nevocytic nevus", "nv"),
    ("atypical spindle cell nevus of reed", "nv"),
    ("pigmented spindle cell nevus of reed", "nv"),
    ("clark nevus", "nv"),
    ("combined nevus", "nv"),
    ("dermal nevus", "nv"),
    ("recurrent nevus", "nv"),
    ("reed or spitz nevus", "nv"),
    ("atypical melanocytic proliferation", "benign_melanocytic"),
    ("basal cell carcinoma", "bcc"),
    ("basal cell carcinoma superficial", "bcc"),
    ("basal cell carcinoma nodular", "bcc"),
    ("basal cell carcinoma morpheiform", "bcc"),
    ("solid cystic basal cell carcinoma", "bcc"),
    ("squamous cell carcinoma", "scc"),
    ("squamous cell carcinoma keratoacanthoma", "scc"),
    ("squamous cell carcinoma in situ", "akiec"),
    ("actinic keratosis", "akiec"),
    ("seborrheic keratosis", "bkl"),
    ("seborrheic keratosis irritated", "bkl"),
    ("pigmented benign keratosis", "bkl"),
    ("solar lentigo", "bkl"),
    ("lentigo nos", "bkl"),
    ("lichenoid keratosis", "bkl"),
    ("dermatofibroma", "df"),
    ("pyogenic granuloma", "vasc"),
    ("granuloma pyogenic", "vasc"),
    ("hemangioma", "vasc"),
    ("angioma", "vasc"),
    ("angiokeratoma", "vasc"),
    ("vascular lesion", "vasc"),
    // derm7pt's, which has no outcome column: benign, but no class holds them.
    ("lentigo", "benign"),
    ("melanosis", "benign"),
];

/// A word of [`DIAGNOSIS_WORDS`] as listed: lower case, `-` and `_` read as spaces.
fn plain_words(word: &str) -> String {
    word.trim().to_lowercase().replace(['-', '_'], " ")
}

/// A row's outcome as a taxonomy node: `benign`, `malignant` or `non_neoplastic` as written
/// in any case (`non-neoplastic`), or DDI's `malignant` column, True or False.
fn outcome_node(outcome: &str) -> String {
    match plain_words(outcome).as_str() {
        "true" | "1" => "malignant".to_string(),
        "false" | "0" => "benign".to_string(),
        other => other.replace(' ', "_"),
    }
}

/// Each row's diagnosis in a [`WordTable`]: its words' taxonomy id, else its outcome.
fn worded_diagnoses(table: &Table, spec: &WordTable) -> Result<Vec<String>, DatasetError> {
    let rows = table.columns([spec.words, spec.outcome])?;
    Ok(rows.into_iter().map(|[word, outcome]| word_id(&word).unwrap_or_else(|| outcome_node(&outcome))).collect())
}

/// The taxonomy id [`DIAGNOSIS_WORDS`] gives `word`, if it lists it.
fn word_id(word: &str) -> Option<String> {
    DIAGNOSIS_WORDS.iter().find(|(w, _)| *w == plain_words(word)).map(|(_, id)| id.to_string())
}

/// The diagnosis a photo's folders name, for photos sorted into a folder per diagnosis: the
/// nearest folder above `photo` (a path under the photos' folder) named for a diagnosis in
/// words ([`DIAGNOSIS_WORDS`]: `Seborrheic Keratosis`) or for a taxonomy node, in any case
/// (`BCC`, `malignant`, `non-neoplastic`; `is_node` tells them). `None` when no folder is.
pub fn folder_diagnosis(photo: &Path, is_node: impl Fn(&str) -> bool) -> Option<String> {
    let folders = photo.parent()?.ancestors().filter_map(|a| a.file_name()?.to_str());
    folders.map(|name| (word_id(name), plain_words(name).replace(' ', "_"))).find_map(|(word, id)| word.or_else(|| is_node(&id).then_some(id)))
}

/// derm7pt (the seven-point checklist set) photographs each lesion twice, in one row: its
/// image columns and the kind of photo each holds.
pub const PAIRED_IMAGE_COLUMNS: [(&str, Kind); 2] = [("derm", Kind::Dermoscopic), ("clinic", Kind::Clinical)];

/// The labels of a table with [`PAIRED_IMAGE_COLUMNS`] and a `diagnosis` in words, two a row
/// (an empty cell gives none), or `None` for another table. A word [`DIAGNOSIS_WORDS`] does
/// not list (`miscellaneous`) is kept as written, to be named as a label with no class.
fn paired_labels(table: &Table) -> Result<Option<Vec<Label>>, DatasetError> {
    if !(table.has("diagnosis") && PAIRED_IMAGE_COLUMNS.iter().all(|(column, _)| table.has(column))) {
        return Ok(None);
    }
    let words = table.column("diagnosis")?;
    let mut labels = Vec::new();
    for (column, kind) in PAIRED_IMAGE_COLUMNS {
        for (row, (image, word)) in table.column(column)?.into_iter().zip(&words).enumerate() {
            if !image.trim().is_empty() {
                let dx = word_id(word).unwrap_or_else(|| word.trim().to_string());
                labels.push(Label { image, dx, source: None, kind: Some(kind), row });
            }
        }
    }
    // Row by row, as the table lists them (the sort is stable: dermoscopic first).
    labels.sort_by_key(|l| l.row);
    Ok(Some(labels))
}

/// [`read_labels`], and the source whose own table it is, when it is one.
pub fn read_label_table(path: &Path) -> Result<(Vec<Label>, Option<SourceSpec>), DatasetError> {
    label_table(&Table::read(path)?)
}

/// [`read_label_table`] of a table already read (`evaluate --by` reads its other columns too).
pub fn label_table(table: &Table) -> Result<(Vec<Label>, Option<SourceSpec>), DatasetError> {
    let path = &table.path;
    if let Some(labels) = paired_labels(table)? {
        return Ok((labels, None));
    }
    let image = IMAGE_COLUMNS.into_iter().find(|c| table.has(c)).ok_or_else(|| DatasetError::NoImageColumn { path: path.to_path_buf() })?;
    let images = table.column(image)?;
    // The diagnoses, the source whose own table this is, and the kind its photos are.
    let (diagnoses, known, table_kind) = if table.has("dx") {
        (table.column("dx")?, None, None)
    } else if table.has("MEL") && table.has("NV") {
        // The challenges' photos are all dermoscopic.
        (one_hot_diagnoses(table, &images)?, None, Some(Kind::Dermoscopic))
    } else if let Some(spec) = WORD_TABLES.iter().find(|t| table.has(t.words) && table.has(t.outcome)) {
        (worded_diagnoses(table, spec)?, None, Some(spec.kind))
    } else {
        let spec = known_source(table)?;
        let codes = table.column(&spec.dx_column)?;
        let diagnoses = codes.into_iter().map(|dx| spec.dx_map.get(&dx).cloned().unwrap_or(dx)).collect();
        let kind = spec.kind;
        (diagnoses, Some(spec), Some(kind))
    };
    let optional = |name: &str| -> Result<Option<Vec<String>>, DatasetError> {
        if !table.has(name) {
            return Ok(None);
        }
        Ok(Some(table.column(name)?))
    };
    let (sources, kinds) = (optional("source")?, optional("kind")?);
    let labels = images
        .into_iter()
        .zip(diagnoses)
        .enumerate()
        .map(|(i, (image, dx))| {
            let source = sources.as_ref().map(|s| s[i].clone()).filter(|s| !s.is_empty());
            let kind = match kinds.as_ref().map(|k| k[i].as_str()).filter(|k| !k.is_empty()) {
                None => table_kind,
                Some(k) => Some(Kind::parse(k).ok_or_else(|| DatasetError::UnknownKind { path: path.to_path_buf(), kind: k.to_string() })?),
            };
            let source = source.or_else(|| known.as_ref().map(|s| s.name.clone()));
            Ok(Label { image, dx, source, kind, row: i })
        })
        .collect::<Result<_, _>>()?;
    Ok((labels, known))
}

/// Each row's diagnosis in a one-hot table ([`ONE_HOT_CODES`]), `images` its rows' photos:
/// a row must mark exactly one of its diagnosis columns with 1.
fn one_hot_diagnoses(table: &Table, images: &[String]) -> Result<Vec<String>, DatasetError> {
    let mut marks: Vec<Vec<(&str, &str)>> = vec![Vec::new(); images.len()];
    for (column, id) in ONE_HOT_CODES.into_iter().filter(|(column, _)| table.has(column)) {
        for (row, value) in table.column(column)?.into_iter().enumerate() {
            if value.trim().parse::<f64>().is_ok_and(|v| v > 0.5) {
                marks[row].push((column, id));
            }
        }
    }
    marks
        .into_iter()
        .zip(images)
        .map(|(marked, image)| match marked[..] {
            [(_, id)] => Ok(id.to_string()),
            _ => Err(DatasetError::OneHotRow {
                path: table.path.clone(),
                image: image.clone(),
                marked: if marked.is_empty() { "none of its diagnoses".to_string() } else { marked.iter().map(|(c, _)| *c).collect::<Vec<_>>().join(" and ") },
            }),
        })
        .collect()
}

/// The sources of [`DEFAULT_SOURCES`] as built into this program: what it knows of the data
/// sets' own tables, wherever it runs.
fn built_in_sources() -> Vec<SourceSpec> {
    serde_json::from_str::<SourcesFile>(BUILT_IN_SOURCES).expect("the built-in sources file parses").sources
}

/// The source whose own table `table` is, told by its columns of image names and diagnoses
/// when these are not `image` and `dx` ([`built_in_sources`]).
fn known_source(table: &Table) -> Result<SourceSpec, DatasetError> {
    let sources = built_in_sources();
    let own = |s: &SourceSpec| s.dx_column != "dx" && table.has(&s.dx_column) && table.has(&s.image_column);
    let known = || sources.iter().filter(|s| s.dx_column != "dx").map(|s| format!("{} ({})", s.dx_column, s.name)).collect::<Vec<_>>().join(", ");
    sources.iter().find(|s| own(s)).cloned().ok_or_else(|| DatasetError::NoDiagnosisColumn { path: table.path.clone(), known: known() })
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

/// Splits by group within each source: a group (lesion or patient) goes to validation whole.
/// Within a source, groups are stratified by diagnosis (a patient with several diagnoses by the
/// rarest of them), ordered by a seeded hash of their id, and the first
/// `round(val_fraction * n)` of each stratum go to validation. Deterministic for a given seed
/// and independent of file order.
pub fn split_by_group(samples: &[Sample], val_fraction: f64, seed: u64) -> Split {
    let mut images_per_dx: HashMap<(&str, &str), usize> = HashMap::new();
    for s in samples {
        *images_per_dx.entry((&s.source, &s.dx)).or_insert(0) += 1;
    }
    // (source, group) -> the rarest diagnosis among its images.
    let mut stratum: HashMap<(&str, &str), &str> = HashMap::new();
    for s in samples {
        let rarity = |dx: &str| (images_per_dx[&(s.source.as_str(), dx)], dx.to_string());
        stratum
            .entry((&s.source, &s.group))
            .and_modify(|dx| {
                if rarity(&s.dx) < rarity(dx) {
                    *dx = &s.dx;
                }
            })
            .or_insert(&s.dx);
    }
    let mut by_stratum: BTreeMap<(&str, &str), Vec<&str>> = BTreeMap::new();
    for (&(source, group), &dx) in &stratum {
        by_stratum.entry((source, dx)).or_default().push(group);
    }
    let mut val_groups = std::collections::HashSet::new();
    for (&(source, _), groups) in by_stratum.iter_mut() {
        groups.sort_by_key(|g| (splitmix64(seed ^ fnv1a(g)), *g));
        let n_val = (val_fraction * groups.len() as f64).round() as usize;
        val_groups.extend(groups.iter().take(n_val).map(|g| (source, *g)));
    }
    let (val, train) = samples
        .iter()
        .cloned()
        .partition(|s| val_groups.contains(&(s.source.as_str(), s.group.as_str())));
    Split { train, val }
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

    fn sample(source: &str, group: String, image: String, dx: &str) -> Sample {
        Sample { source: source.into(), kind: Kind::Dermoscopic, group, image, dx: dx.into(), context: Context::default() }
    }

    fn synthetic() -> Vec<Sample> {
        let mut v = Vec::new();
        for i in 0..200 {
            let dx = if i % 10 == 0 { "mel" } else { "nv" };
            for k in 0..(1 + i % 3) {
                v.push(sample("a", format!("L{i}"), format!("I{i}_{k}"), dx));
            }
        }
        v
    }

    #[test]
    fn split_groups_lesions_stratifies_and_is_deterministic() {
        let s = synthetic();
        let a = split_by_group(&s, 0.2, 7);
        let b = split_by_group(&s, 0.2, 7);
        assert_eq!(a.val, b.val);
        let train_groups: std::collections::HashSet<_> = a.train.iter().map(|s| &s.group).collect();
        assert!(a.val.iter().all(|s| !train_groups.contains(&s.group)));
        let val_mel: std::collections::HashSet<_> = a.val.iter().filter(|s| s.dx == "mel").map(|s| &s.group).collect();
        assert_eq!(val_mel.len(), 4, "20% of the 20 melanoma lesions");
        let mut reversed = s.clone();
        reversed.reverse();
        let c = split_by_group(&reversed, 0.2, 7);
        let mut v1: Vec<_> = a.val.iter().map(|s| &s.image).collect();
        let mut v2: Vec<_> = c.val.iter().map(|s| &s.image).collect();
        v1.sort();
        v2.sort();
        assert_eq!(v1, v2, "independent of file order");
        assert_ne!(a.val, split_by_group(&s, 0.2, 8).val, "the seed matters");
    }

    #[test]
    fn a_patient_with_several_diagnoses_stays_on_one_side_and_sources_split_apart() {
        let mut s = synthetic();
        // Patients of a second source, each with a nevus and (every fifth) a carcinoma.
        for p in 0..50 {
            s.push(sample("b", format!("P{p}"), format!("b/P{p}_1"), "nv"));
            if p % 5 == 0 {
                s.push(sample("b", format!("P{p}"), format!("b/P{p}_2"), "bcc"));
            }
        }
        // A group id both sources use is two different groups.
        s.push(sample("b", "L0".into(), "b/L0".into(), "nv"));
        let split = split_by_group(&s, 0.2, 3);
        for side in [&split.train, &split.val] {
            let other = if std::ptr::eq(side, &split.train) { &split.val } else { &split.train };
            let groups: std::collections::HashSet<_> = other.iter().map(|s| (&s.source, &s.group)).collect();
            assert!(side.iter().all(|s| !groups.contains(&(&s.source, &s.group))), "no group straddles the split");
        }
        let val_bcc_patients = split.val.iter().filter(|s| s.source == "b" && s.dx == "bcc").count();
        assert_eq!(val_bcc_patients, 2, "stratified by the rarer diagnosis: 20% of 10 carcinoma patients");
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

    #[test]
    fn a_photos_nearest_folder_named_for_a_diagnosis_labels_it() {
        let taxonomy = crate::taxonomy::Taxonomy::bundled();
        let is_node = |id: &str| id != "root" && taxonomy.is_within(id, "root").unwrap_or(false);
        let label = |p: &str| folder_diagnosis(Path::new(p), is_node);
        assert_eq!(label("train/malignant/1.jpg").as_deref(), Some("malignant"));
        assert_eq!(label("ISIC/Train/pigmented benign keratosis/ISIC_1.jpg").as_deref(), Some("bkl"));
        assert_eq!(label("BCC/2024/march/1.jpg").as_deref(), Some("bcc"), "the nearest folder that names one");
        assert_eq!(label("nv/melanoma-in-situ/1.jpg").as_deref(), Some("mel"));
        assert_eq!(label("Non-Neoplastic/1.jpg").as_deref(), Some("non_neoplastic"));
        assert_eq!(label("photos/root/1.jpg"), None);
        assert_eq!(label("1.jpg"), None);
    }

    #[test]
    fn published_tables_words_and_outcomes_are_taxonomy_nodes() {
        let taxonomy = crate::taxonomy::Taxonomy::bundled();
        let within = |id: &str| taxonomy.is_within(id, "root").unwrap_or(false);
        for (word, id) in DIAGNOSIS_WORDS {
            assert!(within(id), "{word}: {id} is a taxonomy node");
            assert_eq!(plain_words(word), word, "listed as it is looked up");
        }
        for (column, id) in ONE_HOT_CODES.into_iter().filter(|(c, _)| *c != "UNK") {
            assert!(within(id), "{column}: {id} is a taxonomy node");
        }
        for (written, node) in [("True", "malignant"), ("False", "benign"), ("Benign", "benign"), ("non-neoplastic", "non_neoplastic")] {
            assert_eq!(outcome_node(written), node);
            assert!(within(node));
        }
    }
}
