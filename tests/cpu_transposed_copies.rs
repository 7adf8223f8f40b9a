//! The CPU backend runs tall `Bᵀ δ` products on transposed copies of matrices it keeps
//! reading unchanged (`CpuBackend::with_transposed_copies`): FA's fixed feedback. These
//! tests hold the copies to the matrices' present values, after writes of any kind and
//! within any budget, and training with them to training without.

mod common;

use plasticity::backend::{Backend, BufId, CpuBackend, Gemm, Mat};
use plasticity::{Activation, Network, Optimizer, Rule, TrainConfig, Trainer};

/// `W` is `DEPTH x ROWS` (a layer of `ROWS` inputs and `DEPTH` outputs), `δ` is
/// `DEPTH x COLS`: large enough for the backend to keep a copy of `W`, and tall enough
/// that the product without one is written column-major.
const ROWS: usize = 1100;
const DEPTH: usize = 600;
const COLS: usize = 24;

fn value(i: usize, salt: usize) -> f32 {
    ((i * 7919 + salt * 104_729) % 1013) as f32 / 1013.0 - 0.5
}

/// A new buffer of `cpu` holding `values`.
fn stored(cpu: &mut CpuBackend, values: &[f32]) -> BufId {
    let buf = cpu.alloc(values.len()).unwrap();
    cpu.write(buf, 0, values).unwrap();
    buf
}

/// A backend holding `W` and `δ`, and the product `C = 0.5 Wᵀ δ` to run on it.
struct Product {
    cpu: CpuBackend,
    /// `(ROWS, DEPTH, COLS)` unless another shape was asked for.
    shape: (usize, usize, usize),
    w: Vec<f32>,
    delta: Vec<f32>,
    op: Gemm,
}

impl Product {
    fn new(cpu: CpuBackend) -> Self {
        Self::with_shape(cpu, (ROWS, DEPTH, COLS))
    }

    fn with_shape(cpu: CpuBackend, shape: (usize, usize, usize)) -> Self {
        let mut cpu = cpu;
        let (rows, depth, cols) = shape;
        let w: Vec<f32> = (0..depth * rows).map(|i| value(i, 1)).collect();
        let delta: Vec<f32> = (0..depth * cols).map(|i| value(i, 2)).collect();
        let (wb, db) = (stored(&mut cpu, &w), stored(&mut cpu, &delta));
        let cb = cpu.alloc(rows * cols).unwrap();
        let op = Gemm {
            alpha: 0.5,
            ..Gemm::new(
                Mat::new(cb, 0, rows, cols),
                Mat::new(wb, 0, depth, rows),
                true,
                Mat::new(db, 0, depth, cols),
                false,
            )
        };
        Product {
            cpu,
            shape,
            w,
            delta,
            op,
        }
    }

    fn w_buf(&self) -> BufId {
        self.op.a.buf
    }

    /// Runs the product twice (a matrix is copied at its second read since its last
    /// write) and checks it against f64 sums over the host's `W` and `δ`.
    fn check(&mut self, what: &str) {
        self.check_once(&format!("{what}, first read"));
        self.check_once(&format!("{what}, second read"));
    }

    fn check_once(&mut self, what: &str) {
        self.cpu.gemm(&self.op).unwrap();
        let (rows, depth, cols) = self.shape;
        let got = self.cpu.read(self.op.c.buf, 0, rows * cols).unwrap();
        for i in 0..rows {
            for j in 0..cols {
                let (exact, magnitude) = (0..depth)
                    .map(|k| self.w[k * rows + i] as f64 * self.delta[k * cols + j] as f64)
                    .fold((0.0, 0.0), |(s, m), t| (s + t, m + t.abs()));
                let g = got[i * cols + j] as f64;
                assert!(
                    (g - 0.5 * exact).abs() <= 1e-6 * magnitude,
                    "{what}: ({i}, {j}) is {g}, exact {}",
                    0.5 * exact
                );
            }
        }
    }
}

#[test]
fn products_see_every_kind_of_write_to_the_weight() {
    let mut p = Product::new(CpuBackend::new());
    p.check("first products");
    p.check("from the copy");
    // One element, through `write`.
    let at = 37 * ROWS + 1000;
    p.w[at] = 3.0;
    let w = p.w_buf();
    p.cpu.write(w, at, &[3.0]).unwrap();
    p.check("after writing one element");
    // A stretch of rows, through `fill`.
    p.w[ROWS * 5..ROWS * 7].fill(-0.25);
    p.cpu.fill(Mat::new(w, ROWS * 5, 2, ROWS), -0.25).unwrap();
    p.check("after filling two rows");
    // As the output of another product: W = 2 I W.
    let identity: Vec<f32> = (0..DEPTH * DEPTH)
        .map(|i| f32::from(i % (DEPTH + 1) == 0))
        .collect();
    let (eye, before) = (stored(&mut p.cpu, &identity), stored(&mut p.cpu, &p.w));
    let twice = Gemm {
        alpha: 2.0,
        ..Gemm::new(
            Mat::new(w, 0, DEPTH, ROWS),
            Mat::new(eye, 0, DEPTH, DEPTH),
            false,
            Mat::new(before, 0, DEPTH, ROWS),
            false,
        )
    };
    p.cpu.gemm(&twice).unwrap();
    p.w.iter_mut().for_each(|v| *v *= 2.0);
    p.check("after a product wrote W");
}

#[test]
fn a_matrix_too_short_for_the_column_major_form_gets_a_copy_too() {
    // 600 rows of output: without a copy this product runs row-major.
    let mut p = Product::with_shape(CpuBackend::new(), (600, 600, COLS));
    p.check("600x600");
    let w = p.w_buf();
    p.w[1234] = -2.0;
    p.cpu.write(w, 1234, &[-2.0]).unwrap();
    p.check("600x600, after a write");
}

#[test]
fn a_budget_too_small_for_a_copy_multiplies_all_the_same() {
    for bytes in [0, DEPTH * ROWS * 4 - 4] {
        let mut p = Product::new(CpuBackend::new().with_transposed_copies(bytes));
        p.check(&format!("budget {bytes} B"));
        let w = p.w_buf();
        p.w[0] = 1.5;
        p.cpu.write(w, 0, &[1.5]).unwrap();
        p.check(&format!("budget {bytes} B, after a write"));
    }
}

#[test]
fn a_released_weights_copy_does_not_outlive_it() {
    let mut p = Product::new(CpuBackend::new());
    p.check("before");
    let w = p.w_buf();
    p.cpu.release(w).unwrap();
    // A new weight, maybe where the old one was: no copy of the old one may serve it.
    p.w.iter_mut().for_each(|v| *v = -*v);
    let fresh = stored(&mut p.cpu, &p.w);
    p.op.a.buf = fresh;
    p.check("a new weight");
}

#[test]
fn training_with_copies_follows_training_without_them() {
    // FA sends the delta down through the fixed 600x1100 `B` of the second layer: from
    // the second step on, on its copy; without copies, written column-major and
    // transposed into place. faer may sum in another order, so close, not equal.
    let net = Network::builder(30)
        .hidden(&[1100, 600], Activation::Tanh)
        .dense(5, Activation::Identity)
        .seed(4)
        .build()
        .unwrap();
    let data = common::random_dataset(64, 30, 5, 9);
    let config = TrainConfig {
        rule: Rule::FeedbackAlignment,
        optimizer: Optimizer::adam(1e-3),
        batch_size: 32,
        ..TrainConfig::default()
    };
    let run = |cpu: CpuBackend| {
        let mut trainer = Trainer::with_backend(net.clone(), config, Box::new(cpu)).unwrap();
        for step in 0..4 {
            let indices: Vec<usize> = (0..32).map(|i| (step * 11 + i * 3) % 64).collect();
            trainer.train_batch(&data, &indices).unwrap();
        }
        trainer.network().unwrap().params().to_vec()
    };
    let with = run(CpuBackend::new());
    let without = run(CpuBackend::new().with_transposed_copies(0));
    let start = net.params();
    let (mut moved, mut apart) = (0.0f64, 0.0f64);
    for ((a, b), s) in with.iter().zip(&without).zip(start) {
        moved = moved.max((a - s).abs() as f64);
        apart = apart.max((a - b).abs() as f64);
    }
    assert!(moved > 1e-3, "training moved the parameters by {moved}");
    assert!(
        apart <= 1e-5,
        "with and without copies differ by {apart} (training moved them {moved})"
    );
}
