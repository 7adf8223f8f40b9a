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
pub fn host(op: &ColumnOp, x: &[f32], out: &mut [f32]) {
    match op.kind {
        ColumnKind::MeanSquares { accumulate } => {
            let (rows, cols) = (op.x.rows, op.x.cols);
            for (j, o) in out.iter_mut().enumerate().take(cols) {
                let sum: f32 = (0..rows).map(|i| x[i * cols + j] * x[i * cols + j]).sum();
                let mean = sum / rows.max(1) as f32;
                *o = if accumulate { *o + mean } else { mean };
            }
        }
        ColumnKind::Normalize { length, eps } => {
            let (rows, cols) = (op.x.rows, op.x.cols);
            for j in 0..cols {
                let sum: f32 = (0..rows).map(|i| x[i * cols + j] * x[i * cols + j]).sum();
                let inv = length / (sum.sqrt() + eps);
                for i in 0..rows {
                    out[i * cols + j] = x[i * cols + j] * inv;
                }
            }
        }
        ColumnKind::Scale => {
            let cols = op.out.cols.max(1);
            for (k, o) in out.iter_mut().enumerate() {
                *o *= x[k % cols];
            }
        }
        ColumnKind::ArgmaxOneHot => {
            let (rows, cols) = (op.x.rows, op.x.cols);
            for j in 0..cols {
                let best = (1..rows).fold(0, |best, i| {
                    if x[i * cols + j] > x[best * cols + j] {
                        i
                    } else {
                        best
                    }
                });
                for i in 0..rows {
                    out[i * cols + j] = f32::from(u8::from(i == best));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::BufId;

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
