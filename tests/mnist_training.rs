//! Short end-to-end training runs on a bundled-MNIST subset, one per rule: each must
//! learn well above chance (10%) on held-out test images. Run with
//! `cargo test --test mnist_training -- --nocapture` to see the accuracies.
//!
//! Every run is seeded and the CPU backend is deterministic, so the accuracies are
//! reproducible; the floors sit several points below the measured values (stated next
//! to each) so that harmless numeric changes pass while a broken rule (chance level,
//! or a large regression) fails.

mod common;

use std::sync::OnceLock;
use std::time::Instant;

use plasticity::data::Dataset;
use plasticity::{
    Activation, Device, FeedbackInit, Loss, Network, Optimizer, Rule, TrainConfig, Trainer,
};

/// Training images used (the first ones of the training set).
const TRAIN_SAMPLES: usize = 3000;
/// Test images evaluated (the first ones of the test set).
const TEST_SAMPLES: usize = 2000;

struct Subset {
    train: Dataset,
    test: Dataset,
}

/// MNIST is decoded once (about a second) and shared by every test of this file.
fn mnist() -> &'static Subset {
    static DATA: OnceLock<Subset> = OnceLock::new();
    DATA.get_or_init(|| {
        let start = Instant::now();
        let mnist = common::mnist();
        let subset = Subset {
            train: mnist.train.take(TRAIN_SAMPLES).unwrap(),
            test: mnist.test.take(TEST_SAMPLES).unwrap(),
        };
        println!("loaded MNIST in {:.2?}", start.elapsed());
        subset
    })
}

struct Run {
    rule: Rule,
    hidden: &'static [usize],
    activation: Activation,
    optimizer: Optimizer,
    batch_size: usize,
    epochs: usize,
    seed: u64,
}

/// Trains on the training subset and returns the test accuracy.
fn train_and_test(run: &Run) -> f32 {
    let data = mnist();
    let start = Instant::now();
    let net = Network::builder(784)
        .hidden(run.hidden, run.activation)
        .dense(10, Activation::Identity)
        .seed(run.seed)
        .build()
        .unwrap();
    let config = TrainConfig {
        rule: run.rule,
        optimizer: run.optimizer,
        loss: Loss::SoftmaxCrossEntropy,
        batch_size: run.batch_size,
        feedback_init: FeedbackInit::Uniform,
        ..TrainConfig::default()
    };
    let mut trainer = Trainer::new(net, config, Device::Cpu).unwrap();
    let before = trainer.evaluate(&data.test).unwrap();
    let mut last = None;
    for _ in 0..run.epochs {
        last = Some(trainer.train_epoch(&data.train, |_, _| {}).unwrap());
    }
    let train = last.expect("at least one epoch");
    let test = trainer.evaluate(&data.test).unwrap();
    assert_eq!(test.samples, TEST_SAMPLES);
    println!(
        "{} 784-{:?}-10 {} {} batch {} x {} epochs: test accuracy {:.2}% \
         (before training {:.2}%), last epoch train accuracy {:.2}%, loss {:.4}, {:.2?}",
        run.rule,
        run.hidden,
        run.activation,
        run.optimizer,
        run.batch_size,
        run.epochs,
        100.0 * test.accuracy,
        100.0 * before.accuracy,
        100.0 * train.accuracy,
        test.loss,
        start.elapsed()
    );
    assert!(
        test.loss < before.loss,
        "{}: test loss did not drop",
        run.rule
    );
    test.accuracy
}

fn tanh_784_128_10(rule: Rule) -> Run {
    Run {
        rule,
        hidden: &[128],
        activation: Activation::Tanh,
        optimizer: Optimizer::adam(1e-3),
        batch_size: 32,
        epochs: 2,
        seed: 1,
    }
}

#[test]
fn backprop_learns_mnist() {
    let accuracy = train_and_test(&tanh_784_128_10(Rule::Backprop));
    // Measured: 85.65%. Floor 81%.
    assert!(accuracy >= 0.81, "BP test accuracy {accuracy}");
}

#[test]
fn feedback_alignment_learns_mnist() {
    let accuracy = train_and_test(&tanh_784_128_10(Rule::FeedbackAlignment));
    // Measured: 83.45%. Floor 79%.
    assert!(accuracy >= 0.79, "FA test accuracy {accuracy}");
}

#[test]
fn direct_feedback_alignment_learns_mnist() {
    let accuracy = train_and_test(&tanh_784_128_10(Rule::DirectFeedbackAlignment));
    // Measured: 83.25%. Floor 79%.
    assert!(accuracy >= 0.79, "DFA test accuracy {accuracy}");
}

#[test]
fn feedback_alignment_learns_mnist_with_a_small_relu_net() {
    // SGD with momentum, not Adam: with Adam (lr 1e-4 .. 3e-3) FA and DFA on this
    // narrow relu net do not learn within a few epochs (the loss rises above chance
    // while BP with the same settings reaches 85-88%), although their updates match
    // the FA/DFA formulas exactly at these sizes (tests/rules.rs). With momentum
    // 0.9, lr 0.01 FA reaches 75-79% in 3 epochs across seeds 1-3.
    let accuracy = train_and_test(&Run {
        rule: Rule::FeedbackAlignment,
        hidden: &[112, 16],
        activation: Activation::Relu,
        optimizer: Optimizer::momentum(0.01, 0.9),
        batch_size: 32,
        epochs: 3,
        seed: 1,
    });
    // Measured: 78.60% (seeds 2 and 3: 75.90%, 74.75%). Floor 73%.
    assert!(
        accuracy >= 0.73,
        "FA 784-112-16-10 test accuracy {accuracy}"
    );
}
