//! [`StepCx`]: what a learner sees during one step.

use super::LearnerTensors;
use crate::backend::{Backend, LayerGrad, LossGrad, Mat};
use crate::error::Result;
use crate::layer::{Derivative, LayerIo, LayerSpec};
use crate::loss::Loss;
use crate::rule::StepViews;
use crate::trainer::DeviceBuffers;

/// The regions of one step, without the backend (so the rules can borrow both).
pub(crate) struct Views<'a> {
    pub bufs: &'a DeviceBuffers,
    pub tensors: &'a LearnerTensors,
}

/// One step's context: the backend, the batch loaded in the network's buffers, the
/// learner's tensors, and the operations a step is made of.
pub struct StepCx<'a> {
    backend: &'a mut dyn Backend,
    views: Views<'a>,
    batch: usize,
    loss: Loss,
    stats: Mat,
}

impl<'a> StepCx<'a> {
    pub(crate) fn new(
        backend: &'a mut dyn Backend,
        bufs: &'a DeviceBuffers,
        tensors: &'a LearnerTensors,
        batch: usize,
        loss: Loss,
        stats: Mat,
    ) -> Self {
        StepCx {
            backend,
            views: Views { bufs, tensors },
            batch,
            loss,
            stats,
        }
    }

    /// The backend, for operations of the learner's own.
    pub fn backend(&mut self) -> &mut dyn Backend {
        &mut *self.backend
    }

    /// Samples in the batch.
    pub fn batch(&self) -> usize {
        self.batch
    }

    /// The training objective.
    pub fn loss(&self) -> Loss {
        self.loss
    }

    /// The network's layers.
    pub fn layers(&self) -> &[LayerSpec] {
        self.views.layers()
    }

    /// Indices of the layers with weights.
    pub fn weighted(&self) -> &[usize] {
        self.views.weighted()
    }

    /// Everything layer `l` reads and writes for this batch.
    pub fn io(&self, l: usize) -> LayerIo {
        self.views.io(l, self.batch)
    }

    /// The input batch (`features x batch`).
    pub fn input(&self) -> Mat {
        self.views.bufs.activation(0, self.batch)
    }

    /// Output of layer `l` (`outputs x batch`).
    pub fn output(&self, l: usize) -> Mat {
        self.views.output(l, self.batch)
    }

    /// Delta of layer `l` (gradient with respect to its pre-activation output; the
    /// last layer's is the output error after [`StepCx::output_error`]).
    pub fn delta(&self, l: usize) -> Mat {
        self.views.delta(l, self.batch)
    }

    /// One-hot targets of the batch (`classes x batch`).
    pub fn targets(&self) -> Mat {
        self.views.targets(self.batch)
    }

    /// Layer `l`'s weights.
    pub fn weights(&self, l: usize) -> Mat {
        self.views.weights(l)
    }

    /// Layer `l`'s bias.
    pub fn bias(&self, l: usize) -> Mat {
        self.views.bufs.bias(l)
    }

    /// Where layer `l`'s weight update direction goes.
    pub fn grad_weights(&self, l: usize) -> Mat {
        self.views.bufs.grad_weights(l)
    }

    /// Where layer `l`'s bias update direction goes.
    pub fn grad_bias(&self, l: usize) -> Mat {
        self.views.bufs.grad_bias(l)
    }

    /// The deltas of all hidden layers with weights, stacked (`Σ outputs x batch`).
    pub fn hidden_deltas(&self) -> Mat {
        self.views.hidden_deltas(self.batch)
    }

    /// The outputs of the same layers, stacked in the same order.
    pub fn hidden_outputs(&self) -> Mat {
        self.views.hidden_outputs(self.batch)
    }

    /// The learner's tensor `name` (per-sample tensors sized for this batch).
    pub fn tensor(&self, name: &str) -> Result<Mat> {
        self.views.tensors.get(name, self.batch)
    }

    /// The update direction of the learner's trainable tensor `name`.
    pub fn tensor_grad(&self, name: &str) -> Result<Mat> {
        self.views.tensors.grad(name)
    }

    /// Every layer's forward pass.
    pub fn forward(&mut self) -> Result<()> {
        let views = &self.views;
        for (l, layer) in views.layers().iter().enumerate() {
            let io = views.io(l, self.batch);
            layer.layer().forward(&mut *self.backend, &io)?;
        }
        Ok(())
    }

    /// The output error `∂L/∂z` of the last layer (loss gradient times the output
    /// activation's derivative) into its delta, and the batch's loss and accuracy into
    /// the trainer's statistics.
    pub fn output_error(&mut self) -> Result<()> {
        let last = self.layers().len() - 1;
        self.backend.loss_grad(&LossGrad {
            loss: self.loss,
            output: self.output(last),
            target: self.targets(),
            grad: self.delta(last),
            stats: self.stats,
        })?;
        let activation = self.layers()[last].activation();
        let (delta, output) = (self.delta(last), self.output(last));
        self.backend.activation_grad(delta, output, activation)
    }

    /// Layer `l`'s input gradient through `via` (its weights, or a tensor shaped like
    /// them) into the delta of layer `l - 1`, times that layer's activation derivative.
    pub fn backward_layer(&mut self, l: usize, via: Mat) -> Result<()> {
        let layers = self.layers();
        if l == 0 || l >= layers.len() {
            return Err(crate::Error::config(format!(
                "backward_layer({l}): layers 1..{} have a layer below",
                layers.len()
            )));
        }
        let derivative = Derivative {
            h: self.output(l - 1),
            activation: layers[l - 1].activation(),
        };
        let (io, d_out, d_in) = (self.io(l), self.delta(l), self.delta(l - 1));
        self.views.layers()[l].layer().backward_input(
            &mut *self.backend,
            &io,
            via,
            d_out,
            d_in,
            Some(derivative),
        )
    }

    /// The gradient product of layer `l` (weights and bias from its delta and input),
    /// or `None` for a weightless layer; pass several to [`Backend::layer_grads`] so
    /// they run as one grouped operation.
    pub fn layer_grad(&self, l: usize) -> Option<LayerGrad> {
        self.layers()[l].layer().weight_grad(
            &self.io(l),
            self.delta(l),
            self.grad_weights(l),
            self.grad_bias(l),
        )
    }

    /// Every weight and bias gradient of the layers from `first` on, from their deltas,
    /// as one grouped operation.
    pub fn weight_grads(&mut self, first: usize) -> Result<()> {
        let grads: Vec<LayerGrad> = (first..self.layers().len())
            .filter_map(|l| self.layer_grad(l))
            .collect();
        self.backend.layer_grads(&grads)
    }

    /// The backend and the step's regions, borrowed together.
    pub(crate) fn split(&mut self) -> (&mut dyn Backend, &Views<'a>, usize) {
        (&mut *self.backend, &self.views, self.batch)
    }
}

impl StepViews for Views<'_> {
    fn layers(&self) -> &[LayerSpec] {
        self.bufs.layers()
    }

    fn weighted(&self) -> &[usize] {
        self.bufs.weighted()
    }

    fn io(&self, l: usize, batch: usize) -> LayerIo {
        self.bufs.io(l, batch)
    }

    fn output(&self, l: usize, batch: usize) -> Mat {
        self.bufs.output(l, batch)
    }

    fn delta(&self, l: usize, batch: usize) -> Mat {
        self.bufs.delta(l, batch)
    }

    fn hidden_deltas(&self, batch: usize) -> Mat {
        self.bufs.hidden_deltas(batch)
    }

    fn hidden_outputs(&self, batch: usize) -> Mat {
        self.bufs.hidden_outputs(batch)
    }

    fn weights(&self, l: usize) -> Mat {
        self.bufs.weights(l)
    }

    fn feedback(&self, i: usize) -> Mat {
        self.named(&super::delta::feedback_name(i))
    }

    fn feedback_stacked(&self) -> Mat {
        let specs: Vec<_> = self
            .tensors
            .specs()
            .iter()
            .filter(|s| s.name.starts_with("feedback."))
            .collect();
        let rows = specs.iter().map(|s| s.rows).sum();
        let cols = specs.first().map_or(0, |s| s.cols);
        self.tensors
            .stacked(&super::delta::feedback_name(0), rows, cols)
            .unwrap_or_else(|_| Mat::new(self.bufs.params, 0, 0, 0))
    }

    fn magnitude(&self, i: usize) -> Mat {
        self.named(&super::delta::magnitude_name(i))
    }

    fn targets(&self, batch: usize) -> Mat {
        self.bufs.targets(batch)
    }
}

impl Views<'_> {
    /// A learner tensor the delta rules declared themselves (an empty region if not, so
    /// a mistake is a shape error, never a panic).
    fn named(&self, name: &str) -> Mat {
        self.tensors
            .get(name, 0)
            .unwrap_or_else(|_| Mat::new(self.bufs.params, 0, 0, 0))
    }
}
