//! Feedback alignment: backprop's chain with each `W_{l+1}^T` replaced by a fixed
//! random `B_{l+1}^T`. `B` is stored shaped like the `W` it stands in for, so setting
//! `B = W` reproduces backprop exactly.

use super::{sequential_chain, FeedbackShape, StepViews};
use crate::backend::Backend;
use crate::error::Result;
use crate::network::LayerSpec;

pub(super) fn feedback_shapes(layers: &[LayerSpec]) -> Vec<FeedbackShape> {
    layers
        .iter()
        .skip(1)
        .map(|next| FeedbackShape {
            rows: next.outputs,
            cols: next.inputs,
            fan: next.outputs,
        })
        .collect()
}

pub(super) fn hidden_deltas(
    backend: &mut dyn Backend,
    views: &dyn StepViews,
    batch: usize,
) -> Result<()> {
    sequential_chain(backend, views, batch, |l| views.feedback(l))
}
