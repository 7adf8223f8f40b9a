//! Feature scaling fitted on one data set and applied to others.

use crate::data::dataset::Dataset;
use crate::error::{Error, Result};

/// How to rescale features.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Scaling {
    /// `x / divisor` for every feature (e.g. `Divide(255.0)` for 8-bit pixels).
    Divide(f32),
    /// Per feature `(x - min) / (max - min)`; constant features map to 0.
    MinMax,
    /// Per feature `(x - mean) / std`; a feature with zero spread uses std 1.
    Standardize,
}

/// Per-feature `(x - offset) / scale` statistics fitted on one data set (the
/// training set) and applied unchanged to others (the test set), so no test
/// information leaks into preprocessing.
#[derive(Debug, Clone, PartialEq)]
pub struct Standardizer {
    offset: Vec<f32>,
    scale: Vec<f32>,
}

impl Standardizer {
    /// Fits the statistics `scaling` needs on `data`.
    ///
    /// `Divide` by zero or by a non-finite value is an [`Error::InvalidConfig`].
    pub fn fit(data: &Dataset, scaling: Scaling) -> Result<Standardizer> {
        let dim = data.dim();
        let (offset, scale) = match scaling {
            Scaling::Divide(d) if d != 0.0 && d.is_finite() => (vec![0.0; dim], vec![d; dim]),
            Scaling::Divide(d) => {
                return Err(Error::config(format!(
                    "Scaling::Divide needs a finite non-zero divisor, got {d}"
                )))
            }
            Scaling::MinMax => min_max(data),
            Scaling::Standardize => mean_std(data),
        };
        Ok(Standardizer { offset, scale })
    }

    /// Rescales `data` in place. Its dimension must match the fitted one
    /// ([`Error::ShapeMismatch`]); if any result would not be finite,
    /// [`Error::NonFinite`] is returned and `data` is left unchanged.
    pub fn apply(&self, data: &mut Dataset) -> Result<()> {
        if data.dim() != self.dim() {
            return Err(Error::shape(
                "Standardizer::apply",
                format!("{} features", self.dim()),
                format!("{} features", data.dim()),
            ));
        }
        // Check first so a failure cannot leave the data half-scaled.
        self.check_finite(data.features())?;
        for row in data.features_mut().chunks_exact_mut(self.dim()) {
            for (x, (&o, &s)) in row.iter_mut().zip(self.offset.iter().zip(&self.scale)) {
                *x = transform(*x, o, s);
            }
        }
        Ok(())
    }

    /// Number of features the statistics were fitted on.
    pub fn dim(&self) -> usize {
        self.offset.len()
    }

    /// Per-feature value subtracted before scaling.
    pub fn offset(&self) -> &[f32] {
        &self.offset
    }

    /// Per-feature divisor applied after subtracting the offset.
    pub fn scale(&self) -> &[f32] {
        &self.scale
    }

    fn check_finite(&self, features: &[f32]) -> Result<()> {
        let dim = self.dim();
        for (index, &x) in features.iter().enumerate() {
            let f = index % dim;
            let y = transform(x, self.offset[f], self.scale[f]);
            if !y.is_finite() {
                return Err(Error::NonFinite {
                    context: "scaled features".into(),
                    index,
                    value: y,
                });
            }
        }
        Ok(())
    }
}

/// `(x - offset) / scale` in f64 so the difference cannot overflow f32.
fn transform(x: f32, offset: f32, scale: f32) -> f32 {
    ((f64::from(x) - f64::from(offset)) / f64::from(scale)) as f32
}

/// A scale that is safe to divide by: zero or sub-normal spreads become 1.
fn safe_scale(spread: f64) -> f32 {
    let s = spread as f32;
    if s.is_normal() {
        s
    } else {
        1.0
    }
}

fn min_max(data: &Dataset) -> (Vec<f32>, Vec<f32>) {
    let dim = data.dim();
    let mut lo = vec![f32::INFINITY; dim];
    let mut hi = vec![f32::NEG_INFINITY; dim];
    for row in data.features().chunks_exact(dim) {
        for ((l, h), &x) in lo.iter_mut().zip(hi.iter_mut()).zip(row) {
            *l = l.min(x);
            *h = h.max(x);
        }
    }
    let scale = lo
        .iter()
        .zip(&hi)
        .map(|(&l, &h)| safe_scale(f64::from(h) - f64::from(l)))
        .collect();
    (lo, scale)
}

fn mean_std(data: &Dataset) -> (Vec<f32>, Vec<f32>) {
    let dim = data.dim();
    let n = data.len() as f64;
    let mut sum = vec![0.0f64; dim];
    for row in data.features().chunks_exact(dim) {
        for (s, &x) in sum.iter_mut().zip(row) {
            *s += f64::from(x);
        }
    }
    let mean: Vec<f64> = sum.iter().map(|s| s / n).collect();
    // Two-pass variance: exact enough and immune to catastrophic cancellation.
    let mut sq = vec![0.0f64; dim];
    for row in data.features().chunks_exact(dim) {
        for ((q, &m), &x) in sq.iter_mut().zip(&mean).zip(row) {
            let d = f64::from(x) - m;
            *q += d * d;
        }
    }
    let offset = mean.iter().map(|&m| m as f32).collect();
    let scale = sq.iter().map(|&q| safe_scale((q / n).sqrt())).collect();
    (offset, scale)
}
