//! Learning-rate schedules: a factor on the optimizer's learning rate at every step.
//!
//! A [`Schedule`] lives in [`TrainConfig::schedule`](crate::TrainConfig::schedule) and is
//! applied per step: step `t` (counted from 1) uses `lr(t) = lr * schedule.factor(t)`,
//! where `lr` is the optimizer's own learning rate (which
//! [`Trainer::set_optimizer`](crate::Trainer::set_optimizer) may still change, e.g. per
//! epoch). The factor depends only on the step count, so a resumed run follows the
//! same schedule bit for bit. It works with every rule: rules only choose the update
//! direction, the schedule only scales how far the optimizer moves along it.
//!
//! ```
//! use plasticity::schedule::Schedule;
//! let s = Schedule::cosine(1000, 0.1).with_warmup(100);
//! assert!((s.factor(50) - 0.5).abs() < 1e-6); // halfway through the warmup
//! assert!((s.factor(100) - 1.0).abs() < 1e-6);
//! assert!((s.factor(1000) - 0.1).abs() < 1e-6); // cosine ends at the floor
//! ```

use crate::error::{Error, Result};

/// How the learning rate decays after the warmup.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub enum Decay {
    /// No decay.
    #[default]
    Constant,
    /// Multiply by `gamma` every `every` steps (PyTorch's `StepLR`, counted in steps).
    Step {
        /// Steps between decays.
        every: u64,
        /// Factor applied at each decay.
        gamma: f32,
    },
    /// Half a cosine from 1 down to `min_factor`, reached at step `total_steps` and kept
    /// after it (PyTorch's `CosineAnnealingLR` with `eta_min = min_factor * lr`).
    Cosine {
        /// Step at which the floor is reached (counted from 1, warmup included).
        total_steps: u64,
        /// The floor, as a fraction of the learning rate.
        min_factor: f32,
    },
}

/// A learning-rate schedule: an optional linear warmup, then a [`Decay`].
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Schedule {
    /// Steps of linear warmup: step `t <= warmup_steps` uses `t / warmup_steps`.
    pub warmup_steps: u64,
    /// What happens after (and during) the warmup.
    pub decay: Decay,
}

impl Schedule {
    /// The constant schedule (factor 1 at every step).
    pub fn constant() -> Self {
        Schedule::default()
    }

    /// Multiply the learning rate by `gamma` every `every` steps.
    pub fn step(every: u64, gamma: f32) -> Self {
        Schedule {
            warmup_steps: 0,
            decay: Decay::Step { every, gamma },
        }
    }

    /// Cosine decay to `min_factor` at step `total_steps`.
    pub fn cosine(total_steps: u64, min_factor: f32) -> Self {
        Schedule {
            warmup_steps: 0,
            decay: Decay::Cosine {
                total_steps,
                min_factor,
            },
        }
    }

    /// The same schedule behind a linear warmup of `steps` steps.
    pub fn with_warmup(mut self, steps: u64) -> Self {
        self.warmup_steps = steps;
        self
    }

    /// Checks every parameter is usable.
    pub fn validate(&self) -> Result<()> {
        match self.decay {
            Decay::Constant => Ok(()),
            Decay::Step { every, gamma } => {
                if every == 0 || !(gamma.is_finite() && gamma > 0.0) {
                    return Err(Error::config(format!(
                        "step schedule needs every >= 1 and a finite gamma > 0, got every {every}, gamma {gamma}"
                    )));
                }
                Ok(())
            }
            Decay::Cosine {
                total_steps,
                min_factor,
            } => {
                if total_steps == 0 || !(0.0..=1.0).contains(&min_factor) {
                    return Err(Error::config(format!(
                        "cosine schedule needs total_steps >= 1 and min_factor in [0, 1], got {total_steps}, {min_factor}"
                    )));
                }
                Ok(())
            }
        }
    }

    /// The learning-rate factor of step `step` (counted from 1). Computed in `f64`
    /// from the step count alone, so it is the same on every backend and after a resume.
    pub fn factor(&self, step: u64) -> f32 {
        let step = step.max(1);
        let warm = self.warmup_steps;
        let warmup = if warm > 0 && step < warm {
            step as f64 / warm as f64
        } else {
            1.0
        };
        let decay = match self.decay {
            Decay::Constant => 1.0,
            Decay::Step { every, gamma } => {
                let k = (step - 1) / every.max(1);
                (gamma as f64).powi(k.min(i32::MAX as u64) as i32)
            }
            Decay::Cosine {
                total_steps,
                min_factor,
            } => {
                // Progress runs from the warmup's last step (factor 1) to `total_steps`.
                let origin = warm.max(1);
                let span = total_steps.saturating_sub(origin).max(1) as f64;
                let t = (step.saturating_sub(origin) as f64 / span).min(1.0);
                let min = min_factor as f64;
                min + (1.0 - min) * 0.5 * (1.0 + (std::f64::consts::PI * t).cos())
            }
        };
        (warmup * decay) as f32
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn step_decay_multiplies_every_n_steps() {
        let s = Schedule::step(10, 0.5);
        assert_eq!(s.factor(1), 1.0);
        assert_eq!(s.factor(10), 1.0);
        assert_eq!(s.factor(11), 0.5);
        assert_eq!(s.factor(25), 0.25);
    }

    #[test]
    fn warmup_ramps_linearly_then_hands_over() {
        let s = Schedule::constant().with_warmup(4);
        let f: Vec<f32> = (1..=6).map(|t| s.factor(t)).collect();
        assert_eq!(f, [0.25, 0.5, 0.75, 1.0, 1.0, 1.0]);
    }

    #[test]
    fn cosine_is_monotone_and_ends_at_the_floor() {
        let s = Schedule::cosine(100, 0.0);
        assert_eq!(s.factor(1), 1.0);
        for t in 1..100 {
            assert!(s.factor(t + 1) <= s.factor(t));
        }
        assert!(s.factor(100).abs() < 1e-7);
        assert!(s.factor(10_000).abs() < 1e-7);
    }

    #[test]
    fn bad_parameters_are_rejected() {
        assert!(Schedule::step(0, 0.5).validate().is_err());
        assert!(Schedule::step(5, f32::NAN).validate().is_err());
        assert!(Schedule::cosine(0, 0.1).validate().is_err());
        assert!(Schedule::cosine(10, 1.5).validate().is_err());
        assert!(Schedule::cosine(10, 0.1).with_warmup(3).validate().is_ok());
    }
}
