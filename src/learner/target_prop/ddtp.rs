//! [`Ddtp`]: direct difference target propagation with linear feedback (DDTP-linear).

use super::{local_delta, output_step, Common, TargetPropSettings};
use crate::backend::{Axpby, Gemm, LayerGrad, Noise};
use crate::error::{Error, Result};
use crate::layer::LayerSpec;
use crate::learner::{Learner, StepCx, TensorSpec};
use crate::optim::Optimizer;
use crate::rule::StepViews;

/// DDTP-linear (Meulemans et al. 2020): every hidden layer `l` with weights gets its
/// target straight from the output, `t_l = h_l + Q_l (t_L − h_L)` (trainable
/// `ddtp.feedback.{l}`, `n_l x outputs`, where `n_l` is the layer's output size — a
/// convolution's whole `C·H·W` map; per-sample `ddtp.target.{l}`).
///
/// `Q_l` descends the difference reconstruction loss of their paper and code,
/// `(1/σ²)·½‖Q_l (f_{L,l}(h_l + σε) − f_{L,l}(h_l)) − σε‖²`: corrupt layer `l`'s
/// activity, run the network above it, and ask the feedback to map the change of the
/// output back onto the corruption (error in `ddtp.error.{l}`). A linear feedback's
/// bias cancels in the difference, so it has none.
///
/// The corrupted passes run in the network's own activation buffers (so they work
/// for any layer kind): after a step those hold the last corrupted pass, not the
/// batch's clean activity.
#[derive(Debug, Clone)]
pub struct Ddtp {
    common: Common,
}

fn name(kind: &str, l: usize) -> String {
    format!("ddtp.{kind}.{l}")
}

const OUTPUT_STEP: &str = "ddtp.output_step";
const CLEAN_OUTPUT: &str = "ddtp.output";

/// The layers with weights below the last layer, which get targets.
fn hidden(layers: &[LayerSpec]) -> Vec<usize> {
    let last = layers.len().saturating_sub(1);
    (0..last).filter(|&l| layers[l].has_weights()).collect()
}

impl Ddtp {
    /// The learner with `settings`.
    pub fn new(settings: TargetPropSettings) -> Ddtp {
        Ddtp {
            common: Common::new(settings),
        }
    }

    /// Its settings.
    pub fn settings(&self) -> TargetPropSettings {
        self.common.settings
    }
}

impl Default for Ddtp {
    fn default() -> Self {
        Ddtp::new(TargetPropSettings::default())
    }
}

impl Learner for Ddtp {
    fn name(&self) -> String {
        "ddtp".into()
    }

    fn tensors(&self, layers: &[LayerSpec]) -> Vec<TensorSpec> {
        let outputs = layers.last().map_or(0, |s| s.outputs());
        let hidden = hidden(layers);
        let mut specs = Vec::new();
        for &l in &hidden {
            let n = layers[l].outputs();
            specs.push(TensorSpec::trainable(name("feedback", l), n, outputs));
            // The grouped gradient product always writes a bias gradient.
            specs.push(TensorSpec::fixed(name("sink", l), n, 1));
        }
        specs.push(TensorSpec::per_sample(OUTPUT_STEP, outputs));
        specs.push(TensorSpec::per_sample(CLEAN_OUTPUT, outputs));
        for &l in &hidden {
            let n = layers[l].outputs();
            for kind in ["target", "noise", "error", "delta"] {
                specs.push(TensorSpec::per_sample(name(kind, l), n));
            }
            specs.push(TensorSpec::per_sample(name("output_change", l), outputs));
        }
        specs
    }

    fn init(&mut self, cx: &mut StepCx<'_>, seed: u64) -> Result<()> {
        self.common.settings.validate()?;
        if !cx.layers().last().is_some_and(|s| s.has_weights()) {
            return Err(Error::config(
                "ddtp needs a last layer with weights (it learns from the output error)",
            ));
        }
        let names = hidden(cx.layers()).into_iter().map(|l| name("feedback", l));
        self.common.init_feedback(cx, names, seed)
    }

    fn step(&mut self, cx: &mut StepCx<'_>) -> Result<()> {
        cx.forward()?;
        cx.output_error()?;
        let last = cx.layers().len() - 1;
        let hidden = hidden(cx.layers());
        let settings = self.common.settings;
        let step = cx.tensor(OUTPUT_STEP)?;
        output_step(cx, step, settings.target_step)?;
        for &l in &hidden {
            let (q, t, h) = (
                cx.tensor(&name("feedback", l))?,
                cx.tensor(&name("target", l))?,
                cx.output(l),
            );
            let b = cx.backend();
            b.gemm(&Gemm::new(t, q, false, step, false))?;
            b.axpby(&Axpby::new(t, 1.0, h, 1.0))?;
            local_delta(cx, l, t)?;
        }
        // The forward gradients read the clean activity the corrupted passes overwrite.
        cx.weight_grads(0)?;

        // Difference reconstruction: corrupt each hidden layer in turn, top down (the
        // layers below a corrupted one still hold their clean activity), and run the
        // network above it.
        let clean = cx.tensor(CLEAN_OUTPUT)?;
        let out = cx.output(last);
        cx.backend().axpby(&Axpby::copy(clean, out))?;
        let seeds = self.common.seeds(hidden.len());
        let scale = 1.0 / (settings.noise_std * settings.noise_std * cx.batch() as f32);
        let mut grads = Vec::with_capacity(hidden.len());
        for (&l, seed) in hidden.iter().zip(seeds).rev() {
            let t = |kind: &str| cx.tensor(&name(kind, l));
            let (eps, change, err, delta) =
                (t("noise")?, t("output_change")?, t("error")?, t("delta")?);
            let (q, sink) = (t("feedback")?, t("sink")?);
            let h = cx.output(l);
            let (backend, views, batch) = cx.split();
            backend.noise(&Noise::normal(eps, settings.noise_std, seed))?;
            backend.axpby(&Axpby::new(h, 1.0, eps, 1.0))?;
            for k in l + 1..=last {
                views.layers()[k]
                    .layer()
                    .forward(&mut *backend, &views.io(k, batch))?;
            }
            backend.axpby(&Axpby::copy(change, out))?;
            backend.axpby(&Axpby::new(change, -1.0, clean, 1.0))?;
            backend.gemm(&Gemm::new(err, q, false, change, false))?;
            backend.axpby(&Axpby::new(err, -1.0, eps, 1.0))?;
            backend.axpby(&Axpby::new(delta, scale, err, 0.0))?;
            grads.push(LayerGrad::new(
                delta,
                change,
                cx.tensor_grad(&name("feedback", l))?,
                sink,
            ));
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
