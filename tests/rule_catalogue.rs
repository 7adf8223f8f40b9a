//! The rule catalogue beyond BP/FA/DFA: sign-symmetric feedback follows the weights'
//! signs with the documented magnitudes, last-layer-only really freezes the hidden
//! layers, every rule learns a small problem, and the alignment measurements
//! (angles, norm ratios) give known answers on known inputs.
//!
//! The delta formulas of every rule are checked against an f64 reference computation
//! in `tests/rules.rs` (`reference_update`, run over `Rule::ALL`).

mod common;

use common::{build_net, random_dataset, randomize_params};
use plasticity::metrics::{angle_degrees, norm_ratio};
use plasticity::{
    Activation, Device, FeedbackInit, Loss, Network, Optimizer, Rule, TrainConfig, Trainer,
};

fn config(rule: Rule, optimizer: Optimizer) -> TrainConfig {
    TrainConfig {
        rule,
        optimizer,
        loss: Loss::SoftmaxCrossEntropy,
        batch_size: 8,
        feedback_init: FeedbackInit::Uniform,
        ..TrainConfig::default()
    }
}

fn net() -> Network {
    let mut net = build_net(5, &[7, 6], Activation::Tanh, 3, Activation::Identity, 4);
    randomize_params(&mut net, 0.7, 5);
    net
}

fn trainer(rule: Rule, optimizer: Optimizer) -> Trainer {
    Trainer::new(net(), config(rule, optimizer), Device::Cpu).unwrap()
}

fn sign(v: f32) -> f32 {
    if v > 0.0 {
        1.0
    } else if v < 0.0 {
        -1.0
    } else {
        0.0
    }
}

/// `(B_i, W_{i+1})` for every hidden layer `i`.
fn feedback_and_weights(t: &mut Trainer) -> Vec<(Vec<f32>, Vec<f32>)> {
    let net = t.network().unwrap();
    (0..net.layers().len() - 1)
        .map(|i| (t.feedback(i).unwrap(), net.weights(i + 1).unwrap().to_vec()))
        .collect()
}

fn batches() -> impl Iterator<Item = Vec<usize>> {
    (0..6).map(|s| (s * 8..s * 8 + 8).collect())
}

#[test]
fn usf_feedback_is_scale_times_sign_of_the_current_weights() {
    let data = random_dataset(48, 5, 3, 1);
    let mut t = trainer(Rule::UniformSignSymmetry, Optimizer::sgd(0.5));
    let start = t.network().unwrap();
    let shapes = t.feedback_shapes().to_vec();
    for batch in batches() {
        t.train_batch(&data, &batch).unwrap();
        // The next backward pass re-derives B from the moved W.
        t.update_direction(&data, &batch).unwrap();
        for (i, (b, w)) in feedback_and_weights(&mut t).into_iter().enumerate() {
            // The documented scale: 1/sqrt(rows of W_{i+1}).
            let scale = (1.0 / shapes[i].rows as f64).sqrt() as f32;
            for (&bv, &wv) in b.iter().zip(&w) {
                assert_eq!(bv, scale * sign(wv), "layer {i}: B = {bv}, W = {wv}");
            }
        }
    }
    assert_ne!(t.network().unwrap(), start, "training did nothing");
}

#[test]
fn brsf_signs_follow_the_weights_while_magnitudes_are_redrawn_every_batch() {
    let data = random_dataset(48, 5, 3, 2);
    let mut t = trainer(Rule::BatchRandomSignSymmetry, Optimizer::sgd(0.5));
    let mut previous: Option<Vec<Vec<f32>>> = None;
    for batch in batches() {
        let before: Vec<Vec<f32>> = {
            let net = t.network().unwrap();
            (1..net.layers().len())
                .map(|l| net.weights(l).unwrap().to_vec())
                .collect()
        };
        t.train_batch(&data, &batch).unwrap();
        // The step used B derived from the weights it started from.
        let magnitudes: Vec<Vec<f32>> = (0..before.len())
            .map(|i| {
                let b = t.feedback(i).unwrap();
                for (&bv, &wv) in b.iter().zip(&before[i]) {
                    assert_eq!(sign(bv), sign(wv), "layer {i}: B {bv} vs W {wv}");
                }
                b.iter().map(|v| v.abs()).collect()
            })
            .collect();
        if let Some(p) = &previous {
            for (i, (a, b)) in p.iter().zip(&magnitudes).enumerate() {
                let changed = a.iter().zip(b).filter(|(x, y)| x != y).count();
                assert!(
                    changed > a.len() / 2,
                    "layer {i}: magnitudes barely changed"
                );
            }
        }
        previous = Some(magnitudes);
    }
}

#[test]
fn frsf_magnitudes_never_change_while_signs_follow_the_weights() {
    let data = random_dataset(48, 5, 3, 3);
    let mut t = trainer(Rule::FixedRandomSignSymmetry, Optimizer::sgd(0.5));
    let first: Vec<Vec<f32>> = (0..2)
        .map(|i| t.feedback(i).unwrap().iter().map(|v| v.abs()).collect())
        .collect();
    // Random magnitudes, not one scale.
    assert!(first[0].windows(2).any(|w| w[0] != w[1]));
    for batch in batches() {
        t.train_batch(&data, &batch).unwrap();
        t.update_direction(&data, &batch).unwrap();
        for (i, (b, w)) in feedback_and_weights(&mut t).into_iter().enumerate() {
            for (k, (&bv, &wv)) in b.iter().zip(&w).enumerate() {
                assert_eq!(bv.abs(), first[i][k], "layer {i}: magnitude {k} changed");
                assert_eq!(sign(bv), sign(wv), "layer {i}: sign {k}");
            }
        }
    }
}

#[test]
fn last_layer_only_never_moves_hidden_layers_even_with_decay_and_momentum() {
    let data = random_dataset(48, 5, 3, 4);
    for optimizer in [
        Optimizer::Sgd {
            lr: 0.3,
            momentum: 0.9,
            weight_decay: 0.1,
            nesterov: true,
        },
        Optimizer::Adam {
            lr: 0.05,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: 0.1,
        },
    ] {
        let mut t = trainer(Rule::LastLayerOnly, optimizer);
        let start = t.network().unwrap();
        for _ in 0..3 {
            t.train_epoch(&data, |_, _| {}).unwrap();
        }
        let end = t.network().unwrap();
        for l in 0..2 {
            assert_eq!(start.weights(l), end.weights(l), "{optimizer:?}: W_{l}");
            assert_eq!(start.bias(l), end.bias(l), "{optimizer:?}: b_{l}");
        }
        assert_ne!(
            start.weights(2),
            end.weights(2),
            "{optimizer:?}: output frozen"
        );
        assert_ne!(
            start.bias(2),
            end.bias(2),
            "{optimizer:?}: output bias frozen"
        );
    }
}

#[test]
fn every_rule_learns_separable_blobs() {
    // Three well separated classes: every rule, the floor included, must fit them.
    let (dim, classes, n) = (5, 3, 60);
    let mut x = Vec::with_capacity(n * dim);
    let mut y = Vec::with_capacity(n);
    let base = random_dataset(n, dim, classes, 9);
    let indices: Vec<usize> = (0..n).collect();
    let (mut feats, mut onehot) = (vec![0.0; n * dim], vec![0.0; n * classes]);
    base.gather_feature_major(&indices, &mut feats, &mut onehot)
        .unwrap();
    for j in 0..n {
        let c = j % classes;
        for d in 0..dim {
            let centre = if d == c { 2.0 } else { 0.0 };
            x.push(centre + 0.3 * feats[d * n + j]);
        }
        y.push(c as u32);
    }
    let data = plasticity::data::Dataset::new(x, y, dim, classes).unwrap();
    for rule in Rule::ALL {
        let cfg = TrainConfig {
            batch_size: 10,
            ..config(rule, Optimizer::adam(0.02))
        };
        let mut t = Trainer::new(net(), cfg, Device::Cpu).unwrap();
        for _ in 0..60 {
            t.train_epoch(&data, |_, _| {}).unwrap();
        }
        let acc = t.evaluate(&data).unwrap().accuracy;
        assert!(acc >= 0.95, "{rule}: accuracy {acc}");
    }
}

// ---------------------------------------------------------------------------------
// alignment measurements

#[test]
fn angles_of_known_vectors() {
    let deg = |a: &[f32], b: &[f32]| angle_degrees(a, b).unwrap();
    assert!((deg(&[1.0, 0.0], &[0.0, 3.0]) - 90.0).abs() < 1e-9);
    assert!((deg(&[1.0, -2.0, 3.0], &[-2.0, 4.0, -6.0]) - 180.0).abs() < 1e-6);
    assert!(deg(&[0.3, 0.4], &[3.0, 4.0]).abs() < 1e-6);
    assert!((deg(&[1.0, 0.0], &[1.0, 1.0]) - 45.0).abs() < 1e-9);
    assert_eq!(angle_degrees(&[0.0, 0.0], &[1.0, 0.0]), None);
    assert_eq!(angle_degrees(&[1.0], &[1.0, 0.0]), None);
    assert_eq!(norm_ratio(&[3.0, 4.0], &[0.0, 1.0]), Some(5.0));
    assert_eq!(norm_ratio(&[3.0, 4.0], &[0.0, 0.0]), None);
}

#[test]
fn backprop_is_aligned_with_itself_and_rules_are_measured_per_layer() {
    let data = random_dataset(16, 5, 3, 6);
    let batch: Vec<usize> = (0..8).collect();
    let mut bp = trainer(Rule::Backprop, Optimizer::sgd(0.1));
    for a in bp.alignment(&data, &batch).unwrap() {
        assert!(a.update_angle.unwrap() < 1e-3, "layer {}: {a:?}", a.layer);
        assert_eq!(a.feedback_angle, None);
    }
    for rule in Rule::ALL {
        let mut t = trainer(rule, Optimizer::sgd(0.1));
        let before = t.update_direction(&data, &batch).unwrap();
        let aligned = t.alignment(&data, &batch).unwrap();
        assert_eq!(aligned.len(), 3, "{rule}");
        // Every rule trains the output layer with the true error, like BP.
        assert!(
            aligned[2].update_angle.unwrap() < 1e-3,
            "{rule}: {:?}",
            aligned[2]
        );
        for a in &aligned[..2] {
            match rule {
                Rule::Backprop => assert!(a.update_angle.unwrap() < 1e-3),
                Rule::LastLayerOnly => assert_eq!(a.update_angle, None),
                _ => {
                    let angle = a.update_angle.unwrap();
                    assert!(angle > 1e-3 && angle <= 180.0, "{rule}: {a:?}");
                }
            }
        }
        // Measuring leaves the rule's update direction in place (brSF too: its
        // feedback stream does not advance).
        assert_eq!(t.update_direction(&data, &batch).unwrap(), before, "{rule}");
        if rule.sign_symmetric() {
            // Sign-concordant B is within 90 degrees of W by construction.
            for a in &aligned[..2] {
                assert!(a.feedback_angle.unwrap() < 90.0, "{rule}: {a:?}");
                assert!(a.norm_ratio.unwrap() > 0.0, "{rule}: {a:?}");
            }
        }
    }
}

#[test]
fn feedback_angle_is_zero_when_fa_feedback_equals_the_weights() {
    let data = random_dataset(16, 5, 3, 7);
    let batch: Vec<usize> = (0..8).collect();
    let mut fa = trainer(Rule::FeedbackAlignment, Optimizer::sgd(0.1));
    let net = fa.network().unwrap();
    for i in 0..2 {
        let w = net.weights(i + 1).unwrap().to_vec();
        let doubled: Vec<f32> = w.iter().map(|v| 2.0 * v).collect();
        fa.set_feedback(i, &doubled).unwrap();
    }
    for a in &fa.alignment(&data, &batch).unwrap()[..2] {
        assert!(a.feedback_angle.unwrap() < 1e-3, "{a:?}");
        assert!((a.norm_ratio.unwrap() - 2.0).abs() < 1e-6, "{a:?}");
        // B ∝ W makes FA's update BP's direction.
        assert!(a.update_angle.unwrap() < 1e-2, "{a:?}");
    }
    // A random B is far from W at init.
    let mut fresh = trainer(Rule::FeedbackAlignment, Optimizer::sgd(0.1));
    let a = fresh.alignment(&data, &batch).unwrap();
    assert!(a[0].feedback_angle.unwrap() > 45.0, "{:?}", a[0]);
}

#[test]
fn setters_the_rule_would_overwrite_are_refused() {
    use plasticity::Error;
    for rule in [
        Rule::UniformSignSymmetry,
        Rule::BatchRandomSignSymmetry,
        Rule::FixedRandomSignSymmetry,
    ] {
        let mut t = trainer(rule, Optimizer::sgd(0.1));
        let n = t.feedback(0).unwrap().len();
        let before = t.feedback(0).unwrap();
        match t.set_feedback(0, &vec![0.5; n]) {
            Err(e @ Error::Unsupported(_)) => {
                assert!(e.to_string().contains(rule.name()), "{e}");
                if rule == Rule::FixedRandomSignSymmetry {
                    assert!(e.to_string().contains("set_feedback_magnitudes"), "{e}");
                }
            }
            other => panic!("{rule}: set_feedback gave {other:?}"),
        }
        assert_eq!(
            t.feedback(0).unwrap(),
            before,
            "{rule}: a refused write landed"
        );
    }
    for rule in [
        Rule::Backprop,
        Rule::FeedbackAlignment,
        Rule::DirectFeedbackAlignment,
        Rule::UniformSignSymmetry,
        Rule::BatchRandomSignSymmetry,
    ] {
        let mut t = trainer(rule, Optimizer::sgd(0.1));
        let result = t.set_feedback_magnitudes(0, &[0.5; 42]);
        assert!(
            matches!(result, Err(Error::Unsupported(_))),
            "{rule}: {result:?}"
        );
        let read = t.feedback_magnitudes(0);
        assert_eq!(
            read.is_ok(),
            rule == Rule::BatchRandomSignSymmetry,
            "{rule}: {read:?}"
        );
    }
    let mut frsf = trainer(Rule::FixedRandomSignSymmetry, Optimizer::sgd(0.1));
    let n = frsf.feedback_magnitudes(0).unwrap().len();
    assert!(matches!(
        frsf.set_feedback_magnitudes(0, &vec![0.5; n + 1]),
        Err(Error::ShapeMismatch { .. })
    ));
    let mut nan = vec![0.5; n];
    nan[3] = f32::NAN;
    assert!(matches!(
        frsf.set_feedback_magnitudes(0, &nan),
        Err(Error::NonFinite { .. })
    ));
    assert!(matches!(
        frsf.set_feedback_magnitudes(2, &[0.5]),
        Err(Error::InvalidConfig(_))
    ));
}

#[test]
fn measuring_brsf_does_not_change_the_steps_that_follow() {
    let data = random_dataset(48, 5, 3, 8);
    let mut measured = trainer(Rule::BatchRandomSignSymmetry, Optimizer::sgd(0.3));
    let mut plain = trainer(Rule::BatchRandomSignSymmetry, Optimizer::sgd(0.3));
    for batch in batches() {
        // The direction measured is the step's own: same magnitudes as the step draws.
        let direction = measured.update_direction(&data, &batch).unwrap();
        measured.alignment(&data, &batch).unwrap();
        assert_eq!(
            measured.update_direction(&data, &batch).unwrap(),
            direction,
            "measuring twice drew other magnitudes"
        );
        assert_eq!(
            plain.update_direction(&data, &batch).unwrap(),
            direction,
            "the other trainer's step would use other magnitudes"
        );
        measured.train_batch(&data, &batch).unwrap();
        plain.train_batch(&data, &batch).unwrap();
        assert_eq!(
            measured.network().unwrap().params(),
            plain.network().unwrap().params(),
            "update_direction or alignment changed the run"
        );
    }
}
