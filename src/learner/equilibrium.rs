//! Equilibrium propagation (Scellier & Bengio 2017, "Equilibrium Propagation: Bridging
//! the Gap between Energy-Based Models and Backpropagation"), in the discrete-time
//! form of Ernoult et al. 2019 and Laborieux et al. 2021 ("Scaling Equilibrium
//! Propagation to Deep ConvNets by Drastically Reducing its Gradient Estimator Bias").
//!
//! A stack of dense layers is read as a layered Hopfield-style network with the
//! primitive function `Φ(x, s) = Σ_l s_l · (W_l s_{l-1} + b_l)` (`s_0 = x`). Its state
//! settles by the fixed-point iteration `s_l ← ρ_l(∂Φ/∂s_l) = ρ_l(W_l s_{l-1} + b_l +
//! W_{l+1}^T s_{l+1})`, all layers at once from the previous iterate, with `ρ_l` each
//! layer's activation (the output layer's too: identity for a cross-entropy output).
//! - **Free phase**: `T` iterations from `s = 0`; the output at its end is the
//!   prediction ([`Learner::infer`]).
//! - **Nudged phase**: `K` more iterations from the free state with the loss added to
//!   the output's drive: `∂Φ/∂s_L − β ∂L/∂s_L` (for softmax cross-entropy
//!   `−β (softmax(s_L) − y)`, as in Laborieux et al.'s code).
//! - **Update**: `ΔW_l ∝ (s^β_l s^β_{l-1}^T − s^0_l s^0_{l-1}^T) / β`: the update
//!   direction left for the optimizer is `−(∂Φ/∂W(s^β) − ∂Φ/∂W(s^0)) / β` (batch
//!   mean), which tends to the gradient of the loss at the free equilibrium as
//!   `β → 0`. With [`EquilibriumProp::symmetric`] the two ends are nudged with `+β`
//!   and `−β` and divided by `2β`, which cancels the estimate's first-order bias
//!   (Laborieux et al. 2021).
//!
//! The input's drive `W_1 x + b_1` is the same in every iteration, so it is computed
//! once per phase; an iteration then costs one product per layer boundary each way.

use super::{Learner, StepCx, TensorSpec};
use crate::backend::{Axpby, Gemm, LayerGrad, LossGrad, Mat};
use crate::error::{Error, Result};
use crate::layer::LayerSpec;

/// The equilibrium-propagation learner (`ep`). See the [module docs](self).
#[derive(Debug, Clone, PartialEq)]
pub struct EquilibriumProp {
    free_steps: usize,
    nudged_steps: usize,
    beta: f32,
    symmetric: bool,
}

impl Default for EquilibriumProp {
    /// `T = 20` free and `K = 4` nudged iterations, symmetric nudging at `β = 0.2`:
    /// the setting that trains 784-500-10 on MNIST to 97.8% (one-sided nudging at
    /// `β = 1`, Scellier & Bengio's, is unstable with this dynamics and a
    /// cross-entropy output).
    fn default() -> Self {
        EquilibriumProp {
            free_steps: 20,
            nudged_steps: 4,
            beta: 0.2,
            symmetric: true,
        }
    }
}

const DRIVE: &str = "ep.drive";
const ERROR: &str = "ep.error";
const STATS: &str = "ep.stats";

fn nudged(l: usize) -> String {
    format!("ep.nudged.{l}")
}

fn negative(l: usize) -> String {
    format!("ep.negative.{l}")
}

fn pre(l: usize) -> String {
    format!("ep.pre.{l}")
}

impl EquilibriumProp {
    /// `free` iterations in the free phase, `nudged` in each nudged phase.
    pub fn with_steps(mut self, free: usize, nudged: usize) -> Self {
        self.free_steps = free;
        self.nudged_steps = nudged;
        self
    }

    /// The nudging strength `β` (> 0).
    pub fn with_beta(mut self, beta: f32) -> Self {
        self.beta = beta;
        self
    }

    /// Nudge with `+β` and `−β` and difference the two (Laborieux et al. 2021).
    pub fn symmetric(mut self, symmetric: bool) -> Self {
        self.symmetric = symmetric;
        self
    }

    fn check_settings(&self) -> Result<()> {
        if !(self.beta.is_finite() && self.beta > 0.0) {
            return Err(Error::config(format!(
                "equilibrium propagation needs a finite β > 0, got {}",
                self.beta
            )));
        }
        if self.free_steps == 0 || self.nudged_steps == 0 {
            return Err(Error::config(
                "equilibrium propagation needs at least one free and one nudged iteration",
            ));
        }
        Ok(())
    }

    /// The free phase: `s = 0`, the input's drive, `T` iterations at `β = 0`. The
    /// free state is the network's outputs.
    fn free_phase(&self, cx: &mut StepCx<'_>) -> Result<()> {
        let states: Vec<Mat> = (0..cx.layers().len()).map(|l| cx.output(l)).collect();
        for &s in &states {
            cx.backend().fill(s, 0.0)?;
        }
        let (drive, x, w) = (cx.tensor(DRIVE)?, cx.input(), cx.weights(0));
        cx.backend().gemm(&Gemm::new(drive, w, false, x, false))?;
        let stats = cx.tensor(STATS)?;
        cx.backend().fill(stats, 0.0)?;
        self.settle(cx, &states, 0.0, self.free_steps)
    }

    /// `steps` synchronous iterations of every layer's state, the output nudged by
    /// `beta`.
    fn settle(&self, cx: &mut StepCx<'_>, states: &[Mat], beta: f32, steps: usize) -> Result<()> {
        let last = states.len() - 1;
        let pres: Vec<Mat> = (0..states.len())
            .map(|l| cx.tensor(&pre(l)))
            .collect::<Result<_>>()?;
        let (drive, error, stats, target) = (
            cx.tensor(DRIVE)?,
            cx.tensor(ERROR)?,
            cx.tensor(STATS)?,
            cx.targets(),
        );
        let batch = cx.batch() as f32;
        let loss = cx.loss();
        for _ in 0..steps {
            for l in 0..states.len() {
                if l == 0 {
                    cx.backend().axpby(&Axpby::copy(pres[0], drive))?;
                } else {
                    let w = cx.weights(l);
                    cx.backend()
                        .gemm(&Gemm::new(pres[l], w, false, states[l - 1], false))?;
                }
                if l < last {
                    let w_above = cx.weights(l + 1);
                    cx.backend().gemm(&Gemm {
                        beta: 1.0,
                        ..Gemm::new(pres[l], w_above, true, states[l + 1], false)
                    })?;
                }
            }
            if beta != 0.0 {
                // The loss's batch-mean error, scaled back to each sample's.
                cx.backend().loss_grad(&LossGrad {
                    loss,
                    output: states[last],
                    target,
                    grad: error,
                    stats,
                })?;
                cx.backend()
                    .axpby(&Axpby::new(pres[last], -beta * batch, error, 1.0))?;
            }
            for (l, (&p, &s)) in pres.iter().zip(states).enumerate() {
                let (bias, activation) = (cx.bias(l), cx.layers()[l].activation());
                cx.backend().bias_activation(p, bias, activation)?;
                cx.backend().axpby(&Axpby::copy(s, p))?;
            }
        }
        Ok(())
    }

    /// `grad W_l = −scale (a_l a_{l-1}^T − c_l c_{l-1}^T)`, `grad b_l = −scale Σ (a_l −
    /// c_l)` over the batch, with `a_0 = c_0 = x`: every layer's first phase in one
    /// grouped call, then the second added to it.
    fn contrast(&self, cx: &mut StepCx<'_>, a: &[Mat], c: &[Mat], scale: f32) -> Result<()> {
        let x = cx.input();
        let phase = |states: &[Mat], alpha: f32, beta: f32| -> Vec<LayerGrad> {
            (0..states.len())
                .map(|l| LayerGrad {
                    alpha,
                    beta,
                    ..LayerGrad::new(
                        states[l],
                        if l == 0 { x } else { states[l - 1] },
                        cx.grad_weights(l),
                        cx.grad_bias(l),
                    )
                })
                .collect()
        };
        let (first, second) = (phase(a, -scale, 0.0), phase(c, scale, 1.0));
        cx.backend().layer_grads(&first)?;
        cx.backend().layer_grads(&second)
    }
}

impl Learner for EquilibriumProp {
    fn name(&self) -> String {
        "ep".into()
    }

    fn tensors(&self, layers: &[LayerSpec]) -> Vec<TensorSpec> {
        let mut specs = vec![
            TensorSpec::per_sample(DRIVE, layers[0].outputs()),
            TensorSpec::per_sample(ERROR, layers[layers.len() - 1].outputs()),
            TensorSpec::fixed(STATS, 3, 1),
        ];
        for (l, layer) in layers.iter().enumerate() {
            specs.push(TensorSpec::per_sample(pre(l), layer.outputs()));
            specs.push(TensorSpec::per_sample(nudged(l), layer.outputs()));
            // Kept even when nudging one-sided, so a checkpoint's setting can switch it.
            specs.push(TensorSpec::per_sample(negative(l), layer.outputs()));
        }
        specs
    }

    fn init(&mut self, cx: &mut StepCx<'_>, _seed: u64) -> Result<()> {
        self.check_settings()?;
        super::require_dense(cx.layers(), "equilibrium propagation settles")
    }

    fn infer(&mut self, cx: &mut StepCx<'_>) -> Result<()> {
        self.free_phase(cx)
    }

    fn step(&mut self, cx: &mut StepCx<'_>) -> Result<()> {
        self.free_phase(cx)?;
        // Loss and accuracy of the prediction, the free equilibrium.
        cx.output_error()?;
        let layers = cx.layers().len();
        let free: Vec<Mat> = (0..layers).map(|l| cx.output(l)).collect();
        let positive: Vec<Mat> = (0..layers)
            .map(|l| cx.tensor(&nudged(l)))
            .collect::<Result<_>>()?;
        let batch = cx.batch() as f32;
        let start_from_free = |cx: &mut StepCx<'_>, to: &[Mat]| -> Result<()> {
            for (&t, &f) in to.iter().zip(&free) {
                cx.backend().axpby(&Axpby::copy(t, f))?;
            }
            Ok(())
        };
        start_from_free(cx, &positive)?;
        self.settle(cx, &positive, self.beta, self.nudged_steps)?;
        if self.symmetric {
            let minus: Vec<Mat> = (0..layers)
                .map(|l| cx.tensor(&negative(l)))
                .collect::<Result<_>>()?;
            start_from_free(cx, &minus)?;
            self.settle(cx, &minus, -self.beta, self.nudged_steps)?;
            self.contrast(cx, &positive, &minus, 1.0 / (2.0 * self.beta * batch))
        } else {
            self.contrast(cx, &positive, &free, 1.0 / (self.beta * batch))
        }
    }

    fn state(&self) -> Vec<(String, String)> {
        vec![
            ("free_steps".into(), self.free_steps.to_string()),
            ("nudged_steps".into(), self.nudged_steps.to_string()),
            ("beta".into(), self.beta.to_string()),
            ("symmetric".into(), self.symmetric.to_string()),
        ]
    }

    fn restore_state(&mut self, state: &[(String, String)]) -> Result<()> {
        for (key, value) in state {
            let bad = || Error::config(format!("ep setting {key} = {value:?} does not parse"));
            match key.as_str() {
                "free_steps" => self.free_steps = value.parse().map_err(|_| bad())?,
                "nudged_steps" => self.nudged_steps = value.parse().map_err(|_| bad())?,
                "beta" => self.beta = value.parse().map_err(|_| bad())?,
                "symmetric" => self.symmetric = value.parse().map_err(|_| bad())?,
                _ => return Err(Error::config(format!("ep has no setting {key}"))),
            }
        }
        self.check_settings()
    }
}
