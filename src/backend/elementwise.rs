//! Elementwise operations learners build their own passes from: a scaled sum of two
//! regions ([`Axpby`]) and random values ([`Noise`]: Gaussian or uniform).
//!
//! The noise comes from a counter-based generator: element `i` of a draw with seed `s`
//! is a pure function of `(s, i)` (a PCG hash and the Box-Muller transform), so every
//! backend draws the same values without sharing a random stream, a GPU draws them in
//! parallel, and a run repeats from its seed. The host functions in [`host`] are the
//! reference every backend is tested against.

use super::Mat;
use crate::error::{Error, Result};

/// `y = alpha * x + beta * y` elementwise; `beta == 0` overwrites `y` without reading
/// it (so a stale NaN there does not survive).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Axpby {
    /// Written (and read when `beta != 0`).
    pub y: Mat,
    /// Read; the same shape as `y`, not overlapping it.
    pub x: Mat,
    /// Scale of `x`.
    pub alpha: f32,
    /// Scale of the old `y`.
    pub beta: f32,
}

impl Axpby {
    /// `y = alpha * x + beta * y`.
    pub fn new(y: Mat, alpha: f32, x: Mat, beta: f32) -> Axpby {
        Axpby { y, x, alpha, beta }
    }

    /// `y = x`.
    pub fn copy(y: Mat, x: Mat) -> Axpby {
        Axpby::new(y, 1.0, x, 0.0)
    }

    /// Checks the shapes agree and the regions are apart.
    pub fn check(&self) -> Result<()> {
        super::check_same_shape("axpby", self.y, self.x)?;
        if self.x.overlaps(&self.y) {
            return Err(Error::Backend(format!(
                "axpby: x {:?} overlaps y {:?} in buffer {}",
                self.x.range(),
                self.y.range(),
                self.y.buf.0
            )));
        }
        Ok(())
    }
}

/// What a [`Noise`] op draws.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Distribution {
    /// `std * n` with `n` standard normal (Box-Muller on two hashed uniforms).
    Normal {
        /// Standard deviation.
        std: f32,
    },
    /// `lo + (hi - lo) * u` with `u` uniform on `(0, 1]` (24 hashed bits).
    Uniform {
        /// Lower end.
        lo: f32,
        /// Upper end.
        hi: f32,
    },
}

/// Random values drawn from `seed` into `out` (or added to it when `accumulate`), one
/// per element (see the [module docs](self)).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Noise {
    /// Written (and read when `accumulate`).
    pub out: Mat,
    /// What each element draws.
    pub distribution: Distribution,
    /// The draw: the same seed gives the same values.
    pub seed: u32,
    /// Whether to add the values to `out` rather than overwrite it.
    pub accumulate: bool,
}

impl Noise {
    /// `out = std * N(0, 1)`, seeded.
    pub fn normal(out: Mat, std: f32, seed: u32) -> Noise {
        Noise {
            out,
            distribution: Distribution::Normal { std },
            seed,
            accumulate: false,
        }
    }

    /// `out = U(lo, hi]`, seeded.
    pub fn uniform(out: Mat, lo: f32, hi: f32, seed: u32) -> Noise {
        Noise {
            out,
            distribution: Distribution::Uniform { lo, hi },
            seed,
            accumulate: false,
        }
    }

    /// Checks the region and the distribution's parameters.
    pub fn check(&self) -> Result<()> {
        match self.distribution {
            Distribution::Normal { std } if !(std.is_finite() && std >= 0.0) => {
                return Err(Error::config(format!(
                    "noise standard deviation must be finite and >= 0, got {std}"
                )));
            }
            Distribution::Uniform { lo, hi }
                if !(lo.is_finite() && hi.is_finite() && lo <= hi && (hi - lo).is_finite()) =>
            {
                return Err(Error::config(format!(
                    "uniform noise needs finite bounds lo <= hi, got [{lo}, {hi}]"
                )));
            }
            _ => {}
        }
        if u32::try_from(self.out.len()).is_err() {
            return Err(Error::config(format!(
                "noise: {} values is more than one draw can index (2^32)",
                self.out.len()
            )));
        }
        Ok(())
    }
}

/// The reference implementations, shared by the CPU backend and the default
/// (read-back) methods of [`Backend`](super::Backend).
pub mod host {
    use super::super::polynomial::{cos_turns, ln};
    use super::{Axpby, Distribution, Noise};

    /// [`Axpby`] on host slices.
    #[inline(always)]
    pub fn axpby(op: &Axpby, y: &mut [f32], x: &[f32]) {
        let (alpha, beta) = (op.alpha, op.beta);
        // Plain `for` loops, as in `noise_from`, so a `wide` caller vectorises them.
        if beta == 0.0 {
            for (y, &x) in y.iter_mut().zip(x) {
                *y = alpha * x;
            }
        } else {
            for (y, &x) in y.iter_mut().zip(x) {
                *y = alpha * x + beta * *y;
            }
        }
    }

    /// [`Noise`] on a host slice.
    pub fn noise(op: &Noise, out: &mut [f32]) {
        noise_from(op, out, 0);
    }

    /// Elements `first..first + out.len()` of the [`Noise`] draw into `out`: a part of
    /// the region, so that parts can be drawn in parallel (each element depends only on
    /// the seed and its index).
    #[inline(always)]
    pub fn noise_from(op: &Noise, out: &mut [f32], first: u32) {
        let key = pcg(op.seed);
        // One plain `for` loop per case: iterator adaptors' `fold` can stay out of line,
        // compiled for the baseline target, where a `wide` caller needs the loop inlined
        // to vectorise it.
        match (op.distribution, op.accumulate) {
            (Distribution::Normal { std }, false) => {
                for (v, i) in out.iter_mut().zip(first..) {
                    *v = normal_value(std, key, i);
                }
            }
            (Distribution::Normal { std }, true) => {
                for (v, i) in out.iter_mut().zip(first..) {
                    *v += normal_value(std, key, i);
                }
            }
            (Distribution::Uniform { lo, hi }, false) => {
                for (v, i) in out.iter_mut().zip(first..) {
                    *v = uniform_value(lo, hi, key, i);
                }
            }
            (Distribution::Uniform { lo, hi }, true) => {
                for (v, i) in out.iter_mut().zip(first..) {
                    *v += uniform_value(lo, hi, key, i);
                }
            }
        }
    }

    /// Element `i` of a normal draw with standard deviation `std` under `key` (the
    /// [`pcg`] hash of the seed).
    #[inline(always)]
    pub fn normal_value(std: f32, key: u32, i: u32) -> f32 {
        std * standard_normal(key, i)
    }

    /// Element `i` of a uniform draw on `(lo, hi]` under `key` (the [`pcg`] hash of the
    /// seed).
    #[inline(always)]
    pub fn uniform_value(lo: f32, hi: f32, key: u32, i: u32) -> f32 {
        lo + (hi - lo) * uniform(key, i)
    }

    /// The PCG output hash of `v` (O'Neill's RXS-M-XS step), as `shaders/elementwise.wgsl`
    /// computes it.
    #[inline(always)]
    pub fn pcg(v: u32) -> u32 {
        let state = v.wrapping_mul(747_796_405).wrapping_add(2_891_336_453);
        let word = ((state >> ((state >> 28) + 4)) ^ state).wrapping_mul(277_803_737);
        (word >> 22) ^ word
    }

    /// A uniform value in `(0, 1]` from 24 random bits.
    #[inline(always)]
    fn unit(bits: u32) -> f32 {
        ((bits >> 8) + 1) as f32 * (1.0 / 16_777_216.0)
    }

    /// Element `i` of the uniform draw on `(0, 1]` keyed by `key`.
    #[inline(always)]
    pub fn uniform(key: u32, i: u32) -> f32 {
        unit(pcg(key ^ pcg(i)))
    }

    /// Element `i` of the standard normal draw keyed by `key` (Box-Muller on two
    /// hashed uniforms; `ln` and `cos` are polynomials in plain `f32` arithmetic, so a
    /// loop of draws vectorises).
    #[inline(always)]
    pub fn standard_normal(key: u32, i: u32) -> f32 {
        let u1 = unit(pcg(key ^ pcg(i.wrapping_mul(2))));
        let u2 = unit(pcg(key ^ pcg(i.wrapping_mul(2).wrapping_add(1))));
        (-2.0 * ln(u1)).sqrt() * cos_turns(u2)
    }
}

#[cfg(test)]
mod tests {
    use super::host::*;
    use super::*;
    use crate::backend::BufId;

    #[test]
    fn noise_is_standard_normal_and_keyed_by_seed() {
        let out = Mat::new(BufId(0), 0, 1, 200_000);
        let draw = |seed| {
            let mut v = vec![0.0; out.len()];
            noise(&Noise::normal(out, 1.0, seed), &mut v);
            v
        };
        let a = draw(7);
        let n = a.len() as f64;
        let mean = a.iter().map(|&v| v as f64).sum::<f64>() / n;
        let var = a.iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>() / n;
        assert!(mean.abs() < 0.01, "mean {mean}");
        assert!((var - 1.0).abs() < 0.02, "variance {var}");
        let tail = a.iter().filter(|v| v.abs() > 1.96).count() as f64 / n;
        assert!(
            (tail - 0.05).abs() < 0.003,
            "two-sided 5% tail holds {tail}"
        );
        assert_eq!(a, draw(7));
        let b = draw(8);
        let corr = a.iter().zip(&b).map(|(x, y)| (x * y) as f64).sum::<f64>() / n;
        assert!(corr.abs() < 0.01, "seeds 7 and 8 correlate {corr}");
        // Neighbouring elements are independent too.
        let lag = a.windows(2).map(|w| (w[0] * w[1]) as f64).sum::<f64>() / n;
        assert!(lag.abs() < 0.01, "lag-1 correlation {lag}");
    }

    #[test]
    fn uniform_noise_fills_its_interval_evenly_and_is_keyed_by_seed() {
        let out = Mat::new(BufId(0), 0, 1, 200_000);
        let draw = |seed, lo, hi| {
            let mut v = vec![0.0; out.len()];
            noise(&Noise::uniform(out, lo, hi, seed), &mut v);
            v
        };
        let a = draw(3, -2.0, 6.0);
        assert!(a.iter().all(|&v| v > -2.0 && v <= 6.0));
        let n = a.len() as f64;
        let mean = a.iter().map(|&v| v as f64).sum::<f64>() / n;
        let var = a.iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>() / n;
        // U(-2, 6]: mean 2, variance 64 / 12.
        assert!((mean - 2.0).abs() < 0.02, "mean {mean}");
        assert!((var - 64.0 / 12.0).abs() < 0.05, "variance {var}");
        for k in 0..8 {
            let (lo, hi) = (-2.0 + k as f32, -1.0 + k as f32);
            let share = a.iter().filter(|&&v| v > lo && v <= hi).count() as f64 / n;
            assert!((share - 0.125).abs() < 0.004, "({lo}, {hi}] holds {share}");
        }
        assert_eq!(a, draw(3, -2.0, 6.0));
        let b = draw(4, -2.0, 6.0);
        let corr = a
            .iter()
            .zip(&b)
            .map(|(x, y)| ((x - 2.0) * (y - 2.0)) as f64)
            .sum::<f64>()
            / n;
        assert!(corr.abs() / var < 0.01, "seeds 3 and 4 correlate {corr}");
        let mut bad = Noise::uniform(out, 1.0, 0.0, 0);
        assert!(bad.check().is_err());
        bad.distribution = Distribution::Uniform {
            lo: 0.0,
            hi: f32::INFINITY,
        };
        assert!(bad.check().is_err());
    }

    #[test]
    fn axpby_scales_sums_and_overwrites() {
        let (y, x) = (Mat::new(BufId(0), 0, 2, 2), Mat::new(BufId(1), 0, 2, 2));
        let mut yv = vec![1.0, 2.0, f32::NAN, 4.0];
        axpby(&Axpby::new(y, 2.0, x, 0.0), &mut yv, &[1.0, 1.0, 1.0, 1.0]);
        assert_eq!(yv, [2.0, 2.0, 2.0, 2.0]);
        axpby(&Axpby::new(y, -1.0, x, 0.5), &mut yv, &[1.0, 2.0, 3.0, 4.0]);
        assert_eq!(yv, [0.0, -1.0, -2.0, -3.0]);
        let overlapping = Axpby::copy(y, Mat::new(BufId(0), 2, 2, 2));
        assert!(overlapping.check().is_err());
        assert!(Axpby::copy(y, Mat::new(BufId(1), 0, 4, 1)).check().is_err());
    }
}
