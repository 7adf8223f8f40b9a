//! Whole training steps on the GPU backend against the CPU backend, for every rule,
//! and a short MNIST run that must learn.
//!
//! Runs on any wgpu adapter, software ones included (lavapipe in CI). Without an
//! adapter each test passes without checking anything and the binary writes one
//! `warning: GPU tests SKIPPED` line that plain `cargo test` shows (see
//! `common::gpu::skip`), unless `PLASTICITY_REQUIRE_GPU=1` makes it a failure.
//!
//! Tolerance: `|gpu - cpu| <= 2e-6 + 1e-5 |cpu|` on update directions and on
//! parameters after 6 SGD-with-momentum steps. Both backends compute the same f32
//! formulas in different summation orders (the GPU's GEMM tiles vs faer's kernels), so
//! they differ by a few ulps per operation, compounded through the layers (measured on
//! lavapipe: at most 6e-8 on parameters of magnitude ~0.3, 30x inside the bound; a
//! real GPU's exp, log and division may be a few ulps less exact). A wrong index,
//! transpose or derivative moves values by 1e-3 or more. SGD is used, not Adam: Adam divides
//! by the gradient's magnitude, so near-zero gradients turn ulp differences into
//! step-sized ones.

use plasticity::backend::{Backend, TracingBackend};
use plasticity::data::Mnist;
use plasticity::{Activation, Device, Error, Loss, Network, Optimizer, Rule, TrainConfig, Trainer};

mod common;
use common::gpu::{gpu, step_parity, Case, Parity};
use common::random_dataset;

#[test]
fn every_rule_matches_the_cpu_step_for_step() {
    let momentum = Optimizer::momentum(0.1, 0.9);
    let cases = [
        Case {
            rule: Rule::Backprop,
            hidden: &[33, 17],
            activation: Activation::Tanh,
            loss: Loss::SoftmaxCrossEntropy,
            optimizer: momentum,
        },
        Case {
            rule: Rule::FeedbackAlignment,
            hidden: &[33, 17],
            activation: Activation::LeakyRelu,
            loss: Loss::SoftmaxCrossEntropy,
            optimizer: momentum,
        },
        Case {
            rule: Rule::DirectFeedbackAlignment,
            hidden: &[33, 17, 9],
            activation: Activation::Tanh,
            loss: Loss::SoftmaxCrossEntropy,
            optimizer: momentum,
        },
        Case {
            rule: Rule::Backprop,
            hidden: &[65],
            activation: Activation::Sigmoid,
            loss: Loss::MeanSquaredError,
            optimizer: momentum,
        },
        Case {
            rule: Rule::DirectFeedbackAlignment,
            hidden: &[20, 20],
            activation: Activation::Relu,
            loss: Loss::MeanSquaredError,
            optimizer: momentum,
        },
    ];
    let batch = 16;
    let data = random_dataset(70, 21, 5, 5);
    for case in &cases {
        let Some(gpu) = gpu() else { return };
        let what = case.name();
        let Parity {
            cpu: mut cpu_t,
            gpu: mut gpu_t,
            worst_direction: worst_dir,
            worst_params,
            dispatches_per_step: per_step,
            ..
        } = step_parity(case, gpu, &data, batch);
        let ec = cpu_t.evaluate(&data).unwrap();
        let eg = gpu_t.evaluate(&data).unwrap();
        assert!(
            (ec.loss - eg.loss).abs() <= 1e-4 * ec.loss.abs().max(1.0),
            "{what}: eval loss"
        );
        assert_eq!(ec.accuracy, eg.accuracy, "{what}: eval accuracy");
        assert_eq!(ec.samples, eg.samples);
        eprintln!(
            "{what}: worst |diff| direction {worst_dir:e}, params {worst_params:e}; \
             {per_step} dispatches per step"
        );
    }
}

#[test]
fn dispatches_per_step_by_rule() {
    // L = 3 layers: forward L (each GEMM with its bias and activation fused), loss 1,
    // layer gradients 1 (grouped), optimizer 1; BP and FA add a GEMM per hidden layer
    // (its derivative fused, L - 1), DFA one GEMM for all hidden deltas (derivative
    // fused: the hidden layers share tanh). A dry-run trace of the same step (what
    // `bench_rules` reports) must count the same dispatches, all on its critical path.
    let (inputs, outputs, batch) = (12, 4, 8);
    let data = random_dataset(batch, inputs, outputs, 6);
    let indices: Vec<usize> = (0..batch).collect();
    let net = Network::builder(inputs)
        .hidden(&[10, 10], Activation::Tanh)
        .dense(outputs, Activation::Identity)
        .build()
        .unwrap();
    for (rule, expected) in [
        (Rule::Backprop, 8),
        (Rule::FeedbackAlignment, 8),
        (Rule::DirectFeedbackAlignment, 7),
    ] {
        let Some(gpu) = gpu() else { return };
        let counters = gpu.counters();
        let config = TrainConfig {
            rule,
            batch_size: batch,
            ..Default::default()
        };
        let mut t = Trainer::with_backend(net.clone(), config, Box::new(gpu)).unwrap();
        let (d0, s0) = (counters.dispatches(), counters.submits());
        t.train_batch(&data, &indices).unwrap();
        assert_eq!(counters.dispatches() - d0, expected, "{rule}");
        assert_eq!(counters.submits() - s0, 1, "{rule}");

        let tracer = TracingBackend::dry();
        let trace = tracer.trace();
        let mut dry = Trainer::with_backend(net.clone(), config, Box::new(tracer)).unwrap();
        trace.clear();
        dry.train_batch(&data, &indices).unwrap();
        let summary = trace.summary();
        assert_eq!(summary.ops as u64, expected, "{rule}: traced ops");
        assert_eq!(
            summary.critical_path as u64, expected,
            "{rule}: critical path"
        );
    }
}

#[test]
fn mnist_subset_learns_on_the_gpu() {
    let Some(gpu) = gpu() else { return };
    let name = gpu.name();
    let mnist = Mnist::load(Mnist::bundled_dir()).expect("bundled MNIST");
    let train = mnist.train.take(2000).unwrap();
    let net = Network::builder(784)
        .dense(64, Activation::Relu)
        .dense(10, Activation::Identity)
        .seed(1)
        .build()
        .unwrap();
    let config = TrainConfig {
        rule: Rule::Backprop,
        optimizer: Optimizer::adam(2e-3),
        batch_size: 32,
        ..Default::default()
    };
    let mut t = Trainer::with_backend(net, config, Box::new(gpu)).unwrap();
    let before = t.evaluate(&mnist.test).unwrap();
    let epoch = t.train_epoch(&train, |_, _| {}).unwrap();
    let after = t.evaluate(&mnist.test).unwrap();
    eprintln!(
        "mnist on {name}: test accuracy {:.3} -> {:.3} after one epoch of 2000 images \
         (train loss {:.3})",
        before.accuracy, after.accuracy, epoch.loss
    );
    assert_eq!(after.samples, 10_000);
    assert!(after.accuracy > 0.75, "test accuracy {}", after.accuracy);
    assert!(after.loss < before.loss);
}

#[test]
fn auto_skips_software_adapters_and_gpu_can_be_forced() {
    let adapters = plasticity::backend::gpu::adapters();
    // Auto-detection probes the native APIs only, unless WGPU_BACKEND names backends.
    let named = std::env::var_os("WGPU_BACKEND").is_some();
    let hardware = adapters
        .iter()
        .any(|a| a.hardware && (named || a.backend != "Gl"));
    let expected = if hardware { Device::Gpu } else { Device::Cpu };
    assert_eq!(Device::detect(), expected, "adapters: {adapters:?}");
    assert_eq!(Device::from_name("gpu").unwrap(), Device::Gpu);
    let net = Network::builder(3)
        .dense(2, Activation::Identity)
        .build()
        .unwrap();
    match Trainer::new(net, TrainConfig::default(), Device::Gpu) {
        Ok(t) => assert!(t.device_name().starts_with("gpu"), "{}", t.device_name()),
        Err(e @ Error::NoAdapter(_)) if adapters.is_empty() => common::gpu::skip(&e),
        Err(e) => panic!("forcing the GPU failed: {e}"),
    }
    match Device::GpuAdapter(adapters.len()).backend() {
        Err(Error::NoAdapter(_)) => {}
        other => panic!("expected NoAdapter, got {:?}", other.map(|b| b.name())),
    }
}
