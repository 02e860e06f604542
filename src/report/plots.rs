//! The report's SVG plots (native only): ROC curves, confusion matrices, the reliability diagram.

use super::{fmt_opt, BinaryTask, Confusion, Summary};

/// The reliability diagram of P(malignant): observed share malignant against predicted, per
/// bin (dot size by count), with the diagonal a calibrated model follows.
fn write_reliability(summary: &Summary, path: &std::path::Path) -> anyhow::Result<()> {
    use plotters::prelude::*;
    let cal = &summary.calibration;
    let root = SVGBackend::new(path, (520, 520)).into_drawing_area();
    root.fill(&WHITE)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(format!("P(malignant) reliability: ECE {:.3}", cal.ece_malignant), ("sans-serif", 16))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(48)
        .build_cartesian_2d(0f64..1f64, 0f64..1f64)?;
    chart.configure_mesh().x_desc("predicted P(malignant)").y_desc("observed share malignant").draw()?;
    chart.draw_series(LineSeries::new([(0.0, 0.0), (1.0, 1.0)], &BLACK.mix(0.3)))?;
    chart
        .draw_series(LineSeries::new(cal.reliability.iter().map(|b| (b.predicted, b.observed)), BLUE.stroke_width(2)))?
        .label(format!("{} images in 10 bins", summary.images))
        .legend(|(x, y)| PathElement::new([(x, y), (x + 16, y)], BLUE));
    let most = cal.reliability.iter().map(|b| b.count).max().unwrap_or(1) as f64;
    chart.draw_series(cal.reliability.iter().map(|b| {
        Circle::new((b.predicted, b.observed), (3.0 + 7.0 * (b.count as f64 / most).sqrt()) as i32, BLUE.filled())
    }))?;
    chart.configure_series_labels().border_style(BLACK).position(SeriesLabelPosition::LowerRight).draw()?;
    root.present()?;
    Ok(())
}

/// Writes the reliability diagram, one SVG per binary task (ROC with AUC and interval) and one
/// per confusion matrix; returns their paths.
pub fn write_plots(summary: &Summary, dir: &std::path::Path) -> anyhow::Result<Vec<std::path::PathBuf>> {
    let reliability = dir.join("reliability_malignant.svg");
    write_reliability(summary, &reliability)?;
    let mut written = vec![reliability];
    for task in &summary.binary_tasks {
        let path = dir.join(format!("roc_{}.svg", task.name));
        write_roc(task, &path)?;
        written.push(path);
    }
    for c in &summary.confusion {
        let path = dir.join(format!("confusion_{}.svg", c.level.replace(' ', "_")));
        write_confusion(c, &path)?;
        written.push(path);
    }
    Ok(written)
}

/// One binary task's ROC curve, its AUC and interval in the title.
fn write_roc(task: &BinaryTask, path: &std::path::Path) -> anyhow::Result<()> {
    use plotters::prelude::*;
    let root = SVGBackend::new(path, (520, 520)).into_drawing_area();
    root.fill(&WHITE)?;
    let title = match (task.auc, task.auc_ci95) {
        (Some(a), Some((lo, hi))) => format!("{}: AUC {a:.3} (95% CI {lo:.3}-{hi:.3})", task.name),
        _ => format!("{}: not enough cases", task.name),
    };
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 16))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(48)
        .build_cartesian_2d(0f64..1f64, 0f64..1f64)?;
    chart
        .configure_mesh()
        .x_desc("1 - specificity")
        .y_desc("sensitivity")
        .draw()?;
    chart.draw_series(LineSeries::new([(0.0, 0.0), (1.0, 1.0)], &BLACK.mix(0.3)))?;
    chart
        .draw_series(LineSeries::new(task.roc.iter().map(|p| (p.fpr, p.tpr)), BLUE.stroke_width(2)))?
        .label(format!("{} positives, {} negatives", task.positives, task.negatives))
        .legend(|(x, y)| PathElement::new([(x, y), (x + 16, y)], BLUE));
    chart.configure_series_labels().border_style(BLACK).position(SeriesLabelPosition::LowerRight).draw()?;
    root.present()?;
    Ok(())
}

/// A confusion matrix, each row shaded by its share of the row's true cases.
fn write_confusion(c: &Confusion, path: &std::path::Path) -> anyhow::Result<()> {
    use plotters::prelude::*;
    let n = c.labels.len();
    let cell = 64u32.max(360 / n.max(1) as u32);
    let (w, h) = (170 + cell * n as u32, 110 + cell * n as u32);
    let root = SVGBackend::new(path, (w, h)).into_drawing_area();
    root.fill(&WHITE)?;
    let style = ("sans-serif", 13).into_font();
    root.draw(&Text::new(
        format!("Confusion ({}), balanced accuracy {}; rows: truth", c.level, fmt_opt(c.accuracies().map(|a| a.1))),
        (8, 8),
        style.clone(),
    ))?;
    for (i, row) in c.matrix.iter().enumerate() {
        let total: u64 = row.iter().sum::<u64>().max(1);
        let y = 60 + i as i32 * cell as i32;
        root.draw(&Text::new(c.labels[i].clone(), (8, y + cell as i32 / 2 - 6), style.clone()))?;
        for (j, &v) in row.iter().enumerate() {
            let x = 160 + j as i32 * cell as i32;
            let frac = v as f64 / total as f64;
            let shade = RGBColor(
                (255.0 - 200.0 * frac) as u8,
                (255.0 - 140.0 * frac) as u8,
                255,
            );
            root.draw(&Rectangle::new([(x, y), (x + cell as i32 - 2, y + cell as i32 - 2)], shade.filled()))?;
            root.draw(&Text::new(format!("{v}"), (x + 6, y + cell as i32 / 2 - 6), style.clone()))?;
        }
    }
    for (j, l) in c.labels.iter().enumerate() {
        let x = 160 + j as i32 * cell as i32;
        let short: String = l.chars().take(10).collect();
        root.draw(&Text::new(short, (x + 2, 40), ("sans-serif", 11).into_font()))?;
    }
    root.present()?;
    Ok(())
}
