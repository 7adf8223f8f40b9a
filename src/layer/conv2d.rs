//! A 2-D convolution (cross-correlation, as PyTorch's `nn.Conv2d`): the input's
//! patches are unfolded into columns ([`Backend::im2col`]) and multiplied by the
//! `out_channels x (in_channels·k·k)` weight matrix in one GEMM, whose output is
//! already the feature-major `[out_channels·OH·OW, batch]` activation. The patches
//! are kept for the weight gradient; the input gradient is the transposed product
//! folded back ([`Backend::col2im`]).

use super::{apply_derivative, window_over, Derivative, Layer, LayerIo, Shape, WeightShape};
use crate::backend::{Backend, Epilogue, Gemm, Im2Col, LayerGrad, Mat, Window};
use crate::error::{Error, Result};

/// A square-kernel convolution with `out_channels` filters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Conv2d {
    /// Filters (output channels).
    pub out_channels: usize,
    /// Kernel side.
    pub kernel: usize,
    /// Step between windows.
    pub stride: usize,
    /// Zeros added on every side of the input.
    pub padding: usize,
}

impl Conv2d {
    /// `out_channels` filters of `kernel x kernel`, stride 1, no padding.
    pub fn new(out_channels: usize, kernel: usize) -> Conv2d {
        Conv2d {
            out_channels,
            kernel,
            stride: 1,
            padding: 0,
        }
    }

    /// With step `stride` between windows.
    pub fn stride(mut self, stride: usize) -> Conv2d {
        self.stride = stride;
        self
    }

    /// With `padding` zeros on every side.
    pub fn padding(mut self, padding: usize) -> Conv2d {
        self.padding = padding;
        self
    }

    fn window(&self, input: Shape, batch: usize) -> Option<Window> {
        window_over(input, (self.kernel, self.stride, self.padding), batch)
    }

    /// The window of `io`'s batch and the patch matrix's shape.
    fn unfold(&self, io: &LayerIo, image: Mat, patches: Mat) -> Result<Im2Col> {
        let window = self
            .window(io.input_shape, io.batch)
            .ok_or_else(|| Error::config("conv2d needs an image input"))?;
        Ok(Im2Col {
            window,
            image,
            patches: patches.reshape(window.patch_rows(), window.positions()),
        })
    }

    /// A `[out_channels·OH·OW, batch]` region viewed as `[out_channels, OH·OW·batch]`.
    fn channel_rows(&self, m: Mat) -> Mat {
        m.reshape(self.out_channels, m.len() / self.out_channels.max(1))
    }
}

impl Layer for Conv2d {
    fn name(&self) -> &'static str {
        "conv2d"
    }

    fn output_shape(&self, input: Shape) -> std::result::Result<Shape, String> {
        let w = self.window(input, 1).ok_or_else(|| {
            format!("a convolution needs an image input (CxHxW), got a vector of {input}")
        })?;
        w.check().map_err(|e| e.to_string())?;
        if self.out_channels == 0 {
            return Err("a convolution needs at least one output channel".into());
        }
        Ok(Shape::image(
            self.out_channels,
            w.out_height(),
            w.out_width(),
        ))
    }

    fn weight_shape(&self, input: Shape) -> Option<WeightShape> {
        let Shape::Image { channels, .. } = input else {
            return None;
        };
        let k2 = self.kernel * self.kernel;
        Some(WeightShape {
            rows: self.out_channels,
            cols: channels * k2,
            fan_in: channels * k2,
            fan_out: self.out_channels * k2,
            kernel: Some(self.kernel),
        })
    }

    fn saved_rows(&self, input: Shape, output: Shape) -> usize {
        self.work_rows(input, output)
    }

    fn work_rows(&self, input: Shape, output: Shape) -> usize {
        match (self.weight_shape(input), output) {
            (Some(w), Shape::Image { height, width, .. }) => w.cols * height * width,
            _ => 0,
        }
    }

    fn forward(&self, backend: &mut dyn Backend, io: &LayerIo) -> Result<()> {
        let unfold = self.unfold(io, io.x, io.saved)?;
        backend.im2col(&unfold)?;
        let product = Gemm::new(
            self.channel_rows(io.y),
            io.weights,
            false,
            unfold.patches,
            false,
        );
        let then = Epilogue::BiasActivation {
            bias: io.bias,
            activation: io.activation,
        };
        backend.gemm_then(&product, then)
    }

    fn backward_input(
        &self,
        backend: &mut dyn Backend,
        io: &LayerIo,
        via: Mat,
        d_out: Mat,
        d_in: Mat,
        derivative: Option<Derivative>,
    ) -> Result<()> {
        let fold = self.unfold(io, d_in, io.work)?;
        let product = Gemm::new(fold.patches, via, true, self.channel_rows(d_out), false);
        backend.gemm(&product)?;
        backend.col2im(&fold)?;
        apply_derivative(backend, d_in, derivative)
    }

    fn weight_grad(&self, io: &LayerIo, d_out: Mat, grad_w: Mat, grad_b: Mat) -> Option<LayerGrad> {
        let patches = self.unfold(io, io.x, io.saved).ok()?.patches;
        Some(LayerGrad::new(
            self.channel_rows(d_out),
            patches,
            grad_w,
            grad_b,
        ))
    }

    fn tangent(
        &self,
        backend: &mut dyn Backend,
        io: &LayerIo,
        t_in: Mat,
        t_out: Mat,
    ) -> Result<()> {
        let unfold = self.unfold(io, t_in, io.work)?;
        backend.im2col(&unfold)?;
        let product = Gemm::new(
            self.channel_rows(t_out),
            io.weights,
            false,
            unfold.patches,
            false,
        );
        let then = Epilogue::ActivationGrad {
            h: self.channel_rows(io.y),
            activation: io.activation,
        };
        backend.gemm_then(&product, then)
    }
}
