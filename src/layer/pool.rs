//! Max and average pooling over square windows (PyTorch's `nn.MaxPool2d` and
//! `nn.AvgPool2d`, stride defaulting to the window). No weights: the backward pass
//! carries the gradient to the maxima (or spreads it over each window) exactly as
//! backprop does, whatever the rule.

use super::{apply_derivative, window_over, Derivative, Layer, LayerIo, Shape, WeightShape};
use crate::backend::{Backend, LayerGrad, Mat, Pool, PoolMode, Window};
use crate::error::{Error, Result};

/// Pooling over `kernel x kernel` windows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Pool2d {
    /// Max or average ([`PoolMode::MaxAt`] is not a layer mode).
    pub mode: PoolMode,
    /// Window side.
    pub kernel: usize,
    /// Step between windows.
    pub stride: usize,
    /// Border on every side (at most half the window).
    pub padding: usize,
}

impl Pool2d {
    /// Max pooling over `kernel x kernel` windows, stride `kernel`.
    pub fn max(kernel: usize) -> Pool2d {
        Pool2d {
            mode: PoolMode::Max,
            kernel,
            stride: kernel,
            padding: 0,
        }
    }

    /// Average pooling over `kernel x kernel` windows, stride `kernel`.
    pub fn avg(kernel: usize) -> Pool2d {
        Pool2d {
            mode: PoolMode::Avg,
            ..Pool2d::max(kernel)
        }
    }

    /// With step `stride` between windows.
    pub fn stride(mut self, stride: usize) -> Pool2d {
        self.stride = stride;
        self
    }

    /// With a border of `padding` on every side.
    pub fn padding(mut self, padding: usize) -> Pool2d {
        self.padding = padding;
        self
    }

    pub(crate) fn layer_name(&self) -> &'static str {
        match self.mode {
            PoolMode::Avg => "avg_pool2d",
            _ => "max_pool2d",
        }
    }

    fn window(&self, input: Shape, batch: usize) -> Option<Window> {
        window_over(input, (self.kernel, self.stride, self.padding), batch)
    }

    fn op(&self, io: &LayerIo, mode: PoolMode, input: Mat, output: Mat) -> Result<Pool> {
        Ok(Pool {
            window: self
                .window(io.input_shape, io.batch)
                .ok_or_else(|| Error::config("pooling needs an image input"))?,
            mode,
            input,
            output,
            argmax: io.saved,
        })
    }
}

impl Layer for Pool2d {
    fn name(&self) -> &'static str {
        self.layer_name()
    }

    fn output_shape(&self, input: Shape) -> std::result::Result<Shape, String> {
        let window = self.window(input, 1).ok_or_else(|| {
            format!("pooling needs an image input (CxHxW), got a vector of {input}")
        })?;
        if self.mode == PoolMode::MaxAt {
            return Err("MaxAt is a tangent mode, not a pooling layer".into());
        }
        window.check().map_err(|e| e.to_string())?;
        if 2 * self.padding > self.kernel {
            return Err(format!(
                "padding {} is more than half the {k}x{k} window",
                self.padding,
                k = self.kernel
            ));
        }
        Ok(Shape::image(
            window.channels,
            window.out_height(),
            window.out_width(),
        ))
    }

    fn weight_shape(&self, _input: Shape) -> Option<WeightShape> {
        None
    }

    fn saved_rows(&self, _input: Shape, output: Shape) -> usize {
        match self.mode {
            PoolMode::Avg => 0,
            _ => output.len(),
        }
    }

    fn forward(&self, backend: &mut dyn Backend, io: &LayerIo) -> Result<()> {
        backend.pool(&self.op(io, self.mode, io.x, io.y)?)
    }

    fn backward_input(
        &self,
        backend: &mut dyn Backend,
        io: &LayerIo,
        _via: Mat,
        d_out: Mat,
        d_in: Mat,
        derivative: Option<Derivative>,
    ) -> Result<()> {
        backend.unpool(&self.op(io, self.mode, d_in, d_out)?)?;
        apply_derivative(backend, d_in, derivative)
    }

    fn weight_grad(&self, _: &LayerIo, _: Mat, _: Mat, _: Mat) -> Option<LayerGrad> {
        None
    }

    fn tangent(
        &self,
        backend: &mut dyn Backend,
        io: &LayerIo,
        t_in: Mat,
        t_out: Mat,
    ) -> Result<()> {
        let mode = match self.mode {
            PoolMode::Avg => PoolMode::Avg,
            _ => PoolMode::MaxAt,
        };
        backend.pool(&self.op(io, mode, t_in, t_out)?)
    }
}
