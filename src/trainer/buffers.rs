//! The buffers a training run keeps on its backend, and where each tensor sits in them.
//!
//! Parameters, gradients and optimizer moments share one arena layout. Activations and
//! deltas are feature-major (`features x batch`) and packed for the batch actually in
//! flight. The hidden layers with weights come first in both arenas, in layer order, so
//! their deltas (and outputs) form one contiguous matrix: DFA fills all of them with
//! one product. A flatten owns no storage: its output and delta are its input's.

use crate::backend::divergence::FLAG_WORDS;
use crate::backend::{Backend, BufId, Mat};
use crate::error::{checked_product, Error, Result};
use crate::layer::{weighted_layers, LayerIo, LayerSpec};
use crate::network::ParamLayout;

/// Accumulator slots in the statistics buffer, three floats each.
#[derive(Debug, Clone, Copy)]
pub(crate) enum StatsSlot {
    Train = 0,
    Eval = 1,
    Scratch = 2,
}

/// Floats of the statistics buffer: three slots of three sums, the gradient norm, the
/// divergence flags.
const STATS_LEN: usize = 10 + FLAG_WORDS;

pub(crate) struct DeviceBuffers {
    pub params: BufId,
    pub grads: BufId,
    pub state: [BufId; 2],
    acts: BufId,
    deltas: BufId,
    pub targets: BufId,
    pub stats: BufId,
    layers: Vec<LayerSpec>,
    layout: ParamLayout,
    weighted: Vec<usize>,
    /// `(first row, rows)` of activation `l` (`0` is the input) in the activation arena.
    acts_at: Vec<(usize, usize)>,
    /// `(first row, rows)` of layer `l`'s delta in the delta arena.
    deltas_at: Vec<(usize, usize)>,
    /// `(first row, rows)` of what layer `l`'s forward pass keeps, in the activation arena.
    saved_at: Vec<(usize, usize)>,
    /// `(first row, rows)` of the backward scratch in the delta arena.
    work_at: (usize, usize),
    /// Rows of the hidden weighted layers, stacked.
    hidden_rows: usize,
}

/// Hands out consecutive row ranges of an arena.
#[derive(Default)]
struct Rows(usize);

impl Rows {
    fn take(&mut self, rows: usize) -> (usize, usize) {
        let at = self.0;
        // Saturating: an impossible total fails the arena's checked size below.
        self.0 = self.0.saturating_add(rows);
        (at, rows)
    }
}

fn arena_len(rows: usize, capacity: usize, what: &str) -> Result<usize> {
    if rows == usize::MAX {
        return Err(Error::SizeOverflow {
            what: format!("the {what} arena"),
            product: "the sum of its layers' rows".into(),
        });
    }
    checked_product(&format!("the {what} arena"), &[rows, capacity])
}

impl DeviceBuffers {
    /// The buffers of `layers` at batch `capacity`; the parameter arena starts with
    /// `params`, and each optimizer-moment arena with its `moments` (empty: zero), all
    /// taken over, not copied, where the backend can. Like the gradients laid out after
    /// them, they have room for `extra` floats after the parameters: a learner's
    /// trainable tensors.
    pub fn new(
        backend: &mut dyn Backend,
        layers: &[LayerSpec],
        layout: &ParamLayout,
        params: Vec<f32>,
        moments: [Vec<f32>; 2],
        extra: usize,
        capacity: usize,
    ) -> Result<Self> {
        let weighted = weighted_layers(layers);
        let hidden: Vec<usize> = weighted
            .iter()
            .copied()
            .filter(|&l| l + 1 < layers.len())
            .collect();
        let (mut act_rows, mut delta_rows) = (Rows::default(), Rows::default());
        let mut acts_at = vec![(0, 0); layers.len() + 1];
        let mut deltas_at = vec![(0, 0); layers.len()];
        // Hidden weighted layers first, contiguous in both arenas.
        for &l in &hidden {
            acts_at[l + 1] = act_rows.take(layers[l].outputs());
            deltas_at[l] = delta_rows.take(layers[l].outputs());
        }
        acts_at[0] = act_rows.take(layers[0].inputs());
        for (l, layer) in layers.iter().enumerate() {
            if hidden.contains(&l) {
                continue;
            }
            if layer.aliases_input() {
                acts_at[l + 1] = acts_at[l];
                deltas_at[l] = match l {
                    0 => delta_rows.take(layer.outputs()),
                    _ => deltas_at[l - 1],
                };
            } else {
                acts_at[l + 1] = act_rows.take(layer.outputs());
                deltas_at[l] = delta_rows.take(layer.outputs());
            }
        }
        let saved_at = layers
            .iter()
            .map(|layer| act_rows.take(layer.saved_rows()))
            .collect();
        let work_at = delta_rows.take(layers.iter().map(|l| l.work_rows()).max().unwrap_or(0));
        let hidden_rows = hidden.iter().map(|&l| layers[l].outputs()).sum();
        let classes = layers[layers.len() - 1].outputs();
        let n = layout
            .total()
            .checked_add(extra)
            .ok_or_else(|| Error::config("learner tensors too large"))?;
        // Zero-length buffers are invalid on some backends; allocate at least one float.
        Ok(DeviceBuffers {
            params: backend.alloc_from(params, n)?,
            grads: backend.alloc(n)?,
            state: {
                let [m0, m1] = moments;
                [backend.alloc_from(m0, n)?, backend.alloc_from(m1, n)?]
            },
            acts: backend.alloc(arena_len(act_rows.0, capacity, "activation")?.max(1))?,
            deltas: backend.alloc(arena_len(delta_rows.0, capacity, "delta")?.max(1))?,
            targets: backend.alloc(arena_len(classes, capacity, "target")?)?,
            // Three slots of three sums, the last clipped gradient norm, then the
            // divergence flags.
            stats: backend.alloc(STATS_LEN)?,
            layers: layers.to_vec(),
            layout: layout.clone(),
            weighted,
            acts_at,
            deltas_at,
            saved_at,
            work_at,
            hidden_rows,
        })
    }

    /// Activation `l` (`0` is the input batch, `l + 1` the output of layer `l`).
    pub fn activation(&self, l: usize, batch: usize) -> Mat {
        let (at, rows) = self.acts_at[l];
        Mat::new(self.acts, at * batch, rows, batch)
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
            self.layers[self.layers.len() - 1].outputs(),
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

    /// The divergence flags (see [`crate::backend::divergence`]).
    pub fn flags(&self) -> Mat {
        Mat::new(self.stats, 10, 1, FLAG_WORDS)
    }

    /// The whole statistics buffer: slots, gradient norm, flags.
    pub fn all_stats(&self) -> Mat {
        Mat::new(self.stats, 0, 1, STATS_LEN)
    }

    /// The parameters of layers `first..` as one row (params, grads and both moments
    /// share this layout; layers are contiguous in order, so `0` is the whole arena).
    pub fn arena_from(&self, buf: BufId, first: usize) -> Mat {
        let start = self.layout.weights(first).start;
        Mat::new(buf, start, 1, self.layout.total() - start)
    }

    pub fn layers(&self) -> &[LayerSpec] {
        &self.layers
    }

    pub fn weighted(&self) -> &[usize] {
        &self.weighted
    }

    pub fn io(&self, l: usize, batch: usize) -> LayerIo {
        let layer = &self.layers[l];
        let (saved_at, saved_rows) = self.saved_at[l];
        let (work_at, work_rows) = self.work_at;
        LayerIo {
            input_shape: layer.input_shape(),
            output_shape: layer.output_shape(),
            activation: layer.activation(),
            batch,
            x: self.activation(l, batch),
            y: self.activation(l + 1, batch),
            weights: self.weights(l),
            bias: self.bias(l),
            saved: Mat::new(self.acts, saved_at * batch, saved_rows, batch),
            work: Mat::new(self.deltas, work_at * batch, work_rows, batch),
        }
    }

    pub fn output(&self, l: usize, batch: usize) -> Mat {
        self.activation(l + 1, batch)
    }

    pub fn delta(&self, l: usize, batch: usize) -> Mat {
        let (at, rows) = self.deltas_at[l];
        Mat::new(self.deltas, at * batch, rows, batch)
    }

    pub fn hidden_deltas(&self, batch: usize) -> Mat {
        Mat::new(self.deltas, 0, self.hidden_rows, batch)
    }

    pub fn hidden_outputs(&self, batch: usize) -> Mat {
        Mat::new(self.acts, 0, self.hidden_rows, batch)
    }

    pub fn weights(&self, l: usize) -> Mat {
        let r = self.layout.weights(l);
        let (rows, cols) = self.layers[l]
            .weight_shape()
            .map_or((0, 0), |s| (s.rows, s.cols));
        Mat::new(self.params, r.start, rows, cols)
    }
}
