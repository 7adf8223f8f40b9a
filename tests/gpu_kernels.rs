//! Every GPU kernel against the CPU backend on random inputs.
//!
//! Runs on any wgpu adapter, software ones included (lavapipe in CI). Without an
//! adapter each test passes without checking anything and the binary writes one
//! `warning: GPU tests SKIPPED` line that plain `cargo test` shows (see
//! `common::gpu::skip`), unless `PLASTICITY_REQUIRE_GPU=1` makes it a failure.
//!
//! Tolerances (`|gpu - cpu| <= bound`):
//! - GEMM and layer gradients: `2 (k + 2) eps Σ_k |a_ik b_kj| + 2 eps |beta c|`
//!   with `eps = 2^-23`, twice the classical worst-case bound of a length-`k` f32 dot
//!   product (each backend is within it of the exact value; they sum in different
//!   orders). Measured on lavapipe: at most 15% of the bound.
//! - Loss statistics: the loss sum within `1e-6 + (4 batch + 20) eps |sum|` (sums of
//!   positive terms in different orders), the correct count and sample count exact.
//! - Elementwise kernels, loss errors and optimizers: `1e-6 + 1e-5 |cpu|` (same formulas,
//!   differing only in the last ulps of the GPU's exp, log, division and sqrt and in
//!   fused multiply-adds). Measured on lavapipe: at most 15% of it (bias + tanh).
// The whole file tests the GPU backend.
#![cfg(feature = "gpu")]

mod common;

use std::collections::HashMap;

use common::gpu::gpu;
use plasticity::backend::gpu::GemmKernel;
use plasticity::backend::{
    gather, Axpby, Backend, BufId, ColumnOp, CpuBackend, Epilogue, FeatureEncoding, Flags, Gather,
    Gemm, GpuBackend, Guard, LayerGrad, LossGrad, Mat, Noise, OptimizerPass, StoredData,
};
use plasticity::{Activation, Error, Loss, Optimizer};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

const EPS: f64 = f32::EPSILON as f64;

/// The same buffers on both backends.
struct Pair {
    cpu: CpuBackend,
    gpu: GpuBackend,
    rng: ChaCha8Rng,
    lens: HashMap<BufId, usize>,
    /// Largest `|gpu - cpu| / bound` of the `assert_close` checks so far.
    worst: f64,
    /// Dispatches a fused GEMM takes: 1, or 2 while split-K is forced.
    gemm_passes: u64,
}

impl Drop for Pair {
    fn drop(&mut self) {
        eprintln!("worst |gpu - cpu| / tolerance: {:.3}", self.worst);
    }
}

impl Pair {
    fn new(seed: u64) -> Option<Pair> {
        Some(Pair {
            cpu: CpuBackend::new(),
            gpu: gpu()?,
            rng: ChaCha8Rng::seed_from_u64(seed),
            lens: HashMap::new(),
            worst: 0.0,
            gemm_passes: 1,
        })
    }

    fn random(&mut self, len: usize, lo: f32, hi: f32) -> Vec<f32> {
        (0..len).map(|_| self.rng.random_range(lo..hi)).collect()
    }

    /// A buffer holding `data` on both backends.
    fn buffer(&mut self, data: &[f32]) -> BufId {
        let id = self.cpu.alloc(data.len()).unwrap();
        assert_eq!(self.gpu.alloc(data.len()).unwrap(), id);
        self.lens.insert(id, data.len());
        self.cpu.write(id, 0, data).unwrap();
        self.gpu.write(id, 0, data).unwrap();
        id
    }

    fn random_buffer(&mut self, len: usize) -> BufId {
        let data = self.random(len, -1.0, 1.0);
        self.buffer(&data)
    }

    fn run(&mut self, op: impl Fn(&mut dyn Backend) -> plasticity::Result<()>) {
        op(&mut self.cpu).unwrap();
        op(&mut self.gpu).unwrap();
    }

    fn both(&mut self, buf: BufId) -> (Vec<f32>, Vec<f32>) {
        let len = self.cpu_len(buf);
        (
            self.cpu.read(buf, 0, len).unwrap(),
            self.gpu.read(buf, 0, len).unwrap(),
        )
    }

    fn cpu_len(&self, buf: BufId) -> usize {
        self.lens[&buf]
    }

    /// Asserts `buf` agrees within `1e-6 + 1e-5 |cpu|`; returns the worst ratio.
    fn assert_close(&mut self, buf: BufId, what: &str) -> f64 {
        let (c, g) = self.both(buf);
        let bounds: Vec<f64> = c.iter().map(|&v| 1e-6 + 1e-5 * (v as f64).abs()).collect();
        let worst = assert_within(&c, &g, &bounds, what);
        self.worst = self.worst.max(worst);
        worst
    }
}

/// Asserts `|g - c| <= bound` elementwise; returns the worst `|g - c| / bound`.
fn assert_within(c: &[f32], g: &[f32], bounds: &[f64], what: &str) -> f64 {
    assert_eq!(c.len(), g.len(), "{what}: lengths");
    let mut worst = 0.0f64;
    for (i, ((&c, &g), &b)) in c.iter().zip(g).zip(bounds).enumerate() {
        let diff = (c as f64 - g as f64).abs();
        assert!(
            diff <= b || (c.is_nan() && g.is_nan()),
            "{what}: element {i}: cpu {c} gpu {g} (|diff| {diff:e} > {b:e})"
        );
        worst = worst.max(diff / b);
    }
    worst
}

/// `op(m)[i, j]` of a row-major host matrix.
fn at(data: &[f32], m: Mat, trans: bool, i: usize, j: usize) -> f64 {
    let (r, c) = if trans { (j, i) } else { (i, j) };
    data[m.offset + r * m.cols + c] as f64
}

/// The per-element error bound of a GEMM (see the file docs).
fn gemm_bounds(op: &Gemm, a: &[f32], b: &[f32], c_old: &[f32]) -> Vec<f64> {
    let (m, k) = op.a.shape(op.trans_a);
    let n = op.c.cols;
    let mut bounds = vec![0.0; c_old.len()];
    for i in 0..m {
        for j in 0..n {
            let s: f64 = (0..k)
                .map(|kk| (at(a, op.a, op.trans_a, i, kk) * at(b, op.b, op.trans_b, kk, j)).abs())
                .sum();
            let old = c_old[op.c.offset + i * n + j] as f64;
            bounds[op.c.offset + i * n + j] =
                2.0 * (k as f64 + 2.0) * EPS * (op.alpha as f64).abs().max(1.0) * s
                    + 2.0 * EPS * (op.beta as f64 * old).abs()
                    + 1e-30;
        }
    }
    bounds
}

/// One GEMM on both backends: factors share a buffer at odd offsets, C sits at an
/// odd offset in another (or, with `c_with_a`, in the factors' buffer after them).
fn check_gemm(
    pair: &mut Pair,
    (m, n, k): (usize, usize, usize),
    (trans_a, trans_b): (bool, bool),
    (alpha, beta): (f32, f32),
    c_with_a: bool,
) -> f64 {
    let (ar, ac) = if trans_a { (k, m) } else { (m, k) };
    let (br, bc) = if trans_b { (n, k) } else { (k, n) };
    let (off_a, off_b) = (3, 3 + m * k + 5);
    let off_c_shared = off_b + k * n + 1;
    let factors_len = off_c_shared + if c_with_a { m * n } else { 0 };
    let factors = pair.random_buffer(factors_len);
    let (c_buf, off_c) = if c_with_a {
        (factors, off_c_shared)
    } else {
        (pair.random_buffer(m * n + 7), 7)
    };
    let op = Gemm {
        c: Mat::new(c_buf, off_c, m, n),
        a: Mat::new(factors, off_a, ar, ac),
        trans_a,
        b: Mat::new(factors, off_b, br, bc),
        trans_b,
        alpha,
        beta,
    };
    let (ab, _) = pair.both(factors);
    let (c_old, _) = pair.both(c_buf);
    pair.run(|be| be.gemm(&op));
    let (c, g) = pair.both(c_buf);
    let bounds = gemm_bounds(&op, &ab, &ab, &c_old);
    let what = format!("gemm {m}x{n}x{k} ta={trans_a} tb={trans_b} a={alpha} b={beta}");
    let worst = assert_within(&c, &g, &bounds, &what);
    if !c_with_a {
        // The factors must be untouched.
        let (fc, fg) = pair.both(factors);
        assert_eq!(fc, fg, "{what}: factors changed");
    }
    worst
}

#[test]
fn gemm_all_transposes_awkward_sizes_and_offsets() {
    let Some(mut pair) = Pair::new(1) else { return };
    let sizes = [
        (1, 1, 1),
        (7, 1, 33),
        (1, 7, 7),
        (33, 7, 257),
        (257, 33, 7),
        (7, 257, 33),
        (65, 63, 64),
        (129, 130, 17),
    ];
    let mut worst = 0.0f64;
    for &size in &sizes {
        for trans in [(false, false), (true, false), (false, true), (true, true)] {
            for scale in [(1.0, 0.0), (-0.5, 1.0), (2.0, 0.25)] {
                worst = worst.max(check_gemm(&mut pair, size, trans, scale, false));
            }
        }
    }
    // Big square, C sharing the factors' buffer.
    for trans in [(false, false), (true, false), (false, true)] {
        worst = worst.max(check_gemm(
            &mut pair,
            (257, 257, 257),
            trans,
            (1.0, 0.5),
            true,
        ));
    }
    eprintln!("gemm: worst |gpu - cpu| / bound = {worst:.3}");
}

/// On every kernel (see also `gemm_wide_beta_zero_ignores_nan_in_c` for larger sizes).
#[test]
fn gemm_beta_zero_ignores_nan_in_c() {
    let Some(mut pair) = Pair::new(2) else { return };
    let a = pair.random_buffer(6);
    for kernel in KERNELS {
        pair.gpu.force_gemm_kernel(kernel);
        let c = pair.buffer(&[f32::NAN; 4]);
        let op = Gemm::new(
            Mat::new(c, 0, 2, 2),
            Mat::new(a, 0, 2, 3),
            false,
            Mat::new(a, 0, 3, 2),
            false,
        );
        pair.run(|be| be.gemm(&op));
        let (_, g) = pair.both(c);
        assert!(g.iter().all(|v| v.is_finite()), "{kernel:?}: {g:?}");
        pair.assert_close(c, &format!("gemm beta=0 over NaN, kernel {kernel:?}"));
    }
    pair.gpu.force_gemm_kernel(None);
}

#[test]
fn bias_activation_every_activation() {
    let Some(mut pair) = Pair::new(3) else { return };
    for act in Activation::ALL {
        for (rows, cols) in [(1, 1), (7, 33), (33, 257)] {
            let z = pair.random(rows * cols + 5, -9.0, 9.0);
            let z = pair.buffer(&z);
            let bias = pair.random_buffer(rows + 2);
            let zm = Mat::new(z, 5, rows, cols);
            let bm = Mat::new(bias, 2, rows, 1);
            pair.run(|be| be.bias_activation(zm, bm, act));
            pair.assert_close(z, &format!("bias_activation {act} {rows}x{cols}"));
        }
    }
}

#[test]
fn activation_grad_every_activation() {
    let Some(mut pair) = Pair::new(4) else { return };
    for act in Activation::ALL {
        let (rows, cols) = (33, 65);
        let len = rows * cols;
        // h as the activation would produce it.
        let z = pair.random(len, -4.0, 4.0);
        let h: Vec<f32> = z.iter().map(|&v| act.apply(v)).collect();
        let mut shared = pair.random(len + 3, -1.0, 1.0);
        shared.extend_from_slice(&h);
        let buf = pair.buffer(&shared);
        let delta = Mat::new(buf, 3, rows, cols);
        let hm = Mat::new(buf, 3 + len, rows, cols);
        pair.run(|be| be.activation_grad(delta, hm, act));
        pair.assert_close(buf, &format!("activation_grad {act}"));
    }
}

/// `write_with` sets exactly its region on both backends (the GPU through the default,
/// a staged host vector), leaves the rest alone, and refuses a region past the buffer.
#[test]
fn write_with_fills_exactly_its_region() {
    let Some(mut pair) = Pair::new(4) else { return };
    let buf = pair.buffer(&[-1.0; 40]);
    pair.run(|be| {
        be.write_with(buf, 7, 25, &mut |dst| {
            for (i, v) in dst.iter_mut().enumerate() {
                *v = i as f32 * 0.5;
            }
        })
    });
    let (c, g) = pair.both(buf);
    assert_eq!(c, g);
    assert_eq!(c[..7], [-1.0; 7]);
    assert_eq!(
        c[7..32],
        (0..25).map(|i| i as f32 * 0.5).collect::<Vec<_>>()[..]
    );
    assert_eq!(c[32..], [-1.0; 8]);
    for be in [&mut pair.cpu as &mut dyn Backend, &mut pair.gpu] {
        let err = be
            .write_with(buf, 30, 11, &mut |dst| dst.fill(2.0))
            .unwrap_err();
        assert!(matches!(err, Error::Backend(_)), "{err}");
    }
    assert_eq!(
        pair.both(buf),
        (c.clone(), c),
        "a refused write changed the buffer"
    );
}

#[test]
fn axpby_overwrites_and_accumulates_at_offsets() {
    let Some(mut pair) = Pair::new(5) else { return };
    for (rows, cols) in [(1, 1), (7, 33), (300, 257)] {
        let len = rows * cols;
        // x and y share one buffer at odd offsets; y starts with NaN where beta = 0
        // must not read it.
        let mut shared = pair.random(len + 3, -1.0, 1.0);
        shared.extend(std::iter::repeat_n(f32::NAN, len));
        let buf = pair.buffer(&shared);
        let (x, y) = (
            Mat::new(buf, 3, rows, cols),
            Mat::new(buf, 3 + len, rows, cols),
        );
        pair.run(|be| be.axpby(&Axpby::new(y, -1.5, x, 0.0)));
        pair.assert_close(buf, &format!("axpby overwrite {rows}x{cols}"));
        pair.run(|be| be.axpby(&Axpby::new(y, 0.25, x, 0.5)));
        pair.assert_close(buf, &format!("axpby accumulate {rows}x{cols}"));
    }
}

/// Noise is a pure function of (seed, element): the GPU draws what the CPU draws, by the
/// same polynomial `ln` and `cos` (not the GPU's own, which Vulkan lets be 2^-11 off),
/// up to its `sqrt` and any multiply-adds its compiler fuses.
#[test]
fn noise_draws_the_same_values_on_both_backends() {
    let Some(mut pair) = Pair::new(6) else { return };
    let len = 100_003;
    let buf = pair.buffer(&vec![1.0; len + 5]);
    let out = Mat::new(buf, 5, 1, len);
    for (seed, std, accumulate) in [(0, 1.0, false), (12345, 0.3, true), (u32::MAX, 2.0, true)] {
        let op = Noise {
            accumulate,
            ..Noise::normal(out, std, seed)
        };
        pair.run(|be| be.noise(&op));
        let (c, g) = pair.both(buf);
        let bounds: Vec<f64> = c.iter().map(|&v| 1e-5 * (1.0 + (v as f64).abs())).collect();
        assert_within(&c, &g, &bounds, &format!("noise seed {seed}"));
        assert_eq!(c[..5], [1.0; 5], "noise stays inside its region");
    }
    let err = pair.gpu.noise(&Noise::normal(out, f32::NAN, 0));
    assert!(matches!(err, Err(Error::InvalidConfig(_))), "{err:?}");
}

/// Uniform noise is the same hashed bits scaled into `(lo, hi]`: the GPU draws what the
/// CPU draws, to the rounding of one multiply-add.
#[test]
fn uniform_noise_draws_the_same_values_on_both_backends() {
    let Some(mut pair) = Pair::new(8) else { return };
    let len = 70_001;
    let buf = pair.buffer(&vec![1.0; len + 3]);
    let out = Mat::new(buf, 3, 1, len);
    for (seed, lo, hi, accumulate) in [
        (0, -0.5, 0.5, false),
        (777, 0.0, 1.0, true),
        (u32::MAX, -3.0, -1.0, false),
    ] {
        let op = Noise {
            accumulate,
            ..Noise::uniform(out, lo, hi, seed)
        };
        pair.run(|be| be.noise(&op));
        let (c, g) = pair.both(buf);
        let bounds: Vec<f64> = c.iter().map(|&v| 1e-6 * (1.0 + (v as f64).abs())).collect();
        assert_within(&c, &g, &bounds, &format!("uniform noise seed {seed}"));
        assert_eq!(c[..3], [1.0; 3], "noise stays inside its region");
    }
    let err = pair.gpu.noise(&Noise::uniform(out, 1.0, 0.0, 0));
    assert!(matches!(err, Err(Error::InvalidConfig(_))), "{err:?}");
}

#[test]
fn column_ops_at_awkward_shapes_and_offsets() {
    let Some(mut pair) = Pair::new(7) else { return };
    for (rows, cols) in [(1, 1), (13, 7), (500, 129), (3, 1000)] {
        let len = rows * cols;
        let x = pair.random(len + 2, -2.0, 2.0);
        let xb = pair.buffer(&x);
        let xm = Mat::new(xb, 2, rows, cols);
        // Outputs after NaN padding, so an overrun shows.
        let mut out = vec![f32::NAN; 3];
        out.extend(pair.random(len + cols, -1.0, 1.0));
        let ob = pair.buffer(&out);
        let row = Mat::new(ob, 3, 1, cols);
        let image = Mat::new(ob, 3 + cols, rows, cols);
        for accumulate in [false, true] {
            pair.run(|be| be.columns(&ColumnOp::mean_squares(row, xm, accumulate)));
            pair.assert_close(ob, &format!("mean squares {rows}x{cols} {accumulate}"));
        }
        pair.run(|be| be.columns(&ColumnOp::normalize(image, xm, 3.0, 1e-4)));
        pair.assert_close(ob, &format!("normalize {rows}x{cols}"));
        pair.run(|be| be.columns(&ColumnOp::scale(image, row)));
        pair.assert_close(ob, &format!("scale {rows}x{cols}"));
        pair.run(|be| be.columns(&ColumnOp::argmax_one_hot(image, xm)));
        pair.assert_close(ob, &format!("argmax one-hot {rows}x{cols}"));
        let (c, _) = pair.both(ob);
        assert!(
            c[..3].iter().all(|v| v.is_nan()),
            "nothing written before the regions"
        );
    }
}

/// A product with its elementwise epilogue fused (one GPU dispatch) against the CPU's
/// product then separate pass. Every activation has `|f'| <= 1`, so the GEMM's bound
/// carries through `f` and `f'`; the elementwise tolerance is added on top.
#[test]
fn gemm_then_fuses_bias_activation_and_derivative_in_one_dispatch() {
    let Some(mut pair) = Pair::new(11) else {
        return;
    };
    let mut worst = 0.0f64;
    for act in Activation::ALL {
        for size in [(7, 33, 257), (33, 7, 1), (65, 63, 64), (1, 1, 1)] {
            for (trans_a, derivative) in [(false, false), (true, false), (false, true)] {
                let w = check_gemm_then(&mut pair, size, trans_a, derivative, act, &[None]);
                worst = worst.max(w);
            }
        }
    }
    eprintln!("gemm_then: worst |gpu - cpu| / bound = {worst:.3}");
}

/// One fused product (`then` a bias + `act`, or with `derivative` the derivative of
/// `act`) on both backends, run on the GPU once per entry of `kernels` (see
/// `GpuBackend::force_gemm_kernel`), each run in one dispatch, within bounds of the
/// CPU and bitwise equal to the first run. Returns the worst `|gpu - cpu| / bound`.
fn check_gemm_then(
    pair: &mut Pair,
    (m, n, k): (usize, usize, usize),
    trans_a: bool,
    derivative: bool,
    act: Activation,
    kernels: &[Option<GemmKernel>],
) -> f64 {
    let (ar, ac) = if trans_a { (k, m) } else { (m, k) };
    let factors = pair.random_buffer(m * k + k * n + 3);
    let c_buf = pair.random_buffer(m * n + 5);
    let op = Gemm::new(
        Mat::new(c_buf, 5, m, n),
        Mat::new(factors, 1, ar, ac),
        trans_a,
        Mat::new(factors, 2 + m * k, k, n),
        false,
    );
    // The operand: a bias, or layer outputs as `act` would produce them.
    let then = if derivative {
        let z = pair.random(m * n, -4.0, 4.0);
        let mut h = vec![0.5; 2];
        h.extend(z.iter().map(|&v| act.apply(v)));
        let h_buf = pair.buffer(&h);
        Epilogue::ActivationGrad {
            h: Mat::new(h_buf, 2, m, n),
            activation: act,
        }
    } else {
        let bias = pair.random_buffer(m + 4);
        Epilogue::BiasActivation {
            bias: Mat::new(bias, 4, m, 1),
            activation: act,
        }
    };
    let (ab, _) = pair.both(factors);
    let (c_old, _) = pair.both(c_buf);
    pair.cpu.gemm_then(&op, then).unwrap();
    let what = format!("gemm_then {act} {m}x{n}x{k} ta={trans_a} deriv={derivative}");
    let mut worst = 0.0f64;
    let mut first: Option<Vec<f32>> = None;
    for &kernel in kernels {
        pair.gpu.force_gemm_kernel(kernel);
        let before = pair.gpu.dispatch_count();
        // beta is 0: each run overwrites C.
        pair.gpu.gemm_then(&op, then).unwrap();
        let passes = pair.gemm_passes;
        assert_eq!(
            pair.gpu.dispatch_count() - before,
            passes,
            "fused: one pass"
        );
        let (c, g) = pair.both(c_buf);
        let bounds: Vec<f64> = gemm_bounds(&op, &ab, &ab, &c_old)
            .iter()
            .zip(&c)
            .map(|(b, &v)| b + 1e-6 + 1e-5 * (v as f64).abs())
            .collect();
        let what = format!("{what} kernel {kernel:?}");
        worst = worst.max(assert_within(&c, &g, &bounds, &what));
        match &first {
            None => first = Some(g),
            Some(f) => assert_eq!(bits(&g), bits(f), "{what}: differs from {:?}", kernels[0]),
        }
    }
    pair.gpu.force_gemm_kernel(None);
    worst
}

#[test]
fn split_k_gemms_match_the_cpu_within_the_gemm_bound() {
    // Split over K into 2, 3 and 16 slices (forced: a software adapter never splits on
    // its own): K not a multiple of the 16-k slice step, every transpose, beta != 0,
    // C in the factors' buffer, both tile kernels, and both fused epilogues.
    let Some(mut pair) = Pair::new(23) else {
        return;
    };
    pair.gemm_passes = 2;
    for slices in [2, 3, 16] {
        pair.gpu.force_split_k(Some(slices));
        for (m, n, k) in [(33, 7, 301), (5, 70, 97), (64, 64, 512)] {
            for trans in TRANSPOSES {
                for kernel in [Some(GemmKernel::Tile32), Some(GemmKernel::Tile64)] {
                    pair.gpu.force_gemm_kernel(kernel);
                    let before = pair.gpu.dispatch_count();
                    check_gemm(&mut pair, (m, n, k), trans, (0.7, -1.3), false);
                    assert_eq!(pair.gpu.dispatch_count() - before, 2, "split: two passes");
                    check_gemm(&mut pair, (m, n, k), trans, (1.0, 0.0), true);
                }
            }
        }
        for derivative in [false, true] {
            check_gemm_then(
                &mut pair,
                (40, 9, 333),
                derivative,
                derivative,
                Activation::Tanh,
                &[Some(GemmKernel::Tile32)],
            );
        }
    }
    pair.gpu.force_split_k(None);
    pair.gpu.force_gemm_kernel(None);
}

#[test]
fn gemm_then_rejects_a_misshapen_operand() {
    let Some(mut pair) = Pair::new(12) else {
        return;
    };
    let buf = pair.random_buffer(64);
    let op = Gemm::new(
        Mat::new(buf, 0, 4, 4),
        Mat::new(buf, 16, 4, 4),
        false,
        Mat::new(buf, 32, 4, 4),
        false,
    );
    let short_bias = Epilogue::BiasActivation {
        bias: Mat::new(buf, 48, 3, 1),
        activation: Activation::Tanh,
    };
    let overlapping_h = Epilogue::ActivationGrad {
        h: Mat::new(buf, 2, 4, 4),
        activation: Activation::Tanh,
    };
    for then in [short_bias, overlapping_h] {
        assert!(
            pair.cpu.gemm_then(&op, then).is_err(),
            "{then:?} on the CPU"
        );
        assert!(
            pair.gpu.gemm_then(&op, then).is_err(),
            "{then:?} on the GPU"
        );
    }
}

#[test]
fn layer_grads_grouped_over_layers_of_different_shapes() {
    let Some(mut pair) = Pair::new(5) else { return };
    // (outputs, inputs): a 5-layer net 70 -> 33 -> 1 -> 129 -> 7 -> 10.
    let shapes = [(33, 70), (1, 33), (129, 1), (7, 129), (10, 7)];
    for batch in [1, 13, 70] {
        let act_rows: usize = 70 + shapes.iter().map(|s| s.0).sum::<usize>();
        let delta_rows: usize = shapes.iter().map(|s| s.0).sum();
        let params: usize = shapes.iter().map(|(o, i)| o * (i + 1)).sum();
        let acts = pair.random_buffer(act_rows * batch);
        let deltas = pair.random_buffer(delta_rows * batch);
        let grads = pair.random_buffer(params + 3);
        let (mut a_off, mut d_off, mut p_off) = (0, 0, 3);
        let mut layers = Vec::new();
        for &(o, i) in &shapes {
            layers.push(LayerGrad::new(
                Mat::new(deltas, d_off, o, batch),
                Mat::new(acts, a_off, i, batch),
                Mat::new(grads, p_off, o, i),
                Mat::new(grads, p_off + o * i, o, 1),
            ));
            a_off += i * batch;
            d_off += o * batch;
            p_off += o * (i + 1);
        }
        let before = pair.gpu.dispatch_count();
        pair.run(|be| be.layer_grads(&layers));
        assert_eq!(
            pair.gpu.dispatch_count() - before,
            1,
            "one grouped dispatch"
        );
        let (da, _) = pair.both(deltas);
        let (aa, _) = pair.both(acts);
        let (c, g) = pair.both(grads);
        // The 3 leading floats are no layer's: they must keep their value.
        let bounds = layer_grad_bounds(&layers, &da, &aa, &vec![0.0; c.len()]);
        assert_within(&c, &g, &bounds, &format!("layer_grads batch {batch}"));
        // Scaled and added to what is there (as a two-phase contrast does), from the
        // same values on both.
        pair.gpu.write(grads, 0, &c).unwrap();
        let added: Vec<LayerGrad> = layers
            .iter()
            .map(|&l| LayerGrad {
                alpha: -0.5,
                beta: 1.5,
                ..l
            })
            .collect();
        pair.run(|be| be.layer_grads(&added));
        let (c2, g2) = pair.both(grads);
        let bounds = layer_grad_bounds(&added, &da, &aa, &c);
        assert_within(
            &c2,
            &g2,
            &bounds,
            &format!("layer_grads added, batch {batch}"),
        );
    }
}

/// Per-element bounds of `layer_grads` over a gradient buffer that held `old` (all
/// layers' deltas in `da`, inputs in `aa`): the GEMM bound for weights (with the
/// layer's alpha and beta), the same for the bias row sums, 0 (exact: untouched)
/// elsewhere.
fn layer_grad_bounds(layers: &[LayerGrad], da: &[f32], aa: &[f32], old: &[f32]) -> Vec<f64> {
    let mut bounds = vec![0.0; old.len()];
    for l in layers {
        let batch = l.delta.cols;
        let w = l.check().unwrap();
        for (i, b) in gemm_bounds(&w, da, aa, old)
            .into_iter()
            .enumerate()
            .skip(l.grad_w.offset)
            .take(l.grad_w.len())
        {
            bounds[i] = b;
        }
        for r in 0..l.delta.rows {
            let s: f64 = (0..batch)
                .map(|j| (da[l.delta.offset + r * batch + j] as f64).abs())
                .sum();
            let at = l.grad_b.offset + r;
            let scale = (l.alpha as f64).abs().max(1.0);
            bounds[at] = 2.0 * (batch as f64 + 2.0) * EPS * scale * s
                + 2.0 * EPS * (l.beta as f64 * old[at] as f64).abs()
                + 1e-30;
        }
    }
    bounds
}

/// `[NaN; before] ++ data ++ [NaN; 5]`: a region at offset `before` whose
/// surroundings poison any result that reads them.
fn nan_padded(before: usize, data: &[f32]) -> Vec<f32> {
    let mut v = vec![f32::NAN; before];
    v.extend_from_slice(data);
    v.extend_from_slice(&[f32::NAN; 5]);
    v
}

fn bits(v: &[f32]) -> Vec<u32> {
    v.iter().map(|x| x.to_bits()).collect()
}

/// Random factors and initial C of an `m x n x k` product, as host data.
struct Operands {
    a: Vec<f32>,
    b: Vec<f32>,
    c0: Vec<f32>,
}

impl Operands {
    fn random(pair: &mut Pair, (m, n, k): (usize, usize, usize)) -> Operands {
        Operands {
            a: pair.random(m * k, -1.0, 1.0),
            b: pair.random(k * n, -1.0, 1.0),
            c0: pair.random(m * n, -1.0, 1.0),
        }
    }

    /// `(a, b, c0)` for [`gemm_at`].
    fn data(&self) -> (&[f32], &[f32], &[f32]) {
        (&self.a, &self.b, &self.c0)
    }
}

/// One GEMM (`alpha` 1.5, `beta` 0.5) with each operand in its own NaN-padded buffer
/// at its own element offset (offsets and leading dimensions that are multiples of 4
/// select the vec4 load path for that factor, others the scalar one), checked against
/// the CPU; returns the GPU's C region.
fn gemm_at(
    pair: &mut Pair,
    (m, n, k): (usize, usize, usize),
    (trans_a, trans_b): (bool, bool),
    (off_a, off_b, off_c): (usize, usize, usize),
    (a, b, c0): (&[f32], &[f32], &[f32]),
) -> Vec<f32> {
    let (ar, ac) = if trans_a { (k, m) } else { (m, k) };
    let (br, bc) = if trans_b { (n, k) } else { (k, n) };
    let (a_data, b_data) = (nan_padded(off_a, a), nan_padded(off_b, b));
    let a_buf = pair.buffer(&a_data);
    let b_buf = pair.buffer(&b_data);
    let c_buf = pair.buffer(&nan_padded(off_c, c0));
    let op = Gemm {
        c: Mat::new(c_buf, off_c, m, n),
        a: Mat::new(a_buf, off_a, ar, ac),
        trans_a,
        b: Mat::new(b_buf, off_b, br, bc),
        trans_b,
        alpha: 1.5,
        beta: 0.5,
    };
    let (c_old, _) = pair.both(c_buf);
    pair.run(|be| be.gemm(&op));
    let (c, g) = pair.both(c_buf);
    let bounds = gemm_bounds(&op, &a_data, &b_data, &c_old);
    let what =
        format!("gemm {m}x{n}x{k} ta={trans_a} tb={trans_b} offsets a={off_a} b={off_b} c={off_c}");
    let worst = assert_within(&c, &g, &bounds, &what);
    pair.worst = pair.worst.max(worst);
    g[off_c..off_c + m * n].to_vec()
}

const TRANSPOSES: [(bool, bool); 4] = [(false, false), (true, false), (false, true), (true, true)];

/// Picked by size, then each GEMM kernel forced.
const KERNELS: [Option<GemmKernel>; 4] = [
    None,
    Some(GemmKernel::Tile32),
    Some(GemmKernel::Tile64),
    Some(GemmKernel::Tile128),
];

#[test]
fn gemm_vec4_loads_aligned_sizes_match_scalar_loads_bitwise() {
    let Some(mut pair) = Pair::new(10) else {
        return;
    };
    // Every m, n, k in {4, 64, 68, 260}, each in every position.
    let sizes = [
        (4, 4, 4),
        (64, 64, 64),
        (68, 4, 260),
        (4, 260, 68),
        (260, 68, 4),
        (64, 260, 68),
        (260, 64, 64),
        (68, 68, 260),
    ];
    for (m, n, k) in sizes {
        for trans in TRANSPOSES {
            let operands = Operands::random(&mut pair, (m, n, k));
            let data = operands.data();
            let what = format!("gemm {m}x{n}x{k} {trans:?}");
            // (offsets, label): both factors vectorized, one of them, neither.
            let vector = gemm_at(&mut pair, (m, n, k), trans, (0, 4, 8), data);
            for (offsets, path) in [
                ((8, 0, 4), "vector, other offsets"),
                ((4, 3, 0), "vector A, scalar B"),
                ((5, 8, 1), "scalar A, vector B"),
                ((1, 3, 5), "scalar"),
            ] {
                let other = gemm_at(&mut pair, (m, n, k), trans, offsets, data);
                assert_eq!(
                    bits(&other),
                    bits(&vector),
                    "{what}: {path} loads differ from vector loads"
                );
            }
        }
    }
}

#[test]
fn gemm_unaligned_sizes_and_offsets_all_transposes() {
    let Some(mut pair) = Pair::new(11) else {
        return;
    };
    // Sizes from {1, 7, 33, 257}, some mixed with multiples of 4 so one factor's
    // leading dimension is aligned and the other's is not. Odd offsets put every
    // factor on the scalar path; offsets 0 and 4 put a factor with an aligned leading
    // dimension on the vector path, and the results must not change.
    let sizes = [
        (1, 1, 1),
        (7, 1, 33),
        (1, 33, 7),
        (33, 257, 7),
        (257, 7, 33),
        (7, 33, 4),
        (4, 7, 257),
        (257, 4, 33),
        (33, 64, 68),
    ];
    for size in sizes {
        for trans in TRANSPOSES {
            let (m, n, k) = size;
            let operands = Operands::random(&mut pair, (m, n, k));
            let data = operands.data();
            let first = gemm_at(&mut pair, size, trans, (1, 3, 7), data);
            let second = gemm_at(&mut pair, size, trans, (0, 4, 2), data);
            assert_eq!(
                bits(&first),
                bits(&second),
                "gemm {m}x{n}x{k} {trans:?}: odd and multiple-of-4 offsets differ"
            );
        }
    }
}

/// The wide GEMM kernel (128x128 tiles), forced on sizes small enough to be quick on a
/// software adapter and awkward against its tile (1, 7, 33, 129, 130, 257 and
/// multiples of 4 mixed in), on every load path, against the CPU and bitwise against
/// the 64x64 kernel: both chain the same FMAs over k for every output.
#[test]
fn gemm_wide_kernel_matches_the_small_one_bitwise() {
    let Some(mut pair) = Pair::new(13) else {
        return;
    };
    let sizes = [
        (1, 1, 1),
        (7, 33, 17),
        (129, 130, 17),
        (130, 129, 68),
        (257, 131, 33),
        (33, 257, 7),
        (128, 128, 16),
        (4, 260, 68),
        (260, 4, 4),
    ];
    for size in sizes {
        for trans in TRANSPOSES {
            let (m, n, k) = size;
            let operands = Operands::random(&mut pair, (m, n, k));
            let data = operands.data();
            pair.gpu.force_gemm_kernel(Some(GemmKernel::Tile64));
            let small = gemm_at(&mut pair, size, trans, (1, 3, 7), data);
            pair.gpu.force_gemm_kernel(Some(GemmKernel::Tile128));
            // Scalar loads, then vec4 loads wherever the leading dimension allows.
            for offsets in [(1, 3, 7), (0, 4, 8), (4, 3, 0), (5, 8, 1)] {
                let wide = gemm_at(&mut pair, size, trans, offsets, data);
                assert_eq!(
                    bits(&wide),
                    bits(&small),
                    "gemm {m}x{n}x{k} {trans:?} offsets {offsets:?}: wide and 64x64 kernels differ"
                );
            }
            pair.gpu.force_gemm_kernel(None);
        }
    }
}

/// Sizes whose grid of 128x128 tiles fills a software adapter (16 or more), so that
/// the wide kernel is picked by size alone there (a hardware GPU takes the 64x64 one),
/// awkward against its tile and 16-deep K step.
#[test]
fn gemm_above_the_wide_threshold_awkward_sizes() {
    let Some(mut pair) = Pair::new(14) else {
        return;
    };
    let mut worst = 0.0f64;
    // Odd offsets: scalar loads, C unaligned.
    let cases = [
        ((513, 517, 33), &[(1.0, 0.0), (-0.5, 1.0), (2.0, 0.25)][..]),
        ((640, 515, 129), &[(1.0, 0.5)][..]),
        ((1025, 513, 7), &[(-0.5, 1.0)][..]),
    ];
    for (size, scales) in cases {
        for trans in TRANSPOSES {
            for &scale in scales {
                worst = worst.max(check_gemm(&mut pair, size, trans, scale, false));
            }
        }
    }
    // C in the factors' buffer, after them.
    let shared = check_gemm(&mut pair, (513, 517, 33), (true, false), (1.0, 0.5), true);
    worst = worst.max(shared);
    eprintln!("wide gemm: worst |gpu - cpu| / bound = {worst:.3}");
    // Multiple-of-4 leading dimensions: offsets 0 and 4 take the vec4 path, odd ones
    // the scalar path, with the same result.
    for size in [(516, 520, 36), (520, 516, 129)] {
        for trans in TRANSPOSES {
            let (m, n, k) = size;
            let operands = Operands::random(&mut pair, (m, n, k));
            let data = operands.data();
            let vector = gemm_at(&mut pair, size, trans, (0, 4, 8), data);
            let scalar = gemm_at(&mut pair, size, trans, (1, 3, 5), data);
            assert_eq!(
                bits(&vector),
                bits(&scalar),
                "gemm {m}x{n}x{k} {trans:?}: vec4 and scalar loads differ"
            );
        }
    }
}

/// beta = 0 must not read C on the wide kernel either: C all NaN, padding included.
#[test]
fn gemm_wide_beta_zero_ignores_nan_in_c() {
    let Some(mut pair) = Pair::new(15) else {
        return;
    };
    // (size, offsets of A, B and C): unaligned throughout (scalar loads), then
    // multiples of 4 throughout (vec4 loads).
    let cases = [
        ((513, 517, 33), (1, 513 * 33 + 4, 3)),
        ((516, 520, 36), (0, 516 * 36 + 4, 0)),
    ];
    for ((m, n, k), (off_a, off_b, off_c)) in cases {
        for trans in TRANSPOSES {
            let (ar, ac) = if trans.0 { (k, m) } else { (m, k) };
            let (br, bc) = if trans.1 { (n, k) } else { (k, n) };
            let factors = pair.random_buffer(off_b + k * n + 1);
            let c_buf = pair.buffer(&vec![f32::NAN; m * n + 8]);
            let op = Gemm {
                c: Mat::new(c_buf, off_c, m, n),
                a: Mat::new(factors, off_a, ar, ac),
                trans_a: trans.0,
                b: Mat::new(factors, off_b, br, bc),
                trans_b: trans.1,
                alpha: -0.5,
                beta: 0.0,
            };
            pair.run(|be| be.gemm(&op));
            let (ab, _) = pair.both(factors);
            let (c, g) = pair.both(c_buf);
            let region = off_c..off_c + m * n;
            assert!(
                g[region.clone()].iter().all(|v| v.is_finite()),
                "gemm {trans:?} beta=0 over NaN: non-finite output"
            );
            let bounds = gemm_bounds(&op, &ab, &ab, &vec![0.0; c.len()]);
            let what = format!("gemm {m}x{n}x{k} {trans:?} beta=0 over NaN, C at {off_c}");
            assert_within(
                &c[region.clone()],
                &g[region.clone()],
                &bounds[region],
                &what,
            );
        }
    }
}

/// Both fused epilogues on the wide kernel: forced on a small size (bitwise against
/// the 64x64 kernel) and picked by size on a software adapter.
#[test]
fn gemm_then_on_the_wide_kernel() {
    let Some(mut pair) = Pair::new(16) else {
        return;
    };
    let mut worst = 0.0f64;
    for act in Activation::ALL {
        for (trans_a, derivative) in [(false, false), (true, false), (false, true)] {
            let small = [Some(GemmKernel::Tile64), Some(GemmKernel::Tile128)];
            let w = check_gemm_then(&mut pair, (129, 130, 17), trans_a, derivative, act, &small);
            worst = worst.max(w);
            let big = [None, Some(GemmKernel::Tile64)];
            let w = check_gemm_then(&mut pair, (513, 517, 9), trans_a, derivative, act, &big);
            worst = worst.max(w);
        }
    }
    eprintln!("wide gemm_then: worst |gpu - cpu| / bound = {worst:.3}");
}

/// The 32x32 GEMM kernel, forced on sizes awkward against its tile and against the
/// 64x64 one (1, 7, 33, 65, 129, 257 and multiples of 4 mixed in), every transpose and
/// every load path (both factors scalar, both vec4, one of each), against the CPU and
/// bitwise against the 64x64 and 128x128 kernels: all chain the same FMAs over k.
#[test]
fn gemm_narrow_kernel_matches_the_others_bitwise() {
    let Some(mut pair) = Pair::new(17) else {
        return;
    };
    let sizes = [
        (1, 1, 1),
        (7, 33, 17),
        (33, 7, 65),
        (65, 129, 7),
        (129, 65, 33),
        (257, 33, 4),
        (33, 257, 68),
        (4, 68, 36),
        (68, 4, 129),
        (36, 260, 16),
    ];
    for size in sizes {
        for trans in TRANSPOSES {
            let (m, n, k) = size;
            let operands = Operands::random(&mut pair, (m, n, k));
            let data = operands.data();
            let what = format!("gemm {m}x{n}x{k} {trans:?}");
            pair.gpu.force_gemm_kernel(Some(GemmKernel::Tile64));
            let reference = gemm_at(&mut pair, size, trans, (1, 3, 7), data);
            pair.gpu.force_gemm_kernel(Some(GemmKernel::Tile128));
            let wide = gemm_at(&mut pair, size, trans, (0, 4, 8), data);
            assert_eq!(
                bits(&wide),
                bits(&reference),
                "{what}: 128x128 and 64x64 differ"
            );
            pair.gpu.force_gemm_kernel(Some(GemmKernel::Tile32));
            // Scalar loads, then vec4 loads wherever the leading dimension allows.
            for offsets in [(1, 3, 7), (0, 4, 8), (4, 3, 0), (5, 8, 1)] {
                let narrow = gemm_at(&mut pair, size, trans, offsets, data);
                assert_eq!(
                    bits(&narrow),
                    bits(&reference),
                    "{what} offsets {offsets:?}: 32x32 and 64x64 kernels differ"
                );
            }
            pair.gpu.force_gemm_kernel(None);
        }
    }
}

/// Training-step shapes picked by size alone: skinny outputs that take the 32x32 kernel
/// on a hardware GPU (fewer than 128 tiles of 64x64: 1024x128, 128x1024, 256x128,
/// 10x1024) and one just past that that takes the 64x64 kernel (2048x256: 128 tiles);
/// a software adapter fills sooner and takes the 64x64 kernel for most. With odd
/// offsets (scalar loads) and C in its own buffer or after the factors.
#[test]
fn gemm_skinny_training_shapes_picked_by_size() {
    let Some(mut pair) = Pair::new(18) else {
        return;
    };
    let mut worst = 0.0f64;
    let cases = [
        // Forward W (width x width) . H (width x batch).
        ((1024, 128, 64), (false, false), (1.0, 0.0), false),
        // Backward W^T . delta.
        ((256, 128, 256), (true, false), (1.0, 0.0), true),
        // Weight gradient delta . H^T, accumulated.
        ((128, 1024, 33), (false, true), (-0.5, 1.0), false),
        ((10, 1024, 129), (true, true), (2.0, 0.25), false),
        ((2048, 256, 9), (false, false), (1.0, 0.5), false),
    ];
    for (size, trans, scale, c_with_a) in cases {
        worst = worst.max(check_gemm(&mut pair, size, trans, scale, c_with_a));
    }
    eprintln!("skinny gemm: worst |gpu - cpu| / bound = {worst:.3}");
    // Multiple-of-4 leading dimensions: vec4 and scalar loads agree.
    for (size, trans) in [
        ((1024, 128, 36), (false, false)),
        ((256, 128, 68), (true, true)),
    ] {
        let (m, n, k) = size;
        let operands = Operands::random(&mut pair, (m, n, k));
        let data = operands.data();
        let vector = gemm_at(&mut pair, size, trans, (0, 4, 8), data);
        let scalar = gemm_at(&mut pair, size, trans, (1, 3, 5), data);
        assert_eq!(
            bits(&vector),
            bits(&scalar),
            "gemm {m}x{n}x{k} {trans:?}: vec4 and scalar loads differ"
        );
    }
}

/// Both fused epilogues on the 32x32 kernel: forced (bitwise against the other two)
/// and picked by size on a skinny product.
#[test]
fn gemm_then_on_the_narrow_kernel() {
    let Some(mut pair) = Pair::new(19) else {
        return;
    };
    let mut worst = 0.0f64;
    let forced = [
        Some(GemmKernel::Tile32),
        Some(GemmKernel::Tile64),
        Some(GemmKernel::Tile128),
    ];
    for act in Activation::ALL {
        for (trans_a, derivative) in [(false, false), (true, false), (false, true)] {
            let w = check_gemm_then(&mut pair, (65, 33, 17), trans_a, derivative, act, &forced);
            worst = worst.max(w);
            let skinny = [None, Some(GemmKernel::Tile32)];
            let w = check_gemm_then(&mut pair, (257, 64, 9), trans_a, derivative, act, &skinny);
            worst = worst.max(w);
        }
    }
    eprintln!("narrow gemm_then: worst |gpu - cpu| / bound = {worst:.3}");
}

/// `layer_grads` over `shapes` (outputs, inputs) at `batch`, with all deltas in one
/// NaN-padded buffer, all inputs in another and all gradients in a third; layer `l`'s
/// delta and input start `gaps[l]` floats after the previous layer's end. Checked
/// against the CPU; returns the GPU's gradient buffer.
fn layer_grads_at(
    pair: &mut Pair,
    shapes: &[(usize, usize)],
    batch: usize,
    gaps: &[usize],
    (deltas, inputs, grads0): (&[Vec<f32>], &[Vec<f32>], &[f32]),
) -> Vec<f32> {
    let (mut d_data, mut a_data) = (Vec::new(), Vec::new());
    let mut regions = Vec::new();
    for (l, &gap) in gaps.iter().enumerate() {
        d_data.extend(std::iter::repeat_n(f32::NAN, gap));
        a_data.extend(std::iter::repeat_n(f32::NAN, gap));
        regions.push((d_data.len(), a_data.len()));
        d_data.extend_from_slice(&deltas[l]);
        a_data.extend_from_slice(&inputs[l]);
    }
    d_data.extend_from_slice(&[f32::NAN; 5]);
    a_data.extend_from_slice(&[f32::NAN; 5]);
    let d_buf = pair.buffer(&d_data);
    let a_buf = pair.buffer(&a_data);
    let g_buf = pair.buffer(grads0);
    let mut layers = Vec::new();
    let mut p_off = 3;
    for (&(o, i), &(d_off, a_off)) in shapes.iter().zip(&regions) {
        layers.push(LayerGrad::new(
            Mat::new(d_buf, d_off, o, batch),
            Mat::new(a_buf, a_off, i, batch),
            Mat::new(g_buf, p_off, o, i),
            Mat::new(g_buf, p_off + o * i, o, 1),
        ));
        p_off += o * (i + 1);
    }
    let before = pair.gpu.dispatch_count();
    pair.run(|be| be.layer_grads(&layers));
    assert_eq!(
        pair.gpu.dispatch_count() - before,
        1,
        "one grouped dispatch"
    );
    let (c, g) = pair.both(g_buf);
    let bounds = layer_grad_bounds(&layers, &d_data, &a_data, &vec![0.0; c.len()]);
    let what = format!("layer_grads {shapes:?} batch {batch} gaps {gaps:?}");
    let worst = assert_within(&c, &g, &bounds, &what);
    pair.worst = pair.worst.max(worst);
    g
}

#[test]
fn layer_grads_vec4_loads_per_layer_match_scalar_loads_bitwise() {
    let Some(mut pair) = Pair::new(12) else {
        return;
    };
    let shapes = [(64, 68), (4, 64), (260, 4), (7, 260), (33, 7), (1, 33)];
    for batch in [1, 4, 7, 33, 64, 68, 257, 260] {
        let deltas: Vec<Vec<f32>> = shapes
            .iter()
            .map(|&(o, _)| pair.random(o * batch, -1.0, 1.0))
            .collect();
        let inputs: Vec<Vec<f32>> = shapes
            .iter()
            .map(|&(_, i)| pair.random(i * batch, -1.0, 1.0))
            .collect();
        let params: usize = shapes.iter().map(|(o, i)| o * (i + 1)).sum();
        let grads0 = pair.random(params + 3, -1.0, 1.0);
        let data = (&deltas[..], &inputs[..], &grads0[..]);
        // With a batch that is a multiple of 4: every layer's regions aligned, every
        // other layer's, none; otherwise every layer takes the scalar path.
        let aligned = layer_grads_at(&mut pair, &shapes, batch, &[0, 4, 8, 0, 4, 0], data);
        for (gaps, path) in [
            ([4, 1, 3, 0, 1, 0], "mixed"),
            ([1, 0, 0, 0, 0, 0], "scalar"),
        ] {
            let other = layer_grads_at(&mut pair, &shapes, batch, &gaps, data);
            assert_eq!(
                bits(&other),
                bits(&aligned),
                "layer_grads batch {batch}: {path} loads differ from aligned ones"
            );
        }
    }
}

#[test]
fn layer_grads_in_separate_buffers_fall_back_to_one_dispatch_each() {
    let Some(mut pair) = Pair::new(6) else { return };
    let mut layers = Vec::new();
    for (o, i) in [(5, 9), (3, 5)] {
        let delta = pair.random_buffer(o * 4);
        let input = pair.random_buffer(i * 4);
        let gw = pair.random_buffer(o * i);
        let gb = pair.random_buffer(o);
        layers.push(LayerGrad::new(
            Mat::new(delta, 0, o, 4),
            Mat::new(input, 0, i, 4),
            Mat::new(gw, 0, o, i),
            Mat::new(gb, 0, o, 1),
        ));
    }
    let before = pair.gpu.dispatch_count();
    pair.run(|be| be.layer_grads(&layers));
    assert_eq!(pair.gpu.dispatch_count() - before, 2);
    for l in &layers {
        pair.assert_close(l.grad_w.buf, "separate grad_w");
        pair.assert_close(l.grad_b.buf, "separate grad_b");
    }
    // Added to what is there: the bias binding of its own reads it too.
    let added: Vec<LayerGrad> = layers
        .iter()
        .map(|&l| LayerGrad {
            alpha: 2.0,
            beta: -1.0,
            ..l
        })
        .collect();
    pair.run(|be| be.layer_grads(&added));
    for l in added {
        pair.assert_close(l.grad_w.buf, "separate grad_w added");
        pair.assert_close(l.grad_b.buf, "separate grad_b added");
    }
}

#[test]
fn loss_grad_both_losses_with_stats() {
    let Some(mut pair) = Pair::new(7) else { return };
    for loss in [Loss::SoftmaxCrossEntropy, Loss::MeanSquaredError] {
        for (classes, batch) in [(1, 1), (10, 7), (3, 300), (10, 513)] {
            let out = pair.random(classes * batch + 2, -6.0, 6.0);
            let out = pair.buffer(&out);
            let mut target = vec![0.0; classes * batch];
            for j in 0..batch {
                let k = pair.rng.random_range(0..classes);
                target[k * batch + j] = 1.0;
            }
            let target = pair.buffer(&target);
            let grad = pair.random_buffer(classes * batch);
            let stats = pair.buffer(&[0.5, 2.0, 3.0, 1.0, 1.0, 1.0]);
            let op = LossGrad {
                loss,
                output: Mat::new(out, 2, classes, batch),
                target: Mat::new(target, 0, classes, batch),
                grad: Mat::new(grad, 0, classes, batch),
                stats: Mat::new(stats, 3, 1, 3),
            };
            // Twice: the statistics accumulate.
            pair.run(|be| be.loss_grad(&op));
            pair.run(|be| be.loss_grad(&op));
            let what = format!("{loss} {classes}x{batch}");
            pair.assert_close(grad, &format!("{what} grad"));
            let (c, g) = pair.both(stats);
            // Sums of 2 * batch positive losses in different orders.
            let loss_bound = 1e-6 + (4.0 * batch as f64 + 20.0) * EPS * (c[3] as f64).abs();
            let bounds = [0.0, 0.0, 0.0, loss_bound, 0.0, 0.0];
            assert_within(&c, &g, &bounds, &format!("{what} stats"));
            assert_eq!(c[4], g[4], "{what}: correct counts are exact");
            assert_eq!(g[5], 1.0 + 2.0 * batch as f32);
            assert_eq!(&g[..3], &[0.5, 2.0, 3.0], "other slots untouched");
        }
    }
}

#[test]
fn optimizer_steps_sgd_momentum_nesterov_adam() {
    let Some(mut pair) = Pair::new(8) else { return };
    let optimizers = [
        Optimizer::sgd(0.1),
        Optimizer::momentum(0.05, 0.9),
        Optimizer::Sgd {
            lr: 0.05,
            momentum: 0.8,
            weight_decay: 1e-3,
            nesterov: true,
        },
        Optimizer::adam(1e-2),
        Optimizer::Adam {
            lr: 3e-3,
            beta1: 0.8,
            beta2: 0.99,
            eps: 1e-6,
            weight_decay: 1e-2,
        },
    ];
    for opt in optimizers {
        let n = 1000;
        let params = pair.random_buffer(n + 1);
        let grads = pair.random_buffer(n);
        let s0 = pair.buffer(&vec![0.0; n]);
        let s1 = pair.buffer(&vec![0.0; n + 4]);
        for step in 1..=5 {
            let g = pair.random(n, -1.0, 1.0);
            pair.cpu.write(grads, 0, &g).unwrap();
            pair.gpu.write(grads, 0, &g).unwrap();
            let pass = OptimizerPass {
                params: Mat::new(params, 1, 1, n),
                grads: Mat::new(grads, 0, 1, n),
                state: [Mat::new(s0, 0, 1, n), Mat::new(s1, 4, 1, n)],
                step: opt.step_params(step),
                guard: None,
                keep_grads: true,
            };
            pair.run(|be| be.optimizer_step(&pass));
        }
        for buf in [params, s0, s1] {
            pair.assert_close(buf, &format!("{opt} after 5 steps"));
        }
    }
}

#[test]
fn gather_matches_the_cpu() {
    // Byte codes (at most 256 values) and plain floats; batches of 1, an odd size and
    // the whole set; indices repeated and at the ends; outputs at odd offsets.
    let Some(mut pair) = Pair::new(21) else {
        return;
    };
    let (samples, dim, classes) = (37, 13, 5);
    let levels: Vec<f32> = (0..256).map(|i| i as f32 / 255.0).collect();
    let bytes: Vec<f32> = (0..samples * dim)
        .map(|_| levels[pair.rng.random_range(0..256)])
        .collect();
    let floats = pair.random(samples * dim, -3.0, 3.0);
    let labels: Vec<u32> = (0..samples)
        .map(|_| pair.rng.random_range(0..classes as u32))
        .collect();
    for (features, encoding) in [
        (&bytes, FeatureEncoding::Bytes),
        (&floats, FeatureEncoding::Floats),
    ] {
        let encoded = gather::encode(features, &labels);
        assert_eq!(encoded.encoding, encoding);
        let buf = pair.buffer(&encoded.words);
        let data = StoredData {
            buf,
            samples,
            dim,
            classes,
            encoding,
        };
        let orders: [&[u32]; 3] = [
            &[36],
            &[0, 36, 5, 5, 17, 2, 30],
            &(0..37).collect::<Vec<_>>(),
        ];
        for order in orders {
            let b = order.len();
            let words: Vec<f32> = order.iter().map(|&i| f32::from_bits(i)).collect();
            let mut padded = vec![0.0; 3];
            padded.extend_from_slice(&words);
            let order_buf = pair.buffer(&padded);
            let x = pair.buffer(&vec![f32::NAN; dim * b + 1]);
            let targets = pair.buffer(&vec![f32::NAN; classes * b + 2]);
            let op = Gather {
                data,
                order: Mat::new(order_buf, 3, 1, b),
                x: Mat::new(x, 1, dim, b),
                targets: Mat::new(targets, 2, classes, b),
            };
            pair.run(|be| be.gather(&op));
            // Copies: equal bit for bit.
            for out in [x, targets] {
                let (c, g) = pair.both(out);
                let (c, g): (Vec<u32>, Vec<u32>) = (
                    c.iter().map(|v| v.to_bits()).collect(),
                    g.iter().map(|v| v.to_bits()).collect(),
                );
                assert_eq!(c, g, "{encoding:?}, batch {b}");
            }
            let (c, _) = pair.both(x);
            for (j, &s) in order.iter().enumerate() {
                for f in 0..dim {
                    assert_eq!(c[1 + f * b + j], features[s as usize * dim + f]);
                }
            }
        }
    }
}

#[test]
fn guarded_optimizer_flags_and_skips_like_the_cpu() {
    let Some(mut pair) = Pair::new(22) else {
        return;
    };
    let n = 300;
    // Stats: the running loss sum at 0, the flags from 4.
    let stats = pair.buffer(&[0.0; 8]);
    let flags = Mat::new(stats, 4, 1, 3);
    let loss = Mat::new(stats, 0, 1, 1);
    let params = pair.random_buffer(n);
    let grads = pair.random_buffer(n);
    let s0 = pair.buffer(&vec![0.0; n]);
    let s1 = pair.buffer(&vec![0.0; n]);
    let pass = |opt: Optimizer, step: u32| OptimizerPass {
        params: Mat::new(params, 0, 1, n),
        grads: Mat::new(grads, 0, 1, n),
        state: [Mat::new(s0, 0, 1, n), Mat::new(s1, 0, 1, n)],
        step: opt.step_params(u64::from(step)),
        guard: Some(Guard { flags, loss, step }),
        keep_grads: true,
    };
    let read_flags = |pair: &mut Pair| {
        let (c, g) = pair.both(stats);
        assert_eq!(Flags::from_words(&c[4..]), Flags::from_words(&g[4..]));
        Flags::from_words(&c[4..])
    };
    // A finite step updates like an unguarded one and flags nothing.
    pair.run(|be| be.optimizer_step(&pass(Optimizer::adam(1e-2), 1)));
    pair.assert_close(params, "guarded Adam step");
    assert_eq!(read_flags(&mut pair), Flags::default());
    // An update that overflows at one element flags it, and keeps its old value.
    let before = pair.both(params).0;
    let mut g = pair.random(n, -1.0, 1.0);
    g[123] = 3e38;
    pair.cpu.write(grads, 0, &g).unwrap();
    pair.gpu.write(grads, 0, &g).unwrap();
    pair.run(|be| be.optimizer_step(&pass(Optimizer::sgd(1e3), 2)));
    let (c, gp) = pair.both(params);
    assert_eq!(c[123], before[123]);
    assert_eq!(gp[123], before[123]);
    assert!(c.iter().chain(&gp).all(|v| v.is_finite()));
    let f = read_flags(&mut pair);
    assert_eq!((f.loss, f.update, f.index), (0, 2, 123));
    // Once flagged, later steps change nothing.
    let frozen = pair.both(params);
    pair.cpu.write(grads, 0, &vec![0.5; n]).unwrap();
    pair.gpu.write(grads, 0, &vec![0.5; n]).unwrap();
    pair.run(|be| be.optimizer_step(&pass(Optimizer::sgd(1e-2), 3)));
    assert_eq!(pair.both(params), frozen);
    // A non-finite loss sum flags its step before anything is updated.
    pair.run(|be| be.fill(Mat::new(stats, 0, 1, 8), 0.0));
    pair.run(|be| be.write(stats, 0, &[f32::NAN]));
    pair.run(|be| be.optimizer_step(&pass(Optimizer::sgd(1e-2), 9)));
    assert_eq!(pair.both(params), frozen);
    assert_eq!(read_flags(&mut pair).loss, 9);
}

#[test]
fn fill_and_write_read_round_trip() {
    let Some(mut pair) = Pair::new(9) else { return };
    let buf = pair.random_buffer(1000);
    for (offset, rows, cols, value) in [(0, 1, 1, 2.5), (3, 7, 33, -1.25), (500, 1, 500, 0.0)] {
        let m = Mat::new(buf, offset, rows, cols);
        pair.run(|be| be.fill(m, value));
        pair.assert_close(buf, &format!("fill {value} at {offset}"));
    }
    let (c, g) = pair.both(buf);
    assert_eq!(c, g, "fill is exact");
    let data: Vec<f32> = (0..77).map(|i| i as f32 * 0.5 - 3.0).collect();
    pair.gpu.write(buf, 11, &data).unwrap();
    assert_eq!(pair.gpu.read(buf, 11, 77).unwrap(), data);
    assert_eq!(pair.gpu.read(buf, 10, 1).unwrap(), vec![c[10]]);
    assert!(pair.gpu.read(buf, 0, 0).unwrap().is_empty());
}

#[test]
fn writes_between_recorded_kernels_keep_their_order() {
    let Some(mut gpu) = gpu() else { return };
    let x = gpu.alloc(4).unwrap();
    let out = gpu.alloc(8).unwrap();
    let w = gpu.alloc(1).unwrap();
    gpu.write(w, 0, &[2.0]).unwrap();
    // Like evaluation: upload a batch, use it, upload the next, use it, one submit.
    for (i, batch) in [[1.0, 2.0, 3.0, 4.0], [10.0, 20.0, 30.0, 40.0]]
        .iter()
        .enumerate()
    {
        gpu.write(x, 0, batch).unwrap();
        let op = Gemm::new(
            Mat::new(out, 4 * i, 1, 4),
            Mat::new(w, 0, 1, 1),
            false,
            Mat::new(x, 0, 1, 4),
            false,
        );
        gpu.gemm(&op).unwrap();
    }
    let submits = gpu.submit_count();
    assert_eq!(
        gpu.read(out, 0, 8).unwrap(),
        vec![2.0, 4.0, 6.0, 8.0, 20.0, 40.0, 60.0, 80.0]
    );
    assert_eq!(gpu.submit_count() - submits, 1, "one submit for all of it");
}

#[test]
fn bad_regions_and_huge_buffers_are_errors_not_panics() {
    let Some(mut gpu) = gpu() else { return };
    let buf = gpu.alloc(10).unwrap();
    assert!(gpu.read(buf, 5, 6).is_err());
    assert!(gpu.write(buf, 9, &[1.0, 2.0]).is_err());
    assert!(gpu.fill(Mat::new(buf, 8, 1, 3), 1.0).is_err());
    let overlapping = Gemm::new(
        Mat::new(buf, 0, 2, 2),
        Mat::new(buf, 2, 2, 2),
        false,
        Mat::new(buf, 6, 2, 2),
        false,
    );
    assert!(gpu.gemm(&overlapping).is_err());
    // The elementwise passes check their regions too: out of range, and overlapping.
    let bias_past_end = gpu.bias_activation(
        Mat::new(buf, 0, 2, 2),
        Mat::new(buf, 9, 2, 1),
        Activation::Relu,
    );
    assert!(bias_past_end.is_err());
    let bias_inside_z = gpu.bias_activation(
        Mat::new(buf, 0, 2, 3),
        Mat::new(buf, 1, 2, 1),
        Activation::Relu,
    );
    assert!(bias_inside_z.is_err());
    match gpu.alloc(usize::MAX / 8) {
        Err(Error::BufferTooLarge { limit_name, .. }) => {
            assert!(limit_name.starts_with("max_"), "{limit_name}")
        }
        other => panic!("expected BufferTooLarge, got {other:?}"),
    }
    // Still usable afterwards.
    gpu.fill(Mat::new(buf, 0, 1, 10), 1.0).unwrap();
    assert_eq!(gpu.read(buf, 0, 10).unwrap(), vec![1.0; 10]);
}

#[test]
#[ignore = "timing, not a check: cargo test --test gpu_kernels -- --ignored --nocapture"]
fn gemm_throughput() {
    let Some(mut gpu) = gpu() else { return };
    for (m, n, k) in [
        (256, 256, 256),
        (512, 512, 512),
        (1024, 1024, 1024),
        (64, 784, 256),
        // Skinny training-step products (width x batch output): the 32x32 kernel's case.
        (256, 128, 256),
        (1024, 128, 1024),
    ] {
        // Every kernel at every size (the default picks the widest whose grid fills
        // the device: see `HARDWARE_FILL` in src/backend/gpu/kernels.rs).
        for (kernel, forced) in [
            ("32x32", GemmKernel::Tile32),
            ("64x64", GemmKernel::Tile64),
            ("128x128", GemmKernel::Tile128),
        ] {
            gpu.force_gemm_kernel(Some(forced));
            // Offsets 0 let both factors take the vec4 load path, offsets 1 force the
            // scalar one (on a multiple-of-4 K and N).
            for (path, off) in [("vec4", 0), ("scalar", 1)] {
                let a = gpu.alloc(m * k + off).unwrap();
                let b = gpu.alloc(k * n + off).unwrap();
                let c = gpu.alloc(m * n).unwrap();
                let op = Gemm::new(
                    Mat::new(c, 0, m, n),
                    Mat::new(a, off, m, k),
                    false,
                    Mat::new(b, off, k, n),
                    false,
                );
                gpu.gemm(&op).unwrap();
                gpu.read(c, 0, 1).unwrap();
                // Fewer repetitions of the products that take seconds on a CPU adapter.
                let reps = if op.flops() > 1 << 30 { 3 } else { 10 };
                let cpu_start = process_cpu_secs();
                let start = std::time::Instant::now();
                for _ in 0..reps {
                    gpu.gemm(&op).unwrap();
                }
                gpu.read(c, 0, 1).unwrap();
                let secs = start.elapsed().as_secs_f64() / reps as f64;
                // On a software adapter sharing its cores with other work, CPU time per
                // GEMM is steadier than wall time.
                let cpu = match (cpu_start, process_cpu_secs()) {
                    (Some(s), Some(e)) => {
                        format!(", {:.2} ms CPU (all threads)", (e - s) / reps as f64 * 1e3)
                    }
                    _ => String::new(),
                };
                eprintln!(
                    "gemm {m}x{n}x{k} {kernel} kernel, {path} loads on {}: {:.2} ms, {:.1} GFLOP/s{cpu}",
                    gpu.adapter_name(),
                    secs * 1e3,
                    op.flops() as f64 / secs / 1e9
                );
            }
        }
    }
    gpu.force_gemm_kernel(None);
}

/// CPU time this process has used, all threads (a software adapter's workers
/// included), from `/proc/self/stat` in USER_HZ (1/100 s) ticks; `None` off Linux.
fn process_cpu_secs() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the parenthesised command name start at field 3 (the state).
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) / 100.0)
}

#[test]
fn operands_within_the_binding_alignment_of_a_written_range_are_bound_as_copies() {
    // WebGPU binds ranges at multiples of the device's offset alignment and forbids
    // overlapping writable ranges of one buffer; these regions share an aligned block,
    // so the backend binds a copy: an input copied in, an output copied in and out.
    let Some(mut pair) = Pair::new(12) else {
        return;
    };
    let aliased = |pair: &Pair| pair.gpu.counters().snapshot().bytes_aliased;

    // C starts right after B in one buffer.
    let (m, n, k) = (7, 5, 9);
    let buf = pair.random_buffer(3 + m * k + k * n + m * n + 2);
    let op = Gemm::new(
        Mat::new(buf, 3 + m * k + k * n, m, n),
        Mat::new(buf, 3, m, k),
        false,
        Mat::new(buf, 3 + m * k, k, n),
        false,
    );
    let (before, _) = pair.both(buf);
    let copied = aliased(&pair);
    pair.run(|be| be.gemm(&op));
    assert!(aliased(&pair) > copied, "B was bound as a copy");
    let (c, g) = pair.both(buf);
    let bounds = gemm_bounds(&op, &before, &before, &before);
    assert_within(&c, &g, &bounds, "gemm with C beside B");
    let outside_c = 0..op.c.offset;
    assert_eq!(
        bits(&g[outside_c.clone()]),
        bits(&before[outside_c]),
        "factors unchanged"
    );

    // The loss writes its error and its statistics; here they touch.
    let (classes, batch) = (3, 5);
    let out = pair.random(classes * batch, -3.0, 3.0);
    let out = pair.buffer(&out);
    let mut target = vec![0.0; classes * batch];
    for j in 0..batch {
        target[(j % classes) * batch + j] = 1.0;
    }
    let target = pair.buffer(&target);
    let written = pair.random_buffer(classes * batch + 3 + 2);
    let stats_at = classes * batch;
    pair.run(|be| be.fill(Mat::new(written, stats_at, 1, 3), 0.0));
    let op = LossGrad {
        loss: Loss::SoftmaxCrossEntropy,
        output: Mat::new(out, 0, classes, batch),
        target: Mat::new(target, 0, classes, batch),
        grad: Mat::new(written, 0, classes, batch),
        stats: Mat::new(written, stats_at, 1, 3),
    };
    let (before, _) = pair.both(written);
    let copied = aliased(&pair);
    pair.run(|be| be.loss_grad(&op));
    pair.run(|be| be.loss_grad(&op));
    assert!(aliased(&pair) > copied, "one output was bound as a copy");
    let (c, g) = pair.both(written);
    let bounds: Vec<f64> = c.iter().map(|&v| 1e-6 + 1e-5 * (v as f64).abs()).collect();
    assert_within(&c, &g, &bounds, "loss error and statistics side by side");
    let tail = stats_at + 3..c.len();
    assert_eq!(
        bits(&g[tail.clone()]),
        bits(&before[tail]),
        "floats after them kept"
    );
}

/// The fused epilogues through vec4 stores of C (C's offset and n multiples of 4) give
/// the same bits as through one-at-a-time stores (C one float further on), on every
/// kernel, and leave the floats around C alone.
#[test]
fn gemm_then_vec4_stores_match_scalar_stores_bitwise() {
    let Some(mut pair) = Pair::new(20) else {
        return;
    };
    let (m, n, k) = (67, 132, 21);
    let a = pair.random_buffer(m * k);
    let b = pair.random_buffer(k * n);
    let h: Vec<f32> = pair.random(m * n, -0.9, 0.9);
    let h = pair.buffer(&h);
    let bias = pair.random_buffer(m);
    for act in Activation::ALL {
        for then in [
            Epilogue::BiasActivation {
                bias: Mat::new(bias, 0, m, 1),
                activation: act,
            },
            Epilogue::ActivationGrad {
                h: Mat::new(h, 0, m, n),
                activation: act,
            },
        ] {
            for kernel in KERNELS {
                pair.gpu.force_gemm_kernel(kernel);
                let stored = |pair: &mut Pair, off: usize| {
                    let c = pair.buffer(&nan_padded(off, &vec![0.5; m * n]));
                    let op = Gemm {
                        beta: -0.75,
                        ..Gemm::new(
                            Mat::new(c, off, m, n),
                            Mat::new(a, 0, m, k),
                            false,
                            Mat::new(b, 0, k, n),
                            false,
                        )
                    };
                    pair.gpu.gemm_then(&op, then).unwrap();
                    let all = pair.gpu.read(c, 0, off + m * n + 5).unwrap();
                    assert!(all[..off]
                        .iter()
                        .chain(&all[off + m * n..])
                        .all(|v| v.is_nan()));
                    all[off..off + m * n].to_vec()
                };
                let (vector, scalar) = (stored(&mut pair, 4), stored(&mut pair, 5));
                assert_eq!(bits(&vector), bits(&scalar), "{act} {then:?} {kernel:?}");
            }
        }
    }
    pair.gpu.force_gemm_kernel(None);
}
