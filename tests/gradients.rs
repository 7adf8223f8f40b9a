//! Backprop's gradients against central finite differences of an independent f64
//! reference forward pass (see `common`), for every activation, both losses, several
//! depths and output activations.

mod common;

use common::{
    batch_loss, build_net, min_kink_distance, offsets, param_count, random_dataset,
    randomize_params, samples64, widen,
};
use plasticity::data::Dataset;
use plasticity::{Activation, Device, Loss, Network, Optimizer, Rule, TrainConfig, Trainer};

/// Central-difference step. The reference loss is computed in f64 and is O(1), so the
/// rounding error of the difference quotient is about 1e-16 / 1e-6 = 1e-10 and the
/// truncation error O(h²) about 1e-12: the finite differences are exact to ~1e-9,
/// far below the f32 noise of the gradients under test.
const FD_STEP: f64 = 1e-6;

/// Tolerance on `|bp - fd|`: `ABS_TOL + REL_TOL * |fd|`.
///
/// The BP gradient is computed in f32 (eps ≈ 1.2e-7) through a forward and a backward
/// pass of at most ~10 rounded operations per value, with sums of at most 8 terms of
/// magnitude O(1), and the crate's `tanh` is a rational approximation accurate to
/// ~4e-7; the finite differences are exact to ~1e-9. So the absolute error of a
/// correct gradient is a few 1e-7 (measured: at most ~1e-7, i.e. a worst printed
/// ratio of ~0.05). `2e-6 + 2e-5 |fd|` keeps a >10x margin over that, yet is
/// 500-100000x smaller than the gradients checked (every layer's largest weight
/// gradient is asserted to exceed 1e-3): a missing factor, a wrong derivative or a
/// transposed index is a violation, and each check also asserts that a uniform 1%
/// error in the gradient would be caught.
const ABS_TOL: f64 = 2e-6;
const REL_TOL: f64 = 2e-5;

/// Pre-activations of relu / leaky-relu layers must stay this far from 0 for every
/// sample: at a kink the derivative is undefined, and f32 vs f64 could round to
/// different sides. A finite-difference step moves any pre-activation by at most
/// ~1e-5, far less than this margin.
const KINK_MARGIN: f64 = 1e-3;

const BATCH: usize = 6;

struct Case {
    inputs: usize,
    hidden: &'static [usize],
    hidden_act: Activation,
    outputs: usize,
    output_act: Activation,
    loss: Loss,
    seed: u64,
}

impl Case {
    fn name(&self) -> String {
        format!(
            "{}-{:?}-{} {} hidden, {} output, {} loss, seed {}",
            self.inputs,
            self.hidden,
            self.outputs,
            self.hidden_act,
            self.output_act,
            self.loss,
            self.seed
        )
    }
}

fn trainer_for(net: Network, loss: Loss, rule: Rule) -> Trainer {
    let config = TrainConfig {
        rule,
        optimizer: Optimizer::sgd(0.1),
        loss,
        batch_size: BATCH,
        ..TrainConfig::default()
    };
    Trainer::new(net, config, Device::Cpu).expect("trainer")
}

/// A random batch whose relu / leaky-relu pre-activations all stay `KINK_MARGIN` away
/// from 0 (the first of a deterministic sequence of data seeds that does).
fn kink_free_data(net: &Network, case: &Case) -> Dataset {
    let params = widen(net.params());
    for attempt in 0..200 {
        let data = random_dataset(BATCH, case.inputs, case.outputs, case.seed * 1000 + attempt);
        let all: Vec<usize> = (0..BATCH).collect();
        let (xs, _) = samples64(&data, &all);
        if min_kink_distance(net.layers(), &params, &xs) > KINK_MARGIN {
            return data;
        }
    }
    panic!("no kink-free batch found for {}", case.name());
}

/// Central differences of the f64 batch-mean loss for every parameter.
fn finite_differences(net: &Network, loss: Loss, data: &Dataset, indices: &[usize]) -> Vec<f64> {
    let (xs, labels) = samples64(data, indices);
    let base = widen(net.params());
    let mut params = base.clone();
    (0..base.len())
        .map(|p| {
            params[p] = base[p] + FD_STEP;
            let plus = batch_loss(net.layers(), &params, loss, &xs, &labels);
            params[p] = base[p] - FD_STEP;
            let minus = batch_loss(net.layers(), &params, loss, &xs, &labels);
            params[p] = base[p];
            (plus - minus) / (2.0 * FD_STEP)
        })
        .collect()
}

/// Largest `|bp - fd| / tolerance(fd)` (≤ 1 means every component passes) and the
/// index where it occurs.
fn worst_ratio(bp: &[f32], fd: &[f64]) -> (f64, usize) {
    assert_eq!(bp.len(), fd.len());
    bp.iter()
        .zip(fd)
        .map(|(&a, &b)| (f64::from(a) - b).abs() / (ABS_TOL + REL_TOL * b.abs()))
        .enumerate()
        .fold(
            (0.0, 0),
            |(w, wi), (i, r)| if r > w { (r, i) } else { (w, wi) },
        )
}

/// Which layer and tensor flat parameter `p` belongs to, for messages.
fn describe(net: &Network, p: usize) -> String {
    for (l, (w, b)) in offsets(net.layers()).into_iter().enumerate() {
        let spec = net.layers()[l];
        if p >= w && p < b {
            let k = p - w;
            return format!("W_{l}[{}, {}]", k / spec.inputs(), k % spec.inputs());
        }
        if p >= b && p < b + spec.outputs() {
            return format!("b_{l}[{}]", p - b);
        }
    }
    format!("parameter {p} (past the end)")
}

/// Checks BP's `update_direction` against finite differences on a full batch and then
/// on a smaller batch of non-contiguous, reordered indices (which the trainer packs
/// differently). Returns the worst ratio seen.
fn check_case(case: &Case) -> f64 {
    let mut net = build_net(
        case.inputs,
        case.hidden,
        case.hidden_act,
        case.outputs,
        case.output_act,
        case.seed,
    );
    randomize_params(&mut net, 0.8, case.seed + 17);
    assert_eq!(net.params().len(), param_count(net.layers()));
    let data = kink_free_data(&net, case);
    let mut trainer = trainer_for(net.clone(), case.loss, Rule::Backprop);

    let full: Vec<usize> = (0..BATCH).collect();
    let mut worst_seen: f64 = 0.0;
    for indices in [full, vec![4, 1, 3]] {
        let bp = trainer.update_direction(&data, &indices).expect("update");
        let fd = finite_differences(&net, case.loss, &data, &indices);
        let (worst, at) = worst_ratio(&bp, &fd);
        assert!(
            worst <= 1.0,
            "{} (indices {indices:?}): BP {} = {} but finite differences give {} \
             (|diff| is {worst:.2}x the tolerance)",
            case.name(),
            describe(&net, at),
            bp[at],
            fd[at],
        );
        // The check must be able to fail: every layer's weight gradient is
        // non-trivial, and a uniform 1% error would break the tolerance.
        for (l, (w, b)) in offsets(net.layers()).into_iter().enumerate() {
            let largest = fd[w..b].iter().fold(0.0f64, |m, v| m.max(v.abs()));
            assert!(
                largest > 1e-3,
                "{}: layer {l}'s weight gradient is too small ({largest}) to test anything",
                case.name()
            );
        }
        let scaled: Vec<f32> = bp.iter().map(|v| v * 1.01).collect();
        assert!(
            worst_ratio(&scaled, &fd).0 > 1.0,
            "{}: tolerance too loose to notice a 1% error",
            case.name()
        );
        worst_seen = worst_seen.max(worst);
    }
    println!("{}: worst |bp - fd| / tol = {worst_seen:.3}", case.name());
    worst_seen
}

fn check_all_activations(hidden: &'static [usize], inputs: usize, loss: Loss) {
    for (i, hidden_act) in Activation::ALL.into_iter().enumerate() {
        check_case(&Case {
            inputs,
            hidden,
            hidden_act,
            outputs: 3,
            output_act: Activation::Identity,
            loss,
            seed: 100 + i as u64,
        });
    }
}

#[test]
fn bp_matches_finite_differences_two_hidden_cross_entropy() {
    check_all_activations(&[7, 4], 5, Loss::SoftmaxCrossEntropy);
}

#[test]
fn bp_matches_finite_differences_two_hidden_mse() {
    check_all_activations(&[7, 4], 5, Loss::MeanSquaredError);
}

#[test]
fn bp_matches_finite_differences_three_hidden_cross_entropy() {
    check_all_activations(&[6, 5, 5], 4, Loss::SoftmaxCrossEntropy);
}

#[test]
fn bp_matches_finite_differences_three_hidden_mse() {
    check_all_activations(&[6, 5, 5], 4, Loss::MeanSquaredError);
}

#[test]
fn mse_with_identity_outputs_matches_finite_differences() {
    // One wide hidden layer, four identity outputs regressed onto one-hot targets.
    check_case(&Case {
        inputs: 5,
        hidden: &[8],
        hidden_act: Activation::Relu,
        outputs: 4,
        output_act: Activation::Identity,
        loss: Loss::MeanSquaredError,
        seed: 7,
    });
}

#[test]
fn sigmoid_output_with_mse_matches_finite_differences() {
    // The output error must be multiplied by the output activation's derivative.
    for hidden_act in [Activation::Tanh, Activation::LeakyRelu] {
        check_case(&Case {
            inputs: 5,
            hidden: &[7, 4],
            hidden_act,
            outputs: 3,
            output_act: Activation::Sigmoid,
            loss: Loss::MeanSquaredError,
            seed: 21,
        });
    }
}

#[test]
fn tanh_output_with_cross_entropy_matches_finite_differences() {
    // Softmax cross-entropy applied to tanh-squashed outputs.
    check_case(&Case {
        inputs: 5,
        hidden: &[7],
        hidden_act: Activation::Sigmoid,
        outputs: 3,
        output_act: Activation::Tanh,
        loss: Loss::SoftmaxCrossEntropy,
        seed: 33,
    });
}

#[test]
fn single_layer_without_hidden_layers_matches_finite_differences() {
    for loss in [Loss::SoftmaxCrossEntropy, Loss::MeanSquaredError] {
        check_case(&Case {
            inputs: 5,
            hidden: &[],
            hidden_act: Activation::Tanh,
            outputs: 3,
            output_act: Activation::Identity,
            loss,
            seed: 44,
        });
    }
}

#[test]
fn update_direction_leaves_parameters_alone_and_is_repeatable() {
    let mut net = build_net(5, &[7, 4], Activation::Tanh, 3, Activation::Identity, 9);
    randomize_params(&mut net, 0.8, 10);
    let data = random_dataset(BATCH, 5, 3, 11);
    let indices: Vec<usize> = (0..BATCH).collect();
    for rule in Rule::ALL {
        let mut trainer = trainer_for(net.clone(), Loss::SoftmaxCrossEntropy, rule);
        let first = trainer.update_direction(&data, &indices).unwrap();
        let second = trainer.update_direction(&data, &indices).unwrap();
        // brSF too: it redraws its magnitudes for every step, but measuring takes
        // none and leaves its feedback stream where it was.
        assert_eq!(first, second, "{rule}: update_direction is not repeatable");
        assert!(first.iter().any(|&g| g != 0.0), "{rule}: all-zero update");
        assert_eq!(
            trainer.network().unwrap().params(),
            net.params(),
            "{rule}: update_direction changed the parameters"
        );
        assert_eq!(
            trainer.steps(),
            0,
            "{rule}: update_direction counted a step"
        );
    }
}

#[test]
fn one_sgd_step_moves_parameters_by_lr_times_the_update_direction() {
    // Ties update_direction (checked above) to what train_batch actually applies.
    let mut net = build_net(5, &[7, 4], Activation::Sigmoid, 3, Activation::Identity, 12);
    randomize_params(&mut net, 0.8, 13);
    let data = random_dataset(BATCH, 5, 3, 14);
    let indices: Vec<usize> = (0..BATCH).collect();
    let mut trainer = trainer_for(net.clone(), Loss::SoftmaxCrossEntropy, Rule::Backprop);
    let g = trainer.update_direction(&data, &indices).unwrap();
    trainer.train_batch(&data, &indices).unwrap();
    let after = trainer.network().unwrap();
    for (p, ((&w0, &w1), &g)) in net.params().iter().zip(after.params()).zip(&g).enumerate() {
        let expected = w0 - 0.1 * g;
        assert!(
            (w1 - expected).abs() <= 1e-6 * (1.0 + expected.abs()),
            "{}: {w0} - 0.1 * {g} = {expected}, got {w1}",
            describe(&net, p)
        );
    }
}
