//! Kill-and-resume soak test: a child process trains with a checkpoint every N steps,
//! the parent kills it at a random (seeded) moment, resumes from the last checkpoint,
//! trains to the same total and checks nothing was lost: on the CPU the final state
//! (parameters, optimizer moments, feedback, counters, generators) equals an
//! uninterrupted run's bit for bit; on the GPU the parameters agree within tolerance.
//!
//! ```text
//! cargo run --release --example soak -- --steps 2000 --every 50 --rounds 3 --seed 1
//! ```
//! With no GPU adapter the GPU half is skipped with a loud message
//! (`PLASTICITY_REQUIRE_GPU=1` makes that an error).

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use plasticity::data::Dataset;
use plasticity::schedule::Schedule;
use plasticity::{
    Activation, Device, Error, Network, Optimizer, Result, Rule, TrainConfig, Trainer,
};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

const USAGE: &str = "\
usage: soak [--steps N] [--every K] [--rounds R] [--seed S] [--device cpu|gpu|both] [--dir DIR]
  --steps N    total training steps of each run          (default 400)
  --every K    checkpoint every K steps                  (default 25)
  --rounds R   kill-and-resume rounds per device         (default 2)
  --seed S     seed of the data, the network and the kill moments (default 1)
  --device D   cpu, gpu or both                          (default both)
  --dir DIR    where checkpoints go                      (default: a temporary directory)";

const BATCH: usize = 16;
const SAMPLES: usize = 512;

#[derive(Debug, Clone)]
struct Args {
    steps: u64,
    every: u64,
    rounds: u64,
    seed: u64,
    device: String,
    dir: Option<PathBuf>,
    /// Child mode: train on this device, saving to this path.
    child: Option<(String, PathBuf)>,
}

fn bad(msg: String) -> Error {
    Error::InvalidConfig(format!("{msg}\n{USAGE}"))
}

fn parse_args() -> Result<Args> {
    let mut a = Args {
        steps: 400,
        every: 25,
        rounds: 2,
        seed: 1,
        device: "both".into(),
        dir: None,
        child: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        if flag == "--help" || flag == "-h" {
            println!("{USAGE}");
            std::process::exit(0);
        }
        let value = it
            .next()
            .ok_or_else(|| bad(format!("{flag} needs a value")))?;
        let num = |v: &str| {
            v.parse::<u64>()
                .map_err(|_| bad(format!("{flag}: bad number {v}")))
        };
        match flag.as_str() {
            "--steps" => a.steps = num(&value)?,
            "--every" => a.every = num(&value)?.max(1),
            "--rounds" => a.rounds = num(&value)?,
            "--seed" => a.seed = num(&value)?,
            "--device" => a.device = value,
            "--dir" => a.dir = Some(value.into()),
            "--child" => {
                let path = it.next().ok_or_else(|| bad("--child DEVICE PATH".into()))?;
                a.child = Some((value, path.into()));
            }
            _ => return Err(bad(format!("unknown option {flag}"))),
        }
    }
    Ok(a)
}

/// Seeded synthetic classification data: class-dependent means plus noise.
fn dataset(seed: u64) -> Result<Dataset> {
    let (dim, classes) = (24, 6);
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let centers: Vec<f32> = (0..dim * classes)
        .map(|_| rng.random_range(-1.0..1.0))
        .collect();
    let mut x = Vec::with_capacity(SAMPLES * dim);
    let mut y = Vec::with_capacity(SAMPLES);
    for _ in 0..SAMPLES {
        let c = rng.random_range(0..classes);
        y.push(c as u32);
        x.extend((0..dim).map(|k| centers[c * dim + k] + rng.random_range(-0.8..0.8)));
    }
    Dataset::new(x, y, dim, classes)
}

fn fresh_trainer(args: &Args, device: Device, data: &Dataset) -> Result<Trainer> {
    let net = Network::builder(data.dim())
        .dense(48, Activation::Tanh)
        .dense(48, Activation::Tanh)
        .dense(data.classes(), Activation::Identity)
        .seed(args.seed)
        .build()?;
    let config = TrainConfig {
        rule: Rule::DirectFeedbackAlignment,
        optimizer: Optimizer::adam(0.01),
        batch_size: BATCH,
        schedule: Schedule::cosine(args.steps, 0.05).with_warmup(args.steps / 10),
        grad_clip: Some(1.0),
        ..TrainConfig::default()
    };
    Trainer::new(net, config, device)
}

/// The batch of step `s` (from 0) depends on the step count alone, so a resumed run
/// sees exactly the batches the killed one would have.
fn batch_of(step: u64) -> Vec<usize> {
    (0..BATCH)
        .map(|i| ((step as usize * BATCH + i) * 7919) % SAMPLES)
        .collect()
}

/// Trains until `total` steps, saving every `every` steps when a path is given.
fn train_to(
    t: &mut Trainer,
    data: &Dataset,
    total: u64,
    every: u64,
    save: Option<&Path>,
) -> Result<()> {
    while t.steps() < total {
        t.train_batch(data, &batch_of(t.steps()))?;
        if let Some(path) = save {
            if t.steps() % every == 0 {
                t.save_checkpoint(path)?;
                // The parent counts these lines: a reported save must never be lost.
                println!("saved {}", t.steps());
                std::io::stdout().flush().ok();
            }
        }
    }
    Ok(())
}

fn device(name: &str) -> Result<Device> {
    Device::from_name(name)
}

fn child(args: &Args, dev: &str, path: &Path) -> Result<()> {
    let data = dataset(args.seed)?;
    let mut t = fresh_trainer(args, device(dev)?, &data)?;
    train_to(&mut t, &data, args.steps, args.every, Some(path))
}

/// One round: spawn, kill at a random moment, resume, finish. Returns the final state
/// and how many steps the resumed trainer found in the checkpoint.
fn round(args: &Args, dev: &str, path: &Path, rng: &mut ChaCha8Rng) -> Result<(Trainer, u64)> {
    let _ = std::fs::remove_file(path);
    let saves = (args.steps / args.every).max(1);
    let kill_after = rng.random_range(1..=saves);
    let extra_us = rng.random_range(0..3000);
    let exe = std::env::current_exe().map_err(|e| Error::Backend(format!("current_exe: {e}")))?;
    let mut cmd = Command::new(exe);
    cmd.args([
        "--steps",
        &args.steps.to_string(),
        "--every",
        &args.every.to_string(),
    ])
    .args(["--seed", &args.seed.to_string(), "--child", dev])
    .arg(path)
    .stdout(Stdio::piped());
    let mut proc = cmd
        .spawn()
        .map_err(|e| Error::Backend(format!("spawn child: {e}")))?;
    let stdout = proc
        .stdout
        .take()
        .ok_or_else(|| Error::Backend("child stdout".into()))?;
    let mut reported = 0u64;
    for line in BufReader::new(stdout).lines() {
        let line = line.map_err(|e| Error::Backend(format!("child output: {e}")))?;
        if let Some(step) = line.strip_prefix("saved ").and_then(|s| s.parse().ok()) {
            reported = step;
            if reported / args.every >= kill_after {
                break;
            }
        }
    }
    // Somewhere inside the next step or the next save.
    std::thread::sleep(Duration::from_micros(extra_us));
    proc.kill().ok(); // it may have finished already
    let status = proc
        .wait()
        .map_err(|e| Error::Backend(format!("wait: {e}")))?;
    let mut t = Trainer::load_checkpoint(path, device(dev)?)?;
    let found = t.steps();
    println!(
        "  {dev}: killed after save {reported} (+{extra_us} us, {status}); checkpoint holds step {found}"
    );
    if found < reported || found % args.every != 0 {
        return Err(Error::Backend(format!(
            "lost work: the child reported step {reported} saved, the checkpoint holds {found}"
        )));
    }
    let data = dataset(args.seed)?;
    train_to(&mut t, &data, args.steps, args.every, None)?;
    Ok((t, found))
}

fn soak(args: &Args, dev: &str, dir: &Path) -> Result<()> {
    let data = dataset(args.seed)?;
    let start = Instant::now();
    let mut reference = fresh_trainer(args, device(dev)?, &data)?;
    train_to(&mut reference, &data, args.steps, args.every, None)?;
    let want = reference.checkpoint()?;
    let eval = reference.evaluate(&data)?;
    println!(
        "{dev}: uninterrupted {} steps in {:.2}s, train accuracy {:.1}%",
        args.steps,
        start.elapsed().as_secs_f64(),
        100.0 * eval.accuracy
    );
    let mut rng = ChaCha8Rng::seed_from_u64(args.seed ^ 0x5eed);
    for r in 0..args.rounds {
        let path = dir.join(format!("soak-{dev}-{r}.safetensors"));
        let (mut t, _) = round(args, dev, &path, &mut rng)?;
        let got = t.checkpoint()?;
        if dev == "cpu" {
            if got != want {
                return Err(Error::Backend(format!(
                    "cpu round {r}: the resumed run's state differs from the uninterrupted run's"
                )));
            }
        } else {
            let worst = got
                .params
                .iter()
                .zip(&want.params)
                .map(|(a, b)| (a - b).abs() / (1e-3 + b.abs()))
                .fold(0.0f32, f32::max);
            if worst > 1e-3 || got.steps != want.steps {
                return Err(Error::Backend(format!(
                    "gpu round {r}: parameters differ by {worst:e} relative"
                )));
            }
            println!("  round {r}: ok (largest relative difference {worst:e}, bound 1e-3)");
            continue;
        }
        println!("  round {r}: ok (bit-identical)");
    }
    Ok(())
}

fn main() -> Result<()> {
    let args = parse_args()?;
    if let Some((dev, path)) = &args.child {
        return child(&args, dev, path);
    }
    let dir = match &args.dir {
        Some(d) => d.clone(),
        None => std::env::temp_dir().join(format!("plasticity-soak-{}", std::process::id())),
    };
    std::fs::create_dir_all(&dir).map_err(|source| Error::Io {
        path: dir.clone(),
        source,
    })?;
    let devices: &[&str] = match args.device.as_str() {
        "both" => &["cpu", "gpu"],
        "cpu" => &["cpu"],
        "gpu" => &["gpu"],
        other => return Err(bad(format!("unknown device {other}"))),
    };
    for &dev in devices {
        if dev == "gpu" {
            if let Err(e) = Device::from_name("gpu").and_then(|d| d.backend()) {
                if std::env::var("PLASTICITY_REQUIRE_GPU").as_deref() == Ok("1") {
                    return Err(e);
                }
                eprintln!("!!!!! SKIPPED the GPU half of the soak: no GPU adapter ({e}) !!!!!");
                continue;
            }
        }
        soak(&args, dev, &dir)?;
    }
    if args.dir.is_none() {
        std::fs::remove_dir_all(&dir).ok();
    }
    println!("soak passed");
    Ok(())
}
