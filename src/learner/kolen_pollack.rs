//! Kolen-Pollack learning (Kolen & Pollack 1994; Akrout et al. 2019, "Deep learning
//! without weight transport", NeurIPS), the learner [`KolenPollack`], plus the parts
//! of a feedback-alignment step that the learners learning their feedback share.

use rand_chacha::ChaCha8Rng;

use super::{feedback_name, FeedbackPair, Learner, StepCx, TensorSpec};
use crate::backend::Axpby;
use crate::error::{Error, Result};
use crate::init::{learner_rng, FeedbackInit};
use crate::layer::{weighted_layers, LayerSpec};
use crate::rule::{hidden_deltas, Rule};

/// Kolen-Pollack learning (Kolen & Pollack 1994; Akrout, Wilson, Humphreys, Lillicrap
/// & Tweed 2019, "Deep learning without weight transport", NeurIPS): feedback
/// alignment whose feedback `B_l` learns to match the forward weights without reading
/// them.
///
/// `B_l` is stored shaped like the `W_l` it stands in for (one per layer with weights
/// above the first) and carries the hidden deltas down as in feedback alignment. Each
/// step gives `B_l` the SAME update direction as `W_l` — the product `δ_l h_{l-1}^T`,
/// which both ends of the synapse can see — plus a weight decay `λ` on both:
/// `g_W = δ h^T + λ W`, `g_B = δ h^T + λ B`. The shared term cancels in `B - W`, so
/// only the decay acts on it:
///
/// - under plain SGD (learning rate `η`, the optimizer's own weight decay `λ_o` acting
///   on both alike) `B - W` shrinks by exactly `1 - η (λ + λ_o)` per step;
/// - under SGD with momentum `B - W` follows the same linear, decaying recursion as a
///   lone weight under pure decay;
/// - under Adam the two gradients differ by `λ (W - B)`, which Adam divides by its
///   per-weight `sqrt(v)`: `B - W` still shrinks (faster where gradients are small),
///   but not by one factor per step, and `λ` also regularizes `W` more strongly than
///   under SGD.
///
/// The first layer with weights has no `B` and gets no decay from the learner (the
/// optimizer's own `weight_decay` regularizes every layer alike).
///
/// `B` is a trainable tensor updated by the network's optimizer (same rate, schedule
/// and kind of moments as `W`), so `B` and `W` see the same optimizer with gradients
/// that differ only by the decay term, whatever optimizer the run uses.
/// Gradient clipping (`TrainConfig::grad_clip`) scales `W`'s direction but not `B`'s and
/// breaks the identity; leave it off with this learner. `B`'s gradient is a copy of
/// `W`'s (one elementwise pass), not a second product. The decay is part of the update
/// direction the learner leaves, so [`Trainer::update_direction`] and the update
/// angles of [`Trainer::alignment`] include `λ W`.
///
/// [`Trainer::update_direction`]: crate::Trainer::update_direction
/// [`Trainer::alignment`]: crate::Trainer::alignment
#[derive(Debug, Clone, PartialEq)]
pub struct KolenPollack {
    decay: f32,
    feedback_init: FeedbackInit,
}

impl Default for KolenPollack {
    /// Decay `λ = 1e-3`, feedback drawn [`FeedbackInit::Uniform`] (as FA's).
    fn default() -> Self {
        KolenPollack {
            decay: 1e-3,
            feedback_init: FeedbackInit::Uniform,
        }
    }
}

impl KolenPollack {
    /// With weight decay `λ` on every `B_l` and its `W_l` (finite, `>= 0`; 0 keeps
    /// `B - W` at its initial value).
    pub fn with_decay(mut self, decay: f32) -> Self {
        self.decay = decay;
        self
    }

    /// With the initial feedback drawn by `init` (from the run's learner stream, as
    /// FA draws its fixed feedback: a KP run starts from FA's `B`).
    pub fn with_feedback_init(mut self, init: FeedbackInit) -> Self {
        self.feedback_init = init;
        self
    }

    /// The weight decay `λ`.
    pub fn decay(&self) -> f32 {
        self.decay
    }

    fn check(&self) -> Result<()> {
        check_decay("kp", self.decay)
    }
}

/// Checks a decay rate is finite and `>= 0`.
pub(super) fn check_decay(learner: &str, decay: f32) -> Result<()> {
    if decay.is_finite() && decay >= 0.0 {
        Ok(())
    } else {
        Err(Error::config(format!(
            "{learner} decay must be finite and >= 0, got {decay}"
        )))
    }
}

/// One trainable `B` per layer with weights above the first, shaped like its weights
/// and named like FA's feedback (`feedback.{i}`).
pub(super) fn learned_feedback(layers: &[LayerSpec]) -> Vec<TensorSpec> {
    Rule::FeedbackAlignment
        .feedback_shapes(layers)
        .iter()
        .enumerate()
        .map(|(i, s)| TensorSpec::trainable(feedback_name(i), s.rows, s.cols))
        .collect()
}

/// Draws every `B` from `rng` as FA draws its fixed feedback (from the run's learner
/// stream, [`learner_rng`]).
pub(super) fn draw_feedback(
    cx: &mut StepCx<'_>,
    init: FeedbackInit,
    rng: &mut ChaCha8Rng,
) -> Result<()> {
    for (i, shape) in Rule::FeedbackAlignment
        .feedback_shapes(cx.layers())
        .iter()
        .enumerate()
    {
        let mut values = vec![0.0; shape.rows * shape.cols];
        init.fill_shaped(&mut values, shape, rng)?;
        let b = cx.tensor(&feedback_name(i))?;
        cx.backend().write(b.buf, b.offset, &values)?;
    }
    Ok(())
}

/// The learning phase both learned-feedback rules share: forward pass, output error,
/// feedback alignment's hidden deltas through the current `B`, every weight gradient.
pub(super) fn feedback_alignment_step(cx: &mut StepCx<'_>) -> Result<()> {
    cx.forward()?;
    cx.output_error()?;
    let (backend, views, batch) = cx.split();
    hidden_deltas(Rule::FeedbackAlignment, backend, views, batch)?;
    cx.weight_grads(0)
}

/// `B_i` against the weights of the next layer with weights (stored alike).
pub(super) fn feedback_pairs(layers: &[LayerSpec]) -> Vec<FeedbackPair> {
    let weighted = weighted_layers(layers);
    weighted
        .windows(2)
        .enumerate()
        .map(|(i, pair)| FeedbackPair {
            tensor: feedback_name(i),
            weights_of: pair[1],
            transposed: false,
            forms_delta_of: pair[0],
        })
        .collect()
}

impl Learner for KolenPollack {
    fn name(&self) -> String {
        "kp".into()
    }

    fn tensors(&self, layers: &[LayerSpec]) -> Vec<TensorSpec> {
        learned_feedback(layers)
    }

    fn init(&mut self, cx: &mut StepCx<'_>, seed: u64) -> Result<()> {
        self.check()?;
        draw_feedback(cx, self.feedback_init, &mut learner_rng(seed))
    }

    fn step(&mut self, cx: &mut StepCx<'_>) -> Result<()> {
        feedback_alignment_step(cx)?;
        let weighted = cx.weighted().to_vec();
        for (i, &l) in weighted.iter().skip(1).enumerate() {
            let name = feedback_name(i);
            let (b, grad_b) = (cx.tensor(&name)?, cx.tensor_grad(&name)?);
            let (w, grad_w) = (cx.weights(l), cx.grad_weights(l));
            let backend = cx.backend();
            // The same product for both, then each its own decay.
            backend.axpby(&Axpby::copy(grad_b, grad_w))?;
            if self.decay > 0.0 {
                backend.axpby(&Axpby::new(grad_b, self.decay, b, 1.0))?;
                backend.axpby(&Axpby::new(grad_w, self.decay, w, 1.0))?;
            }
        }
        Ok(())
    }

    fn state(&self) -> Vec<(String, String)> {
        vec![("decay".into(), self.decay.to_string())]
    }

    fn restore_state(&mut self, state: &[(String, String)]) -> Result<()> {
        let decay = super::settings::setting(state, "decay")?;
        check_decay("kp", decay)?;
        self.decay = decay;
        Ok(())
    }

    fn feedback_pairs(&self, layers: &[LayerSpec]) -> Vec<FeedbackPair> {
        feedback_pairs(layers)
    }
}
