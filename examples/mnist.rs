//! Train a multilayer perceptron on MNIST with backprop, feedback alignment or direct
//! feedback alignment, and report accuracy on the 10,000 test images.
//!
//! ```text
//! cargo run --release --example mnist -- --rule dfa --hidden 800,800 --activation tanh \
//!     --epochs 20 --batch 64 --lr 0.001 --lr-decay 0.8 --optimizer adam --seed 1
//! ```
//! Run with `--help` for every option and its default.

use std::time::Instant;

use indicatif::{ProgressBar, ProgressStyle};
use plasticity::data::Mnist;
use plasticity::layer::Shape;
use plasticity::{
    models, Activation, Device, Error, FeedbackInit, Network, Optimizer, Result, Rule, TrainConfig,
    Trainer, WeightInit,
};

mod common;

const USAGE: &str = "\
usage: mnist [options]
  --rule bp|fa|dfa|ifa|usf|brsf|frsf|drtp|last   learning rule    (default dfa)
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
  --feedback uniform|gaussian|unit-uniform  feedback matrix init  (default uniform)
  --conv-feedback unit|shared DFA/DRTP feedback to conv layers: per unit (C*H*W x outputs,
                              Nokland 2016), or per channel shared across positions (default unit)
  --init xavier|kaiming       weight init                         (default: kaiming for relu, else xavier)
  --seed S                    seed of every random draw           (default 1)
  --train-limit N             use only the first N training images (default all)
  --data DIR                  MNIST directory                     (default: bundled data/mnist)
  --device auto|cpu|gpu|gpu:N where to train: auto picks a real GPU, else the CPU (default auto)
  --save PATH                 write a checkpoint (safetensors) to PATH after every epoch
  --resume PATH               continue the run saved in PATH up to --epochs in total
                              (network, rule, optimizer and batch come from the file)";

struct Args {
    rule: Rule,
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
    train_limit: Option<usize>,
    data: Option<String>,
    device: String,
    save: Option<String>,
    resume: Option<String>,
}

impl Args {
    fn parse() -> Result<Args> {
        let mut args = Args {
            rule: Rule::DirectFeedbackAlignment,
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
            train_limit: None,
            data: None,
            device: "auto".into(),
            save: None,
            resume: None,
        };
        for (flag, value) in common::flag_pairs(USAGE)? {
            match flag.as_str() {
                "--rule" => {
                    args.rule = Rule::from_name(&value)
                        .ok_or_else(|| bad(&format!("unknown rule {value}")))?
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
                "--train-limit" => args.train_limit = Some(parse(&flag, &value)?),
                "--data" => args.data = Some(value),
                "--device" => args.device = value,
                "--save" => args.save = Some(value),
                "--resume" => args.resume = Some(value),
                _ => return Err(bad(&format!("unknown option {flag}"))),
            }
        }
        Ok(args)
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
    let dir = args
        .data
        .clone()
        .map(Into::into)
        .unwrap_or_else(Mnist::bundled_dir);
    let mnist = Mnist::load(&dir)?;
    let train = match args.train_limit {
        Some(n) => mnist.train.take(n)?,
        None => mnist.train,
    };
    let test = mnist.test;

    let init = args.init.unwrap_or(match args.activation {
        Activation::Relu | Activation::LeakyRelu => WeightInit::Kaiming,
        _ => WeightInit::Xavier,
    });
    let net = match args.model.as_str() {
        "lenet" => models::lenet5(Shape::image(1, 28, 28), train.classes())?
            .init(args.init.unwrap_or(WeightInit::Kaiming)),
        _ => Network::builder(train.dim())
            .hidden(&args.hidden, args.activation)
            .dense(train.classes(), Activation::Identity)
            .init(init),
    }
    .seed(args.seed)
    .build()?;
    let config = TrainConfig {
        rule: args.rule,
        optimizer: args.optimizer()?,
        batch_size: args.batch,
        feedback_init: args.feedback,
        shared_conv_feedback: args.shared_conv_feedback,
        ..TrainConfig::default()
    };
    let device = Device::from_name(&args.device)?;
    let mut trainer = match &args.resume {
        Some(path) => {
            let t = Trainer::load_checkpoint(path, device)?;
            println!(
                "resumed {path} at epoch {} (step {}); network, rule and optimizer from the file",
                t.epochs(),
                t.steps()
            );
            t
        }
        None => Trainer::new(net, config, device)?,
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
        config.rule,
        net,
        config.optimizer,
        config.batch_size,
        args.seed,
        train.len(),
        test.len(),
        trainer.device_name()
    );

    let style = ProgressStyle::with_template(
        "epoch {prefix:>3} [{bar:40}] {pos}/{len} batches {elapsed_precise} eta {eta}",
    )
    .map_err(|e| Error::InvalidConfig(e.to_string()))?
    .progress_chars("=> ");
    let mut last = None;
    for epoch in trainer.epochs() + 1..=args.epochs as u64 {
        let bar = ProgressBar::new(0).with_style(style.clone());
        bar.set_prefix(epoch.to_string());
        let start = Instant::now();
        let stats = trainer.train_epoch(&train, |done, total| {
            bar.set_length(total as u64);
            bar.set_position(done as u64);
        })?;
        let seconds = start.elapsed().as_secs_f64();
        bar.finish_and_clear();
        let eval = trainer.evaluate(&test)?;
        println!(
            "epoch {epoch:>3}  loss {:.4}  train acc {:6.2}%  test acc {:6.2}%  {seconds:6.2}s",
            stats.loss,
            100.0 * stats.accuracy,
            100.0 * eval.accuracy
        );
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
