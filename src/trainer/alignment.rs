//! Alignment of a rule with backprop, measured on demand on one batch: the angle
//! between the rule's weight update and BP's exact gradient, and between each
//! feedback matrix and the transposed forward weight it stands in for.

use super::{StatsSlot, Trainer};
use crate::data::Dataset;
use crate::error::Result;
use crate::metrics::{angle_degrees, norm_ratio, LayerAlignment};
use crate::rule::{hidden_deltas, Rule};

impl Trainer {
    /// Per layer, how the rule's update on the batch `indices` of `data` aligns with
    /// backprop's exact gradient on the SAME forward pass (weights only, before the
    /// optimizer), plus the feedback-to-weight angle and norm ratio.
    ///
    /// Changes no parameter and takes no step; brSF's magnitudes are those the next
    /// step draws, and its feedback stream does not advance (as in
    /// [`Trainer::update_direction`]).
    pub fn alignment(&mut self, data: &Dataset, indices: &[usize]) -> Result<Vec<LayerAlignment>> {
        self.keeping_feedback_stream(|t| t.measure_alignment(data, indices))
    }

    fn measure_alignment(
        &mut self,
        data: &Dataset,
        indices: &[usize],
    ) -> Result<Vec<LayerAlignment>> {
        let batch = self.load_batch(data, indices)?;
        self.forward(batch)?;
        self.backward(batch, StatsSlot::Scratch)?;
        let total = self.layout.total();
        let rule_grads = self.backend.read(self.bufs.grads, 0, total)?;
        // BP's chain from the output error still in the last delta.
        hidden_deltas(Rule::Backprop, &mut *self.backend, &self.bufs, batch)?;
        self.layer_grads(0, batch)?;
        let bp_grads = self.backend.read(self.bufs.grads, 0, total)?;
        let layers = self.layers.len();
        let first = self.config.rule.first_trained_layer(layers);
        if first > 0 {
            // Frozen layers' gradients must stay zero for later update_direction calls.
            let frozen =
                crate::backend::Mat::new(self.bufs.grads, 0, 1, self.layout.weights(first).start);
            self.backend.fill(frozen, 0.0)?;
        }
        let params = self.backend.read(self.bufs.params, 0, total)?;
        let mut out = Vec::with_capacity(layers);
        for l in 0..layers {
            let w = self.layout.weights(l);
            let mut a = LayerAlignment {
                layer: l,
                update_angle: angle_degrees(&rule_grads[w.clone()], &bp_grads[w]),
                feedback_angle: None,
                norm_ratio: None,
            };
            if let Some(transposed) = self.config.rule.feedback_counterpart(l, layers) {
                let b = self.feedback(l)?;
                let next = &self.layers[l + 1];
                let w_next = &params[self.layout.weights(l + 1)];
                // Compare B with W_{l+1} laid out as B is stored.
                let w_like_b: Vec<f32> = if transposed {
                    transpose(w_next, next.outputs, next.inputs)
                } else {
                    w_next.to_vec()
                };
                a.feedback_angle = angle_degrees(&b, &w_like_b);
                a.norm_ratio = norm_ratio(&b, &w_like_b);
            }
            out.push(a);
        }
        Ok(out)
    }
}

/// A row-major `rows x cols` matrix transposed.
fn transpose(m: &[f32], rows: usize, cols: usize) -> Vec<f32> {
    let mut t = vec![0.0; m.len()];
    for i in 0..rows {
        for j in 0..cols {
            t[j * rows + i] = m[i * cols + j];
        }
    }
    t
}
