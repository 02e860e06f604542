//! The t-SNE map of the last hidden layer, and its plot.


/// A 2-D t-SNE map of the last hidden layer, one point per image, coloured by its label.
#[derive(Debug, Clone)]
pub struct TsneMap {
    /// `(x, y)` per image.
    pub points: Vec<(f32, f32)>,
    /// Index into `classes` per image.
    pub labels: Vec<usize>,
    pub classes: Vec<String>,
}

impl TsneMap {
    /// Barnes-Hut t-SNE (bhtsne; perplexity 30, or less for a small set) of `rows` (one
    /// embedding per image), from a seeded start so the same rows give the same map, up to
    /// rounding: bhtsne sums on several threads in varying order, and a point moves in the
    /// fourth decimal from run to run. `None` for fewer than [`Self::MIN_IMAGES`] rows.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn compute(rows: &[Vec<f32>], labels: Vec<usize>, classes: Vec<String>) -> Option<Self> {
        let n = rows.len();
        if n < Self::MIN_IMAGES {
            return None;
        }
        // bhtsne needs n - 1 >= 3 * perplexity (it panics otherwise).
        let perplexity = ((n - 1) as f32 / 3.0).min(30.0);
        let mut seed = 0x2017_0115_u64;
        let start: Vec<f32> = (0..2 * n)
            .map(|_| {
                seed = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
                ((seed >> 40) as f32 / (1u64 << 24) as f32 - 0.5) * 1e-2
            })
            .collect();
        let samples: Vec<&[f32]> = rows.iter().map(Vec::as_slice).collect();
        let flat = bhtsne::tSNE::<f32, &[f32], 2>::new(&samples)
            .perplexity(perplexity)
            .epochs(1000)
            .initial_embedding(start)
            .barnes_hut(0.5, |a, b| a.iter().zip(b.iter()).map(|(x, y)| (x - y).powi(2)).sum::<f32>().sqrt())
            .embedding();
        Some(Self { points: flat.chunks(2).map(|p| (p[0], p[1])).collect(), labels, classes })
    }

    /// The fewest images bhtsne maps: perplexity 1 needs four.
    pub const MIN_IMAGES: usize = 4;
}

/// Draws a [`TsneMap`] as `tsne.svg`, with a legend of the classes.
#[cfg(not(target_arch = "wasm32"))]
pub fn write_tsne(map: &TsneMap, dir: &std::path::Path) -> anyhow::Result<std::path::PathBuf> {
    use plotters::prelude::*;
    let path = dir.join("tsne.svg");
    let range = |f: fn(&(f32, f32)) -> f32| {
        let (lo, hi) = map.points.iter().map(f).fold((f32::MAX, f32::MIN), |(a, b), v| (a.min(v), b.max(v)));
        let pad = 0.05 * (hi - lo).max(1e-3);
        (lo - pad)..(hi + pad)
    };
    {
        let root = SVGBackend::new(&path, (640, 560)).into_drawing_area();
        root.fill(&WHITE)?;
        let mut chart = ChartBuilder::on(&root)
            .caption(format!("t-SNE of the last hidden layer, {} images", map.points.len()), ("sans-serif", 16))
            .margin(12)
            .build_cartesian_2d(range(|p| p.0), range(|p| p.1))?;
        chart.configure_mesh().disable_mesh().disable_axes().draw()?;
        for (k, class) in map.classes.iter().enumerate() {
            let colour = Palette99::pick(k).to_rgba();
            let points = map.points.iter().zip(&map.labels).filter(|(_, &l)| l == k).map(|(&p, _)| p);
            chart
                .draw_series(points.map(|p| Circle::new(p, 2, colour.filled())))?
                .label(class.as_str())
                .legend(move |(x, y)| Circle::new((x + 6, y), 4, colour.filled()));
        }
        chart.configure_series_labels().border_style(BLACK).background_style(WHITE.mix(0.8)).draw()?;
        root.present()?;
    }
    Ok(path)
}
