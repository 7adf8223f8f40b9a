//! Image to vector. Activations are already stored feature-major with each image's
//! features in channel-major order, so a flatten moves no data: its output is its
//! input's region, and its backward pass only applies the layer below's derivative.

use super::{apply_derivative, Derivative, Layer, LayerIo, Shape, WeightShape};
use crate::backend::{Backend, LayerGrad, Mat};
use crate::error::{Error, Result};

/// Flattens a `C x H x W` image into `C·H·W` features (PyTorch's order).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Flatten;

fn check_alias(what: &str, a: Mat, b: Mat) -> Result<()> {
    if a.buf != b.buf || a.offset != b.offset || a.len() != b.len() {
        return Err(Error::Backend(format!(
            "flatten's {what} must share its input's region ({a:?} vs {b:?})"
        )));
    }
    Ok(())
}

impl Layer for Flatten {
    fn name(&self) -> &'static str {
        "flatten"
    }

    fn output_shape(&self, input: Shape) -> std::result::Result<Shape, String> {
        match input {
            Shape::Image { .. } => Ok(Shape::Vector(input.len())),
            Shape::Vector(_) => Err(format!(
                "flatten needs an image input (CxHxW), got a vector of {input}"
            )),
        }
    }

    fn weight_shape(&self, _input: Shape) -> Option<WeightShape> {
        None
    }

    fn forward(&self, _backend: &mut dyn Backend, io: &LayerIo) -> Result<()> {
        check_alias("output", io.y, io.x)
    }

    fn backward_input(
        &self,
        backend: &mut dyn Backend,
        _io: &LayerIo,
        _via: Mat,
        d_out: Mat,
        d_in: Mat,
        derivative: Option<Derivative>,
    ) -> Result<()> {
        check_alias("input gradient", d_in, d_out)?;
        apply_derivative(backend, d_in, derivative)
    }

    fn weight_grad(&self, _: &LayerIo, _: Mat, _: Mat, _: Mat) -> Option<LayerGrad> {
        None
    }

    fn tangent(
        &self,
        _backend: &mut dyn Backend,
        _io: &LayerIo,
        t_in: Mat,
        t_out: Mat,
    ) -> Result<()> {
        check_alias("tangent", t_out, t_in)
    }
}
