//! The buffers a training run keeps on its backend, and where each tensor sits in them.
//!
//! Parameters, gradients and optimizer moments share one arena layout. Activations and
//! deltas are feature-major (`width x batch`) and packed for the batch actually in
//! flight, so the hidden deltas of all layers form one contiguous matrix.

use crate::backend::{Backend, BufId, Mat};
use crate::error::{checked_product, Error, Result};
use crate::network::{LayerSpec, ParamLayout};
use crate::rule::{FeedbackShape, StepViews};

/// Accumulator slots in the statistics buffer, three floats each.
#[derive(Debug, Clone, Copy)]
pub(crate) enum StatsSlot {
    Train = 0,
    Eval = 1,
    Scratch = 2,
}

pub(crate) struct DeviceBuffers {
    pub params: BufId,
    pub grads: BufId,
    pub state: [BufId; 2],
    pub feedback: BufId,
    /// brSF/frSF random magnitudes, laid out like `feedback`.
    magnitudes: BufId,
    acts: BufId,
    deltas: BufId,
    pub targets: BufId,
    pub stats: BufId,
    layers: Vec<LayerSpec>,
    layout: ParamLayout,
    feedback_shapes: Vec<FeedbackShape>,
    feedback_offsets: Vec<usize>,
    /// Rows before activation `l` (input is 0) in the activation arena.
    act_rows: Vec<usize>,
    /// Rows before layer `l`'s delta in the delta arena.
    delta_rows: Vec<usize>,
}

/// `[0, w0, w0 + w1, ...]`, or [`Error::SizeOverflow`] naming `what`.
fn prefix_sums(what: &str, widths: impl Iterator<Item = usize>) -> Result<Vec<usize>> {
    let mut acc: usize = 0;
    let mut out = vec![0];
    for w in widths {
        acc = acc.checked_add(w).ok_or_else(|| Error::SizeOverflow {
            what: what.into(),
            product: "the sum of their sizes".into(),
        })?;
        out.push(acc);
    }
    Ok(out)
}

impl DeviceBuffers {
    pub fn new(
        backend: &mut dyn Backend,
        layers: &[LayerSpec],
        layout: &ParamLayout,
        feedback_shapes: Vec<FeedbackShape>,
        magnitudes: bool,
        capacity: usize,
    ) -> Result<Self> {
        let act_rows = prefix_sums(
            "activations",
            std::iter::once(layers[0].inputs).chain(layers.iter().map(|l| l.outputs)),
        )?;
        let delta_rows = prefix_sums("deltas", layers.iter().map(|l| l.outputs))?;
        let feedback_sizes = feedback_shapes
            .iter()
            .enumerate()
            .map(|(i, s)| checked_product(&format!("feedback matrix {i}"), &[s.rows, s.cols]))
            .collect::<Result<Vec<usize>>>()?;
        let feedback_offsets = prefix_sums("feedback matrices", feedback_sizes.into_iter())?;
        let total_feedback = *feedback_offsets.last().unwrap_or(&0);
        let per_batch = |what: &str, rows: usize| checked_product(what, &[rows, capacity]);
        let classes = layers[layers.len() - 1].outputs;
        let n = layout.total();
        // Zero-length buffers are invalid on some backends; allocate at least one float.
        Ok(DeviceBuffers {
            params: backend.alloc(n)?,
            grads: backend.alloc(n)?,
            state: [backend.alloc(n)?, backend.alloc(n)?],
            feedback: backend.alloc(total_feedback.max(1))?,
            magnitudes: backend.alloc(if magnitudes { total_feedback.max(1) } else { 1 })?,
            acts: backend.alloc(per_batch("activations", act_rows[act_rows.len() - 1])?)?,
            deltas: backend.alloc(per_batch("deltas", delta_rows[delta_rows.len() - 1])?)?,
            targets: backend.alloc(per_batch("targets", classes)?)?,
            // Three slots of three sums, then the last clipped gradient norm.
            stats: backend.alloc(10)?,
            layers: layers.to_vec(),
            layout: layout.clone(),
            feedback_shapes,
            feedback_offsets,
            act_rows,
            delta_rows,
        })
    }

    /// Activation `l` (`0` is the input batch, `l + 1` the output of layer `l`).
    pub fn activation(&self, l: usize, batch: usize) -> Mat {
        let rows = self.act_rows[l + 1] - self.act_rows[l];
        Mat::new(self.acts, self.act_rows[l] * batch, rows, batch)
    }

    pub fn bias(&self, l: usize) -> Mat {
        let r = self.layout.bias(l);
        Mat::new(self.params, r.start, r.len(), 1)
    }

    pub fn grad_weights(&self, l: usize) -> Mat {
        let mut m = self.weights(l);
        m.buf = self.grads;
        m
    }

    pub fn grad_bias(&self, l: usize) -> Mat {
        let mut m = self.bias(l);
        m.buf = self.grads;
        m
    }

    pub fn targets(&self, batch: usize) -> Mat {
        Mat::new(
            self.targets,
            0,
            self.layers[self.layers.len() - 1].outputs,
            batch,
        )
    }

    pub fn stats(&self, slot: StatsSlot) -> Mat {
        Mat::new(self.stats, 3 * slot as usize, 1, 3)
    }

    /// Where gradient clipping leaves the global norm it measured (one float).
    pub fn grad_norm(&self) -> Mat {
        Mat::new(self.stats, 9, 1, 1)
    }

    /// The parameters of layers `first..` as one row (params, grads and both moments
    /// share this layout; layers are contiguous in order, so `0` is the whole arena).
    pub fn arena_from(&self, buf: BufId, first: usize) -> Mat {
        let start = self.layout.weights(first).start;
        Mat::new(buf, start, 1, self.layout.total() - start)
    }

    pub fn feedback_shapes(&self) -> &[FeedbackShape] {
        &self.feedback_shapes
    }
}

impl StepViews for DeviceBuffers {
    fn layers(&self) -> &[LayerSpec] {
        &self.layers
    }

    fn output(&self, l: usize, batch: usize) -> Mat {
        self.activation(l + 1, batch)
    }

    fn delta(&self, l: usize, batch: usize) -> Mat {
        let rows = self.delta_rows[l + 1] - self.delta_rows[l];
        Mat::new(self.deltas, self.delta_rows[l] * batch, rows, batch)
    }

    fn hidden_deltas(&self, batch: usize) -> Mat {
        Mat::new(
            self.deltas,
            0,
            self.delta_rows[self.layers.len() - 1],
            batch,
        )
    }

    fn hidden_outputs(&self, batch: usize) -> Mat {
        let hidden_rows = self.delta_rows[self.layers.len() - 1];
        Mat::new(self.acts, self.act_rows[1] * batch, hidden_rows, batch)
    }

    fn weights(&self, l: usize) -> Mat {
        let r = self.layout.weights(l);
        Mat::new(
            self.params,
            r.start,
            self.layers[l].outputs,
            self.layers[l].inputs,
        )
    }

    fn feedback(&self, i: usize) -> Mat {
        let s = self.feedback_shapes[i];
        Mat::new(self.feedback, self.feedback_offsets[i], s.rows, s.cols)
    }

    fn magnitude(&self, i: usize) -> Mat {
        let mut m = self.feedback(i);
        m.buf = self.magnitudes;
        m
    }

    fn targets(&self, batch: usize) -> Mat {
        DeviceBuffers::targets(self, batch)
    }

    fn feedback_stacked(&self) -> Mat {
        let rows = self.feedback_shapes.iter().map(|s| s.rows).sum();
        let cols = self.feedback_shapes.first().map_or(0, |s| s.cols);
        Mat::new(self.feedback, 0, rows, cols)
    }
}
