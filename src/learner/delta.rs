//! The delta rules: backprop and the feedback-alignment family (see [`Rule`]) as one
//! family of learners. A step is a forward pass, the output error, the rule's hidden
//! deltas and every weight gradient from its delta; the rules differ only in how the
//! hidden deltas are formed, and their feedback matrices are the learner's tensors
//! `feedback.{i}` (plus `feedback_magnitude.{i}` for brSF/frSF).

use rand_chacha::ChaCha8Rng;

use super::{FeedbackPair, Learner, StepCx, TensorSpec};
use crate::error::Result;
use crate::init::{learner_rng, rng_from_state_under, rng_state_under, FeedbackInit};
use crate::layer::{LayerSpec, Shape};
use crate::rule::{hidden_deltas, prepare_feedback, Rule};

/// Where the feedback stream's state sits among the learner's checkpointed state.
const RNG_KEY: &str = "feedback_rng.";

/// The tensor name of feedback matrix `i`.
pub(crate) fn feedback_name(i: usize) -> String {
    format!("feedback.{i}")
}

/// The tensor name of the random magnitudes beside feedback matrix `i`.
pub(crate) fn magnitude_name(i: usize) -> String {
    format!("feedback_magnitude.{i}")
}

/// A [`Rule`] as a learner, drawing its feedback with `feedback_init`.
#[derive(Debug, Clone)]
pub struct DeltaRule {
    rule: Rule,
    feedback_init: FeedbackInit,
    /// Whether a direct rule's feedback to a conv layer is shared across positions.
    shared_conv_feedback: bool,
    /// The feedback stream after the initial draw (brSF redraws its magnitudes from it).
    rng: ChaCha8Rng,
}

impl DeltaRule {
    /// The learner of `rule`, whose fixed feedback is drawn with `feedback_init`.
    pub fn new(rule: Rule, feedback_init: FeedbackInit) -> DeltaRule {
        DeltaRule {
            rule,
            feedback_init,
            shared_conv_feedback: false,
            rng: learner_rng(0),
        }
    }

    /// For DFA and DRTP: draw each conv layer's feedback per channel and share it
    /// across positions (`B_l[(c, y, x), :] = b_l[c, :]`), so every position of a
    /// feature map receives the same projection of the error, as a filter shared
    /// across positions can follow. The default draws every unit independently
    /// (Nøkland 2016's `C·H·W x outputs` matrix).
    pub fn with_shared_conv_feedback(mut self, shared: bool) -> DeltaRule {
        self.shared_conv_feedback = shared;
        self
    }

    /// The rule.
    pub fn rule(&self) -> Rule {
        self.rule
    }
}

impl Learner for DeltaRule {
    fn name(&self) -> String {
        self.rule.name().into()
    }

    fn tensors(&self, layers: &[LayerSpec]) -> Vec<TensorSpec> {
        let shapes = self.rule.feedback_shapes(layers);
        // Feedback first and contiguous: DFA multiplies by all of it stacked.
        let feedback = shapes
            .iter()
            .enumerate()
            .map(|(i, s)| TensorSpec::fixed(feedback_name(i), s.rows, s.cols));
        let magnitudes = shapes
            .iter()
            .enumerate()
            .filter(|_| self.rule.has_magnitudes())
            .map(|(i, s)| TensorSpec::fixed(magnitude_name(i), s.rows, s.cols));
        feedback.chain(magnitudes).collect()
    }

    fn init(&mut self, cx: &mut StepCx<'_>, seed: u64) -> Result<()> {
        let mut rng = learner_rng(seed);
        let direct = matches!(
            self.rule,
            Rule::DirectFeedbackAlignment | Rule::DirectRandomTargetProjection
        );
        let shapes = self.rule.feedback_shapes(cx.layers());
        for (i, shape) in shapes.into_iter().enumerate() {
            let target = self.rule.feedback_target(i, cx.layers());
            let map = target.map(|l| cx.layers()[l].output_shape());
            let values: Vec<f32> = match map {
                Some(Shape::Image { channels, .. }) if direct && self.shared_conv_feedback => {
                    let mut per_channel = vec![0.0; channels * shape.cols];
                    self.feedback_init
                        .fill(&mut per_channel, shape.fan, &mut rng)?;
                    let positions = shape.rows / channels.max(1);
                    per_channel
                        .chunks(shape.cols)
                        .flat_map(|row| std::iter::repeat_n(row, positions).flatten().copied())
                        .collect()
                }
                _ => {
                    let mut values = vec![0.0; shape.rows * shape.cols];
                    self.feedback_init
                        .fill_shaped(&mut values, &shape, &mut rng)?;
                    values
                }
            };
            let b = cx.tensor(&feedback_name(i))?;
            cx.backend().write(b.buf, b.offset, &values)?;
            if self.rule.has_magnitudes() {
                let m = cx.tensor(&magnitude_name(i))?;
                cx.backend().write(m.buf, m.offset, &values)?;
            }
        }
        self.rng = rng;
        // Sign-symmetric rules: B follows W from the start.
        let (backend, views, _) = cx.split();
        prepare_feedback(self.rule, backend, views, &mut self.rng, self.feedback_init)
    }

    fn step(&mut self, cx: &mut StepCx<'_>) -> Result<()> {
        cx.forward()?;
        cx.output_error()?;
        let (backend, views, batch) = cx.split();
        prepare_feedback(self.rule, backend, views, &mut self.rng, self.feedback_init)?;
        hidden_deltas(self.rule, backend, views, batch)?;
        let first = self.first_trained_layer(cx.layers());
        cx.weight_grads(first)
    }

    fn first_trained_layer(&self, layers: &[LayerSpec]) -> usize {
        self.rule.first_trained_layer(layers.len())
    }

    fn state(&self) -> Vec<(String, String)> {
        rng_state_under(RNG_KEY, &self.rng)
    }

    fn restore_state(&mut self, state: &[(String, String)]) -> Result<()> {
        self.rng = rng_from_state_under(RNG_KEY, state)?;
        Ok(())
    }

    fn feedback_pairs(&self, layers: &[LayerSpec]) -> Vec<FeedbackPair> {
        (0..self.rule.feedback_shapes(layers).len())
            .filter_map(|i| {
                let (weights_of, transposed) = self.rule.feedback_counterpart(i, layers)?;
                Some(FeedbackPair {
                    tensor: feedback_name(i),
                    weights_of,
                    transposed,
                    forms_delta_of: self.rule.feedback_target(i, layers)?,
                })
            })
            .collect()
    }

    fn rule(&self) -> Option<Rule> {
        Some(self.rule)
    }

    fn derives_feedback(&self) -> bool {
        self.rule.sign_symmetric()
    }
}
