//! The learner seam: what one training step does.
//!
//! A [`Learner`] gets a [`StepCx`] with the batch loaded and decides the step: which
//! passes run (forward, settling loops, several backward sweeps), which local losses
//! it uses, and which update direction it leaves in the gradient regions of the
//! network's parameters and of its own trainable tensors. The trainer then applies the
//! optimizer, clips, checks for divergence and saves checkpoints, without knowing the
//! learner: a learner's tensors are [`TensorSpec`]s it names, stored and checkpointed
//! by name, and its host-side state is a list of strings it writes and reads back.
//!
//! The nine feedback-alignment-family rules are one family of learners, [`DeltaRule`]:
//! a forward pass, the output error, the rule's hidden deltas, every weight gradient
//! from its delta. Learners written outside the crate implement the same trait through
//! [`StepCx`]'s operations (see `tests/custom_learner.rs`).

pub mod catalogue;
mod delta;
pub mod equilibrium;
pub mod forward_forward;
mod kolen_pollack;
pub mod predictive_coding;
mod settings;
mod step;
mod synthetic_gradients;
pub mod target_prop;
mod tensors;
mod weight_mirror;

pub use catalogue::builtin;
pub use delta::DeltaRule;
pub(crate) use delta::{feedback_name, magnitude_name};
pub use equilibrium::EquilibriumProp;
pub use forward_forward::{ForwardForward, Negatives};
pub use kolen_pollack::KolenPollack;
pub use predictive_coding::PredictiveCoding;
pub use step::StepCx;
pub use synthetic_gradients::SyntheticGradients;
pub use target_prop::{Ddtp, Dtp, TargetPropSettings};
pub(crate) use tensors::LearnerTensors;
pub use tensors::{TensorKind, TensorSpec};
pub use weight_mirror::WeightMirror;

use crate::error::{Error, Result};
use crate::layer::{LayerKind, LayerSpec};
use crate::optim::Optimizer;

/// A feedback tensor that stands in for (or approximates) forward weights, for
/// [`Trainer::alignment`](crate::Trainer::alignment).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FeedbackPair {
    /// The learner tensor.
    pub tensor: String,
    /// The layer whose weights it stands in for.
    pub weights_of: usize,
    /// Whether it is stored transposed relative to those weights.
    pub transposed: bool,
    /// The layer whose delta it forms (its alignment row).
    pub forms_delta_of: usize,
}

/// What one training step does. See the [module docs](self).
pub trait Learner: Send {
    /// Short name (`bp`, `dfa`, …), written into checkpoints.
    fn name(&self) -> String;

    /// The tensors it keeps for a network of `layers`.
    fn tensors(&self, layers: &[LayerSpec]) -> Vec<TensorSpec>;

    /// Fills its tensors at the start of a run; `seed` is the run's seed (draw from
    /// [`crate::init::learner_rng`] so runs repeat bit for bit).
    fn init(&mut self, cx: &mut StepCx<'_>, seed: u64) -> Result<()>;

    /// One step on the batch loaded into `cx`: leaves the update direction of every
    /// trained parameter in [`StepCx::grad_weights`] / [`StepCx::grad_bias`] and of
    /// its own trainable tensors in [`StepCx::tensor_grad`], and the batch's loss
    /// statistics through [`StepCx::output_error`].
    fn step(&mut self, cx: &mut StepCx<'_>) -> Result<()>;

    /// The network's prediction for the batch loaded in `cx`, left in the last
    /// layer's output (what [`Trainer::evaluate`](crate::Trainer::evaluate) scores).
    /// The default is the feedforward pass; a learner whose network settles to an
    /// equilibrium predicts with its free phase.
    fn infer(&mut self, cx: &mut StepCx<'_>) -> Result<()> {
        cx.forward()
    }

    /// The first layer whose parameters it changes (earlier ones are frozen and the
    /// optimizer skips them).
    fn first_trained_layer(&self, _layers: &[LayerSpec]) -> usize {
        0
    }

    /// The optimizer of its trainable tensors; `None` uses the network's.
    fn tensor_optimizer(&self) -> Option<Optimizer> {
        None
    }

    /// Host-side state to checkpoint (e.g. a random stream's position), as key/value
    /// strings.
    fn state(&self) -> Vec<(String, String)> {
        Vec::new()
    }

    /// Restores [`Learner::state`] from a checkpoint.
    fn restore_state(&mut self, _state: &[(String, String)]) -> Result<()> {
        Ok(())
    }

    /// Its feedback tensors that have a forward counterpart, for alignment
    /// measurements.
    fn feedback_pairs(&self, _layers: &[LayerSpec]) -> Vec<FeedbackPair> {
        Vec::new()
    }

    /// The feedback-alignment-family rule it runs, if it is one ([`DeltaRule`]): the
    /// trainer's rule-specific calls (feedback shapes, frSF's magnitudes) ask it.
    fn rule(&self) -> Option<crate::rule::Rule> {
        None
    }

    /// Whether [`Learner::step`] overwrites a feedback tensor set from outside (the
    /// sign-symmetric rules re-derive `B` from `W`): such a tensor refuses to be set.
    fn derives_feedback(&self) -> bool {
        false
    }
}

/// Refuses a network with a layer that is not dense: `what` is the learner's verb
/// ("equilibrium propagation settles") for the message.
pub(crate) fn require_dense(layers: &[LayerSpec], what: &str) -> Result<()> {
    match layers
        .iter()
        .position(|l| !matches!(l.kind(), LayerKind::Dense(_)))
    {
        Some(l) => Err(Error::Unsupported(format!(
            "{what} stacks of dense layers; layer {l} is {}",
            layers[l]
        ))),
        None => Ok(()),
    }
}
