//! What training and evaluation report.

/// Mean loss and accuracy over a set of samples.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Evaluation {
    /// Mean per-sample loss.
    pub loss: f32,
    /// Fraction of samples whose largest output is the target class, in `[0, 1]`.
    pub accuracy: f32,
    /// Number of samples it covers.
    pub samples: usize,
}

impl Evaluation {
    /// Turns the accumulators `[Σ loss, Σ correct, count]` a backend keeps into means.
    pub(crate) fn from_sums(sums: &[f32]) -> Evaluation {
        let (loss, correct, count) = match sums {
            [loss, correct, count, ..] => (*loss, *correct, *count),
            _ => (f32::NAN, 0.0, 0.0),
        };
        let denom = count.max(1.0);
        Evaluation {
            loss: loss / denom,
            accuracy: correct / denom,
            samples: count as usize,
        }
    }
}

impl std::fmt::Display for Evaluation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "loss {:.4}, accuracy {:.2}% ({} samples)",
            self.loss,
            100.0 * self.accuracy,
            self.samples
        )
    }
}

/// How well one layer's update and feedback align with backprop's
/// (see [`Trainer::alignment`](crate::Trainer::alignment)).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LayerAlignment {
    /// The layer's index in the network (only layers with weights are reported).
    pub layer: usize,
    /// Degrees between the rule's weight update and BP's exact weight gradient on the
    /// same batch (0 = same direction, 90 = orthogonal); `None` when either is zero
    /// (e.g. a frozen layer).
    pub update_angle: Option<f64>,
    /// Degrees between the feedback that forms this layer's delta and the forward
    /// weights it stands in for (FA: `B` vs the next weighted layer's `W`; DFA: the last
    /// hidden layer's `B` vs the output layer's `W^T`), both flattened; `None` for the
    /// output layer and feedback with no forward counterpart.
    pub feedback_angle: Option<f64>,
    /// `||B_l|| / ||W_{l+1}||` (Frobenius), where `feedback_angle` is defined.
    pub norm_ratio: Option<f64>,
}

/// The angle between two vectors in degrees, accumulated in f64: 0 for the same
/// direction, 90 orthogonal, 180 opposite. `None` when the lengths differ or either
/// vector is zero (or not finite).
pub fn angle_degrees(a: &[f32], b: &[f32]) -> Option<f64> {
    if a.len() != b.len() {
        return None;
    }
    let (mut dot, mut aa, mut bb) = (0.0f64, 0.0f64, 0.0f64);
    for (&x, &y) in a.iter().zip(b) {
        let (x, y) = (f64::from(x), f64::from(y));
        dot += x * y;
        aa += x * x;
        bb += y * y;
    }
    let denom = (aa * bb).sqrt();
    if !(denom.is_finite() && denom > 0.0 && dot.is_finite()) {
        return None;
    }
    // Rounding can push the cosine a hair past ±1.
    Some((dot / denom).clamp(-1.0, 1.0).acos().to_degrees())
}

/// `||a|| / ||b||` (Euclidean, f64); `None` when `b` is zero or a norm is not finite.
pub fn norm_ratio(a: &[f32], b: &[f32]) -> Option<f64> {
    let norm = |v: &[f32]| v.iter().map(|&x| f64::from(x).powi(2)).sum::<f64>().sqrt();
    let (na, nb) = (norm(a), norm(b));
    (na.is_finite() && nb.is_finite() && nb > 0.0).then(|| na / nb)
}
