//! Weight mirrors (Akrout et al. 2019, "Deep learning without weight transport",
//! NeurIPS), the learner [`WeightMirror`].

use rand_chacha::rand_core::RngCore;
use rand_chacha::ChaCha8Rng;

use super::kolen_pollack::{
    check_decay, draw_feedback, feedback_alignment_step, feedback_pairs, learned_feedback,
};
use super::{feedback_name, FeedbackPair, Learner, StepCx, TensorSpec};
use crate::activation::Activation;
use crate::backend::{Axpby, Gemm, Mat, Noise};
use crate::error::{Error, Result};
use crate::init::{learner_rng, rng_from_state_under, rng_state_under, FeedbackInit};
use crate::layer::{weighted_layers, LayerSpec};
use crate::optim::Optimizer;

/// The zero bias the mirror's forward passes add.
const ZERO_BIAS: &str = "mirror.zero_bias";

fn noise_name(i: usize) -> String {
    format!("mirror.noise.{i}")
}

fn response_name(i: usize) -> String {
    format!("mirror.response.{i}")
}

fn patches_name(i: usize) -> String {
    format!("mirror.patches.{i}")
}

/// Weight mirrors (Akrout, Wilson, Humphreys, Lillicrap & Tweed 2019, "Deep learning
/// without weight transport", NeurIPS): feedback alignment whose feedback `B_l` learns
/// the forward weights from noise.
///
/// Every step has two phases. The learning phase is feedback alignment through the
/// current `B` (stored shaped like the `W_l` it stands in for). In the mirror phase
/// each layer `l` with a `B` gets Gaussian noise `x ~ N(0, σ²)` as its input and
/// computes its linear response `y = W_l x` (no bias, no activation; for a convolution
/// the convolution of the noise image). `B_l` then moves along `y x^T`, which both ends
/// of the feedback synapse see, against a decay:
///
/// `ΔB = η (y x^T / N - λ B)`, so `E[ΔB] = η (σ² W - λ B)`
///
/// with `N` the products summed (samples, times output positions for a convolution).
/// `B` relaxes towards `(σ² / λ) W` at rate `η λ` per step; the defaults (`σ = λ = 1`)
/// make it an exponential moving average of noisy estimates of `W` itself, over about
/// `1 / η` steps. (For a padded convolution the border positions see fewer inputs, so
/// each kernel tap's column of `E[ΔB]` is scaled by the share of positions where the
/// tap falls inside the image.)
///
/// Akrout et al.'s fully connected reference code (`fcnn/FCNN_WM.py` in
/// `makrout/Deep-Learning-without-Weight-Transport`) mirrors once per training batch,
/// with as many noise samples as a training batch, mirror rate `0.01` on the summed
/// (not averaged) product, and uniform noise of amplitude `0.1` passed through the
/// layer's bias and sigmoid; it also mirrors for one epoch's worth of batches before
/// training. Here the response is linear as in the paper's analysis (so `σ` only scales
/// the rate, as `σ² η`), the decay `λ` fixes `B`'s scale, and the default rate is high
/// enough for `B` to align within a few hundred steps with no warm-up (see
/// `tests/learned_feedback.rs`).
///
/// `B` is a trainable tensor: the mirror leaves `λ B - y x^T / N` in its gradient and
/// [`Learner::tensor_optimizer`] applies plain SGD at rate `η` (scaled by the run's
/// schedule). So measurements that take a step without applying it
/// ([`Trainer::alignment`](crate::Trainer::alignment)) leave `B` alone, and the network's
/// optimizer (Adam, momentum) does not distort the mirror's average. The noise seeds come
/// from the learner's own stream, checkpointed with its settings. Besides `B`
/// (`feedback.{i}`, as FA names its feedback) it keeps a zero bias for the mirror's
/// forward passes and per-sample scratch for the noise, the responses and (for a
/// convolution) the noise's patch columns.
#[derive(Debug, Clone)]
pub struct WeightMirror {
    mirror_lr: f32,
    noise_std: f32,
    decay: f32,
    feedback_init: FeedbackInit,
    /// Draws each step's noise seed (after the initial feedback).
    rng: ChaCha8Rng,
}

impl Default for WeightMirror {
    /// Mirror rate `η = 0.02`, noise `σ = 1`, decay `λ = 1`, feedback drawn
    /// [`FeedbackInit::Uniform`] (as FA's).
    fn default() -> Self {
        WeightMirror {
            mirror_lr: 0.02,
            noise_std: 1.0,
            decay: 1.0,
            feedback_init: FeedbackInit::Uniform,
            rng: learner_rng(0),
        }
    }
}

impl WeightMirror {
    /// With mirror learning rate `η` (finite, `> 0`).
    pub fn with_mirror_lr(mut self, lr: f32) -> Self {
        self.mirror_lr = lr;
        self
    }

    /// With noise standard deviation `σ` (finite, `> 0`).
    pub fn with_noise_std(mut self, std: f32) -> Self {
        self.noise_std = std;
        self
    }

    /// With decay `λ` (finite, `>= 0`): `B` tends to `(σ² / λ) W`.
    pub fn with_decay(mut self, decay: f32) -> Self {
        self.decay = decay;
        self
    }

    /// With the initial feedback drawn by `init` (as FA draws its fixed feedback).
    pub fn with_feedback_init(mut self, init: FeedbackInit) -> Self {
        self.feedback_init = init;
        self
    }

    /// The mirror learning rate `η`.
    pub fn mirror_lr(&self) -> f32 {
        self.mirror_lr
    }

    /// The noise standard deviation `σ`.
    pub fn noise_std(&self) -> f32 {
        self.noise_std
    }

    /// The decay `λ`.
    pub fn decay(&self) -> f32 {
        self.decay
    }

    fn check(&self) -> Result<()> {
        Optimizer::sgd(self.mirror_lr).validate()?;
        if !(self.noise_std.is_finite() && self.noise_std > 0.0) {
            return Err(Error::config(format!(
                "wm noise standard deviation must be finite and > 0, got {}",
                self.noise_std
            )));
        }
        check_decay("wm", self.decay)
    }
}

/// The layers with a `B` (all with weights but the first).
fn mirrored(layers: &[LayerSpec]) -> Vec<usize> {
    weighted_layers(layers).into_iter().skip(1).collect()
}

impl Learner for WeightMirror {
    fn name(&self) -> String {
        "wm".into()
    }

    fn tensors(&self, layers: &[LayerSpec]) -> Vec<TensorSpec> {
        let mirrored = mirrored(layers);
        let rows = mirrored
            .iter()
            .filter_map(|&l| layers[l].weight_shape())
            .map(|w| w.rows)
            .max()
            .unwrap_or(0);
        let mut specs = learned_feedback(layers);
        specs.push(TensorSpec::fixed(ZERO_BIAS, rows, 1));
        // Noise inputs first and consecutive: one draw fills them all.
        let per_layer = |name: fn(usize) -> String, size: fn(&LayerSpec) -> usize| {
            mirrored
                .iter()
                .enumerate()
                .map(move |(i, &l)| (name(i), size(&layers[l])))
        };
        let sized = per_layer(noise_name, LayerSpec::inputs)
            .chain(per_layer(response_name, LayerSpec::outputs))
            .chain(per_layer(patches_name, LayerSpec::saved_rows).filter(|(_, rows)| *rows > 0));
        specs.extend(sized.map(|(name, rows)| TensorSpec::per_sample(name, rows)));
        specs
    }

    fn init(&mut self, cx: &mut StepCx<'_>, seed: u64) -> Result<()> {
        self.check()?;
        // The noise seeds continue the stream the feedback was drawn from.
        let mut rng = learner_rng(seed);
        draw_feedback(cx, self.feedback_init, &mut rng)?;
        self.rng = rng;
        let zero = cx.tensor(ZERO_BIAS)?;
        cx.backend().fill(zero, 0.0)
    }

    fn step(&mut self, cx: &mut StepCx<'_>) -> Result<()> {
        // Learning phase: feedback alignment through the current B.
        feedback_alignment_step(cx)?;
        // Mirror phase: noise into every mirrored layer's input, one draw.
        let layers = cx.layers().to_vec();
        let mirrored = mirrored(&layers);
        if mirrored.is_empty() {
            return Ok(());
        }
        let noise_rows: usize = mirrored.iter().map(|&l| layers[l].inputs()).sum();
        let first_noise = cx.tensor(&noise_name(0))?;
        let noise = Noise::normal(
            Mat::new(first_noise.buf, first_noise.offset, noise_rows, cx.batch()),
            self.noise_std,
            self.rng.next_u32(),
        );
        cx.backend().noise(&noise)?;
        let zero = cx.tensor(ZERO_BIAS)?;
        for (i, &l) in mirrored.iter().enumerate() {
            let name = feedback_name(i);
            let (b, grad_b) = (cx.tensor(&name)?, cx.tensor_grad(&name)?);
            let mut io = cx.io(l);
            io.x = cx.tensor(&noise_name(i))?;
            io.y = cx.tensor(&response_name(i))?;
            io.bias = zero.rows(0, b.rows);
            io.activation = Activation::Identity;
            if layers[l].saved_rows() > 0 {
                io.saved = cx.tensor(&patches_name(i))?;
            }
            let layer = layers[l].layer();
            // y = W x: the layer's forward pass with no bias and no activation.
            layer.forward(cx.backend(), &io)?;
            // The layer's weight-gradient product with the noise as input and the
            // response as delta (its bias sum is not wanted: an empty region).
            let product = layer
                .weight_grad(&io, io.y, grad_b, Mat::new(grad_b.buf, 0, 0, 0))
                .ok_or_else(|| Error::config(format!("layer {l} has no weights to mirror")))?;
            let samples = product.delta.cols.max(1) as f32;
            // grad_B = λ B - y x^T / N.
            cx.backend()
                .axpby(&Axpby::new(grad_b, self.decay, b, 0.0))?;
            cx.backend().gemm(&Gemm {
                alpha: -1.0 / samples,
                beta: 1.0,
                ..Gemm::new(grad_b, product.delta, false, product.input, true)
            })?;
        }
        Ok(())
    }

    fn tensor_optimizer(&self) -> Option<Optimizer> {
        Some(Optimizer::sgd(self.mirror_lr))
    }

    fn state(&self) -> Vec<(String, String)> {
        let settings = [
            ("mirror_lr", self.mirror_lr),
            ("noise_std", self.noise_std),
            ("decay", self.decay),
        ];
        settings
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .chain(rng_state_under("noise_rng.", &self.rng))
            .collect()
    }

    fn restore_state(&mut self, state: &[(String, String)]) -> Result<()> {
        let restored = WeightMirror {
            mirror_lr: super::settings::setting(state, "mirror_lr")?,
            noise_std: super::settings::setting(state, "noise_std")?,
            decay: super::settings::setting(state, "decay")?,
            feedback_init: self.feedback_init,
            rng: rng_from_state_under("noise_rng.", state)?,
        };
        restored.check()?;
        *self = restored;
        Ok(())
    }

    fn feedback_pairs(&self, layers: &[LayerSpec]) -> Vec<FeedbackPair> {
        feedback_pairs(layers)
    }
}
