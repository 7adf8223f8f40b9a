//! Direct feedback alignment: every hidden delta straight from the output error,
//! `δ_l = (B_l e) ⊙ f'(h_l)`. The `B_l` are stacked into one `Σ hidden x outputs`
//! matrix and the hidden deltas into one `Σ hidden x batch` matrix, so all layers'
//! deltas come from ONE product, and no layer waits on another.

use super::{project_to_hidden, FeedbackShape, StepViews};
use crate::backend::Backend;
use crate::error::Result;
use crate::layer::LayerSpec;

/// One `B_l` (`outputs of l x classes`) per hidden layer with weights; for a
/// convolution that is its whole `C·H·W` output map (as in Nøkland 2016).
pub(super) fn feedback_shapes(layers: &[LayerSpec]) -> Vec<FeedbackShape> {
    let outputs = layers.last().map_or(0, |l| l.outputs());
    layers[..layers.len().saturating_sub(1)]
        .iter()
        .filter(|l| l.has_weights())
        .map(|hidden| FeedbackShape {
            rows: hidden.outputs(),
            cols: outputs,
            fan: outputs,
            fan_in: hidden.outputs(),
        })
        .collect()
}

pub(super) fn hidden_deltas(
    backend: &mut dyn Backend,
    views: &dyn StepViews,
    batch: usize,
) -> Result<()> {
    let error = views.delta(views.layers().len() - 1, batch);
    project_to_hidden(backend, views, batch, error, 1.0)
}
