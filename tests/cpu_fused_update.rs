//! The CPU backend runs a step's gradient products fused with the optimizer pass that
//! follows them (`CpuBackend::with_fused_updates`). These tests hold it to its promise:
//! the same values bit for bit as running them apart, for every learner and optimizer,
//! and every call that depends on held products sees them run first.

mod common;

use plasticity::backend::{Backend, BufId, CpuBackend, LayerGrad, Mat, OptimizerPass};
use plasticity::learner::catalogue::{builtin, names};
use plasticity::{Activation, Network, Optimizer, TrainConfig, Trainer};

/// Trains `net` for a few steps with learner `name` on fused and unfused backends and
/// returns both parameter vectors.
fn both_ways(name: &str, net: &Network, optimizer: Optimizer) -> (Vec<f32>, Vec<f32>) {
    let data = common::random_dataset(96, net.input_size(), net.output_size(), 5);
    let config = TrainConfig {
        optimizer,
        batch_size: 32,
        ..TrainConfig::default()
    };
    let run = |fuse: bool| {
        let backend = CpuBackend::new().with_fused_updates(fuse);
        let learner = builtin(name, &config).unwrap();
        let mut trainer =
            Trainer::with_learner_backend(net.clone(), config, learner, Box::new(backend)).unwrap();
        for step in 0..4 {
            let indices: Vec<usize> = (0..32).map(|i| (step * 17 + i * 5) % 96).collect();
            trainer.train_batch(&data, &indices).unwrap();
        }
        trainer.network().unwrap().params().to_vec()
    };
    (run(true), run(false))
}

/// Plain SGD, Nesterov momentum with weight decay, and Adam: every kind of state.
fn optimizers() -> [Optimizer; 3] {
    [
        Optimizer::sgd(0.05),
        Optimizer::Sgd {
            lr: 0.02,
            momentum: 0.9,
            weight_decay: 1e-3,
            nesterov: true,
        },
        Optimizer::adam(1e-3),
    ]
}

fn assert_same_bits(fused: &[f32], apart: &[f32], what: &str) {
    assert_eq!(fused.len(), apart.len(), "{what}: lengths");
    let first = fused
        .iter()
        .zip(apart)
        .position(|(a, b)| a.to_bits() != b.to_bits());
    if let Some(i) = first {
        panic!(
            "{what}: parameter {i}: fused {} apart {}",
            fused[i], apart[i]
        );
    }
}

#[test]
fn every_learner_and_optimizer_gives_the_same_bits_fused_or_apart() {
    // The 600x1100 layer is cut into bands of rows, and each band into tiles of at most
    // 2^17 floats, so into several tiles of columns unless the machine has dozens of
    // threads; its `Wᵀ δ` (and FA's `Bᵀ δ`, on a transposed copy of `B`) is tall enough
    // to run column-major. Forward-forward's goodness needs unbounded units.
    let net = |activation| {
        Network::builder(20)
            .hidden(&[1100, 600, 16], activation)
            .dense(6, Activation::Identity)
            .seed(3)
            .build()
            .unwrap()
    };
    let (tanh, relu) = (net(Activation::Tanh), net(Activation::Relu));
    for name in names() {
        let net = if name == "ff" { &relu } else { &tanh };
        for optimizer in optimizers() {
            let (fused, apart) = both_ways(name, net, optimizer);
            assert_same_bits(&fused, &apart, &format!("{name} with {optimizer}"));
            assert!(
                fused.iter().zip(net.params()).any(|(a, b)| a != b),
                "{name} with {optimizer}: nothing was trained"
            );
        }
    }
}

#[test]
fn conv_nets_give_the_same_bits_fused_or_apart() {
    let net = common::small_conv_net();
    for name in ["bp", "dfa", "kp", "ddtp"] {
        let (fused, apart) = both_ways(name, &net, Optimizer::adam(1e-3));
        assert_same_bits(&fused, &apart, &format!("{name} on a conv net"));
    }
}

/// One layer's gradient, held, then something that depends on it.
struct Held {
    cpu: CpuBackend,
    grad: LayerGrad,
    delta: Mat,
    expected_w: Vec<f32>,
}

fn held() -> Held {
    let mut cpu = CpuBackend::new();
    let (delta_buf, input_buf, grads) = (
        cpu.alloc(4).unwrap(),
        cpu.alloc(6).unwrap(),
        cpu.alloc(8).unwrap(),
    );
    // 2 outputs, 3 inputs, batch 2.
    cpu.write(delta_buf, 0, &[1.0, 2.0, -1.0, 0.5]).unwrap();
    cpu.write(input_buf, 0, &[1.0, 0.0, -1.0, 2.0, 3.0, 1.0])
        .unwrap();
    let delta = Mat::new(delta_buf, 0, 2, 2);
    let grad = LayerGrad::new(
        delta,
        Mat::new(input_buf, 0, 3, 2),
        Mat::new(grads, 0, 2, 3),
        Mat::new(grads, 6, 2, 1),
    );
    cpu.layer_grads(&[grad]).unwrap();
    // grad_w[i][k] = sum_j delta[i][j] input[k][j].
    let expected_w = vec![1.0, -1.0 + 4.0, 3.0 + 2.0, -1.0, 1.0 + 1.0, -3.0 + 0.5];
    Held {
        cpu,
        grad,
        delta,
        expected_w,
    }
}

/// An SGD pass (rate 0.5) over the 8 floats of each buffer: the held layer's weights
/// and bias.
fn sgd_pass(params: BufId, grads: BufId, state: [BufId; 2]) -> OptimizerPass {
    let all = |buf| Mat::new(buf, 0, 1, 8);
    OptimizerPass {
        params: all(params),
        grads: all(grads),
        state: state.map(all),
        step: Optimizer::sgd(0.5).step_params(1),
        guard: None,
        keep_grads: true,
    }
}

#[test]
fn a_read_of_held_gradients_sees_them() {
    let mut h = held();
    let grads = h.grad.grad_w.buf;
    assert_eq!(h.cpu.read(grads, 0, 6).unwrap(), h.expected_w);
    assert_eq!(h.cpu.read(grads, 6, 2).unwrap(), [3.0, -0.5]);
}

#[test]
fn overwriting_a_held_products_input_runs_it_first() {
    let mut h = held();
    // The delta is written before anything reads the gradients: the held product must
    // have used the old one.
    h.cpu.fill(h.delta, 100.0).unwrap();
    assert_eq!(h.cpu.read(h.grad.grad_w.buf, 0, 6).unwrap(), h.expected_w);
}

#[test]
fn an_optimizer_pass_over_held_gradients_updates_with_them() {
    let mut h = held();
    let grads = h.grad.grad_w.buf;
    let (params, s0, s1) = (
        h.cpu.alloc(8).unwrap(),
        h.cpu.alloc(8).unwrap(),
        h.cpu.alloc(8).unwrap(),
    );
    h.cpu.write(params, 0, &[1.0; 8]).unwrap();
    h.cpu
        .optimizer_step(&sgd_pass(params, grads, [s0, s1]))
        .unwrap();
    let expected: Vec<f32> = h
        .expected_w
        .iter()
        .chain(&[3.0, -0.5])
        .map(|g| 1.0 - 0.5 * g)
        .collect();
    assert_eq!(h.cpu.read(params, 0, 8).unwrap(), expected);
    // The gradients were written too, as when run apart.
    assert_eq!(h.cpu.read(grads, 0, 6).unwrap(), h.expected_w);
}

#[test]
fn a_refused_optimizer_pass_loses_no_held_gradients() {
    let mut h = held();
    let grads = h.grad.grad_w.buf;
    let params = h.cpu.alloc(8).unwrap();
    // Both moments in one region: refused as overlapping writes.
    let pass = sgd_pass(params, grads, [params, params]);
    assert!(h.cpu.optimizer_step(&pass).is_err());
    assert_eq!(h.cpu.read(grads, 0, 6).unwrap(), h.expected_w);
    assert_eq!(h.cpu.read(params, 0, 8).unwrap(), [0.0; 8]);
}

/// One layer's buffers: `rows x cols` weights and then `rows` biases in `params` (and
/// likewise in `grads` and both state arenas), its delta and its input.
struct OneLayer {
    rows: usize,
    cols: usize,
    batch: usize,
    delta: BufId,
    input: BufId,
    params: BufId,
    grads: BufId,
    state: [BufId; 2],
}

impl OneLayer {
    fn params_len(&self) -> usize {
        self.rows * self.cols + self.rows
    }

    /// The layer's gradient, held, and then the optimizer pass over its arenas that
    /// consumes it (the fused pass): step `step` of `optimizer`.
    fn step(
        &self,
        cpu: &mut CpuBackend,
        optimizer: Optimizer,
        step: u64,
        keep_grads: bool,
    ) -> plasticity::Result<()> {
        let (rows, cols, batch) = (self.rows, self.cols, self.batch);
        cpu.layer_grads(&[LayerGrad::new(
            Mat::new(self.delta, 0, rows, batch),
            Mat::new(self.input, 0, cols, batch),
            Mat::new(self.grads, 0, rows, cols),
            Mat::new(self.grads, rows * cols, rows, 1),
        )])?;
        let all = |buf| Mat::new(buf, 0, 1, self.params_len());
        cpu.optimizer_step(&OptimizerPass {
            params: all(self.params),
            grads: all(self.grads),
            state: self.state.map(all),
            step: optimizer.step_params(step),
            guard: None,
            keep_grads,
        })
    }
}

/// One step of a 300x1400 layer (batch 32: bands of rows, tiles of columns) under
/// `optimizer`, its gradients held and then consumed by a pass that keeps them or not;
/// returns the parameters and state after the pass, or the pass's error. With
/// `nan_input`, that input feature holds a NaN.
fn wide_layer_step(
    optimizer: Optimizer,
    keep_grads: bool,
    nan_input: Option<usize>,
) -> plasticity::Result<Vec<Vec<f32>>> {
    let (rows, cols, batch) = (300, 1400, 32);
    let value = |i: usize, salt: usize| ((i * 7919 + salt) % 1013) as f32 / 1013.0 - 0.5;
    let mut cpu = CpuBackend::new();
    let params_len = rows * cols + rows;
    // Salt 6 is Adam's second moment: kept non-negative, as a run's is.
    let mut buf = |len: usize, salt: usize| {
        let id = cpu.alloc(len).unwrap();
        let data: Vec<f32> = (0..len)
            .map(|i| {
                if salt == 6 {
                    value(i, salt).abs()
                } else {
                    value(i, salt)
                }
            })
            .collect();
        cpu.write(id, 0, &data).unwrap();
        id
    };
    let (delta, input) = (buf(rows * batch, 1), buf(cols * batch, 2));
    let (params, grads) = (buf(params_len, 3), buf(params_len, 4));
    let state = [buf(params_len, 5), buf(params_len, 6)];
    if let Some(feature) = nan_input {
        cpu.write(input, feature * batch, &[f32::NAN]).unwrap();
    }
    let layer = OneLayer {
        rows,
        cols,
        batch,
        delta,
        input,
        params,
        grads,
        state,
    };
    layer.step(&mut cpu, optimizer, 3, keep_grads)?;
    Ok([params, state[0], state[1]]
        .iter()
        .map(|&b| cpu.read(b, 0, params_len).unwrap())
        .collect())
}

#[test]
fn a_pass_that_need_not_keep_the_gradients_updates_with_the_same_bits() {
    for optimizer in optimizers() {
        let kept = wide_layer_step(optimizer, true, None).unwrap();
        let consumed = wide_layer_step(optimizer, false, None).unwrap();
        for (what, (k, c)) in ["parameters", "first moment", "second moment"]
            .iter()
            .zip(kept.iter().zip(&consumed))
        {
            assert_same_bits(c, k, &format!("{optimizer}: {what}"));
        }
    }
}

#[test]
fn a_pass_reports_the_first_parameter_its_update_made_non_finite() {
    // Input 7 is NaN in one sample, so every row's weight from it is after the update
    // (the biases stay finite): plain SGD adds the product into the weights from its
    // epilogue, the other optimizers apply a computed tile.
    for optimizer in optimizers() {
        for keep_grads in [true, false] {
            match wide_layer_step(optimizer, keep_grads, Some(7)) {
                Err(plasticity::Error::NonFinite { index, value, .. }) => {
                    assert_eq!(index, 7, "{optimizer}, keep_grads {keep_grads}");
                    assert!(value.is_nan());
                }
                other => panic!(
                    "{optimizer}, keep_grads {keep_grads}: {:?}",
                    other.map(|_| "Ok")
                ),
            }
        }
    }
}

/// `scale · |m| · sign(w)` with `sign(0) = 0`, as the backend computes feedback.
fn expected_feedback(w: &[f32], m: Option<&[f32]>, scale: f32) -> Vec<f32> {
    let sign = |v: f32| f32::from(v > 0.0) - f32::from(v < 0.0);
    w.iter()
        .enumerate()
        .map(|(i, &w)| scale * m.map_or(1.0, |m| m[i].abs()) * sign(w))
        .collect()
}

/// Sign-concordant feedback the fused pass keeps current: right after the pass, before
/// any call asks for it, `B` holds the updated weights' feedback (under plain SGD, whose
/// product adds into the weights, and under Adam), and the next `sign_feedback` leaves
/// it so. After a write to the weights, to `B` or to the magnitudes, or with another
/// scale, the next call gives the feedback of what the regions then hold.
#[test]
fn sign_feedback_follows_the_weights_through_the_fused_pass_and_every_write() {
    let (rows, cols, batch) = (300, 700, 16);
    let value = |i: usize, salt: usize| ((i * 7919 + salt) % 1013) as f32 / 1013.0 - 0.5;
    for optimizer in [Optimizer::sgd(0.5), Optimizer::adam(0.05)] {
        let mut cpu = CpuBackend::new();
        let params_len = rows * cols + rows;
        let mut buf = |len: usize, values: &dyn Fn(usize) -> f32| {
            let id = cpu.alloc(len).unwrap();
            let data: Vec<f32> = (0..len).map(values).collect();
            cpu.write(id, 0, &data).unwrap();
            id
        };
        // Weights around zero (some exactly zero), so the step flips many signs.
        let params = buf(params_len, &|i| match i % 97 {
            0 => 0.0,
            _ => 1e-3 * value(i, 3),
        });
        let (delta, input) = (
            buf(rows * batch, &|i| value(i, 1)),
            buf(cols * batch, &|i| value(i, 2)),
        );
        let magnitudes = buf(rows * cols, &|i| value(i, 7));
        let grads = buf(params_len, &|_| 0.0);
        let state = [buf(params_len, &|_| 0.0), buf(params_len, &|_| 0.0)];
        let feedback = buf(rows * cols, &|_| 0.0);
        let (b, w, m) = (
            Mat::new(feedback, 0, rows, cols),
            Mat::new(params, 0, rows, cols),
            Mat::new(magnitudes, 0, rows, cols),
        );
        let read = |cpu: &mut CpuBackend, m: Mat| cpu.read(m.buf, m.offset, m.len()).unwrap();
        cpu.sign_feedback(b, w, Some(m), 1.0).unwrap();
        let (w_old, m_values) = (read(&mut cpu, w), read(&mut cpu, m));
        let want = expected_feedback(&w_old, Some(&m_values), 1.0);
        assert_same_bits(&read(&mut cpu, b), &want, "first");

        let layer = OneLayer {
            rows,
            cols,
            batch,
            delta,
            input,
            params,
            grads,
            state,
        };
        layer.step(&mut cpu, optimizer, 1, false).unwrap();
        // Read straight after the pass: `B` was kept current with the weights.
        let (w_new, b_after) = (read(&mut cpu, w), read(&mut cpu, b));
        let flipped = w_old
            .iter()
            .zip(&w_new)
            .filter(|(a, b)| (**a > 0.0) != (**b > 0.0))
            .count();
        assert!(flipped > 1000, "{optimizer}: only {flipped} signs flipped");
        let want = expected_feedback(&w_new, Some(&m_values), 1.0);
        assert_same_bits(&b_after, &want, &format!("{optimizer}: after the pass"));
        cpu.sign_feedback(b, w, Some(m), 1.0).unwrap();
        let what = format!("{optimizer}: asked again");
        assert_same_bits(&read(&mut cpu, b), &want, &what);

        // New weights, then a stray write into `B`, then new magnitudes: each call
        // after a write gives the feedback of the present values.
        let w_negated: Vec<f32> = w_new.iter().map(|v| -v).collect();
        cpu.write(params, 0, &w_negated).unwrap();
        cpu.sign_feedback(b, w, Some(m), 1.0).unwrap();
        let want = expected_feedback(&w_negated, Some(&m_values), 1.0);
        let what = format!("{optimizer}: new weights");
        assert_same_bits(&read(&mut cpu, b), &want, &what);
        cpu.write(feedback, 123, &[7.0; 40]).unwrap();
        cpu.sign_feedback(b, w, Some(m), 1.0).unwrap();
        let what = format!("{optimizer}: stray write");
        assert_same_bits(&read(&mut cpu, b), &want, &what);
        let m_new: Vec<f32> = (0..m.len()).map(|i| value(i, 11)).collect();
        cpu.write(magnitudes, 0, &m_new).unwrap();
        cpu.sign_feedback(b, w, Some(m), 1.0).unwrap();
        let want = expected_feedback(&w_negated, Some(&m_new), 1.0);
        let what = format!("{optimizer}: new magnitudes");
        assert_same_bits(&read(&mut cpu, b), &want, &what);
        // uSF's form, without magnitudes and at another scale.
        cpu.sign_feedback(b, w, None, 0.25).unwrap();
        let want = expected_feedback(&w_negated, None, 0.25);
        let what = format!("{optimizer}: uniform");
        assert_same_bits(&read(&mut cpu, b), &want, &what);
    }
}
