//! Backpropagation: `δ_l = (W_{l+1}^T δ_{l+1}) ⊙ f'(h_l)`, one layer after another.

use super::{sequential_chain, StepViews};
use crate::backend::Backend;
use crate::error::Result;

pub(super) fn hidden_deltas(
    backend: &mut dyn Backend,
    views: &dyn StepViews,
    batch: usize,
) -> Result<()> {
    sequential_chain(backend, views, batch, |l| views.weights(l))
}
