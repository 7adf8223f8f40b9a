//! Every learning rule on the same network, data and seed, in one table.
//!
//! ```text
//! cargo run --release --example compare_rules -- --hidden 800,800 --epochs 20
//! ```
//!
//! Prints a markdown table (rule, test accuracy, mean seconds per epoch, final mean
//! alignment angle of the hidden layers' updates with BP's gradient) and writes it as
//! CSV. Adam 1e-3 decayed x0.8 per epoch, batch 64, tanh, like the `mnist` example.

use std::fmt::Write as _;
use std::time::Instant;

use plasticity::data::{Dataset, Mnist};
use plasticity::{learner, Error, Result, Trainer};

mod common;

const USAGE: &str = "\
usage: compare_rules [options]
  --rules R1,R2,...   learners, any --rule name of the mnist example (default: every one)
  --hidden W1,W2,...  hidden widths, tanh (default 800,800)
  --epochs N          epochs per rule (default 20)
  --train-limit N     use only the first N training images (default all)
  --probe N           training images the final angle is averaged over (default 512)
  --seed S            seed (default 1)
  --out PATH          CSV output (default out/compare_rules.csv)";

type Args = common::RuleStudyArgs;

fn bad(msg: &str) -> Error {
    common::bad(USAGE, msg)
}

fn parse_args() -> Result<Args> {
    let defaults = Args {
        rules: learner::catalogue::names()
            .into_iter()
            .map(String::from)
            .collect(),
        hidden: vec![800, 800],
        epochs: 20,
        train_limit: None,
        probe: 512,
        seed: 1,
        out: "out/compare_rules.csv".into(),
    };
    let args = Args::parse(USAGE, defaults)?;
    if args.epochs == 0 || args.probe == 0 {
        return Err(bad(
            "need at least one epoch and a probe of at least one image",
        ));
    }
    Ok(args)
}

const BATCH: usize = Args::BATCH;

struct Row {
    rule: String,
    test_accuracy: f32,
    epoch_seconds: f64,
    mean_angle: Option<f64>,
}

/// Mean update angle of the hidden layers over the probe batches (`None` when no
/// hidden layer learns, as under last-layer-only).
fn mean_hidden_angle(t: &mut Trainer, data: &Dataset, probe: usize) -> Result<Option<f64>> {
    let indices: Vec<usize> = (0..probe.min(data.len())).collect();
    let (mut sum, mut n) = (0.0, 0usize);
    for chunk in indices.chunks(BATCH) {
        let layers = t.alignment(data, chunk)?;
        let hidden = layers.len().saturating_sub(1);
        for a in &layers[..hidden] {
            if let Some(angle) = a.update_angle {
                sum += angle;
                n += 1;
            }
        }
    }
    Ok((n > 0).then(|| sum / n as f64))
}

fn run(args: &Args, rule: &str, train: &Dataset, test: &Dataset) -> Result<Row> {
    let mut t = args.trainer(rule, train)?;
    let start = Instant::now();
    for _ in 0..args.epochs {
        t.train_epoch(train, |_, _| {})?;
        let opt = t.config().optimizer;
        t.set_optimizer(opt.with_lr(opt.lr() * 0.8))?;
    }
    let epoch_seconds = start.elapsed().as_secs_f64() / args.epochs as f64;
    let test_accuracy = t.evaluate(test)?.accuracy;
    let mean_angle = mean_hidden_angle(&mut t, train, args.probe)?;
    Ok(Row {
        rule: rule.to_string(),
        test_accuracy,
        epoch_seconds,
        mean_angle,
    })
}

fn main() -> std::result::Result<(), Box<dyn std::error::Error>> {
    let args = parse_args()?;
    let mnist = Mnist::load(Mnist::bundled_dir())?;
    let train = match args.train_limit {
        Some(n) => mnist.train.take(n)?,
        None => mnist.train,
    };
    let shape: Vec<String> = std::iter::once(train.dim())
        .chain(args.hidden.iter().copied())
        .chain(std::iter::once(train.classes()))
        .map(|w| w.to_string())
        .collect();
    println!(
        "MNIST {} tanh, {} epochs, {} train / {} test images, Adam 1e-3 x0.8/epoch, batch {BATCH}, seed {}",
        shape.join("-"),
        args.epochs,
        train.len(),
        mnist.test.len(),
        args.seed
    );
    println!("| rule | test accuracy | s / epoch | final mean alignment angle |");
    println!("|------|--------------:|----------:|---------------------------:|");
    let mut csv = String::from("rule,test_accuracy,epoch_seconds,mean_alignment_angle_deg\n");
    for rule in &args.rules {
        // A learner that does not train this net (ff on bounded activations, dtp on
        // conv layers) says why in its row instead of ending the table.
        let row = match run(&args, rule, &train, &mnist.test) {
            Ok(row) => row,
            Err(e @ (Error::InvalidConfig(_) | Error::Unsupported(_))) => {
                println!("| {rule} | n/a: {e} | | |");
                let _ = writeln!(csv, "{rule},,,");
                continue;
            }
            Err(e) => return Err(e.into()),
        };
        let angle = row.mean_angle.map_or("n/a".into(), |a| format!("{a:.1}°"));
        println!(
            "| {} | {:.2}% | {:.1} | {angle} |",
            row.rule,
            100.0 * row.test_accuracy,
            row.epoch_seconds
        );
        let _ = writeln!(
            csv,
            "{},{:.4},{:.2},{}",
            row.rule,
            row.test_accuracy,
            row.epoch_seconds,
            row.mean_angle.map_or(String::new(), |a| format!("{a:.2}"))
        );
    }
    if let Some(dir) = std::path::Path::new(&args.out).parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(&args.out, csv)?;
    println!("wrote {}", args.out);
    Ok(())
}
