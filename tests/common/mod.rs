//! Shared helpers for the integration tests: seeded random data and parameters, and an
//! independent f64 reference implementation of the forward pass, the activations and
//! the losses (written from the documented formulas, not from the crate's code).

// Each test binary uses a different subset of these helpers.
#![allow(dead_code)]

#[cfg(feature = "gpu")]
pub mod gpu;

use plasticity::data::Dataset;
use plasticity::{Activation, LayerSpec, Loss, Network};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// Slope of leaky relu for negative inputs, as documented on `Activation::LeakyRelu`.
pub const LEAKY_SLOPE: f64 = 0.01;

/// A seeded generator for test data.
pub fn rng(seed: u64) -> ChaCha8Rng {
    ChaCha8Rng::seed_from_u64(seed)
}

/// `n` samples of `dim` features uniform in `[-1, 1)`, labels uniform in `0..classes`.
pub fn random_dataset(n: usize, dim: usize, classes: usize, seed: u64) -> Dataset {
    let mut r = rng(seed);
    let features: Vec<f32> = (0..n * dim).map(|_| r.random_range(-1.0..1.0)).collect();
    let labels: Vec<u32> = (0..n).map(|_| r.random_range(0..classes as u32)).collect();
    Dataset::new(features, labels, dim, classes).expect("valid random dataset")
}

/// Replaces every parameter of `net` (weights AND biases) by a uniform draw in
/// `[-scale, scale)`, so bias gradients and bias handling are exercised too.
pub fn randomize_params(net: &mut Network, scale: f32, seed: u64) {
    let mut r = rng(seed);
    let values: Vec<f32> = (0..net.params().len())
        .map(|_| r.random_range(-scale..scale))
        .collect();
    net.set_params(&values).expect("finite parameters");
}

/// Builds a network `inputs -> hidden... (hidden_act) -> outputs (output_act)`.
pub fn build_net(
    inputs: usize,
    hidden: &[usize],
    hidden_act: Activation,
    outputs: usize,
    output_act: Activation,
    seed: u64,
) -> Network {
    Network::builder(inputs)
        .hidden(hidden, hidden_act)
        .dense(outputs, output_act)
        .seed(seed)
        .build()
        .expect("valid network")
}

/// `(weights offset, bias offset)` of every layer in the documented flat layout
/// `W_0, b_0, W_1, b_1, ...` with `W_l` of shape `outputs x inputs`, row-major.
/// Deliberately computed here rather than taken from `ParamLayout`.
pub fn offsets(layers: &[LayerSpec]) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    let mut at = 0;
    for l in layers {
        let w = at;
        at += l.inputs() * l.outputs();
        out.push((w, at));
        at += l.outputs();
    }
    out
}

/// Total parameter count of the documented layout.
pub fn param_count(layers: &[LayerSpec]) -> usize {
    layers.iter().map(|l| l.outputs() * (l.inputs() + 1)).sum()
}

/// `f(z)` in f64.
pub fn act(a: Activation, z: f64) -> f64 {
    match a {
        Activation::Identity => z,
        Activation::Relu => z.max(0.0),
        Activation::LeakyRelu => {
            if z > 0.0 {
                z
            } else {
                LEAKY_SLOPE * z
            }
        }
        Activation::Tanh => z.tanh(),
        Activation::Sigmoid => 1.0 / (1.0 + (-z).exp()),
    }
}

/// `f'(z)` in f64, from the pre-activation.
pub fn act_deriv(a: Activation, z: f64) -> f64 {
    match a {
        Activation::Identity => 1.0,
        Activation::Relu => {
            if z > 0.0 {
                1.0
            } else {
                0.0
            }
        }
        Activation::LeakyRelu => {
            if z > 0.0 {
                1.0
            } else {
                LEAKY_SLOPE
            }
        }
        Activation::Tanh => 1.0 - z.tanh().powi(2),
        Activation::Sigmoid => {
            let s = 1.0 / (1.0 + (-z).exp());
            s * (1.0 - s)
        }
    }
}

/// One sample's forward pass in f64: `zs[l]` is layer `l`'s pre-activation,
/// `hs[0]` the input and `hs[l + 1]` layer `l`'s output.
#[derive(Debug, Clone)]
pub struct Trace {
    pub zs: Vec<Vec<f64>>,
    pub hs: Vec<Vec<f64>>,
}

impl Trace {
    /// The network output.
    pub fn output(&self) -> &[f64] {
        self.hs.last().expect("at least the input")
    }
}

/// Forward pass of one sample `x` through `layers` with f64 parameters `params`
/// (documented layout).
pub fn forward(layers: &[LayerSpec], params: &[f64], x: &[f64]) -> Trace {
    assert_eq!(params.len(), param_count(layers));
    let offs = offsets(layers);
    let mut zs = Vec::with_capacity(layers.len());
    let mut hs = vec![x.to_vec()];
    for (l, spec) in layers.iter().enumerate() {
        let (w0, b0) = offs[l];
        let input = &hs[l];
        assert_eq!(input.len(), spec.inputs());
        let z: Vec<f64> = (0..spec.outputs())
            .map(|i| {
                let row = &params[w0 + i * spec.inputs()..w0 + (i + 1) * spec.inputs()];
                params[b0 + i] + row.iter().zip(input).map(|(w, v)| w * v).sum::<f64>()
            })
            .collect();
        let h = z.iter().map(|&v| act(spec.activation(), v)).collect();
        zs.push(z);
        hs.push(h);
    }
    Trace { zs, hs }
}

/// One sample's loss: `-Σ t log softmax(y)` or `Σ (y - t)² / K`, `t` one-hot of `label`.
pub fn sample_loss(loss: Loss, y: &[f64], label: usize) -> f64 {
    match loss {
        Loss::SoftmaxCrossEntropy => {
            let max = y.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
            let log_sum = y.iter().map(|v| (v - max).exp()).sum::<f64>().ln() + max;
            log_sum - y[label]
        }
        Loss::MeanSquaredError => {
            let k = y.len() as f64;
            y.iter()
                .enumerate()
                .map(|(c, v)| {
                    let t = if c == label { 1.0 } else { 0.0 };
                    (v - t).powi(2) / k
                })
                .sum()
        }
    }
}

/// `∂ sample_loss / ∂y` for one sample.
pub fn sample_loss_grad(loss: Loss, y: &[f64], label: usize) -> Vec<f64> {
    match loss {
        Loss::SoftmaxCrossEntropy => {
            let max = y.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
            let sum: f64 = y.iter().map(|v| (v - max).exp()).sum();
            y.iter()
                .enumerate()
                .map(|(c, v)| (v - max).exp() / sum - if c == label { 1.0 } else { 0.0 })
                .collect()
        }
        Loss::MeanSquaredError => {
            let k = y.len() as f64;
            y.iter()
                .enumerate()
                .map(|(c, v)| 2.0 * (v - if c == label { 1.0 } else { 0.0 }) / k)
                .collect()
        }
    }
}

/// The samples at `indices` as f64 feature vectors, with their labels.
pub fn samples64(data: &Dataset, indices: &[usize]) -> (Vec<Vec<f64>>, Vec<usize>) {
    let xs = indices
        .iter()
        .map(|&i| {
            data.sample(i)
                .expect("index in range")
                .iter()
                .map(|&v| f64::from(v))
                .collect()
        })
        .collect();
    let labels = indices.iter().map(|&i| data.labels()[i] as usize).collect();
    (xs, labels)
}

/// Batch-mean loss of the samples at `indices`, all in f64.
pub fn batch_loss(
    layers: &[LayerSpec],
    params: &[f64],
    loss: Loss,
    xs: &[Vec<f64>],
    labels: &[usize],
) -> f64 {
    let total: f64 = xs
        .iter()
        .zip(labels)
        .map(|(x, &label)| sample_loss(loss, forward(layers, params, x).output(), label))
        .sum();
    total / xs.len() as f64
}

/// f32 parameters widened to f64 (exactly).
pub fn widen(values: &[f32]) -> Vec<f64> {
    values.iter().map(|&v| f64::from(v)).collect()
}

/// The transpose of a row-major `rows x cols` matrix.
pub fn transpose(m: &[f32], rows: usize, cols: usize) -> Vec<f32> {
    assert_eq!(m.len(), rows * cols);
    let mut t = vec![0.0; m.len()];
    for r in 0..rows {
        for c in 0..cols {
            t[c * rows + r] = m[r * cols + c];
        }
    }
    t
}

/// Smallest `|z|` over the pre-activations of every relu / leaky-relu layer for the
/// given samples (infinity if there is none): how far the batch stays from a kink,
/// where neither a finite difference nor an f32-vs-f64 comparison is meaningful.
pub fn min_kink_distance(layers: &[LayerSpec], params: &[f64], xs: &[Vec<f64>]) -> f64 {
    let kinked = |a: Activation| matches!(a, Activation::Relu | Activation::LeakyRelu);
    let mut min = f64::INFINITY;
    for x in xs {
        let trace = forward(layers, params, x);
        for (spec, z) in layers.iter().zip(&trace.zs) {
            if kinked(spec.activation()) {
                min = z.iter().fold(min, |m, v| m.min(v.abs()));
            }
        }
    }
    min
}

/// MNIST from the repository's `data/mnist`, decoded once per test binary (about a
/// second) and shared by its tests.
pub fn mnist() -> &'static plasticity::data::Mnist {
    use plasticity::data::Mnist;
    static DATA: std::sync::OnceLock<Mnist> = std::sync::OnceLock::new();
    DATA.get_or_init(|| Mnist::load(Mnist::bundled_dir()).expect("bundled MNIST in data/mnist"))
}

/// The learner tests' small conv net: 1x6x6 input, conv 3@3x3 (padding 1, tanh), max
/// pool 2, flatten, dense 12 tanh, dense 4.
pub fn small_conv_net() -> Network {
    use plasticity::layer::{Conv2d, Shape};
    Network::builder_for(Shape::image(1, 6, 6))
        .conv2d(Conv2d::new(3, 3).padding(1), Activation::Tanh)
        .max_pool2d(2)
        .flatten()
        .dense(12, Activation::Tanh)
        .dense(4, Activation::Identity)
        .seed(3)
        .build()
        .expect("valid conv net")
}

/// Asserts two runs' values agree within `1e-4 + 1e-3 |cpu|`: the tolerance for
/// parameters and learner tensors after a few epochs on two backends, where the GPU's
/// rounding compounds over the steps.
pub fn assert_trained_close(cpu: &[f32], gpu: &[f32], what: &str) {
    assert_eq!(cpu.len(), gpu.len(), "{what}: lengths");
    for (i, (a, b)) in cpu.iter().zip(gpu).enumerate() {
        assert!(
            (a - b).abs() < 1e-4 + 1e-3 * a.abs(),
            "{what} {i}: cpu {a} gpu {b}"
        );
    }
}

/// Saves `trainer` to checkpoint bytes, loads them through the built-in loader (which
/// builds the learner by its name), trains both one more epoch on `data`, and asserts
/// their parameters agree bit for bit. Returns the loaded trainer.
pub fn assert_resumes_bit_for_bit(
    trainer: &mut plasticity::Trainer,
    data: &Dataset,
) -> plasticity::Trainer {
    let bytes = trainer.checkpoint().unwrap().to_bytes().unwrap();
    let back = plasticity::Checkpoint::from_bytes(&bytes, std::path::Path::new("resume")).unwrap();
    assert_eq!(back.learner, trainer.learner_name());
    let mut resumed = plasticity::Trainer::from_checkpoint(&back, plasticity::Device::Cpu).unwrap();
    // And from a file, which `load_checkpoint` uses up as it restores.
    let path = std::env::temp_dir().join(format!(
        "plasticity-resume-{}-{}.safetensors",
        trainer.learner_name(),
        std::process::id()
    ));
    trainer.save_checkpoint(&path).unwrap();
    let mut from_file =
        plasticity::Trainer::load_checkpoint(&path, plasticity::Device::Cpu).unwrap();
    std::fs::remove_file(&path).unwrap();
    trainer.train_epoch(data, |_, _| {}).unwrap();
    for other in [&mut resumed, &mut from_file] {
        other.train_epoch(data, |_, _| {}).unwrap();
        assert_eq!(
            trainer.network().unwrap().params(),
            other.network().unwrap().params(),
            "{} resumes bit for bit",
            trainer.learner_name()
        );
    }
    resumed
}
