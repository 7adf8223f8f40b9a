//! Equilibrium propagation's defining property (Scellier & Bengio 2017; Ernoult et al.
//! 2019): as the nudging strength β shrinks, the EP update approaches the gradient
//! that backpropagation through time computes through the same settling dynamics.
//! The BPTT reference here is an independent f64 implementation of the documented
//! dynamics `s_l ← ρ_l(W_l s_{l-1} + b_l + W_{l+1}^T s_{l+1})` from `s = 0`, with the
//! softmax cross-entropy of the final output as the loss.

mod common;

#[cfg(feature = "gpu")]
use common::gpu::gpu;
use common::{act, act_deriv, offsets, random_dataset, randomize_params};
#[cfg(feature = "gpu")]
use plasticity::backend::CpuBackend;
use plasticity::data::Dataset;
use plasticity::learner::EquilibriumProp;
use plasticity::metrics::angle_degrees;
use plasticity::{Activation, Device, LayerSpec, Network, Optimizer, TrainConfig, Trainer};

const T: usize = 80;

fn net(hidden_act: Activation) -> Network {
    let mut net = common::build_net(6, &[7, 5], hidden_act, 4, Activation::Identity, 3);
    // Small weights: the settling iteration contracts, so T iterations converge.
    randomize_params(&mut net, 0.4, 11);
    net
}

fn config(batch: usize) -> TrainConfig {
    TrainConfig {
        optimizer: Optimizer::adam(1e-3),
        batch_size: batch,
        ..TrainConfig::default()
    }
}

/// The loss gradient by BPTT through `T` synchronous iterations, laid out like the
/// parameters (batch mean).
fn bptt(layers: &[LayerSpec], params: &[f32], data: &Dataset, samples: &[usize]) -> Vec<f64> {
    let p: Vec<f64> = params.iter().map(|&v| v as f64).collect();
    let offs = offsets(layers);
    let n = layers.len();
    let w = |l: usize, i: usize, j: usize| p[offs[l].0 + i * layers[l].inputs() + j];
    let mut grad = vec![0.0; p.len()];
    for &s in samples {
        let dim = data.dim();
        let x: Vec<f64> = data.features()[s * dim..(s + 1) * dim]
            .iter()
            .map(|&v| v as f64)
            .collect();
        let label = data.labels()[s] as usize;
        // Forward: states[t][l] and pre-activations pres[t][l], t = 1..=T.
        let mut states = vec![layers
            .iter()
            .map(|l| vec![0.0; l.outputs()])
            .collect::<Vec<_>>()];
        let mut pres = vec![Vec::new()];
        for _ in 0..T {
            let prev = states.last().unwrap();
            let mut pre: Vec<Vec<f64>> = Vec::new();
            for l in 0..n {
                let below = if l == 0 { &x } else { &prev[l - 1] };
                let z: Vec<f64> = (0..layers[l].outputs())
                    .map(|i| {
                        let mut v = p[offs[l].1 + i];
                        v += (0..layers[l].inputs())
                            .map(|j| w(l, i, j) * below[j])
                            .sum::<f64>();
                        if l + 1 < n {
                            v += (0..layers[l + 1].outputs())
                                .map(|k| w(l + 1, k, i) * prev[l + 1][k])
                                .sum::<f64>();
                        }
                        v
                    })
                    .collect();
                pre.push(z);
            }
            let next = pre
                .iter()
                .zip(layers)
                .map(|(z, l)| z.iter().map(|&v| act(l.activation(), v)).collect())
                .collect();
            pres.push(pre);
            states.push(next);
        }
        // Backward from the loss of the final output.
        let out = &states[T][n - 1];
        let max = out.iter().cloned().fold(f64::MIN, f64::max);
        let sum: f64 = out.iter().map(|v| (v - max).exp()).sum();
        let mut adj: Vec<Vec<f64>> = layers.iter().map(|l| vec![0.0; l.outputs()]).collect();
        adj[n - 1] = out
            .iter()
            .enumerate()
            .map(|(k, v)| {
                ((v - max).exp() / sum - f64::from(u8::from(k == label))) / samples.len() as f64
            })
            .collect();
        for t in (1..=T).rev() {
            let prev = &states[t - 1];
            let g: Vec<Vec<f64>> = (0..n)
                .map(|l| {
                    adj[l]
                        .iter()
                        .zip(&pres[t][l])
                        .map(|(a, &z)| a * act_deriv(layers[l].activation(), z))
                        .collect()
                })
                .collect();
            let mut next: Vec<Vec<f64>> = layers.iter().map(|l| vec![0.0; l.outputs()]).collect();
            for l in 0..n {
                let below = if l == 0 { &x } else { &prev[l - 1] };
                for i in 0..layers[l].outputs() {
                    grad[offs[l].1 + i] += g[l][i];
                    for j in 0..layers[l].inputs() {
                        grad[offs[l].0 + i * layers[l].inputs() + j] += g[l][i] * below[j];
                        if l > 0 {
                            next[l - 1][j] += w(l, i, j) * g[l][i];
                        }
                    }
                }
                if l + 1 < n {
                    // The top-down term W_{l+1}^T s_{l+1} of layer l.
                    for k in 0..layers[l + 1].outputs() {
                        for i in 0..layers[l].outputs() {
                            grad[offs[l + 1].0 + k * layers[l].outputs() + i] +=
                                prev[l + 1][k] * g[l][i];
                            next[l + 1][k] += w(l + 1, k, i) * g[l][i];
                        }
                    }
                }
            }
            adj = next;
        }
    }
    grad
}

fn ep_update(
    net: &Network,
    learner: EquilibriumProp,
    data: &Dataset,
    samples: &[usize],
) -> Vec<f32> {
    let mut t = Trainer::with_learner(
        net.clone(),
        config(samples.len()),
        Box::new(learner),
        Device::Cpu,
    )
    .unwrap();
    t.update_direction(data, samples).unwrap()
}

fn angle(ep: &[f32], bptt: &[f64]) -> f64 {
    let b: Vec<f32> = bptt.iter().map(|&v| v as f32).collect();
    angle_degrees(ep, &b).unwrap()
}

#[test]
fn ep_update_approaches_the_bptt_gradient_as_beta_shrinks() {
    for hidden_act in [Activation::Sigmoid, Activation::Tanh] {
        let net = net(hidden_act);
        let data = random_dataset(8, 6, 4, 5);
        let samples: Vec<usize> = (0..8).collect();
        let reference = bptt(net.layers(), net.params(), &data, &samples);
        let one_sided = |beta: f32| {
            let ep = EquilibriumProp::default()
                .with_steps(T, T)
                .with_beta(beta)
                .symmetric(false);
            angle(&ep_update(&net, ep, &data, &samples), &reference)
        };
        let symmetric = |beta: f32| {
            let ep = EquilibriumProp::default()
                .with_steps(T, T)
                .with_beta(beta)
                .symmetric(true);
            angle(&ep_update(&net, ep, &data, &samples), &reference)
        };
        let angles: Vec<f64> = [0.01, 0.3, 1.0, 3.0].map(one_sided).to_vec();
        eprintln!("{hidden_act}: one-sided angles at β = 0.01, 0.3, 1, 3: {angles:?}");
        assert!(angles[0] < 5.0, "{hidden_act}: {angles:?}");
        assert!(
            angles.windows(2).all(|w| w[0] < w[1]),
            "{hidden_act}: the angle grows with β: {angles:?}"
        );
        // Symmetric nudging cancels the first-order bias: far closer at the same β.
        for (beta, one) in [(0.01, angles[0]), (0.3, angles[1])] {
            let sym = symmetric(beta);
            eprintln!("{hidden_act}: at β = {beta} symmetric {sym:.4}° vs one-sided {one:.4}°");
            assert!(
                sym < 0.5 * one,
                "{hidden_act} β = {beta}: symmetric {sym} vs one-sided {one}"
            );
        }
        // Too few nudged iterations truncate the gradient (Ernoult et al. 2019).
        let short = EquilibriumProp::default()
            .with_steps(T, 1)
            .with_beta(0.01)
            .symmetric(false);
        let truncated = angle(&ep_update(&net, short, &data, &samples), &reference);
        assert!(
            truncated > angles[0] + 5.0,
            "{hidden_act}: K = 1 gives {truncated}°"
        );
    }
}

/// `n` samples whose label is the largest of their first four features.
fn argmax_task(n: usize, seed: u64) -> Dataset {
    let features = random_dataset(n, 6, 4, seed).features().to_vec();
    let labels = features
        .chunks(6)
        .map(|x| (0..4).fold(0, |best, k| if x[k] > x[best] { k } else { best }) as u32)
        .collect();
    Dataset::new(features, labels, 6, 4).unwrap()
}

#[test]
fn ep_predicts_with_its_free_phase_and_learns() {
    let data = argmax_task(256, 9);
    let net = common::build_net(6, &[32], Activation::Sigmoid, 4, Activation::Identity, 2);
    let config = TrainConfig {
        optimizer: Optimizer::adam(0.01),
        ..config(16)
    };
    let learner = EquilibriumProp::default()
        .with_steps(30, 10)
        .with_beta(0.2)
        .symmetric(true);
    let mut ep =
        Trainer::with_learner(net.clone(), config, Box::new(learner), Device::Cpu).unwrap();
    let mut bp = Trainer::new(net, config, Device::Cpu).unwrap();
    let before = ep.evaluate(&data).unwrap();
    for _ in 0..60 {
        ep.train_epoch(&data, |_, _| {}).unwrap();
        bp.train_epoch(&data, |_, _| {}).unwrap();
    }
    let (after, bp) = (ep.evaluate(&data).unwrap(), bp.evaluate(&data).unwrap());
    eprintln!("EP {before:?} -> {after:?}; BP {bp:?}");
    assert!(
        after.loss < 0.6 * before.loss && after.accuracy > bp.accuracy - 0.05,
        "EP {before:?} -> {after:?}; BP {bp:?}"
    );
}

#[cfg(feature = "gpu")]
#[test]
fn ep_on_the_gpu_matches_the_cpu_and_resumes_bit_for_bit() {
    let data = random_dataset(48, 6, 4, 4);
    let make = |backend: Box<dyn plasticity::backend::Backend>| {
        let ep = EquilibriumProp::default().with_steps(12, 4).symmetric(true);
        Trainer::with_learner_backend(net(Activation::Tanh), config(16), Box::new(ep), backend)
            .unwrap()
    };
    let mut cpu = make(Box::new(CpuBackend::new()));
    for _ in 0..2 {
        cpu.train_epoch(&data, |_, _| {}).unwrap();
    }
    common::assert_resumes_bit_for_bit(&mut cpu, &data);
    let Some(gpu) = gpu() else { return };
    let (mut on_cpu, mut on_gpu) = common::gpu::assert_gpu_run_matches_cpu(make, gpu, &data, 16, 3);
    // The prediction is the free phase's: it agrees too.
    let (ec, eg) = (
        on_cpu.evaluate(&data).unwrap(),
        on_gpu.evaluate(&data).unwrap(),
    );
    assert!((ec.loss - eg.loss).abs() < 1e-3, "{ec:?} vs {eg:?}");
}

#[test]
fn per_sample_state_reads_back_for_the_last_batch_even_a_short_one() {
    let data = random_dataset(50, 6, 4, 8);
    let mut t = Trainer::with_learner(
        net(Activation::Sigmoid),
        config(16),
        Box::new(EquilibriumProp::default()),
        Device::Cpu,
    )
    .unwrap();
    t.train_epoch(&data, |_, _| {}).unwrap();
    // 50 = 3 x 16 + 2: the nudged state of the last two samples, 7 units each.
    let nudged = t.tensor("ep.nudged.0").unwrap();
    assert_eq!(nudged.len(), 7 * 2);
    assert!(
        nudged.iter().all(|v| v.is_finite() && *v != 0.0),
        "{nudged:?}"
    );
}
