//! Alignment of learning rules with backprop over training, on MNIST.
//!
//! ```text
//! cargo run --release --example alignment -- --rules fa,dfa --epochs 3 \
//!     --hidden 800,800 --out docs/alignment
//! ```
//!
//! For each rule it trains the same network (same seed, Adam 1e-3 decayed x0.8 per
//! epoch, batch 64) and records, at the start, at a few points of the first epoch
//! and after every epoch: test accuracy and every layer's alignment angles (the
//! angle between the rule's weight update and BP's exact gradient, averaged over a
//! fixed probe of training batches; and the feedback-to-weight angle where defined).
//! Writes `<out>.csv` (one row per rule, point and layer) and `<out>.svg` (the hidden
//! layers' update angles, the feedback-to-weight angles of the learners that keep a
//! feedback `B`, and the test accuracy against epochs).

mod common;

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::Instant;

use common::AnyResult;
use plasticity::checkpoint::write_atomic;
use plasticity::data::{Dataset, Mnist};
use plasticity::{Error, LayerAlignment, Result, Rule, Trainer};
use plotters::prelude::*;
use rand::seq::SliceRandom;
use rand::SeedableRng;

const USAGE: &str = "\
usage: alignment [options]
  --rules R1,R2,...   learners to train: any --rule name of the mnist example (default fa,dfa)
  --hidden W1,W2,...  hidden widths, tanh (default 800,800)
  --epochs N          epochs (default 3)
  --train-limit N     use only the first N training images (default all)
  --probe N           training images the angles are averaged over (default 512)
  --seed S            seed (default 1)
  --out PATH          output prefix: PATH.csv and PATH.svg (default out/alignment)";

type Args = common::RuleStudyArgs;

fn bad(msg: &str) -> Error {
    common::bad(USAGE, msg)
}

fn parse_args() -> Result<Args> {
    let defaults = Args {
        rules: [Rule::FeedbackAlignment, Rule::DirectFeedbackAlignment]
            .map(|r| r.name().to_string())
            .to_vec(),
        hidden: vec![800, 800],
        epochs: 3,
        train_limit: None,
        probe: 512,
        seed: 1,
        out: "out/alignment".into(),
    };
    let args = Args::parse(USAGE, defaults)?;
    if args.rules.is_empty() || args.probe == 0 {
        return Err(bad(
            "need at least one rule and a probe of at least one image",
        ));
    }
    Ok(args)
}

/// One measurement point of one rule.
struct Point {
    rule: String,
    epoch: f64,
    test_accuracy: f32,
    layers: Vec<LayerAlignment>,
}

const BATCH: usize = Args::BATCH;

/// Mean of the per-batch measurements over the probe (angles of defined layers only).
fn probe_alignment(
    t: &mut Trainer,
    data: &Dataset,
    probe: &[usize],
) -> Result<Vec<LayerAlignment>> {
    let mut sums: Vec<[(f64, usize); 3]> = Vec::new();
    for chunk in probe.chunks(BATCH) {
        let a = t.alignment(data, chunk)?;
        sums.resize(a.len(), [(0.0, 0); 3]);
        for (s, a) in sums.iter_mut().zip(&a) {
            for (k, v) in [a.update_angle, a.feedback_angle, a.norm_ratio]
                .into_iter()
                .enumerate()
            {
                if let Some(v) = v {
                    s[k].0 += v;
                    s[k].1 += 1;
                }
            }
        }
    }
    let mean = |(sum, n): (f64, usize)| (n > 0).then(|| sum / n as f64);
    Ok(sums
        .into_iter()
        .enumerate()
        .map(|(layer, s)| LayerAlignment {
            layer,
            update_angle: mean(s[0]),
            feedback_angle: mean(s[1]),
            norm_ratio: mean(s[2]),
        })
        .collect())
}

fn run_rule(args: &Args, rule: &str, train: &Dataset, test: &Dataset) -> Result<Vec<Point>> {
    let mut t = args.trainer(rule, train)?;
    let probe: Vec<usize> = (0..args.probe.min(train.len())).collect();
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(args.seed);
    let batches = train.len().div_ceil(BATCH);
    // Early points show how fast the angles fall.
    let early = [batches / 20, batches / 5, batches / 2];
    let mut points = Vec::new();
    let mut measure = |t: &mut Trainer, epoch: f64| -> Result<()> {
        let layers = probe_alignment(t, train, &probe)?;
        let test_accuracy = t.evaluate(test)?.accuracy;
        let angles: Vec<String> = layers
            .iter()
            .map(|a| a.update_angle.map_or("-".into(), |v| format!("{v:.1}")))
            .collect();
        println!(
            "{rule:>5} epoch {epoch:5.2}  test {:6.2}%  update angles [{}]",
            100.0 * test_accuracy,
            angles.join(", ")
        );
        points.push(Point {
            rule: rule.to_string(),
            epoch,
            test_accuracy,
            layers,
        });
        Ok(())
    };
    measure(&mut t, 0.0)?;
    for epoch in 0..args.epochs {
        let start = Instant::now();
        let mut order: Vec<usize> = (0..train.len()).collect();
        order.shuffle(&mut rng);
        for (i, batch) in order.chunks(BATCH).enumerate() {
            t.train_batch(train, batch)?;
            if epoch == 0 && early.contains(&(i + 1)) {
                measure(&mut t, (i + 1) as f64 / batches as f64)?;
            }
        }
        measure(&mut t, (epoch + 1) as f64)?;
        eprintln!(
            "{rule}: epoch {} took {:.1}s",
            epoch + 1,
            start.elapsed().as_secs_f64()
        );
        let opt = t.config().optimizer;
        t.set_optimizer(opt.with_lr(opt.lr() * 0.8))?;
    }
    Ok(points)
}

fn csv(points: &[Point]) -> String {
    let mut s = String::from(
        "rule,epoch,test_accuracy,layer,update_angle_deg,feedback_angle_deg,norm_ratio\n",
    );
    let opt = |v: Option<f64>| v.map_or(String::new(), |v| format!("{v:.4}"));
    for p in points {
        for a in &p.layers {
            let _ = writeln!(
                s,
                "{},{:.4},{:.4},{},{},{},{}",
                p.rule,
                p.epoch,
                p.test_accuracy,
                a.layer,
                opt(a.update_angle),
                opt(a.feedback_angle),
                opt(a.norm_ratio)
            );
        }
    }
    s
}

fn plot_error(e: impl std::fmt::Display) -> Box<dyn std::error::Error> {
    format!("plot: {e}").into()
}

/// Three panels against epochs: every hidden layer's update angle to BP, every
/// feedback-to-weight angle (learners with a `B`), and test accuracy.
fn plot(points: &[Point], rules: &[String], epochs: usize, path: &Path) -> AnyResult<()> {
    common::plot::load_font()?;
    let mut svg = String::new();
    draw(points, rules, epochs, &mut svg)?;
    Ok(write_atomic(path, svg.as_bytes())?)
}

/// One line per rule and layer: `(epoch, value)` pairs, and the rule's index.
type Series = Vec<(usize, Vec<(f64, f64)>)>;

const PALETTE: [RGBColor; 8] = [
    BLUE,
    RED,
    GREEN,
    MAGENTA,
    CYAN,
    BLACK,
    RGBColor(255, 140, 0),
    RGBColor(128, 0, 128),
];

/// `value` of every hidden layer of every rule, one series per (rule, layer) that has it.
fn layer_series(
    points: &[Point],
    rules: &[String],
    value: impl Fn(&LayerAlignment) -> Option<f64>,
) -> Series {
    let hidden = points
        .first()
        .map_or(0, |p| p.layers.len().saturating_sub(1));
    let mut out = Vec::new();
    for (r, rule) in rules.iter().enumerate() {
        for l in 0..hidden {
            let series: Vec<(f64, f64)> = points
                .iter()
                .filter(|p| &p.rule == rule)
                .filter_map(|p| value(&p.layers[l]).map(|v| (p.epoch, v)))
                .collect();
            if !series.is_empty() {
                out.push((r, series));
            }
        }
    }
    out
}

/// A line chart on `area`: each rule in its colour, its deeper layers lighter, one
/// legend entry per rule.
fn panel(
    area: &DrawingArea<SVGBackend, plotters::coord::Shift>,
    caption: &str,
    rules: &[String],
    series: Series,
    (x_max, y_range): (f64, std::ops::Range<f64>),
    legend: SeriesLabelPosition,
) -> AnyResult<()> {
    let mut chart = ChartBuilder::on(area)
        .caption(caption, ("sans-serif", 16))
        .margin(10)
        .x_label_area_size(30)
        .y_label_area_size(40)
        .build_cartesian_2d(0.0..x_max, y_range)
        .map_err(plot_error)?;
    chart
        .configure_mesh()
        .x_desc("epoch")
        .draw()
        .map_err(plot_error)?;
    let mut labelled = vec![false; rules.len()];
    let mut depth = vec![0usize; rules.len()];
    for (r, line) in series {
        let color = PALETTE[r % PALETTE.len()].mix(1.0 - 0.3 * depth[r].min(2) as f64);
        depth[r] += 1;
        let drawn = chart
            .draw_series(LineSeries::new(line, color.stroke_width(2)))
            .map_err(plot_error)?;
        if !std::mem::replace(&mut labelled[r], true) {
            drawn
                .label(rules[r].as_str())
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], color));
        }
    }
    chart
        .configure_series_labels()
        .position(legend)
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()
        .map_err(plot_error)?;
    Ok(())
}

fn draw(points: &[Point], rules: &[String], epochs: usize, svg: &mut String) -> AnyResult<()> {
    let root = SVGBackend::with_string(svg, (1320, 400)).into_drawing_area();
    root.fill(&WHITE).map_err(plot_error)?;
    let panels = root.split_evenly((1, 3));
    let x_max = epochs.max(1) as f64;
    panel(
        &panels[0],
        "update angle to BP's gradient (deg; lighter = deeper layer)",
        rules,
        layer_series(points, rules, |a| a.update_angle),
        (x_max, 0.0..100.0),
        SeriesLabelPosition::UpperRight,
    )?;
    panel(
        &panels[1],
        "angle between feedback B and forward W (deg)",
        rules,
        layer_series(points, rules, |a| a.feedback_angle),
        (x_max, 0.0..100.0),
        SeriesLabelPosition::UpperRight,
    )?;
    let lo = points
        .iter()
        .map(|p| p.test_accuracy)
        .fold(1.0f32, f32::min);
    let accuracy: Series = rules
        .iter()
        .enumerate()
        .map(|(r, rule)| {
            let line = points
                .iter()
                .filter(|p| &p.rule == rule)
                .map(|p| (p.epoch, 100.0 * f64::from(p.test_accuracy)))
                .collect();
            (r, line)
        })
        .collect();
    panel(
        &panels[2],
        "test accuracy (%)",
        rules,
        accuracy,
        (x_max, f64::from(100.0 * lo).max(0.0)..100.0),
        SeriesLabelPosition::LowerRight,
    )?;
    root.present().map_err(plot_error)?;
    Ok(())
}

fn main() -> AnyResult<()> {
    let args = parse_args()?;
    let mnist = Mnist::load(Mnist::bundled_dir())?;
    let train = match args.train_limit {
        Some(n) => mnist.train.take(n)?,
        None => mnist.train,
    };
    let mut points = Vec::new();
    for rule in &args.rules {
        points.extend(run_rule(&args, rule, &train, &mnist.test)?);
    }
    if let Some(dir) = std::path::Path::new(&args.out).parent() {
        std::fs::create_dir_all(dir)?;
    }
    let table = csv(&points);
    let csv_path = PathBuf::from(format!("{}.csv", args.out));
    write_atomic(&csv_path, table.as_bytes())?;
    let svg_path = PathBuf::from(format!("{}.svg", args.out));
    plot(&points, &args.rules, args.epochs, &svg_path)?;
    println!("wrote {0}.csv and {0}.svg", args.out);
    Ok(())
}
