//! Plots of the xtask runs: members seen per node over time (real-mode
//! cluster-sim, SVG) and the soak's gauges (SVG and PNG).
//!
//! Text is laid out with a TrueType font of the system (plotters'
//! `ab_glyph` backend, which needs a font registered, rather than
//! `font-kit`, which needs fontconfig's headers to build): Liberation Sans
//! or DejaVu Sans, found in the usual Debian places or through `fc-match`.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use anyhow::anyhow;
use plotters::coord::Shift;
use plotters::prelude::*;

/// Fonts tried, in order, before asking fontconfig.
const FONTS: [&str; 4] = [
    "/usr/share/fonts/truetype/liberation/LiberationSans-Regular.ttf",
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/TTF/DejaVuSans.ttf",
    "/usr/share/fonts/liberation/LiberationSans-Regular.ttf",
];

/// Registers a system font as plotters' "sans-serif" (once).
fn ensure_font() -> anyhow::Result<()> {
    static FONT: OnceLock<Result<(), String>> = OnceLock::new();
    FONT.get_or_init(|| {
        let mut candidates: Vec<PathBuf> = FONTS.iter().map(PathBuf::from).collect();
        if let Ok(out) = std::process::Command::new("fc-match")
            .args(["-f", "%{file}", "sans-serif:fontformat=TrueType"])
            .output()
        {
            candidates.push(PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()));
        }
        let bytes = candidates
            .iter()
            .find_map(|p| std::fs::read(p).ok())
            .ok_or_else(|| {
                "plots need a TrueType font: apt-get install fonts-liberation".to_owned()
            })?;
        // Registered fonts live as long as the process: leaked once.
        let bytes: &'static [u8] = Box::leak(bytes.into_boxed_slice());
        plotters::style::register_font("sans-serif", FontStyle::Normal, bytes)
            .map_err(|_| "the system font is not a TrueType font plotters reads".to_owned())
    })
    .clone()
    .map_err(|e| anyhow!(e))
}

fn err(e: impl std::fmt::Display) -> anyhow::Error {
    anyhow!("plot: {e}")
}

/// One line of a panel.
pub(crate) struct Line {
    pub(crate) label: String,
    /// (x, y).
    pub(crate) points: Vec<(f64, f64)>,
}

/// One chart: a title and its lines, over minutes.
pub(crate) struct Panel {
    pub(crate) title: &'static str,
    pub(crate) lines: Vec<Line>,
}

/// Draws `panels` stacked, over a shared axis of minutes, to `svg` and
/// `png`.
pub(crate) fn panels(panels: &[Panel], svg: &Path, png: &Path) -> anyhow::Result<()> {
    ensure_font()?;
    let size = (1000, 260 * panels.len().max(1) as u32);
    draw_panels(SVGBackend::new(svg, size).into_drawing_area(), panels)?;
    draw_panels(BitMapBackend::new(png, size).into_drawing_area(), panels)
}

fn draw_panels<DB: DrawingBackend>(
    root: DrawingArea<DB, Shift>,
    panels: &[Panel],
) -> anyhow::Result<()>
where
    DB::ErrorType: 'static,
{
    root.fill(&WHITE).map_err(err)?;
    let max_x = panels
        .iter()
        .flat_map(|p| &p.lines)
        .flat_map(|l| &l.points)
        .map(|p| p.0)
        .fold(0.0f64, f64::max)
        .max(1.0 / 60.0);
    for (area, panel) in root.split_evenly((panels.len(), 1)).iter().zip(panels) {
        let max_y = panel
            .lines
            .iter()
            .flat_map(|l| &l.points)
            .map(|p| p.1)
            .fold(0.0f64, f64::max)
            .max(1.0);
        let mut chart = ChartBuilder::on(area)
            .caption(panel.title, ("sans-serif", 18))
            .margin(8)
            .x_label_area_size(30)
            .y_label_area_size(60)
            .build_cartesian_2d(0f64..max_x, 0f64..max_y * 1.1)
            .map_err(err)?;
        chart
            .configure_mesh()
            .x_desc("minutes")
            .draw()
            .map_err(err)?;
        for (i, line) in panel.lines.iter().enumerate() {
            let color = Palette99::pick(i).to_rgba();
            chart
                .draw_series(LineSeries::new(line.points.iter().copied(), &color))
                .map_err(err)?
                .label(line.label.as_str())
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color));
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::LowerRight)
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .draw()
            .map_err(err)?;
    }
    root.present().map_err(err)
}

/// The SVG of members seen per node over time (real-mode cluster-sim).
pub(crate) fn members(samples: &[(u128, String, usize)], path: &Path) -> anyhow::Result<()> {
    ensure_font()?;
    let root = SVGBackend::new(path, (900, 500)).into_drawing_area();
    root.fill(&WHITE).map_err(err)?;
    let max_t = samples.iter().map(|s| s.0).max().unwrap_or(1).max(1) as f64 / 1000.0;
    let max_m = samples.iter().map(|s| s.2).max().unwrap_or(1).max(1);
    let mut chart = ChartBuilder::on(&root)
        .caption("members seen per node", ("sans-serif", 20))
        .margin(10)
        .x_label_area_size(35)
        .y_label_area_size(50)
        .build_cartesian_2d(0f64..max_t, 0usize..max_m + max_m / 10 + 1)
        .map_err(err)?;
    chart
        .configure_mesh()
        .x_desc("seconds")
        .y_desc("memberships")
        .draw()
        .map_err(err)?;
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
            .map_err(err)?
            .label(name.as_str())
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color));
    }
    chart
        .configure_series_labels()
        .border_style(BLACK)
        .draw()
        .map_err(err)?;
    root.present().map_err(err)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn panels_are_drawn_to_svg_and_png() {
        let dir = std::env::temp_dir().join(format!("pg-plot-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let (svg, png) = (dir.join("p.svg"), dir.join("p.png"));
        let line = |label: &str, k: f64| Line {
            label: label.to_owned(),
            points: (0..100).map(|i| (i as f64 / 10.0, k * i as f64)).collect(),
        };
        let drawn = panels(
            &[
                Panel {
                    title: "resident memory (MiB)",
                    lines: vec![line("n0", 1.0), line("n1", 2.0)],
                },
                Panel {
                    title: "tokio tasks",
                    lines: vec![line("n0", 0.5)],
                },
            ],
            &svg,
            &png,
        );
        drawn.expect("a font is installed where tests run (fonts-liberation)");
        let svg = std::fs::read_to_string(&svg).expect("svg");
        assert!(svg.contains("resident memory (MiB)") && svg.contains("n1"));
        let png = std::fs::read(&png).expect("png");
        assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
        std::fs::remove_dir_all(&dir).ok();
    }
}
