//! The spatial kernels (im2col, col2im, pooling and its gradient) on the GPU backend
//! against the CPU backend, at awkward sizes: odd maps, one channel, batch 1, strides
//! 1-3, paddings 0-2, kernels larger than their stride, regions at odd offsets with
//! poison around them, and maps large enough that the kernels' grid loops.
//!
//! Runs on any wgpu adapter, software ones included (lavapipe in CI). Without an
//! adapter each test prints `SKIPPED` and passes, unless `PLASTICITY_REQUIRE_GPU=1`.
//!
//! Tolerances:
//! - im2col, max pooling (values and argmax), max-at pooling and the max modes'
//!   unpooling: bit for bit (copies and comparisons, no arithmetic; NaN matches NaN).
//! - col2im, average pooling and its gradient: sums of at most `k²` terms, which the
//!   kernels add in the host reference's order, so they are bit-identical unless a
//!   compiler contracts `d · (1/k²) + sum` into a fused multiply-add (average
//!   unpooling). Asserted: `|gpu - cpu| <= 2 (k² + 1) eps Σ|terms|`, twice the classical
//!   bound of a recursive sum of that length. Measured on lavapipe: every element
//!   bit-identical (the tests print how many differ).
// The whole file tests the GPU backend.
#![cfg(feature = "gpu")]

mod common;

use std::collections::HashMap;

use common::gpu::gpu;
use plasticity::backend::{
    spatial, Backend, BufId, CpuBackend, GpuBackend, Im2Col, Mat, Pool, PoolMode, Window,
};
use plasticity::Error;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

const EPS: f64 = f32::EPSILON as f64;
/// What surrounds every region: reading it shows up as NaN, writing it as a changed value.
const POISON: f32 = f32::NAN;
/// What a written region holds before the kernel runs (they overwrite).
const STALE: f32 = 1234.5;

/// The same buffers on both backends.
struct Pair {
    cpu: CpuBackend,
    gpu: GpuBackend,
    rng: ChaCha8Rng,
    lens: HashMap<BufId, usize>,
}

impl Pair {
    fn new(seed: u64) -> Option<Pair> {
        Some(Pair {
            cpu: CpuBackend::new(),
            gpu: gpu()?,
            rng: ChaCha8Rng::seed_from_u64(seed),
            lens: HashMap::new(),
        })
    }

    /// One buffer per backend holding the regions of `shapes` one after the other,
    /// the first at offset 3 and each 5 floats after the last, poison around them.
    fn arena(&mut self, shapes: &[(usize, usize)]) -> Vec<Mat> {
        let len = shapes.iter().map(|(r, c)| r * c + 5).sum::<usize>() + 3;
        let id = self.cpu.alloc(len).unwrap();
        assert_eq!(self.gpu.alloc(len).unwrap(), id);
        self.lens.insert(id, len);
        let poison = vec![POISON; len];
        self.cpu.write(id, 0, &poison).unwrap();
        self.gpu.write(id, 0, &poison).unwrap();
        let mut at = 3;
        shapes
            .iter()
            .map(|&(rows, cols)| {
                let m = Mat::new(id, at, rows, cols);
                at += rows * cols + 5;
                m
            })
            .collect()
    }

    /// A region in its own buffer (see [`Pair::arena`]).
    fn region(&mut self, rows: usize, cols: usize) -> Mat {
        self.arena(&[(rows, cols)])[0]
    }

    /// Writes `data` into `m` on both backends.
    fn put(&mut self, m: Mat, data: &[f32]) {
        assert_eq!(m.len(), data.len());
        self.cpu.write(m.buf, m.offset, data).unwrap();
        self.gpu.write(m.buf, m.offset, data).unwrap();
    }

    /// Marks `m` stale on both backends (a kernel must overwrite it).
    fn stale(&mut self, m: Mat) {
        self.put(m, &vec![STALE; m.len()]);
    }

    /// Uniform values in `[-1, 1)`.
    fn random(&mut self, len: usize) -> Vec<f32> {
        (0..len).map(|_| self.rng.random_range(-1.0..1.0)).collect()
    }

    /// Values on a coarse grid (ties in most windows), with signed zeros, infinities
    /// and NaNs sprinkled in.
    fn ties_and_nans(&mut self, len: usize) -> Vec<f32> {
        (0..len)
            .map(|_| match self.rng.random_range(0..40) {
                0 => f32::NAN,
                1 => -0.0,
                2 => 0.0,
                3 => f32::NEG_INFINITY,
                4 => f32::INFINITY,
                _ => self.rng.random_range(-3..=3) as f32 * 0.5,
            })
            .collect()
    }

    fn run(&mut self, op: impl Fn(&mut dyn Backend) -> plasticity::Result<()>) {
        op(&mut self.cpu).unwrap();
        op(&mut self.gpu).unwrap();
    }

    /// The whole buffer of `m` on both backends.
    fn both(&mut self, m: Mat) -> (Vec<f32>, Vec<f32>) {
        let len = self.lens[&m.buf];
        (
            self.cpu.read(m.buf, 0, len).unwrap(),
            self.gpu.read(m.buf, 0, len).unwrap(),
        )
    }

    /// Asserts the buffer of `m` is the same bit for bit (NaN matches NaN).
    fn assert_bitwise(&mut self, m: Mat, what: &str) {
        let (c, g) = self.both(m);
        for (i, (c, g)) in c.iter().zip(&g).enumerate() {
            assert!(
                c.to_bits() == g.to_bits() || (c.is_nan() && g.is_nan()),
                "{what}: element {i} of the buffer (region {:?}): cpu {c} gpu {g}",
                m.range()
            );
        }
    }

    /// Asserts the buffer of `m` is bit for bit the same outside `m` (poison) and
    /// within `bound[i]` inside; returns how many elements differ in their bits and
    /// the worst `|diff| / bound`.
    fn assert_sums(&mut self, m: Mat, bound: &[f64], what: &str) -> (usize, f64) {
        let (c, g) = self.both(m);
        let (mut differ, mut worst) = (0, 0.0f64);
        for (i, (&c, &g)) in c.iter().zip(&g).enumerate() {
            if m.range().contains(&i) {
                let b = bound[i - m.offset];
                let diff = (c as f64 - g as f64).abs();
                assert!(
                    diff <= b,
                    "{what}: element {} of the region: cpu {c} gpu {g} (|diff| {diff:e} > {b:e})",
                    i - m.offset
                );
                if diff > 0.0 {
                    worst = worst.max(diff / b);
                }
                differ += usize::from(c.to_bits() != g.to_bits());
            } else {
                assert!(g.is_nan(), "{what}: element {i} outside the region: {g}");
            }
        }
        (differ, worst)
    }
}

/// Odd maps, one channel, batch 1, strides 1-3, paddings 0-2, kernels above their
/// stride (and a 1x1 one); every combination that fits.
fn windows() -> Vec<Window> {
    let mut out = Vec::new();
    for (channels, height, width, batch) in
        [(1, 7, 5, 1), (3, 6, 9, 2), (2, 5, 5, 3), (4, 11, 13, 5)]
    {
        for (kernel, stride, padding) in [
            (3, 1, 0),
            (3, 2, 1),
            (2, 2, 0),
            (5, 3, 2),
            (1, 1, 0),
            (3, 2, 2),
            (4, 2, 1),
            (2, 1, 1),
            (3, 3, 1),
        ] {
            let w = Window {
                channels,
                height,
                width,
                kernel,
                stride,
                padding,
                batch,
            };
            if w.check().is_ok() {
                out.push(w);
            }
        }
    }
    out
}

/// The windows pooling accepts (padding at most half the window).
fn pool_windows() -> Vec<Window> {
    windows()
        .into_iter()
        .filter(|w| 2 * w.padding <= w.kernel)
        .collect()
}

fn abs(v: &[f32]) -> Vec<f32> {
    v.iter().map(|x| x.abs()).collect()
}

/// `2 (k² + 1) eps s` for each `s`, a sum of absolute terms of a `k x k` window.
fn sum_bounds(w: &Window, abs_sums: &[f32]) -> Vec<f64> {
    let terms = (w.kernel * w.kernel + 1) as f64;
    abs_sums
        .iter()
        .map(|&s| 2.0 * terms * EPS * s as f64)
        .collect()
}

fn im2col_op(w: Window, image: Mat, patches: Mat) -> Im2Col {
    Im2Col {
        window: w,
        image,
        patches,
    }
}

fn pool_op(w: Window, mode: PoolMode, input: Mat, output: Mat, argmax: Mat) -> Pool {
    Pool {
        window: w,
        mode,
        input,
        output,
        argmax,
    }
}

#[test]
fn im2col_matches_the_cpu_bit_for_bit() {
    let Some(mut pair) = Pair::new(1) else { return };
    for w in windows() {
        let image = pair.region(w.channels * w.height * w.width, w.batch);
        let patches = pair.region(w.patch_rows(), w.positions());
        let data = pair.ties_and_nans(image.len());
        pair.put(image, &data);
        pair.stale(patches);
        pair.run(|b| b.im2col(&im2col_op(w, image, patches)));
        pair.assert_bitwise(patches, &format!("im2col {w:?}"));
    }
}

#[test]
fn col2im_matches_the_cpu_within_summation_rounding() {
    let Some(mut pair) = Pair::new(2) else { return };
    let (mut differ, mut total, mut worst) = (0, 0, 0.0f64);
    for w in windows() {
        let image = pair.region(w.channels * w.height * w.width, w.batch);
        let patches = pair.region(w.patch_rows(), w.positions());
        let data = pair.random(patches.len());
        pair.put(patches, &data);
        pair.stale(image);
        pair.run(|b| b.col2im(&im2col_op(w, image, patches)));
        let mut abs_sums = vec![0.0; image.len()];
        spatial::host::col2im(&w, &abs(&data), &mut abs_sums);
        let (d, r) = pair.assert_sums(image, &sum_bounds(&w, &abs_sums), &format!("{w:?}"));
        (differ, total, worst) = (differ + d, total + image.len(), worst.max(r));
    }
    eprintln!(
        "col2im: {differ} of {total} elements differ in bits; worst |diff| / bound {worst:.3}"
    );
}

/// Max pooling (values and argmax), max-at pooling of a tangent through the argmax,
/// and the unpooling of both max modes: all bit for bit, with ties (the first maximum
/// wins) and NaNs (they win) in most windows.
#[test]
fn max_pooling_and_its_gradient_match_the_cpu_bit_for_bit() {
    let Some(mut pair) = Pair::new(3) else { return };
    for w in pool_windows() {
        let what = format!("{w:?}");
        let rows = w.channels * w.height * w.width;
        let pooled = w.channels * w.out_height() * w.out_width();
        let input = pair.region(rows, w.batch);
        let output = pair.region(pooled, w.batch);
        let argmax = pair.region(pooled, w.batch);
        let data = pair.ties_and_nans(input.len());
        pair.put(input, &data);
        pair.stale(output);
        pair.stale(argmax);
        pair.run(|b| b.pool(&pool_op(w, PoolMode::Max, input, output, argmax)));
        pair.assert_bitwise(output, &format!("max pool {what}"));
        pair.assert_bitwise(argmax, &format!("max pool argmax {what}"));

        // The tangent of max pooling: the tangent's value where the maximum was.
        let tangent = pair.random(input.len());
        pair.put(input, &tangent);
        pair.stale(output);
        pair.run(|b| b.pool(&pool_op(w, PoolMode::MaxAt, input, output, argmax)));
        pair.assert_bitwise(output, &format!("max-at pool {what}"));

        for mode in [PoolMode::Max, PoolMode::MaxAt] {
            let d_out = pair.random(output.len());
            pair.put(output, &d_out);
            pair.stale(input);
            pair.run(|b| b.unpool(&pool_op(w, mode, input, output, argmax)));
            pair.assert_bitwise(input, &format!("{mode:?} unpool {what}"));
        }
    }
}

#[test]
fn average_pooling_and_its_gradient_match_the_cpu_within_summation_rounding() {
    let Some(mut pair) = Pair::new(4) else { return };
    let (mut differ, mut total, mut worst) = ([0; 2], [0; 2], [0.0f64; 2]);
    for w in pool_windows() {
        let what = format!("{w:?}");
        let input = pair.region(w.channels * w.height * w.width, w.batch);
        let output = pair.region(w.channels * w.out_height() * w.out_width(), w.batch);
        // Average pooling ignores the argmax: a region outside every buffer is fine.
        let no_argmax = Mat::new(output.buf, 1 << 30, output.rows, output.cols);
        let op = pool_op(w, PoolMode::Avg, input, output, no_argmax);
        let x = pair.random(input.len());
        pair.put(input, &x);
        pair.stale(output);
        pair.run(|b| b.pool(&op));
        let mut abs_sums = vec![0.0; output.len()];
        spatial::host::pool(&w, PoolMode::Avg, &abs(&x), &mut abs_sums, &mut []);
        let (d, r) = pair.assert_sums(output, &sum_bounds(&w, &abs_sums), &what);
        (differ[0], total[0], worst[0]) = (differ[0] + d, total[0] + output.len(), worst[0].max(r));

        let d_out = pair.random(output.len());
        pair.put(output, &d_out);
        pair.stale(input);
        pair.run(|b| b.unpool(&op));
        let mut abs_sums = vec![0.0; input.len()];
        spatial::host::unpool(&w, PoolMode::Avg, &abs(&d_out), &[], &mut abs_sums);
        let (d, r) = pair.assert_sums(input, &sum_bounds(&w, &abs_sums), &what);
        (differ[1], total[1], worst[1]) = (differ[1] + d, total[1] + input.len(), worst[1].max(r));
    }
    for (i, name) in ["average pool", "average unpool"].iter().enumerate() {
        eprintln!(
            "{name}: {} of {} elements differ in bits; worst |diff| / bound {:.3}",
            differ[i], total[i], worst[i]
        );
    }
}

/// As a training step lays them out: every region of a call in one buffer.
#[test]
fn every_region_in_one_buffer_like_a_training_step() {
    let Some(mut pair) = Pair::new(5) else { return };
    let w = Window {
        channels: 3,
        height: 9,
        width: 7,
        kernel: 3,
        stride: 2,
        padding: 1,
        batch: 4,
    };
    let rows = w.channels * w.height * w.width;
    let pooled = w.channels * w.out_height() * w.out_width();
    let m = pair.arena(&[
        (rows, w.batch),
        (w.patch_rows(), w.positions()),
        (pooled, w.batch),
        (pooled, w.batch),
    ]);
    let (image, patches, output, argmax) = (m[0], m[1], m[2], m[3]);
    let data = pair.ties_and_nans(image.len());
    pair.put(image, &data);
    pair.run(|b| b.im2col(&im2col_op(w, image, patches)));
    pair.run(|b| b.pool(&pool_op(w, PoolMode::Max, image, output, argmax)));
    pair.assert_bitwise(image, "im2col and max pool in one buffer");
    // Sums of small multiples of 1/2: exact in any order.
    pair.run(|b| b.col2im(&im2col_op(w, image, patches)));
    pair.assert_bitwise(image, "col2im in one buffer");
    let d_out = pair.ties_and_nans(output.len());
    pair.put(output, &d_out);
    pair.run(|b| b.unpool(&pool_op(w, PoolMode::Max, image, output, argmax)));
    pair.assert_bitwise(image, "max unpool in one buffer");
}

/// More elements than one pass of the grid covers (4096 workgroups of 256
/// invocations), so every kernel's invocations loop.
#[test]
fn maps_larger_than_one_grid_pass() {
    let Some(mut pair) = Pair::new(6) else { return };
    let grid = 4096 * 256;
    // 27 x 34·34·64 patch elements; 16·34·34·64 image and 16·33·33·64 pooled elements.
    let conv = Window {
        channels: 3,
        height: 34,
        width: 34,
        kernel: 3,
        stride: 1,
        padding: 1,
        batch: 64,
    };
    let pool = Window {
        channels: 16,
        kernel: 2,
        padding: 0,
        ..conv
    };
    assert!(conv.patch_rows() * conv.positions() > grid);
    assert!(pool.image_len() > grid && pool.pooled_len() > grid);

    let image = pair.region(conv.channels * conv.height * conv.width, conv.batch);
    let patches = pair.region(conv.patch_rows(), conv.positions());
    let data = pair.random(image.len());
    pair.put(image, &data);
    pair.run(|b| b.im2col(&im2col_op(conv, image, patches)));
    pair.assert_bitwise(patches, "large im2col");
    pair.stale(image);
    pair.run(|b| b.col2im(&im2col_op(conv, image, patches)));
    let mut abs_sums = vec![0.0; image.len()];
    let abs_patches = abs(&pair
        .cpu
        .read(patches.buf, patches.offset, patches.len())
        .unwrap());
    spatial::host::col2im(&conv, &abs_patches, &mut abs_sums);
    pair.assert_sums(image, &sum_bounds(&conv, &abs_sums), "large col2im");

    let rows = pool.channels * pool.height * pool.width;
    let pooled = pool.channels * pool.out_height() * pool.out_width();
    let input = pair.region(rows, pool.batch);
    let output = pair.region(pooled, pool.batch);
    let argmax = pair.region(pooled, pool.batch);
    let data = pair.ties_and_nans(input.len());
    pair.put(input, &data);
    pair.run(|b| b.pool(&pool_op(pool, PoolMode::Max, input, output, argmax)));
    pair.assert_bitwise(output, "large max pool");
    pair.assert_bitwise(argmax, "large max pool argmax");
    let d_out = pair.random(output.len());
    pair.put(output, &d_out);
    pair.stale(input);
    pair.run(|b| b.unpool(&pool_op(pool, PoolMode::Max, input, output, argmax)));
    pair.assert_bitwise(input, "large max unpool");
}

/// Each op records one dispatch and submits nothing: a conv net's step stays one
/// command buffer.
#[test]
fn each_spatial_op_is_one_dispatch_and_no_submit() {
    let Some(mut g) = gpu() else { return };
    let w = Window {
        channels: 2,
        height: 5,
        width: 6,
        kernel: 2,
        stride: 2,
        padding: 1,
        batch: 3,
    };
    let pooled = w.pooled_len();
    let image = g.alloc(w.image_len()).unwrap();
    let patches = g.alloc(w.patch_rows() * w.positions()).unwrap();
    let out = g.alloc(2 * pooled).unwrap();
    let image = Mat::new(image, 0, w.channels * w.height * w.width, w.batch);
    let patches = Mat::new(patches, 0, w.patch_rows(), w.positions());
    let output = Mat::new(out, 0, w.pooled_len() / w.batch, w.batch);
    let argmax = Mat::new(out, pooled, w.pooled_len() / w.batch, w.batch);
    let (d0, s0) = (g.dispatch_count(), g.submit_count());
    g.im2col(&im2col_op(w, image, patches)).unwrap();
    g.col2im(&im2col_op(w, image, patches)).unwrap();
    for mode in [PoolMode::Max, PoolMode::MaxAt, PoolMode::Avg] {
        g.pool(&pool_op(w, mode, image, output, argmax)).unwrap();
        g.unpool(&pool_op(w, mode, image, output, argmax)).unwrap();
    }
    assert_eq!(g.dispatch_count() - d0, 8, "one dispatch per op");
    assert_eq!(g.submit_count(), s0, "nothing submitted before a flush");
    g.flush().unwrap();
    assert_eq!(g.submit_count() - s0, 1);
}

#[test]
fn bad_regions_are_rejected_on_both_backends() {
    let Some(mut g) = gpu() else { return };
    let mut c = CpuBackend::new();
    let w = Window {
        channels: 1,
        height: 5,
        width: 5,
        kernel: 3,
        stride: 2,
        padding: 1,
        batch: 2,
    };
    for backend in [&mut c as &mut dyn Backend, &mut g] {
        let a = backend.alloc(200).unwrap();
        let b = backend.alloc(200).unwrap();
        let image = Mat::new(a, 0, 25, 2);
        let patches = Mat::new(b, 0, 9, 18);
        let output = Mat::new(b, 0, 9, 2);
        let argmax = Mat::new(b, 18, 9, 2);
        backend.im2col(&im2col_op(w, image, patches)).unwrap();
        backend
            .pool(&pool_op(w, PoolMode::Max, image, output, argmax))
            .unwrap();
        // Wrong patch shape.
        let err = backend
            .im2col(&im2col_op(w, image, Mat::new(b, 0, 18, 9)))
            .unwrap_err();
        assert!(matches!(err, Error::ShapeMismatch { .. }), "{err:?}");
        // Out of range.
        assert!(backend
            .col2im(&im2col_op(w, Mat::new(a, 160, 25, 2), patches))
            .is_err());
        assert!(backend
            .unpool(&pool_op(
                w,
                PoolMode::Max,
                Mat::new(a, 190, 25, 2),
                output,
                argmax
            ))
            .is_err());
        // Output overlapping the input.
        assert!(backend
            .im2col(&im2col_op(w, image, Mat::new(a, 10, 9, 18)))
            .is_err());
        assert!(backend
            .col2im(&im2col_op(w, Mat::new(b, 100, 25, 2), patches))
            .is_err());
        // Max pooling's two outputs overlapping; max-at's argmax overlapping its output.
        assert!(backend
            .pool(&pool_op(
                w,
                PoolMode::Max,
                image,
                output,
                Mat::new(b, 9, 9, 2)
            ))
            .is_err());
        assert!(backend
            .pool(&pool_op(
                w,
                PoolMode::MaxAt,
                image,
                output,
                Mat::new(b, 9, 9, 2)
            ))
            .is_err());
        // Unpooling writing over its output gradient or argmax.
        assert!(backend
            .unpool(&pool_op(
                w,
                PoolMode::Max,
                Mat::new(b, 20, 25, 2),
                output,
                argmax
            ))
            .is_err());
        assert!(backend
            .unpool(&pool_op(
                w,
                PoolMode::Avg,
                Mat::new(b, 10, 25, 2),
                output,
                argmax
            ))
            .is_err());
        // Padding over half the window.
        let wide = Window { padding: 2, ..w };
        assert!(backend
            .pool(&pool_op(wide, PoolMode::Avg, image, output, argmax))
            .is_err());
    }
}
