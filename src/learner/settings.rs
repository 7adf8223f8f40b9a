//! Text forms of learner settings, as checkpoints keep them and `--settings` takes
//! them.

use std::str::FromStr;

use crate::error::{Error, Result};
use crate::optim::Optimizer;

/// The text of setting `key` in a learner's checkpointed state.
pub(crate) fn setting_text<'a>(state: &'a [(String, String)], key: &str) -> Result<&'a str> {
    state
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
        .ok_or_else(|| Error::config(format!("learner state lacks {key:?}")))
}

/// Setting `key` of a learner's checkpointed state, parsed.
pub(crate) fn setting<T: FromStr>(state: &[(String, String)], key: &str) -> Result<T> {
    let value = setting_text(state, key)?;
    value
        .parse()
        .map_err(|_| Error::config(format!("learner state {key:?} = {value:?} does not parse")))
}

/// An optional optimizer (`None`: the network's) as setting text: `network`, or `adam:LR:BETA1:BETA2:EPS:DECAY`
/// / `sgd:LR:MOMENTUM:DECAY:NESTEROV`, floats in their shortest exact form.
pub(crate) fn optimizer_text(optimizer: Option<Optimizer>) -> String {
    match optimizer {
        None => "network".into(),
        Some(Optimizer::Sgd {
            lr,
            momentum,
            weight_decay,
            nesterov,
        }) => format!("sgd:{lr}:{momentum}:{weight_decay}:{nesterov}"),
        Some(Optimizer::Adam {
            lr,
            beta1,
            beta2,
            eps,
            weight_decay,
        }) => format!("adam:{lr}:{beta1}:{beta2}:{eps}:{weight_decay}"),
    }
}

/// Reads [`optimizer_text`]'s form, or the short `adam:LR` / `sgd:LR` (the other
/// hyperparameters at [`Optimizer::adam`] / [`Optimizer::sgd`]'s values).
pub(crate) fn parse_optimizer(key: &str, text: &str) -> Result<Option<Optimizer>> {
    let bad = || {
        Error::config(format!(
            "{key} {text:?}: expected network, adam:LR[:BETA1:BETA2:EPS:DECAY] or sgd:LR[:MOMENTUM:DECAY:NESTEROV]"
        ))
    };
    let words: Vec<&str> = text.split(':').collect();
    let f = |i: usize| -> Result<f32> { words.get(i).and_then(|w| w.parse().ok()).ok_or_else(bad) };
    match (words[0], words.len()) {
        ("network", 1) => Ok(None),
        ("adam", 2) => Ok(Some(Optimizer::adam(f(1)?))),
        ("sgd", 2) => Ok(Some(Optimizer::sgd(f(1)?))),
        ("sgd", 5) => Ok(Some(Optimizer::Sgd {
            lr: f(1)?,
            momentum: f(2)?,
            weight_decay: f(3)?,
            nesterov: words[4].parse().map_err(|_| bad())?,
        })),
        ("adam", 6) => Ok(Some(Optimizer::Adam {
            lr: f(1)?,
            beta1: f(2)?,
            beta2: f(3)?,
            eps: f(4)?,
            weight_decay: f(5)?,
        })),
        _ => Err(bad()),
    }
}
