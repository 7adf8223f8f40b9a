//! The CPU backend's elementwise loops, each compiled for AVX2 through [`wide`] (the
//! optimizer's update, the noise draw, with brSF's feedback riding on it, and the sign
//! feedback's compare, which compute more than they move, for AVX-512 through
//! [`widest`] where the CPU has it).
//! On the worker threads that matters more than the lanes: faer's parallel products
//! leave the workers with a dirty AVX upper state, where baseline (SSE-encoded) code
//! pays a transition penalty on every instruction. Measured: a weight-mirror epoch
//! (784-500-10, batch 128) went from 8.9 s to 1.2 s, the noise having run 8x slower
//! inside training than alone. A loop written with iterator adaptors can stay out of
//! line, compiled for the baseline; these are plain `for` loops, inlined. Each does the
//! same operations in the same order as its plain form, so the values are the same bit
//! for bit.

use std::ops::Range;

use super::transposed::Patch;
use crate::backend::columns::{self, ColumnOp};
use crate::backend::elementwise::{self, Axpby, Distribution, Noise};
use crate::backend::simd_state::{wide, widest};
use crate::optim::UpdateStep;

/// Elements `first..` of a [`Backend::noise`](crate::backend::Backend::noise) draw.
pub(super) struct NoiseChunk<'a> {
    pub(super) op: &'a Noise,
    pub(super) out: &'a mut [f32],
    pub(super) first: u32,
}

impl pulp::WithSimd for NoiseChunk<'_> {
    type Output = ();

    #[inline(always)]
    fn with_simd<S: pulp::Simd>(self, _simd: S) {
        elementwise::host::noise_from(self.op, self.out, self.first);
    }
}

/// A chunk of a [`Backend::axpby`](crate::backend::Backend::axpby): `y = alpha x + beta y`.
pub(super) struct AxpbyChunk<'a> {
    pub(super) op: &'a Axpby,
    pub(super) y: &'a mut [f32],
    pub(super) x: &'a [f32],
}

impl pulp::WithSimd for AxpbyChunk<'_> {
    type Output = ();

    #[inline(always)]
    fn with_simd<S: pulp::Simd>(self, _simd: S) {
        elementwise::host::axpby(self.op, self.y, self.x);
    }
}

/// A whole [`Backend::columns`](crate::backend::Backend::columns) op (per-sample sums
/// over a feature-major batch, which run row by row across the samples).
pub(super) struct ColumnPass<'a> {
    pub(super) op: &'a ColumnOp,
    pub(super) x: &'a [f32],
    pub(super) out: &'a mut [f32],
}

impl pulp::WithSimd for ColumnPass<'_> {
    type Output = ();

    #[inline(always)]
    fn with_simd<S: pulp::Simd>(self, _simd: S) {
        columns::host(self.op, self.x, self.out);
    }
}

/// A chunk of an optimizer pass: it runs on the worker threads right after the gradient
/// products. Returns whether every parameter is finite.
struct OptimizerChunk<'a> {
    step: UpdateStep,
    params: &'a mut [f32],
    grads: &'a [f32],
    s0: &'a mut [f32],
    s1: &'a mut [f32],
}

impl pulp::WithSimd for OptimizerChunk<'_> {
    type Output = bool;

    #[inline(always)]
    fn with_simd<S: pulp::Simd>(self, _simd: S) -> bool {
        self.step
            .apply_slice(self.params, self.grads, self.s0, self.s1)
    }
}

/// One optimizer update of `params` and its state from `grads`; whether every parameter
/// is finite. The plain pass and the fused one (`deferred`) both update through it, at
/// AVX-512 where the CPU has it: Adam's square root and division made its BP and DFA
/// steps at 784-1024x3-10 1.1-1.9% faster so (plain SGD, which only moves memory,
/// unchanged), in alternating runs.
pub(super) fn apply_update(
    step: UpdateStep,
    params: &mut [f32],
    grads: &[f32],
    s0: &mut [f32],
    s1: &mut [f32],
) -> bool {
    widest(OptimizerChunk {
        step,
        params,
        grads,
        s0,
        s1,
    })
}

/// Whether every value in columns `columns` of the row-major `matrix` (rows `cols`
/// long) is finite: one sweep over the whole tile compiled for AVX2 (see `wide`). Once
/// per tile with an integer maximum, against once per row (6,000 rows a step at
/// 784-1024x3-10) with a flag per value, the fused pass ran 1.9-2.2% faster for BP and
/// DFA; the scan still takes about 4% of it.
pub(super) fn tile_finite(matrix: &[f32], cols: usize, columns: Range<usize>) -> bool {
    struct TileFinite<'a> {
        matrix: &'a [f32],
        cols: usize,
        columns: Range<usize>,
    }

    impl pulp::WithSimd for TileFinite<'_> {
        type Output = bool;

        #[inline(always)]
        fn with_simd<S: pulp::Simd>(self, _simd: S) -> bool {
            // The largest magnitude's bits, as integers: an integer maximum vectorises
            // and reorders freely, and a value is finite when its exponent is not all
            // ones (NaN and infinity both compare above `f32::MAX`).
            let mut largest = 0u32;
            for row in self.matrix.chunks(self.cols.max(1)) {
                for v in &row[self.columns.clone()] {
                    largest = largest.max(v.to_bits() & 0x7fff_ffff);
                }
            }
            largest <= f32::MAX.to_bits()
        }
    }

    wide(TileFinite {
        matrix,
        cols,
        columns,
    })
}

/// A tile of a fused optimizer pass: columns `columns` of the row-major parameters and
/// state (rows `cols` long), updated from gradient rows `grad_stride` long whose first
/// column is `grad_first`. Like [`tile_finite`], one AVX2 call for the whole tile.
pub(super) struct TileUpdate<'a> {
    pub(super) step: UpdateStep,
    pub(super) params: &'a mut [f32],
    pub(super) s0: &'a mut [f32],
    pub(super) s1: &'a mut [f32],
    pub(super) cols: usize,
    pub(super) columns: Range<usize>,
    pub(super) grads: &'a [f32],
    pub(super) grad_stride: usize,
    pub(super) grad_first: usize,
}

impl TileUpdate<'_> {
    /// Updates the tile, row by row, at the width of [`apply_update`]; whether every
    /// updated parameter is finite.
    pub(super) fn apply(self) -> bool {
        widest(self)
    }
}

impl pulp::WithSimd for TileUpdate<'_> {
    type Output = bool;

    #[inline(always)]
    fn with_simd<S: pulp::Simd>(self, _simd: S) -> bool {
        let width = self.columns.len();
        let rows = self.params.len() / self.cols.max(1);
        let mut finite = true;
        for i in 0..rows {
            let r = i * self.cols + self.columns.start..i * self.cols + self.columns.end;
            let g = i * self.grad_stride + self.grad_first;
            // `&`, not `&&`: every row is updated whatever came before.
            finite &= self.step.apply_slice(
                &mut self.params[r.clone()],
                &self.grads[g..g + width],
                &mut self.s0[r.clone()],
                &mut self.s1[r],
            );
        }
        finite
    }
}

/// `sign(v)` with `sign(0) = 0`, like WGSL's `sign` (`f32::signum(0.0)` is 1), and 0 for
/// NaN; branch-free so loops over it vectorise.
#[inline(always)]
fn sign(v: f32) -> f32 {
    (v > 0.0) as u8 as f32 - (v < 0.0) as u8 as f32
}

/// What a feedback value takes from its weight: the sign, as `-1`, `0` or `1` (`0` for
/// NaN, like [`sign`]).
#[inline(always)]
fn sign_class(v: f32) -> i8 {
    (v > 0.0) as i8 - (v < 0.0) as i8
}

/// Weights whose signs are compared, and whose feedback is rewritten if any changed,
/// together.
const SIGN_LINE: usize = 64;

/// A chunk of sign-concordant feedback kept current: `b = scale · sign(w)`, or `scale ·
/// |m| · sign(w)` with magnitudes, given `signs`, the signs of the weights `b` was last
/// written from (`b` holding exactly that feedback). Only the lines of 64 values where
/// a weight's sign changed are rewritten, and their `signs` with them; a sign that is
/// none of `-1, 0, 1` (a new record's `i8::MIN`) makes its line be written. A feedback
/// value depends on its weight only through that sign, so the result is the plain
/// formula's, bit for bit, whatever `b` held before. With `changed`, each value whose
/// sign changed is also recorded in the patch, at its index plus the given offset (the
/// chunk's first element in the matrix).
pub(super) struct SignFeedbackChunk<'a> {
    pub(super) out: &'a mut [f32],
    pub(super) w: &'a [f32],
    pub(super) magnitude: Option<&'a [f32]>,
    pub(super) signs: &'a mut [i8],
    pub(super) scale: f32,
    pub(super) changed: Option<(&'a mut Patch, usize)>,
}

impl pulp::WithSimd for SignFeedbackChunk<'_> {
    type Output = ();

    #[inline(always)]
    fn with_simd<S: pulp::Simd>(self, _simd: S) {
        let SignFeedbackChunk {
            out,
            w,
            magnitude,
            signs,
            scale,
            mut changed,
        } = self;
        let feedback = |i: usize| match magnitude {
            None => scale * sign(w[i]),
            Some(m) => scale * m[i].abs() * sign(w[i]),
        };
        let (whole, end) = (w.len() / SIGN_LINE * SIGN_LINE, w.len().min(out.len()));
        // Writes element `i` of a changed line, whose sign was `was` and is `now`.
        let mut write = |i: usize, was: i8, now: i8| {
            let v = feedback(i);
            out[i] = v;
            if let Some((patch, first)) = changed.as_mut() {
                if was != now {
                    patch.push(*first + i, v);
                }
            }
        };
        // Whole lines, compared in fixed-size arrays the compiler turns into vector
        // compares; the few that changed are rewritten.
        let lines = w[..whole].chunks_exact(SIGN_LINE);
        for (line, (w, signs)) in lines.zip(signs.chunks_exact_mut(SIGN_LINE)).enumerate() {
            let now: [i8; SIGN_LINE] = std::array::from_fn(|j| sign_class(w[j]));
            let differ = now.iter().zip(&*signs).fold(0, |d, (&a, &b)| d | (a ^ b));
            if differ != 0 {
                let first = line * SIGN_LINE;
                for (j, (&now, was)) in now.iter().zip(signs.iter_mut()).enumerate() {
                    write(first + j, *was, now);
                    *was = now;
                }
            }
        }
        for i in whole..end.min(signs.len()) {
            let now = sign_class(w[i]);
            if now != signs[i] {
                write(i, signs[i], now);
                signs[i] = now;
            }
        }
    }
}

/// A chunk of [`Backend::redrawn_sign_feedback`] for a fresh
/// draw: each magnitude `v` of the [`Noise`] draw is written and, in the same loop,
/// `out = |v| · sign(w)`, the values of [`NoiseChunk`] and then [`SignFeedbackChunk`]
/// with scale 1. `first` is the chunk's first element in the draw; `w` starts there too
/// and may run past the chunk.
///
/// [`Backend::redrawn_sign_feedback`]: crate::backend::Backend::redrawn_sign_feedback
pub(super) struct RedrawnSignFeedbackChunk<'a> {
    pub(super) op: &'a Noise,
    pub(super) magnitudes: &'a mut [f32],
    pub(super) out: &'a mut [f32],
    pub(super) w: &'a [f32],
    pub(super) first: u32,
}

impl pulp::WithSimd for RedrawnSignFeedbackChunk<'_> {
    type Output = ();

    #[inline(always)]
    fn with_simd<S: pulp::Simd>(self, _simd: S) {
        let key = elementwise::host::pcg(self.op.seed);
        let each = self.magnitudes.iter_mut().zip(self.out).zip(self.w);
        // One loop per distribution, as in `noise_from`, so each vectorises.
        match self.op.distribution {
            Distribution::Normal { std } => {
                for (((m, b), &w), i) in each.zip(self.first..) {
                    *m = elementwise::host::normal_value(std, key, i);
                    *b = m.abs() * sign(w);
                }
            }
            Distribution::Uniform { lo, hi } => {
                for (((m, b), &w), i) in each.zip(self.first..) {
                    *m = elementwise::host::uniform_value(lo, hi, key, i);
                    *b = m.abs() * sign(w);
                }
            }
        }
    }
}

/// Rows summed together in [`row_sums`].
const SUMMED_ROWS: usize = 8;

/// `out[i] = alpha Σ_j m[i, j] + beta out[i]` for a row-major matrix with `cols` columns
/// (rows beyond `out` or `m` are left alone). Each row is summed front to back from
/// `-0.0`, as `Iterator::sum` does, but eight rows at a time: their eight chains of
/// dependent additions then overlap instead of each waiting on the latency of the one
/// before, and the sums are the same bits.
pub(super) fn row_sums(out: &mut [f32], m: &[f32], cols: usize, alpha: f32, beta: f32) {
    wide(RowSums {
        out,
        m,
        cols: cols.max(1),
        alpha,
        beta,
    })
}

/// [`row_sums`]'s operands, compiled for AVX2 by `wide`.
struct RowSums<'a> {
    out: &'a mut [f32],
    m: &'a [f32],
    cols: usize,
    alpha: f32,
    beta: f32,
}

impl pulp::WithSimd for RowSums<'_> {
    type Output = ();

    #[inline(always)]
    fn with_simd<S: pulp::Simd>(self, _simd: S) {
        let RowSums {
            out,
            m,
            cols,
            alpha,
            beta,
        } = self;
        let rows = out.len().min(m.len() / cols);
        let (out, m) = (&mut out[..rows], &m[..rows * cols]);
        let finish = |o: &mut f32, sum: f32| {
            let sum = alpha * sum;
            // beta == 0 overwrites without reading, like the GEMM.
            *o = if beta == 0.0 { sum } else { sum + beta * *o };
        };
        let mut outs = out.chunks_exact_mut(SUMMED_ROWS);
        let mut blocks = m.chunks_exact(SUMMED_ROWS * cols);
        for (outs, block) in (&mut outs).zip(&mut blocks) {
            let rows: [&[f32]; SUMMED_ROWS] =
                std::array::from_fn(|k| &block[k * cols..(k + 1) * cols]);
            let mut sums = [-0.0f32; SUMMED_ROWS];
            for j in 0..cols {
                for (sum, row) in sums.iter_mut().zip(&rows) {
                    *sum += row[j];
                }
            }
            outs.iter_mut().zip(sums).for_each(|(o, s)| finish(o, s));
        }
        let rest = blocks.remainder().chunks_exact(cols);
        for (o, row) in outs.into_remainder().iter_mut().zip(rest) {
            finish(o, row.iter().sum());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::optim::one_of_each_update;

    /// Every optimizer's update through `wide` and through `widest` gives the bits of
    /// the per-element statement, with the ragged tail of a vector.
    #[test]
    fn vectorised_updates_give_the_bits_of_the_per_element_update() {
        let n = 203;
        let g: Vec<f32> = (0..n).map(|i| (i as f32 * 0.37).sin() * 3.0).collect();
        let start: Vec<f32> = (0..n).map(|i| i as f32 * 0.01 - 1.0).collect();
        for opt in one_of_each_update() {
            let step = opt.step_params(3);
            let state = || (start.clone(), vec![0.1f32; n], vec![0.2f32; n]);
            let (mut want_w, mut want_s0, mut want_s1) = state();
            for i in 0..n {
                step.apply(&mut want_w[i], g[i], &mut want_s0[i], &mut want_s1[i]);
            }
            let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
            let want = [bits(&want_w), bits(&want_s0), bits(&want_s1)];
            for widest_lanes in [false, true] {
                let (mut params, mut s0, mut s1) = state();
                let chunk = OptimizerChunk {
                    step,
                    params: &mut params,
                    grads: &g,
                    s0: &mut s0,
                    s1: &mut s1,
                };
                let finite = if widest_lanes {
                    widest(chunk)
                } else {
                    wide(chunk)
                };
                let got = [bits(&params), bits(&s0), bits(&s1)];
                assert!(finite && got == want, "{opt}, widest {widest_lanes}");
            }
        }
    }

    /// Every special value inside the tile is caught, and none outside it counts: the
    /// largest finite magnitudes, subnormals and signed zeros are finite.
    #[test]
    fn tile_finite_looks_at_every_value_of_the_tile_and_no_other() {
        let (rows, cols, columns) = (5, 37, 3..29);
        let finite = [f32::MAX, f32::MIN, f32::MIN_POSITIVE / 2.0, -0.0, 0.0, 1.0];
        let mut m: Vec<f32> = (0..rows * cols).map(|i| finite[i % finite.len()]).collect();
        assert!(tile_finite(&m, cols, columns.clone()));
        // Corners and middle of the tile, then the columns just beside it.
        let inside = [(0, 3), (4, 28), (2, 17)].map(|cell| (cell, true));
        let outside = [(0, 2), (3, 29), (4, 36)].map(|cell| (cell, false));
        for bad in [f32::NAN, -f32::NAN, f32::INFINITY, f32::NEG_INFINITY] {
            for ((r, c), in_tile) in inside.into_iter().chain(outside) {
                let keep = m[r * cols + c];
                m[r * cols + c] = bad;
                assert_eq!(
                    tile_finite(&m, cols, columns.clone()),
                    !in_tile,
                    "{bad} at ({r}, {c}), inside the tile: {in_tile}"
                );
                m[r * cols + c] = keep;
            }
        }
    }

    /// Eight rows at a time against `Iterator::sum` row by row, bit for bit: row counts
    /// around the block size, signed zeros, and both `beta` forms.
    #[test]
    fn row_sums_give_the_bits_of_summing_each_row_in_order() {
        let value = |i: usize| ((i * 7919) % 1013) as f32 / 97.0 - 5.0;
        for (rows, cols) in [(1, 1), (7, 3), (8, 128), (19, 33), (64, 1)] {
            let mut m: Vec<f32> = (0..rows * cols).map(value).collect();
            // A row of negative zeros sums to -0.0, as `Iterator::sum` gives.
            m[..cols].iter_mut().for_each(|v| *v = -0.0);
            for (alpha, beta) in [(0.5, 0.0), (1.0, 0.75)] {
                let start: Vec<f32> = (0..rows).map(|i| value(i + 3)).collect();
                let mut got = start.clone();
                row_sums(&mut got, &m, cols, alpha, beta);
                let want: Vec<f32> = start
                    .iter()
                    .zip(m.chunks_exact(cols))
                    .map(|(&o, row)| {
                        let sum = alpha * row.iter().sum::<f32>();
                        if beta == 0.0 {
                            sum
                        } else {
                            sum + beta * o
                        }
                    })
                    .collect();
                let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
                assert_eq!(bits(&got), bits(&want), "{rows}x{cols}, beta {beta}");
            }
        }
    }

    /// A new record (signs unknown) has every line written, lines whose weights all
    /// share one sign class included, at every SIMD level; a record that holds stays
    /// unwritten, and one flipped sign in such a line has its whole line written.
    #[test]
    fn unknown_signs_write_lines_of_a_single_sign_at_every_level() {
        use pulp::WithSimd;
        let lines = [-0.5f32, 0.25, 0.0, -0.0, f32::NAN, 1e-38];
        let w: Vec<f32> = lines.iter().flat_map(|&v| [v; SIGN_LINE]).collect();
        let scale = 2.0;
        for simd in 0..3 {
            let run = |out: &mut [f32], w: &[f32], signs: &mut [i8]| {
                let chunk = SignFeedbackChunk {
                    out,
                    w,
                    magnitude: None,
                    signs,
                    scale,
                    changed: None,
                };
                match simd {
                    0 => widest(chunk),
                    1 => wide(chunk),
                    _ => chunk.with_simd(pulp::Scalar::new()),
                }
            };
            let (mut out, mut signs) = (vec![7.0; w.len()], vec![i8::MIN; w.len()]);
            run(&mut out, &w, &mut signs);
            let want: Vec<f32> = w.iter().map(|&v| scale * sign(v)).collect();
            assert_eq!(
                out, want,
                "level {simd}: a line of one sign was left unwritten"
            );
            out.fill(7.0);
            run(&mut out, &w, &mut signs);
            assert!(
                out.iter().all(|&v| v == 7.0),
                "level {simd}: held signs rewritten"
            );
            let mut flipped = w.clone();
            flipped[SIGN_LINE + 3] = -1.0;
            run(&mut out, &flipped, &mut signs);
            for (i, &v) in out.iter().enumerate() {
                let expected = if i / SIGN_LINE == 1 {
                    scale * sign(flipped[i])
                } else {
                    7.0
                };
                assert_eq!(v, expected, "level {simd}, value {i}");
            }
        }
    }

    /// Sign feedback kept current, through AVX-512 (where the CPU has it), AVX2 and the
    /// scalar baseline, bit for bit the plain formula (zeros and NaN included): written
    /// whole from unknown signs, then after some weights change sign rewritten in those
    /// lines only, in pieces that do not start on a line.
    #[test]
    fn sign_feedback_rewrites_the_lines_whose_signs_changed_with_the_plain_values() {
        use pulp::WithSimd;
        let w: Vec<f32> = (0..1037)
            .map(|i| ((i * 7919) % 2003) as f32 / 1000.0 - 1.0)
            .chain([0.0, -0.0, f32::NAN, f32::INFINITY, -1e-38])
            .collect();
        let m: Vec<f32> = w.iter().map(|v| 0.5 - v).collect();
        let scale = 0.3;
        let plain = |w: &[f32], magnitude: Option<&[f32]>| -> Vec<u32> {
            let magnitude = |i: usize| magnitude.map_or(1.0, |m: &[f32]| m[i].abs());
            let values = w
                .iter()
                .enumerate()
                .map(|(i, &w)| scale * magnitude(i) * sign(w));
            values.map(f32::to_bits).collect()
        };
        // Some weights change sign (to the other sign, to zero, to NaN, from zero).
        let changed: Vec<f32> = w
            .iter()
            .enumerate()
            .map(|(i, &v)| match i {
                100 | 101 | 515 => -v,
                300 => 0.0,
                301 => -0.0,
                700 => f32::NAN,
                1037 => 2.0,
                _ => v,
            })
            .collect();
        let sentinel = f32::from_bits(0x7fc0_1234);
        // Pieces as the backend might cut them: one, or at element 7 and 530.
        let cuts: [&[usize]; 2] = [&[], &[7, 530]];
        for (magnitude, cuts, simd) in [None, Some(&m[..])]
            .into_iter()
            .flat_map(|m| cuts.map(|c| (m, c)))
            .flat_map(|(m, c)| [(m, c, 0), (m, c, 1), (m, c, 2)])
        {
            // Runs the chunks piece by piece and returns the values they changed.
            let run = |out: &mut [f32], w: &[f32], signs: &mut [i8]| {
                let mut bounds = vec![0];
                bounds.extend(cuts);
                bounds.push(w.len());
                let mut changed = Vec::new();
                for piece in bounds.windows(2) {
                    let r = piece[0]..piece[1];
                    let mut patch = Patch::with_cap(usize::MAX);
                    let chunk = SignFeedbackChunk {
                        out: &mut out[r.clone()],
                        w: &w[r.clone()],
                        magnitude: magnitude.map(|m| &m[r.clone()]),
                        signs: &mut signs[r.clone()],
                        scale,
                        changed: Some((&mut patch, r.start)),
                    };
                    match simd {
                        0 => widest(chunk),
                        1 => wide(chunk),
                        _ => chunk.with_simd(pulp::Scalar::new()),
                    }
                    changed.extend(patch.values().iter().map(|&(i, v)| (i, v.to_bits())));
                }
                changed
            };
            let (mut out, mut signs) = (vec![sentinel; w.len()], vec![i8::MIN; w.len()]);
            let written = run(&mut out, &w, &mut signs);
            let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
            assert_eq!(bits(&out), plain(&w, magnitude));
            // Every value was unknown, so every value changed.
            assert_eq!(
                written,
                bits(&out).into_iter().enumerate().collect::<Vec<_>>()
            );
            assert!(signs.iter().zip(&w).all(|(&s, &w)| s == sign_class(w)));
            assert_eq!(out[w.len() - 5], 0.0, "sign(0) is 0");
            assert_eq!(signs[w.len() - 3], 0, "sign(NaN) is 0");

            // Lines whose signs all hold are not written: marked, they keep the mark.
            let touched = |i: usize| {
                let line = |i: usize| {
                    let start = cuts.iter().copied().filter(|&c| c <= i).max().unwrap_or(0);
                    (start, (i - start) / SIGN_LINE)
                };
                (0..w.len())
                    .any(|j| sign_class(changed[j]) != sign_class(w[j]) && line(j) == line(i))
            };
            for (i, b) in out.iter_mut().enumerate() {
                if !touched(i) {
                    *b = sentinel;
                }
            }
            let patched = run(&mut out, &changed, &mut signs);
            let want = plain(&changed, magnitude);
            // The patch holds exactly the values whose sign changed, by index.
            let flipped = (0..w.len()).filter(|&i| sign_class(changed[i]) != sign_class(w[i]));
            assert_eq!(patched, flipped.map(|i| (i, want[i])).collect::<Vec<_>>());
            for (i, b) in out.iter().enumerate() {
                let expected = if touched(i) {
                    want[i]
                } else {
                    sentinel.to_bits()
                };
                assert_eq!(b.to_bits(), expected, "at {i}, width {simd}, cuts {cuts:?}");
            }
            assert!(signs
                .iter()
                .zip(&changed)
                .all(|(&s, &w)| s == sign_class(w)));
            let rewritten = (0..w.len()).filter(|&i| touched(i)).count();
            assert!((SIGN_LINE..w.len() / 2).contains(&rewritten), "{rewritten}");
        }
    }
}
