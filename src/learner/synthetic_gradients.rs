//! Synthetic gradients: decoupled neural interfaces (Jaderberg et al. 2017,
//! "Decoupled Neural Interfaces using Synthetic Gradients"; Czarnecki et al. 2017,
//! "Understanding Synthetic Gradients and Decoupled Neural Interfaces").
//!
//! Every weighted layer below the last has a linear model that predicts the gradient
//! of the loss with respect to its output `h_l` from that output,
//! `ĝ_l = A_l h_l + a_l` (`sg`), or also from the one-hot label `y`,
//! `ĝ_l = A_l h_l + C_l y + a_l` (`csg`, the paper's conditional DNI). The layer
//! updates from its prediction alone, `δ_l = ĝ_l ⊙ f'(h_l)`, `ΔW_l ∝ δ_l h_{l-1}^T`,
//! so it need not wait for the layers above (the update unlock). Each predictor is
//! trained toward the gradient the layer above sends down: for the top hidden layer
//! the exact one, `W_L^T e` from the output error; for lower ones the one formed from
//! the next predictor, `W_{l+1}^T (ĝ_{l+1} ⊙ f'(h_{l+1}))` (the bootstrapping of both
//! papers). Its loss is `½‖ĝ_l − target_l‖²` averaged over the batch, so the
//! predictor's update direction is the batch mean of `(ĝ_l − target_l) h_l^T` (of
//! `(ĝ_l − target_l) y^T` for `C_l`, of `ĝ_l − target_l` for `a_l`), a batch mean like
//! every gradient here.
//!
//! Following the paper (and the zero-initialised last layer of koz4k/dni-pytorch's
//! `BasicSynthesizer`), the predictors start at zero, bias included, so training starts
//! as "no gradient" for the hidden layers: only the output layer learns until the
//! predictors have learnt something.
//!
//! Scale: the crate's deltas are gradients of the batch-MEAN loss, `1/B` times the
//! per-sample gradient. The predictors predict the per-sample gradient (their targets
//! are `B` times the mean-loss input gradient), so a predictor does not depend on the
//! batch size and a short last batch gets the same synthetic gradient per sample; the
//! synthetic delta is `ĝ_l ⊙ f'(h_l) / B`.
//!
//! All the updates of one step are computed from the parameters before it (the trainer
//! applies them together), which is what the update-unlocked schedule of the paper
//! computes for one batch. A conv layer's predictor works on its flattened output map
//! (`C·H·W` features), so it is a dense `C·H·W x C·H·W` matrix: fine for small maps
//! (LeNet-5's first map, 6x28x28, gives 22 million predictor weights), too large for
//! wide ones.

use super::{Learner, StepCx, TensorSpec};
use crate::activation::Activation;
use crate::backend::{Axpby, Epilogue, Gemm, LayerGrad, Mat};
use crate::error::{Error, Result};
use crate::layer::{weighted_layers, LayerSpec};
use crate::optim::Optimizer;

/// The synthetic-gradient learner (`sg`), or its label-conditioned variant (`csg`).
#[derive(Debug, Clone, PartialEq)]
pub struct SyntheticGradients {
    conditioned: bool,
    optimizer: Option<Optimizer>,
}

/// One hidden layer's predictor tensors.
struct Names {
    a: String,
    bias: String,
    c: String,
    sink: String,
    pred: String,
    error: String,
}

fn names(i: usize) -> Names {
    Names {
        a: format!("sg.a{i}"),
        bias: format!("sg.bias{i}"),
        c: format!("sg.c{i}"),
        sink: format!("sg.sink{i}"),
        pred: format!("sg.pred{i}"),
        error: format!("sg.error{i}"),
    }
}

/// The weighted layers that get a predictor: all but the last.
fn hidden(layers: &[LayerSpec]) -> Vec<usize> {
    let mut w = weighted_layers(layers);
    w.pop();
    w
}

impl SyntheticGradients {
    /// `sg`: predictors of the gradient from each hidden layer's output.
    pub fn new() -> SyntheticGradients {
        SyntheticGradients {
            conditioned: false,
            optimizer: None,
        }
    }

    /// `csg`: predictors that also see the one-hot label.
    pub fn conditioned() -> SyntheticGradients {
        SyntheticGradients {
            conditioned: true,
            ..SyntheticGradients::new()
        }
    }

    /// Trains the predictors with `optimizer` instead of the network's.
    pub fn with_optimizer(mut self, optimizer: Optimizer) -> SyntheticGradients {
        self.optimizer = Some(optimizer);
        self
    }

    /// Whether the predictors see the label.
    pub fn is_conditioned(&self) -> bool {
        self.conditioned
    }

    /// The tensor names of hidden layer `i`'s predictor (counting weighted layers
    /// from the bottom): `A_i`, `a_i`, and `C_i` (`csg` only); and of its prediction
    /// `ĝ_i` of the last batch (per sample, `outputs x batch`).
    pub fn tensor_names(i: usize) -> [String; 4] {
        let n = names(i);
        [n.a, n.bias, n.c, n.pred]
    }
}

impl Default for SyntheticGradients {
    fn default() -> Self {
        SyntheticGradients::new()
    }
}

impl Learner for SyntheticGradients {
    fn name(&self) -> String {
        if self.conditioned { "csg" } else { "sg" }.into()
    }

    fn tensors(&self, layers: &[LayerSpec]) -> Vec<TensorSpec> {
        let classes = layers.last().map_or(0, |l| l.outputs());
        let mut specs = Vec::new();
        for (i, &l) in hidden(layers).iter().enumerate() {
            let (n, names) = (layers[l].outputs(), names(i));
            specs.push(TensorSpec::trainable(names.a, n, n));
            specs.push(TensorSpec::trainable(names.bias, n, 1));
            if self.conditioned {
                specs.push(TensorSpec::trainable(names.c, n, classes));
                // C_i has no bias; the grouped gradient product writes one anyway.
                specs.push(TensorSpec::fixed(names.sink, n, 1));
            }
            specs.push(TensorSpec::per_sample(names.pred, n));
            specs.push(TensorSpec::per_sample(names.error, n));
        }
        specs
    }

    fn init(&mut self, cx: &mut StepCx<'_>, _seed: u64) -> Result<()> {
        let layers = cx.layers();
        let last = layers.len() - 1;
        if !layers[last].has_weights() {
            return Err(Error::config(
                "synthetic gradients need a network whose last layer has weights",
            ));
        }
        // The trainer allocates tensors zeroed: the predictors start at "no gradient".
        Ok(())
    }

    fn step(&mut self, cx: &mut StepCx<'_>) -> Result<()> {
        cx.forward()?;
        let hidden = hidden(cx.layers());
        let inv_batch = 1.0 / cx.batch() as f32;
        // Each hidden layer's synthetic gradient and delta, from its output alone.
        for (i, &l) in hidden.iter().enumerate() {
            let n = names(i);
            let (h, pred) = (cx.output(l), cx.tensor(&n.pred)?);
            let bias = Epilogue::BiasActivation {
                bias: cx.tensor(&n.bias)?,
                activation: Activation::Identity,
            };
            let from_h = Gemm::new(pred, cx.tensor(&n.a)?, false, h, false);
            if self.conditioned {
                cx.backend().gemm(&from_h)?;
                let from_y = Gemm {
                    beta: 1.0,
                    ..Gemm::new(pred, cx.tensor(&n.c)?, false, cx.targets(), false)
                };
                cx.backend().gemm_then(&from_y, bias)?;
            } else {
                cx.backend().gemm_then(&from_h, bias)?;
            }
            let delta = cx.delta(l);
            cx.backend().axpby(&Axpby {
                y: delta,
                x: pred,
                alpha: inv_batch,
                beta: 0.0,
            })?;
            let activation = cx.layers()[l].activation();
            cx.backend().activation_grad(delta, h, activation)?;
        }
        cx.output_error()?;
        // Each predictor's target: the input gradient the next weighted layer sends
        // down from its delta (exact for the top one, synthetic below).
        let weighted = weighted_layers(cx.layers());
        for (i, &l) in hidden.iter().enumerate() {
            let n = names(i);
            let error = cx.tensor(&n.error)?;
            input_gradient(cx, l, weighted[i + 1], error)?;
            // error = ĝ/B − target: the predictor's error at the crate's scale.
            let pred = cx.tensor(&n.pred)?;
            cx.backend().axpby(&Axpby {
                y: error,
                x: pred,
                alpha: inv_batch,
                beta: -1.0,
            })?;
        }
        // Every network and predictor gradient as one grouped product.
        let mut grads: Vec<LayerGrad> = (0..cx.layers().len())
            .filter_map(|l| cx.layer_grad(l))
            .collect();
        for (i, &l) in hidden.iter().enumerate() {
            let n = names(i);
            let error = cx.tensor(&n.error)?;
            grads.push(LayerGrad::new(
                error,
                cx.output(l),
                cx.tensor_grad(&n.a)?,
                cx.tensor_grad(&n.bias)?,
            ));
            if self.conditioned {
                grads.push(LayerGrad::new(
                    error,
                    cx.targets(),
                    cx.tensor_grad(&n.c)?,
                    cx.tensor(&n.sink)?,
                ));
            }
        }
        cx.backend().layer_grads(&grads)
    }

    fn tensor_optimizer(&self) -> Option<Optimizer> {
        self.optimizer
    }

    fn state(&self) -> Vec<(String, String)> {
        vec![
            ("conditioned".into(), self.conditioned.to_string()),
            (
                "predictor_optimizer".into(),
                crate::learner::settings::optimizer_text(self.optimizer),
            ),
        ]
    }

    fn restore_state(&mut self, state: &[(String, String)]) -> Result<()> {
        for (key, value) in state {
            match key.as_str() {
                "conditioned" if *value != self.conditioned.to_string() => {
                    return Err(Error::config(format!(
                        "{}: conditioned = {value} is the other variant (sg or csg)",
                        self.name()
                    )))
                }
                "conditioned" => {}
                "predictor_optimizer" => {
                    let optimizer =
                        crate::learner::settings::parse_optimizer("predictor_optimizer", value)?;
                    if let Some(o) = optimizer {
                        o.validate()?;
                    }
                    self.optimizer = optimizer;
                }
                _ => {
                    return Err(Error::config(format!(
                        "{} has no setting {key}",
                        self.name()
                    )))
                }
            }
        }
        Ok(())
    }
}

/// The input gradient of the layers `l + 1 ..= m` (no activation derivative: the
/// gradient with respect to `h_l`) from `delta(m)` into `out` (`outputs(l) x batch`).
/// Weightless layers in between pass it through their own delta regions; a flatten,
/// whose delta is the one below, is skipped (its input gradient is its output's).
fn input_gradient(cx: &mut StepCx<'_>, l: usize, m: usize, out: Mat) -> Result<()> {
    let mut d = cx.delta(m);
    for k in (l + 1..=m).rev() {
        let spec = cx.layers()[k];
        let d_in_shape = (spec.inputs(), d.cols);
        if spec.aliases_input() {
            d = d.reshape(d_in_shape.0, d_in_shape.1);
            if k == l + 1 {
                // Only flattens were left: the gradient is `d` itself.
                cx.backend().axpby(&Axpby {
                    y: out,
                    x: d,
                    alpha: 1.0,
                    beta: 0.0,
                })?;
            }
            continue;
        }
        let below_pass_through = (l + 1..k).all(|j| cx.layers()[j].aliases_input());
        let d_in = if below_pass_through {
            out.reshape(d_in_shape.0, d_in_shape.1)
        } else {
            cx.delta(k - 1)
        };
        let (io, via) = (cx.io(k), cx.weights(k));
        spec.layer()
            .backward_input(cx.backend(), &io, via, d, d_in, None)?;
        if below_pass_through {
            return Ok(());
        }
        d = d_in;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_predictor_optimizer_reads_back_exactly() {
        for o in [
            None,
            Some(Optimizer::adam(3e-4)),
            Some(Optimizer::Sgd {
                lr: 0.1f32.sqrt(),
                momentum: 0.9,
                weight_decay: 1e-7,
                nesterov: true,
            }),
        ] {
            assert_eq!(
                crate::learner::settings::parse_optimizer(
                    "p",
                    &crate::learner::settings::optimizer_text(o)
                )
                .unwrap(),
                o
            );
        }
        assert_eq!(
            crate::learner::settings::parse_optimizer("p", "adam:0.01").unwrap(),
            Some(Optimizer::adam(0.01))
        );
        for bad in ["adam:1:2", "adam", "", "sgd:x", "network:1"] {
            assert!(
                crate::learner::settings::parse_optimizer("p", bad).is_err(),
                "{bad}"
            );
        }
    }

    #[test]
    fn restoring_checks_the_variant() {
        let sg = SyntheticGradients::new().with_optimizer(Optimizer::adam(1e-3));
        let mut csg = SyntheticGradients::conditioned();
        assert!(csg.restore_state(&sg.state()).is_err());
        let mut other = SyntheticGradients::new();
        other.restore_state(&sg.state()).unwrap();
        assert_eq!(other, sg);
        let unknown = [("nope".to_string(), "1".to_string())];
        assert!(other.restore_state(&unknown).is_err());
        let invalid = [("predictor_optimizer".to_string(), "adam:-1".to_string())];
        assert!(other.restore_state(&invalid).is_err());
    }
}
