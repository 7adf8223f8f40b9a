//! [`Dtp`]: difference target propagation through learned layer inverses.

use super::{local_delta, output_step, Common, TargetPropSettings};
use crate::backend::{Axpby, Epilogue, Gemm, LayerGrad, Noise};
use crate::error::{Error, Result};
use crate::layer::LayerSpec;
use crate::learner::{Learner, StepCx, TensorSpec};
use crate::optim::Optimizer;

/// Difference target propagation (Lee et al. 2015) on a stack of dense layers.
///
/// Layer `l + 1` (for every `l` below the last) has a learned inverse
/// `g_{l+1}(h) = f_l(Q_{l+1} h + c_{l+1})` (tensors `dtp.inverse.{l}`, `n_l x n_{l+1}`,
/// and `dtp.inverse_bias.{l}`), mapping its activity back onto layer `l`'s. From the
/// output target (see the [module docs](super)) targets go down as
/// `t_l = g_{l+1}(t_{l+1}) + h_l − g_{l+1}(h_{l+1})` (per-sample tensors
/// `dtp.target.{l}`, the output's included). Each inverse descends its
/// reconstruction loss `½‖g_{l+1}(f_{l+1}(h̃_l)) − h̃_l‖²` on corrupted activity
/// `h̃_l = h_l + σ ε` (error in `dtp.error.{l}`), with respect to `Q`, `c` only.
///
/// The last hidden layer's target is set by [`TopTarget`]: Lee et al.'s gradient step
/// (the default), or the output target through the output layer's inverse.
#[derive(Debug, Clone)]
pub struct Dtp {
    common: Common,
    top: TopTarget,
}

/// How [`Dtp`] sets the last hidden layer's target `t_{L−1}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TopTarget {
    /// Lee et al. 2015's first target (their Algorithm 1): a step down the loss
    /// gradient, `t_{L−1} = h_{L−1} − η̂ ∂ℓ/∂h_{L−1}` per sample, with
    /// `∂ℓ/∂h_{L−1} = W_L^T ∂ℓ/∂z_L`. Only the layers below it go through inverses.
    /// The output layer's inverse is still trained but unused: the learner keeps the
    /// same tensors either way, so a checkpoint of either resumes through the built-in
    /// `dtp`, which reads the setting back.
    Gradient,
    /// The output target `t_L` carried down through the learned inverse of the output
    /// layer, like every other target (as Meulemans et al.'s code does).
    Inverse,
}

impl TopTarget {
    fn text(self) -> &'static str {
        match self {
            TopTarget::Gradient => "gradient",
            TopTarget::Inverse => "inverse",
        }
    }

    fn parse(text: &str) -> Result<TopTarget> {
        match text {
            "gradient" => Ok(TopTarget::Gradient),
            "inverse" => Ok(TopTarget::Inverse),
            _ => Err(Error::config(format!(
                "dtp top_target {text:?}: expected gradient or inverse"
            ))),
        }
    }
}

fn name(kind: &str, l: usize) -> String {
    format!("dtp.{kind}.{l}")
}

impl Dtp {
    /// The learner with `settings`, the last hidden layer's target a gradient step
    /// ([`TopTarget::Gradient`]).
    pub fn new(settings: TargetPropSettings) -> Dtp {
        Dtp {
            common: Common::new(settings),
            top: TopTarget::Gradient,
        }
    }

    /// Sets how the last hidden layer's target is formed.
    pub fn with_top_target(mut self, top: TopTarget) -> Dtp {
        self.top = top;
        self
    }

    /// How the last hidden layer's target is formed.
    pub fn top_target(&self) -> TopTarget {
        self.top
    }

    /// Its settings.
    pub fn settings(&self) -> TargetPropSettings {
        self.common.settings
    }

    fn check(layers: &[LayerSpec]) -> Result<()> {
        crate::learner::require_dense(layers, "difference target propagation inverts")
    }
}

impl Default for Dtp {
    fn default() -> Self {
        Dtp::new(TargetPropSettings::default())
    }
}

impl Learner for Dtp {
    fn name(&self) -> String {
        "dtp".into()
    }

    fn tensors(&self, layers: &[LayerSpec]) -> Vec<TensorSpec> {
        let last = layers.len().saturating_sub(1);
        let mut specs = Vec::new();
        for l in 0..last {
            let (n, up) = (layers[l].outputs(), layers[l + 1].outputs());
            specs.push(TensorSpec::trainable(name("inverse", l), n, up));
            specs.push(TensorSpec::trainable(name("inverse_bias", l), n, 1));
        }
        for (l, layer) in layers.iter().enumerate() {
            specs.push(TensorSpec::per_sample(name("target", l), layer.outputs()));
        }
        for l in 0..last {
            let (n, up) = (layers[l].outputs(), layers[l + 1].outputs());
            for kind in ["through", "noisy", "reconstruction", "error", "delta"] {
                specs.push(TensorSpec::per_sample(name(kind, l), n));
            }
            specs.push(TensorSpec::per_sample(name("forward", l), up));
        }
        specs
    }

    fn init(&mut self, cx: &mut StepCx<'_>, seed: u64) -> Result<()> {
        Dtp::check(cx.layers())?;
        self.common.settings.validate()?;
        let names = (0..cx.layers().len() - 1).map(|l| name("inverse", l));
        self.common.init_feedback(cx, names, seed)
    }

    fn step(&mut self, cx: &mut StepCx<'_>) -> Result<()> {
        cx.forward()?;
        cx.output_error()?;
        let last = cx.layers().len() - 1;
        let settings = self.common.settings;
        // Targets, top down, from t_L = (t_L − h_L) + h_L.
        let t_last = cx.tensor(&name("target", last))?;
        output_step(cx, t_last, settings.target_step)?;
        let h_last = cx.output(last);
        cx.backend().axpby(&Axpby::new(t_last, 1.0, h_last, 1.0))?;
        // Lee et al.'s first target: t_{L−1} = h_{L−1} − η̂ B W_L^T δ_L.
        let inverted = match self.top {
            TopTarget::Gradient if last > 0 => {
                let top = last - 1;
                let t = cx.tensor(&name("target", top))?;
                let (w, delta, h) = (cx.weights(last), cx.delta(last), cx.output(top));
                let step = -settings.target_step * cx.batch() as f32;
                let b = cx.backend();
                b.axpby(&Axpby::copy(t, h))?;
                b.gemm(&Gemm {
                    alpha: step,
                    beta: 1.0,
                    ..Gemm::new(t, w, true, delta, false)
                })?;
                local_delta(cx, top, t)?;
                top
            }
            _ => last,
        };
        for l in (0..inverted).rev() {
            let (q, c) = (
                cx.tensor(&name("inverse", l))?,
                cx.tensor(&name("inverse_bias", l))?,
            );
            let inverse = Epilogue::BiasActivation {
                bias: c,
                activation: cx.layers()[l].activation(),
            };
            let (t, t_up) = (
                cx.tensor(&name("target", l))?,
                cx.tensor(&name("target", l + 1))?,
            );
            let through = cx.tensor(&name("through", l))?;
            let (h, h_up) = (cx.output(l), cx.output(l + 1));
            let b = cx.backend();
            b.gemm_then(&Gemm::new(t, q, false, t_up, false), inverse)?;
            b.gemm_then(&Gemm::new(through, q, false, h_up, false), inverse)?;
            b.axpby(&Axpby::new(t, -1.0, through, 1.0))?;
            b.axpby(&Axpby::new(t, 1.0, h, 1.0))?;
            local_delta(cx, l, t)?;
        }
        // Each inverse reconstructs corrupted activity through its forward layer.
        let seeds = self.common.seeds(last);
        let inv_batch = 1.0 / cx.batch() as f32;
        let mut grads: Vec<LayerGrad> = (0..=last).filter_map(|l| cx.layer_grad(l)).collect();
        for (l, seed) in seeds.into_iter().enumerate() {
            let t = |kind: &str| cx.tensor(&name(kind, l));
            let (noisy, fwd, rec, err, delta) = (
                t("noisy")?,
                t("forward")?,
                t("reconstruction")?,
                t("error")?,
                t("delta")?,
            );
            let (q, c) = (t("inverse")?, t("inverse_bias")?);
            let (h, w_up, b_up) = (cx.output(l), cx.weights(l + 1), cx.bias(l + 1));
            let (act, act_up) = (cx.layers()[l].activation(), cx.layers()[l + 1].activation());
            let b = cx.backend();
            b.noise(&Noise::normal(noisy, settings.noise_std, seed))?;
            b.axpby(&Axpby::new(noisy, 1.0, h, 1.0))?;
            b.gemm_then(
                &Gemm::new(fwd, w_up, false, noisy, false),
                Epilogue::BiasActivation {
                    bias: b_up,
                    activation: act_up,
                },
            )?;
            b.gemm_then(
                &Gemm::new(rec, q, false, fwd, false),
                Epilogue::BiasActivation {
                    bias: c,
                    activation: act,
                },
            )?;
            b.axpby(&Axpby::copy(err, rec))?;
            b.axpby(&Axpby::new(err, -1.0, noisy, 1.0))?;
            b.axpby(&Axpby::new(delta, inv_batch, err, 0.0))?;
            b.activation_grad(delta, rec, act)?;
            grads.push(LayerGrad::new(
                delta,
                fwd,
                cx.tensor_grad(&name("inverse", l))?,
                cx.tensor_grad(&name("inverse_bias", l))?,
            ));
        }
        cx.backend().layer_grads(&grads)
    }

    fn tensor_optimizer(&self) -> Option<Optimizer> {
        self.common.settings.feedback_optimizer
    }

    fn state(&self) -> Vec<(String, String)> {
        let mut state = self.common.state();
        state.push(("top_target".into(), self.top.text().into()));
        state
    }

    fn restore_state(&mut self, state: &[(String, String)]) -> Result<()> {
        // Checkpoints written before the setting existed used the inverse.
        let top = match state.iter().find(|(k, _)| k == "top_target") {
            Some((_, v)) => TopTarget::parse(v)?,
            None => TopTarget::Inverse,
        };
        self.common.restore_state(state)?;
        self.top = top;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_top_target_reads_back_and_old_checkpoints_get_the_inverse() {
        for top in [TopTarget::Gradient, TopTarget::Inverse] {
            let dtp = Dtp::default().with_top_target(top);
            let mut back = Dtp::default().with_top_target(TopTarget::Gradient);
            back.restore_state(&dtp.state()).unwrap();
            assert_eq!(back.top_target(), top);
        }
        let mut state = Dtp::default().state();
        state.retain(|(k, _)| k != "top_target");
        let mut old = Dtp::default();
        old.restore_state(&state).unwrap();
        assert_eq!(old.top_target(), TopTarget::Inverse);
        let mut bad = Dtp::default().state();
        for (k, v) in &mut bad {
            if k == "top_target" {
                *v = "sideways".into();
            }
        }
        assert!(Dtp::default().restore_state(&bad).is_err());
    }
}
