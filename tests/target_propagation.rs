//! The target-propagation learners `dtp` (Lee et al. 2015) and `ddtp` (DDTP-linear,
//! Meulemans et al. 2020): targets that equal the activity move nothing, exact
//! inverses carry each target onto the next layer's, `dtp`'s first target is a
//! gradient step, the feedback learns to reconstruct, CPU and GPU agree, checkpoints
//! resume bit for bit, and both learn MNIST.

mod common;

use std::sync::OnceLock;

#[cfg(feature = "gpu")]
use common::gpu::gpu;
#[cfg(feature = "gpu")]
use plasticity::backend::CpuBackend;
use plasticity::data::Dataset;
use plasticity::learner::target_prop::{reconstruction_losses, TopTarget};
use plasticity::learner::{Ddtp, Dtp, TargetPropSettings};
use plasticity::{Activation, Device, Learner, Network, Optimizer, TrainConfig, Trainer};

const BATCH: usize = 16;

fn settings(target_step: f32) -> TargetPropSettings {
    TargetPropSettings {
        target_step,
        ..TargetPropSettings::default()
    }
}

fn learner(name: &str, s: TargetPropSettings) -> Box<dyn Learner> {
    match name {
        "dtp" => Box::new(Dtp::new(s)),
        // The output target through the output layer's inverse too.
        "dtp-inverse" => Box::new(Dtp::new(s).with_top_target(TopTarget::Inverse)),
        _ => Box::new(Ddtp::new(s)),
    }
}

fn config() -> TrainConfig {
    TrainConfig {
        optimizer: Optimizer::adam(1e-2),
        batch_size: BATCH,
        ..TrainConfig::default()
    }
}

fn dense_net(activation: Activation) -> Network {
    common::build_net(20, &[16, 12], activation, 4, Activation::Identity, 5)
}

fn trainer(net: Network, name: &str, s: TargetPropSettings) -> Trainer {
    Trainer::with_learner(net, config(), learner(name, s), Device::Cpu).unwrap()
}

fn batch() -> Vec<usize> {
    (0..BATCH).collect()
}

#[test]
fn a_zero_target_step_leaves_every_hidden_layer_still() {
    let data = common::random_dataset(64, 20, 4, 1);
    for name in ["dtp", "dtp-inverse", "ddtp"] {
        let mut t = trainer(dense_net(Activation::Tanh), name, settings(0.0));
        let before = t.network().unwrap();
        // An epoch trains the (random, imperfect) feedback; hidden layers get nothing.
        t.train_epoch(&data, |_, _| {}).unwrap();
        let direction = t.update_direction(&data, &batch()).unwrap();
        let after = t.network().unwrap();
        for l in 0..2 {
            let hidden = [before.layout().weights(l), before.layout().bias(l)];
            for range in hidden {
                assert!(
                    direction[range.clone()].iter().all(|&g| g == 0.0),
                    "{name}: layer {l} moves with t = h"
                );
                assert_eq!(before.params()[range.clone()], after.params()[range]);
            }
        }
        let top = before.layout().weights(2);
        assert!(
            direction[top].iter().any(|&g| g != 0.0),
            "{name}: last layer"
        );
        // A nonzero step does move them: the check above can fail.
        let mut moving = trainer(dense_net(Activation::Tanh), name, settings(0.1));
        let d = moving.update_direction(&data, &batch()).unwrap();
        assert!(d[before.layout().weights(0)].iter().any(|&g| g != 0.0));
    }
}

/// `a^{-1}` of a square row-major matrix (Gauss-Jordan with partial pivoting, f64).
fn inverse(a: &[f32], n: usize) -> Vec<f64> {
    let mut m: Vec<f64> = a.iter().map(|&v| v as f64).collect();
    let mut inv: Vec<f64> = (0..n * n)
        .map(|i| if i / n == i % n { 1.0 } else { 0.0 })
        .collect();
    for c in 0..n {
        let p = (c..n)
            .max_by(|&x, &y| m[x * n + c].abs().total_cmp(&m[y * n + c].abs()))
            .unwrap();
        for k in 0..n {
            m.swap(c * n + k, p * n + k);
            inv.swap(c * n + k, p * n + k);
        }
        let d = m[c * n + c];
        for k in 0..n {
            m[c * n + k] /= d;
            inv[c * n + k] /= d;
        }
        for r in (0..n).filter(|&r| r != c) {
            let f = m[r * n + c];
            for k in 0..n {
                m[r * n + k] -= f * m[c * n + k];
                inv[r * n + k] -= f * inv[c * n + k];
            }
        }
    }
    inv
}

#[test]
fn with_exact_inverses_each_target_maps_onto_the_next() {
    // g_{l+1}(h) = f_l(Q h + c) inverts a layer exactly only when both activations
    // are the identity, so the invertible net is linear: square, W = I + noise.
    const N: usize = 6;
    let mut net = common::build_net(N, &[N, N], Activation::Identity, N, Activation::Identity, 2);
    common::randomize_params(&mut net, 0.3, 4);
    let mut params = net.params().to_vec();
    for l in 0..3 {
        let w = net.layout().weights(l);
        for i in 0..N {
            params[w.start + i * N + i] += 1.0;
        }
    }
    net.set_params(&params).unwrap();
    // Every target through an inverse, the output layer's included.
    let mut t = trainer(net.clone(), "dtp-inverse", settings(0.5));
    for l in 0..2 {
        let (w, b) = (net.weights(l + 1).unwrap(), net.bias(l + 1).unwrap());
        let q = inverse(w, N);
        let c: Vec<f32> = (0..N)
            .map(|i| -(0..N).map(|k| q[i * N + k] * b[k] as f64).sum::<f64>() as f32)
            .collect();
        let q: Vec<f32> = q.iter().map(|&v| v as f32).collect();
        t.set_tensor(&format!("dtp.inverse.{l}"), &q).unwrap();
        t.set_tensor(&format!("dtp.inverse_bias.{l}"), &c).unwrap();
    }
    let data = common::random_dataset(BATCH, N, N, 3);
    t.update_direction(&data, &batch()).unwrap();
    let targets: Vec<Vec<f32>> = (0..3)
        .map(|l| t.tensor(&format!("dtp.target.{l}")).unwrap())
        .collect();
    let outputs = t.outputs(&data, &batch()).unwrap();
    let moved = (0..BATCH * N)
        .map(|i| (targets[2][(i % N) * BATCH + i / N] - outputs[i]).abs())
        .fold(0.0f32, f32::max);
    assert!(moved > 1e-3, "the output target differs from the output");
    for l in 0..2 {
        let (w, b) = (net.weights(l + 1).unwrap(), net.bias(l + 1).unwrap());
        for s in 0..BATCH {
            for i in 0..N {
                let z: f64 = b[i] as f64
                    + (0..N)
                        .map(|k| w[i * N + k] as f64 * targets[l][k * BATCH + s] as f64)
                        .sum::<f64>();
                let next = targets[l + 1][i * BATCH + s] as f64;
                assert!(
                    (z - next).abs() < 1e-4,
                    "f_{}(t_{l}) = {z} but t_{} = {next} (sample {s}, unit {i})",
                    l + 1,
                    l + 1
                );
            }
        }
    }
}

#[test]
fn dtps_first_target_is_a_gradient_step() {
    // Lee et al.'s t_{L-1} = h_{L-1} - η̂ W_L^T e: the top hidden layer's local delta
    // (h - t) ⊙ f' / B is η̂ times backprop's, so its update is too.
    let data = common::random_dataset(BATCH, 20, 4, 9);
    let net = dense_net(Activation::Tanh);
    let eta = 0.5;
    let mut bp = Trainer::new(net.clone(), config(), Device::Cpu).unwrap();
    let want = bp.update_direction(&data, &batch()).unwrap();
    let top = [net.layout().weights(1), net.layout().bias(1)];
    let output = [net.layout().weights(2), net.layout().bias(2)];
    let mut misses = Vec::new();
    for name in ["dtp", "dtp-inverse"] {
        let mut t = trainer(net.clone(), name, settings(eta));
        let got = t.update_direction(&data, &batch()).unwrap();
        // The output layer learns from the true error either way.
        for k in output.iter().flat_map(|r| r.clone()) {
            assert!((got[k] - want[k]).abs() <= 1e-6, "{name}: output {k}");
        }
        let (mut miss, mut norm) = (0.0f64, 0.0f64);
        for k in top.iter().flat_map(|r| r.clone()) {
            let scaled = eta as f64 * want[k] as f64;
            miss += (got[k] as f64 - scaled).powi(2);
            norm += scaled.powi(2);
        }
        misses.push((miss / norm).sqrt());
        // The layer below learns through the inverse.
        let below = net.layout().weights(0);
        assert!(got[below].iter().any(|&g| g != 0.0), "{name}: layer 0");
    }
    eprintln!("top layer's relative distance to η̂ BP: gradient {misses:?}");
    assert!(misses[0] < 1e-5, "{misses:?}");
    // Through the (random) inverse of the output layer it is not backprop's.
    assert!(misses[1] > 0.1, "{misses:?}");
}

#[test]
fn the_feedback_learns_to_reconstruct() {
    let data = common::random_dataset(128, 20, 4, 6);
    // The feedback every target passes through: all of it, except the output layer's
    // inverse under `dtp`'s gradient-step first target, which no target uses (it is
    // trained all the same, and may fall behind a top layer that learns by gradient).
    for (name, used) in [("dtp", 1), ("dtp-inverse", 2), ("ddtp", 2)] {
        let mut t = trainer(dense_net(Activation::Tanh), name, settings(0.1));
        t.update_direction(&data, &batch()).unwrap();
        let start = reconstruction_losses(&mut t).unwrap();
        for _ in 0..30 {
            t.train_epoch(&data, |_, _| {}).unwrap();
        }
        t.update_direction(&data, &batch()).unwrap();
        let end = reconstruction_losses(&mut t).unwrap();
        eprintln!("{name} reconstruction loss {start:?} -> {end:?}");
        assert_eq!(start.len(), 2);
        for (a, b) in start.iter().zip(&end).take(used) {
            assert!(b < &(0.85 * a), "{name}: {start:?} -> {end:?}");
        }
    }
}

fn trainable(t: &Trainer) -> Vec<String> {
    t.tensor_specs()
        .iter()
        .filter(|s| s.persistent())
        .map(|s| s.name.clone())
        .collect()
}

#[cfg(feature = "gpu")]
#[test]
fn the_gpu_trains_like_the_cpu() {
    let cases = [
        ("dtp", dense_net(Activation::Tanh), 20),
        ("dtp-inverse", dense_net(Activation::Tanh), 20),
        ("ddtp", dense_net(Activation::Tanh), 20),
        ("ddtp", common::small_conv_net(), 36),
    ];
    for (name, net, dim) in cases {
        let Some(gpu) = gpu() else {
            return;
        };
        let data = common::random_dataset(64, dim, 4, 2);
        let s = settings(0.2);
        let mut cpu = Trainer::with_learner_backend(
            net.clone(),
            config(),
            learner(name, s),
            Box::new(CpuBackend::new()),
        )
        .unwrap();
        let counters = gpu.counters();
        let mut gpu =
            Trainer::with_learner_backend(net, config(), learner(name, s), Box::new(gpu)).unwrap();
        // The whole step, feedback training included, is recorded into one submit.
        let submits = counters.submits();
        gpu.train_batch(&data, &batch()).unwrap();
        assert_eq!(
            counters.submits() - submits,
            1,
            "{name}: submits of one step"
        );
        cpu.train_batch(&data, &batch()).unwrap();
        for _ in 0..3 {
            cpu.train_epoch(&data, |_, _| {}).unwrap();
            gpu.train_epoch(&data, |_, _| {}).unwrap();
        }
        let (c, g) = (cpu.network().unwrap(), gpu.network().unwrap());
        common::assert_trained_close(c.params(), g.params(), &format!("{name} parameter"));
        for tensor in trainable(&cpu) {
            let (a, b) = (cpu.tensor(&tensor).unwrap(), gpu.tensor(&tensor).unwrap());
            common::assert_trained_close(&a, &b, &format!("{name} {tensor}"));
        }
    }
}

#[test]
fn a_checkpoint_resumes_bit_for_bit_with_its_settings() {
    let data = common::random_dataset(64, 20, 4, 7);
    // Not the defaults: a resumed run must get them from the checkpoint.
    let s = TargetPropSettings {
        target_step: 0.3,
        noise_std: 0.05,
        feedback_optimizer: Some(Optimizer::momentum(0.05, 0.9)),
    };
    // `dtp-inverse` is `dtp` with its non-default top target: the built-in `dtp` the
    // checkpoint rebuilds must take it from the file.
    for name in ["dtp", "dtp-inverse", "ddtp"] {
        let mut t = trainer(dense_net(Activation::Tanh), name, s);
        for _ in 0..2 {
            t.train_epoch(&data, |_, _| {}).unwrap();
        }
        let bytes = t.checkpoint().unwrap().to_bytes().unwrap();
        let back = plasticity::Checkpoint::from_bytes(&bytes, std::path::Path::new(name)).unwrap();
        assert_eq!(back.learner, name.trim_end_matches("-inverse"));
        let mut resumed = Trainer::from_checkpoint(&back, Device::Cpu).unwrap();
        t.train_epoch(&data, |_, _| {}).unwrap();
        resumed.train_epoch(&data, |_, _| {}).unwrap();
        assert_eq!(
            t.network().unwrap().params(),
            resumed.network().unwrap().params(),
            "{name}"
        );
        for tensor in trainable(&t) {
            assert_eq!(
                t.tensor(&tensor).unwrap(),
                resumed.tensor(&tensor).unwrap(),
                "{name} {tensor}"
            );
        }
    }
}

#[test]
fn dtp_refuses_layers_it_cannot_invert_and_ddtp_trains_a_conv_net() {
    let err = Trainer::with_learner(
        common::small_conv_net(),
        config(),
        Box::new(Dtp::default()),
        Device::Cpu,
    )
    .expect_err("dtp on a conv net");
    assert!(err.to_string().contains("dense"), "{err}");
    let bad = TargetPropSettings {
        noise_std: 0.0,
        ..TargetPropSettings::default()
    };
    assert!(Trainer::with_learner(
        dense_net(Activation::Tanh),
        config(),
        Box::new(Ddtp::new(bad)),
        Device::Cpu
    )
    .is_err());

    let data = common::random_dataset(64, 36, 4, 8);
    let mut t = trainer(common::small_conv_net(), "ddtp", settings(0.2));
    let first = t.train_epoch(&data, |_, _| {}).unwrap();
    let mut last = first;
    for _ in 0..40 {
        last = t.train_epoch(&data, |_, _| {}).unwrap();
    }
    assert!(
        last.loss < 0.8 * first.loss,
        "ddtp conv training loss {} -> {}",
        first.loss,
        last.loss
    );
    assert!(t.tensor_specs().iter().any(|s| s.name == "ddtp.feedback.0"));
}

struct Subset {
    train: Dataset,
    test: Dataset,
}

fn mnist() -> &'static Subset {
    static DATA: OnceLock<Subset> = OnceLock::new();
    DATA.get_or_init(|| {
        let mnist = common::mnist();
        Subset {
            train: mnist.train.take(6000).unwrap(),
            test: mnist.test.take(2000).unwrap(),
        }
    })
}

#[test]
fn both_learn_mnist() {
    let data = mnist();
    for name in ["dtp", "ddtp"] {
        let net = Network::builder(784)
            .hidden(&[256, 256], Activation::Tanh)
            .dense(10, Activation::Identity)
            .seed(1)
            .build()
            .unwrap();
        let config = TrainConfig {
            optimizer: Optimizer::adam(3e-3),
            batch_size: 64,
            ..TrainConfig::default()
        };
        let mut t = Trainer::with_learner(
            net,
            config,
            learner(name, TargetPropSettings::default()),
            Device::Cpu,
        )
        .unwrap();
        for _ in 0..2 {
            t.train_epoch(&data.train, |_, _| {}).unwrap();
        }
        let test = t.evaluate(&data.test).unwrap();
        eprintln!("{name}: MNIST test accuracy {:.2}%", 100.0 * test.accuracy);
        assert!(test.accuracy >= 0.85, "{name}: {}", test.accuracy);
    }
}
