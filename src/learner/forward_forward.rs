//! The forward-forward algorithm (Hinton 2022, "The Forward-Forward Algorithm: Some
//! Preliminary Investigations"), supervised variant: no backward pass at all.
//!
//! The label is written into the first `classes` inputs (one-hot, at
//! [`ForwardForward::with_label_value`]): *positive* data carries the true label,
//! *negative* data the same image with a wrong one. Every hidden layer sees its input
//! normalised per sample (so only the direction of the layer below's activity passes
//! up, not its goodness): scaled to length `√n` for `n` inputs, i.e. unit root mean
//! square. That is Hinton's length normalisation up to one constant factor per layer,
//! chosen so the goodness starts near the threshold under the usual initialisations
//! (at unit length it starts about `n` times lower, and the first epochs go to growing
//! the weights). Each layer has its own objective: its *goodness*
//! `G = mean_i h_i²` should exceed the threshold `θ` on positive data and stay below it
//! on negative data, with the logistic loss `softplus(−(G − θ))` / `softplus(G − θ)`.
//! Each layer's update comes from its own loss alone, its input held fixed.
//!
//! The prediction for an image is the label whose embedding gives the most goodness,
//! summed over the hidden layers (or all but the first, as Hinton does for his
//! four-layer net: [`ForwardForward::skipping_first_layer`]): [`Learner::infer`] writes those sums, one per label, into the
//! network's output, so [`Trainer::evaluate`](crate::Trainer::evaluate) scores them
//! (its loss is then the cross-entropy of the goodness sums, a diagnostic only). The
//! network's last layer is not used, and its update stays zero.
//!
//! Negative labels ([`Negatives`]): by default each sample's hardest wrong label, the
//! one the network currently gives the most goodness (Hinton picks negatives from the
//! network's own predictions, in proportion to their probability; this takes the
//! most probable), at the cost of one forward pass per class per step. Or, cheaper,
//! one random shift `k` in `1..classes` per step, every sample getting `(y + k) mod
//! classes`: each wrong label equally likely over the steps.
//!
//! Training statistics: the loss is the mean of every layer's local loss on positive
//! and negative data, and the accuracy the share of those goodness decisions that fall
//! on the right side of `θ`.

use rand::Rng;
use rand_chacha::ChaCha8Rng;

use super::{Learner, StepCx, TensorSpec};
use crate::activation::Activation;
use crate::backend::{Axpby, ColumnOp, Epilogue, Gemm, LayerGrad, LossGrad, Mat};
use crate::error::{Error, Result};
use crate::init::{learner_rng, rng_from_state_under, rng_state_under};
use crate::layer::LayerSpec;
use crate::loss::Loss;

/// How negative data gets its wrong label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Negatives {
    /// `(y + k) mod classes` with one random shift `k` per step.
    Shifted,
    /// The wrong label the network currently finds best (the most goodness), as
    /// Hinton picks negatives from the network's own predictions; costs one forward
    /// pass per class per step.
    Hardest,
}

impl Negatives {
    fn name(self) -> &'static str {
        match self {
            Negatives::Shifted => "shifted",
            Negatives::Hardest => "hardest",
        }
    }
}

/// The forward-forward learner (`ff`). See the [module docs](self).
#[derive(Debug, Clone)]
pub struct ForwardForward {
    threshold: f32,
    label_value: f32,
    negatives: Negatives,
    /// Whether the prediction leaves out the first hidden layer's goodness.
    skip_first: bool,
    rng: ChaCha8Rng,
}

impl Default for ForwardForward {
    /// Threshold `θ = 2` on the mean squared activity, labels written as 1.0.
    fn default() -> Self {
        ForwardForward {
            threshold: 2.0,
            label_value: 1.0,
            negatives: Negatives::Hardest,
            skip_first: false,
            rng: learner_rng(0),
        }
    }
}

/// Added to each sample's norm before normalising (an all-zero activity stays zero).
const EPS: f32 = 1e-4;
const LOGITS: &str = "ff.logits";
const LOGIT_GRAD: &str = "ff.logit_grad";
const TARGET_POS: &str = "ff.target.positive";
const TARGET_NEG: &str = "ff.target.negative";
const MINUS_THETA: &str = "ff.minus_threshold";
const DELTA: &str = "ff.delta";
const SCORES: &str = "ff.scores";
/// Where the negative-label stream's state sits among the checkpointed state.
const RNG_KEY: &str = "negative_rng.";
const HARDEST: &str = "ff.hardest";

/// The two kinds of data a step runs.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Phase {
    Positive,
    Negative,
}

impl Phase {
    fn name(self) -> &'static str {
        match self {
            Phase::Positive => "positive",
            Phase::Negative => "negative",
        }
    }
}

fn input(phase: Phase) -> String {
    format!("ff.{}.input", phase.name())
}

fn normalized(phase: Phase, l: usize) -> String {
    format!("ff.{}.normalized.{l}", phase.name())
}

fn activity(phase: Phase, l: usize) -> String {
    format!("ff.{}.activity.{l}", phase.name())
}

impl ForwardForward {
    /// The goodness threshold `θ` (on the mean squared activity).
    pub fn with_threshold(mut self, threshold: f32) -> Self {
        self.threshold = threshold;
        self
    }

    /// The value the label's input takes (the others of the first `classes` are 0).
    pub fn with_label_value(mut self, value: f32) -> Self {
        self.label_value = value;
        self
    }

    /// How negative labels are chosen.
    pub fn with_negatives(mut self, negatives: Negatives) -> Self {
        self.negatives = negatives;
        self
    }

    /// Whether the prediction leaves out the first hidden layer's goodness (as Hinton
    /// does for his four-layer net; the default sums every hidden layer, which measured
    /// better on two: 96.3% against 95.8% after three MNIST epochs of 784-500-500).
    pub fn skipping_first_layer(mut self, skip: bool) -> Self {
        self.skip_first = skip;
        self
    }

    fn check_settings(&self) -> Result<()> {
        for (what, v) in [
            ("threshold", self.threshold),
            ("label value", self.label_value),
        ] {
            if !v.is_finite() {
                return Err(Error::config(format!(
                    "forward-forward {what} must be finite, got {v}"
                )));
            }
        }
        Ok(())
    }

    /// Hidden layers: every layer but the last (the unused classifier).
    fn hidden(layers: &[LayerSpec]) -> usize {
        layers.len() - 1
    }

    /// The hidden layers whose goodness the prediction sums.
    fn scored(&self, layers: &[LayerSpec]) -> std::ops::Range<usize> {
        let hidden = Self::hidden(layers);
        usize::from(self.skip_first && hidden >= 2)..hidden
    }

    /// Writes `labels` (a `classes x batch` one-hot region) times the label value into
    /// the first `classes` rows of `to`, the rest of the image from the batch.
    fn embed(&self, cx: &mut StepCx<'_>, to: Mat, labels: Option<(Mat, usize)>) -> Result<()> {
        let (x, classes) = (cx.input(), cx.targets().rows);
        let backend = cx.backend();
        backend.axpby(&Axpby::copy(to, x))?;
        let head = to.rows(0, classes);
        match labels {
            // Rows rolled by `shift`: row r takes row (r - shift) mod classes.
            Some((t, shift)) => {
                let v = self.label_value;
                let keep = classes - shift;
                backend.axpby(&Axpby::new(head.rows(shift, keep), v, t.rows(0, keep), 0.0))?;
                backend.axpby(&Axpby::new(
                    head.rows(0, shift),
                    v,
                    t.rows(keep, shift),
                    0.0,
                ))
            }
            None => backend.fill(head, 0.0),
        }
    }

    /// Every hidden layer on the data in `input(phase)`: normalised input, activity.
    fn forward(&self, cx: &mut StepCx<'_>, phase: Phase) -> Result<()> {
        for l in 0..Self::hidden(cx.layers()) {
            let below = match l {
                0 => cx.tensor(&input(phase))?,
                _ => cx.tensor(&activity(phase, l - 1))?,
            };
            let (unit, h) = (
                cx.tensor(&normalized(phase, l))?,
                cx.tensor(&activity(phase, l))?,
            );
            let (w, bias, activation) = (cx.weights(l), cx.bias(l), cx.layers()[l].activation());
            let backend = cx.backend();
            let length = (below.rows as f32).sqrt();
            backend.columns(&ColumnOp::normalize(unit, below, length, EPS))?;
            backend.gemm_then(
                &Gemm::new(h, w, false, unit, false),
                Epilogue::BiasActivation { bias, activation },
            )?;
        }
        Ok(())
    }

    /// Layer `l`'s local loss on `phase` (into the step's statistics) and its weight
    /// and bias gradients, added to what is there when `accumulate`.
    fn local_update(
        &self,
        cx: &mut StepCx<'_>,
        phase: Phase,
        l: usize,
        accumulate: bool,
    ) -> Result<()> {
        let (logits, grad, delta) = (
            cx.tensor(LOGITS)?,
            cx.tensor(LOGIT_GRAD)?,
            cx.tensor(DELTA)?,
        );
        let target = cx.tensor(match phase {
            Phase::Positive => TARGET_POS,
            Phase::Negative => TARGET_NEG,
        })?;
        let (h, unit) = (
            cx.tensor(&activity(phase, l))?,
            cx.tensor(&normalized(phase, l))?,
        );
        let delta = delta.rows(0, h.rows);
        let (minus_theta, stats, activation) = (
            cx.tensor(MINUS_THETA)?,
            cx.stats(),
            cx.layers()[l].activation(),
        );
        let (gw, gb) = (cx.grad_weights(l), cx.grad_bias(l));
        let backend = cx.backend();
        // Logits [G - θ; 0] against a one-hot "positive" / "negative" target: the
        // cross-entropy is the logistic loss, its gradient (σ(G - θ) - t) / batch.
        let goodness = logits.rows(0, 1);
        backend.columns(&ColumnOp::mean_squares(goodness, h, false))?;
        backend.bias_activation(goodness, minus_theta, Activation::Identity)?;
        backend.loss_grad(&LossGrad {
            loss: Loss::SoftmaxCrossEntropy,
            output: logits,
            target,
            grad,
            stats,
        })?;
        // ∂loss/∂h = (2 / n) h ⊙ (σ(G - θ) - t), then through the activation.
        backend.axpby(&Axpby::new(delta, 2.0 / h.rows as f32, h, 0.0))?;
        backend.columns(&ColumnOp::scale(delta, grad.rows(0, 1)))?;
        backend.activation_grad(delta, h, activation)?;
        backend.layer_grads(&[LayerGrad {
            beta: if accumulate { 1.0 } else { 0.0 },
            ..LayerGrad::new(delta, unit, gw, gb)
        }])
    }
}

impl ForwardForward {
    /// Each label's goodness for the batch (summed over the scored layers) into the
    /// `classes x batch` region `scores`, running the hidden layers once per label.
    fn label_scores(&self, cx: &mut StepCx<'_>, scores: Mat) -> Result<()> {
        let layers = cx.layers().to_vec();
        cx.backend().fill(scores, 0.0)?;
        let x = cx.tensor(&input(Phase::Positive))?;
        for c in 0..scores.rows {
            self.embed(cx, x, None)?;
            let label = x.rows(c, 1);
            cx.backend().fill(label, self.label_value)?;
            self.forward(cx, Phase::Positive)?;
            for l in self.scored(&layers) {
                let h = cx.tensor(&activity(Phase::Positive, l))?;
                cx.backend()
                    .columns(&ColumnOp::mean_squares(scores.rows(c, 1), h, true))?;
            }
        }
        Ok(())
    }
}

impl Learner for ForwardForward {
    fn name(&self) -> String {
        "ff".into()
    }

    fn tensors(&self, layers: &[LayerSpec]) -> Vec<TensorSpec> {
        let widest = layers.iter().map(|l| l.outputs()).max().unwrap_or(0);
        let mut specs = vec![
            TensorSpec::per_sample(LOGITS, 2),
            TensorSpec::per_sample(LOGIT_GRAD, 2),
            TensorSpec::per_sample(TARGET_POS, 2),
            TensorSpec::per_sample(TARGET_NEG, 2),
            TensorSpec::per_sample(DELTA, widest),
            TensorSpec::fixed(MINUS_THETA, 1, 1),
            TensorSpec::per_sample(SCORES, layers[layers.len() - 1].outputs()),
            TensorSpec::per_sample(HARDEST, layers[layers.len() - 1].outputs()),
        ];
        for phase in [Phase::Positive, Phase::Negative] {
            specs.push(TensorSpec::per_sample(input(phase), layers[0].inputs()));
            for (l, layer) in layers.iter().enumerate().take(Self::hidden(layers)) {
                specs.push(TensorSpec::per_sample(normalized(phase, l), layer.inputs()));
                specs.push(TensorSpec::per_sample(activity(phase, l), layer.outputs()));
            }
        }
        specs
    }

    fn init(&mut self, cx: &mut StepCx<'_>, seed: u64) -> Result<()> {
        self.check_settings()?;
        super::require_dense(cx.layers(), "forward-forward trains")?;
        let (inputs, classes) = (cx.layers()[0].inputs(), cx.targets().rows);
        if classes < 2 || inputs < classes {
            return Err(Error::Unsupported(format!(
                "forward-forward writes the label into the first {classes} of the {inputs} inputs: it needs at least 2 classes and as many inputs"
            )));
        }
        // tanh and sigmoid keep every unit's square below 1, so their goodness does too.
        let bounded = cx.layers()[..Self::hidden(cx.layers())]
            .iter()
            .find(|l| matches!(l.activation(), Activation::Tanh | Activation::Sigmoid));
        if let Some(layer) = bounded.filter(|_| self.threshold >= 1.0) {
            return Err(Error::config(format!(
                "forward-forward: the goodness (mean squared activity) of a {} layer stays below 1, so the threshold {} is out of reach; use relu layers or a threshold below 1 (--settings threshold=0.5)",
                layer.activation(),
                self.threshold
            )));
        }
        if cx.layers().len() < 2 {
            return Err(Error::Unsupported(
                "forward-forward needs at least one hidden layer before the (unused) output layer"
                    .into(),
            ));
        }
        self.rng = learner_rng(seed);
        let minus_theta = cx.tensor(MINUS_THETA)?;
        cx.backend()
            .write(minus_theta.buf, minus_theta.offset, &[-self.threshold])
    }

    fn infer(&mut self, cx: &mut StepCx<'_>) -> Result<()> {
        let scores = cx.output(cx.layers().len() - 1);
        self.label_scores(cx, scores)
    }

    fn step(&mut self, cx: &mut StepCx<'_>) -> Result<()> {
        let classes = cx.targets().rows;
        let (targets, pos, neg) = (
            cx.targets(),
            cx.tensor(&input(Phase::Positive))?,
            cx.tensor(&input(Phase::Negative))?,
        );
        let wrong = match self.negatives {
            Negatives::Shifted => (targets, self.rng.random_range(1..classes)),
            Negatives::Hardest => {
                // The true label's score pushed far below any goodness, then argmax.
                let (scores, hardest) = (cx.tensor(SCORES)?, cx.tensor(HARDEST)?);
                self.label_scores(cx, scores)?;
                let backend = cx.backend();
                backend.axpby(&Axpby::new(scores, -1e9, targets, 1.0))?;
                backend.columns(&ColumnOp::argmax_one_hot(hardest, scores))?;
                (hardest, 0)
            }
        };
        self.embed(cx, pos, Some((targets, 0)))?;
        self.embed(cx, neg, Some(wrong))?;
        let (logits, t_pos, t_neg) = (
            cx.tensor(LOGITS)?,
            cx.tensor(TARGET_POS)?,
            cx.tensor(TARGET_NEG)?,
        );
        let backend = cx.backend();
        backend.fill(logits.rows(1, 1), 0.0)?;
        for (t, hot) in [(t_pos, 0), (t_neg, 1)] {
            backend.fill(t.rows(hot, 1), 1.0)?;
            backend.fill(t.rows(1 - hot, 1), 0.0)?;
        }
        for phase in [Phase::Positive, Phase::Negative] {
            self.forward(cx, phase)?;
        }
        let hidden = Self::hidden(cx.layers());
        for l in 0..hidden {
            self.local_update(cx, Phase::Positive, l, false)?;
            self.local_update(cx, Phase::Negative, l, true)?;
        }
        // The output layer is not part of forward-forward.
        let (gw, gb) = (cx.grad_weights(hidden), cx.grad_bias(hidden));
        cx.backend().fill(gw, 0.0)?;
        cx.backend().fill(gb, 0.0)
    }

    fn state(&self) -> Vec<(String, String)> {
        let mut state = vec![
            ("threshold".into(), self.threshold.to_string()),
            ("label_value".into(), self.label_value.to_string()),
            ("negatives".into(), self.negatives.name().into()),
            ("skip_first_layer".into(), self.skip_first.to_string()),
        ];
        state.extend(rng_state_under(RNG_KEY, &self.rng));
        state
    }

    fn restore_state(&mut self, state: &[(String, String)]) -> Result<()> {
        for (key, v) in state {
            let bad = || Error::config(format!("ff setting {key} = {v:?} does not parse"));
            match key.as_str() {
                "threshold" => self.threshold = v.parse().map_err(|_| bad())?,
                "label_value" => self.label_value = v.parse().map_err(|_| bad())?,
                "skip_first_layer" => self.skip_first = v.parse().map_err(|_| bad())?,
                "negatives" => {
                    self.negatives = match v.as_str() {
                        "shifted" => Negatives::Shifted,
                        "hardest" => Negatives::Hardest,
                        _ => return Err(bad()),
                    }
                }
                _ if key.starts_with(RNG_KEY) => {}
                _ => return Err(Error::config(format!("ff has no setting {key}"))),
            }
        }
        if state.iter().any(|(k, _)| k.starts_with(RNG_KEY)) {
            self.rng = rng_from_state_under(RNG_KEY, state)?;
        }
        self.check_settings()
    }
}
