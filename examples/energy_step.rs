//! Wall-clock time of one training step of a learner that loops inside its step
//! (equilibrium propagation's settling phases, predictive coding's inference steps,
//! forward-forward's two passes), on the CPU or a GPU, to compare with the PyTorch
//! eager reference `benches/reference/torch_energy_step.py` on the same machine.
//!
//! ```text
//! cargo run --release --example energy_step -- --rule ep --hidden 500 \
//!     --activation sigmoid --batch 20 \
//!     --settings free_steps=20,nudged_steps=4,beta=0.2,symmetric=true
//! python3 benches/reference/torch_energy_step.py --rule ep --hidden 500 \
//!     --activation sigmoid --batch 20 --free-steps 20 --nudged-steps 4 --beta 0.2 --symmetric
//! cargo run --release --example energy_step -- --rule pc --hidden 256,256 --batch 64
//! python3 benches/reference/torch_energy_step.py --rule pc --hidden 256,256 --batch 64
//! ```
//!
//! The network is `784 - hidden... - 10` with Adam; the data is random (only the time
//! matters). Prints the median and minimum per step and samples per second.

use plasticity::bench::{time_steps, Timing};
use plasticity::{learner, Activation, Device, Network, Optimizer, Result, TrainConfig, Trainer};

mod common;

const USAGE: &str = "\
usage: energy_step [options]
  --rule NAME           a built-in learner: ep, pc, ff, or any other (default ep)
  --hidden W1,W2,...    hidden widths (default 500)
  --activation NAME     hidden activation (default sigmoid)
  --batch B             samples per step (default 20)
  --settings K=V,...    the learner's own settings (as the mnist example takes them)
  --warmup N            untimed steps first (default 5)
  --repeats N           timed samples (default 30)
  --device cpu|gpu|auto where to run (default cpu)";

/// Distinct random batches the timed steps cycle through.
const BATCHES: usize = 4;

fn main() -> std::process::ExitCode {
    common::main_with(run)
}

fn run() -> Result<()> {
    let (mut rule, mut hidden, mut activation) = ("ep".to_string(), vec![500], Activation::Sigmoid);
    let (mut batch, mut warmup, mut repeats, mut device) = (20, 5, 30, "cpu".to_string());
    let mut settings = Vec::new();
    for (flag, value) in common::flag_pairs(USAGE)? {
        let count = |v: &str| common::parse::<usize>(USAGE, &flag, v);
        match flag.as_str() {
            "--rule" => rule = value,
            "--hidden" => {
                hidden = value
                    .split(',')
                    .map(|w| common::parse::<usize>(USAGE, &flag, w.trim()))
                    .collect::<Result<_>>()?
            }
            "--activation" => {
                activation = Activation::from_name(&value)
                    .ok_or_else(|| common::bad(USAGE, &format!("unknown activation {value}")))?
            }
            "--batch" => batch = count(&value)?,
            "--settings" => settings = common::parse_settings(USAGE, &value)?,
            "--warmup" => warmup = count(&value)?,
            "--repeats" => repeats = count(&value)?,
            "--device" => device = value,
            _ => return Err(common::bad(USAGE, &format!("unknown option {flag}"))),
        }
    }
    let device = Device::from_name(&device)?;
    let data = common::random_images(batch * BATCHES)?;
    let net = Network::builder(784)
        .hidden(&hidden, activation)
        .dense(10, Activation::Identity)
        .seed(1)
        .build()?;
    let config = TrainConfig {
        optimizer: Optimizer::adam(1e-3),
        batch_size: batch,
        ..TrainConfig::default()
    };
    let mut learner = learner::builtin(&rule, &config)?;
    common::apply_settings(USAGE, &mut *learner, &settings)?;
    let state: Vec<String> = learner
        .state()
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    let mut trainer = Trainer::with_learner(net, config, learner, device)?;
    let t: Timing = time_steps(&mut trainer, &data, warmup, repeats, 1)?;
    let widths: Vec<String> = hidden.iter().map(|w| w.to_string()).collect();
    println!(
        "{rule} | 784-{}-10 {activation} | batch {batch} | {} | {} | median {:.3} ms/step | min {:.3} ms/step | {:.0} samples/s",
        widths.join("-"),
        state.iter().filter(|s| !s.contains("rng")).cloned().collect::<Vec<_>>().join(","),
        trainer.device_name(),
        t.median_ms(),
        t.min_ms(),
        batch as f64 / t.median.as_secs_f64()
    );
    Ok(())
}
