//! A learner written outside the crate, through the public API only: Kolen-Pollack
//! (Akrout et al. 2019) — feedback alignment whose feedback `B_l`, stored shaped like
//! `W_l`, is a trainable tensor receiving the SAME update as `W_l` (the product
//! `δ_l h_{l-1}^T`), with weight decay on both, so `B_l - W_l` shrinks geometrically
//! and `B` comes to align with `W`. It trains on the CPU and on the GPU backend, is
//! checkpointed by name, and its feedback angle falls where FA's does not.

mod common;

#[cfg(feature = "gpu")]
use common::gpu::gpu;
#[cfg(feature = "gpu")]
use plasticity::backend::CpuBackend;
use plasticity::backend::LayerGrad;
use plasticity::init::{learner_rng, FeedbackInit};
use plasticity::learner::{FeedbackPair, TensorSpec};
use plasticity::{LayerSpec, Learner, Optimizer, Result, Rule, StepCx, TrainConfig, Trainer};

const DECAY: f32 = 0.05;
const LR: f32 = 0.1;

fn optimizer() -> Optimizer {
    Optimizer::Sgd {
        lr: LR,
        momentum: 0.0,
        weight_decay: DECAY,
        nesterov: false,
    }
}

/// Kolen-Pollack over any stack of layers: one trainable `B` per weighted layer above
/// the first, plus a scratch bias-gradient sink per `B` (the grouped gradient product
/// always writes a bias gradient; B has none).
#[derive(Debug, Default)]
struct KolenPollack;

fn weighted(layers: &[LayerSpec]) -> Vec<usize> {
    (0..layers.len())
        .filter(|&l| layers[l].has_weights())
        .collect()
}

impl Learner for KolenPollack {
    fn name(&self) -> String {
        "kolen-pollack".into()
    }

    fn tensors(&self, layers: &[LayerSpec]) -> Vec<TensorSpec> {
        let mut specs = Vec::new();
        for (i, &l) in weighted(layers).iter().skip(1).enumerate() {
            let w = layers[l].weight_shape().unwrap();
            specs.push(TensorSpec::trainable(format!("kp.b{i}"), w.rows, w.cols));
            specs.push(TensorSpec::fixed(format!("kp.sink{i}"), w.rows, 1));
        }
        specs
    }

    fn init(&mut self, cx: &mut StepCx<'_>, seed: u64) -> Result<()> {
        let mut rng = learner_rng(seed);
        for i in 0..weighted(cx.layers()).len() - 1 {
            let b = cx.tensor(&format!("kp.b{i}"))?;
            let mut values = vec![0.0; b.len()];
            FeedbackInit::Uniform.fill(&mut values, b.rows, &mut rng)?;
            cx.backend().write(b.buf, b.offset, &values)?;
        }
        Ok(())
    }

    fn step(&mut self, cx: &mut StepCx<'_>) -> Result<()> {
        cx.forward()?;
        cx.output_error()?;
        let w = weighted(cx.layers());
        for l in (w[0] + 1..cx.layers().len()).rev() {
            let via = match w.iter().position(|&x| x == l) {
                Some(p) => cx.tensor(&format!("kp.b{}", p - 1))?,
                None => cx.weights(l),
            };
            cx.backward_layer(l, via)?;
        }
        // W's gradients, and the same products into each B's gradient: one grouped call.
        let mut grads: Vec<LayerGrad> = w.iter().filter_map(|&l| cx.layer_grad(l)).collect();
        for (i, &l) in w.iter().skip(1).enumerate() {
            let mut g = cx.layer_grad(l).unwrap();
            g.grad_w = cx.tensor_grad(&format!("kp.b{i}"))?;
            g.grad_b = cx.tensor(&format!("kp.sink{i}"))?;
            grads.push(g);
        }
        cx.backend().layer_grads(&grads)
    }

    fn tensor_optimizer(&self) -> Option<Optimizer> {
        Some(optimizer())
    }

    fn feedback_pairs(&self, layers: &[LayerSpec]) -> Vec<FeedbackPair> {
        let w = weighted(layers);
        (0..w.len() - 1)
            .map(|i| FeedbackPair {
                tensor: format!("kp.b{i}"),
                weights_of: w[i + 1],
                transposed: false,
                forms_delta_of: w[i],
            })
            .collect()
    }
}

fn config() -> TrainConfig {
    TrainConfig {
        optimizer: optimizer(),
        batch_size: 16,
        ..TrainConfig::default()
    }
}

fn feedback_angles(t: &mut Trainer, data: &plasticity::data::Dataset) -> Vec<f64> {
    t.alignment(data, &(0..16).collect::<Vec<_>>())
        .unwrap()
        .iter()
        .filter_map(|a| a.feedback_angle)
        .collect()
}

fn distance(a: &[f32], b: &[f32]) -> f64 {
    a.iter()
        .zip(b)
        .map(|(x, y)| (*x as f64 - *y as f64).powi(2))
        .sum::<f64>()
        .sqrt()
}

#[test]
fn kolen_pollack_pulls_its_feedback_onto_the_weights() {
    let data = common::random_dataset(256, 36, 4, 1);
    let mut kp = Trainer::with_learner(
        common::small_conv_net(),
        config(),
        Box::new(KolenPollack),
        plasticity::Device::Cpu,
    )
    .unwrap();
    let fa_config = TrainConfig {
        rule: Rule::FeedbackAlignment,
        ..config()
    };
    let mut fa =
        Trainer::new(common::small_conv_net(), fa_config, plasticity::Device::Cpu).unwrap();
    let kp_start = feedback_angles(&mut kp, &data);
    assert_eq!(
        kp_start.len(),
        2,
        "B for the dense layers above the conv layer"
    );
    // Random B starts near orthogonal to W.
    assert!(kp_start.iter().all(|&a| a > 60.0), "{kp_start:?}");
    let gap = |t: &mut Trainer| {
        let net = t.network().unwrap();
        [(0, 3), (1, 4)].map(|(i, l)| {
            distance(
                &t.tensor(&format!("kp.b{i}")).unwrap(),
                net.weights(l).unwrap(),
            )
        })
    };
    let before = gap(&mut kp);
    for _ in 0..30 {
        kp.train_epoch(&data, |_, _| {}).unwrap();
        fa.train_epoch(&data, |_, _| {}).unwrap();
    }
    // B and W get the same gradient and the same decay, so B - W only decays:
    // ||B - W|| shrinks by exactly (1 - lr·decay) per step.
    let expected = (1.0 - LR as f64 * DECAY as f64).powi(kp.steps() as i32);
    for (b, a) in before.iter().zip(gap(&mut kp)) {
        assert!(
            (a / b - expected).abs() < 1e-3 * expected + 1e-5,
            "||B - W|| ratio {} vs (1 - lr λ)^steps = {expected}",
            a / b
        );
    }
    let kp_end = feedback_angles(&mut kp, &data);
    let fa_end = feedback_angles(&mut fa, &data);
    for (start, end) in kp_start.iter().zip(&kp_end) {
        assert!(end < start, "KP angle {start} -> {end}");
    }
    eprintln!("feedback angles after 30 epochs: KP {kp_end:?}, FA {fa_end:?}");
}

#[cfg(feature = "gpu")]
#[test]
fn a_learner_from_outside_trains_on_the_gpu_like_on_the_cpu_and_checkpoints_by_name() {
    let Some(gpu) = gpu() else {
        return;
    };
    let data = common::random_dataset(64, 36, 4, 2);
    let mut cpu = Trainer::with_learner_backend(
        common::small_conv_net(),
        config(),
        Box::new(KolenPollack),
        Box::new(CpuBackend::new()),
    )
    .unwrap();
    let mut gpu = Trainer::with_learner_backend(
        common::small_conv_net(),
        config(),
        Box::new(KolenPollack),
        Box::new(gpu),
    )
    .unwrap();
    for _ in 0..3 {
        cpu.train_epoch(&data, |_, _| {}).unwrap();
        gpu.train_epoch(&data, |_, _| {}).unwrap();
    }
    let (c, g) = (cpu.network().unwrap(), gpu.network().unwrap());
    for (i, (a, b)) in c.params().iter().zip(g.params()).enumerate() {
        assert!(
            (a - b).abs() < 1e-4 + 1e-3 * a.abs(),
            "parameter {i}: cpu {a} gpu {b}"
        );
    }
    let (bc, bg) = (cpu.tensor("kp.b0").unwrap(), gpu.tensor("kp.b0").unwrap());
    for (a, b) in bc.iter().zip(&bg) {
        assert!((a - b).abs() < 1e-4 + 1e-3 * a.abs(), "B: cpu {a} gpu {b}");
    }
    // Saved by name, restored into a fresh learner, and the run continues bit for bit.
    let ckpt = cpu.checkpoint().unwrap();
    assert_eq!(ckpt.learner, "kolen-pollack");
    let names: Vec<&str> = ckpt.tensors.iter().map(|t| t.name.as_str()).collect();
    assert!(
        names.contains(&"kp.b0") && names.contains(&"kp.b1"),
        "{names:?}"
    );
    assert_eq!(ckpt.learner_optimizer_state[0].len(), bc.len() + 4 * 12);
    let bytes = ckpt.to_bytes().unwrap();
    let back = plasticity::Checkpoint::from_bytes(&bytes, std::path::Path::new("kp")).unwrap();
    let mut resumed = Trainer::from_checkpoint_with_learner(
        &back,
        Box::new(KolenPollack),
        Box::new(CpuBackend::new()),
    )
    .unwrap();
    cpu.train_epoch(&data, |_, _| {}).unwrap();
    resumed.train_epoch(&data, |_, _| {}).unwrap();
    assert_eq!(
        cpu.network().unwrap().params(),
        resumed.network().unwrap().params()
    );
    assert_eq!(
        cpu.tensor("kp.b1").unwrap(),
        resumed.tensor("kp.b1").unwrap()
    );
    // A built-in loader refuses it with a message that says what to do.
    let err = Trainer::from_checkpoint(&back, plasticity::Device::Cpu).unwrap_err();
    assert!(
        err.to_string().contains("from_checkpoint_with_learner"),
        "{err}"
    );
}
