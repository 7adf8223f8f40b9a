//! Indirect feedback alignment: the output error reaches the FIRST hidden layer through
//! one fixed random `B` (`hidden_1 x outputs`), `δ_1 = (B e) ⊙ f'(h_1)`, and is then
//! carried up through the forward weights, `δ_{l+1} = (W_{l+1} δ_l) ⊙ f'(h_{l+1})`.

use super::{hidden_weighted, FeedbackShape, StepViews};
use crate::backend::{Backend, Epilogue, Gemm};
use crate::error::Result;
use crate::layer::LayerSpec;

pub(super) fn feedback_shapes(layers: &[LayerSpec]) -> Vec<FeedbackShape> {
    let outputs = layers.last().map_or(0, |l| l.outputs());
    let weighted: Vec<&LayerSpec> = layers.iter().filter(|l| l.has_weights()).collect();
    match weighted[..] {
        [first, _, ..] => vec![FeedbackShape {
            rows: first.outputs(),
            cols: outputs,
            fan: outputs,
            fan_in: first.outputs(),
        }],
        _ => Vec::new(),
    }
}

pub(super) fn hidden_deltas(
    backend: &mut dyn Backend,
    views: &dyn StepViews,
    batch: usize,
) -> Result<()> {
    let (Some(&first), Some(&top)) = (
        hidden_weighted(views).first(),
        hidden_weighted(views).last(),
    ) else {
        return Ok(());
    };
    let layers = views.layers();
    let error = views.delta(layers.len() - 1, batch);
    let product = Gemm::new(
        views.delta(first, batch),
        views.feedback(0),
        false,
        error,
        false,
    );
    let then = Epilogue::ActivationGrad {
        h: views.output(first, batch),
        activation: layers[first].activation(),
    };
    backend.gemm_then(&product, then)?;
    // Upwards through the forward layers' linear parts: layer l - 1's delta feeds l's.
    for (l, layer) in layers[..=top].iter().enumerate().skip(first + 1) {
        layer.layer().tangent(
            backend,
            &views.io(l, batch),
            views.delta(l - 1, batch),
            views.delta(l, batch),
        )?;
    }
    Ok(())
}
