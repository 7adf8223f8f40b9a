//! The built-in learners that learn their own feedback (Akrout et al. 2019): Kolen-Pollack
//! (`kp`) and weight mirrors (`wm`). Their feedback comes to align with the forward
//! weights on MNIST where FA's stays near orthogonal, KP keeps `B - W` on its exact
//! decay under SGD, the weight mirror relaxes `B` to `(σ²/λ) W`, and both train a conv
//! net (with a conv layer's feedback among their `B`) alike on the CPU and the GPU and
//! resume bit for bit from a checkpoint built by name.
//!
//! Run with `-- --nocapture` to see the angles reached.

mod common;

#[cfg(feature = "gpu")]
use common::gpu::gpu;
use plasticity::backend::{Backend, CpuBackend};
use plasticity::layer::{Conv2d, Shape};
use plasticity::learner::{KolenPollack, WeightMirror};
use plasticity::{
    Activation, Checkpoint, Device, Learner, Network, Optimizer, Rule, TrainConfig, Trainer,
};

/// 784-256-256-256-10 tanh, seeded.
fn mlp() -> Network {
    Network::builder(784)
        .hidden(&[256, 256, 256], Activation::Tanh)
        .dense(10, Activation::Identity)
        .seed(1)
        .build()
        .unwrap()
}

/// SGD with momentum, batch 64: the setting KP aligns within an epoch in.
fn mnist_config() -> TrainConfig {
    TrainConfig {
        optimizer: Optimizer::momentum(0.05, 0.9),
        batch_size: 64,
        ..TrainConfig::default()
    }
}

/// Feedback angles (one per `B`) and per-layer update angles to BP on the first batch
/// of the test images.
fn angles(t: &mut Trainer) -> (Vec<f64>, Vec<f64>) {
    let batch: Vec<usize> = (0..t.config().batch_size).collect();
    let a = t.alignment(&common::mnist().test, &batch).unwrap();
    (
        a.iter().filter_map(|a| a.feedback_angle).collect(),
        a.iter().filter_map(|a| a.update_angle).collect(),
    )
}

fn trainer(learner: Box<dyn Learner>) -> Trainer {
    Trainer::with_learner(mlp(), mnist_config(), learner, Device::Cpu).unwrap()
}

fn fa() -> Box<dyn Learner> {
    plasticity::learner::builtin(Rule::FeedbackAlignment.name(), &mnist_config()).unwrap()
}

#[test]
fn kolen_pollack_aligns_its_feedback_within_one_mnist_epoch_where_fa_does_not() {
    let train = &common::mnist().train;
    let mut kp = trainer(Box::new(KolenPollack::default().with_decay(0.01)));
    let mut fa = trainer(fa());
    let (kp_start, kp_update_start) = angles(&mut kp);
    assert_eq!(kp_start.len(), 3, "one B per layer above the first");
    assert!(kp_start.iter().all(|&a| a > 80.0), "{kp_start:?}");
    kp.train_epoch(train, |_, _| {}).unwrap();
    fa.train_epoch(train, |_, _| {}).unwrap();
    let (kp_end, kp_update_end) = angles(&mut kp);
    let (fa_end, _) = angles(&mut fa);
    eprintln!(
        "after one epoch: KP B-W angles {kp_end:?} (FA {fa_end:?}); \
         KP update angles to BP {kp_update_start:?} -> {kp_update_end:?}"
    );
    assert!(kp_end.iter().all(|&a| a < 10.0), "KP {kp_end:?}");
    assert!(fa_end.iter().all(|&a| a > 60.0), "FA {fa_end:?}");
    // The hidden layers' updates (the output layer's is BP's in both) turn towards BP's.
    for (start, end) in kp_update_start.iter().zip(&kp_update_end).take(3) {
        assert!(end < start && *end < 30.0, "update angle {start} -> {end}");
    }
}

#[test]
fn weight_mirror_aligns_its_feedback_on_mnist_where_fa_does_not() {
    // A sixth of an epoch: the mirror needs no data, only steps.
    let train = common::mnist().train.take(10_000).unwrap();
    let mut wm = trainer(Box::new(WeightMirror::default()));
    let mut fa = trainer(fa());
    let (wm_start, _) = angles(&mut wm);
    assert!(wm_start.iter().all(|&a| a > 80.0), "{wm_start:?}");
    wm.train_epoch(&train, |_, _| {}).unwrap();
    fa.train_epoch(&train, |_, _| {}).unwrap();
    let (wm_end, wm_update) = angles(&mut wm);
    let (fa_end, fa_update) = angles(&mut fa);
    eprintln!(
        "after 10,000 images: WM B-W angles {wm_end:?} (FA {fa_end:?}); \
         update angles to BP: WM {wm_update:?}, FA {fa_update:?}"
    );
    assert!(wm_end.iter().all(|&a| a < 25.0), "WM {wm_end:?}");
    assert!(fa_end.iter().all(|&a| a > 60.0), "FA {fa_end:?}");
}

fn distance(a: &[f32], b: &[f32]) -> f64 {
    a.iter()
        .zip(b)
        .map(|(x, y)| (*x as f64 - *y as f64).powi(2))
        .sum::<f64>()
        .sqrt()
}

fn norm(a: &[f32]) -> f64 {
    a.iter().map(|x| (*x as f64).powi(2)).sum::<f64>().sqrt()
}

/// Two conv layers, so a conv kernel's feedback is among the learned `B`.
fn conv_net() -> Network {
    Network::builder_for(Shape::image(1, 6, 6))
        .conv2d(Conv2d::new(3, 3).padding(1), Activation::Tanh)
        .conv2d(Conv2d::new(4, 3).padding(1), Activation::Tanh)
        .max_pool2d(2)
        .flatten()
        .dense(12, Activation::Tanh)
        .dense(4, Activation::Identity)
        .seed(3)
        .build()
        .unwrap()
}

/// `(feedback tensor, layer whose weights it learns)` in `conv_net`.
const CONV_PAIRS: [(&str, usize); 3] = [("feedback.0", 1), ("feedback.1", 4), ("feedback.2", 5)];

#[test]
fn kolen_pollack_shrinks_b_minus_w_by_exactly_one_minus_lr_decay_per_sgd_step() {
    const LR: f32 = 0.1;
    // The optimizer's own decay acts on B and W alike and adds to the learner's.
    let (kp_decay, sgd_decay) = (0.03, 0.02);
    let data = common::random_dataset(128, 36, 4, 1);
    let config = TrainConfig {
        optimizer: Optimizer::Sgd {
            lr: LR,
            momentum: 0.0,
            weight_decay: sgd_decay,
            nesterov: false,
        },
        batch_size: 16,
        ..TrainConfig::default()
    };
    let learner = KolenPollack::default().with_decay(kp_decay);
    let mut t = Trainer::with_learner(conv_net(), config, Box::new(learner), Device::Cpu).unwrap();
    let gap = |t: &mut Trainer| {
        let net = t.network().unwrap();
        CONV_PAIRS.map(|(b, l)| distance(&t.tensor(b).unwrap(), net.weights(l).unwrap()))
    };
    let before = gap(&mut t);
    for _ in 0..5 {
        t.train_epoch(&data, |_, _| {}).unwrap();
    }
    let factor = 1.0 - LR as f64 * (kp_decay + sgd_decay) as f64;
    let expected = factor.powi(t.steps() as i32);
    for (b, a) in before.iter().zip(gap(&mut t)) {
        assert!(
            (a / b - expected).abs() < 1e-3 * expected,
            "||B - W|| ratio {} vs (1 - lr (λ + λ_sgd))^steps = {expected}",
            a / b
        );
    }
}

#[test]
fn weight_mirror_relaxes_feedback_to_sigma_squared_over_decay_times_the_weights() {
    let data = common::random_dataset(64, 8, 4, 2);
    // A network rate so small that W stays put while B relaxes towards it.
    let config = TrainConfig {
        optimizer: Optimizer::sgd(1e-7),
        batch_size: 64,
        ..TrainConfig::default()
    };
    let net = common::build_net(8, &[16, 16], Activation::Tanh, 4, Activation::Identity, 4);
    let wm = WeightMirror::default()
        .with_mirror_lr(0.1)
        .with_noise_std(0.5)
        .with_decay(0.5);
    let mut t = Trainer::with_learner(net, config, Box::new(wm), Device::Cpu).unwrap();
    for _ in 0..300 {
        t.train_epoch(&data, |_, _| {}).unwrap();
    }
    let net = t.network().unwrap();
    for (i, l) in [(0, 1), (1, 2)] {
        let b = t.tensor(&format!("feedback.{i}")).unwrap();
        let w = net.weights(l).unwrap();
        let ratio = norm(&b) / norm(w);
        let cos = b.iter().zip(w).map(|(x, y)| (x * y) as f64).sum::<f64>() / (norm(&b) * norm(w));
        let angle = cos.acos().to_degrees();
        eprintln!("B{i}: ||B||/||W|| = {ratio:.3} (σ²/λ = 0.5), angle {angle:.1}°");
        assert!((ratio - 0.5).abs() < 0.05, "B{i} norm ratio {ratio}");
        assert!(angle < 10.0, "B{i} angle {angle}");
    }
}

fn conv_config() -> TrainConfig {
    TrainConfig {
        optimizer: Optimizer::adam(0.01),
        batch_size: 16,
        ..TrainConfig::default()
    }
}

fn learned_feedback_learners() -> [Box<dyn Learner>; 2] {
    [
        Box::new(KolenPollack::default().with_decay(0.02)),
        Box::new(WeightMirror::default().with_mirror_lr(0.05)),
    ]
}

fn conv_trainer(learner: Box<dyn Learner>, backend: Box<dyn Backend>) -> Trainer {
    Trainer::with_learner_backend(conv_net(), conv_config(), learner, backend).unwrap()
}

#[cfg(feature = "gpu")]
#[test]
fn both_learners_train_a_conv_net_on_the_gpu_like_on_the_cpu() {
    let data = common::random_dataset(64, 36, 4, 3);
    let pairs = learned_feedback_learners()
        .into_iter()
        .zip(learned_feedback_learners());
    for (on_cpu, on_gpu) in pairs {
        let Some(gpu) = gpu() else {
            return;
        };
        let name = on_cpu.name();
        let mut cpu = conv_trainer(on_cpu, Box::new(CpuBackend::new()));
        let mut gpu_t = conv_trainer(on_gpu, Box::new(gpu));
        for _ in 0..3 {
            cpu.train_epoch(&data, |_, _| {}).unwrap();
            gpu_t.train_epoch(&data, |_, _| {}).unwrap();
        }
        let (c, g) = (cpu.network().unwrap(), gpu_t.network().unwrap());
        common::assert_trained_close(c.params(), g.params(), &format!("{name} parameters"));
        for (b, _) in CONV_PAIRS {
            let (bc, bg) = (cpu.tensor(b).unwrap(), gpu_t.tensor(b).unwrap());
            common::assert_trained_close(&bc, &bg, &format!("{name} {b}"));
        }
    }
}

#[test]
fn both_learners_resume_bit_for_bit_from_a_checkpoint_built_by_name() {
    let data = common::random_dataset(64, 36, 4, 4);
    for learner in learned_feedback_learners() {
        let name = learner.name();
        let mut run = conv_trainer(learner, Box::new(CpuBackend::new()));
        run.train_epoch(&data, |_, _| {}).unwrap();
        let ckpt = run.checkpoint().unwrap();
        assert_eq!(ckpt.learner, name);
        let bytes = ckpt.to_bytes().unwrap();
        let back = Checkpoint::from_bytes(&bytes, std::path::Path::new(&name)).unwrap();
        // Built by name with default settings; the checkpoint restores the run's own.
        let mut resumed = Trainer::from_checkpoint(&back, Device::Cpu).unwrap();
        assert_eq!(resumed.learner_name(), name);
        // Measuring takes a step without applying it: no B, noise stream or
        // parameter of the run may change.
        let batch: Vec<usize> = (0..16).collect();
        run.alignment(&data, &batch).unwrap();
        run.update_direction(&data, &batch).unwrap();
        for _ in 0..2 {
            run.train_epoch(&data, |_, _| {}).unwrap();
            resumed.train_epoch(&data, |_, _| {}).unwrap();
        }
        assert_eq!(
            run.network().unwrap().params(),
            resumed.network().unwrap().params(),
            "{name}"
        );
        for (b, _) in CONV_PAIRS {
            assert_eq!(
                run.tensor(b).unwrap(),
                resumed.tensor(b).unwrap(),
                "{name} {b}"
            );
        }
        assert_eq!(
            run.checkpoint().unwrap().learner_state,
            resumed.checkpoint().unwrap().learner_state
        );
    }
}

#[test]
fn settings_out_of_range_are_typed_errors() {
    let bad: [Box<dyn Learner>; 5] = [
        Box::new(KolenPollack::default().with_decay(-1.0)),
        Box::new(KolenPollack::default().with_decay(f32::NAN)),
        Box::new(WeightMirror::default().with_mirror_lr(0.0)),
        Box::new(WeightMirror::default().with_noise_std(f32::INFINITY)),
        Box::new(WeightMirror::default().with_decay(-0.5)),
    ];
    for learner in bad {
        let name = learner.name();
        let err = Trainer::with_learner(conv_net(), conv_config(), learner, Device::Cpu)
            .expect_err(&name);
        assert!(
            matches!(err, plasticity::Error::InvalidConfig(_)),
            "{name}: {err}"
        );
    }
    let mut kp = KolenPollack::default();
    let state = [("decay".to_string(), "-3".to_string())];
    assert!(kp.restore_state(&state).is_err());
    assert!(kp.restore_state(&[]).is_err());
    assert_eq!(kp.decay(), KolenPollack::default().decay());
}

#[test]
fn learned_feedback_lives_in_the_parameter_arena_and_shares_its_optimizer_pass() {
    // KP's B follows the network's optimizer: one pass over parameters and B. The
    // weight mirror trains B with its own SGD: a second pass, over the same arena
    // (the first pass's buffer, right after the parameters).
    use plasticity::backend::{OpKind, TracingBackend};
    use plasticity::learner::TensorKind;
    let data = common::random_dataset(8, 784, 10, 4);
    let all: Vec<usize> = (0..8).collect();
    let config = TrainConfig {
        optimizer: Optimizer::adam(1e-3),
        batch_size: 8,
        ..Default::default()
    };
    let learners: [(Box<dyn Learner>, usize); 2] = [
        (Box::new(KolenPollack::default()), 1),
        (Box::new(WeightMirror::default()), 2),
    ];
    for (learner, expected) in learners {
        let name = learner.name();
        let tracer = TracingBackend::new(Box::new(CpuBackend::new()));
        let trace = tracer.trace();
        let mut t =
            Trainer::with_learner_backend(mlp(), config, learner, Box::new(tracer)).unwrap();
        let params = mlp().params().len();
        trace.clear();
        t.train_batch(&data, &all).unwrap();
        let passes: Vec<_> = trace
            .ops()
            .into_iter()
            .filter(|op| op.kind == OpKind::OptimizerStep)
            .collect();
        assert_eq!(passes.len(), expected, "{name}: optimizer passes");
        let trainable: usize = t
            .tensor_specs()
            .iter()
            .filter(|s| s.kind == TensorKind::Trainable)
            .map(|s| s.rows * s.cols)
            .sum();
        let arena = passes[0].writes[0];
        let last = passes.last().unwrap().writes[0];
        assert_eq!(last.buf, arena.buf, "{name}: B in the parameter arena");
        assert_eq!(last.range().end, params + trainable, "{name}");
        if expected == 1 {
            assert_eq!(
                arena.range(),
                0..last.range().end,
                "{name}: one pass over all"
            );
        } else {
            assert_eq!(arena.range(), 0..params, "{name}: the network's pass");
            assert_eq!(last.range().start, params, "{name}: then B's");
        }
    }
}
