//! The elementwise work that follows a layer's product, on the CPU: `f(c + bias)` after
//! the forward product and `c *= f'(h)` after a delta's. Run inside the product
//! ([`Backend::gemm_then`](crate::backend::Backend::gemm_then)), each band of `C` gets
//! it from the thread that computed the band, while the band is still in that core's
//! cache; on its own ([`Backend::bias_activation`](crate::backend::Backend::bias_activation),
//! [`Backend::activation_grad`](crate::backend::Backend::activation_grad)) it runs over
//! the whole matrix. Either way the same operations per element, so the same bits.

use rayon::prelude::*;

use super::{CHUNK, PARALLEL_ELEMENTWISE_MIN};
use crate::activation::Activation;
use crate::backend::Epilogue;

/// An [`Epilogue`] with its operand's values: what to do to the rows of a row-major `C`.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Then<'a> {
    /// `c = f(c + bias)`, one bias per row.
    BiasActivation {
        bias: &'a [f32],
        activation: Activation,
    },
    /// `c *= f'(h)`, `h` shaped like `C`.
    ActivationGrad {
        h: &'a [f32],
        activation: Activation,
    },
}

impl<'a> Then<'a> {
    /// `then` reading `operand`, the values of `then.operand()`.
    pub(super) fn new(then: Epilogue, operand: &'a [f32]) -> Then<'a> {
        match then {
            Epilogue::BiasActivation { activation, .. } => Then::BiasActivation {
                bias: operand,
                activation,
            },
            Epilogue::ActivationGrad { activation, .. } => Then::ActivationGrad {
                h: operand,
                activation,
            },
        }
    }

    /// Applies to `band`: rows `first..` of `C`, each `cols` wide.
    pub(super) fn rows(self, first: usize, cols: usize, band: &mut [f32]) {
        let cols = cols.max(1);
        match self {
            Then::BiasActivation { bias, activation } => {
                for (row, &b) in band.chunks_mut(cols).zip(&bias[first..]) {
                    super::super::simd_state::widest(BiasActivationRow { row, b, activation });
                }
            }
            Then::ActivationGrad {
                activation: Activation::Identity,
                ..
            } => {}
            Then::ActivationGrad { h, activation } => {
                let h = &h[first * cols..first * cols + band.len()];
                super::super::simd_state::wide(ActivationGradChunk {
                    d: band,
                    h,
                    activation,
                });
            }
        }
    }

    /// Applies to all of `c` (`cols` wide), on every thread when it is large.
    pub(super) fn all(self, cols: usize, c: &mut [f32]) {
        if c.len() < PARALLEL_ELEMENTWISE_MIN {
            return self.rows(0, cols, c);
        }
        // Pieces of whole rows, about CHUNK elements each.
        let rows = (CHUNK / cols.max(1)).max(1);
        c.par_chunks_mut(rows * cols.max(1))
            .enumerate()
            .for_each(|(i, band)| self.rows(i * rows, cols, band));
    }
}

/// `row[j] = f(row[j] + b)`: one row of [`Then::BiasActivation`], as a loop the
/// compiler vectorises for the CPU's widest lanes (see `simd_state::widest`): `tanh`
/// computes far more than it moves, and at AVX-512 the forward pass's epilogue made
/// DFA's step at 784-1024x3-10 1.7-3.6% faster and last-layer-only training's 1.1-1.9%
/// (alternating in-process runs; BP's 0.5%, FA's unchanged).
pub(super) struct BiasActivationRow<'a> {
    pub(super) row: &'a mut [f32],
    pub(super) b: f32,
    pub(super) activation: Activation,
}

impl pulp::WithSimd for BiasActivationRow<'_> {
    type Output = ();

    #[inline(always)]
    fn with_simd<S: pulp::Simd>(self, _simd: S) {
        for v in self.row.iter_mut() {
            *v = self.activation.apply(*v + self.b);
        }
    }
}

/// `d[i] *= f'(h[i])`: a piece of [`Then::ActivationGrad`], vectorised likewise.
pub(super) struct ActivationGradChunk<'a> {
    pub(super) d: &'a mut [f32],
    pub(super) h: &'a [f32],
    pub(super) activation: Activation,
}

impl pulp::WithSimd for ActivationGradChunk<'_> {
    type Output = ();

    #[inline(always)]
    fn with_simd<S: pulp::Simd>(self, _simd: S) {
        for (d, h) in self.d.iter_mut().zip(self.h) {
            *d *= self.activation.derivative_from_output(*h);
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::backend::{Backend, CpuBackend, Epilogue, Gemm, Mat};
    use crate::Activation;

    /// `gemm_then` against the product and then the pass on its own, bit for bit: in
    /// bands, whole (too few rows), written column-major and transposed, and on a
    /// transposed copy of `A` (a second read of the same matrix).
    #[test]
    fn fused_epilogues_give_the_bits_of_the_separate_pass() {
        let value = |i: usize, salt: usize| ((i * 7919 + salt) % 1013) as f32 / 1013.0 - 0.5;
        let shapes = [
            (300, 200, 128, false),
            (40, 30, 7, false),
            (1100, 600, 20, true),
            (600, 600, 32, true),
        ];
        for (rows, depth, cols, trans_a) in shapes {
            for activation in [Activation::Tanh, Activation::Relu, Activation::Identity] {
                let a: Vec<f32> = (0..rows * depth).map(|i| value(i, 1)).collect();
                let b: Vec<f32> = (0..depth * cols).map(|i| 4.0 * value(i, 2)).collect();
                let h: Vec<f32> = (0..rows * cols).map(|i| value(i, 3)).collect();
                let bias: Vec<f32> = (0..rows).map(|i| value(i, 4)).collect();
                let run = |fused: bool, then_grad: bool| -> Vec<u32> {
                    let mut backend = CpuBackend::new();
                    let mut put = |data: &[f32]| {
                        let buf = backend.alloc(data.len()).unwrap();
                        backend.write(buf, 0, data).unwrap();
                        buf
                    };
                    let (ab, bb, hb, biasb) = (put(&a), put(&b), put(&h), put(&bias));
                    let cb = backend.alloc(rows * cols).unwrap();
                    let c = Mat::new(cb, 0, rows, cols);
                    let a_mat = if trans_a {
                        Mat::new(ab, 0, depth, rows)
                    } else {
                        Mat::new(ab, 0, rows, depth)
                    };
                    let op = Gemm::new(c, a_mat, trans_a, Mat::new(bb, 0, depth, cols), false);
                    let then = if then_grad {
                        let h = Mat::new(hb, 0, rows, cols);
                        Epilogue::ActivationGrad { h, activation }
                    } else {
                        let bias = Mat::new(biasb, 0, rows, 1);
                        Epilogue::BiasActivation { bias, activation }
                    };
                    let mut out = Vec::new();
                    // Twice: the second `Aᵀ B` may run on a transposed copy.
                    for _ in 0..2 {
                        if fused {
                            backend.gemm_then(&op, then).unwrap();
                        } else {
                            backend.gemm(&op).unwrap();
                            match then {
                                Epilogue::BiasActivation { bias, activation } => {
                                    backend.bias_activation(c, bias, activation).unwrap()
                                }
                                Epilogue::ActivationGrad { h, activation } => {
                                    backend.activation_grad(c, h, activation).unwrap()
                                }
                            }
                        }
                        let got = backend.read(cb, 0, rows * cols).unwrap();
                        out.extend(got.iter().map(|v| v.to_bits()));
                    }
                    out
                };
                for then_grad in [false, true] {
                    assert!(
                        run(true, then_grad) == run(false, then_grad),
                        "{rows}x{depth}x{cols} trans_a {trans_a}, {activation:?}, \
                         activation grad {then_grad}"
                    );
                }
            }
        }
    }
}
