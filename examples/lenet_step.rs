//! Wall-clock time of one LeNet-5 training step (BioTorch's LeNetMNIST, batch 64, SGD
//! with momentum 0.9 and weight decay 1e-3: the step `benches/reference/torch_lenet.py`
//! times in PyTorch), for each rule, on the CPU or a GPU.
//!
//! ```text
//! cargo run --release --example lenet_step -- --rule bp,fa,dfa --batch 64 --repeats 50
//! python3 benches/reference/torch_lenet.py --batch 64 --repeats 50
//! ```
//!
//! The data is random (only the time matters); each sample is `--inner` steps, and the
//! median and minimum per step are printed with samples per second, as the reference
//! prints them.

use plasticity::bench::{time_steps, Timing};
use plasticity::layer::Shape;
use plasticity::{models, Device, Optimizer, Result, Rule, TrainConfig, Trainer};

mod common;

const USAGE: &str = "\
usage: lenet_step [options]
  --rule R1,R2,...      rules to time (bp, fa, dfa, ...; default bp,fa,dfa)
  --batch B             samples per step (default 64)
  --warmup N            untimed steps first (default 10)
  --repeats N           timed samples (default 50)
  --inner N             steps per timed sample (default 1)
  --device cpu|gpu|auto where to run (default cpu)";

/// Distinct random batches the timed steps cycle through.
const BATCHES: usize = 4;

fn main() -> std::process::ExitCode {
    common::main_with(run)
}

fn run() -> Result<()> {
    let (mut rules, mut batch, mut warmup, mut repeats, mut inner) = (
        vec![
            Rule::Backprop,
            Rule::FeedbackAlignment,
            Rule::DirectFeedbackAlignment,
        ],
        64,
        10,
        50,
        1,
    );
    let mut device = "cpu".to_string();
    for (flag, value) in common::flag_pairs(USAGE)? {
        let count = |v: &str| common::parse::<usize>(USAGE, &flag, v);
        match flag.as_str() {
            "--rule" => {
                rules = value
                    .split(',')
                    .map(|r| {
                        Rule::from_name(r.trim())
                            .ok_or_else(|| common::bad(USAGE, &format!("unknown rule {r}")))
                    })
                    .collect::<Result<_>>()?
            }
            "--batch" => batch = count(&value)?,
            "--warmup" => warmup = count(&value)?,
            "--repeats" => repeats = count(&value)?,
            "--inner" => inner = count(&value)?,
            "--device" => device = value,
            _ => return Err(common::bad(USAGE, &format!("unknown option {flag}"))),
        }
    }
    let device = Device::from_name(&device)?;
    let data = common::random_images(batch * BATCHES)?;
    println!("LeNet-5 (61,706 parameters), batch {batch}, SGD momentum 0.9 weight decay 1e-3");
    println!("| rule | median ms/step | min ms/step | samples/s (median) |\n|---|---:|---:|---:|");
    for rule in rules {
        let net = models::lenet5(Shape::image(1, 28, 28), 10)?
            .seed(1)
            .build()?;
        let config = TrainConfig {
            rule,
            optimizer: Optimizer::Sgd {
                lr: 0.01,
                momentum: 0.9,
                weight_decay: 1e-3,
                nesterov: false,
            },
            batch_size: batch,
            ..TrainConfig::default()
        };
        let mut trainer = Trainer::new(net, config, device)?;
        let t: Timing = time_steps(&mut trainer, &data, warmup, repeats, inner)?;
        println!(
            "| {rule} ({}) | {:.3} | {:.3} | {:.0} |",
            trainer.device_name(),
            t.median_ms(),
            t.min_ms(),
            batch as f64 / t.median.as_secs_f64()
        );
    }
    Ok(())
}
