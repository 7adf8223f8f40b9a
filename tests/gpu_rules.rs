//! The rule catalogue on the GPU backend against the CPU backend: the sign-feedback
//! kernel on its own, whole training steps of every rule added after BP/FA/DFA, whole
//! steps of every rule through a conv net (conv, max and average pooling, flatten,
//! dense), and the alignment measurements.
//!
//! Runs on any wgpu adapter, software ones included (lavapipe in CI). Without an
//! adapter each test passes without checking anything and the binary writes one
//! `warning: GPU tests SKIPPED` line that plain `cargo test` shows (see
//! `common::gpu::skip`), unless `PLASTICITY_REQUIRE_GPU=1` makes it a failure.
//!
//! Tolerance as in `tests/gpu_training.rs`: `|gpu - cpu| <= 2e-6 + 1e-5 |cpu|` on
//! update directions and on parameters after 6 SGD-with-momentum steps (same f32
//! formulas, different summation orders; a wrong index or sign moves values by 1e-3 or
//! more). The sign-feedback kernel is exact: one product of exact factors per element.
//! Measured on lavapipe: at most 2.4e-7 on conv-net update directions and 4.8e-7 on its
//! parameters after the steps (DFA), at least 4x inside the bound.
// The whole file tests the GPU backend.
#![cfg(feature = "gpu")]

use plasticity::backend::{Backend, CpuBackend, Mat};
use plasticity::layer::{Conv2d, Pool2d, Shape};
use plasticity::{Activation, Error, Loss, Network, Optimizer, Rule, TrainConfig, Trainer};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

mod common;
use common::gpu::{gpu, step_parity, step_parity_from, Case, Parity};
use common::random_dataset;

/// Runs `sign_feedback` on a fresh backend: `w` and `m` at odd offsets in one buffer,
/// the output in another; returns the output.
fn sign_feedback_on(
    backend: &mut dyn Backend,
    w: &[f32],
    m: Option<&[f32]>,
    rows: usize,
    scale: f32,
) -> Vec<f32> {
    let n = w.len();
    let inputs = backend.alloc(3 + 2 * n).unwrap();
    let out = backend.alloc(5 + n).unwrap();
    backend.write(inputs, 3, w).unwrap();
    let w_mat = Mat::new(inputs, 3, rows, n / rows);
    let m_mat = m.map(|m| {
        backend.write(inputs, 3 + n, m).unwrap();
        Mat::new(inputs, 3 + n, rows, n / rows)
    });
    let out_mat = Mat::new(out, 5, rows, n / rows);
    backend.sign_feedback(out_mat, w_mat, m_mat, scale).unwrap();
    backend.read(out, 5, n).unwrap()
}

#[test]
fn sign_feedback_kernel_matches_the_cpu_exactly() {
    let mut r = ChaCha8Rng::seed_from_u64(1);
    // Large enough that the strided grid loops (4096 groups x 256 invocations < n).
    for (rows, cols) in [(3, 5), (37, 29), (1100, 1000)] {
        let n = rows * cols;
        let mut w: Vec<f32> = (0..n).map(|_| r.random_range(-1.0..1.0)).collect();
        w[0] = 0.0; // sign(0) = 0 on both backends
        w[1] = -0.0;
        let m: Vec<f32> = (0..n).map(|_| r.random_range(-2.0..2.0)).collect();
        for (mag, scale) in [(None, 0.25), (Some(&m[..]), 1.0), (Some(&m[..]), -3.0)] {
            let Some(mut g) = gpu() else { return };
            let c = sign_feedback_on(&mut CpuBackend::new(), &w, mag, rows, scale);
            let gv = sign_feedback_on(&mut g, &w, mag, rows, scale);
            assert_eq!(
                c,
                gv,
                "{rows}x{cols} magnitude {} scale {scale}",
                mag.is_some()
            );
            assert_eq!(c[0], 0.0);
            let expect = |i: usize| scale * mag.map_or(1.0, |m| m[i].abs()) * w[i].signum();
            assert_eq!(c[2], expect(2));
            assert_eq!(c[n - 1], expect(n - 1));
        }
    }
}

#[test]
fn sign_feedback_rejects_bad_regions_on_both_backends() {
    let Some(mut g) = gpu() else { return };
    let mut c = CpuBackend::new();
    for backend in [&mut c as &mut dyn Backend, &mut g] {
        let a = backend.alloc(12).unwrap();
        let b = backend.alloc(12).unwrap();
        // Shapes disagree.
        let err = backend
            .sign_feedback(Mat::new(a, 0, 3, 4), Mat::new(b, 0, 4, 3), None, 1.0)
            .unwrap_err();
        assert!(matches!(err, Error::ShapeMismatch { .. }), "{err:?}");
        // Out of range.
        assert!(backend
            .sign_feedback(Mat::new(a, 4, 3, 4), Mat::new(b, 0, 3, 4), None, 1.0)
            .is_err());
        // Output overlapping an input.
        assert!(backend
            .sign_feedback(
                Mat::new(a, 0, 3, 4),
                Mat::new(b, 0, 3, 4),
                Some(Mat::new(a, 0, 3, 4)),
                1.0
            )
            .is_err());
    }
}

#[test]
fn every_new_rule_matches_the_cpu_step_for_step() {
    let momentum = Optimizer::momentum(0.1, 0.9);
    let cases = [
        Case {
            rule: Rule::IndirectFeedbackAlignment,
            hidden: &[33, 17, 9],
            activation: Activation::Tanh,
            loss: Loss::SoftmaxCrossEntropy,
            optimizer: momentum,
        },
        Case {
            rule: Rule::UniformSignSymmetry,
            hidden: &[33, 17],
            activation: Activation::LeakyRelu,
            loss: Loss::SoftmaxCrossEntropy,
            optimizer: momentum,
        },
        Case {
            rule: Rule::BatchRandomSignSymmetry,
            hidden: &[33, 17],
            activation: Activation::Tanh,
            loss: Loss::SoftmaxCrossEntropy,
            optimizer: momentum,
        },
        Case {
            rule: Rule::FixedRandomSignSymmetry,
            hidden: &[20, 20],
            activation: Activation::Relu,
            loss: Loss::MeanSquaredError,
            optimizer: momentum,
        },
        Case {
            rule: Rule::DirectRandomTargetProjection,
            hidden: &[33, 17, 9],
            activation: Activation::Tanh,
            loss: Loss::SoftmaxCrossEntropy,
            optimizer: momentum,
        },
        Case {
            rule: Rule::LastLayerOnly,
            hidden: &[33, 17],
            activation: Activation::Sigmoid,
            loss: Loss::SoftmaxCrossEntropy,
            // Decay and momentum must not reach the frozen layers on the GPU either.
            optimizer: Optimizer::Sgd {
                lr: 0.1,
                momentum: 0.9,
                weight_decay: 0.05,
                nesterov: false,
            },
        },
    ];
    let batch = 16;
    let data = random_dataset(70, 21, 5, 5);
    for case in &cases {
        let Some(gpu) = gpu() else { return };
        let what = case.name();
        let Parity {
            gpu: mut gpu_t,
            start,
            worst_direction: worst_dir,
            worst_params: worst,
            ..
        } = step_parity(case, gpu, &data, batch);
        let pg = gpu_t.network().unwrap();
        assert_ne!(pg.params(), start.params(), "{what}: training did nothing");
        if case.rule == Rule::LastLayerOnly {
            for l in 0..case.hidden.len() {
                assert_eq!(pg.weights(l), start.weights(l), "{what}: W_{l} moved");
                assert_eq!(pg.bias(l), start.bias(l), "{what}: b_{l} moved");
            }
        }
        eprintln!("{what}: worst |diff| direction {worst_dir:e}, params {worst:e}");
    }
}

/// Every layer kind, odd sizes, stride 2, padding 0/1/2, a kernel larger than its
/// stride (the CPU conv tests' net, `tests/conv_layers.rs`).
fn conv_net() -> Network {
    Network::builder_for(Shape::image(2, 9, 7))
        .conv2d(Conv2d::new(3, 3).stride(2).padding(1), Activation::Tanh)
        .pool2d(Pool2d::max(2).stride(1))
        .conv2d(Conv2d::new(4, 2).padding(2), Activation::Tanh)
        .avg_pool2d(2)
        .flatten()
        .dense(5, Activation::Tanh)
        .dense(3, Activation::Identity)
        .seed(11)
        .build()
        .unwrap()
}

/// Whole steps of every rule through conv and pooling layers: the spatial kernels
/// (im2col, col2im, max and average pooling and their gradients) inside the step,
/// still one submit per step, within the same tolerance as the MLP steps.
#[test]
fn every_rule_matches_the_cpu_step_for_step_on_a_conv_net() {
    let start = conv_net();
    let data = random_dataset(70, start.input_size(), 3, 9);
    let batch = 16;
    for rule in Rule::ALL {
        let Some(gpu) = gpu() else { return };
        let case = Case {
            rule,
            hidden: &[],
            activation: Activation::Tanh,
            loss: Loss::SoftmaxCrossEntropy,
            optimizer: Optimizer::momentum(0.1, 0.9),
        };
        let what = format!("{rule} conv net");
        let Parity {
            gpu: mut gpu_t,
            worst_direction,
            worst_params,
            dispatches_per_step,
            ..
        } = step_parity_from(&case, &what, start.clone(), gpu, &data, batch);
        let pg = gpu_t.network().unwrap();
        assert_ne!(pg.params(), start.params(), "{what}: training did nothing");
        eprintln!(
            "{what}: worst |diff| direction {worst_direction:e}, params {worst_params:e}; \
             {dispatches_per_step} dispatches per step"
        );
    }
}

#[test]
fn alignment_angles_match_the_cpu() {
    let (inputs, outputs, batch) = (21, 5, 16);
    let data = random_dataset(batch, inputs, outputs, 8);
    let indices: Vec<usize> = (0..batch).collect();
    for rule in Rule::ALL {
        let Some(gpu) = gpu() else { return };
        let case = Case {
            rule,
            hidden: &[30, 20],
            activation: Activation::Tanh,
            loss: Loss::SoftmaxCrossEntropy,
            optimizer: Optimizer::sgd(0.1),
        };
        let config = TrainConfig {
            rule,
            batch_size: batch,
            ..Default::default()
        };
        let n = case.net(inputs, outputs);
        let mut c = Trainer::with_backend(n.clone(), config, Box::new(CpuBackend::new())).unwrap();
        let mut g = Trainer::with_backend(n, config, Box::new(gpu)).unwrap();
        let ac = c.alignment(&data, &indices).unwrap();
        let ag = g.alignment(&data, &indices).unwrap();
        assert_eq!(ac.len(), ag.len());
        let near = |a: Option<f64>, b: Option<f64>, what: &str| match (a, b) {
            (Some(a), Some(b)) => assert!((a - b).abs() < 1e-2, "{rule} {what}: {a} vs {b}"),
            (a, b) => assert_eq!(a, b, "{rule} {what}"),
        };
        for (x, y) in ac.iter().zip(&ag) {
            near(x.update_angle, y.update_angle, "update angle");
            near(x.feedback_angle, y.feedback_angle, "feedback angle");
            near(x.norm_ratio, y.norm_ratio, "norm ratio");
        }
    }
}
