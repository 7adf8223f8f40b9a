//! Losses and the output error they send back.

/// The training objective, computed on the output layer's activations `y` against
/// targets `t` (one-hot class labels for classification).
///
/// Both are averaged over the batch, so the output error is `∂L/∂y` of the batch mean.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Loss {
    /// `-Σ_k t_k log softmax(y)_k`, computed from logits with the max subtracted first
    /// so large logits cannot overflow. Its error is `softmax(y) - t`.
    #[default]
    SoftmaxCrossEntropy,
    /// `Σ_k (y_k - t_k)² / K` (the mean over the `K` outputs). Its error is `2 (y - t) / K`.
    MeanSquaredError,
}

impl Loss {
    /// The short name used on command lines (`xent`, `mse`).
    pub fn name(self) -> &'static str {
        match self {
            Loss::SoftmaxCrossEntropy => "xent",
            Loss::MeanSquaredError => "mse",
        }
    }

    /// Parses [`Loss::name`] (also `cross-entropy`, `ce`).
    pub fn from_name(name: &str) -> Option<Loss> {
        match name.to_ascii_lowercase().as_str() {
            "xent" | "ce" | "cross-entropy" | "cross_entropy" | "softmax" => {
                Some(Loss::SoftmaxCrossEntropy)
            }
            "mse" | "l2" => Some(Loss::MeanSquaredError),
            _ => None,
        }
    }

    /// Loss of one sample and `∂loss/∂y`, written into `grad` scaled by `scale`
    /// (the caller passes `1 / batch` so gradients are of the batch mean).
    ///
    /// `y`, `t` and `grad` are read and written through `at(k)` indices so the
    /// caller can walk a strided column of a feature-major batch.
    #[inline]
    pub(crate) fn sample(
        self,
        classes: usize,
        y: impl Fn(usize) -> f32,
        t: impl Fn(usize) -> f32,
        mut grad: impl FnMut(usize, f32),
        scale: f32,
    ) -> f32 {
        match self {
            Loss::SoftmaxCrossEntropy => {
                let max = (0..classes).map(&y).fold(f32::NEG_INFINITY, f32::max);
                let sum: f32 = (0..classes).map(|k| (y(k) - max).exp()).sum();
                let log_sum = sum.ln();
                let mut loss = 0.0;
                for k in 0..classes {
                    let log_p = y(k) - max - log_sum;
                    loss -= t(k) * log_p;
                    grad(k, scale * (log_p.exp() - t(k)));
                }
                loss
            }
            Loss::MeanSquaredError => {
                let inv_k = 1.0 / classes as f32;
                let mut loss = 0.0;
                for k in 0..classes {
                    let d = y(k) - t(k);
                    loss += d * d * inv_k;
                    grad(k, scale * 2.0 * d * inv_k);
                }
                loss
            }
        }
    }
}

impl std::fmt::Display for Loss {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}
