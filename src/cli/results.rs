//! `classify`'s results on standard output: text, CSV or JSON, written as they come.

use super::args::Format;
use anyhow::Result;
use dermscreen::classifier::{Classifier, ImageResult, UNSURE_BELOW};
use std::io::Write;

const REMINDER: &str = "Screening aid only, not a diagnosis. If a lesion changes, bleeds or worries you, see a dermatologist.";

fn write_text(out: &mut impl Write, rows: &[ImageResult]) -> Result<()> {
    for r in rows {
        let p = r.prediction;
        if let Some(message) = r.gate_message {
            writeln!(out, "{}: no risk given ({}): {message}", r.path, r.gate.id())?;
            continue;
        }
        let top: Vec<String> =
            p.ranked().iter().take(3).map(|c| format!("{} {:.1}%", c.short_name(), 100.0 * c.probability)).collect();
        let kind = p.domain.map_or(String::new(), |k| format!(" | taken for a {} photo", kind_words(k)));
        let kind = if p.context_used.is_empty() { kind } else { format!("{kind} | context: {}", p.context_used.join(", ")) };
        let unsure = if p.unsure() { format!(" | unsure: no diagnosis reaches {:.0}%", 100.0 * UNSURE_BELOW) } else { String::new() };
        writeln!(
            out,
            "{}: malignant {:.1}%{} | top: {}{unsure}{kind}",
            r.path,
            100.0 * p.malignant,
            if p.high_risk { " HIGH - see a dermatologist" } else { "" },
            top.join(", ")
        )?;
    }
    Ok(())
}

/// How the text output names a kind of photo.
fn kind_words(k: dermscreen::dataset::Kind) -> &'static str {
    match k {
        dermscreen::dataset::Kind::Dermoscopic => "dermoscopic",
        dermscreen::dataset::Kind::Clinical => "plain camera (clinical)",
    }
}

/// One row per image: its name, the gate, the lesion score, the kind of photo it was taken
/// for, P(malignant), the flag (true/false, as the page shows it) and the class-balanced
/// call, then every training class and inference node, the context used and the path as
/// given (two photos in different folders may share a name), and whether no diagnosis
/// reaches [`UNSURE_BELOW`] (last, so the columns before it keep their places). A gated
/// image's risk columns and `unsure` are empty.
fn csv_header<W: Write>(w: &mut csv::Writer<W>, classifier: &Classifier) -> Result<()> {
    let ids = classifier.meta().training_classes.iter().chain(classifier.inference_nodes());
    let head = ["image", "gate", "lesion_score", "domain", "malignant", "high_risk", "diagnosis"];
    w.write_record(head.into_iter().chain(ids.map(String::as_str)).chain(["context_used", "path", "unsure"]))?;
    Ok(())
}

/// The rows under [`csv_header`].
fn write_csv<W: Write>(w: &mut csv::Writer<W>, classifier: &Classifier, rows: &[ImageResult]) -> Result<()> {
    let width = classifier.meta().training_classes.len() + classifier.inference_nodes().len();
    for r in rows {
        let p = r.prediction;
        let gate = r.gate.id().to_string();
        let score = r.lesion_score.map(|s| format!("{s:.3}")).unwrap_or_default();
        let domain = r.domain.map_or("", |k| k.as_str()).to_string();
        let mut record = vec![r.image.clone(), gate, score, domain];
        match r.malignant {
            Some(m) => {
                record.push(format!("{m:.6}"));
                record.push(p.high_risk.to_string());
                record.push(p.diagnosis.clone());
                record.extend(p.classes.iter().chain(&p.nodes).map(|c| format!("{:.6}", c.probability)));
            }
            None => record.extend(std::iter::repeat_n(String::new(), 3 + width)),
        }
        record.push(r.context_used.join(";"));
        record.push(r.path.clone());
        record.push(r.unsure.map_or(String::new(), |u| u.to_string()));
        w.write_record(record)?;
    }
    Ok(())
}

/// Where `classify` writes its results, a chunk of images at a time: they appear as they
/// are ready, and nothing about an image is kept once it is written.
#[expect(clippy::large_enum_variant, reason = "one per run: boxing the CSV writer would buy nothing")]
pub(crate) enum Results<W: Write> {
    Text { out: W, any: bool },
    Csv(csv::Writer<W>),
    /// One JSON array, its elements written as they come.
    Json { out: W, any: bool },
}

impl<W: Write> Results<W> {
    pub(crate) fn new(format: Format, classifier: &Classifier, out: W) -> Result<Self> {
        Ok(match format {
            Format::Text => Self::Text { out, any: false },
            Format::Csv => {
                let mut w = csv::Writer::from_writer(out);
                csv_header(&mut w, classifier)?;
                Self::Csv(w)
            }
            Format::Json => Self::Json { out, any: false },
        })
    }

    pub(crate) fn write(&mut self, classifier: &Classifier, rows: &[ImageResult]) -> Result<()> {
        match self {
            Self::Text { out, any } => {
                write_text(out, rows)?;
                *any |= !rows.is_empty();
                out.flush()?;
            }
            Self::Csv(w) => {
                write_csv(w, classifier, rows)?;
                w.flush()?;
            }
            Self::Json { out, any } => {
                for row in rows {
                    out.write_all(if *any { b",\n" } else { b"[\n" })?;
                    serde_json::to_writer_pretty(&mut *out, row)?;
                    *any = true;
                }
                out.flush()?;
            }
        }
        Ok(())
    }

    /// Closes the JSON array; under text results, the reminder that this is not a diagnosis.
    pub(crate) fn finish(self) -> Result<()> {
        match self {
            Self::Text { mut out, any } if any => writeln!(out, "{REMINDER}")?,
            Self::Text { .. } => {}
            Self::Csv(mut w) => w.flush()?,
            Self::Json { mut out, any } => out.write_all(if any { b"\n]\n" } else { b"[]\n" })?,
        }
        Ok(())
    }
}
