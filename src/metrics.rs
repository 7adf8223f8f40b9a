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
