//! Bad input and bad training runs end in errors, never in panics or silent garbage:
//! non-finite data, divergence, shape and class mismatches, bad batches, bad feedback
//! matrices and bad hyperparameters.

mod common;

use common::{build_net, random_dataset};
use plasticity::data::Dataset;
use plasticity::{Activation, Device, Error, Loss, Network, Optimizer, Rule, TrainConfig, Trainer};

fn net() -> Network {
    build_net(5, &[7, 4], Activation::Tanh, 3, Activation::Identity, 1)
}

fn config(rule: Rule, optimizer: Optimizer, batch_size: usize) -> TrainConfig {
    TrainConfig {
        rule,
        optimizer,
        batch_size,
        ..TrainConfig::default()
    }
}

fn trainer_with(net: Network, config: TrainConfig) -> Trainer {
    Trainer::new(net, config, Device::Cpu).expect("trainer")
}

fn trainer(rule: Rule) -> Trainer {
    trainer_with(net(), config(rule, Optimizer::sgd(0.1), 4))
}

/// The parameters, which must still be readable (finite).
fn params(t: &mut Trainer) -> Vec<f32> {
    t.network().expect("finite parameters").params().to_vec()
}

// ---------------------------------------------------------------------------------
// non-finite input

#[test]
fn a_dataset_with_nan_or_infinity_cannot_be_built() {
    for bad in [f32::NAN, f32::INFINITY, f32::NEG_INFINITY] {
        let mut x = vec![0.5f32; 12];
        x[7] = bad;
        match Dataset::new(x, vec![0, 1, 2], 4, 3) {
            Err(Error::NonFinite { index, .. }) => assert_eq!(index, 7),
            other => panic!("{bad} in the features gave {other:?}"),
        }
    }
}

#[test]
fn train_step_with_nan_input_is_rejected_and_changes_nothing() {
    for rule in Rule::ALL {
        let mut t = trainer(rule);
        let before = params(&mut t);
        let mut x = vec![0.1f32; 2 * 5];
        x[6] = f32::NAN;
        let err = t.train_step(&x, &[0, 2]).unwrap_err();
        assert!(matches!(err, Error::NonFinite { .. }), "{rule}: {err:?}");
        assert_eq!(t.steps(), 0, "{rule}");
        assert_eq!(params(&mut t), before, "{rule}");
        // The same batch without the NaN trains.
        x[6] = 0.3;
        t.train_step(&x, &[0, 2]).unwrap();
        assert_eq!(t.steps(), 1);
    }
}

#[test]
fn train_step_rejects_bad_labels_and_lengths() {
    let mut t = trainer(Rule::Backprop);
    let x = vec![0.1f32; 2 * 5];
    assert!(matches!(
        t.train_step(&x, &[0, 3]),
        Err(Error::LabelOutOfRange { index: 1, .. })
    ));
    assert!(matches!(
        t.train_step(&x[..9], &[0, 1]),
        Err(Error::ShapeMismatch { .. })
    ));
    assert!(matches!(
        t.train_step(&[0.1; 5 * 5], &[0; 5]),
        Err(Error::ShapeMismatch { .. })
    ));
    assert!(t.train_step(&[], &[]).is_err());
    assert_eq!(t.steps(), 0);
}

#[test]
fn set_params_rejects_non_finite_values_but_accepts_huge_ones() {
    let mut n = net();
    let mut values = n.params().to_vec();
    values[3] = f32::NAN;
    assert!(matches!(
        n.set_params(&values),
        Err(Error::NonFinite { index: 3, .. })
    ));
    values[3] = 1e30;
    n.set_params(&values).unwrap();
    assert_eq!(n.params()[3], 1e30);
}

// ---------------------------------------------------------------------------------
// divergence

#[test]
fn a_huge_learning_rate_ends_in_diverged_not_ok() {
    let data = random_dataset(32, 5, 3, 2);
    let batch: Vec<usize> = (0..8).collect();
    for rule in Rule::ALL {
        for loss in [Loss::SoftmaxCrossEntropy, Loss::MeanSquaredError] {
            if rule == Rule::LastLayerOnly && loss == Loss::SoftmaxCrossEntropy {
                // A linear softmax layer on frozen features has bounded gradients: its
                // weights grow by ~lr per step and stay finite for 10 steps.
                continue;
            }
            let cfg = TrainConfig {
                loss,
                ..config(rule, Optimizer::sgd(1e30), 8)
            };
            let mut t = trainer_with(
                build_net(5, &[7, 4], Activation::Relu, 3, Activation::Identity, 3),
                cfg,
            );
            let mut outcome = None;
            for _ in 0..10 {
                if let Err(e) = t.train_batch(&data, &batch) {
                    outcome = Some(e);
                    break;
                }
            }
            match outcome {
                Some(e @ Error::Diverged { step, value, .. }) => {
                    assert!(!value.is_finite(), "{rule} {loss}: Diverged with {value}");
                    assert!((1..=10).contains(&step), "{rule} {loss}: step {step}");
                    // The message says what to try.
                    let text = e.to_string();
                    assert!(
                        text.contains("smaller learning rate") && text.contains("grad_clip"),
                        "{text}"
                    );
                }
                other => panic!("{rule} {loss}: lr 1e30 gave {other:?} instead of Diverged"),
            }

            // A whole epoch from scratch diverges too.
            let mut t = trainer_with(
                build_net(5, &[7, 4], Activation::Relu, 3, Activation::Identity, 3),
                cfg,
            );
            let result = t.train_epoch(&data, |_, _| {});
            assert!(
                matches!(result, Err(Error::Diverged { .. })),
                "{rule} {loss}: epoch gave {result:?}"
            );
        }
    }
}

#[test]
fn overflowing_weights_are_reported_as_diverged_at_once() {
    // Weights of 1e30 are finite (accepted) but the logits overflow: the very first
    // step must report divergence, and so must an evaluation.
    let data = random_dataset(16, 5, 3, 4);
    for rule in Rule::ALL {
        for loss in [Loss::SoftmaxCrossEntropy, Loss::MeanSquaredError] {
            let mut n = build_net(5, &[7, 4], Activation::Identity, 3, Activation::Identity, 5);
            n.set_params(&vec![1e30; n.params().len()]).unwrap();
            let cfg = TrainConfig {
                loss,
                ..config(rule, Optimizer::adam(1e-3), 8)
            };
            let mut t = trainer_with(n.clone(), cfg);
            let err = t.evaluate(&data).unwrap_err();
            assert!(
                matches!(err, Error::Diverged { .. }),
                "{rule} {loss}: {err:?}"
            );
            let err = t.train_batch(&data, &[0, 1, 2]).unwrap_err();
            assert!(
                matches!(err, Error::Diverged { step: 1, .. }),
                "{rule} {loss}: {err:?}"
            );
            let mut t = trainer_with(n, cfg);
            let err = t.train_epoch(&data, |_, _| {}).unwrap_err();
            assert!(
                matches!(err, Error::Diverged { .. }),
                "{rule} {loss}: {err:?}"
            );
        }
    }
}

#[test]
fn a_step_that_makes_the_parameters_non_finite_is_not_ok() {
    // Large but finite weights (1e3) give a large but finite MSE loss (~1e12) whose
    // gradient (~1e9) times lr 1e30 overflows f32: the step itself turns parameters
    // into infinities. `Error::Diverged` is documented as "the loss (or a parameter)
    // became NaN or infinite"; returning Ok(()) here leaves a trainer whose
    // `network()` can no longer be read back.
    let data = random_dataset(8, 5, 3, 6);
    let all: Vec<usize> = (0..8).collect();
    for rule in Rule::ALL {
        let mut n = build_net(5, &[7], Activation::Identity, 3, Activation::Identity, 7);
        common::randomize_params(&mut n, 1e3, 8);
        let cfg = TrainConfig {
            loss: Loss::MeanSquaredError,
            ..config(rule, Optimizer::sgd(1e30), 8)
        };
        let mut t = trainer_with(n.clone(), cfg);
        let step = t.train_batch(&data, &all);
        let readable = t.network();
        assert!(
            step.is_err() || readable.is_ok(),
            "{rule}: train_batch returned Ok(()) but left non-finite parameters: \
             network() = {:?}",
            readable.err()
        );
        // Same through train_epoch (one batch per epoch).
        let mut t = trainer_with(n, cfg);
        let epoch = t.train_epoch(&data, |_, _| {});
        let readable = t.network();
        assert!(
            epoch.is_err() || readable.is_ok(),
            "{rule}: train_epoch returned {epoch:?} but left non-finite parameters: \
             network() = {:?}",
            readable.err()
        );
    }
}

// ---------------------------------------------------------------------------------
// shapes and batches

#[test]
fn data_with_the_wrong_feature_count_is_a_shape_mismatch() {
    let data = random_dataset(8, 4, 3, 9); // the network wants 5 features
    for rule in Rule::ALL {
        let mut t = trainer(rule);
        let before = params(&mut t);
        let is_shape = |r: Result<(), Error>| matches!(r, Err(Error::ShapeMismatch { .. }));
        assert!(is_shape(t.train_batch(&data, &[0, 1])), "{rule}");
        assert!(
            is_shape(t.train_epoch(&data, |_, _| {}).map(|_| ())),
            "{rule}"
        );
        assert!(is_shape(t.evaluate(&data).map(|_| ())), "{rule}");
        assert!(
            is_shape(t.update_direction(&data, &[0]).map(|_| ())),
            "{rule}"
        );
        assert!(is_shape(t.outputs(&data, &[0]).map(|_| ())), "{rule}");
        assert!(is_shape(t.train_step(&[0.0; 4], &[0])), "{rule}");
        assert_eq!(t.steps(), 0);
        assert_eq!(params(&mut t), before);
    }
}

#[test]
fn data_with_the_wrong_class_count_is_a_shape_mismatch() {
    for classes in [2, 4] {
        let data = random_dataset(8, 5, classes, 10); // the network has 3 outputs
        let mut t = trainer(Rule::DirectFeedbackAlignment);
        let is_shape = |r: Result<(), Error>| matches!(r, Err(Error::ShapeMismatch { .. }));
        assert!(is_shape(t.train_batch(&data, &[0, 1])), "{classes}");
        assert!(
            is_shape(t.train_epoch(&data, |_, _| {}).map(|_| ())),
            "{classes}"
        );
        assert!(is_shape(t.evaluate(&data).map(|_| ())), "{classes}");
        assert!(
            is_shape(t.update_direction(&data, &[0]).map(|_| ())),
            "{classes}"
        );
        assert_eq!(t.steps(), 0);
    }
}

#[test]
fn a_batch_larger_than_the_configured_batch_size_is_rejected() {
    let data = random_dataset(8, 5, 3, 11);
    for rule in Rule::ALL {
        let mut t = trainer(rule); // batch size 4
        let five = [0, 1, 2, 3, 4];
        assert!(
            matches!(
                t.train_batch(&data, &five),
                Err(Error::ShapeMismatch { .. })
            ),
            "{rule}"
        );
        assert!(t.update_direction(&data, &five).is_err(), "{rule}");
        assert!(t.train_step(&[0.1; 25], &[0; 5]).is_err(), "{rule}");
        assert_eq!(t.steps(), 0);
        // Exactly the batch size is fine, and evaluate/outputs chunk larger sets.
        t.train_batch(&data, &[0, 1, 2, 3]).unwrap();
        assert_eq!(t.evaluate(&data).unwrap().samples, 8);
        assert_eq!(t.outputs(&data, &[0, 1, 2, 3, 4, 5, 6]).unwrap().len(), 21);
    }
}

#[test]
fn an_empty_index_list_is_rejected() {
    let data = random_dataset(8, 5, 3, 12);
    for rule in Rule::ALL {
        let mut t = trainer(rule);
        assert!(
            matches!(t.train_batch(&data, &[]), Err(Error::EmptyData(_))),
            "{rule}"
        );
        assert!(t.update_direction(&data, &[]).is_err(), "{rule}");
        assert_eq!(t.steps(), 0);
    }
}

#[test]
fn an_out_of_range_sample_index_is_an_error_not_a_panic() {
    let data = random_dataset(8, 5, 3, 13);
    let mut t = trainer(Rule::FeedbackAlignment);
    let before = params(&mut t);
    assert!(t.train_batch(&data, &[0, 8]).is_err());
    assert!(t.update_direction(&data, &[usize::MAX]).is_err());
    assert_eq!(t.steps(), 0);
    assert_eq!(params(&mut t), before);
}

// ---------------------------------------------------------------------------------
// feedback matrices

#[test]
fn set_feedback_checks_length_finiteness_and_index() {
    for rule in [Rule::FeedbackAlignment, Rule::DirectFeedbackAlignment] {
        let mut t = trainer(rule);
        let shapes = t.feedback_shapes().to_vec();
        assert_eq!(shapes.len(), 2, "{rule}");
        let n = shapes[0].rows * shapes[0].cols;
        let before = t.feedback(0).unwrap();
        for len in [0, n - 1, n + 1] {
            assert!(
                matches!(
                    t.set_feedback(0, &vec![0.5; len]),
                    Err(Error::ShapeMismatch { .. })
                ),
                "{rule}: {len} values for a {n}-value matrix"
            );
        }
        let mut bad = vec![0.5; n];
        bad[n - 1] = f32::NAN;
        assert!(
            matches!(t.set_feedback(0, &bad), Err(Error::NonFinite { .. })),
            "{rule}"
        );
        assert_eq!(
            t.feedback(0).unwrap(),
            before,
            "{rule}: a rejected write landed"
        );
        assert!(
            matches!(t.set_feedback(2, &[0.5; 12]), Err(Error::InvalidConfig(_))),
            "{rule}"
        );
        assert!(t.feedback(2).is_err(), "{rule}");
        // The right length goes through and reads back.
        t.set_feedback(0, &vec![0.25; n]).unwrap();
        assert_eq!(t.feedback(0).unwrap(), vec![0.25; n]);
    }
    let mut bp = trainer(Rule::Backprop);
    assert!(matches!(
        bp.set_feedback(0, &[1.0]),
        Err(Error::InvalidConfig(_))
    ));
}

// ---------------------------------------------------------------------------------
// configuration

#[test]
fn invalid_optimizers_are_rejected_by_trainer_new() {
    let bad = [
        Optimizer::sgd(-0.1),
        Optimizer::sgd(0.0),
        Optimizer::sgd(f32::NAN),
        Optimizer::sgd(f32::INFINITY),
        Optimizer::momentum(0.1, 1.0),
        Optimizer::momentum(0.1, -0.5),
        Optimizer::adam(-1e-3),
        Optimizer::Adam {
            lr: 1e-3,
            beta1: 1.0,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: 0.0,
        },
        Optimizer::Adam {
            lr: 1e-3,
            beta1: 0.9,
            beta2: 0.999,
            eps: 0.0,
            weight_decay: 0.0,
        },
        Optimizer::Sgd {
            lr: 0.1,
            momentum: 0.0,
            weight_decay: -1.0,
            nesterov: false,
        },
    ];
    for optimizer in bad {
        for rule in Rule::ALL {
            let result = Trainer::new(net(), config(rule, optimizer, 4), Device::Cpu);
            assert!(
                matches!(result, Err(Error::InvalidConfig(_))),
                "{rule} with {optimizer:?} was accepted"
            );
        }
    }
}

#[test]
fn batch_size_zero_is_rejected() {
    for rule in Rule::ALL {
        let result = Trainer::new(net(), config(rule, Optimizer::sgd(0.1), 0), Device::Cpu);
        assert!(matches!(result, Err(Error::InvalidConfig(_))), "{rule}");
    }
}

#[test]
fn set_optimizer_validates_and_keeps_the_kind() {
    let mut t = trainer_with(net(), config(Rule::Backprop, Optimizer::adam(1e-3), 4));
    assert!(t.set_optimizer(Optimizer::adam(-1.0)).is_err());
    assert!(t.set_optimizer(Optimizer::sgd(0.1)).is_err());
    t.set_optimizer(Optimizer::adam(5e-4)).unwrap();
    assert_eq!(t.config().optimizer.lr(), 5e-4);
}

// ---------------------------------------------------------------------------------
// sizes whose product overflows usize: typed errors, never `attempt to multiply with
// overflow`

fn is_overflow<T: std::fmt::Debug>(r: plasticity::Result<T>, what: &str) {
    match r {
        Err(Error::SizeOverflow { .. }) => {}
        other => panic!("{what}: expected SizeOverflow, got {other:?}"),
    }
}

#[test]
fn predict_with_a_sample_count_whose_size_overflows_is_an_error() {
    let mut t = trainer(Rule::Backprop);
    // 5 inputs: usize::MAX / 4 samples need more than usize::MAX values.
    for n in [usize::MAX / 4, usize::MAX] {
        is_overflow(t.predict(&[0.5; 10], n), &format!("predict n = {n}"));
    }
    // An honest mismatch is still a shape error naming the sizes.
    let err = t.predict(&[0.5; 9], 2).unwrap_err();
    assert!(
        err.to_string()
            .contains("2 samples x 5 features = 10 values"),
        "{err}"
    );
}

#[test]
fn networks_whose_parameter_count_overflows_are_errors() {
    let huge = 1usize << (usize::BITS / 2 + 1);
    is_overflow(
        Network::builder(huge).dense(huge, Activation::Tanh).build(),
        "one layer of huge x huge",
    );
    // Each layer fits, their sum does not.
    let half = usize::MAX / 2;
    is_overflow(
        Network::builder(1)
            .dense(half, Activation::Tanh)
            .dense(1, Activation::Identity)
            .dense(half, Activation::Identity)
            .build(),
        "layers summing past usize::MAX",
    );
}

#[test]
fn outputs_and_selections_of_overflowing_size_are_errors() {
    use plasticity::bench::StepShape;
    let huge = 1usize << (usize::BITS / 2 + 1);
    let shape = StepShape {
        width: huge,
        depth: 1,
        batch: huge,
    };
    is_overflow(shape.data(1, 0), "benchmark data");
    assert_eq!(shape.params(), usize::MAX, "params saturate");
    assert_eq!(shape.device_bytes(), u64::MAX, "device bytes saturate");
    is_overflow(
        shape.profile(Rule::Backprop),
        "dry-run profile of a huge net",
    );
}

#[test]
fn huge_regions_are_backend_errors_not_overflow_panics() {
    use plasticity::backend::{Backend, CpuBackend, Mat};
    let mut cpu = CpuBackend::new();
    let buf = cpu.alloc(8).unwrap();
    let huge = Mat::new(buf, 3, usize::MAX / 2, 3);
    assert_eq!(huge.len(), usize::MAX);
    assert!(matches!(cpu.fill(huge, 0.0), Err(Error::Backend(_))));
    assert!(matches!(
        cpu.read(buf, usize::MAX, 2),
        Err(Error::Backend(_))
    ));
    assert!(huge.rows(usize::MAX, 1).offset == usize::MAX);
}
