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
// The whole file tests the GPU backend.
#![cfg(feature = "gpu")]

use plasticity::backend::{Backend, TracingBackend};
use plasticity::{
    Activation, Device, Error, Loss, Network, Optimizer, Residency, Rule, TrainConfig, Trainer,
};

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

/// The parameter arena starts with the network's values (moved in on the CPU,
/// uploaded on the GPU) and the learner's trainable tensors after them are its own.
#[test]
fn a_new_trainer_holds_the_networks_parameters_on_both_backends() {
    let Some(gpu) = gpu() else { return };
    let net = Network::builder(13)
        .dense(9, Activation::Tanh)
        .dense(4, Activation::Identity)
        .seed(5)
        .build()
        .unwrap();
    let config = TrainConfig {
        rule: Rule::Backprop,
        ..Default::default()
    };
    let backends: [Box<dyn Backend>; 2] = [
        Box::new(plasticity::backend::CpuBackend::new()),
        Box::new(gpu),
    ];
    for backend in backends {
        let learner = Box::new(plasticity::learner::KolenPollack::default());
        let name = backend.name();
        let mut t = Trainer::with_learner_backend(net.clone(), config, learner, backend).unwrap();
        assert_eq!(t.network().unwrap(), net, "{name}");
        let feedback = t.tensor("feedback.0").unwrap();
        assert!(
            feedback.iter().any(|&v| v != 0.0),
            "{name}: the learner's feedback was overwritten"
        );
    }
}

#[test]
fn mnist_subset_learns_on_the_gpu() {
    let Some(gpu) = gpu() else { return };
    let name = gpu.name();
    let mnist = common::mnist();
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

#[test]
fn an_epoch_on_the_device_submits_every_k_steps_and_uploads_only_the_permutation() {
    // An MNIST subset at batch 64: the set is stored once, then an epoch uploads its
    // permutation (4 bytes a sample), submits once per K steps (+2: the epoch's
    // statistics reset and the final read), and reads back only the statistics.
    let Some(gpu) = gpu() else { return };
    let mnist = common::mnist();
    let train = mnist.train.take(1250).unwrap();
    let net = Network::builder(784)
        .dense(32, Activation::Tanh)
        .dense(10, Activation::Identity)
        .seed(2)
        .build()
        .unwrap();
    let config = TrainConfig {
        rule: Rule::DirectFeedbackAlignment,
        optimizer: Optimizer::momentum(0.05, 0.9),
        batch_size: 64,
        ..Default::default()
    };
    let make = |backend: Box<dyn Backend>| Trainer::with_backend(net.clone(), config, backend);
    let mut on_gpu = make(Box::new(gpu)).unwrap();
    let mut on_cpu = make(Box::new(plasticity::backend::CpuBackend::new())).unwrap();
    assert_eq!(on_cpu.store_data(&train).unwrap(), Residency::Host);
    match on_gpu.store_data(&train).unwrap() {
        Residency::Device { bytes, byte_codes } => {
            assert!(byte_codes, "MNIST's features are bytes");
            // Table, labels, a byte per feature.
            assert_eq!(bytes, 4 * (256 + 1250) + 1250 * 784);
        }
        other => panic!("MNIST subset not stored: {other:?}"),
    }
    let steps = 1250usize.div_ceil(64) as u64;
    for k in [on_gpu.steps_per_submit(), 4] {
        on_gpu.set_steps_per_submit(Some(k)).unwrap();
        let before = on_gpu.work_counters().unwrap();
        let (g, c) = (
            on_gpu.train_epoch(&train, |_, _| {}).unwrap(),
            on_cpu.train_epoch(&train, |_, _| {}).unwrap(),
        );
        let used = on_gpu.work_counters().unwrap() - before;
        eprintln!("K = {k}: {used:?}");
        assert!(
            used.submits <= steps.div_ceil(k as u64) + 2,
            "K = {k}: {} submits for {steps} steps",
            used.submits
        );
        assert!(used.bytes_uploaded <= 4 * 1250, "K = {k}: {used:?}");
        assert!(used.bytes_read_back <= 64, "K = {k}: {used:?}");
        // The arenas keep every tensor on a 256-byte boundary at batch 64: no operand
        // needs binding as a copy.
        assert_eq!(used.bytes_aliased, 0, "K = {k}: {used:?}");
        // The same batches on both backends: the same statistics, up to rounding.
        assert_eq!(g.samples, c.samples);
        assert!(
            (g.loss - c.loss).abs() < 1e-4,
            "loss {} vs {}",
            g.loss,
            c.loss
        );
    }
    let (pc, pg) = (on_cpu.network().unwrap(), on_gpu.network().unwrap());
    common::assert_trained_close(pc.params(), pg.params(), "parameter");
    // Evaluation gathers from the stored test set too: no data upload but its order,
    // and a second one not even that (the order buffer already holds it).
    let before = on_gpu.work_counters().unwrap();
    let (eg, ec) = (
        on_gpu.evaluate(&mnist.test).unwrap(),
        on_cpu.evaluate(&mnist.test).unwrap(),
    );
    let stored = on_gpu.work_counters().unwrap() - before;
    assert_eq!(eg.accuracy, ec.accuracy);
    let again = on_gpu.work_counters().unwrap();
    assert_eq!(on_gpu.evaluate(&mnist.test).unwrap().accuracy, ec.accuracy);
    let used = on_gpu.work_counters().unwrap() - again;
    assert!(stored.bytes_uploaded > 10_000 * 784, "{stored:?}");
    assert_eq!(used.bytes_uploaded, 0, "{used:?}");
    assert!(used.submits <= 3, "{used:?}");
    // An epoch writes its shuffled order over it; the next evaluation writes it back.
    on_gpu.train_epoch(&train, |_, _| {}).unwrap();
    on_cpu.train_epoch(&train, |_, _| {}).unwrap();
    let (eg, ec) = (
        on_gpu.evaluate(&mnist.test).unwrap(),
        on_cpu.evaluate(&mnist.test).unwrap(),
    );
    assert!(
        (eg.accuracy - ec.accuracy).abs() <= 0.002,
        "{eg:?} vs {ec:?}"
    );
}

#[test]
fn divergence_on_the_device_is_found_at_the_cpus_step_with_the_parameters_intact() {
    // Default weights end in a non-finite loss at step 2; weights of 1e3 under
    // MSE give a finite loss whose update overflows at step 1 (a parameter diverges).
    let data = random_dataset(96, 5, 3, 2);
    for (loss, scale) in [
        (Loss::SoftmaxCrossEntropy, 0.0),
        (Loss::MeanSquaredError, 0.0),
        (Loss::MeanSquaredError, 1e3),
    ] {
        let Some(gpu) = gpu() else { return };
        let mut net = Network::builder(5)
            .dense(7, Activation::Relu)
            .dense(4, Activation::Relu)
            .dense(3, Activation::Identity)
            .seed(3)
            .build()
            .unwrap();
        if scale > 0.0 {
            common::randomize_params(&mut net, scale, 8);
        }
        let config = TrainConfig {
            rule: Rule::Backprop,
            optimizer: Optimizer::sgd(1e30),
            loss,
            batch_size: 8,
            ..Default::default()
        };
        let mut cpu_t = Trainer::new(net.clone(), config, Device::Cpu).unwrap();
        let mut gpu_t = Trainer::with_backend(net, config, Box::new(gpu)).unwrap();
        let (c, g) = (
            cpu_t.train_epoch(&data, |_, _| {}).unwrap_err(),
            gpu_t.train_epoch(&data, |_, _| {}).unwrap_err(),
        );
        let (
            Error::Diverged {
                step: cs, what: cw, ..
            },
            Error::Diverged {
                step: gs, what: gw, ..
            },
        ) = (&c, &g)
        else {
            panic!("{loss}: cpu {c:?}, gpu {g:?}");
        };
        eprintln!("{loss}: cpu: {cw} at step {cs}; gpu: {gw} at step {gs}");
        assert_eq!(cs, gs, "{loss}: cpu {c}, gpu {g}");
        assert_eq!(gpu_t.steps(), *gs);
        assert_eq!(
            (gpu_t.epochs(), cpu_t.epochs()),
            (0, 0),
            "{loss}: no epoch done"
        );
        // The loss names the layer whose output went first; a parameter, its layer.
        let layer = |w: &str| w.split(" of layer ").nth(1).map(|l| l.to_string());
        if cw.starts_with("loss") {
            assert_eq!(cw, gw, "{loss}");
        } else {
            assert!(layer(gw).is_some(), "{loss}: {gw}");
        }
        // The device left every parameter finite: readable, and training can go on.
        let params = gpu_t.network().unwrap();
        assert!(params.params().iter().all(|v| v.is_finite()));
    }
}

#[test]
fn steps_with_every_product_split_over_k_match_the_cpu() {
    // The split-K path a hardware GPU takes for skinny products, forced on every GEMM
    // here (a software adapter never splits on its own): the same tolerance holds.
    let momentum = Optimizer::momentum(0.1, 0.9);
    let data = random_dataset(70, 37, 5, 7);
    for rule in [Rule::Backprop, Rule::DirectFeedbackAlignment] {
        let Some(mut gpu) = gpu() else { return };
        gpu.force_split_k(Some(3));
        let case = Case {
            rule,
            hidden: &[33, 40],
            activation: Activation::Tanh,
            loss: Loss::SoftmaxCrossEntropy,
            optimizer: momentum,
        };
        let parity = step_parity(&case, gpu, &data, 16);
        eprintln!(
            "{}: split-K, worst |diff| direction {:e}, params {:e}",
            case.name(),
            parity.worst_direction,
            parity.worst_params
        );
    }
}

#[test]
fn a_changed_data_set_is_stored_again_and_trains_like_on_the_cpu() {
    // Standardizing changes the features in place: the stored copy must not be reused
    // (per-feature scaling leaves more than 256 values, so they are stored as floats),
    // while a clone of an unchanged set is recognised.
    use plasticity::data::{Scaling, Standardizer};
    let Some(gpu) = gpu() else { return };
    let mnist = common::mnist();
    let mut data = mnist.train.take(300).unwrap();
    let net = Network::builder(784)
        .dense(16, Activation::Tanh)
        .dense(10, Activation::Identity)
        .seed(4)
        .build()
        .unwrap();
    let config = TrainConfig {
        optimizer: Optimizer::momentum(0.02, 0.9),
        batch_size: 32,
        ..Default::default()
    };
    let mut on_gpu = Trainer::with_backend(net.clone(), config, Box::new(gpu)).unwrap();
    let mut on_cpu = Trainer::new(net, config, Device::Cpu).unwrap();
    let bytes = |r: Residency| match r {
        Residency::Device { byte_codes, .. } => byte_codes,
        other => panic!("not stored: {other:?}"),
    };
    assert!(bytes(on_gpu.store_data(&data).unwrap()));
    let before = on_gpu.work_counters().unwrap();
    assert!(bytes(on_gpu.store_data(&data.clone()).unwrap()));
    assert_eq!(on_gpu.work_counters().unwrap() - before, Default::default());
    Standardizer::fit(&data, Scaling::Standardize)
        .unwrap()
        .apply(&mut data)
        .unwrap();
    assert!(
        !bytes(on_gpu.store_data(&data).unwrap()),
        "stored again, as floats"
    );
    let (g, c) = (
        on_gpu.train_epoch(&data, |_, _| {}).unwrap(),
        on_cpu.train_epoch(&data, |_, _| {}).unwrap(),
    );
    assert!(
        (g.loss - c.loss).abs() < 1e-4,
        "loss {} vs {}",
        g.loss,
        c.loss
    );
    let (pc, pg) = (on_cpu.network().unwrap(), on_gpu.network().unwrap());
    common::assert_trained_close(pc.params(), pg.params(), "parameter");
}
