//! Feedback alignment: backprop's chain with each `W_{l+1}^T` replaced by a fixed
//! random `B_{l+1}^T`. `B` is stored shaped like the `W` it stands in for, so setting
//! `B = W` reproduces backprop exactly.

use super::{sequential_chain, weighted_index, FeedbackShape, StepViews};
use crate::backend::Backend;
use crate::error::Result;
use crate::layer::LayerSpec;

/// One `B` per layer with weights above the first, shaped like its weights.
pub(super) fn feedback_shapes(layers: &[LayerSpec]) -> Vec<FeedbackShape> {
    layers
        .iter()
        .filter_map(LayerSpec::weight_shape)
        .skip(1)
        .map(|w| FeedbackShape {
            rows: w.rows,
            cols: w.cols,
            fan: w.fan_out,
            fan_in: w.fan_in,
        })
        .collect()
}

pub(super) fn hidden_deltas(
    backend: &mut dyn Backend,
    views: &dyn StepViews,
    batch: usize,
) -> Result<()> {
    sequential_chain(backend, views, batch, |l| {
        views.feedback(weighted_index(views, l) - 1)
    })
}
