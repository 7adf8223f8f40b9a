//! Feedback alignment: backprop's chain with each `W_{l+1}^T` replaced by a fixed
//! random `B_{l+1}^T`. `B` is stored shaped like the `W` it stands in for, so setting
//! `B = W` reproduces backprop exactly.

use super::{apply_derivatives, FeedbackShape, StepViews};
use crate::backend::{Backend, Gemm};
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
    let hidden = views.layers().len() - 1;
    for l in (0..hidden).rev() {
        let product = Gemm::new(
            views.delta(l, batch),
            views.feedback(l),
            true,
            views.delta(l + 1, batch),
            false,
        );
        backend.gemm(&product)?;
        apply_derivatives(backend, views, batch, l)?;
    }
    Ok(())
}
