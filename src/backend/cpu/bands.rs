//! Products spread over the threads as row bands of `C`, each band run by faer on one
//! thread.
//!
//! faer parallelises a product itself, but for the products of a training step below
//! a few hundred million multiply-adds its own split ran slower than handing each
//! thread a band of `C` (and the matching rows of `op(A)`) to multiply alone. Measured
//! on the 2-core Xeon VM this crate's CPU figures come from, batch 128, 150-300 rounds
//! with the variants taking turns (median ms, faer's split against bands):
//!
//! | product | `W x` | `Wᵀ δ` | `δ xᵀ` |
//! |---|---|---|---|
//! | 256 x 256 | 0.134 / 0.100 | 0.134 / 0.110 | 0.147 / 0.129 |
//! | 512 x 512 | 0.443 / 0.396 | 0.568 / 0.526 | 0.426 / 0.388 |
//! | 1024 x 1024 | 1.59 / 1.47 | 2.30 / 2.26 (column-major) | 1.42 / 1.32 |
//! | 2048 x 2048 | 6.20 / 6.39 | 8.08 / 7.33 (column-major) | 4.75 / 4.67 |
//! | 4096 x 4096 | 23.8 / 25.2 | 33.5-36.1 / 30.2-32.0 (column-major) | |
//!
//! So row-major products under [`BANDED_MAX_MACS`] go in bands and larger ones to faer,
//! and the column-major `Aᵀ B` products (written column-major and moved into place band
//! by band, faer packing the large `A` in every band alike) go in bands at every size,
//! each thread taking several when a band would outgrow the cache
//! ([`COLUMN_MAJOR_BAND_ROWS`]). A band does not split the depth of the sum, so a banded
//! product gives the bits of the single-threaded one whatever the thread count.

use faer::linalg::matmul::matmul;
use faer::{Accum, MatMut, MatRef, Par};
use rayon::prelude::*;

use super::epilogue::Then;
use super::transpose::rows_into_columns;

/// Products with fewer multiply-adds than this run in bands (see the module docs):
/// 1024 x 1024 by 128 is half of it, 2048 x 2048 by 128 twice.
const BANDED_MAX_MACS: usize = 1 << 28;
/// The fewest rows of `C` a band gets: thinner ones leave faer's kernels idle.
const MIN_BAND_ROWS: usize = 32;
/// The most rows of `C` a band of a column-major product gets. faer packs a band's
/// rows of the large transposed `A` 512 deep at a time: 256 rows of that (512 KB) stay
/// in a 2 MB L2 beside the band's `B` and `C`, 512 rows did not. At 1024 x 1024 by 128
/// four bands on two threads ran 1.13-1.17x the untransposed product against 1.22-1.29x
/// for two (scratch runs, 50-80 rounds alternating), and the step's `Wᵀ δ` 6-13% faster.
const COLUMN_MAJOR_BAND_ROWS: usize = 256;

/// `C = alpha op(A) op(B)` for a tall transposed product (BP's `Wᵀ δ`), which faer runs
/// faster writing `C` column-major: each band of `C`'s rows is written column-major into
/// its part of `scratch` and then, by the same thread while it is in that core's cache,
/// moved into its rows of the row-major `c` (`cols` wide) and given `then`. That made the
/// step's `Wᵀ δ` at 784-1024x3-10 1.6-2.4% faster than one transposition and one
/// epilogue pass over all of `C` after the product (steps alternating, 200 of them).
/// Bands of at most [`COLUMN_MAJOR_BAND_ROWS`], a whole number per thread; each thread
/// leaves with a clean AVX upper state.
pub(super) fn matmul_column_major(
    c: &mut [f32],
    scratch: &mut [f32],
    (a, b): (MatRef<'_, f32>, MatRef<'_, f32>),
    alpha: f32,
    par: Par,
    then: Option<Then>,
) {
    let (rows, depth, cols) = (a.nrows(), a.ncols(), b.ncols());
    let mut bands = bands(rows, depth, cols, par, usize::MAX).max(1);
    if bands >= 2 {
        bands *= rows.div_ceil(bands * COLUMN_MAJOR_BAND_ROWS);
    }
    let mut jobs = Vec::with_capacity(bands);
    let mut rest = MatMut::from_column_major_slice_mut(&mut scratch[..rows * cols], rows, cols);
    let mut rest_c = &mut c[..rows * cols];
    for (first, count) in spans(rows, bands) {
        let (band, below) = rest.split_at_row_mut(count);
        let (out, below_c) = rest_c.split_at_mut(count * cols);
        jobs.push((first, band, out));
        (rest, rest_c) = (below, below_c);
    }
    let run = |(first, mut band, out): (usize, MatMut<'_, f32>, &mut [f32]), par: Par| {
        let a = a.subrows(first, band.nrows());
        matmul(band.as_mut(), Accum::Replace, a, b, alpha, par);
        super::super::simd_state::clear_upper();
        let band = band.as_ref();
        let columns: Vec<&[f32]> = (0..cols)
            .map(|j| {
                let column = band.col(j).try_as_col_major();
                column.expect("a band of a column-major matrix").as_slice()
            })
            .collect();
        rows_into_columns(out, cols, &columns, band.nrows());
        if let Some(then) = then {
            then.rows(first, cols, out);
        }
    };
    if bands < 2 {
        jobs.into_iter().for_each(|job| run(job, par));
    } else {
        jobs.into_par_iter().for_each(|job| run(job, Par::Seq));
    }
}

/// `C = alpha op(A) op(B)`, replacing or adding to `C` per `accum`, for a row-major `C`
/// given as its slice (`cols` wide), on `par`'s threads: in bands of `C`'s rows under
/// [`BANDED_MAX_MACS`], else by faer; `then` runs on each band right after it is
/// computed, by the same thread (without bands, on all of `C` after the product). Every
/// thread it used leaves with a clean AVX upper state.
pub(super) fn matmul_rows(
    c: &mut [f32],
    cols: usize,
    accum: Accum,
    (a, b): (MatRef<'_, f32>, MatRef<'_, f32>),
    alpha: f32,
    par: Par,
    then: Option<Then>,
) {
    let rows = a.nrows();
    let bands = bands(rows, a.ncols(), cols, par, BANDED_MAX_MACS);
    if bands < 2 {
        let c_view = MatMut::from_row_major_slice_mut(c, rows, cols);
        matmul(c_view, accum, a, b, alpha, par);
        super::super::simd_state::clear_upper();
        if let Some(then) = then {
            then.all(cols, c);
        }
        return;
    }
    let mut jobs = Vec::with_capacity(bands);
    let mut rest = c;
    for (first, count) in spans(rows, bands) {
        let (top, below) = rest.split_at_mut(count * cols);
        jobs.push((first, count, top));
        rest = below;
    }
    jobs.into_par_iter().for_each(|(first, count, band)| {
        let c_view = MatMut::from_row_major_slice_mut(band, count, cols);
        matmul(c_view, accum, a.subrows(first, count), b, alpha, Par::Seq);
        super::super::simd_state::clear_upper();
        if let Some(then) = then {
            then.rows(first, cols, band);
        }
    });
}

/// `(first row, rows)` of each of `bands` near-equal bands of `rows` rows, in order.
fn spans(rows: usize, bands: usize) -> impl Iterator<Item = (usize, usize)> {
    (0..bands).map(move |band| {
        let (first, end) = (band * rows / bands, (band + 1) * rows / bands);
        (first, end - first)
    })
}

/// How many bands a `rows x depth` by `depth x cols` product gets on `par`'s threads,
/// banded only under `max_macs` multiply-adds; below 2, faer runs it whole.
fn bands(rows: usize, depth: usize, cols: usize, par: Par, max_macs: usize) -> usize {
    let macs = rows.saturating_mul(depth).saturating_mul(cols);
    if macs >= max_macs {
        return 1;
    }
    par.degree().min(rows / MIN_BAND_ROWS)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every layout the backend multiplies in, with rows that do not split evenly:
    /// the banded product equals faer's single-threaded one bit for bit.
    #[test]
    fn bands_give_the_single_threaded_bits() {
        let value = |i: usize, salt: usize| ((i * 7919 + salt) % 1013) as f32 / 1013.0 - 0.5;
        for (rows, depth, cols) in [(257, 300, 129), (64, 7, 3), (1000, 64, 128)] {
            let a: Vec<f32> = (0..rows * depth).map(|i| value(i, 1)).collect();
            let b: Vec<f32> = (0..depth * cols).map(|i| value(i, 2)).collect();
            for (trans_a, trans_b) in [(false, false), (true, false), (false, true)] {
                let a_view = if trans_a {
                    MatRef::from_row_major_slice(&a, depth, rows).transpose()
                } else {
                    MatRef::from_row_major_slice(&a, rows, depth)
                };
                let b_view = if trans_b {
                    MatRef::from_row_major_slice(&b, cols, depth).transpose()
                } else {
                    MatRef::from_row_major_slice(&b, depth, cols)
                };
                for accum in [Accum::Replace, Accum::Add] {
                    let start: Vec<f32> = (0..rows * cols).map(|i| value(i, 3)).collect();
                    let (mut sliced, mut alone) = (start.clone(), start);
                    let (operands, par) = ((a_view, b_view), Par::rayon(3));
                    matmul_rows(&mut sliced, cols, accum, operands, 0.75, par, None);
                    let c = MatMut::from_row_major_slice_mut(&mut alone, rows, cols);
                    matmul(c, accum, a_view, b_view, 0.75, Par::Seq);
                    let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
                    assert!(
                        bits(&sliced) == bits(&alone),
                        "{rows}x{depth}x{cols}, trans {trans_a}/{trans_b}, {accum:?}"
                    );
                }
            }
        }
        // Column-major `C`, as the transposed products write it, moved into a row-major
        // `C` band by band: 700 rows are four bands on two threads, three on three.
        let (rows, depth, cols) = (700, 90, 40);
        let a: Vec<f32> = (0..rows * depth).map(|i| value(i, 4)).collect();
        let b: Vec<f32> = (0..depth * cols).map(|i| value(i, 5)).collect();
        let a_view = MatRef::from_row_major_slice(&a, depth, rows).transpose();
        let b_view = MatRef::from_row_major_slice(&b, depth, cols);
        let mut alone = vec![0.0; rows * cols];
        let c = MatMut::from_column_major_slice_mut(&mut alone, rows, cols);
        matmul(c, Accum::Replace, a_view, b_view, 1.0, Par::Seq);
        for threads in [1, 2, 3] {
            let (mut banded, mut scratch) = (vec![f32::NAN; rows * cols], Vec::new());
            scratch.resize(rows * cols + 5, f32::NAN);
            let (operands, par) = ((a_view, b_view), Par::rayon(threads));
            matmul_column_major(&mut banded, &mut scratch, operands, 1.0, par, None);
            for (i, v) in banded.iter().enumerate() {
                let want = alone[(i % cols) * rows + i / cols];
                assert_eq!(v.to_bits(), want.to_bits(), "{threads} threads, at {i}");
            }
        }
    }
}
