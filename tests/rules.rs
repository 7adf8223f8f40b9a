//! The learning rules against each other and against hand-computed f64 updates:
//! FA with `B = W` is BP, DFA with `B = W^T` on one hidden layer is BP, DFA's and FA's
//! hidden deltas follow their formulas, the output layer is always BP's, feedback
//! matrices have the documented shapes and distributions and stay fixed, and runs
//! are reproducible from the seed.

mod common;

use common::{
    act_deriv, build_net, forward, min_kink_distance, offsets, random_dataset, randomize_params,
    sample_loss_grad, samples64, transpose, widen,
};
use plasticity::data::Dataset;
use plasticity::{
    Activation, Device, FeedbackInit, Loss, Network, Optimizer, Rule, TrainConfig, Trainer,
};

fn config(rule: Rule, optimizer: Optimizer, batch_size: usize) -> TrainConfig {
    TrainConfig {
        rule,
        optimizer,
        loss: Loss::SoftmaxCrossEntropy,
        batch_size,
        feedback_init: FeedbackInit::Uniform,
        ..TrainConfig::default()
    }
}

fn trainer(net: &Network, config: TrainConfig) -> Trainer {
    Trainer::new(net.clone(), config, Device::Cpu).expect("trainer")
}

/// A network with random weights AND biases.
fn random_net(inputs: usize, hidden: &'static [usize], act: Activation, seed: u64) -> Network {
    let mut net = build_net(inputs, hidden, act, 3, Activation::Identity, seed);
    randomize_params(&mut net, 0.7, seed + 1);
    net
}

/// Sets FA's feedback matrix `i` to the trainer's current `W_{i+1}`.
fn sync_fa_feedback(fa: &mut Trainer) {
    let net = fa.network().unwrap();
    for i in 0..net.layers().len() - 1 {
        fa.set_feedback(i, net.weights(i + 1).unwrap()).unwrap();
    }
}

/// Parameter range of layer `l` (weights then bias), in the documented layout.
fn layer_range(net: &Network, l: usize) -> std::ops::Range<usize> {
    let (w, b) = offsets(net.layers())[l];
    w..b + net.layers()[l].outputs()
}

/// The rule's update direction computed by hand in f64 from the formulas in the
/// crate's docs: output error `e = ∂L/∂y ⊙ f'(z_L)` of the batch mean, then
/// BP: `δ_l = (W_{l+1}^T δ_{l+1}) ⊙ f'(z_l)`,
/// FA: `δ_l = (B_l^T δ_{l+1}) ⊙ f'(z_l)` with `B_l` shaped like `W_{l+1}`,
/// DFA: `δ_l = (B_l e) ⊙ f'(z_l)` with `B_l` of shape `hidden_l x outputs`;
/// IFA: `δ_0 = (B_0 e) ⊙ f'(z_0)`, `δ_l = (W_l δ_{l-1}) ⊙ f'(z_l)` going up;
/// uSF/brSF/frSF: FA's formula with the `B` the step used (read back after it);
/// DRTP: `δ_l = -(B_l t) / batch ⊙ f'(z_l)`, `t` one-hot; last-layer-only: `δ_l = 0`;
/// and `∂W_l = Σ_batch δ_l h_{l-1}^T`, `∂b_l = Σ_batch δ_l`.
fn reference_update(
    net: &Network,
    rule: Rule,
    feedback: &[Vec<f32>],
    loss: Loss,
    data: &Dataset,
    indices: &[usize],
) -> Vec<f64> {
    let layers = net.layers();
    let params = widen(net.params());
    let offs = offsets(layers);
    let last = layers.len() - 1;
    let (xs, labels) = samples64(data, indices);
    let batch = xs.len() as f64;
    let mut grad = vec![0.0; params.len()];
    for (x, &label) in xs.iter().zip(&labels) {
        let trace = forward(layers, &params, x);
        let mut deltas: Vec<Vec<f64>> = vec![Vec::new(); layers.len()];
        deltas[last] = sample_loss_grad(loss, trace.output(), label)
            .iter()
            .zip(&trace.zs[last])
            .map(|(g, &z)| g / batch * act_deriv(layers[last].activation(), z))
            .collect();
        // IFA carries its delta upwards, every other rule downwards (or not at all).
        let order: Vec<usize> = match rule {
            Rule::IndirectFeedbackAlignment => (0..last).collect(),
            _ => (0..last).rev().collect(),
        };
        for l in order {
            let width = layers[l].outputs();
            let back: Vec<f64> = match rule {
                Rule::Backprop
                | Rule::FeedbackAlignment
                | Rule::UniformSignSymmetry
                | Rule::BatchRandomSignSymmetry
                | Rule::FixedRandomSignSymmetry => {
                    // Matrix shaped like W_{l+1}: (width_{l+1} x width_l), used transposed.
                    let m: Vec<f64> = match rule {
                        Rule::Backprop => params[offs[l + 1].0..offs[l + 1].1].to_vec(),
                        _ => widen(&feedback[l]),
                    };
                    let next = &deltas[l + 1];
                    (0..width)
                        .map(|i| (0..next.len()).map(|k| m[k * width + i] * next[k]).sum())
                        .collect()
                }
                Rule::DirectFeedbackAlignment => {
                    let b = widen(&feedback[l]);
                    let e = &deltas[last];
                    (0..width)
                        .map(|i| (0..e.len()).map(|k| b[i * e.len() + k] * e[k]).sum())
                        .collect()
                }
                Rule::IndirectFeedbackAlignment if l == 0 => {
                    let b = widen(&feedback[0]);
                    let e = &deltas[last];
                    (0..width)
                        .map(|i| (0..e.len()).map(|k| b[i * e.len() + k] * e[k]).sum())
                        .collect()
                }
                Rule::IndirectFeedbackAlignment => {
                    // W_l is width_l x width_{l-1}, used as is.
                    let w = &params[offs[l].0..offs[l].1];
                    let below = &deltas[l - 1];
                    (0..width)
                        .map(|i| {
                            (0..below.len())
                                .map(|k| w[i * below.len() + k] * below[k])
                                .sum()
                        })
                        .collect()
                }
                Rule::DirectRandomTargetProjection => {
                    let b = widen(&feedback[l]);
                    let classes = layers[last].outputs();
                    (0..width)
                        .map(|i| -b[i * classes + label] / batch)
                        .collect()
                }
                Rule::LastLayerOnly => vec![0.0; width],
            };
            deltas[l] = back
                .iter()
                .zip(&trace.zs[l])
                .map(|(d, &z)| d * act_deriv(layers[l].activation(), z))
                .collect();
        }
        for (l, spec) in layers.iter().enumerate() {
            let (w0, b0) = offs[l];
            for i in 0..spec.outputs() {
                grad[b0 + i] += deltas[l][i];
                for m in 0..spec.inputs() {
                    grad[w0 + i * spec.inputs() + m] += deltas[l][i] * trace.hs[l][m];
                }
            }
        }
    }
    grad
}

fn assert_close(actual: &[f32], expected: &[f64], what: &str) {
    assert_eq!(actual.len(), expected.len(), "{what}: lengths");
    let mut largest: f64 = 0.0;
    for (p, (&a, &b)) in actual.iter().zip(expected).enumerate() {
        // f32 vs f64 of the same formulas: errors are a few 1e-7 (see tests/gradients.rs);
        // the largest component is asserted to exceed 1e-3 (500x the absolute tolerance).
        let tol = 2e-6 + 2e-5 * b.abs();
        assert!(
            (f64::from(a) - b).abs() <= tol,
            "{what}: parameter {p} is {a}, expected {b}"
        );
        largest = largest.max(b.abs());
    }
    assert!(
        largest > 1e-3,
        "{what}: the update is too small to test anything"
    );
}

// ---------------------------------------------------------------------------------
// FA with B = W is backprop

#[test]
fn fa_with_feedback_equal_to_forward_weights_is_backprop_bit_for_bit() {
    let cases: [(&'static [usize], Activation); 3] = [
        (&[7, 4], Activation::Tanh),
        (&[7, 4], Activation::Relu),
        (&[6, 5, 5], Activation::Sigmoid),
    ];
    for (seed, (hidden, act)) in cases.into_iter().enumerate() {
        let net = random_net(5, hidden, act, 10 + seed as u64);
        let data = random_dataset(30, 5, 3, 50 + seed as u64);
        let cfg = |rule| config(rule, Optimizer::sgd(0.2), 6);
        let mut bp = trainer(&net, cfg(Rule::Backprop));
        let mut fa = trainer(&net, cfg(Rule::FeedbackAlignment));
        let first: Vec<usize> = (0..6).collect();

        // Random feedback: the hidden updates differ, so the comparison below means
        // something.
        assert_ne!(
            fa.update_direction(&data, &first).unwrap(),
            bp.update_direction(&data, &first).unwrap()
        );

        sync_fa_feedback(&mut fa);
        assert_eq!(
            fa.update_direction(&data, &first).unwrap(),
            bp.update_direction(&data, &first).unwrap(),
            "{act} {hidden:?}: FA with B_i = W_i+1 must give BP's update exactly"
        );

        // Five SGD steps on different batches, re-synchronising B with the (moving) W
        // before each: identical weights throughout.
        for step in 0..5 {
            let batch: Vec<usize> = (step * 6..step * 6 + 6).collect();
            sync_fa_feedback(&mut fa);
            bp.train_batch(&data, &batch).unwrap();
            fa.train_batch(&data, &batch).unwrap();
            assert_eq!(
                fa.network().unwrap().params(),
                bp.network().unwrap().params(),
                "{act} {hidden:?}: weights differ after step {}",
                step + 1
            );
        }
        assert_ne!(
            bp.network().unwrap().params(),
            net.params(),
            "training did nothing"
        );
    }
}

#[test]
fn fa_feedback_stays_fixed_while_the_weights_move() {
    // B := W once, then train without re-synchronising: B must not follow W, so FA
    // departs from BP from the second step on (the first uses B = W exactly).
    let net = random_net(5, &[7, 4], Activation::Tanh, 3);
    let data = random_dataset(30, 5, 3, 4);
    let cfg = |rule| config(rule, Optimizer::sgd(0.5), 6);
    let mut bp = trainer(&net, cfg(Rule::Backprop));
    let mut fa = trainer(&net, cfg(Rule::FeedbackAlignment));
    sync_fa_feedback(&mut fa);
    let b_before: Vec<Vec<f32>> = (0..2).map(|i| fa.feedback(i).unwrap()).collect();

    let first: Vec<usize> = (0..6).collect();
    bp.train_batch(&data, &first).unwrap();
    fa.train_batch(&data, &first).unwrap();
    assert_eq!(
        fa.network().unwrap().params(),
        bp.network().unwrap().params()
    );
    for step in 1..5 {
        let batch: Vec<usize> = (step * 6..step * 6 + 6).collect();
        bp.train_batch(&data, &batch).unwrap();
        fa.train_batch(&data, &batch).unwrap();
    }
    let (fa_net, bp_net) = (fa.network().unwrap(), bp.network().unwrap());
    let b_after: Vec<Vec<f32>> = (0..2).map(|i| fa.feedback(i).unwrap()).collect();
    assert_eq!(b_before, b_after, "training changed FA's feedback matrices");
    assert_ne!(
        fa_net.weights(0),
        bp_net.weights(0),
        "FA tracked W instead of B"
    );
    assert_ne!(b_after[1], fa_net.weights(2).unwrap(), "B_1 followed W_2");
}

// ---------------------------------------------------------------------------------
// DFA

#[test]
fn dfa_one_hidden_layer_with_feedback_w1_transposed_is_backprop() {
    for (seed, act) in [Activation::Tanh, Activation::LeakyRelu, Activation::Sigmoid]
        .into_iter()
        .enumerate()
    {
        let net = random_net(5, &[8], act, 20 + seed as u64);
        let data = random_dataset(8, 5, 3, 30 + seed as u64);
        let indices: Vec<usize> = (0..8).collect();
        let cfg = |rule| config(rule, Optimizer::sgd(0.1), 8);
        let mut bp = trainer(&net, cfg(Rule::Backprop));
        let mut dfa = trainer(&net, cfg(Rule::DirectFeedbackAlignment));
        assert_eq!(dfa.feedback_shapes().len(), 1);
        let w1 = net.weights(1).unwrap();
        dfa.set_feedback(0, &transpose(w1, 3, 8)).unwrap();
        let expected = bp.update_direction(&data, &indices).unwrap();
        let actual = dfa.update_direction(&data, &indices).unwrap();
        // The same sums, but DFA multiplies a row-major hidden x outputs matrix where
        // BP multiplies a transposed outputs x hidden one, so the GEMM kernel may
        // round differently: allow a few ulp, nothing more.
        for (p, (&a, &b)) in actual.iter().zip(&expected).enumerate() {
            assert!(
                (a - b).abs() <= 1e-6 * b.abs().max(1e-2),
                "{act}: parameter {p}: DFA {a} vs BP {b}"
            );
        }
        assert!(expected.iter().any(|g| g.abs() > 1e-2));
    }
}

#[test]
fn dfa_random_feedback_changes_hidden_updates_but_not_the_output_layers() {
    let net = random_net(5, &[7, 4], Activation::Tanh, 40);
    let data = random_dataset(6, 5, 3, 41);
    let indices: Vec<usize> = (0..6).collect();
    let bp_update = trainer(&net, config(Rule::Backprop, Optimizer::sgd(0.1), 6))
        .update_direction(&data, &indices)
        .unwrap();
    for rule in [Rule::DirectFeedbackAlignment, Rule::FeedbackAlignment] {
        let mut t = trainer(&net, config(rule, Optimizer::sgd(0.1), 6));
        let update = t.update_direction(&data, &indices).unwrap();
        let out = layer_range(&net, 2);
        assert_eq!(
            update[out.clone()],
            bp_update[out],
            "{rule}: the output layer's update must be BP's exactly"
        );
        for l in 0..2 {
            let r = layer_range(&net, l);
            let diff = update[r.clone()]
                .iter()
                .zip(&bp_update[r.clone()])
                .map(|(a, b)| (a - b).abs())
                .fold(0.0f32, f32::max);
            let scale = bp_update[r].iter().fold(0.0f32, |m, v| m.max(v.abs()));
            assert!(
                diff > 0.1 * scale,
                "{rule}: hidden layer {l}'s update is (nearly) BP's: max diff {diff}, scale {scale}"
            );
        }
    }
}

#[test]
fn dfa_hidden_updates_match_the_hand_computed_formula() {
    // δ_l = (B_l e) ⊙ f'(z_l) for both hidden layers of a 2-hidden-layer net, with the
    // trainer's own random B_l, for both losses and two feedback inits.
    let cases = [
        (
            Activation::Tanh,
            Loss::SoftmaxCrossEntropy,
            FeedbackInit::Uniform,
        ),
        (
            Activation::Sigmoid,
            Loss::MeanSquaredError,
            FeedbackInit::UnitUniform,
        ),
        (
            Activation::Tanh,
            Loss::MeanSquaredError,
            FeedbackInit::Gaussian,
        ),
    ];
    for (seed, (act, loss, feedback_init)) in cases.into_iter().enumerate() {
        let net = random_net(6, &[7, 5], act, 60 + seed as u64);
        let data = random_dataset(10, 6, 3, 70 + seed as u64);
        let indices = [9, 2, 5, 0, 7, 3];
        let cfg = TrainConfig {
            loss,
            feedback_init,
            ..config(Rule::DirectFeedbackAlignment, Optimizer::sgd(0.1), 8)
        };
        let mut dfa = trainer(&net, cfg);
        let shapes = dfa.feedback_shapes().to_vec();
        assert_eq!((shapes[0].rows, shapes[0].cols), (7, 3));
        assert_eq!((shapes[1].rows, shapes[1].cols), (5, 3));
        let feedback: Vec<Vec<f32>> = (0..2).map(|i| dfa.feedback(i).unwrap()).collect();
        let actual = dfa.update_direction(&data, &indices).unwrap();
        let expected = reference_update(
            &net,
            Rule::DirectFeedbackAlignment,
            &feedback,
            loss,
            &data,
            &indices,
        );
        for l in 0..3 {
            let r = layer_range(&net, l);
            assert_close(
                &actual[r.clone()],
                &expected[r],
                &format!("DFA {act} {loss} {feedback_init:?} layer {l}"),
            );
        }
    }
}

#[test]
fn fa_hidden_updates_match_the_hand_computed_formula() {
    // δ_l = (B_l^T δ_{l+1}) ⊙ f'(z_l), the chain through FA's own random B.
    for (seed, act) in [Activation::Tanh, Activation::Sigmoid]
        .into_iter()
        .enumerate()
    {
        let net = random_net(6, &[7, 5], act, 80 + seed as u64);
        let data = random_dataset(10, 6, 3, 90 + seed as u64);
        let indices = [1, 8, 4, 6, 2];
        let mut fa = trainer(
            &net,
            config(Rule::FeedbackAlignment, Optimizer::sgd(0.1), 8),
        );
        let feedback: Vec<Vec<f32>> = (0..2).map(|i| fa.feedback(i).unwrap()).collect();
        let actual = fa.update_direction(&data, &indices).unwrap();
        let expected = reference_update(
            &net,
            Rule::FeedbackAlignment,
            &feedback,
            Loss::SoftmaxCrossEntropy,
            &data,
            &indices,
        );
        for l in 0..3 {
            let r = layer_range(&net, l);
            assert_close(
                &actual[r.clone()],
                &expected[r],
                &format!("FA {act} layer {l}"),
            );
        }
    }
}

// ---------------------------------------------------------------------------------
// reproducibility

/// Four epochs of five batches (20 steps) with Adam; returns the final parameters.
fn run_20_steps(net: &Network, rule: Rule, data: &Dataset) -> Vec<f32> {
    let mut t = trainer(net, config(rule, Optimizer::adam(0.01), 8));
    for _ in 0..4 {
        t.train_epoch(data, |_, _| {}).unwrap();
    }
    assert_eq!(t.steps(), 20);
    t.network().unwrap().params().to_vec()
}

#[test]
fn same_seed_same_weights_different_seed_different_weights() {
    let data = random_dataset(40, 5, 3, 7);
    let net = build_net(5, &[7, 4], Activation::Tanh, 3, Activation::Identity, 5);
    // Same initial weights under another seed: only the seed-driven feedback draw
    // and batch order differ.
    let mut other = build_net(5, &[7, 4], Activation::Tanh, 3, Activation::Identity, 6);
    assert_ne!(other.params(), net.params());
    other.set_params(net.params()).unwrap();
    for rule in Rule::ALL {
        let a = run_20_steps(&net, rule, &data);
        let b = run_20_steps(&net, rule, &data);
        assert_eq!(a, b, "{rule}: same seed, different weights");
        assert_ne!(a, net.params(), "{rule}: training did nothing");
        let c = run_20_steps(&other, rule, &data);
        assert_ne!(a, c, "{rule}: a different seed gave identical weights");
    }
}

#[test]
fn feedback_matrices_are_a_function_of_the_seed_only() {
    let build = |seed, init| {
        Network::builder(5)
            .hidden(&[7, 4], Activation::Tanh)
            .dense(3, Activation::Identity)
            .init(init)
            .seed(seed)
            .build()
            .unwrap()
    };
    for rule in [Rule::FeedbackAlignment, Rule::DirectFeedbackAlignment] {
        let draw = |net: Network| {
            let mut t = trainer(&net, config(rule, Optimizer::sgd(0.1), 4));
            (0..2).map(|i| t.feedback(i).unwrap()).collect::<Vec<_>>()
        };
        let base = draw(build(1, plasticity::WeightInit::Xavier));
        // Independent streams: drawing weights differently does not shift feedback.
        assert_eq!(
            base,
            draw(build(1, plasticity::WeightInit::Kaiming)),
            "{rule}"
        );
        assert_ne!(
            base,
            draw(build(2, plasticity::WeightInit::Xavier)),
            "{rule}"
        );
        // The feedback of one layer is not a copy of another's or of a weight matrix.
        let net = build(1, plasticity::WeightInit::Xavier);
        assert_ne!(base[0][..12], base[1][..12], "{rule}");
        assert_ne!(base[1], net.weights(2).unwrap(), "{rule}");
    }
}

// ---------------------------------------------------------------------------------
// shapes, chain lengths and feedback distributions

#[test]
fn feedback_shapes_follow_each_rule() {
    let net = build_net(5, &[7, 4], Activation::Tanh, 3, Activation::Identity, 1);
    let shape = |rule| {
        trainer(&net, config(rule, Optimizer::sgd(0.1), 4))
            .feedback_shapes()
            .iter()
            .map(|s| (s.rows, s.cols))
            .collect::<Vec<_>>()
    };
    assert_eq!(shape(Rule::Backprop), vec![]);
    // FA: B_i shaped like W_{i+1} (outputs x inputs).
    assert_eq!(shape(Rule::FeedbackAlignment), vec![(4, 7), (3, 4)]);
    // DFA: B_i is hidden_i x outputs.
    assert_eq!(shape(Rule::DirectFeedbackAlignment), vec![(7, 3), (4, 3)]);
    let mut bp = trainer(&net, config(Rule::Backprop, Optimizer::sgd(0.1), 4));
    assert!(bp.feedback(0).is_err());
}

#[test]
fn delta_chain_length_is_the_hidden_depth_except_for_dfa() {
    for hidden in [&[][..], &[8], &[8, 6], &[8, 6, 5, 4]] {
        let net = build_net(4, hidden, Activation::Tanh, 3, Activation::Identity, 0);
        let layers = net.layers();
        let depth = hidden.len();
        assert_eq!(Rule::Backprop.delta_chain_len(layers), depth);
        assert_eq!(Rule::FeedbackAlignment.delta_chain_len(layers), depth);
        assert_eq!(
            Rule::DirectFeedbackAlignment.delta_chain_len(layers),
            usize::from(depth > 0)
        );
    }
}

/// All feedback matrices of a 20-[64, 48]-10 net under `rule` and `init`, with the
/// fan each was drawn with.
fn feedback_draws(rule: Rule, init: FeedbackInit) -> Vec<(Vec<f32>, usize)> {
    let net = build_net(20, &[64, 48], Activation::Tanh, 10, Activation::Identity, 3);
    let mut t = trainer(
        &net,
        TrainConfig {
            feedback_init: init,
            ..config(rule, Optimizer::sgd(0.1), 4)
        },
    );
    let shapes = t.feedback_shapes().to_vec();
    shapes
        .iter()
        .enumerate()
        .map(|(i, s)| (t.feedback(i).unwrap(), s.fan))
        .collect()
}

#[test]
fn unit_uniform_feedback_lies_in_zero_one() {
    for rule in [Rule::FeedbackAlignment, Rule::DirectFeedbackAlignment] {
        for (values, _) in feedback_draws(rule, FeedbackInit::UnitUniform) {
            assert!(values.iter().all(|v| (0.0..1.0).contains(v)), "{rule}");
            // It fills the interval, it does not sit in a corner of it.
            let min = values.iter().cloned().fold(f32::INFINITY, f32::min);
            let max = values.iter().cloned().fold(f32::NEG_INFINITY, f32::max);
            let mean = values.iter().sum::<f32>() / values.len() as f32;
            assert!(min < 0.05 && max > 0.95, "{rule}: range [{min}, {max}]");
            assert!((mean - 0.5).abs() < 0.05, "{rule}: mean {mean}");
        }
    }
}

#[test]
fn uniform_feedback_lies_within_one_over_root_fan() {
    // The fan is the width of the error each row combines: the next layer's width for
    // FA, the output width for DFA.
    for (rule, fans) in [
        (Rule::FeedbackAlignment, [48, 10]),
        (Rule::DirectFeedbackAlignment, [10, 10]),
    ] {
        let draws = feedback_draws(rule, FeedbackInit::Uniform);
        for ((values, fan), expected_fan) in draws.into_iter().zip(fans) {
            assert_eq!(fan, expected_fan, "{rule}");
            let bound = 1.0 / (fan as f32).sqrt();
            let largest = values.iter().fold(0.0f32, |m, v| m.max(v.abs()));
            assert!(largest <= bound, "{rule}: {largest} beyond ±{bound}");
            assert!(
                largest > 0.95 * bound,
                "{rule}: {largest} far inside ±{bound}"
            );
            assert!(
                values.iter().any(|&v| v < -0.5 * bound),
                "{rule}: no negatives"
            );
            let mean = values.iter().sum::<f32>() / values.len() as f32;
            assert!(mean.abs() < 0.1 * bound, "{rule}: mean {mean}");
        }
    }
}

#[test]
fn gaussian_feedback_has_standard_deviation_one_over_root_fan() {
    for rule in [Rule::FeedbackAlignment, Rule::DirectFeedbackAlignment] {
        for (values, fan) in feedback_draws(rule, FeedbackInit::Gaussian) {
            let n = values.len() as f64;
            let mean = values.iter().map(|&v| f64::from(v)).sum::<f64>() / n;
            let var = values
                .iter()
                .map(|&v| (f64::from(v) - mean).powi(2))
                .sum::<f64>()
                / n;
            let expected = 1.0 / (fan as f64).sqrt();
            // At least 480 draws: the sample std is within ~7% of the truth at 2 sigma.
            assert!(
                (var.sqrt() / expected - 1.0).abs() < 0.1,
                "{rule}: std {} vs {expected}",
                var.sqrt()
            );
        }
    }
}

#[test]
fn every_rule_matches_the_reference_at_sizes_that_take_the_parallel_paths() {
    // 200-[300, 40]-10 at batch 32: the forward products exceed the CPU backend's
    // single-thread threshold, so multi-threaded GEMMs and layer-parallel gradients
    // run (the small nets above never reach them).
    for act in [Activation::Relu, Activation::Tanh] {
        let mut net = build_net(200, &[300, 40], act, 10, Activation::Identity, 5);
        randomize_params(&mut net, 0.08, 6);
        let data = random_dataset(40, 200, 10, 7);
        let indices: Vec<usize> = (3..35).collect();
        // f32 and f64 pre-activations differ by ~1e-6 here: no relu unit may sit
        // closer than that to its kink, or the two could disagree on f'(z).
        let (xs, _) = samples64(&data, &indices);
        let margin = min_kink_distance(net.layers(), &widen(net.params()), &xs);
        assert!(
            margin > 1e-5,
            "{act}: a pre-activation is {margin} from the kink"
        );
        for rule in Rule::ALL {
            let mut t = trainer(&net, config(rule, Optimizer::sgd(0.1), 32));
            let actual = t.update_direction(&data, &indices).unwrap();
            // Read after the step: sign-symmetric rules derive B during it.
            let feedback: Vec<Vec<f32>> = (0..t.feedback_shapes().len())
                .map(|i| t.feedback(i).unwrap())
                .collect();
            let expected = reference_update(
                &net,
                rule,
                &feedback,
                Loss::SoftmaxCrossEntropy,
                &data,
                &indices,
            );
            for l in 0..3 {
                let r = layer_range(&net, l);
                if l < rule.first_trained_layer(3) {
                    assert!(actual[r].iter().all(|&g| g == 0.0), "{rule}: frozen {l}");
                    continue;
                }
                assert_close(
                    &actual[r.clone()],
                    &expected[r],
                    &format!("{rule} {act} layer {l}"),
                );
            }
        }
    }
}

// ---------------------------------------------------------------------------------
// frSF with magnitudes set by the caller

/// `|m| ⊙ sign(w)` elementwise, sign(0) = 0: frSF's documented feedback.
fn sign_concordant(m: &[f32], w: &[f32]) -> Vec<f32> {
    m.iter()
        .zip(w)
        .map(|(&m, &w)| {
            let s = if w > 0.0 {
                1.0
            } else if w < 0.0 {
                -1.0
            } else {
                0.0
            };
            m.abs() * s
        })
        .collect()
}

#[test]
fn frsf_with_magnitudes_set_by_the_caller_matches_the_reference_before_and_after_steps() {
    use rand::{Rng, SeedableRng};
    let net = random_net(5, &[7, 4], Activation::Tanh, 21);
    let data = random_dataset(24, 5, 3, 22);
    let mut t = trainer(
        &net,
        config(Rule::FixedRandomSignSymmetry, Optimizer::sgd(0.3), 8),
    );
    // Magnitudes of both signs and far from the init's scale: only |M| may count.
    let mut r = rand_chacha::ChaCha8Rng::seed_from_u64(23);
    let magnitudes: Vec<Vec<f32>> = t
        .feedback_shapes()
        .to_vec()
        .iter()
        .map(|s| {
            (0..s.rows * s.cols)
                .map(|_| r.random_range(-3.0..3.0))
                .collect()
        })
        .collect();
    for (i, m) in magnitudes.iter().enumerate() {
        t.set_feedback_magnitudes(i, m).unwrap();
        assert_eq!(
            &t.feedback_magnitudes(i).unwrap(),
            m,
            "magnitudes {i} read back"
        );
    }
    for step in 0..3 {
        let batch: Vec<usize> = (step * 8..step * 8 + 8).collect();
        let current = t.network().unwrap();
        // B computed here from the documented formula, not read from the trainer.
        let feedback: Vec<Vec<f32>> = magnitudes
            .iter()
            .enumerate()
            .map(|(i, m)| sign_concordant(m, current.weights(i + 1).unwrap()))
            .collect();
        let actual = t.update_direction(&data, &batch).unwrap();
        let expected = reference_update(
            &current,
            Rule::FixedRandomSignSymmetry,
            &feedback,
            Loss::SoftmaxCrossEntropy,
            &data,
            &batch,
        );
        assert_close(&actual, &expected, &format!("frSF step {step}"));
        for (i, b) in feedback.iter().enumerate() {
            assert_eq!(&t.feedback(i).unwrap(), b, "B_{i} at step {step}");
        }
        t.train_batch(&data, &batch).unwrap();
    }
    assert_ne!(
        t.network().unwrap().params(),
        net.params(),
        "training did nothing"
    );
}
