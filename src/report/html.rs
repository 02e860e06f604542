//! `index.html`: the headline numbers and the plots, for a browser (native only).

use super::{fmt_opt, GroupRow, Summary, GROUP_COLUMNS};

/// Writes `index.html`: the headline numbers and the plots, for a browser.
pub fn write_html(summary: &Summary, groups: &[GroupRow], title: &str, plots: &[std::path::PathBuf], dir: &std::path::Path) -> std::io::Result<()> {
    let esc = |s: &str| s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;");
    let mut h = String::new();
    h.push_str("<!doctype html><html lang=\"en\"><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width\">");
    h.push_str(&format!("<title>{}</title>", esc(title)));
    h.push_str("<style>body{font-family:sans-serif;max-width:1100px;margin:1em auto;padding:0 1em;color:#111}td,th{padding:4px 10px;border-bottom:1px solid #ccc;text-align:left}img{max-width:100%;margin:8px}</style>");
    h.push_str(&format!("<h1>{}</h1>", esc(title)));
    h.push_str("<p><strong>Screening aid, not a diagnosis.</strong> Numbers below are measured on the labelled images given to <code>dermscreen evaluate</code>.</p>");
    let classes = summary.confusion[0].accuracies();
    h.push_str(&format!(
        "<p>{} images; balanced accuracy <strong>{}</strong>; accuracy {}.",
        summary.images,
        fmt_opt(classes.map(|a| a.1)),
        fmt_opt(classes.map(|a| a.0))
    ));
    if summary.above_classes > 0 {
        h.push_str(&format!(" {} of them are labelled above the training classes (such as benign or malignant): they count in the binary tasks and taxonomy levels their labels decide, not in the training classes' accuracies and recalls.", summary.above_classes));
    }
    h.push_str("</p>");
    // Every photo, then each source, kind and --by value: the flag's numbers are only here.
    let row = |cell: &str, cells: &[String]| cells.iter().map(|c| format!("<{cell}>{}</{cell}>", esc(c))).collect::<String>();
    h.push_str(&format!("<h2>By group (AUC with 95% interval; the flag as the page shows it)</h2><table><tr>{}</tr>", row("th", &GROUP_COLUMNS.map(String::from))));
    for g in groups {
        h.push_str(&format!("<tr>{}</tr>", row("td", &g.cells())));
    }
    h.push_str("</table>");
    h.push_str("<h2>Binary tasks</h2><table><tr><th>task</th><th>positives</th><th>negatives</th><th>AUC</th><th>95% CI</th><th>sensitivity at specificity</th></tr>");
    for t in &summary.binary_tasks {
        let ci = t.auc_ci95.map_or("n/a".into(), |(a, b)| format!("{a:.3}-{b:.3}"));
        let sens: Vec<String> = t.sensitivity_at_specificity.iter().map(|(sp, se)| format!("{se:.2} @ {sp:.2}")).collect();
        let sens = if sens.is_empty() { vec!["n/a".to_string()] } else { sens };
        h.push_str(&format!(
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            esc(&t.name),
            t.positives,
            t.negatives,
            fmt_opt(t.auc),
            ci,
            sens.join(", ")
        ));
    }
    h.push_str("</table><h2>Taxonomy levels</h2><table><tr><th>level</th><th>classes</th><th>accuracy</th><th>balanced accuracy</th></tr>");
    for c in &summary.confusion {
        let a = c.accuracies();
        h.push_str(&format!(
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            esc(&c.level),
            esc(&c.labels.join(", ")),
            fmt_opt(a.map(|a| a.0)),
            fmt_opt(a.map(|a| a.1))
        ));
    }
    h.push_str("</table><h2>Recall per training class</h2><table><tr><th>class</th><th>recall</th></tr>");
    for (c, r) in &summary.per_class_recall {
        h.push_str(&format!("<tr><td>{}</td><td>{}</td></tr>", esc(c), fmt_opt(*r)));
    }
    h.push_str("</table><h2>Plots</h2>");
    for p in plots {
        if let Some(name) = p.file_name().and_then(|n| n.to_str()) {
            h.push_str(&format!("<img src=\"{0}\" alt=\"{0}\">", esc(name)));
        }
    }
    h.push_str("<p><a href=\"metrics.json\">metrics.json</a></p></html>\n");
    std::fs::write(dir.join("index.html"), h)
}
