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
mod kolen_pollack;
mod step;
mod tensors;
mod weight_mirror;

pub use catalogue::builtin;
pub use delta::DeltaRule;
pub(crate) use delta::{feedback_name, magnitude_name};
pub use kolen_pollack::KolenPollack;
pub use step::StepCx;
pub(crate) use tensors::LearnerTensors;
pub use tensors::{TensorKind, TensorSpec};
pub use weight_mirror::WeightMirror;

use crate::error::Result;
use crate::layer::LayerSpec;
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

    /// Whether [`Learner::step`] overwrites a feedback tensor set from outside (the
    /// sign-symmetric rules re-derive `B` from `W`): such a tensor refuses to be set.
    fn derives_feedback(&self) -> bool {
        false
    }
}
