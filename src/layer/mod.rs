//! The layer seam: what a network is made of.
//!
//! A network is a sequence of layers, each a small module implementing [`Layer`]:
//! [`Dense`], [`Conv2d`], [`Pool2d`] (max or average) and [`Flatten`]. A layer offers
//! three separate operations, so that learning rules can mix them: its forward pass,
//! the gradient with respect to its input *through a given weight tensor* (its own
//! weights for backprop, a feedback tensor shaped like them for feedback alignment),
//! and its weight gradient. The forward-mode product with its linear part
//! ([`Layer::tangent`]) serves rules that carry an error *up* the network (IFA).
//!
//! Activations are feature-major (`[features, batch]`), images channel-major within
//! (`C·H·W` rows, as in PyTorch's NCHW), so a flatten is free and a dense layer after
//! it sees features in PyTorch's order.

mod conv2d;
mod dense;
mod flatten;
mod pool;

use crate::activation::Activation;
use crate::backend::{Backend, LayerGrad, Mat};
use crate::error::Result;

pub use conv2d::Conv2d;
pub use dense::Dense;
pub use flatten::Flatten;
pub use pool::Pool2d;

/// The shape of one sample's activation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Shape {
    /// A feature vector.
    Vector(usize),
    /// A `channels x height x width` image (stored channel-major).
    Image {
        /// Channels.
        channels: usize,
        /// Rows.
        height: usize,
        /// Columns.
        width: usize,
    },
}

impl Shape {
    /// A `channels x height x width` image.
    pub fn image(channels: usize, height: usize, width: usize) -> Shape {
        Shape::Image {
            channels,
            height,
            width,
        }
    }

    /// Floats per sample.
    pub fn len(&self) -> usize {
        match *self {
            Shape::Vector(n) => n,
            Shape::Image {
                channels,
                height,
                width,
            } => channels.saturating_mul(height).saturating_mul(width),
        }
    }

    /// Whether a sample has no floats.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl std::fmt::Display for Shape {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Shape::Vector(n) => write!(f, "{n}"),
            Shape::Image {
                channels,
                height,
                width,
            } => write!(f, "{channels}x{height}x{width}"),
        }
    }
}

impl std::str::FromStr for Shape {
    type Err = String;

    /// `784` (a vector) or `1x28x28` (an image).
    fn from_str(s: &str) -> std::result::Result<Shape, String> {
        let parts: Vec<usize> = s
            .split('x')
            .map(|p| p.trim().parse::<usize>())
            .collect::<std::result::Result<_, _>>()
            .map_err(|_| format!("shape {s:?} is not N or CxHxW"))?;
        match parts[..] {
            [n] => Ok(Shape::Vector(n)),
            [c, h, w] => Ok(Shape::image(c, h, w)),
            _ => Err(format!("shape {s:?} is not N or CxHxW")),
        }
    }
}

/// Shape of a layer's weight tensor, as stored (a row-major `rows x cols` matrix) and
/// as PyTorch names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WeightShape {
    /// Rows of the stored matrix (output features or channels).
    pub rows: usize,
    /// Columns (input features, or `in_channels · k · k`).
    pub cols: usize,
    /// Inputs each output combines (Xavier/Kaiming's fan-in).
    pub fan_in: usize,
    /// Outputs each input reaches (fan-out; also the width of the error a feedback
    /// tensor shaped like these weights combines).
    pub fan_out: usize,
    /// The kernel side for a convolution, `None` for a dense layer.
    pub kernel: Option<usize>,
}

impl WeightShape {
    /// Number of weights.
    pub fn len(&self) -> usize {
        self.rows * self.cols
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// PyTorch's shape: `[out, in]` (`nn.Linear`) or `[out, in, k, k]` (`nn.Conv2d`).
    pub fn torch_shape(&self) -> Vec<usize> {
        match self.kernel {
            None => vec![self.rows, self.cols],
            Some(k) => vec![self.rows, self.cols / (k * k).max(1), k, k],
        }
    }
}

/// Where one layer's tensors are for the batch in flight (all feature-major).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LayerIo {
    /// Shape of one input sample.
    pub input_shape: Shape,
    /// Shape of one output sample.
    pub output_shape: Shape,
    /// The activation applied to the output.
    pub activation: Activation,
    /// Samples in the batch.
    pub batch: usize,
    /// `[input features, batch]`.
    pub x: Mat,
    /// `[output features, batch]`.
    pub y: Mat,
    /// The weights (`rows x cols` of [`WeightShape`]); empty for weightless layers.
    pub weights: Mat,
    /// The bias (`rows x 1`); empty for weightless layers.
    pub bias: Mat,
    /// What the forward pass keeps for the backward pass (a convolution's patch
    /// columns, max pooling's argmax); sized by [`Layer::saved_rows`].
    pub saved: Mat,
    /// Scratch for the backward and tangent passes, shared by all layers; sized by
    /// [`Layer::work_rows`].
    pub work: Mat,
}

/// `d *= f'(h)`: the activation derivative of the layer below, applied to an input
/// gradient (fused into the product where the backend can).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Derivative {
    /// The output `h = f(z)` of the layer below.
    pub h: Mat,
    /// Its activation `f`.
    pub activation: Activation,
}

/// One kind of layer. See the [module docs](self).
pub trait Layer: std::fmt::Debug {
    /// Short name (`dense`, `conv2d`, `max_pool2d`, `avg_pool2d`, `flatten`).
    fn name(&self) -> &'static str;

    /// The shape of its output for `input`, or why `input` does not fit it.
    fn output_shape(&self, input: Shape) -> std::result::Result<Shape, String>;

    /// Its weight tensor's shape (with a bias of `rows`), `None` for weightless layers.
    fn weight_shape(&self, input: Shape) -> Option<WeightShape>;

    /// Rows per sample kept from the forward pass for the backward pass.
    fn saved_rows(&self, _input: Shape, _output: Shape) -> usize {
        0
    }

    /// Rows per sample of scratch its backward and tangent passes need.
    fn work_rows(&self, _input: Shape, _output: Shape) -> usize {
        0
    }

    /// `y = f(layer(x))`.
    fn forward(&self, backend: &mut dyn Backend, io: &LayerIo) -> Result<()>;

    /// `d_in = J^T d_out ⊙ derivative`: the gradient with respect to its input from
    /// the one with respect to its pre-activation output, with `via` (shaped like the
    /// weights) standing in for the weights (ignored by weightless layers).
    fn backward_input(
        &self,
        backend: &mut dyn Backend,
        io: &LayerIo,
        via: Mat,
        d_out: Mat,
        d_in: Mat,
        derivative: Option<Derivative>,
    ) -> Result<()>;

    /// The weight and bias gradient product of pre-activation delta `d_out`, for a
    /// grouped [`Backend::layer_grads`]; `None` for weightless layers.
    fn weight_grad(&self, io: &LayerIo, d_out: Mat, grad_w: Mat, grad_b: Mat) -> Option<LayerGrad>;

    /// `t_out = J t_in ⊙ f'(y)`: its linear part (no bias) applied to a tangent, times
    /// its own activation derivative.
    fn tangent(&self, backend: &mut dyn Backend, io: &LayerIo, t_in: Mat, t_out: Mat)
        -> Result<()>;
}

/// The kinds of layer, with their settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LayerKind {
    /// A fully connected layer.
    Dense(Dense),
    /// A 2-D convolution.
    Conv2d(Conv2d),
    /// Max or average pooling.
    Pool2d(Pool2d),
    /// Image to vector.
    Flatten(Flatten),
}

impl LayerKind {
    /// Its implementation of the layer seam.
    pub fn layer(&self) -> &dyn Layer {
        match self {
            LayerKind::Dense(l) => l,
            LayerKind::Conv2d(l) => l,
            LayerKind::Pool2d(l) => l,
            LayerKind::Flatten(l) => l,
        }
    }

    /// Text form used in checkpoints: `dense/800`, `conv2d/6/5/1/2`, `max_pool2d/2/2/0`,
    /// `avg_pool2d/2/2/0`, `flatten`.
    pub fn describe(&self) -> String {
        match self {
            LayerKind::Dense(d) => format!("dense/{}", d.outputs),
            LayerKind::Conv2d(c) => format!(
                "conv2d/{}/{}/{}/{}",
                c.out_channels, c.kernel, c.stride, c.padding
            ),
            LayerKind::Pool2d(p) => {
                format!("{}/{}/{}/{}", p.layer_name(), p.kernel, p.stride, p.padding)
            }
            LayerKind::Flatten(_) => "flatten".into(),
        }
    }

    /// Parses [`LayerKind::describe`].
    pub fn parse(text: &str) -> Option<LayerKind> {
        let mut parts = text.split('/');
        let name = parts.next()?;
        let nums: Vec<usize> = parts.map(|p| p.parse().ok()).collect::<Option<_>>()?;
        Some(match (name, &nums[..]) {
            ("dense", &[outputs]) => LayerKind::Dense(Dense { outputs }),
            ("conv2d", &[out_channels, kernel, stride, padding]) => LayerKind::Conv2d(Conv2d {
                out_channels,
                kernel,
                stride,
                padding,
            }),
            ("max_pool2d", &[k, s, p]) => LayerKind::Pool2d(Pool2d::max(k).stride(s).padding(p)),
            ("avg_pool2d", &[k, s, p]) => LayerKind::Pool2d(Pool2d::avg(k).stride(s).padding(p)),
            ("flatten", &[]) => LayerKind::Flatten(Flatten),
            _ => return None,
        })
    }
}

/// One layer of a built network: its kind, the shapes it maps between and its
/// activation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LayerSpec {
    kind: LayerKind,
    input: Shape,
    output: Shape,
    activation: Activation,
}

impl LayerSpec {
    /// A layer of `kind` on inputs of shape `input`, or why they do not fit.
    pub fn new(
        kind: LayerKind,
        input: Shape,
        activation: Activation,
    ) -> std::result::Result<LayerSpec, String> {
        let output = kind.layer().output_shape(input)?;
        if output.is_empty() {
            return Err(format!("{input} input gives an empty output"));
        }
        Ok(LayerSpec {
            kind,
            input,
            output,
            activation,
        })
    }

    /// Its kind and settings.
    pub fn kind(&self) -> LayerKind {
        self.kind
    }

    /// Its implementation of the layer seam.
    pub fn layer(&self) -> &dyn Layer {
        self.kind.layer()
    }

    /// Shape of one input sample.
    pub fn input_shape(&self) -> Shape {
        self.input
    }

    /// Shape of one output sample.
    pub fn output_shape(&self) -> Shape {
        self.output
    }

    /// Input floats per sample.
    pub fn inputs(&self) -> usize {
        self.input.len()
    }

    /// Output floats per sample.
    pub fn outputs(&self) -> usize {
        self.output.len()
    }

    /// The activation applied to its output.
    pub fn activation(&self) -> Activation {
        self.activation
    }

    /// Its weight tensor's shape, `None` for weightless layers.
    pub fn weight_shape(&self) -> Option<WeightShape> {
        self.layer().weight_shape(self.input)
    }

    /// Whether it has weights (and a bias).
    pub fn has_weights(&self) -> bool {
        self.weight_shape().is_some()
    }

    /// Rows per sample its forward pass keeps for the backward pass.
    pub fn saved_rows(&self) -> usize {
        self.layer().saved_rows(self.input, self.output)
    }

    /// Rows per sample of scratch its backward pass needs.
    pub fn work_rows(&self) -> usize {
        self.layer().work_rows(self.input, self.output)
    }

    /// Whether its output is its input, unchanged in memory (a flatten).
    pub fn aliases_input(&self) -> bool {
        matches!(self.kind, LayerKind::Flatten(_))
    }
}

impl std::fmt::Display for LayerSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} {} -> {}",
            self.kind.describe(),
            self.input,
            self.output
        )?;
        if self.activation != Activation::Identity {
            write!(f, " {}", self.activation.name())?;
        }
        Ok(())
    }
}

/// A `kernel x kernel` window sliding over a batch of `input` images (`None` for a
/// vector input).
pub(crate) fn window_over(
    input: Shape,
    (kernel, stride, padding): (usize, usize, usize),
    batch: usize,
) -> Option<crate::backend::Window> {
    match input {
        Shape::Image {
            channels,
            height,
            width,
        } => Some(crate::backend::Window {
            channels,
            height,
            width,
            kernel,
            stride,
            padding,
            batch,
        }),
        Shape::Vector(_) => None,
    }
}

/// Indices of the layers with weights, input side first.
pub fn weighted_layers(layers: &[LayerSpec]) -> Vec<usize> {
    (0..layers.len())
        .filter(|&l| layers[l].has_weights())
        .collect()
}

/// Runs `derivative` on `d` unless a fused product already did.
pub(crate) fn apply_derivative(
    backend: &mut dyn Backend,
    d: Mat,
    derivative: Option<Derivative>,
) -> Result<()> {
    match derivative {
        Some(Derivative { h, activation }) => backend.activation_grad(d, h, activation),
        None => Ok(()),
    }
}
