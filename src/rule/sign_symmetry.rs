//! Sign-concordant feedback (Liao, Leibo & Poggio 2016; Moskovitz et al. 2018): FA's
//! chain with `B` taking the SIGN of the weight it stands in for, recomputed from the
//! current `W` before every backward pass. The three variants differ only in magnitude:
//! uSF one scale per layer, brSF random magnitudes redrawn every batch (on the backend,
//! from the counter-based generator of [`Noise`]), frSF random magnitudes drawn once
//! (kept beside `B` in the magnitude buffer).

use rand::RngCore;
use rand_chacha::ChaCha8Rng;

use super::{FeedbackShape, Rule, StepViews};
use crate::backend::{Backend, Noise};
use crate::error::Result;
use crate::init::FeedbackInit;

/// uSF's scale for a weight whose inputs each reach `fan` outputs: FA's feedback
/// scale `1/sqrt(fan)`.
pub(crate) fn uniform_scale(fan: usize) -> f32 {
    (1.0 / fan.max(1) as f64).sqrt() as f32
}

pub(super) fn prepare(
    rule: Rule,
    backend: &mut dyn Backend,
    views: &dyn StepViews,
    rng: &mut ChaCha8Rng,
    init: FeedbackInit,
) -> Result<()> {
    let weighted = views.weighted();
    for i in 0..weighted.len().saturating_sub(1) {
        let l = weighted[i + 1];
        let (b, w) = (views.feedback(i), views.weights(l));
        let (fan, fan_in) = views.layers()[l]
            .weight_shape()
            .map_or((w.rows, w.cols), |s| (s.fan_out, s.fan_in));
        match rule {
            Rule::UniformSignSymmetry => {
                backend.sign_feedback(b, w, None, uniform_scale(fan))?;
            }
            _ => {
                let m = views.magnitude(i);
                if rule == Rule::BatchRandomSignSymmetry {
                    // Drawn on the backend from a counter-based generator: nothing is
                    // drawn on the host or uploaded per batch.
                    let shape = FeedbackShape {
                        rows: w.rows,
                        cols: w.cols,
                        fan,
                        fan_in,
                    };
                    let magnitudes = Noise {
                        out: m,
                        distribution: init.distribution_for(&shape),
                        seed: rng.next_u32(),
                        accumulate: false,
                    };
                    backend.redrawn_sign_feedback(b, w, &magnitudes)?;
                } else {
                    backend.sign_feedback(b, w, Some(m), 1.0)?;
                }
            }
        }
    }
    Ok(())
}
