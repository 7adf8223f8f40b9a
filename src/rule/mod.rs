//! Learning rules: how the error at the output becomes a delta at every hidden layer.
//!
//! That is all a rule decides. The forward pass, the loss, the weight-gradient products
//! `ΔW_l = δ_l h_{l-1}^T` and the optimizer are shared, so each rule is a small module:
//!
//! | rule | hidden delta | dependent products |
//! |------|--------------|--------------------|
//! | [`Rule::Backprop`] | `δ_l = (W_{l+1}^T δ_{l+1}) ⊙ f'(h_l)` | `L-1`, in sequence |
//! | [`Rule::FeedbackAlignment`] | `δ_l = (B_{l+1}^T δ_{l+1}) ⊙ f'(h_l)`, `B` fixed random | `L-1`, in sequence |
//! | [`Rule::DirectFeedbackAlignment`] | `δ_l = (B_l e) ⊙ f'(h_l)`, all `l` from one product | 1 |
//! | [`Rule::IndirectFeedbackAlignment`] | `δ_1 = (B_1 e) ⊙ f'(h_1)`, then `δ_{l+1} = (W_{l+1} δ_l) ⊙ f'(h_{l+1})` | `L-1`, in sequence (forwards) |
//! | [`Rule::UniformSignSymmetry`] | FA's chain with `B = s · sign(W)` | `L-1`, in sequence |
//! | [`Rule::BatchRandomSignSymmetry`] | FA's chain with `B = \|M\| ⊙ sign(W)`, `M` redrawn every batch | `L-1`, in sequence |
//! | [`Rule::FixedRandomSignSymmetry`] | FA's chain with `B = \|M_0\| ⊙ sign(W)`, `M_0` drawn once | `L-1`, in sequence |
//! | [`Rule::DirectRandomTargetProjection`] | `δ_l = -(B_l t) ⊙ f'(h_l) / batch`, `t` the one-hot target | 0 (no error needed) |
//! | [`Rule::LastLayerOnly`] | `δ_l = 0`: hidden layers stay at their initial values | 0 |
//!
//! Sign-symmetric rules derive `B` from the current `W` before every backward pass
//! (see [`Rule::sign_symmetric`]); the others keep fixed feedback.

mod backprop;
mod direct_feedback_alignment;
mod direct_random_target_projection;
mod feedback_alignment;
mod indirect_feedback_alignment;
mod sign_symmetry;

use rand_chacha::ChaCha8Rng;

use crate::backend::{Backend, Epilogue, Gemm, Mat};
use crate::error::Result;
use crate::init::FeedbackInit;
use crate::layer::{weighted_layers, Derivative, LayerIo, LayerSpec};

/// A learning rule (see the [module docs](self) for the formulas).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Rule {
    /// Backpropagation: exact gradients.
    #[default]
    Backprop,
    /// Feedback alignment (Lillicrap et al. 2016): the error travels back layer by
    /// layer through fixed random matrices `B_l` shaped like `W_l`, used as `B_l^T`.
    FeedbackAlignment,
    /// Direct feedback alignment (Nøkland 2016): the output error reaches every hidden
    /// layer at once through its own fixed random `B_l` (`hidden x outputs`).
    DirectFeedbackAlignment,
    /// Indirect feedback alignment (Nøkland 2016): the output error reaches the first
    /// hidden layer through a fixed random `B` (`hidden_1 x outputs`) and is carried
    /// up to the other hidden layers through the forward weights.
    IndirectFeedbackAlignment,
    /// Uniform sign-concordant feedback (Liao et al. 2016, "uSF"): FA with
    /// `B = s · sign(W)`, `s = 1/sqrt(rows of W)`, recomputed from `W` every step.
    UniformSignSymmetry,
    /// Batchwise random-magnitude sign-concordant feedback ("brSF"): FA with
    /// `B = |M| ⊙ sign(W)`, `M` redrawn from the feedback stream every batch.
    BatchRandomSignSymmetry,
    /// Fixed random-magnitude sign-concordant feedback ("frSF"): FA with
    /// `B = |M_0| ⊙ sign(W)`, `M_0` drawn once.
    FixedRandomSignSymmetry,
    /// Direct random target projection (Frenkel et al. 2021): every hidden layer gets
    /// `δ_l = -(B_l t) ⊙ f'(h_l)` from the one-hot target `t`, so it needs no error and
    /// could update as soon as its forward output exists. The minus sign makes the
    /// projected target act as a negative error (as in the paper); the `1/batch`
    /// matches the scale of the batch-mean output error.
    DirectRandomTargetProjection,
    /// Only the output layer learns; the hidden layers stay frozen at their initial
    /// values (the floor every rule is compared with).
    LastLayerOnly,
}

/// Shape of one feedback matrix, and the fan (error width) its init scales by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FeedbackShape {
    /// Rows.
    pub rows: usize,
    /// Columns.
    pub cols: usize,
    /// Width of the error it combines.
    pub fan: usize,
    /// The other fan of the weights it stands in for (their fan-in for FA; its rows
    /// for the direct rules), for [`FeedbackInit::Xavier`].
    pub fan_in: usize,
}

impl Rule {
    /// Every rule.
    pub const ALL: [Rule; 9] = [
        Rule::Backprop,
        Rule::FeedbackAlignment,
        Rule::DirectFeedbackAlignment,
        Rule::IndirectFeedbackAlignment,
        Rule::UniformSignSymmetry,
        Rule::BatchRandomSignSymmetry,
        Rule::FixedRandomSignSymmetry,
        Rule::DirectRandomTargetProjection,
        Rule::LastLayerOnly,
    ];

    /// Short name (`bp`, `fa`, `dfa`, `ifa`, `usf`, `brsf`, `frsf`, `drtp`, `last`).
    pub fn name(self) -> &'static str {
        match self {
            Rule::Backprop => "bp",
            Rule::FeedbackAlignment => "fa",
            Rule::DirectFeedbackAlignment => "dfa",
            Rule::IndirectFeedbackAlignment => "ifa",
            Rule::UniformSignSymmetry => "usf",
            Rule::BatchRandomSignSymmetry => "brsf",
            Rule::FixedRandomSignSymmetry => "frsf",
            Rule::DirectRandomTargetProjection => "drtp",
            Rule::LastLayerOnly => "last",
        }
    }

    /// Parses [`Rule::name`] (also the long names).
    pub fn from_name(name: &str) -> Option<Rule> {
        match name.to_ascii_lowercase().as_str() {
            "bp" | "backprop" | "backpropagation" => Some(Rule::Backprop),
            "fa" | "feedback-alignment" => Some(Rule::FeedbackAlignment),
            "dfa" | "direct-feedback-alignment" => Some(Rule::DirectFeedbackAlignment),
            "ifa" | "indirect-feedback-alignment" => Some(Rule::IndirectFeedbackAlignment),
            "usf" => Some(Rule::UniformSignSymmetry),
            "brsf" => Some(Rule::BatchRandomSignSymmetry),
            "frsf" => Some(Rule::FixedRandomSignSymmetry),
            "drtp" | "direct-random-target-projection" => Some(Rule::DirectRandomTargetProjection),
            "last" | "last-layer" | "last-layer-only" => Some(Rule::LastLayerOnly),
            _ => None,
        }
    }

    /// The feedback matrices this rule needs for `layers`, one per hidden layer with
    /// weights (none for backprop). The `i`-th weighted layer's matrix is index `i`.
    pub fn feedback_shapes(self, layers: &[LayerSpec]) -> Vec<FeedbackShape> {
        match self {
            Rule::Backprop | Rule::LastLayerOnly => Vec::new(),
            Rule::FeedbackAlignment
            | Rule::UniformSignSymmetry
            | Rule::BatchRandomSignSymmetry
            | Rule::FixedRandomSignSymmetry => feedback_alignment::feedback_shapes(layers),
            Rule::DirectFeedbackAlignment | Rule::DirectRandomTargetProjection => {
                direct_feedback_alignment::feedback_shapes(layers)
            }
            Rule::IndirectFeedbackAlignment => indirect_feedback_alignment::feedback_shapes(layers),
        }
    }

    /// Whether `B` is derived from the forward weights before every backward pass.
    pub fn sign_symmetric(self) -> bool {
        matches!(
            self,
            Rule::UniformSignSymmetry
                | Rule::BatchRandomSignSymmetry
                | Rule::FixedRandomSignSymmetry
        )
    }

    /// Whether the rule keeps random magnitudes `M` beside its feedback (brSF, frSF).
    pub(crate) fn has_magnitudes(self) -> bool {
        matches!(
            self,
            Rule::BatchRandomSignSymmetry | Rule::FixedRandomSignSymmetry
        )
    }

    /// The first layer whose parameters the rule changes (all but the output layer
    /// stay frozen under [`Rule::LastLayerOnly`]).
    pub fn first_trained_layer(self, layers: usize) -> usize {
        match self {
            Rule::LastLayerOnly => layers.saturating_sub(1),
            _ => 0,
        }
    }

    /// How feedback matrix `i` relates to forward weights, for alignment
    /// measurements: `Some((l, false))` when it stands in for the weights of layer `l`
    /// and is stored shaped like them (FA and the sign-symmetric rules), `Some((l,
    /// true))` when it is stored transposed (DFA and DRTP's last hidden layer, `hidden
    /// x outputs`, against the output layer's weights), `None` when it has no forward
    /// counterpart.
    pub fn feedback_counterpart(self, i: usize, layers: &[LayerSpec]) -> Option<(usize, bool)> {
        let weighted = weighted_layers(layers);
        let next = *weighted.get(i + 1)?;
        match self {
            Rule::FeedbackAlignment
            | Rule::UniformSignSymmetry
            | Rule::BatchRandomSignSymmetry
            | Rule::FixedRandomSignSymmetry => Some((next, false)),
            Rule::DirectFeedbackAlignment | Rule::DirectRandomTargetProjection
                if i + 2 == weighted.len() =>
            {
                Some((next, true))
            }
            _ => None,
        }
    }

    /// The layer whose delta feedback matrix `i` forms (the `i`-th layer with weights;
    /// the first one for IFA).
    pub fn feedback_target(self, i: usize, layers: &[LayerSpec]) -> Option<usize> {
        weighted_layers(layers).get(i).copied()
    }

    /// Dependent operations between the output error and the last hidden delta: the
    /// length of the chain no hardware parallelism can shorten (each a GEMM, or a GEMM
    /// followed by its elementwise derivative).
    pub fn delta_chain_len(self, layers: &[LayerSpec]) -> usize {
        let first = weighted_layers(layers).first().copied().unwrap_or(0);
        let hidden = layers.len().saturating_sub(1 + first);
        match self {
            Rule::Backprop
            | Rule::FeedbackAlignment
            | Rule::IndirectFeedbackAlignment
            | Rule::UniformSignSymmetry
            | Rule::BatchRandomSignSymmetry
            | Rule::FixedRandomSignSymmetry => hidden,
            Rule::DirectFeedbackAlignment => usize::from(hidden > 0),
            Rule::DirectRandomTargetProjection | Rule::LastLayerOnly => 0,
        }
    }
}

impl std::fmt::Display for Rule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Where a step's tensors live, for the rules to address.
pub(crate) trait StepViews {
    /// The layers.
    fn layers(&self) -> &[LayerSpec];
    /// Indices of the layers with weights.
    fn weighted(&self) -> &[usize];
    /// Everything layer `l` reads and writes for a batch.
    fn io(&self, l: usize, batch: usize) -> LayerIo;
    /// Output of layer `l` (`outputs x batch`).
    fn output(&self, l: usize, batch: usize) -> Mat;
    /// Delta of layer `l` (`outputs x batch`); the last layer's is the output error.
    fn delta(&self, l: usize, batch: usize) -> Mat;
    /// The deltas of all hidden layers with weights, stacked (`Σ outputs x batch`).
    fn hidden_deltas(&self, batch: usize) -> Mat;
    /// The outputs of the same layers stacked, in the same row order as
    /// [`StepViews::hidden_deltas`].
    fn hidden_outputs(&self, batch: usize) -> Mat;
    /// Weights of layer `l` (empty for weightless layers).
    fn weights(&self, l: usize) -> Mat;
    /// Feedback matrix `i` of the rule.
    fn feedback(&self, i: usize) -> Mat;
    /// All feedback matrices stacked by rows (when they share a column count).
    fn feedback_stacked(&self) -> Mat;
    /// Random magnitudes `M_i` beside feedback matrix `i` (brSF, frSF), same shape.
    fn magnitude(&self, i: usize) -> Mat;
    /// The batch's targets (`outputs x batch`, one-hot for classification).
    fn targets(&self, batch: usize) -> Mat;
}

/// Derives the rule's feedback from the current weights before a backward pass
/// (sign-symmetric rules; a no-op for the others). brSF redraws its magnitudes here,
/// on the backend, from a seed taken from `rng`.
pub(crate) fn prepare_feedback(
    rule: Rule,
    backend: &mut dyn Backend,
    views: &dyn StepViews,
    rng: &mut ChaCha8Rng,
    init: FeedbackInit,
) -> Result<()> {
    if rule.sign_symmetric() {
        sign_symmetry::prepare(rule, backend, views, rng, init)
    } else {
        Ok(())
    }
}

/// Fills the delta of every hidden layer the rule trains (all of them but under
/// [`Rule::LastLayerOnly`]), given the output error in the last delta.
pub(crate) fn hidden_deltas(
    rule: Rule,
    backend: &mut dyn Backend,
    views: &dyn StepViews,
    batch: usize,
) -> Result<()> {
    match rule {
        Rule::Backprop => backprop::hidden_deltas(backend, views, batch),
        Rule::FeedbackAlignment
        | Rule::UniformSignSymmetry
        | Rule::BatchRandomSignSymmetry
        | Rule::FixedRandomSignSymmetry => feedback_alignment::hidden_deltas(backend, views, batch),
        Rule::IndirectFeedbackAlignment => {
            indirect_feedback_alignment::hidden_deltas(backend, views, batch)
        }
        Rule::DirectRandomTargetProjection => {
            direct_random_target_projection::hidden_deltas(backend, views, batch)
        }
        // `δ_l = 0` for every hidden layer, which the trainer leaves out of the gradient
        // products and the optimizer pass (see `first_trained_layer`), so weight decay
        // and momentum cannot move them either. Nothing reads those deltas, and not
        // zeroing them saves a pass over them every step: 0.11-0.16 ms of a 4-5 ms
        // step at 784-1024x3-10, batch 128.
        Rule::LastLayerOnly => Ok(()),
        Rule::DirectFeedbackAlignment => {
            direct_feedback_alignment::hidden_deltas(backend, views, batch)
        }
    }
}

/// The layer-by-layer chain BP and FA share: from the output layer down to the first
/// layer with weights, each layer's input gradient through `via(l)` (layer `l`'s
/// weights or the tensor standing in for them; weightless layers pass the gradient
/// exactly), times the activation derivative of the layer below.
fn sequential_chain(
    backend: &mut dyn Backend,
    views: &dyn StepViews,
    batch: usize,
    via: impl Fn(usize) -> Mat,
) -> Result<()> {
    let layers = views.layers();
    let Some(&first) = views.weighted().first() else {
        return Ok(());
    };
    for l in (first + 1..layers.len()).rev() {
        let through = if layers[l].has_weights() {
            via(l)
        } else {
            views.weights(l)
        };
        let derivative = Derivative {
            h: views.output(l - 1, batch),
            activation: layers[l - 1].activation(),
        };
        layers[l].layer().backward_input(
            backend,
            &views.io(l, batch),
            through,
            views.delta(l, batch),
            views.delta(l - 1, batch),
            Some(derivative),
        )?;
    }
    Ok(())
}

/// The position of layer `l` among the layers with weights.
fn weighted_index(views: &dyn StepViews, l: usize) -> usize {
    views
        .weighted()
        .iter()
        .position(|&w| w == l)
        .unwrap_or_default()
}

/// The hidden layers with weights (all but the output layer).
fn hidden_weighted(views: &dyn StepViews) -> &[usize] {
    let w = views.weighted();
    &w[..w.len().saturating_sub(1)]
}

/// Every hidden delta from ONE product of the stacked feedback with `source`
/// (`outputs x batch`), scaled by `alpha`, times each layer's activation derivative:
/// fused into the product when the hidden layers share an activation (one dispatch in
/// all), else one derivative pass per layer. The direct rules (DFA, DRTP) differ only
/// in what they project.
fn project_to_hidden(
    backend: &mut dyn Backend,
    views: &dyn StepViews,
    batch: usize,
    source: Mat,
    alpha: f32,
) -> Result<()> {
    let hidden = hidden_weighted(views);
    if hidden.is_empty() {
        return Ok(());
    }
    let mut product = Gemm::new(
        views.hidden_deltas(batch),
        views.feedback_stacked(),
        false,
        source,
        false,
    );
    product.alpha = alpha;
    let layers = views.layers();
    let activation = layers[hidden[0]].activation();
    if hidden.iter().all(|&l| layers[l].activation() == activation) {
        let then = Epilogue::ActivationGrad {
            h: views.hidden_outputs(batch),
            activation,
        };
        backend.gemm_then(&product, then)
    } else {
        backend.gemm(&product)?;
        hidden.iter().try_for_each(|&l| {
            backend.activation_grad(
                views.delta(l, batch),
                views.output(l, batch),
                layers[l].activation(),
            )
        })
    }
}
