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

mod backprop;
mod direct_feedback_alignment;
mod feedback_alignment;

use crate::backend::{Backend, Gemm, Mat};
use crate::error::Result;
use crate::network::LayerSpec;

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
}

impl Rule {
    /// Every rule.
    pub const ALL: [Rule; 3] = [
        Rule::Backprop,
        Rule::FeedbackAlignment,
        Rule::DirectFeedbackAlignment,
    ];

    /// Short name (`bp`, `fa`, `dfa`).
    pub fn name(self) -> &'static str {
        match self {
            Rule::Backprop => "bp",
            Rule::FeedbackAlignment => "fa",
            Rule::DirectFeedbackAlignment => "dfa",
        }
    }

    /// Parses [`Rule::name`] (also the long names).
    pub fn from_name(name: &str) -> Option<Rule> {
        match name.to_ascii_lowercase().as_str() {
            "bp" | "backprop" | "backpropagation" => Some(Rule::Backprop),
            "fa" | "feedback-alignment" => Some(Rule::FeedbackAlignment),
            "dfa" | "direct-feedback-alignment" => Some(Rule::DirectFeedbackAlignment),
            _ => None,
        }
    }

    /// The fixed feedback matrices this rule needs for `layers`, one per hidden layer
    /// (none for backprop). Hidden layer `l`'s matrix is index `l`.
    pub fn feedback_shapes(self, layers: &[LayerSpec]) -> Vec<FeedbackShape> {
        match self {
            Rule::Backprop => Vec::new(),
            Rule::FeedbackAlignment => feedback_alignment::feedback_shapes(layers),
            Rule::DirectFeedbackAlignment => direct_feedback_alignment::feedback_shapes(layers),
        }
    }

    /// Dependent operations between the output error and the last hidden delta: the
    /// length of the chain no hardware parallelism can shorten (each a GEMM, or a GEMM
    /// followed by its elementwise derivative).
    pub fn delta_chain_len(self, layers: &[LayerSpec]) -> usize {
        let hidden = layers.len().saturating_sub(1);
        match self {
            Rule::Backprop | Rule::FeedbackAlignment => hidden,
            Rule::DirectFeedbackAlignment => usize::from(hidden > 0),
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
    /// Output of layer `l` (`outputs x batch`).
    fn output(&self, l: usize, batch: usize) -> Mat;
    /// Delta of layer `l` (`outputs x batch`); the last layer's is the output error.
    fn delta(&self, l: usize, batch: usize) -> Mat;
    /// The hidden deltas of all hidden layers stacked (`Σ hidden x batch`).
    fn hidden_deltas(&self, batch: usize) -> Mat;
    /// Weights of layer `l`.
    fn weights(&self, l: usize) -> Mat;
    /// Feedback matrix `i` of the rule.
    fn feedback(&self, i: usize) -> Mat;
    /// All feedback matrices stacked by rows (when they share a column count).
    fn feedback_stacked(&self) -> Mat;
}

/// Fills the delta of every hidden layer, given the output error in the last delta.
pub(crate) fn hidden_deltas(
    rule: Rule,
    backend: &mut dyn Backend,
    views: &dyn StepViews,
    batch: usize,
) -> Result<()> {
    match rule {
        Rule::Backprop => backprop::hidden_deltas(backend, views, batch),
        Rule::FeedbackAlignment => feedback_alignment::hidden_deltas(backend, views, batch),
        Rule::DirectFeedbackAlignment => {
            direct_feedback_alignment::hidden_deltas(backend, views, batch)
        }
    }
}

/// The layer-by-layer chain BP and FA share: `δ_l = (M_l^T δ_{l+1}) ⊙ f'(h_l)` from the
/// top hidden layer down, where `matrix(l)` is `M_l` (stored shaped like `W_{l+1}`).
fn sequential_chain(
    backend: &mut dyn Backend,
    views: &dyn StepViews,
    batch: usize,
    matrix: impl Fn(usize) -> Mat,
) -> Result<()> {
    let hidden = views.layers().len() - 1;
    for l in (0..hidden).rev() {
        let product = Gemm::new(
            views.delta(l, batch),
            matrix(l),
            true,
            views.delta(l + 1, batch),
            false,
        );
        backend.gemm(&product)?;
        apply_derivatives(backend, views, batch, l)?;
    }
    Ok(())
}

/// Multiplies each hidden delta by its layer's activation derivative.
fn apply_derivatives(
    backend: &mut dyn Backend,
    views: &dyn StepViews,
    batch: usize,
    l: usize,
) -> Result<()> {
    let activation = views.layers()[l].activation;
    backend.activation_grad(views.delta(l, batch), views.output(l, batch), activation)
}
