//! Backpropagation: `δ_l = (W_{l+1}^T δ_{l+1}) ⊙ f'(h_l)`, one layer after another.

use super::{apply_derivatives, StepViews};
use crate::backend::{Backend, Gemm};
use crate::error::Result;

pub(super) fn hidden_deltas(
    backend: &mut dyn Backend,
    views: &dyn StepViews,
    batch: usize,
) -> Result<()> {
    let hidden = views.layers().len() - 1;
    for l in (0..hidden).rev() {
        let product = Gemm::new(
            views.delta(l, batch),
            views.weights(l + 1),
            true,
            views.delta(l + 1, batch),
            false,
        );
        backend.gemm(&product)?;
        apply_derivatives(backend, views, batch, l)?;
    }
    Ok(())
}
