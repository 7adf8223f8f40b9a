//! The built-in learners by name: what the examples' `--rule` flag and
//! [`Trainer::from_checkpoint`](crate::Trainer::from_checkpoint) build.

use super::{
    Ddtp, DeltaRule, Dtp, EquilibriumProp, ForwardForward, KolenPollack, Learner, PredictiveCoding,
    SyntheticGradients, WeightMirror,
};
use crate::error::{Error, Result};
use crate::rule::Rule;
use crate::trainer::TrainConfig;

/// The built-in learners that are not delta rules: name and one-line description.
pub const LEARNERS: &[(&str, &str)] = &[
    (
        "kp",
        "Kolen-Pollack: FA whose feedback gets the weights' updates, plus decay (Akrout 2019)",
    ),
    (
        "wm",
        "weight mirror: FA whose feedback learns the weights from noise (Akrout 2019)",
    ),
    (
        "dtp",
        "difference target propagation through learned layer inverses",
    ),
    (
        "ddtp",
        "direct difference target propagation, linear feedback (DDTP-linear)",
    ),
    (
        "sg",
        "synthetic gradients: linear predictors of each hidden layer's gradient",
    ),
    ("csg", "synthetic gradients conditioned on the label"),
    (
        "ep",
        "equilibrium propagation: free and nudged settling phases, contrastive local updates",
    ),
    (
        "pc",
        "predictive coding: value nodes relaxed on prediction errors, local Hebbian updates",
    ),
    (
        "ff",
        "forward-forward: per-layer goodness on positive and negative data, no backward pass",
    ),
];

/// Every built-in learner's name: the nine delta rules, then [`LEARNERS`].
pub fn names() -> Vec<&'static str> {
    Rule::ALL
        .iter()
        .map(|r| r.name())
        .chain(LEARNERS.iter().map(|(name, _)| *name))
        .collect()
}

/// The built-in learner called `name` (a [`Rule`] name, long names included, or one
/// of [`LEARNERS`]) with its default settings; a delta rule draws its feedback as
/// `config` says.
pub fn builtin(name: &str, config: &TrainConfig) -> Result<Box<dyn Learner>> {
    if let Some(rule) = Rule::from_name(name) {
        let learner = DeltaRule::new(rule, config.feedback_init)
            .with_shared_conv_feedback(config.shared_conv_feedback);
        return Ok(Box::new(learner));
    }
    match name.to_ascii_lowercase().as_str() {
        "kp" | "kolen-pollack" => {
            let learner = KolenPollack::default().with_feedback_init(config.feedback_init);
            return Ok(Box::new(learner));
        }
        "wm" | "weight-mirror" => {
            let learner = WeightMirror::default().with_feedback_init(config.feedback_init);
            return Ok(Box::new(learner));
        }
        "ep" | "equilibrium-propagation" => return Ok(Box::new(EquilibriumProp::default())),
        "pc" | "predictive-coding" => return Ok(Box::new(PredictiveCoding::default())),
        "ff" | "forward-forward" => return Ok(Box::new(ForwardForward::default())),
        "sg" | "synthetic-gradients" => return Ok(Box::new(SyntheticGradients::new())),
        "csg" | "conditioned-synthetic-gradients" => {
            return Ok(Box::new(SyntheticGradients::conditioned()))
        }
        "dtp" | "difference-target-propagation" => return Ok(Box::new(Dtp::default())),
        "ddtp" | "direct-difference-target-propagation" => return Ok(Box::new(Ddtp::default())),
        _ => {}
    }
    Err(Error::config(format!(
        "unknown learner {name:?}; the built-in ones are {}",
        names().join(", ")
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_name_builds_the_learner_of_that_name() {
        let config = TrainConfig::default();
        for name in names() {
            assert_eq!(builtin(name, &config).unwrap().name(), name);
        }
        let Err(err) = builtin("nope", &config) else {
            panic!("an unknown name builds nothing")
        };
        let err = err.to_string();
        assert!(err.contains("nope") && err.contains("dfa"), "{err}");
    }
}
