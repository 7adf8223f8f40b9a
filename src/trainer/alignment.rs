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
        self.keeping_learner_state(|t| t.measure_alignment(data, indices))
    }

    fn measure_alignment(
        &mut self,
        data: &Dataset,
        indices: &[usize],
    ) -> Result<Vec<LayerAlignment>> {
        let batch = self.load_batch(data, indices)?;
        self.learner_step(batch, StatsSlot::Scratch)?;
        let total = self.layout.total();
        let rule_grads = self.backend.read(self.bufs.grads, 0, total)?;
        // BP from a fresh forward pass of the same parameters and batch.
        {
            let mut cx = self.step_cx(batch, StatsSlot::Scratch);
            cx.forward()?;
            cx.output_error()?;
            let (backend, views, batch) = cx.split();
            hidden_deltas(Rule::Backprop, backend, views, batch)?;
            cx.weight_grads(0)?;
        }
        let bp_grads = self.backend.read(self.bufs.grads, 0, total)?;
        // Frozen layers' gradients must stay zero for later update_direction calls.
        self.clear_frozen_grads(self.learner.first_trained_layer(&self.layers))?;
        let params = self.backend.read(self.bufs.params, 0, total)?;
        let mut out: Vec<LayerAlignment> = crate::layer::weighted_layers(&self.layers)
            .into_iter()
            .map(|l| {
                let w = self.layout.weights(l);
                LayerAlignment {
                    layer: l,
                    update_angle: angle_degrees(&rule_grads[w.clone()], &bp_grads[w]),
                    feedback_angle: None,
                    norm_ratio: None,
                }
            })
            .collect();
        for pair in self.learner.feedback_pairs(&self.layers) {
            let b = self.tensor(&pair.tensor)?;
            let w_next = &params[self.layout.weights(pair.weights_of)];
            // Compare B with the forward weights laid out as B is stored.
            let w_like_b: Vec<f32> = match self.layers[pair.weights_of].weight_shape() {
                Some(shape) if pair.transposed => transpose(w_next, shape.rows, shape.cols),
                _ => w_next.to_vec(),
            };
            if let Some(a) = out.iter_mut().find(|a| a.layer == pair.forms_delta_of) {
                a.feedback_angle = angle_degrees(&b, &w_like_b);
                a.norm_ratio = norm_ratio(&b, &w_like_b);
            }
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
