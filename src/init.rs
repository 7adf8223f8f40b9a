//! Seeded random initialisation of weights and feedback matrices.

use rand_chacha::rand_core::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution as _, Normal, Uniform};

use crate::backend::Distribution;
use crate::error::{Error, Result};

/// How a dense layer's weights are drawn (biases always start at zero).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum WeightInit {
    /// Glorot/Xavier uniform: `U(±sqrt(6 / (fan_in + fan_out)))`; suits tanh and sigmoid.
    Xavier,
    /// He/Kaiming normal: `N(0, 2 / fan_in)`; suits relu.
    Kaiming,
    /// `U(±bound)`.
    Uniform(f32),
    /// All zeros (a network that cannot break symmetry under BP; useful in tests).
    Zeros,
}

impl WeightInit {
    /// Fills `w` (a `fan_out x fan_in` matrix) from `rng`.
    pub(crate) fn fill(
        self,
        w: &mut [f32],
        fan_in: usize,
        fan_out: usize,
        rng: &mut ChaCha8Rng,
    ) -> Result<()> {
        match self {
            WeightInit::Xavier => {
                let bound = (6.0 / (fan_in as f64 + fan_out as f64)).sqrt() as f32;
                fill_uniform(w, -bound, bound, rng)
            }
            WeightInit::Kaiming => fill_normal(w, (2.0 / fan_in as f64).sqrt() as f32, rng),
            WeightInit::Uniform(bound) => fill_uniform(w, -bound, bound, rng),
            WeightInit::Zeros => {
                w.fill(0.0);
                Ok(())
            }
        }
    }
}

/// How a rule's fixed random feedback matrices are drawn. `fan` is the number of
/// error components each feedback row combines (the width of the error it carries).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FeedbackInit {
    /// `U(±1/sqrt(fan))`.
    #[default]
    Uniform,
    /// `N(0, 1/fan)`.
    Gaussian,
    /// `U(0, 1)`: the all-positive feedback of the classic MNIST DFA demo.
    UnitUniform,
    /// Glorot/Xavier uniform over the fans of the weights it stands in for,
    /// `U(±sqrt(6 / (fan + fan_in)))` (BioTorch draws `W` and `B` alike this way):
    /// feedback on the scale of the forward weights, so an error keeps its size through
    /// FA's chain.
    Xavier,
}

impl FeedbackInit {
    /// The short name used on command lines.
    pub fn name(self) -> &'static str {
        match self {
            FeedbackInit::Uniform => "uniform",
            FeedbackInit::Gaussian => "gaussian",
            FeedbackInit::UnitUniform => "unit-uniform",
            FeedbackInit::Xavier => "xavier",
        }
    }

    /// Parses [`FeedbackInit::name`].
    pub fn from_name(name: &str) -> Option<FeedbackInit> {
        match name.to_ascii_lowercase().as_str() {
            "uniform" => Some(FeedbackInit::Uniform),
            "gaussian" | "normal" => Some(FeedbackInit::Gaussian),
            "unit-uniform" | "unit_uniform" | "01" => Some(FeedbackInit::UnitUniform),
            "xavier" | "glorot" => Some(FeedbackInit::Xavier),
            _ => None,
        }
    }

    /// Fills a feedback matrix whose rows combine `fan` error components (Xavier takes
    /// `fan` for both of its fans here; [`FeedbackInit::fill_shaped`] gives it both).
    pub fn fill(self, b: &mut [f32], fan: usize, rng: &mut ChaCha8Rng) -> Result<()> {
        self.fill_fans(b, fan, fan, rng)
    }

    /// Fills the feedback matrix of `shape`.
    pub fn fill_shaped(
        self,
        b: &mut [f32],
        shape: &crate::rule::FeedbackShape,
        rng: &mut ChaCha8Rng,
    ) -> Result<()> {
        self.fill_fans(b, shape.fan, shape.fan_in, rng)
    }

    fn fill_fans(
        self,
        b: &mut [f32],
        fan: usize,
        other: usize,
        rng: &mut ChaCha8Rng,
    ) -> Result<()> {
        match self.distribution(fan, other) {
            Distribution::Normal { std } => fill_normal(b, std, rng),
            Distribution::Uniform { lo, hi } => fill_uniform(b, lo, hi, rng),
        }
    }

    /// What a feedback tensor of `shape` draws each value from (as
    /// [`FeedbackInit::fill_shaped`], for draws made on a backend).
    pub fn distribution_for(self, shape: &crate::rule::FeedbackShape) -> Distribution {
        self.distribution(shape.fan, shape.fan_in)
    }

    fn distribution(self, fan: usize, other: usize) -> Distribution {
        let scale = (1.0 / fan.max(1) as f64).sqrt() as f32;
        match self {
            FeedbackInit::Uniform => Distribution::Uniform {
                lo: -scale,
                hi: scale,
            },
            FeedbackInit::Gaussian => Distribution::Normal { std: scale },
            FeedbackInit::UnitUniform => Distribution::Uniform { lo: 0.0, hi: 1.0 },
            FeedbackInit::Xavier => {
                let bound = (6.0 / (fan + other).max(1) as f64).sqrt() as f32;
                Distribution::Uniform {
                    lo: -bound,
                    hi: bound,
                }
            }
        }
    }
}

/// Independent random streams derived from one seed, so adding draws to one purpose
/// (say, feedback matrices) never shifts another (weights, shuffling).
#[derive(Debug, Clone, Copy)]
pub(crate) enum Stream {
    Weights = 1,
    Feedback = 2,
    Shuffle = 3,
}

/// The generator for one purpose of a seeded run.
pub(crate) fn rng_for(seed: u64, stream: Stream) -> ChaCha8Rng {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    rng.set_stream(stream as u64);
    rng
}

fn fill_uniform(w: &mut [f32], lo: f32, hi: f32, rng: &mut ChaCha8Rng) -> Result<()> {
    if !(lo.is_finite() && hi.is_finite() && lo < hi) {
        return Err(Error::config(format!(
            "uniform init needs finite bounds lo < hi, got [{lo}, {hi}]"
        )));
    }
    let dist = Uniform::new(lo, hi).map_err(|e| Error::config(e.to_string()))?;
    w.iter_mut().for_each(|v| *v = dist.sample(rng));
    Ok(())
}

fn fill_normal(w: &mut [f32], std: f32, rng: &mut ChaCha8Rng) -> Result<()> {
    let dist = Normal::new(0.0f32, std).map_err(|e| Error::config(e.to_string()))?;
    w.iter_mut().for_each(|v| *v = dist.sample(rng));
    Ok(())
}

/// The random stream a learner draws its tensors from for a run of seed `seed`
/// (independent of the weights' and the batch order's streams).
pub fn learner_rng(seed: u64) -> ChaCha8Rng {
    rng_for(seed, Stream::Feedback)
}

/// A generator's state as strings (`seed` in hex, `stream`, `word_pos`), for
/// checkpoints.
pub fn rng_state(rng: &ChaCha8Rng) -> Vec<(String, String)> {
    let seed: String = rng.get_seed().iter().map(|b| format!("{b:02x}")).collect();
    vec![
        ("seed".into(), seed),
        ("stream".into(), rng.get_stream().to_string()),
        ("word_pos".into(), rng.get_word_pos().to_string()),
    ]
}

/// [`rng_state`] with every key under `prefix` (e.g. `noise_rng.`), so one learner's
/// state can hold a generator beside its settings.
pub fn rng_state_under(prefix: &str, rng: &ChaCha8Rng) -> Vec<(String, String)> {
    rng_state(rng)
        .into_iter()
        .map(|(k, v)| (format!("{prefix}{k}"), v))
        .collect()
}

/// The generator [`rng_state_under`] wrote under `prefix`; other keys are ignored.
pub fn rng_from_state_under(prefix: &str, state: &[(String, String)]) -> Result<ChaCha8Rng> {
    let own: Vec<(String, String)> = state
        .iter()
        .filter_map(|(k, v)| Some((k.strip_prefix(prefix)?.to_string(), v.clone())))
        .collect();
    rng_from_state(&own)
}

/// The generator [`rng_state`] wrote.
pub fn rng_from_state(state: &[(String, String)]) -> Result<ChaCha8Rng> {
    let get = |key: &str| {
        state
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
            .ok_or_else(|| Error::config(format!("random state lacks {key:?}")))
    };
    let hex = get("seed")?;
    let bad = || Error::config(format!("random seed {hex:?} is not 64 hex digits"));
    if hex.len() != 64 || !hex.is_ascii() {
        return Err(bad());
    }
    let mut seed = [0u8; 32];
    for (i, byte) in seed.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).map_err(|_| bad())?;
    }
    let stream: u64 = get("stream")?
        .parse()
        .map_err(|_| Error::config("random stream is not a number"))?;
    let word_pos: u128 = get("word_pos")?
        .parse()
        .map_err(|_| Error::config("random position is not a number"))?;
    let mut rng = ChaCha8Rng::from_seed(seed);
    rng.set_stream(stream);
    rng.set_word_pos(word_pos);
    Ok(rng)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rule::FeedbackShape;

    #[test]
    fn xavier_feedback_spans_the_glorot_bound_of_its_weights() {
        let shape = FeedbackShape {
            rows: 16,
            cols: 150,
            fan: 400,
            fan_in: 150,
        };
        let mut b = vec![0.0; shape.rows * shape.cols];
        let mut rng = learner_rng(3);
        FeedbackInit::Xavier
            .fill_shaped(&mut b, &shape, &mut rng)
            .unwrap();
        let bound = (6.0f32 / 550.0).sqrt();
        let max = b.iter().fold(0.0f32, |m, v| m.max(v.abs()));
        assert!(max <= bound && max > 0.95 * bound, "{max} vs {bound}");
        // Uniform takes only the error's fan: a different, larger scale here.
        let mut u = vec![0.0; b.len()];
        FeedbackInit::Uniform
            .fill_shaped(&mut u, &shape, &mut rng)
            .unwrap();
        let max_u = u.iter().fold(0.0f32, |m, v| m.max(v.abs()));
        assert!(max_u <= 0.05 && max_u > 0.0475, "{max_u}");
        assert_eq!(
            FeedbackInit::from_name("xavier"),
            Some(FeedbackInit::Xavier)
        );
    }
}
