//! Optimizers: how a rule's update direction becomes a parameter change.
//!
//! A learning rule only decides the direction `g` (for BP the exact gradient, for FA
//! and DFA an approximation). The optimizer is shared by every rule and runs as one
//! elementwise pass over the whole parameter arena.

use crate::error::{Error, Result};

/// Parameter update method, with PyTorch's semantics for every hyperparameter.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Optimizer {
    /// Stochastic gradient descent: `v = μ v + (g + λ w)`, `w -= η v`
    /// (Nesterov: `w -= η (g + λ w + μ v)`).
    Sgd {
        /// Learning rate `η`.
        lr: f32,
        /// Momentum `μ` (0 for plain SGD).
        momentum: f32,
        /// L2 weight decay `λ`.
        weight_decay: f32,
        /// Nesterov momentum.
        nesterov: bool,
    },
    /// Adam (Kingma & Ba) with bias correction; `weight_decay` adds `λ w` to the gradient.
    Adam {
        /// Learning rate.
        lr: f32,
        /// Decay of the first moment.
        beta1: f32,
        /// Decay of the second moment.
        beta2: f32,
        /// Added to the root of the second moment.
        eps: f32,
        /// L2 weight decay `λ`.
        weight_decay: f32,
    },
}

impl Optimizer {
    /// Plain SGD with learning rate `lr`.
    pub fn sgd(lr: f32) -> Self {
        Optimizer::Sgd {
            lr,
            momentum: 0.0,
            weight_decay: 0.0,
            nesterov: false,
        }
    }

    /// SGD with momentum `momentum`.
    pub fn momentum(lr: f32, momentum: f32) -> Self {
        Optimizer::Sgd {
            lr,
            momentum,
            weight_decay: 0.0,
            nesterov: false,
        }
    }

    /// Adam with the usual `β1 = 0.9, β2 = 0.999, ε = 1e-8`.
    pub fn adam(lr: f32) -> Self {
        Optimizer::Adam {
            lr,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: 0.0,
        }
    }

    /// The learning rate.
    pub fn lr(&self) -> f32 {
        match *self {
            Optimizer::Sgd { lr, .. } | Optimizer::Adam { lr, .. } => lr,
        }
    }

    /// The same optimizer with another learning rate (for schedules).
    pub fn with_lr(mut self, new_lr: f32) -> Self {
        match &mut self {
            Optimizer::Sgd { lr, .. } | Optimizer::Adam { lr, .. } => *lr = new_lr,
        }
        self
    }

    /// Checks every hyperparameter is finite and in range; the error names the
    /// parameter, its value and the range it must lie in.
    pub fn validate(&self) -> Result<()> {
        let check = |what: &str, v: f32, ok: bool, range: &str| {
            if ok {
                Ok(())
            } else {
                Err(Error::config(format!(
                    "optimizer {what} = {v} is out of range: it must be {range}"
                )))
            }
        };
        let positive = |v: f32| v.is_finite() && v > 0.0;
        let non_negative = |v: f32| v.is_finite() && v >= 0.0;
        let unit = |v: f32| (0.0..1.0).contains(&v);
        const LR: &str = "finite and > 0 (typically 1e-4 to 0.1)";
        match *self {
            Optimizer::Sgd {
                lr,
                momentum,
                weight_decay,
                ..
            } => {
                check("learning rate", lr, positive(lr), LR)?;
                check("momentum", momentum, unit(momentum), "in [0, 1)")?;
                check(
                    "weight decay",
                    weight_decay,
                    non_negative(weight_decay),
                    "finite and >= 0",
                )
            }
            Optimizer::Adam {
                lr,
                beta1,
                beta2,
                eps,
                weight_decay,
            } => {
                check("learning rate", lr, positive(lr), LR)?;
                check("beta1", beta1, unit(beta1), "in [0, 1)")?;
                check("beta2", beta2, unit(beta2), "in [0, 1)")?;
                check("eps", eps, positive(eps), "finite and > 0")?;
                check(
                    "weight decay",
                    weight_decay,
                    non_negative(weight_decay),
                    "finite and >= 0",
                )
            }
        }
    }

    /// The scalars of update number `step` (counted from 1), precomputed once per step
    /// on the host so the per-parameter pass does no transcendental work.
    pub fn step_params(&self, step: u64) -> UpdateStep {
        match *self {
            Optimizer::Sgd {
                lr,
                momentum,
                weight_decay,
                nesterov,
            } => UpdateStep::Sgd {
                lr,
                momentum,
                weight_decay,
                nesterov,
            },
            Optimizer::Adam {
                lr,
                beta1,
                beta2,
                eps,
                weight_decay,
            } => {
                let t = step.min(i32::MAX as u64) as i32;
                let correction1 = 1.0 - (beta1 as f64).powi(t);
                let correction2 = 1.0 - (beta2 as f64).powi(t);
                UpdateStep::Adam {
                    step_size: (lr as f64 / correction1) as f32,
                    beta1,
                    beta2,
                    eps,
                    weight_decay,
                    inv_sqrt_correction2: (1.0 / correction2.sqrt()) as f32,
                }
            }
        }
    }
}

/// One step's worth of optimizer scalars, as a backend consumes them.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum UpdateStep {
    /// See [`Optimizer::Sgd`].
    Sgd {
        /// Learning rate.
        lr: f32,
        /// Momentum.
        momentum: f32,
        /// Weight decay.
        weight_decay: f32,
        /// Nesterov momentum.
        nesterov: bool,
    },
    /// See [`Optimizer::Adam`]; `step_size = lr / (1 - β1^t)`.
    Adam {
        /// Learning rate divided by the first-moment bias correction.
        step_size: f32,
        /// First-moment decay.
        beta1: f32,
        /// Second-moment decay.
        beta2: f32,
        /// Denominator epsilon.
        eps: f32,
        /// Weight decay.
        weight_decay: f32,
        /// `1 / sqrt(1 - β2^t)`.
        inv_sqrt_correction2: f32,
    },
}

impl UpdateStep {
    /// Updates one parameter `w` with direction `g` and its optimizer state `(s0, s1)`:
    /// the plain per-element statement of the update, which the GPU shader transcribes
    /// and the vectorised [`UpdateStep::apply_slice`] (what the CPU backend runs) is
    /// tested against.
    #[inline(always)]
    pub fn apply(&self, w: &mut f32, g: f32, s0: &mut f32, s1: &mut f32) {
        match *self {
            UpdateStep::Sgd {
                lr,
                momentum,
                weight_decay,
                nesterov,
            } => {
                let g = g + weight_decay * *w;
                if momentum == 0.0 {
                    *w -= lr * g;
                } else {
                    *s0 = momentum * *s0 + g;
                    let dir = if nesterov { g + momentum * *s0 } else { *s0 };
                    *w -= lr * dir;
                }
            }
            UpdateStep::Adam {
                step_size,
                beta1,
                beta2,
                eps,
                weight_decay,
                inv_sqrt_correction2,
            } => {
                let g = g + weight_decay * *w;
                *s0 = beta1 * *s0 + (1.0 - beta1) * g;
                *s1 = beta2 * *s1 + (1.0 - beta2) * g * g;
                *w -= step_size * *s0 / (s1.sqrt() * inv_sqrt_correction2 + eps);
            }
        }
    }
}

impl UpdateStep {
    /// The rate of plain SGD (no momentum, no weight decay), whose update is `w -= lr · g`
    /// and needs no state; `None` for any other step.
    pub(crate) fn plain_sgd_rate(&self) -> Option<f32> {
        match *self {
            UpdateStep::Sgd {
                lr,
                momentum,
                weight_decay,
                ..
            } if momentum == 0.0 && weight_decay == 0.0 => Some(lr),
            _ => None,
        }
    }

    /// [`UpdateStep::apply`] over whole slices (the shortest length wins), with the
    /// variant chosen once outside the loop so it vectorises. Returns whether every
    /// updated parameter is finite. Same operations in the same order as `apply`, so
    /// results are identical. Inlined so a caller compiled for wider lanes (the CPU
    /// backend's `simd_state::wide`) vectorises it for them.
    #[inline(always)]
    pub fn apply_slice(&self, w: &mut [f32], g: &[f32], s0: &mut [f32], s1: &mut [f32]) -> bool {
        let n = w.len().min(g.len()).min(s0.len()).min(s1.len());
        let (w, g, s0, s1) = (&mut w[..n], &g[..n], &mut s0[..n], &mut s1[..n]);
        let mut finite = true;
        match *self {
            UpdateStep::Sgd {
                lr,
                momentum,
                weight_decay,
                nesterov,
            } => {
                if momentum == 0.0 {
                    for i in 0..n {
                        let gi = g[i] + weight_decay * w[i];
                        w[i] -= lr * gi;
                        finite &= w[i].is_finite();
                    }
                } else {
                    for i in 0..n {
                        let gi = g[i] + weight_decay * w[i];
                        s0[i] = momentum * s0[i] + gi;
                        let dir = if nesterov {
                            gi + momentum * s0[i]
                        } else {
                            s0[i]
                        };
                        w[i] -= lr * dir;
                        finite &= w[i].is_finite();
                    }
                }
            }
            UpdateStep::Adam {
                step_size,
                beta1,
                beta2,
                eps,
                weight_decay,
                inv_sqrt_correction2,
            } => {
                for i in 0..n {
                    let gi = g[i] + weight_decay * w[i];
                    s0[i] = beta1 * s0[i] + (1.0 - beta1) * gi;
                    s1[i] = beta2 * s1[i] + (1.0 - beta2) * gi * gi;
                    w[i] -= step_size * s0[i] / (s1[i].sqrt() * inv_sqrt_correction2 + eps);
                    finite &= w[i].is_finite();
                }
            }
        }
        finite
    }
}

impl std::fmt::Display for Optimizer {
    /// `adam(lr=0.0008)`, `sgd(lr=0.01, momentum=0.9)`: hyperparameters to six
    /// significant digits (see [`significant`]), so a rate decayed in f32 reads as the
    /// number it stands for, not as its last ulps (`0.00080000004`).
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match *self {
            Optimizer::Sgd { lr, momentum, .. } => write!(
                f,
                "sgd(lr={}, momentum={})",
                significant(lr),
                significant(momentum)
            ),
            Optimizer::Adam { lr, .. } => write!(f, "adam(lr={})", significant(lr)),
        }
    }
}

/// `v` to six significant digits, trailing zeros dropped: plain decimals from `1e-5`
/// up to `1e6` (`0.0008`, `123457`), scientific notation outside (`1e-7`, `2.5e7`).
/// For display only: checkpoints store floats with the shortest representation that
/// reads back bit for bit.
pub fn significant(v: f32) -> String {
    if v == 0.0 || !v.is_finite() {
        return v.to_string();
    }
    let sci = format!("{v:.5e}");
    let (mantissa, exp) = sci.split_once('e').unwrap_or((&sci, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    if (-5..6).contains(&exp) {
        let decimals = usize::try_from(5 - exp).unwrap_or(0);
        trim_zeros(&format!("{v:.decimals$}")).to_string()
    } else {
        format!("{}e{exp}", trim_zeros(mantissa))
    }
}

/// `1.500` -> `1.5`, `2.000` -> `2`; a number without a point is left alone.
fn trim_zeros(s: &str) -> &str {
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.')
    } else {
        s
    }
}

/// One optimizer for each path of the update (plain SGD, momentum, Nesterov momentum with
/// weight decay, Adam): the cases the tests comparing its implementations run through.
#[cfg(test)]
pub(crate) fn one_of_each_update() -> [Optimizer; 4] {
    [
        Optimizer::sgd(0.1),
        Optimizer::momentum(0.1, 0.9),
        Optimizer::Sgd {
            lr: 0.05,
            momentum: 0.8,
            weight_decay: 1e-3,
            nesterov: true,
        },
        Optimizer::adam(0.01),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn adam_first_step_moves_by_lr_against_the_sign() {
        let step = Optimizer::adam(0.01).step_params(1);
        let (mut w, mut m, mut v) = (1.0f32, 0.0, 0.0);
        step.apply(&mut w, 3.0, &mut m, &mut v);
        assert!((w - 0.99).abs() < 1e-6, "{w}");
    }

    #[test]
    fn sgd_momentum_accumulates() {
        let step = Optimizer::momentum(0.1, 0.9).step_params(1);
        let (mut w, mut v, mut unused) = (0.0f32, 0.0, 0.0);
        step.apply(&mut w, 1.0, &mut v, &mut unused);
        step.apply(&mut w, 1.0, &mut v, &mut unused);
        assert!((w + 0.29).abs() < 1e-6, "{w}");
    }

    #[test]
    fn slice_update_equals_the_per_element_update() {
        let g: Vec<f32> = (0..37).map(|i| (i as f32 * 0.37).sin()).collect();
        for opt in one_of_each_update() {
            let step = opt.step_params(3);
            let mut w: Vec<f32> = (0..37).map(|i| i as f32 * 0.1 - 1.0).collect();
            let (mut s0, mut s1) = (vec![0.1f32; 37], vec![0.2f32; 37]);
            let (mut w2, mut a2, mut b2) = (w.clone(), s0.clone(), s1.clone());
            assert!(step.apply_slice(&mut w, &g, &mut s0, &mut s1));
            for i in 0..37 {
                step.apply(&mut w2[i], g[i], &mut a2[i], &mut b2[i]);
            }
            assert_eq!((w, s0, s1), (w2, a2, b2), "{opt}");
        }
        let mut w = vec![f32::MAX];
        let (mut s0, mut s1) = (vec![0.0], vec![0.0]);
        assert!(!Optimizer::sgd(1.0).step_params(1).apply_slice(
            &mut w,
            &[-f32::MAX],
            &mut s0,
            &mut s1
        ));
    }

    #[test]
    fn learning_rates_print_as_the_numbers_they_stand_for() {
        // What the mnist example's decay makes of 1e-3 (0.00080000004 at f32's
        // shortest round trip).
        let decayed = 1e-3f32 * 0.8;
        assert_eq!(decayed.to_string(), "0.00080000004");
        assert_eq!(Optimizer::adam(decayed).to_string(), "adam(lr=0.0008)");
        assert_eq!(
            Optimizer::momentum(0.01, 0.9).to_string(),
            "sgd(lr=0.01, momentum=0.9)"
        );
        for (v, text) in [
            (1e-3, "0.001"),
            (0.007871999, "0.007872"),
            (1.0, "1"),
            (0.1 + 0.2, "0.3"),
            (123456.7, "123457"),
            (1.5e-5, "0.000015"),
            (1e-7, "1e-7"),
            (2.5e7, "2.5e7"),
            (-0.25, "-0.25"),
            (0.0, "0"),
            (f32::INFINITY, "inf"),
        ] {
            assert_eq!(significant(v), text, "{v:e}");
        }
        // Six digits: rates that differ there stay distinguishable.
        assert_ne!(significant(1.23456e-3), significant(1.23457e-3));
    }

    #[test]
    fn errors_give_the_range_a_hyperparameter_must_lie_in() {
        for (opt, needle) in [
            (
                Optimizer::adam(0.0),
                "learning rate = 0 is out of range: it must be finite and > 0",
            ),
            (
                Optimizer::sgd(f32::NAN),
                "learning rate = NaN is out of range: it must be finite and > 0",
            ),
            (
                Optimizer::momentum(0.1, 1.0),
                "momentum = 1 is out of range: it must be in [0, 1)",
            ),
        ] {
            let text = opt.validate().unwrap_err().to_string();
            assert!(text.contains(needle), "{text:?} lacks {needle:?}");
        }
    }

    #[test]
    fn bad_hyperparameters_are_rejected() {
        assert!(Optimizer::sgd(-1.0).validate().is_err());
        assert!(Optimizer::sgd(f32::NAN).validate().is_err());
        assert!(Optimizer::momentum(0.1, 1.5).validate().is_err());
        assert!(Optimizer::adam(1e-3).validate().is_ok());
    }
}
