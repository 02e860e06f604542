//! `classify --context`: the answers of a table matched to the photos by path.

use anyhow::{bail, Context, Result};
use dermscreen::classifier::image_stem;
use dermscreen::context::{Context as PatientContext, FIELDS};
use dermscreen::dataset;
use std::path::{Path, PathBuf};

/// The context file of `classify --context`. A row's `image` names a photo by its file name,
/// or with folders, with or without extension. A photo gets the row whose path shares the
/// longest ending with its own (at least the name), so photos sharing a name in different
/// folders (IMG_0001.jpg) each get their own row, and a table written with other folders
/// still matches by name. A value the context does not accept stops the run with the file,
/// the row and the field named.
#[derive(Default)]
pub(crate) struct ContextRows {
    /// Per file stem: the row's path components (extension dropped), its answers, its row.
    by_stem: std::collections::HashMap<String, Vec<(Vec<String>, PatientContext, usize)>>,
    file: PathBuf,
}

impl ContextRows {
    /// A table with an `image` column and any of [`FIELDS`], or a data set's own table
    /// ([`dataset::source_contexts`]).
    pub(crate) fn read(path: &Path) -> Result<Self> {
        let table = dataset::Table::read(path)?;
        let answers = match dataset::source_contexts(&table)? {
            Some(answers) => answers,
            None => Self::read_fields(&table, path)?,
        };
        let mut rows = Self { file: path.to_path_buf(), ..Self::default() };
        for (row, (named, context)) in answers.into_iter().enumerate() {
            let (named, row) = (named.as_str(), row + 2);
            let parts = Self::components(named);
            let same = rows.by_stem.entry(image_stem(named)).or_default();
            match same.iter().find(|(p, _, _)| *p == parts) {
                Some((_, answers, first)) if *answers != context => {
                    bail!("{}: row {row} ({named}) names the same photo as row {first} with other answers", path.display());
                }
                Some(_) => {}
                None => same.push((parts, context, row)),
            }
        }
        Ok(rows)
    }

    /// Per row, the `image` column and the answers in the columns named as [`FIELDS`].
    fn read_fields(table: &dataset::Table, path: &Path) -> Result<Vec<(String, PatientContext)>> {
        let headers = table.headers();
        let image = headers.iter().position(|h| h == "image").with_context(|| {
            format!("{}: no `image` column (nor the columns of HAM10000's or PAD-UFES-20's own metadata.csv)", path.display())
        })?;
        let fields: Vec<(usize, &str)> = headers.iter().enumerate().filter_map(|(i, h)| FIELDS.iter().find(|f| **f == h).map(|f| (i, *f))).collect();
        let mut answers = Vec::new();
        for (row, rec) in table.rows().iter().enumerate() {
            let named = rec.get(image).unwrap_or_default().to_string();
            let context = PatientContext::from_pairs(fields.iter().map(|&(i, f)| (f, rec.get(i).unwrap_or_default())))
                .with_context(|| format!("{}: row {} ({named})", path.display(), row + 2))?;
            answers.push((named, context));
        }
        Ok(answers)
    }

    /// A path's folders and file stem, in order.
    fn components(path: &str) -> Vec<String> {
        let mut parts: Vec<String> = path.split(['/', '\\']).filter(|p| !p.is_empty() && *p != ".").map(str::to_string).collect();
        if let Some(last) = parts.last_mut() {
            *last = image_stem(last);
        }
        parts
    }

    /// The answers for `file`, none without a row for its name, or an error naming the
    /// rows when several fit it equally well with different answers.
    pub(crate) fn for_file(&self, file: &Path) -> Result<PatientContext, String> {
        let parts = Self::components(&file.to_string_lossy());
        let Some(rows) = parts.last().and_then(|stem| self.by_stem.get(stem)) else {
            return Ok(PatientContext::default());
        };
        let shared = |row: &[String]| row.iter().rev().zip(parts.iter().rev()).take_while(|(a, b)| a == b).count();
        let best = rows.iter().map(|(row, _, _)| shared(row)).max().unwrap_or(0);
        let fits: Vec<&(Vec<String>, PatientContext, usize)> = rows.iter().filter(|(row, _, _)| shared(row) == best).collect();
        if fits.iter().all(|(_, answers, _)| *answers == fits[0].1) {
            return Ok(fits[0].1.clone());
        }
        let numbers: Vec<String> = fits.iter().map(|(_, _, n)| n.to_string()).collect();
        Err(format!(
            "{}: rows {} of {} fit it equally, with different answers; judged on the photo alone (name its folder in the `image` column)",
            file.display(),
            numbers.join(", "),
            self.file.display()
        ))
    }
}
