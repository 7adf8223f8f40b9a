//! Network description, parameters and the builder that makes them.

use std::ops::Range;

use crate::activation::Activation;
use crate::error::{checked_product, Error, Result};
use crate::init::{rng_for, Stream, WeightInit};
pub use crate::layer::LayerSpec;
use crate::layer::{Conv2d, Dense, Flatten, LayerKind, Pool2d, Shape};

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
            let (w, b) = match layer.weight_shape() {
                Some(s) => (
                    checked_product(&format!("weights of layer {l}"), &[s.rows, s.cols])?,
                    s.rows,
                ),
                None => (0, 0),
            };
            let end = offset.checked_add(w).ok_or_else(overflow)?;
            weights.push(offset..end);
            offset = end;
            let end = offset.checked_add(b).ok_or_else(overflow)?;
            biases.push(offset..end);
            offset = end;
        }
        Ok(ParamLayout {
            weights,
            biases,
            total: offset,
        })
    }

    /// Range of layer `l`'s weights (row-major, shaped by
    /// [`LayerSpec::weight_shape`]; empty for weightless layers).
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

/// A network: its layers (dense, convolutional, pooling, flatten) plus all parameters
/// in one flat vector.
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

    /// Starts describing a network whose inputs have shape `input` (an image for a
    /// conv net).
    pub fn builder_for(input: Shape) -> NetworkBuilder {
        NetworkBuilder::with_input(input)
    }

    /// Number of input features.
    pub fn input_size(&self) -> usize {
        self.layers[0].inputs()
    }

    /// Shape of one input sample.
    pub fn input_shape(&self) -> Shape {
        self.layers[0].input_shape()
    }

    /// Number of outputs (classes, for a classifier).
    pub fn output_size(&self) -> usize {
        self.layers[self.layers.len() - 1].outputs()
    }

    /// A network with `layers` and zero parameters (fill them with
    /// [`Network::set_params`]); checks that each layer's input is the previous one's
    /// output.
    pub fn from_layers(layers: Vec<LayerSpec>, seed: u64) -> Result<Network> {
        let first = layers
            .first()
            .ok_or_else(|| Error::config("a network needs at least one layer"))?;
        let mut builder = NetworkBuilder::with_input(first.input_shape())
            .seed(seed)
            .init(WeightInit::Zeros);
        for l in &layers {
            builder = builder.layer(l.kind(), l.activation());
        }
        let net = builder.build()?;
        if net.layers != layers {
            return Err(Error::config(
                "layers do not chain: an input is not the previous output",
            ));
        }
        Ok(net)
    }

    /// Where each layer's parameters sit in [`Network::params`].
    pub fn layout(&self) -> &ParamLayout {
        &self.layout
    }

    /// All parameters, layer by layer: `W_0, b_0, W_1, b_1, ...`.
    pub fn params(&self) -> &[f32] {
        &self.params
    }

    /// [`Network::set_params`] taking `values` over instead of copying them.
    pub(crate) fn with_params(mut self, values: Vec<f32>) -> Result<Network> {
        check_values(self.params.len(), &values, "network parameters")?;
        self.params = values;
        Ok(self)
    }

    /// The parameters, taken out of the network (a trainer keeps them without a copy).
    pub(crate) fn into_params(self) -> Vec<f32> {
        self.params
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
    check_values(dst.len(), src, what)?;
    dst.copy_from_slice(src);
    Ok(())
}

/// `values` are `len` finite numbers.
fn check_values(len: usize, values: &[f32], what: &str) -> Result<()> {
    if len != values.len() {
        return Err(Error::shape(
            what,
            len.to_string(),
            values.len().to_string(),
        ));
    }
    if let Some(i) = values.iter().position(|v| !v.is_finite()) {
        return Err(Error::NonFinite {
            context: what.to_string(),
            index: i,
            value: values[i],
        });
    }
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
///
/// A conv net takes an image input; every layer's shape is checked at build time:
///
/// ```
/// use plasticity::layer::{Conv2d, Shape};
/// use plasticity::{Activation, Network};
/// let lenet = Network::builder_for(Shape::image(1, 28, 28))
///     .conv2d(Conv2d::new(6, 5).padding(2), Activation::Relu)
///     .max_pool2d(2)
///     .conv2d(Conv2d::new(16, 5), Activation::Relu)
///     .max_pool2d(2)
///     .conv2d(Conv2d::new(120, 5), Activation::Relu)
///     .flatten()
///     .dense(84, Activation::Relu)
///     .dense(10, Activation::Identity)
///     .build()?;
/// assert_eq!(lenet.layers()[4].output_shape(), Shape::image(120, 1, 1));
/// // A missing flatten is named with its layer:
/// let err = Network::builder_for(Shape::image(1, 28, 28))
///     .conv2d(Conv2d::new(6, 5), Activation::Relu)
///     .dense(10, Activation::Identity)
///     .build()
///     .unwrap_err();
/// assert!(err.to_string().contains("layer 1 (dense)"));
/// # Ok::<(), plasticity::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct NetworkBuilder {
    input: Shape,
    layers: Vec<(LayerKind, Activation)>,
    init: WeightInit,
    seed: u64,
}

impl NetworkBuilder {
    /// A network whose inputs have `inputs` features, Xavier init, seed 0.
    pub fn new(inputs: usize) -> Self {
        Self::with_input(Shape::Vector(inputs))
    }

    /// A network whose inputs have shape `input`, Xavier init, seed 0.
    pub fn with_input(input: Shape) -> Self {
        NetworkBuilder {
            input,
            layers: Vec::new(),
            init: WeightInit::Xavier,
            seed: 0,
        }
    }

    /// Appends a layer of any kind followed by `activation`.
    pub fn layer(mut self, kind: LayerKind, activation: Activation) -> Self {
        self.layers.push((kind, activation));
        self
    }

    /// Appends a dense layer of `outputs` units followed by `activation`.
    pub fn dense(self, outputs: usize, activation: Activation) -> Self {
        self.layer(LayerKind::Dense(Dense { outputs }), activation)
    }

    /// Appends hidden layers of the given widths, all with `activation`.
    pub fn hidden(self, widths: &[usize], activation: Activation) -> Self {
        widths
            .iter()
            .fold(self, |b, &width| b.dense(width, activation))
    }

    /// Appends a convolution followed by `activation`.
    pub fn conv2d(self, conv: Conv2d, activation: Activation) -> Self {
        self.layer(LayerKind::Conv2d(conv), activation)
    }

    /// Appends `kernel x kernel` max pooling, stride `kernel`.
    pub fn max_pool2d(self, kernel: usize) -> Self {
        self.pool2d(Pool2d::max(kernel))
    }

    /// Appends `kernel x kernel` average pooling, stride `kernel`.
    pub fn avg_pool2d(self, kernel: usize) -> Self {
        self.pool2d(Pool2d::avg(kernel))
    }

    /// Appends a pooling layer with any settings.
    pub fn pool2d(self, pool: Pool2d) -> Self {
        self.layer(LayerKind::Pool2d(pool), Activation::Identity)
    }

    /// Appends a flatten (image to vector).
    pub fn flatten(self) -> Self {
        self.layer(LayerKind::Flatten(Flatten), Activation::Identity)
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

    /// Checks every layer's shape and draws the parameters.
    pub fn build(self) -> Result<Network> {
        if self.input.is_empty() {
            return Err(Error::config("a network needs at least one input feature"));
        }
        if self.layers.is_empty() {
            return Err(Error::config("a network needs at least one layer"));
        }
        let mut input = self.input;
        let mut layers = Vec::with_capacity(self.layers.len());
        for (i, &(kind, activation)) in self.layers.iter().enumerate() {
            let spec = LayerSpec::new(kind, input, activation).map_err(|why| {
                Error::config(format!("layer {i} ({}): {why}", kind.layer().name()))
            })?;
            if !spec.has_weights() && activation != Activation::Identity {
                return Err(Error::config(format!(
                    "layer {i} ({}) has no weights, so it takes no activation",
                    kind.layer().name()
                )));
            }
            input = spec.output_shape();
            layers.push(spec);
        }
        let last = layers.len() - 1;
        if !matches!(layers[last].kind(), LayerKind::Dense(_)) {
            return Err(Error::config(format!(
                "layer {last} ({}): the last layer must be dense (it produces the outputs the loss reads)",
                layers[last].layer().name()
            )));
        }
        let layout = ParamLayout::new(&layers)?;
        // Zeroed by the allocator, not by writing: a network whose values are written
        // later (one read from a checkpoint) holds no memory until they are.
        let mut params =
            bytemuck::allocation::try_zeroed_vec::<f32>(layout.total()).map_err(|()| {
                Error::config(format!(
                    "cannot allocate the network's {} parameters",
                    layout.total()
                ))
            })?;
        // Zeros are there already.
        if self.init != WeightInit::Zeros {
            let mut rng = rng_for(self.seed, Stream::Weights);
            for (l, layer) in layers.iter().enumerate() {
                if let Some(shape) = layer.weight_shape() {
                    self.init.fill(
                        &mut params[layout.weights(l)],
                        shape.fan_in,
                        shape.fan_out,
                        &mut rng,
                    )?;
                }
            }
        }
        Ok(Network {
            layers,
            layout,
            params,
            seed: self.seed,
        })
    }
}
