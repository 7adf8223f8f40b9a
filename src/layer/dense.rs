//! A fully connected layer, `y = f(W x + b)`, `W` stored `outputs x inputs` (PyTorch's
//! `nn.Linear` layout).

use super::{Derivative, Layer, LayerIo, Shape, WeightShape};
use crate::backend::{Backend, Epilogue, Gemm, LayerGrad, Mat};
use crate::error::Result;

/// A fully connected layer of `outputs` units.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Dense {
    /// Output features.
    pub outputs: usize,
}

impl Layer for Dense {
    fn name(&self) -> &'static str {
        "dense"
    }

    fn output_shape(&self, input: Shape) -> std::result::Result<Shape, String> {
        match input {
            Shape::Vector(_) => Ok(Shape::Vector(self.outputs)),
            Shape::Image { .. } => Err(format!(
                "a dense layer needs a vector input, got a {input} image: add a flatten before it"
            )),
        }
    }

    fn weight_shape(&self, input: Shape) -> Option<WeightShape> {
        Some(WeightShape {
            rows: self.outputs,
            cols: input.len(),
            fan_in: input.len(),
            fan_out: self.outputs,
            kernel: None,
        })
    }

    fn forward(&self, backend: &mut dyn Backend, io: &LayerIo) -> Result<()> {
        let product = Gemm::new(io.y, io.weights, false, io.x, false);
        let then = Epilogue::BiasActivation {
            bias: io.bias,
            activation: io.activation,
        };
        backend.gemm_then(&product, then)
    }

    fn backward_input(
        &self,
        backend: &mut dyn Backend,
        _io: &LayerIo,
        via: Mat,
        d_out: Mat,
        d_in: Mat,
        derivative: Option<Derivative>,
    ) -> Result<()> {
        let product = Gemm::new(d_in, via, true, d_out, false);
        match derivative {
            Some(Derivative { h, activation }) => {
                backend.gemm_then(&product, Epilogue::ActivationGrad { h, activation })
            }
            None => backend.gemm(&product),
        }
    }

    fn weight_grad(&self, io: &LayerIo, d_out: Mat, grad_w: Mat, grad_b: Mat) -> Option<LayerGrad> {
        Some(LayerGrad::new(d_out, io.x, grad_w, grad_b))
    }

    fn tangent(
        &self,
        backend: &mut dyn Backend,
        io: &LayerIo,
        t_in: Mat,
        t_out: Mat,
    ) -> Result<()> {
        let product = Gemm::new(t_out, io.weights, false, t_in, false);
        let then = Epilogue::ActivationGrad {
            h: io.y,
            activation: io.activation,
        };
        backend.gemm_then(&product, then)
    }
}
