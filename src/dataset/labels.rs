//! Label tables as `evaluate` reads them: ours (`image,dx`), and published data sets' own as
//! they come (one-hot, diagnoses in words with their outcome, derm7pt's paired photos, a
//! known source's), and a photo's folders named for a diagnosis.

use super::{built_in_sources, DatasetError, Kind, SourceSpec, Table};
use std::path::Path;

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
/// paired photos ([`PAIRED_IMAGE_COLUMNS`]) or a known source's own (its diagnosis column as
/// `taxonomy/sources.json` names it): these are read as they come.
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
    /// Its column of outcomes: benign or malignant (or non-neoplastic), or True/False.
    pub outcome: &'static str,
    /// The kind of its photos.
    pub kind: Kind,
}

/// [`WORD_TABLES`] in words, for an error: each data set with its two columns.
pub(super) fn word_tables() -> String {
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
    let path = table.path();
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
                path: table.path().to_path_buf(),
                image: image.clone(),
                marked: if marked.is_empty() { "none of its diagnoses".to_string() } else { marked.iter().map(|(c, _)| *c).collect::<Vec<_>>().join(" and ") },
            }),
        })
        .collect()
}

/// The source whose own table `table` is, told by its columns of image names and diagnoses
/// when these are not `image` and `dx` ([`built_in_sources`]).
fn known_source(table: &Table) -> Result<SourceSpec, DatasetError> {
    let sources = built_in_sources();
    let own = |s: &SourceSpec| s.dx_column != "dx" && table.has(&s.dx_column) && table.has(&s.image_column);
    let known = || sources.iter().filter(|s| s.dx_column != "dx").map(|s| format!("{} ({})", s.dx_column, s.name)).collect::<Vec<_>>().join(", ");
    sources.iter().find(|s| own(s)).cloned().ok_or_else(|| DatasetError::NoDiagnosisColumn { path: table.path().to_path_buf(), known: known() })
}

#[cfg(test)]
mod tests {
    use super::*;

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
