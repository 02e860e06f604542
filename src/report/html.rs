//! `index.html`: the headline numbers and the plots, for a browser (native only).

use super::{fmt_opt, GroupRow, Summary, GROUP_COLUMNS};

/// Writes `index.html`: the headline numbers and the plots, for a browser.
pub fn write_html(summary: &Summary, groups: &[GroupRow], title: &str, plots: &[std::path::PathBuf], dir: &std::path::Path) -> std::io::Result<()> {
    let mut h = String::new();
    h.push_str("<!doctype html><html lang=\"en\"><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width\">");
    h.push_str(&format!("<title>{}</title>", esc(title)));
    h.push_str("<style>body{font-family:sans-serif;max-width:1100px;margin:1em auto;padding:0 1em;color:#111}td,th{padding:4px 10px;border-bottom:1px solid #ccc;text-align:left}img{max-width:100%;margin:8px}</style>");
    h.push_str(&format!("<h1>{}</h1>", esc(title)));
    h.push_str("<p><strong>Screening aid, not a diagnosis.</strong> Numbers below are measured on the labelled images given to <code>dermscreen evaluate</code>.</p>");
    h.push_str(&headline(summary));
    // Every photo, then each source, kind and --by value: the flag's numbers are only here.
    h.push_str("<h2>By group (AUC with 95% interval; the flag as the page shows it)</h2>");
    h.push_str(&table(&GROUP_COLUMNS, groups.iter().map(GroupRow::cells)));
    h.push_str("<h2>Binary tasks</h2>");
    h.push_str(&table(
        &["task", "positives", "negatives", "AUC", "95% CI", "sensitivity at specificity"],
        summary.binary_tasks.iter().map(|t| {
            let ci = t.auc_ci95.map_or("n/a".into(), |(a, b)| format!("{a:.3}-{b:.3}"));
            let sens: Vec<String> = t.sensitivity_at_specificity.iter().map(|(sp, se)| format!("{se:.2} @ {sp:.2}")).collect();
            let sens = if sens.is_empty() { "n/a".to_string() } else { sens.join(", ") };
            vec![t.name.clone(), t.positives.to_string(), t.negatives.to_string(), fmt_opt(t.auc), ci, sens]
        }),
    ));
    h.push_str("<h2>Taxonomy levels</h2>");
    h.push_str(&table(
        &["level", "classes", "accuracy", "balanced accuracy"],
        summary.confusion.iter().map(|c| {
            let a = c.accuracies();
            vec![c.level.clone(), c.labels.join(", "), fmt_opt(a.map(|a| a.0)), fmt_opt(a.map(|a| a.1))]
        }),
    ));
    h.push_str("<h2>Recall per training class</h2>");
    h.push_str(&table(&["class", "recall"], summary.per_class_recall.iter().map(|(c, r)| vec![c.clone(), fmt_opt(*r)])));
    h.push_str("<h2>Plots</h2>");
    for p in plots {
        if let Some(name) = p.file_name().and_then(|n| n.to_str()) {
            h.push_str(&format!("<img src=\"{0}\" alt=\"{0}\">", esc(name)));
        }
    }
    h.push_str("<p><a href=\"metrics.json\">metrics.json</a></p></html>\n");
    std::fs::write(dir.join("index.html"), h)
}

/// The paragraph under the title: how many images, the training classes' accuracies, and how
/// many were labelled above the training classes.
fn headline(summary: &Summary) -> String {
    let classes = summary.confusion[0].accuracies();
    let mut p = format!(
        "<p>{} images; balanced accuracy <strong>{}</strong>; accuracy {}.",
        summary.images,
        fmt_opt(classes.map(|a| a.1)),
        fmt_opt(classes.map(|a| a.0))
    );
    if summary.above_classes > 0 {
        p.push_str(&format!(" {} of them are labelled above the training classes (such as benign or malignant): they count in the binary tasks and taxonomy levels their labels decide, not in the training classes' accuracies and recalls.", summary.above_classes));
    }
    p + "</p>"
}

/// A table with a header row `head` and a row for each of `rows`, every cell escaped.
fn table<R: AsRef<[String]>>(head: &[&str], rows: impl IntoIterator<Item = R>) -> String {
    let mut t = format!("<table><tr>{}</tr>", cells("th", head));
    for r in rows {
        t.push_str(&format!("<tr>{}</tr>", cells("td", r.as_ref())));
    }
    t + "</table>"
}

fn cells<S: AsRef<str>>(tag: &str, cells: &[S]) -> String {
    cells.iter().map(|c| format!("<{tag}>{}</{tag}>", esc(c.as_ref()))).collect()
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}
