//! Last-layer-only training: hidden deltas are zero. The trainer also leaves the
//! hidden layers out of the gradient products and the optimizer pass (see
//! [`Rule::first_trained_layer`](super::Rule::first_trained_layer)), so weight decay
//! and momentum cannot move them either.

use super::StepViews;
use crate::backend::Backend;
use crate::error::Result;

pub(super) fn hidden_deltas(
    backend: &mut dyn Backend,
    views: &dyn StepViews,
    batch: usize,
) -> Result<()> {
    let hidden = views.hidden_deltas(batch);
    if hidden.is_empty() {
        return Ok(());
    }
    backend.fill(hidden, 0.0)
}
