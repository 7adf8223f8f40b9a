//! Forward-forward (Hinton 2022): every layer learns from its own goodness objective,
//! with no backward pass. Checked against an independent f64 reference of the
//! documented local loss (finite differences), for locality (a layer's update does not
//! depend on the layers above it), on MNIST, on the GPU and through a checkpoint.

mod common;

#[cfg(feature = "gpu")]
use common::gpu::gpu;
use common::{act, offsets, randomize_params};
#[cfg(feature = "gpu")]
use plasticity::backend::CpuBackend;
use plasticity::data::{Dataset, Mnist};
use plasticity::learner::{ForwardForward, Negatives};
use plasticity::{Activation, Device, LayerSpec, Network, Optimizer, TrainConfig, Trainer};
use rand::Rng;

const THETA: f64 = 2.0;

fn config(batch: usize, lr: f32) -> TrainConfig {
    TrainConfig {
        optimizer: Optimizer::adam(lr),
        batch_size: batch,
        ..TrainConfig::default()
    }
}

fn net(inputs: usize, hidden: &[usize], classes: usize, seed: u64) -> Network {
    common::build_net(
        inputs,
        hidden,
        Activation::Relu,
        classes,
        Activation::Identity,
        seed,
    )
}

/// `n` samples of `dim` features in [0, 1), labels in `0..classes`.
fn data(n: usize, dim: usize, classes: usize, seed: u64) -> Dataset {
    let mut r = common::rng(seed);
    let features = (0..n * dim).map(|_| r.random_range(0.0..1.0)).collect();
    let labels = (0..n).map(|_| r.random_range(0..classes as u32)).collect();
    Dataset::new(features, labels, dim, classes).unwrap()
}

/// Column `j` of a feature-major `rows x batch` tensor.
fn column(m: &[f32], rows: usize, batch: usize, j: usize) -> Vec<f64> {
    (0..rows).map(|i| m[i * batch + j] as f64).collect()
}

fn softplus(v: f64) -> f64 {
    v.max(0.0) + (-v.abs()).exp().ln_1p()
}

/// Layer `l`'s local loss, batch mean, from the documented formulas: inputs scaled to
/// length `√n`, `G = mean h²`, `softplus(θ - G)` for positive and `softplus(G - θ)` for
/// negative data.
fn local_loss(
    layers: &[LayerSpec],
    p: &[f64],
    l: usize,
    positive: &[Vec<f64>],
    negative: &[Vec<f64>],
) -> f64 {
    let offs = offsets(layers);
    let forward = |x: &[f64], upto: usize| -> Vec<f64> {
        let mut h = x.to_vec();
        for k in 0..=upto {
            let norm = h.iter().map(|v| v * v).sum::<f64>().sqrt() + 1e-4;
            let length = (h.len() as f64).sqrt();
            let unit: Vec<f64> = h.iter().map(|v| length * v / norm).collect();
            h = (0..layers[k].outputs())
                .map(|i| {
                    let z = p[offs[k].1 + i]
                        + (0..layers[k].inputs())
                            .map(|j| p[offs[k].0 + i * layers[k].inputs() + j] * unit[j])
                            .sum::<f64>();
                    act(layers[k].activation(), z)
                })
                .collect();
        }
        h
    };
    let goodness = |h: Vec<f64>| h.iter().map(|v| v * v).sum::<f64>() / h.len() as f64;
    let batch = positive.len() as f64;
    positive
        .iter()
        .map(|x| softplus(THETA - goodness(forward(x, l))))
        .chain(
            negative
                .iter()
                .map(|x| softplus(goodness(forward(x, l)) - THETA)),
        )
        .sum::<f64>()
        / batch
}

#[test]
fn each_layer_follows_the_gradient_of_its_own_goodness_loss() {
    let (dim, classes, batch) = (12, 3, 4);
    let mut network = net(dim, &[6, 5], classes, 2);
    randomize_params(&mut network, 0.8, 4);
    let d = data(batch, dim, classes, 3);
    let samples: Vec<usize> = (0..batch).collect();
    let mut t = Trainer::with_learner(
        network.clone(),
        config(batch, 1e-3),
        Box::new(ForwardForward::default()),
        Device::Cpu,
    )
    .unwrap();
    let update = t.update_direction(&d, &samples).unwrap();
    // The data the step ran on, labels embedded.
    let (pos, neg) = (
        t.tensor("ff.positive.input").unwrap(),
        t.tensor("ff.negative.input").unwrap(),
    );
    let positive: Vec<Vec<f64>> = (0..batch).map(|j| column(&pos, dim, batch, j)).collect();
    let negative: Vec<Vec<f64>> = (0..batch).map(|j| column(&neg, dim, batch, j)).collect();
    for j in 0..batch {
        let label = d.labels()[j] as usize;
        assert_eq!(positive[j][label], 1.0, "the true label is written");
        assert!(positive[j][..classes].iter().sum::<f64>() == 1.0);
        assert_eq!(negative[j][label], 0.0, "the negative label is wrong");
        assert_eq!(positive[j][classes..], negative[j][classes..], "same image");
    }
    let layers = network.layers();
    let p: Vec<f64> = network.params().iter().map(|&v| v as f64).collect();
    let offs = offsets(layers);
    let mut worst = 0.0f64;
    for l in 0..2 {
        let params = offs[l].0..offs[l].1 + layers[l].outputs();
        for i in params {
            let h = 1e-4;
            let (mut up, mut down) = (p.clone(), p.clone());
            up[i] += h;
            down[i] -= h;
            let numeric = (local_loss(layers, &up, l, &positive, &negative)
                - local_loss(layers, &down, l, &positive, &negative))
                / (2.0 * h);
            let err = (update[i] as f64 - numeric).abs();
            assert!(
                err < 1e-4 + 1e-3 * numeric.abs(),
                "layer {l} parameter {i}: update {} vs finite difference {numeric}",
                update[i]
            );
            worst = worst.max(err);
        }
    }
    // The output layer is not part of forward-forward.
    assert!(update[offs[2].0..].iter().all(|&v| v == 0.0));
    eprintln!("worst |update - finite difference| = {worst:e}");
}

/// With randomly shifted negative labels nothing of the layers above reaches a layer.
/// (Hardest negatives are chosen by the whole network's goodness, so there the choice
/// of negative label, though no gradient, depends on the layers above.)
#[test]
fn a_layers_update_does_not_depend_on_the_layers_above() {
    let d = data(8, 12, 3, 5);
    let samples: Vec<usize> = (0..8).collect();
    let update = |seed: u64| {
        let mut network = net(12, &[6, 5], 3, 2);
        randomize_params(&mut network, 0.8, 4);
        // Redraw everything above the first layer.
        let mut other = network.clone();
        randomize_params(&mut other, 0.8, seed);
        let first = offsets(network.layers())[1].0;
        let mut p = network.params().to_vec();
        p[first..].copy_from_slice(&other.params()[first..]);
        network.set_params(&p).unwrap();
        let mut t = Trainer::with_learner(
            network,
            config(8, 1e-3),
            Box::new(ForwardForward::default().with_negatives(Negatives::Shifted)),
            Device::Cpu,
        )
        .unwrap();
        (t.update_direction(&d, &samples).unwrap(), first)
    };
    let ((a, first), (b, _)) = (update(10), update(11));
    assert_eq!(a[..first], b[..first], "layer 0's update is its own");
    assert_ne!(a[first..], b[first..]);
}

#[test]
fn ff_learns_mnist_without_a_backward_pass() {
    let m = Mnist::load(Mnist::bundled_dir()).unwrap();
    let (train, test) = (m.train.take(6000).unwrap(), m.test.take(1000).unwrap());
    let mut t = Trainer::with_learner(
        net(784, &[200, 200], 10, 1),
        config(100, 0.003),
        Box::new(ForwardForward::default()),
        Device::Cpu,
    )
    .unwrap();
    let mut last = None;
    for _ in 0..6 {
        last = Some(t.train_epoch(&train, |_, _| {}).unwrap());
    }
    let (stats, eval) = (last.unwrap(), t.evaluate(&test).unwrap());
    eprintln!("goodness decisions {stats:?}; held-out test {eval:?}");
    assert!(
        stats.accuracy > 0.8,
        "goodness separates the data: {stats:?}"
    );
    assert!(eval.accuracy > 0.8, "prediction by goodness: {eval:?}");
}

#[cfg(feature = "gpu")]
#[test]
fn ff_on_the_gpu_matches_the_cpu_and_resumes_bit_for_bit() {
    let d = data(48, 12, 3, 6);
    let make = |backend: Box<dyn plasticity::backend::Backend>| {
        let mut network = net(12, &[6, 5], 3, 2);
        randomize_params(&mut network, 0.8, 4);
        let ff = Box::new(ForwardForward::default());
        Trainer::with_learner_backend(network, config(16, 1e-2), ff, backend).unwrap()
    };
    let mut cpu = make(Box::new(CpuBackend::new()));
    for _ in 0..2 {
        cpu.train_epoch(&d, |_, _| {}).unwrap();
    }
    // The negative-label choice and its stream resume where they were.
    common::assert_resumes_bit_for_bit(&mut cpu, &d);
    let Some(gpu) = gpu() else { return };
    let (mut on_cpu, mut on_gpu) = common::gpu::assert_gpu_run_matches_cpu(make, gpu, &d, 16, 3);
    let (ec, eg) = (on_cpu.evaluate(&d).unwrap(), on_gpu.evaluate(&d).unwrap());
    assert!((ec.accuracy - eg.accuracy).abs() < 0.05, "{ec:?} vs {eg:?}");
}

#[test]
fn ff_refuses_a_threshold_bounded_layers_cannot_reach() {
    for act in [Activation::Tanh, Activation::Sigmoid] {
        let net = common::build_net(12, &[6], act, 3, Activation::Identity, 1);
        let ff = Box::new(ForwardForward::default());
        let err = Trainer::with_learner(net.clone(), config(4, 1e-3), ff, Device::Cpu).unwrap_err();
        let text = err.to_string();
        assert!(
            matches!(err, plasticity::Error::InvalidConfig(_)) && text.contains("threshold"),
            "{text}"
        );
        let reachable = Box::new(ForwardForward::default().with_threshold(0.5));
        Trainer::with_learner(net, config(4, 1e-3), reachable, Device::Cpu).unwrap();
    }
}
