//! Line charts written as SVG or PNG (by the file's extension), atomically.
//!
//! Text is laid out (and for PNG rasterised) with a TrueType font: the one named by
//! `$PLASTICITY_FONT`, else Ubuntu Light, bundled as bytes by `epaint_default_fonts`,
//! so plots look the same on every machine and need no system fonts.

use std::path::{Path, PathBuf};

use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::register_font;

use plasticity::checkpoint::write_atomic;

use super::{replace_file, AnyResult};

/// Environment variable naming a `.ttf` file for PNG text.
pub const FONT_ENV: &str = "PLASTICITY_FONT";

/// One named series of `(x, y)` points.
pub struct Series {
    /// Legend text.
    pub label: String,
    /// Points, drawn in order.
    pub points: Vec<(f64, f64)>,
}

/// A chart of several series over shared axes.
pub struct LineChart {
    /// Caption above the plot.
    pub title: String,
    /// X axis label.
    pub x_label: String,
    /// Y axis label.
    pub y_label: String,
    /// The series.
    pub series: Vec<Series>,
    /// A dashed horizontal reference line (e.g. speedup 1).
    pub reference_y: Option<f64>,
    /// Draw x on a log-2 axis (depths 2, 4, 8, 16 equally spaced).
    pub log2_x: bool,
}

const SIZE: (u32, u32) = (900, 560);

fn plot_error(e: impl std::fmt::Display) -> Box<dyn std::error::Error> {
    format!("plot: {e}").into()
}

impl LineChart {
    /// Writes the chart to `path` (`.svg` or `.png`) via a temporary file and a
    /// rename, so an existing file is never left half-written.
    pub fn write(&self, path: &Path) -> AnyResult<()> {
        let ext = path
            .extension()
            .and_then(|e| e.to_str())
            .map(str::to_ascii_lowercase);
        match ext.as_deref() {
            Some("svg") => {
                load_font()?;
                let mut svg = String::new();
                self.draw(SVGBackend::with_string(&mut svg, SIZE).into_drawing_area())?;
                Ok(write_atomic(path, svg.as_bytes())?)
            }
            Some("png") => {
                load_font()?;
                replace_file(path, |tmp| {
                    self.draw(BitMapBackend::new(tmp, SIZE).into_drawing_area())
                })
            }
            _ => Err(format!("plot: {} must end in .svg or .png", path.display()).into()),
        }
    }

    fn bounds(&self) -> ((f64, f64), (f64, f64)) {
        let points = self.series.iter().flat_map(|s| s.points.iter().copied());
        let (mut x0, mut x1, mut y0, mut y1) = (f64::MAX, f64::MIN, f64::MAX, f64::MIN);
        for (x, y) in points.chain(self.reference_y.map(|y| (f64::NAN, y))) {
            if x.is_finite() {
                x0 = x0.min(x);
                x1 = x1.max(x);
            }
            y0 = y0.min(y);
            y1 = y1.max(y);
        }
        if x0 > x1 {
            (x0, x1) = (0.0, 1.0);
        }
        if y0 > y1 {
            (y0, y1) = (0.0, 1.0);
        }
        let pad = ((y1 - y0) * 0.08).max(0.05);
        ((x0, x1.max(x0 + 1.0)), ((y0 - pad).max(0.0), y1 + pad))
    }

    fn draw<DB: DrawingBackend>(&self, root: DrawingArea<DB, Shift>) -> AnyResult<()> {
        root.fill(&WHITE).map_err(plot_error)?;
        let ((x0, x1), (y0, y1)) = self.bounds();
        let fx = |x: f64| if self.log2_x { x.log2() } else { x };
        let mut chart = ChartBuilder::on(&root)
            .caption(&self.title, ("sans-serif", 22))
            .margin(16)
            .x_label_area_size(44)
            .y_label_area_size(56)
            .build_cartesian_2d(fx(x0)..fx(x1), y0..y1)
            .map_err(plot_error)?;
        let log2_x = self.log2_x;
        let x_tick = move |v: &f64| {
            let x = if log2_x { v.exp2() } else { *v };
            format!("{}", (x * 100.0).round() / 100.0)
        };
        chart
            .configure_mesh()
            .x_desc(&self.x_label)
            .y_desc(&self.y_label)
            .x_label_formatter(&x_tick)
            .x_labels(if self.log2_x {
                (fx(x1) - fx(x0)).round() as usize + 1
            } else {
                10
            })
            .draw()
            .map_err(plot_error)?;
        if let Some(y) = self.reference_y {
            let dashes = DashedLineSeries::new([(fx(x0), y), (fx(x1), y)], 8, 6, BLACK.into());
            chart.draw_series(dashes).map_err(plot_error)?;
        }
        for (i, s) in self.series.iter().enumerate() {
            let color = Palette99::pick(i).to_rgba();
            let points: Vec<(f64, f64)> = s.points.iter().map(|&(x, y)| (fx(x), y)).collect();
            chart
                .draw_series(LineSeries::new(points.clone(), color.stroke_width(2)))
                .map_err(plot_error)?
                .label(&s.label)
                .legend(move |(x, y)| PathElement::new([(x, y), (x + 18, y)], color));
            chart
                .draw_series(
                    points
                        .into_iter()
                        .map(|p| Circle::new(p, 4, color.filled())),
                )
                .map_err(plot_error)?;
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperLeft)
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK)
            .draw()
            .map_err(plot_error)?;
        root.present().map_err(plot_error)
    }
}

/// Registers the plots' font as "sans-serif" (once per process). Call it before
/// drawing any text with plotters.
pub fn load_font() -> AnyResult<()> {
    static LOADED: std::sync::OnceLock<std::result::Result<(), String>> =
        std::sync::OnceLock::new();
    LOADED
        .get_or_init(|| {
            let bytes: &'static [u8] = match std::env::var_os(FONT_ENV) {
                Some(path) => {
                    let path = PathBuf::from(path);
                    let bytes =
                        std::fs::read(&path).map_err(|e| format!("{}: {e}", path.display()))?;
                    // plotters keeps fonts for the life of the process; leaking the one
                    // copy gives it the 'static bytes it needs.
                    Box::leak(bytes.into_boxed_slice())
                }
                None => epaint_default_fonts::UBUNTU_LIGHT,
            };
            register_font("sans-serif", FontStyle::Normal, bytes)
                .map_err(|_| format!("{FONT_ENV}: not a usable TrueType font"))
        })
        .clone()
        .map_err(Into::into)
}
