//! [`Dtp`]: difference target propagation through learned layer inverses.

use super::{local_delta, output_step, Common, TargetPropSettings};
use crate::backend::{Axpby, Epilogue, Gemm, LayerGrad, Noise};
use crate::error::Result;
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
#[derive(Debug, Clone)]
pub struct Dtp {
    common: Common,
}

fn name(kind: &str, l: usize) -> String {
    format!("dtp.{kind}.{l}")
}

impl Dtp {
    /// The learner with `settings`.
    pub fn new(settings: TargetPropSettings) -> Dtp {
        Dtp {
            common: Common::new(settings),
        }
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
        for l in (0..last).rev() {
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
            b.noise(&Noise {
                out: noisy,
                std: settings.noise_std,
                seed,
                accumulate: false,
            })?;
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
            grads.push(LayerGrad {
                delta,
                input: fwd,
                grad_w: cx.tensor_grad(&name("inverse", l))?,
                grad_b: cx.tensor_grad(&name("inverse_bias", l))?,
            });
        }
        cx.backend().layer_grads(&grads)
    }

    fn tensor_optimizer(&self) -> Option<Optimizer> {
        self.common.settings.feedback_optimizer
    }

    fn state(&self) -> Vec<(String, String)> {
        self.common.state()
    }

    fn restore_state(&mut self, state: &[(String, String)]) -> Result<()> {
        self.common.restore_state(state)
    }
}
