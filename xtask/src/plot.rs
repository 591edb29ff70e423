//! The SVG plot of the real-mode cluster-sim: members seen per node over
//! time.

use std::collections::BTreeSet;
use std::path::Path;

use anyhow::anyhow;

pub(crate) fn members(samples: &[(u128, String, usize)], path: &Path) -> anyhow::Result<()> {
    use plotters::prelude::*;
    let root = SVGBackend::new(path, (900, 500)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| anyhow!("plot: {e}"))?;
    let max_t = samples.iter().map(|s| s.0).max().unwrap_or(1).max(1) as f64 / 1000.0;
    let max_m = samples.iter().map(|s| s.2).max().unwrap_or(1).max(1);
    let mut chart = ChartBuilder::on(&root)
        .caption("members seen per node", ("sans-serif", 20))
        .margin(10)
        .x_label_area_size(35)
        .y_label_area_size(50)
        .build_cartesian_2d(0f64..max_t, 0usize..max_m + max_m / 10 + 1)
        .map_err(|e| anyhow!("plot: {e}"))?;
    chart
        .configure_mesh()
        .x_desc("seconds")
        .y_desc("memberships")
        .draw()
        .map_err(|e| anyhow!("plot: {e}"))?;
    let names: BTreeSet<&String> = samples.iter().map(|s| &s.1).collect();
    for (i, name) in names.into_iter().enumerate() {
        let color = Palette99::pick(i).to_rgba();
        let series: Vec<(f64, usize)> = samples
            .iter()
            .filter(|s| &s.1 == name)
            .map(|s| (s.0 as f64 / 1000.0, s.2))
            .collect();
        chart
            .draw_series(LineSeries::new(series, &color))
            .map_err(|e| anyhow!("plot: {e}"))?
            .label(name.as_str())
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color));
    }
    chart
        .configure_series_labels()
        .border_style(BLACK)
        .draw()
        .map_err(|e| anyhow!("plot: {e}"))?;
    root.present().map_err(|e| anyhow!("plot: {e}"))?;
    Ok(())
}
