//! Predictive coding (Whittington & Bogacz 2017, "An Approximation of the Error
//! Backpropagation Algorithm in a Predictive Coding Network with Local Hebbian
//! Synaptic Plasticity"; Millidge, Tschantz & Buckley 2022, "Predictive Coding
//! Approximates Backprop along Arbitrary Computation Graphs"), supervised, with the
//! loss as the output's energy.
//!
//! Every hidden layer `l` has value nodes `x_l` (`x_{-1}` is the input) and predicts
//! them from the layer below: `μ_l = f_l(W_l x_{l-1} + b_l)`. The energy of a sample is
//! `F = Σ_hidden ½ ||x_l − μ_l||² + β L(μ_out, y)`, `β` weighting the output's error.
//! - **Inference**: the value nodes start at the feedforward pass (`x_l = μ_l`, every
//!   hidden error zero) and descend `F` for `T` steps of size `γ`:
//!   `x_l ← x_l + γ (−ε_l + W_{l+1}^T e_{l+1})`, with `ε_l = x_l − μ_l`,
//!   `e_l = ε_l ⊙ f_l'(μ_l)` and, at the output, `e_out = −β ∂L/∂z_out`.
//! - **Learning**: each layer's update is local, `ΔW_l ∝ e_l x_{l-1}^T` (the gradient
//!   of `F` in `W_l` at the relaxed state), left for the optimizer divided by `β`.
//!
//! With a small `β` the relaxed errors are `e_l ≈ β δ_l` (BP's deltas), so the update
//! approaches BP's gradient; as `β` grows the relaxed state moves away from the
//! feedforward pass and so does the update. Prediction is the feedforward pass (the
//! relaxed state of a free output).
//!
//! Inference is gradient descent on `F`, stable while `γ` stays below about
//! `2 / (1 + ||W_{l+1}||² max f'²)`: large weights need a smaller rate (and then more
//! steps), or the relaxation oscillates and the updates stop following BP's.

use super::{Learner, StepCx, TensorSpec};
use crate::backend::{Axpby, Epilogue, Gemm, LayerGrad, LossGrad, Mat};
use crate::error::{Error, Result};
use crate::layer::LayerSpec;

/// The predictive-coding learner (`pc`). See the [module docs](self).
#[derive(Debug, Clone, PartialEq)]
pub struct PredictiveCoding {
    steps: usize,
    rate: f32,
    beta: f32,
}

impl Default for PredictiveCoding {
    /// `T = 20` inference steps of size `γ = 0.1`, output weight `β = 0.1`.
    fn default() -> Self {
        PredictiveCoding {
            steps: 20,
            rate: 0.1,
            beta: 0.1,
        }
    }
}

const ERROR: &str = "pc.output_error";
const STATS: &str = "pc.stats";

fn value(l: usize) -> String {
    format!("pc.value.{l}")
}

fn prediction(l: usize) -> String {
    format!("pc.prediction.{l}")
}

fn error(l: usize) -> String {
    format!("pc.error.{l}")
}

fn scaled(l: usize) -> String {
    format!("pc.scaled_error.{l}")
}

impl PredictiveCoding {
    /// `steps` inference steps of size `rate`.
    pub fn with_inference(mut self, steps: usize, rate: f32) -> Self {
        self.steps = steps;
        self.rate = rate;
        self
    }

    /// The weight `β` of the output's loss in the energy (> 0).
    pub fn with_beta(mut self, beta: f32) -> Self {
        self.beta = beta;
        self
    }

    fn check_settings(&self) -> Result<()> {
        if !(self.beta.is_finite() && self.beta > 0.0) {
            return Err(Error::config(format!(
                "predictive coding needs a finite β > 0, got {}",
                self.beta
            )));
        }
        if !(self.rate.is_finite() && self.rate > 0.0) {
            return Err(Error::config(format!(
                "predictive coding needs a finite inference rate > 0, got {}",
                self.rate
            )));
        }
        Ok(())
    }

    /// The value nodes `x_{l-1}` layer `l` predicts from (the input for layer 0).
    fn below(cx: &StepCx<'_>, l: usize) -> Result<Mat> {
        match l {
            0 => Ok(cx.input()),
            _ => cx.tensor(&value(l - 1)),
        }
    }

    /// The predictions of layers `from..` from the value nodes below them (the
    /// output's into the network's output), then every error `e_l`: hidden
    /// `(x_l − μ_l) ⊙ f'(μ_l)`, the output's `−β ∂L/∂z` per sample. The first layer
    /// predicts from the input, which inference does not move: its prediction is
    /// computed once per step (`from = 0`) and kept (`from = 1`).
    fn errors(&self, cx: &mut StepCx<'_>, from: usize) -> Result<()> {
        let last = cx.layers().len() - 1;
        for l in 0..=last {
            let mu = match l {
                _ if l == last => cx.output(last),
                _ => cx.tensor(&prediction(l))?,
            };
            let f = cx.layers()[l].activation();
            if l >= from {
                let (x, w, b) = (Self::below(cx, l)?, cx.weights(l), cx.bias(l));
                cx.backend().gemm_then(
                    &Gemm::new(mu, w, false, x, false),
                    Epilogue::BiasActivation {
                        bias: b,
                        activation: f,
                    },
                )?;
            }
            if l < last {
                let (xl, eps, e) = (
                    cx.tensor(&value(l))?,
                    cx.tensor(&error(l))?,
                    cx.tensor(&scaled(l))?,
                );
                let backend = cx.backend();
                backend.axpby(&Axpby::copy(eps, xl))?;
                backend.axpby(&Axpby::new(eps, -1.0, mu, 1.0))?;
                backend.axpby(&Axpby::copy(e, eps))?;
                backend.activation_grad(e, mu, f)?;
            }
        }
        let (out, grad, stats, target) = (
            cx.output(last),
            cx.tensor(ERROR)?,
            cx.tensor(STATS)?,
            cx.targets(),
        );
        let (loss, batch) = (cx.loss(), cx.batch() as f32);
        cx.backend().loss_grad(&LossGrad {
            loss,
            output: out,
            target,
            grad,
            stats,
        })?;
        let activation = cx.layers()[last].activation();
        cx.backend().activation_grad(grad, out, activation)?;
        let e_out = cx.tensor(&scaled(last))?;
        cx.backend()
            .axpby(&Axpby::new(e_out, -self.beta * batch, grad, 0.0))
    }
}

impl Learner for PredictiveCoding {
    fn name(&self) -> String {
        "pc".into()
    }

    fn tensors(&self, layers: &[LayerSpec]) -> Vec<TensorSpec> {
        let last = layers.len() - 1;
        let mut specs = vec![
            TensorSpec::per_sample(ERROR, layers[last].outputs()),
            TensorSpec::fixed(STATS, 3, 1),
            TensorSpec::per_sample(scaled(last), layers[last].outputs()),
        ];
        for (l, layer) in layers.iter().enumerate().take(last) {
            for name in [value(l), prediction(l), error(l), scaled(l)] {
                specs.push(TensorSpec::per_sample(name, layer.outputs()));
            }
        }
        specs
    }

    fn init(&mut self, cx: &mut StepCx<'_>, _seed: u64) -> Result<()> {
        self.check_settings()?;
        super::require_dense(cx.layers(), "predictive coding relaxes")
    }

    fn step(&mut self, cx: &mut StepCx<'_>) -> Result<()> {
        // The feedforward pass is the prediction, and the value nodes' start.
        cx.forward()?;
        cx.output_error()?;
        let last = cx.layers().len() - 1;
        for l in 0..last {
            let (x, h) = (cx.tensor(&value(l))?, cx.output(l));
            cx.backend().axpby(&Axpby::copy(x, h))?;
        }
        let stats = cx.tensor(STATS)?;
        cx.backend().fill(stats, 0.0)?;
        for step in 0..self.steps {
            self.errors(cx, usize::from(step > 0))?;
            for l in 0..last {
                let (x, eps) = (cx.tensor(&value(l))?, cx.tensor(&error(l))?);
                let (w_above, e_above) = (cx.weights(l + 1), cx.tensor(&scaled(l + 1))?);
                let backend = cx.backend();
                backend.axpby(&Axpby::new(x, -self.rate, eps, 1.0))?;
                backend.gemm(&Gemm {
                    alpha: self.rate,
                    beta: 1.0,
                    ..Gemm::new(x, w_above, true, e_above, false)
                })?;
            }
        }
        self.errors(cx, usize::from(self.steps > 0))?;
        // ∂F/∂W_l / β as the update direction, every layer in one grouped product.
        let scale = -1.0 / (self.beta * cx.batch() as f32);
        let mut grads = Vec::with_capacity(last + 1);
        for l in 0..=last {
            let (delta, e) = (cx.delta(l), cx.tensor(&scaled(l))?);
            cx.backend().axpby(&Axpby::new(delta, scale, e, 0.0))?;
            grads.push(LayerGrad::new(
                delta,
                Self::below(cx, l)?,
                cx.grad_weights(l),
                cx.grad_bias(l),
            ));
        }
        cx.backend().layer_grads(&grads)
    }

    fn state(&self) -> Vec<(String, String)> {
        vec![
            ("steps".into(), self.steps.to_string()),
            ("rate".into(), self.rate.to_string()),
            ("beta".into(), self.beta.to_string()),
        ]
    }

    fn restore_state(&mut self, state: &[(String, String)]) -> Result<()> {
        for (key, v) in state {
            let bad = || Error::config(format!("pc setting {key} = {v:?} does not parse"));
            match key.as_str() {
                "steps" => self.steps = v.parse().map_err(|_| bad())?,
                "rate" => self.rate = v.parse().map_err(|_| bad())?,
                "beta" => self.beta = v.parse().map_err(|_| bad())?,
                _ => return Err(Error::config(format!("pc has no setting {key}"))),
            }
        }
        self.check_settings()
    }
}
