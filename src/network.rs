//! Network description, parameters and the builder that makes them.

use std::ops::Range;

use crate::activation::Activation;
use crate::error::{checked_product, Error, Result};
use crate::init::{rng_for, Stream, WeightInit};

/// Shape and nonlinearity of one dense layer: `h = f(W x + b)` with `W` of shape
/// `outputs x inputs` (row-major, the layout PyTorch's `nn.Linear` uses).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LayerSpec {
    /// Width of the layer's input.
    pub inputs: usize,
    /// Width of the layer's output.
    pub outputs: usize,
    /// Nonlinearity applied to `W x + b`.
    pub activation: Activation,
}

/// Where each layer's weights and bias sit inside one flat parameter vector.
///
/// All parameters (and gradients and optimizer moments, which share this layout) live in
/// one arena so that an optimizer step is a single pass and a backend can address any
/// layer through an offset table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParamLayout {
    weights: Vec<Range<usize>>,
    biases: Vec<Range<usize>>,
    total: usize,
}

impl ParamLayout {
    /// The layout of `layers`, or [`Error::SizeOverflow`] when the parameter count
    /// does not fit in `usize`.
    fn new(layers: &[LayerSpec]) -> Result<Self> {
        let overflow = || Error::SizeOverflow {
            what: "the network's parameter count".into(),
            product: format!("the sum of {} layers' parameters", layers.len()),
        };
        let mut offset: usize = 0;
        let mut weights = Vec::with_capacity(layers.len());
        let mut biases = Vec::with_capacity(layers.len());
        for (l, layer) in layers.iter().enumerate() {
            let w = checked_product(
                &format!("weights of layer {l}"),
                &[layer.outputs, layer.inputs],
            )?;
            let end = offset.checked_add(w).ok_or_else(overflow)?;
            weights.push(offset..end);
            offset = end;
            let end = offset.checked_add(layer.outputs).ok_or_else(overflow)?;
            biases.push(offset..end);
            offset = end;
        }
        Ok(ParamLayout {
            weights,
            biases,
            total: offset,
        })
    }

    /// Range of layer `l`'s weights (`outputs x inputs`, row-major).
    pub fn weights(&self, l: usize) -> Range<usize> {
        self.weights[l].clone()
    }

    /// Range of layer `l`'s bias.
    pub fn bias(&self, l: usize) -> Range<usize> {
        self.biases[l].clone()
    }

    /// Total number of parameters.
    pub fn total(&self) -> usize {
        self.total
    }
}

/// A multilayer perceptron: layer shapes plus all parameters in one flat vector.
#[derive(Debug, Clone, PartialEq)]
pub struct Network {
    layers: Vec<LayerSpec>,
    layout: ParamLayout,
    params: Vec<f32>,
    seed: u64,
}

impl Network {
    /// Starts describing a network whose inputs have `inputs` features.
    pub fn builder(inputs: usize) -> NetworkBuilder {
        NetworkBuilder::new(inputs)
    }

    /// The layers, input side first.
    pub fn layers(&self) -> &[LayerSpec] {
        &self.layers
    }

    /// Number of input features.
    pub fn input_size(&self) -> usize {
        self.layers[0].inputs
    }

    /// Number of outputs (classes, for a classifier).
    pub fn output_size(&self) -> usize {
        self.layers[self.layers.len() - 1].outputs
    }

    /// Where each layer's parameters sit in [`Network::params`].
    pub fn layout(&self) -> &ParamLayout {
        &self.layout
    }

    /// All parameters, layer by layer: `W_0, b_0, W_1, b_1, ...`.
    pub fn params(&self) -> &[f32] {
        &self.params
    }

    /// The seed everything random in a run derives from.
    pub fn seed(&self) -> u64 {
        self.seed
    }

    /// Layer `l`'s weights (`outputs x inputs`, row-major), or `None` past the last layer.
    pub fn weights(&self, l: usize) -> Option<&[f32]> {
        self.layers.get(l)?;
        self.params.get(self.layout.weights(l))
    }

    /// Layer `l`'s bias, or `None` past the last layer.
    pub fn bias(&self, l: usize) -> Option<&[f32]> {
        self.layers.get(l)?;
        self.params.get(self.layout.bias(l))
    }

    /// Replaces layer `l`'s weights.
    pub fn set_weights(&mut self, l: usize, values: &[f32]) -> Result<()> {
        let range = self.layer_range(l, true)?;
        copy_checked(
            &mut self.params[range],
            values,
            &format!("weights of layer {l}"),
        )
    }

    /// Replaces layer `l`'s bias.
    pub fn set_bias(&mut self, l: usize, values: &[f32]) -> Result<()> {
        let range = self.layer_range(l, false)?;
        copy_checked(
            &mut self.params[range],
            values,
            &format!("bias of layer {l}"),
        )
    }

    /// Replaces all parameters at once (same layout as [`Network::params`]).
    pub fn set_params(&mut self, values: &[f32]) -> Result<()> {
        copy_checked(&mut self.params, values, "network parameters")
    }

    fn layer_range(&self, l: usize, weights: bool) -> Result<Range<usize>> {
        if l >= self.layers.len() {
            return Err(Error::config(format!(
                "layer {l} does not exist; the network has {} layers",
                self.layers.len()
            )));
        }
        Ok(if weights {
            self.layout.weights(l)
        } else {
            self.layout.bias(l)
        })
    }
}

fn copy_checked(dst: &mut [f32], src: &[f32], what: &str) -> Result<()> {
    if dst.len() != src.len() {
        return Err(Error::shape(
            what,
            dst.len().to_string(),
            src.len().to_string(),
        ));
    }
    if let Some(i) = src.iter().position(|v| !v.is_finite()) {
        return Err(Error::NonFinite {
            context: what.to_string(),
            index: i,
            value: src[i],
        });
    }
    dst.copy_from_slice(src);
    Ok(())
}

/// Describes a network layer by layer, then draws its weights from a seed.
///
/// ```
/// use plasticity::{Activation, Network, WeightInit};
/// let net = Network::builder(784)
///     .dense(100, Activation::Tanh)
///     .dense(10, Activation::Identity)
///     .init(WeightInit::Xavier)
///     .seed(7)
///     .build()?;
/// assert_eq!(net.layers().len(), 2);
/// assert_eq!(net.params().len(), 784 * 100 + 100 + 100 * 10 + 10);
/// # Ok::<(), plasticity::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct NetworkBuilder {
    inputs: usize,
    layers: Vec<(usize, Activation)>,
    init: WeightInit,
    seed: u64,
}

impl NetworkBuilder {
    /// A network whose inputs have `inputs` features, Xavier init, seed 0.
    pub fn new(inputs: usize) -> Self {
        NetworkBuilder {
            inputs,
            layers: Vec::new(),
            init: WeightInit::Xavier,
            seed: 0,
        }
    }

    /// Appends a dense layer of `outputs` units followed by `activation`.
    pub fn dense(mut self, outputs: usize, activation: Activation) -> Self {
        self.layers.push((outputs, activation));
        self
    }

    /// Appends hidden layers of the given widths, all with `activation`.
    pub fn hidden(mut self, widths: &[usize], activation: Activation) -> Self {
        self.layers
            .extend(widths.iter().map(|&width| (width, activation)));
        self
    }

    /// How weights are drawn (default [`WeightInit::Xavier`]).
    pub fn init(mut self, init: WeightInit) -> Self {
        self.init = init;
        self
    }

    /// The seed of every random draw of a run: weights here, and later feedback
    /// matrices and batch order. Same seed, same run, bit for bit on the CPU.
    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = seed;
        self
    }

    /// Checks the description and draws the parameters.
    pub fn build(self) -> Result<Network> {
        if self.inputs == 0 {
            return Err(Error::config("a network needs at least one input feature"));
        }
        if self.layers.is_empty() {
            return Err(Error::config("a network needs at least one layer"));
        }
        if let Some(i) = self.layers.iter().position(|&(width, _)| width == 0) {
            return Err(Error::config(format!("layer {i} has zero units")));
        }
        let mut inputs = self.inputs;
        let layers: Vec<LayerSpec> = self
            .layers
            .iter()
            .map(|&(outputs, activation)| {
                let spec = LayerSpec {
                    inputs,
                    outputs,
                    activation,
                };
                inputs = outputs;
                spec
            })
            .collect();
        let layout = ParamLayout::new(&layers)?;
        let mut params = Vec::new();
        params.try_reserve_exact(layout.total()).map_err(|e| {
            Error::config(format!(
                "cannot allocate the network's {} parameters: {e}",
                layout.total()
            ))
        })?;
        params.resize(layout.total(), 0.0);
        let mut rng = rng_for(self.seed, Stream::Weights);
        for (l, layer) in layers.iter().enumerate() {
            self.init.fill(
                &mut params[layout.weights(l)],
                layer.inputs,
                layer.outputs,
                &mut rng,
            )?;
        }
        Ok(Network {
            layers,
            layout,
            params,
            seed: self.seed,
        })
    }
}
