//! The spatial operations conv nets add to the backend seam: unfolding image patches
//! into columns (so a convolution is one GEMM), folding them back (its input
//! gradient), and pooling.
//!
//! Images are stored like every activation, feature-major: `[C·H·W, N]`, element
//! `(c, y, x, n)` at `((c·H + y)·W + x)·N + n`. Patch columns are `[C·k·k, OH·OW·N]`,
//! row `(c·k + ky)·k + kx` (the order of PyTorch's `[out, in, kh, kw]` weights) and
//! column `(oy·OW + ox)·N + n`, so `W [Cout, C·k·k] · patches` is the convolution's
//! output already in the feature-major `[Cout·OH·OW, N]` layout, with no transpose.

use super::Mat;
use crate::error::{Error, Result};

/// A square sliding window over a batch of `channels x height x width` images.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Window {
    /// Image channels.
    pub channels: usize,
    /// Image height.
    pub height: usize,
    /// Image width.
    pub width: usize,
    /// Window side.
    pub kernel: usize,
    /// Step between windows.
    pub stride: usize,
    /// Zero (or, for max pooling, never-winning) border added on every side.
    pub padding: usize,
    /// Images in the batch.
    pub batch: usize,
}

impl Window {
    /// Output height `(H + 2p - k) / s + 1` (0 when the window does not fit).
    pub fn out_height(&self) -> usize {
        out_size(self.height, self.kernel, self.stride, self.padding)
    }

    /// Output width.
    pub fn out_width(&self) -> usize {
        out_size(self.width, self.kernel, self.stride, self.padding)
    }

    /// Floats in the batch of input images (`C·H·W·N`).
    pub fn image_len(&self) -> usize {
        self.channels * self.height * self.width * self.batch
    }

    /// Window positions times batch: the columns of the patch matrix (`OH·OW·N`).
    pub fn positions(&self) -> usize {
        self.out_height() * self.out_width() * self.batch
    }

    /// Rows of the patch matrix (`C·k·k`).
    pub fn patch_rows(&self) -> usize {
        self.channels * self.kernel * self.kernel
    }

    /// Floats of one pooled output batch (`C·OH·OW·N`).
    pub fn pooled_len(&self) -> usize {
        self.channels * self.positions()
    }

    /// Checks the window fits the image and nothing is zero.
    pub fn check(&self) -> Result<()> {
        let fields = [
            self.channels,
            self.height,
            self.width,
            self.kernel,
            self.stride,
            self.batch,
        ];
        if fields.contains(&0) {
            return Err(Error::config(format!("window with a zero size: {self:?}")));
        }
        if self.out_height() == 0 || self.out_width() == 0 {
            return Err(Error::config(format!(
                "a {k}x{k} window (padding {p}) does not fit a {h}x{w} image",
                k = self.kernel,
                p = self.padding,
                h = self.height,
                w = self.width
            )));
        }
        Ok(())
    }

    /// Input rows `y` (or columns) of output row `o` at window offset `k`, if inside
    /// the image (not in the padding).
    #[inline]
    pub fn source(&self, o: usize, k: usize, size: usize) -> Option<usize> {
        (o * self.stride + k)
            .checked_sub(self.padding)
            .filter(|&i| i < size)
    }
}

fn out_size(size: usize, kernel: usize, stride: usize, padding: usize) -> usize {
    let padded = size + 2 * padding;
    if stride == 0 || padded < kernel {
        0
    } else {
        (padded - kernel) / stride + 1
    }
}

/// Unfolding `image` into `patches` ([`Backend::im2col`](super::Backend::im2col)), or
/// folding `patches` back into `image`, summing overlaps
/// ([`Backend::col2im`](super::Backend::col2im)).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Im2Col {
    /// The window geometry.
    pub window: Window,
    /// `[C·H·W, N]` images.
    pub image: Mat,
    /// `[C·k·k, OH·OW·N]` patch columns.
    pub patches: Mat,
}

impl Im2Col {
    /// Checks both regions have the window's sizes.
    pub fn check(&self) -> Result<()> {
        let w = self.window;
        w.check()?;
        expect_len("im2col image", self.image, w.image_len())?;
        expect_dims(
            "im2col patches",
            self.patches,
            w.patch_rows(),
            w.positions(),
        )
    }
}

/// Max or mean over each window.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PoolMode {
    /// The largest value; records where it was (the window offset `ky·k + kx`).
    Max,
    /// The value at the window offset recorded by an earlier [`PoolMode::Max`] pass:
    /// the linearisation of max pooling, applied to a tangent (forward-mode) vector.
    MaxAt,
    /// The mean over the `k·k` window, padding included (PyTorch's default).
    Avg,
}

/// One pooling pass ([`Backend::pool`](super::Backend::pool)) or its input gradient
/// ([`Backend::unpool`](super::Backend::unpool)).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Pool {
    /// The window geometry.
    pub window: Window,
    /// How windows are reduced.
    pub mode: PoolMode,
    /// `[C·H·W, N]`: read by `pool`, written by `unpool`.
    pub input: Mat,
    /// `[C·OH·OW, N]`: written by `pool`, read by `unpool`.
    pub output: Mat,
    /// `[C·OH·OW, N]` window offsets of the maxima (max modes only; may be empty for
    /// [`PoolMode::Avg`]).
    pub argmax: Mat,
}

impl Pool {
    /// Checks the regions have the window's sizes.
    pub fn check(&self) -> Result<()> {
        let w = self.window;
        w.check()?;
        if w.padding * 2 > w.kernel {
            return Err(Error::config(format!(
                "pooling padding {} is more than half the {}x{} window",
                w.padding, w.kernel, w.kernel
            )));
        }
        expect_len("pool input", self.input, w.image_len())?;
        expect_len("pool output", self.output, w.pooled_len())?;
        if self.mode != PoolMode::Avg {
            expect_len("pool argmax", self.argmax, w.pooled_len())?;
        }
        Ok(())
    }

    /// The regions it reads besides its main input (the argmax for max modes).
    pub fn argmax_reads(&self) -> Option<Mat> {
        (self.mode != PoolMode::Avg).then_some(self.argmax)
    }
}

fn expect_len(context: &str, m: Mat, len: usize) -> Result<()> {
    if m.len() != len {
        return Err(Error::shape(
            context,
            format!("{len} floats"),
            format!("{} floats ({}x{})", m.len(), m.rows, m.cols),
        ));
    }
    Ok(())
}

fn expect_dims(context: &str, m: Mat, rows: usize, cols: usize) -> Result<()> {
    if (m.rows, m.cols) != (rows, cols) {
        return Err(Error::shape(
            context,
            format!("{rows}x{cols}"),
            format!("{}x{}", m.rows, m.cols),
        ));
    }
    Ok(())
}

/// Reference implementations on host slices: the CPU backend runs these, and they
/// are written plainly so tests can trust them. Every loop keeps the batch
/// innermost, where memory is contiguous.
pub mod host {
    use super::{PoolMode, Window};

    /// Unfolds `image` (`[C·H·W, N]`) into `patches` (`[C·k·k, OH·OW·N]`).
    pub fn im2col(w: &Window, image: &[f32], patches: &mut [f32]) {
        let (k, n) = (w.kernel, w.batch);
        let (oh, ow) = (w.out_height(), w.out_width());
        let rows = patches.chunks_exact_mut(oh * ow * n).enumerate();
        each(rows, patches_len(w), |(row, dst)| {
            let (c, ky, kx) = (row / (k * k), row / k % k, row % k);
            for oy in 0..oh {
                for ox in 0..ow {
                    let out = &mut dst[(oy * ow + ox) * n..][..n];
                    match (w.source(oy, ky, w.height), w.source(ox, kx, w.width)) {
                        (Some(y), Some(x)) => {
                            let at = ((c * w.height + y) * w.width + x) * n;
                            out.copy_from_slice(&image[at..at + n]);
                        }
                        _ => out.fill(0.0),
                    }
                }
            }
        });
    }

    /// Folds `patches` back into `image` (overwritten), summing where windows overlap:
    /// the adjoint of [`im2col`]. Each image element gathers its own terms, so it
    /// needs no atomics on a GPU either.
    pub fn col2im(w: &Window, patches: &[f32], image: &mut [f32]) {
        let (k, n) = (w.kernel, w.batch);
        let (oh, ow) = (w.out_height(), w.out_width());
        let plane = w.height * w.width * n;
        each(
            image.chunks_mut(plane).enumerate(),
            w.image_len(),
            |(c, image)| {
                image.fill(0.0);
                for ky in 0..k {
                    for kx in 0..k {
                        let row = &patches[((c * k + ky) * k + kx) * oh * ow * n..][..oh * ow * n];
                        for oy in 0..oh {
                            let Some(y) = w.source(oy, ky, w.height) else {
                                continue;
                            };
                            for ox in 0..ow {
                                let Some(x) = w.source(ox, kx, w.width) else {
                                    continue;
                                };
                                let at = (y * w.width + x) * n;
                                let src = &row[(oy * ow + ox) * n..][..n];
                                image[at..at + n]
                                    .iter_mut()
                                    .zip(src)
                                    .for_each(|(d, s)| *d += s);
                            }
                        }
                    }
                }
            },
        );
    }

    /// Pools `input` into `output`; [`PoolMode::Max`] records each maximum's window
    /// offset in `argmax` (the first maximum wins, as in PyTorch; a NaN wins too, so
    /// divergence still shows downstream), [`PoolMode::MaxAt`] reads it.
    pub fn pool(w: &Window, mode: PoolMode, input: &[f32], output: &mut [f32], argmax: &mut [f32]) {
        let (k, n) = (w.kernel, w.batch);
        let (oh, ow) = (w.out_height(), w.out_width());
        let scale = 1.0 / (k * k) as f32;
        let plane = oh * ow * n;
        // Average pooling keeps no argmax: give every channel an empty slice.
        let arg_plane = if mode == PoolMode::Avg { 0 } else { plane };
        let args: Vec<&mut [f32]> = match arg_plane {
            0 => (0..w.channels).map(|_| &mut [][..]).collect(),
            _ => argmax.chunks_mut(plane).collect(),
        };
        let channels = output.chunks_mut(plane).zip(args).enumerate();
        each(channels, w.pooled_len(), |(c, (output, argmax))| {
            for oy in 0..oh {
                for ox in 0..ow {
                    let o = (oy * ow + ox) * n;
                    let out = &mut output[o..o + n];
                    let arg = &mut argmax[if arg_plane == 0 { 0..0 } else { o..o + n }];
                    if mode == PoolMode::MaxAt {
                        for (j, (v, a)) in out.iter_mut().zip(arg.iter()).enumerate() {
                            let off = *a as usize;
                            *v = match (
                                w.source(oy, off / k, w.height),
                                w.source(ox, off % k, w.width),
                            ) {
                                (Some(y), Some(x)) => {
                                    input[((c * w.height + y) * w.width + x) * n + j]
                                }
                                _ => 0.0,
                            };
                        }
                        continue;
                    }
                    let mut first = true;
                    for ky in 0..k {
                        let Some(y) = w.source(oy, ky, w.height) else {
                            continue;
                        };
                        for kx in 0..k {
                            let Some(x) = w.source(ox, kx, w.width) else {
                                continue;
                            };
                            let at = ((c * w.height + y) * w.width + x) * n;
                            let src = &input[at..at + n];
                            let off = (ky * k + kx) as f32;
                            match mode {
                                PoolMode::Avg if first => out.copy_from_slice(src),
                                PoolMode::Avg => out.iter_mut().zip(src).for_each(|(o, s)| *o += s),
                                _ if first => {
                                    out.copy_from_slice(src);
                                    arg.fill(off);
                                }
                                _ => {
                                    keep_max(out, arg, src, off);
                                }
                            }
                            first = false;
                        }
                    }
                    if mode == PoolMode::Avg {
                        out.iter_mut().for_each(|v| *v *= scale);
                    }
                }
            }
        });
    }

    /// The input gradient of pooling: `d_in` (overwritten) gathers `d_out` from every
    /// window that covers it (through the recorded maxima for the max modes).
    pub fn unpool(w: &Window, mode: PoolMode, d_out: &[f32], argmax: &[f32], d_in: &mut [f32]) {
        let (k, n) = (w.kernel, w.batch);
        let (oh, ow) = (w.out_height(), w.out_width());
        let scale = 1.0 / (k * k) as f32;
        let plane = w.height * w.width * n;
        each(
            d_in.chunks_mut(plane).enumerate(),
            w.image_len(),
            |(c, d_in)| {
                d_in.fill(0.0);
                for oy in 0..oh {
                    for ox in 0..ow {
                        let o = ((c * oh + oy) * ow + ox) * n;
                        let d = &d_out[o..o + n];
                        for ky in 0..k {
                            let Some(y) = w.source(oy, ky, w.height) else {
                                continue;
                            };
                            for kx in 0..k {
                                let Some(x) = w.source(ox, kx, w.width) else {
                                    continue;
                                };
                                let at = (y * w.width + x) * n;
                                let dst = &mut d_in[at..at + n];
                                if mode == PoolMode::Avg {
                                    dst.iter_mut().zip(d).for_each(|(t, s)| *t += s * scale);
                                } else {
                                    let off = (ky * k + kx) as f32;
                                    add_where(dst, d, &argmax[o..o + n], off);
                                }
                            }
                        }
                    }
                }
            },
        );
    }

    /// Lanes the batch loops below are cut into, so the compiler vectorises them.
    const LANES: usize = 8;

    /// `out = max(out, src)` elementwise, recording `off` in `arg` where `src` wins (a
    /// NaN wins too), with bit masks instead of branches.
    fn keep_max(out: &mut [f32], arg: &mut [f32], src: &[f32], off: f32) {
        let step = |o: &mut f32, a: &mut f32, v: f32| {
            let take = mask((v > *o) | v.is_nan());
            *o = f32::from_bits((v.to_bits() & take) | (o.to_bits() & !take));
            *a = f32::from_bits((off.to_bits() & take) | (a.to_bits() & !take));
        };
        let mut outs = out.chunks_exact_mut(LANES);
        let mut args = arg.chunks_exact_mut(LANES);
        let mut srcs = src.chunks_exact(LANES);
        for ((o, a), s) in (&mut outs).zip(&mut args).zip(&mut srcs) {
            for j in 0..LANES {
                step(&mut o[j], &mut a[j], s[j]);
            }
        }
        let tail = outs.into_remainder().iter_mut().zip(args.into_remainder());
        for ((o, a), &v) in tail.zip(srcs.remainder()) {
            step(o, a, v);
        }
    }

    /// `dst += src` where `arg == off`, elementwise.
    fn add_where(dst: &mut [f32], src: &[f32], arg: &[f32], off: f32) {
        let mut dsts = dst.chunks_exact_mut(LANES);
        let mut srcs = src.chunks_exact(LANES);
        let mut args = arg.chunks_exact(LANES);
        for ((t, s), a) in (&mut dsts).zip(&mut srcs).zip(&mut args) {
            for j in 0..LANES {
                t[j] += f32::from_bits(s[j].to_bits() & mask(a[j] == off));
            }
        }
        let tail = dsts.into_remainder().iter_mut().zip(srcs.remainder());
        for ((t, s), a) in tail.zip(args.remainder()) {
            *t += f32::from_bits(s.to_bits() & mask(*a == off));
        }
    }

    /// All ones where `yes`, else zero: a bit mask that selects without branching
    /// (an integer blend vectorises where a float select does not).
    #[inline(always)]
    fn mask(yes: bool) -> u32 {
        u32::from(yes).wrapping_neg()
    }

    /// Floats of a patch matrix.
    fn patches_len(w: &Window) -> usize {
        w.patch_rows() * w.positions()
    }

    /// Runs `f` on every item, across threads when the pass is big enough to pay for it
    /// (items write disjoint slices: rows or channels).
    fn each<I, F>(items: I, floats: usize, f: F)
    where
        I: Iterator + Send,
        I::Item: Send,
        F: Fn(I::Item) + Sync + Send,
    {
        use rayon::iter::{ParallelBridge, ParallelIterator};
        if floats >= 1 << 15 {
            items.par_bridge().for_each(f);
        } else {
            items.for_each(f);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::host::{col2im, im2col, pool, unpool};
    use super::{PoolMode, Window};
    use rand::{Rng, SeedableRng};

    fn random(n: usize, seed: u64) -> Vec<f32> {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
        (0..n).map(|_| rng.random_range(-1.0..1.0)).collect()
    }

    fn dot(a: &[f32], b: &[f32]) -> f64 {
        a.iter().zip(b).map(|(x, y)| *x as f64 * *y as f64).sum()
    }

    /// `<J x, y> = <x, J^T y>`, given `(J x, y)` and `(x, J^T y)`.
    fn assert_adjoint(forward: (&[f32], &[f32]), backward: (&[f32], &[f32]), what: &str) {
        let (lhs, rhs) = (dot(forward.0, forward.1), dot(backward.0, backward.1));
        assert!(
            (lhs - rhs).abs() < 1e-4 * lhs.abs().max(1.0),
            "{what}: {lhs} vs {rhs}"
        );
    }

    /// Odd sizes, strides 1-3, paddings 0-2, one channel, batch 1, kernel > stride.
    fn windows() -> Vec<Window> {
        let mut out = Vec::new();
        for (channels, height, width, batch) in [(1, 7, 5, 1), (3, 6, 9, 2), (2, 5, 5, 3)] {
            for (kernel, stride, padding) in [(3, 1, 0), (3, 2, 1), (2, 2, 0), (5, 3, 2), (1, 1, 0)]
            {
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

    #[test]
    fn col2im_is_the_adjoint_of_im2col() {
        for (i, w) in windows().into_iter().enumerate() {
            let x = random(w.image_len(), i as u64);
            let p = random(w.patch_rows() * w.positions(), 100 + i as u64);
            let mut px = vec![0.0; p.len()];
            im2col(&w, &x, &mut px);
            let mut xp = vec![0.0; x.len()];
            col2im(&w, &p, &mut xp);
            assert_adjoint((&px, &p), (&x, &xp), &format!("{w:?}"));
        }
    }

    #[test]
    fn im2col_picks_the_padded_window() {
        // One 3x3 image, 2x2 kernel, padding 1, stride 2: windows at (-1,-1), (-1,1), (1,-1), (1,1).
        let w = Window {
            channels: 1,
            height: 3,
            width: 3,
            kernel: 2,
            stride: 2,
            padding: 1,
            batch: 1,
        };
        let x: Vec<f32> = (1..=9).map(|v| v as f32).collect();
        let mut p = vec![0.0; w.patch_rows() * w.positions()];
        im2col(&w, &x, &mut p);
        // Rows are kernel offsets (ky, kx), columns windows.
        assert_eq!(
            p,
            [
                0., 0., 0., 5., // (0,0)
                0., 0., 4., 6., // (0,1)
                0., 2., 0., 8., // (1,0)
                1., 3., 7., 9., // (1,1)
            ]
        );
    }

    #[test]
    fn unpool_is_the_adjoint_of_the_pooling_tangent() {
        for (i, w) in windows().into_iter().enumerate() {
            if 2 * w.padding > w.kernel {
                continue;
            }
            let x = random(w.image_len(), i as u64);
            let mut y = vec![0.0; w.pooled_len()];
            let mut argmax = vec![0.0; w.pooled_len()];
            pool(&w, PoolMode::Max, &x, &mut y, &mut argmax);
            // The max is reached at the recorded offset.
            let mut at = vec![0.0; y.len()];
            pool(&w, PoolMode::MaxAt, &x, &mut at, &mut argmax.clone());
            assert_eq!(at, y, "{w:?}");
            for mode in [PoolMode::MaxAt, PoolMode::Avg] {
                let t = random(w.image_len(), 200 + i as u64);
                let d = random(w.pooled_len(), 300 + i as u64);
                let mut jt = vec![0.0; d.len()];
                pool(&w, mode, &t, &mut jt, &mut argmax.clone());
                let mut jd = vec![0.0; t.len()];
                unpool(&w, mode, &d, &argmax, &mut jd);
                assert_adjoint((&jt, &d), (&t, &jd), &format!("{w:?} {mode:?}"));
            }
        }
    }

    #[test]
    fn windows_that_do_not_fit_are_refused() {
        let w = Window {
            channels: 1,
            height: 2,
            width: 2,
            kernel: 5,
            stride: 1,
            padding: 1,
            batch: 1,
        };
        assert!(w.check().is_err());
        assert!(Window { kernel: 0, ..w }.check().is_err());
    }
}
