//! Train a multilayer perceptron or LeNet-5 on MNIST (or Fashion-MNIST, CIFAR-10) with
//! any learning rule, and report accuracy on the test images.
//!
//! ```text
//! cargo run --release --example mnist -- --rule dfa --hidden 800,800 --activation tanh \
//!     --epochs 20 --batch 64 --lr 0.001 --lr-decay 0.8 --optimizer adam --seed 1
//! cargo run --release --example mnist -- --model lenet --rule bp --lr-decay 0.9
//! cargo run --release --example mnist -- --model lenet --dataset fashion-mnist --data DIR
//! ```
//! Run with `--help` for every option and its default.

use std::path::Path;
use std::time::Instant;

use indicatif::{ProgressBar, ProgressStyle};
use plasticity::data::DatasetKind;
use plasticity::layer::Shape;
use plasticity::{
    learner, models, Activation, Device, Error, FeedbackInit, Network, Optimizer, Residency,
    Result, Rule, TrainConfig, Trainer, WeightInit,
};

mod common;

const USAGE: &str = "\
usage: mnist [options]
  --rule NAME                 learning rule (default dfa): bp|fa|dfa|ifa|usf|brsf|frsf|drtp|last,
                              one that learns its feedback, targets or gradients:
                              kp|wm|dtp|ddtp|sg|csg, or an energy-based one: ep|pc|ff
  --model mlp|lenet           multilayer perceptron, or LeNet-5 (conv net; BioTorch's LeNetMNIST) (default mlp)
  --hidden W1,W2,...          hidden layer widths of the mlp      (default 800,800)
  --activation NAME           identity|relu|leaky_relu|tanh|sigmoid (default tanh)
  --epochs N                  passes over the 60,000 training images (default 20)
  --batch B                   mini-batch size                     (default 64)
  --lr X                      learning rate                       (default 0.001 adam, 0.01 sgd)
  --optimizer sgd|adam        update method                       (default adam)
  --lr-decay G                multiply the learning rate by G after each epoch (default 0.8)
  --momentum M                SGD momentum                        (default 0.9)
  --weight-decay L            L2 weight decay                     (default 0)
  --feedback uniform|gaussian|unit-uniform|xavier  feedback matrix init (default uniform)
  --conv-feedback unit|shared DFA/DRTP feedback to conv layers: per unit (C*H*W x outputs,
                              Nokland 2016), or per channel shared across positions (default unit)
  --init xavier|kaiming       weight init                         (default: kaiming for relu, else xavier)
  --seed S                    seed of every random draw           (default 1)
  --settings K=V,K=V,...      the learner's own settings, named as in its checkpoints
                              (ep: free_steps, nudged_steps, beta, symmetric;
                              pc: steps, rate, beta; ff: threshold, label_value, negatives=hardest|shifted,
                              skip_first_layer)
  --train-limit N             use only the first N training images (default all)
  --dataset mnist|fashion-mnist|cifar10  the data set          (default mnist)
  --data DIR                  its directory                       (default: bundled data/mnist)
  --device auto|cpu|gpu|gpu:N where to train: auto picks a real GPU, else the CPU (default auto)
  --save PATH                 write a checkpoint (safetensors) to PATH after every epoch
  --resume PATH               continue the run saved in PATH up to --epochs in total
                              (network, rule, optimizer and batch come from the file;
                              a flag asking for others is an error)";

struct Args {
    /// A built-in learner's name (see `plasticity::learner::catalogue`).
    rule: String,
    model: String,
    hidden: Vec<usize>,
    activation: Activation,
    epochs: usize,
    batch: usize,
    lr: Option<f32>,
    lr_decay: f32,
    optimizer: String,
    momentum: f32,
    weight_decay: f32,
    feedback: FeedbackInit,
    shared_conv_feedback: bool,
    init: Option<WeightInit>,
    seed: u64,
    /// `--settings`: the learner's own settings as key/value pairs.
    settings: Vec<(String, String)>,
    train_limit: Option<usize>,
    dataset: DatasetKind,
    data: Option<String>,
    device: String,
    save: Option<String>,
    resume: Option<String>,
    /// The flags given on the command line (the others keep their defaults).
    given: Vec<String>,
}

impl Args {
    fn parse() -> Result<Args> {
        Args::from_pairs(common::flag_pairs(USAGE)?)
    }

    /// The options from `--flag value` pairs, each value parsed; [`Args::check`]
    /// checks how they combine.
    fn from_pairs(pairs: Vec<(String, String)>) -> Result<Args> {
        let mut args = Args {
            rule: Rule::DirectFeedbackAlignment.name().into(),
            model: "mlp".into(),
            hidden: vec![800, 800],
            activation: Activation::Tanh,
            epochs: 20,
            batch: 64,
            lr: None,
            lr_decay: 0.8,
            optimizer: "adam".into(),
            momentum: 0.9,
            weight_decay: 0.0,
            feedback: FeedbackInit::Uniform,
            shared_conv_feedback: false,
            init: None,
            seed: 1,
            settings: Vec::new(),
            train_limit: None,
            dataset: DatasetKind::Mnist,
            data: None,
            device: "auto".into(),
            save: None,
            resume: None,
            given: Vec::new(),
        };
        for (flag, value) in pairs {
            args.given.push(flag.clone());
            match flag.as_str() {
                "--rule" => {
                    // The learner's own short name (`backprop` becomes `bp`).
                    args.rule = learner::builtin(&value, &TrainConfig::default())
                        .map_err(|e| bad(&e.to_string()))?
                        .name()
                }
                "--model" => match value.as_str() {
                    "mlp" | "lenet" => args.model = value,
                    _ => return Err(bad(&format!("unknown model {value}: mlp or lenet"))),
                },
                "--hidden" => args.hidden = parse_list(&value)?,
                "--activation" => {
                    args.activation = Activation::from_name(&value)
                        .ok_or_else(|| bad(&format!("unknown activation {value}")))?
                }
                "--epochs" => args.epochs = parse(&flag, &value)?,
                "--batch" => args.batch = parse(&flag, &value)?,
                "--lr" => args.lr = Some(parse(&flag, &value)?),
                "--lr-decay" => args.lr_decay = parse(&flag, &value)?,
                "--optimizer" => args.optimizer = value,
                "--momentum" => args.momentum = parse(&flag, &value)?,
                "--weight-decay" => args.weight_decay = parse(&flag, &value)?,
                "--feedback" => {
                    args.feedback = FeedbackInit::from_name(&value)
                        .ok_or_else(|| bad(&format!("unknown feedback init {value}")))?
                }
                "--conv-feedback" => {
                    args.shared_conv_feedback = match value.as_str() {
                        "unit" => false,
                        "shared" => true,
                        _ => {
                            return Err(bad(&format!(
                                "unknown conv feedback {value}: unit or shared"
                            )))
                        }
                    }
                }
                "--init" => {
                    args.init = Some(match value.as_str() {
                        "xavier" => WeightInit::Xavier,
                        "kaiming" => WeightInit::Kaiming,
                        _ => return Err(bad(&format!("unknown init {value}"))),
                    })
                }
                "--seed" => args.seed = parse(&flag, &value)?,
                "--settings" => args.settings = common::parse_settings(USAGE, &value)?,
                "--train-limit" => args.train_limit = Some(parse(&flag, &value)?),
                "--data" => args.data = Some(value),
                "--dataset" => args.dataset = DatasetKind::from_name(&value)?,
                "--device" => args.device = value,
                "--save" => args.save = Some(value),
                "--resume" => args.resume = Some(value),
                _ => return Err(bad(&format!("unknown option {flag}"))),
            }
        }
        Ok(args)
    }

    /// Everything that can be checked before any data is loaded or any epoch trained:
    /// the hyperparameters (and the rates `--lr-decay` leads to over `--epochs`) and
    /// that `--save` can be written. Training for an epoch to learn that a flag was
    /// bad wastes the epoch.
    fn check(&self) -> Result<()> {
        self.train_config()?.validate()?;
        if !(self.lr_decay.is_finite() && self.lr_decay > 0.0) {
            return Err(bad(&format!(
                "--lr-decay must be a finite number > 0 (1 keeps the rate), got {}",
                self.lr_decay
            )));
        }
        if self.resume.is_none() {
            check_decayed_rates(self.optimizer()?, self.lr_decay, self.epochs as u64)?;
        }
        if let Some(path) = &self.save {
            common::check_writable("--save", Path::new(path))?;
        }
        Ok(())
    }

    fn given(&self, flag: &str) -> bool {
        self.given.iter().any(|f| f == flag)
    }

    /// With `--resume` the file decides the network, rule and optimizer. A flag that
    /// asks for something else is an error naming what the file holds, instead of
    /// being silently ignored; a flag that agrees with the file is fine.
    fn check_resume(&self, path: &str, trainer: &mut Trainer) -> Result<()> {
        let c = *trainer.config();
        let layers = trainer.layers().to_vec();
        let hidden: Vec<usize> = layers[..layers.len() - 1]
            .iter()
            .map(|l| l.outputs())
            .collect();
        let seed = trainer.network()?.seed();
        let theirs = c.optimizer;
        let ours = self.optimizer().ok();
        let mut conflicts = Vec::new();
        let mut differs = |flag: &str, ours: String, theirs: String| {
            if self.given(flag) && ours != theirs {
                conflicts.push(format!("{flag} {ours} (the file has {theirs})"));
            }
        };
        differs("--rule", self.rule.clone(), trainer.learner_name());
        let model = if layers.iter().all(|l| l.has_weights()) {
            "mlp"
        } else {
            "lenet"
        };
        differs("--model", self.model.clone(), model.into());
        let conv = |shared: bool| if shared { "shared" } else { "unit" }.to_string();
        differs(
            "--conv-feedback",
            conv(self.shared_conv_feedback),
            conv(c.shared_conv_feedback),
        );
        differs("--hidden", list(&self.hidden), list(&hidden));
        differs(
            "--activation",
            self.activation.to_string(),
            layers[0].activation().to_string(),
        );
        let kind = |o: &Optimizer| match o {
            Optimizer::Sgd { .. } => "sgd",
            Optimizer::Adam { .. } => "adam",
        };
        differs("--optimizer", self.optimizer.clone(), kind(&theirs).into());
        differs("--batch", self.batch.to_string(), c.batch_size.to_string());
        let lr = |o: Option<Optimizer>| o.map_or("?".into(), |o| o.lr().to_string());
        differs("--lr", lr(ours), lr(Some(theirs)));
        if let (Some(Optimizer::Sgd { momentum, .. }), Optimizer::Sgd { momentum: m, .. }) =
            (ours, theirs)
        {
            differs("--momentum", momentum.to_string(), m.to_string());
        }
        let decay = |o: Optimizer| match o {
            Optimizer::Sgd { weight_decay, .. } | Optimizer::Adam { weight_decay, .. } => {
                weight_decay.to_string()
            }
        };
        if let Some(ours) = ours {
            differs("--weight-decay", decay(ours), decay(theirs));
        }
        differs(
            "--feedback",
            self.feedback.name().into(),
            c.feedback_init.name().into(),
        );
        differs("--seed", self.seed.to_string(), seed.to_string());
        if self.given("--init") {
            conflicts.push("--init (the file holds trained weights)".into());
        }
        if conflicts.is_empty() {
            return Ok(());
        }
        Err(bad(&format!(
            "--resume {path} continues the network, rule and optimizer saved there, but {}; \
             drop those flags, or start a new run without --resume",
            conflicts.join(", ")
        )))
    }

    /// The run's training configuration.
    fn train_config(&self) -> Result<TrainConfig> {
        Ok(TrainConfig {
            rule: Rule::from_name(&self.rule).unwrap_or_default(),
            optimizer: self.optimizer()?,
            batch_size: self.batch,
            feedback_init: self.feedback,
            shared_conv_feedback: self.shared_conv_feedback,
            ..TrainConfig::default()
        })
    }

    /// The defaults reach the README's accuracies with every rule.
    fn optimizer(&self) -> Result<Optimizer> {
        match self.optimizer.as_str() {
            "adam" => Ok(Optimizer::Adam {
                lr: self.lr.unwrap_or(1e-3),
                beta1: 0.9,
                beta2: 0.999,
                eps: 1e-8,
                weight_decay: self.weight_decay,
            }),
            "sgd" => Ok(Optimizer::Sgd {
                lr: self.lr.unwrap_or(0.01),
                momentum: self.momentum,
                weight_decay: self.weight_decay,
                nesterov: false,
            }),
            other => Err(bad(&format!("unknown optimizer {other}"))),
        }
    }
}

fn bad(msg: &str) -> Error {
    common::bad(USAGE, msg)
}

fn parse<T: std::str::FromStr>(flag: &str, value: &str) -> Result<T> {
    common::parse(USAGE, flag, value)
}

fn list(widths: &[usize]) -> String {
    let widths: Vec<String> = widths.iter().map(usize::to_string).collect();
    widths.join(",")
}

/// Checks the learning rate stays usable (finite, > 0) through `epochs` decays by
/// `decay`, in the f32 steps the run takes: a rate that underflows to 0 or overflows
/// would stop the run after an epoch.
fn check_decayed_rates(optimizer: Optimizer, decay: f32, epochs: u64) -> Result<()> {
    let mut o = optimizer;
    for epoch in 1..=epochs {
        o = o.with_lr(o.lr() * decay);
        o.validate().map_err(|e| {
            bad(&format!(
                "--lr-decay {decay} from --lr {} leaves no usable rate after epoch {epoch} ({e})",
                optimizer.lr()
            ))
        })?;
    }
    Ok(())
}

/// A progress bar for one epoch of `batches` steps, empty at first.
fn epoch_bar(style: &ProgressStyle, epoch: u64, batches: usize) -> ProgressBar {
    let bar = ProgressBar::new(batches as u64).with_style(style.clone());
    bar.set_prefix(epoch.to_string());
    bar
}

fn parse_list(value: &str) -> Result<Vec<usize>> {
    value
        .split(',')
        .filter(|s| !s.is_empty())
        .map(|s| parse("--hidden", s.trim()))
        .collect()
}

fn main() -> std::process::ExitCode {
    common::main_with(run)
}

fn run() -> Result<()> {
    let args = Args::parse()?;
    args.check()?;
    // Before loading anything: probes adapters only for `auto`.
    let device = Device::from_name(&args.device)?;
    let dir = match &args.data {
        Some(dir) => dir.into(),
        None => args.dataset.default_dir()?,
    };
    let (train, test) = args.dataset.load(&dir)?;
    let train = match args.train_limit {
        Some(n) => train.take(n)?,
        None => train,
    };

    let init = args.init.unwrap_or(match args.activation {
        Activation::Relu | Activation::LeakyRelu => WeightInit::Kaiming,
        _ => WeightInit::Xavier,
    });
    let net = match args.model.as_str() {
        "lenet" => {
            let (c, h, w) = args.dataset.input_shape();
            models::lenet5(Shape::image(c, h, w), train.classes())?
        }
        .init(args.init.unwrap_or(WeightInit::Kaiming)),
        _ => Network::builder(train.dim())
            .hidden(&args.hidden, args.activation)
            .dense(train.classes(), Activation::Identity)
            .init(init),
    }
    .seed(args.seed)
    .build()?;
    let config = args.train_config()?;
    let mut trainer = match &args.resume {
        Some(path) => {
            let mut t = Trainer::load_checkpoint(path, device)?;
            args.check_resume(path, &mut t)?;
            let left = (args.epochs as u64).saturating_sub(t.epochs());
            check_decayed_rates(t.config().optimizer, args.lr_decay, left)?;
            println!(
                "resumed {path} at epoch {} (step {}); network, rule and optimizer from the file",
                t.epochs(),
                t.steps()
            );
            t
        }
        None => {
            let mut learner = learner::builtin(&args.rule, &config)?;
            common::apply_settings(USAGE, &mut *learner, &args.settings)?;
            Trainer::with_learner(net, config, learner, device)?
        }
    };
    let config = *trainer.config();
    let net = if trainer.layers().iter().any(|l| !l.has_weights()) {
        let layers: Vec<String> = trainer.layers().iter().map(|l| l.to_string()).collect();
        format!("[{}]", layers.join(", "))
    } else {
        let widths: Vec<String> = std::iter::once(train.dim())
            .chain(trainer.layers().iter().map(|l| l.outputs()))
            .map(|w| w.to_string())
            .collect();
        format!("{} {}", widths.join("-"), trainer.layers()[0].activation())
    };
    println!(
        "rule {} | net {} | {} | batch {} | seed {} | {} train / {} test images | device {}",
        trainer.learner_name(),
        net,
        config.optimizer,
        config.batch_size,
        args.seed,
        train.len(),
        test.len(),
        trainer.device_name()
    );

    if trainer.work_counters().is_some() {
        for (name, set) in [("training", &train), ("test", &test)] {
            match trainer.store_data(set)? {
                Residency::Device { bytes, byte_codes } => println!(
                    "{name} set stored on the device: {:.1} MB{}",
                    bytes as f64 / 1e6,
                    if byte_codes { " (byte codes)" } else { "" }
                ),
                Residency::PerBatch(why) => {
                    println!("{name} set uploaded per batch: {why}")
                }
                Residency::Host => {}
            }
        }
        println!("{} steps per submit", trainer.steps_per_submit());
    }

    let style = ProgressStyle::with_template(
        "epoch {prefix:>3} [{bar:40}] {pos}/{len} batches {elapsed_precise} eta {eta}",
    )
    .map_err(|e| Error::InvalidConfig(e.to_string()))?
    .progress_chars("=> ");
    let mut last = None;
    let batches = train.len().div_ceil(config.batch_size);
    for epoch in trainer.epochs() + 1..=args.epochs as u64 {
        let bar = epoch_bar(&style, epoch, batches);
        let start = Instant::now();
        let counted = trainer.work_counters();
        let stats = trainer.train_epoch(&train, |done, total| {
            bar.set_length(total as u64);
            bar.set_position(done as u64);
        })?;
        let seconds = start.elapsed().as_secs_f64();
        let work = trainer.work_counters().zip(counted).map(|(a, b)| a - b);
        bar.finish_and_clear();
        let eval = trainer.evaluate(&test)?;
        println!(
            "epoch {epoch:>3}  loss {:.4}  train acc {:6.2}%  test acc {:6.2}%  {seconds:7.3}s",
            stats.loss,
            100.0 * stats.accuracy,
            100.0 * eval.accuracy
        );
        if let Some(w) = work {
            println!(
                "           {} submits, {} dispatches, {:.1} KB uploaded, {} B read back",
                w.submits,
                w.dispatches,
                w.bytes_uploaded as f64 / 1e3,
                w.bytes_read_back
            );
            if w.bytes_aliased > 0 {
                // Operands bound as copies (see `WorkCounters::bytes_aliased`).
                println!(
                    "           {:.1} KB copied to bind operands apart",
                    w.bytes_aliased as f64 / 1e3
                );
            }
        }
        last = Some(eval);
        let optimizer = trainer.config().optimizer;
        trainer.set_optimizer(optimizer.with_lr(optimizer.lr() * args.lr_decay))?;
        // After the decay, so a resumed run starts its next epoch with the right rate.
        if let Some(path) = &args.save {
            trainer.save_checkpoint(path)?;
        }
    }
    let eval = match last {
        Some(e) => e,
        None => trainer.evaluate(&test)?,
    };
    println!("test accuracy: {:.2}%", 100.0 * eval.accuracy);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(pairs: &[(&str, &str)]) -> Args {
        let pairs = pairs
            .iter()
            .map(|(f, v)| (f.to_string(), v.to_string()))
            .collect();
        Args::from_pairs(pairs).expect("flags parse")
    }

    /// The error's first line (the usage text follows it).
    fn message(r: Result<()>) -> String {
        let text = r.expect_err("must be rejected").to_string();
        text.lines().next().unwrap_or_default().to_string()
    }

    #[test]
    fn a_learning_rate_decay_that_cannot_work_is_rejected_before_training() {
        for decay in ["0", "nan", "inf", "-0.5"] {
            let text = message(args(&[("--lr-decay", decay)]).check());
            assert!(text.contains("--lr-decay"), "{decay}: {text}");
        }
        // Fine for one epoch, underflows to 0 before the 20th.
        let text = message(args(&[("--lr-decay", "1e-10")]).check());
        assert!(text.contains("after epoch"), "{text}");
        assert!(args(&[("--lr-decay", "1e-10"), ("--epochs", "1")])
            .check()
            .is_ok());
        assert!(args(&[]).check().is_ok(), "the defaults");
    }

    #[test]
    fn other_bad_hyperparameters_are_rejected_before_training() {
        for (flag, value) in [("--lr", "0"), ("--momentum", "1"), ("--batch", "0")] {
            let a = args(&[(flag, value), ("--optimizer", "sgd")]);
            assert!(a.check().is_err(), "{flag} {value}");
        }
    }

    #[test]
    fn an_unwritable_save_path_is_rejected_before_training() {
        let dir = std::env::temp_dir().join(format!("mnist-save-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let missing = dir.join("no-such-folder").join("run.safetensors");
        let as_dir = dir.to_string_lossy().into_owned();
        for path in [missing.to_string_lossy().into_owned(), as_dir] {
            let err = args(&[("--save", &path)]).check().unwrap_err();
            assert!(matches!(err, Error::Write { .. }), "{path}: {err}");
        }
        let ok = dir.join("run.safetensors");
        args(&[("--save", &ok.to_string_lossy())]).check().unwrap();
        let left: Vec<_> = std::fs::read_dir(&dir).unwrap().collect();
        assert!(left.is_empty(), "the probe stays behind: {left:?}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn resume_flags_that_differ_from_the_file_are_named() {
        let net = Network::builder(6)
            .hidden(&[8], Activation::Tanh)
            .dense(3, Activation::Identity)
            .seed(1)
            .build()
            .unwrap();
        let config = TrainConfig {
            rule: Rule::DirectFeedbackAlignment,
            optimizer: Optimizer::adam(1e-3),
            batch_size: 64,
            ..TrainConfig::default()
        };
        let mut t = Trainer::new(net, config, Device::Cpu).unwrap();
        let text = message(
            args(&[("--rule", "fa"), ("--hidden", "16,16"), ("--batch", "64")])
                .check_resume("run.safetensors", &mut t),
        );
        for needle in [
            "--rule fa (the file has dfa)",
            "--hidden 16,16 (the file has 8)",
        ] {
            assert!(text.contains(needle), "{text:?} lacks {needle:?}");
        }
        assert!(!text.contains("--batch"), "{text}");
        let text =
            message(args(&[("--lr", "0.01"), ("--init", "xavier")]).check_resume("f", &mut t));
        assert!(
            text.contains("--lr 0.01 (the file has 0.001)") && text.contains("--init"),
            "{text}"
        );
        // Flags that agree with the file, and no flags at all, are fine.
        let agree = [
            ("--rule", "dfa"),
            ("--hidden", "8"),
            ("--optimizer", "adam"),
            ("--seed", "1"),
        ];
        args(&agree).check_resume("f", &mut t).unwrap();
        args(&[]).check_resume("f", &mut t).unwrap();
    }

    #[test]
    fn every_built_in_learner_is_in_the_usage_and_parses() {
        for name in learner::catalogue::names() {
            assert!(USAGE.contains(name), "--help does not list {name}");
            assert_eq!(args(&[("--rule", name)]).rule, name);
        }
        assert_eq!(args(&[("--rule", "backprop")]).rule, "bp");
    }

    #[test]
    fn the_progress_bar_starts_empty_at_the_epochs_batch_count() {
        let style = ProgressStyle::default_bar();
        let bar = epoch_bar(&style, 1, 938);
        assert_eq!(bar.length(), Some(938));
        assert_eq!(bar.position(), 0);
        assert_eq!(bar.prefix(), "1");
    }
}
