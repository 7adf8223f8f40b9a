//! Per-sample (per-column) operations on feature-major batches: each column of a
//! `features x batch` region is one sample. Forward-forward learning needs them: the
//! goodness of a layer is each sample's mean squared activity, the input of the next
//! layer is each sample's activity scaled to unit length, and the local loss's
//! gradient scales each sample's activity by a per-sample factor.

use super::{check_same_shape, Mat};
use crate::error::{Error, Result};

/// What a [`ColumnOp`] computes.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum ColumnKind {
    /// `out[0, j] (+)= Σ_i x[i, j]² / rows` (accumulating when `accumulate`).
    MeanSquares {
        /// Whether to add to `out` rather than overwrite it.
        accumulate: bool,
    },
    /// `out[:, j] = length · x[:, j] / (||x[:, j]|| + eps)`, `out` shaped like `x`.
    Normalize {
        /// The length each column gets.
        length: f32,
        /// Keeps an all-zero column finite.
        eps: f32,
    },
    /// `out[i, j] *= x[0, j]`: `out` scaled column by column by the `1 x cols` `x`.
    Scale,
    /// `out[:, j]` = the one-hot of the largest entry of `x[:, j]` (the first of equal
    /// ones), `out` shaped like `x`.
    ArgmaxOneHot,
}

/// One per-column operation: reads `x`, writes `out`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ColumnOp {
    /// What it computes.
    pub kind: ColumnKind,
    /// Read.
    pub x: Mat,
    /// Written (and read when accumulating or scaling).
    pub out: Mat,
}

impl ColumnOp {
    /// `out (+)= mean squares of each column of x` (`out` is `1 x cols`).
    pub fn mean_squares(out: Mat, x: Mat, accumulate: bool) -> ColumnOp {
        ColumnOp {
            kind: ColumnKind::MeanSquares { accumulate },
            x,
            out,
        }
    }

    /// `out = x` with each column scaled to `length` (`eps` added to the norm).
    pub fn normalize(out: Mat, x: Mat, length: f32, eps: f32) -> ColumnOp {
        ColumnOp {
            kind: ColumnKind::Normalize { length, eps },
            x,
            out,
        }
    }

    /// `out[:, j] *= by[0, j]`.
    pub fn scale(out: Mat, by: Mat) -> ColumnOp {
        ColumnOp {
            kind: ColumnKind::Scale,
            x: by,
            out,
        }
    }

    /// `out[:, j]` = one-hot of `argmax_i x[i, j]`.
    pub fn argmax_one_hot(out: Mat, x: Mat) -> ColumnOp {
        ColumnOp {
            kind: ColumnKind::ArgmaxOneHot,
            x,
            out,
        }
    }

    /// Checks the shapes and that `x` and `out` are apart.
    pub fn check(&self) -> Result<()> {
        let row = |m: Mat, of: Mat, what: &str| {
            check_same_shape(what, Mat::new(m.buf, m.offset, 1, of.cols), m)
        };
        match self.kind {
            ColumnKind::MeanSquares { .. } => row(self.out, self.x, "mean squares output")?,
            ColumnKind::Normalize { length, eps } => {
                check_same_shape("normalize", self.out, self.x)?;
                if !(eps.is_finite() && eps > 0.0 && length.is_finite()) {
                    return Err(Error::config(format!(
                        "column normalization needs a finite eps > 0 and a finite length, got {eps} and {length}"
                    )));
                }
            }
            ColumnKind::Scale => row(self.x, self.out, "column scale factors")?,
            ColumnKind::ArgmaxOneHot => check_same_shape("argmax one-hot", self.out, self.x)?,
        }
        if self.x.overlaps(&self.out) {
            return Err(Error::Backend(format!(
                "column op: x {:?} overlaps out {:?} in buffer {}",
                self.x.range(),
                self.out.range(),
                self.out.buf.0
            )));
        }
        Ok(())
    }

    /// Whether it reads `out` before writing it.
    pub fn reads_out(&self) -> bool {
        matches!(
            self.kind,
            ColumnKind::MeanSquares { accumulate: true } | ColumnKind::Scale
        )
    }
}

/// The reference implementation on host slices (`x` and `out` as the op's regions).
///
/// Every loop walks the rows in order with the columns innermost, so it reads memory
/// contiguously and vectorises across samples, while each column still sums its rows
/// one after another from the first: the values are those of a column-by-column loop.
#[inline(always)]
pub fn host(op: &ColumnOp, x: &[f32], out: &mut [f32]) {
    // `x` and `out` have the same columns in every kind (`ColumnOp::check`).
    let cols = op.x.cols;
    if cols == 0 {
        return;
    }
    match op.kind {
        ColumnKind::MeanSquares { accumulate } => {
            let sums = column_squares(x, cols);
            let rows = op.x.rows.max(1) as f32;
            for (o, sum) in out.iter_mut().zip(sums) {
                let mean = sum / rows;
                *o = if accumulate { *o + mean } else { mean };
            }
        }
        ColumnKind::Normalize { length, eps } => {
            let mut scales = column_squares(x, cols);
            for s in &mut scales {
                *s = length / (s.sqrt() + eps);
            }
            for (out_row, x_row) in out.chunks_exact_mut(cols).zip(x.chunks_exact(cols)) {
                for ((o, &v), &s) in out_row.iter_mut().zip(x_row).zip(&scales) {
                    *o = v * s;
                }
            }
        }
        ColumnKind::Scale => {
            for out_row in out.chunks_exact_mut(cols) {
                for (o, &s) in out_row.iter_mut().zip(x) {
                    *o *= s;
                }
            }
        }
        ColumnKind::ArgmaxOneHot if x.is_empty() => {}
        ColumnKind::ArgmaxOneHot => {
            let mut best = vec![0usize; cols];
            let mut top = x[..cols].to_vec();
            for (i, x_row) in x.chunks_exact(cols).enumerate().skip(1) {
                for ((b, t), &v) in best.iter_mut().zip(&mut top).zip(x_row) {
                    // Strictly greater: the first of equal maxima stays.
                    if v > *t {
                        (*b, *t) = (i, v);
                    }
                }
            }
            for (i, out_row) in out.chunks_exact_mut(cols).enumerate() {
                for (o, &b) in out_row.iter_mut().zip(&best) {
                    *o = f32::from(u8::from(i == b));
                }
            }
        }
    }
}

/// Each column's sum of squares, its rows added in order.
#[inline(always)]
fn column_squares(x: &[f32], cols: usize) -> Vec<f32> {
    let mut sums = vec![0.0f32; cols];
    for row in x.chunks_exact(cols) {
        for (s, &v) in sums.iter_mut().zip(row) {
            *s += v * v;
        }
    }
    sums
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::BufId;

    /// Row-wise loops give the bits of plain column-by-column ones (each column summed
    /// from its first row), on a batch with ties, zeros and a NaN.
    #[test]
    fn row_wise_loops_give_the_column_by_column_bits() {
        let (rows, cols) = (37, 53);
        let mut xv: Vec<f32> = (0..rows * cols)
            .map(|k| ((k * 7919) % 2003) as f32 / 97.0 - 10.0)
            .collect();
        xv[5 * cols + 3] = f32::NAN;
        xv[2 * cols + 8] = xv[9 * cols + 8].max(40.0);
        xv[9 * cols + 8] = xv[2 * cols + 8];
        for i in 0..rows {
            xv[i * cols + 11] = 0.0;
        }
        let column = |j: usize| (0..rows).map(move |i| i * cols + j);
        let squares = |j: usize| column(j).fold(0.0f32, |s, k| s + xv[k] * xv[k]);
        let x = Mat::new(BufId(0), 0, rows, cols);
        let (row, full) = (
            Mat::new(BufId(1), 0, 1, cols),
            Mat::new(BufId(1), 0, rows, cols),
        );
        let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();

        let mut means = vec![0.5; cols];
        host(&ColumnOp::mean_squares(row, x, true), &xv, &mut means);
        let want: Vec<f32> = (0..cols).map(|j| 0.5 + squares(j) / rows as f32).collect();
        assert_eq!(bits(&means), bits(&want), "mean squares");

        let mut unit = vec![0.0; rows * cols];
        host(&ColumnOp::normalize(full, x, 2.0, 1e-6), &xv, &mut unit);
        let mut want = vec![0.0; rows * cols];
        for j in 0..cols {
            let scale = 2.0 / (squares(j).sqrt() + 1e-6);
            column(j).for_each(|k| want[k] = xv[k] * scale);
        }
        assert_eq!(bits(&unit), bits(&want), "normalize");

        let by: Vec<f32> = (0..cols).map(|j| j as f32 * 0.25 - 3.0).collect();
        let mut scaled = xv.clone();
        host(&ColumnOp::scale(x, row), &by, &mut scaled);
        let want: Vec<f32> = (0..rows * cols).map(|k| xv[k] * by[k % cols]).collect();
        assert_eq!(bits(&scaled), bits(&want), "scale");

        let mut hot = vec![9.0; rows * cols];
        host(&ColumnOp::argmax_one_hot(full, x), &xv, &mut hot);
        let mut want = vec![0.0; rows * cols];
        for j in 0..cols {
            let best = (1..rows).fold(0, |b, i| {
                if xv[i * cols + j] > xv[b * cols + j] {
                    i
                } else {
                    b
                }
            });
            want[best * cols + j] = 1.0;
        }
        assert_eq!(hot, want, "argmax one-hot");
    }

    #[test]
    fn columns_are_samples() {
        let x = Mat::new(BufId(0), 0, 2, 3);
        let xv = [3.0, 0.0, 1.0, 4.0, 0.0, -1.0];
        let mut out = [1.0; 3];
        host(
            &ColumnOp::mean_squares(Mat::new(BufId(1), 0, 1, 3), x, true),
            &xv,
            &mut out,
        );
        assert_eq!(out, [13.5, 1.0, 2.0]);
        let mut unit = [0.0; 6];
        host(
            &ColumnOp::normalize(Mat::new(BufId(1), 0, 2, 3), x, 1.0, 1e-12),
            &xv,
            &mut unit,
        );
        assert!((unit[0] - 0.6).abs() < 1e-6 && (unit[3] - 0.8).abs() < 1e-6);
        assert_eq!([unit[1], unit[4]], [0.0, 0.0], "a zero column stays zero");
        let mut scaled = xv;
        host(
            &ColumnOp::scale(x, Mat::new(BufId(1), 0, 1, 3)),
            &[2.0, 5.0, -1.0],
            &mut scaled,
        );
        assert_eq!(scaled, [6.0, 0.0, -1.0, 8.0, 0.0, 1.0]);
        let mut hot = [9.0; 6];
        let ties = [1.0, 5.0, 2.0, 1.0, 5.0, 7.0];
        host(
            &ColumnOp::argmax_one_hot(Mat::new(BufId(1), 0, 2, 3), x),
            &ties,
            &mut hot,
        );
        assert_eq!(
            hot,
            [1.0, 1.0, 0.0, 0.0, 0.0, 1.0],
            "the first of equal maxima"
        );
        assert!(ColumnOp::scale(x, Mat::new(BufId(1), 0, 1, 2))
            .check()
            .is_err());
        assert!(
            ColumnOp::normalize(x, Mat::new(BufId(0), 1, 2, 3), 1.0, 1e-6)
                .check()
                .is_err()
        );
    }
}
