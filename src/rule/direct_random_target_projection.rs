//! Direct random target projection: `δ_l = -(B_l t) ⊙ f'(h_l) / batch` from the one-hot
//! target `t` through DFA-shaped fixed random `B_l` (`hidden_l x outputs`). The output
//! error is not used, so a layer's update needs only its own forward output.
//!
//! Sign: the projected target acts as a NEGATIVE error (Frenkel et al. 2021), so the
//! update `-δ h^T` moves each layer's output towards `B_l t`. `1/batch` matches the
//! batch-mean scaling of the output error, so SGD learning rates carry over.

use super::{project_to_hidden, StepViews};
use crate::backend::Backend;
use crate::error::Result;

pub(super) fn hidden_deltas(
    backend: &mut dyn Backend,
    views: &dyn StepViews,
    batch: usize,
) -> Result<()> {
    let targets = views.targets(batch);
    project_to_hidden(backend, views, batch, targets, -1.0 / batch as f32)
}
