//! Indirect feedback alignment: the output error reaches the FIRST hidden layer through
//! one fixed random `B` (`hidden_1 x outputs`), `δ_1 = (B e) ⊙ f'(h_1)`, and is then
//! carried up through the forward weights, `δ_{l+1} = (W_{l+1} δ_l) ⊙ f'(h_{l+1})`.

use super::{layer_delta, FeedbackShape, StepViews};
use crate::backend::{Backend, Gemm};
use crate::error::Result;
use crate::network::LayerSpec;

pub(super) fn feedback_shapes(layers: &[LayerSpec]) -> Vec<FeedbackShape> {
    let outputs = layers.last().map_or(0, |l| l.outputs);
    match layers {
        [first, _, ..] => vec![FeedbackShape {
            rows: first.outputs,
            cols: outputs,
            fan: outputs,
        }],
        _ => Vec::new(),
    }
}

pub(super) fn hidden_deltas(
    backend: &mut dyn Backend,
    views: &dyn StepViews,
    batch: usize,
) -> Result<()> {
    let layers = views.layers().len();
    if layers < 2 {
        return Ok(());
    }
    let error = views.delta(layers - 1, batch);
    let first = Gemm::new(
        views.delta(0, batch),
        views.feedback(0),
        false,
        error,
        false,
    );
    layer_delta(backend, views, batch, 0, &first)?;
    // Upwards through the forward weights: layer l's delta feeds layer l + 1's.
    for l in 1..layers - 1 {
        let product = Gemm::new(
            views.delta(l, batch),
            views.weights(l),
            false,
            views.delta(l - 1, batch),
            false,
        );
        layer_delta(backend, views, batch, l, &product)?;
    }
    Ok(())
}
