//! CSV tables read once, comma-, semicolon- or tab-separated, their columns picked by name.

use super::DatasetError;
use std::path::{Path, PathBuf};

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

    /// The file it was read from, as given.
    pub fn path(&self) -> &Path {
        &self.path
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
