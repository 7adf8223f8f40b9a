//! Command-line parsing shared by the examples (`--flag value` pairs; no parser crate).

// Each example uses a different subset.
#![allow(dead_code)]

pub mod plot;

use std::path::Path;

use plasticity::{Error, Result};

/// Errors of an example's own I/O and plotting, beside the crate's.
pub type AnyResult<T> = std::result::Result<T, Box<dyn std::error::Error>>;

/// Writes `path` through `write(tmp)` on a temporary file beside it, then renames the
/// temporary over `path`: readers see the old file or the whole new one, never half.
/// For writers that need a path of their own (image encoders, which pick the format by
/// the extension the temporary keeps); bytes in memory go through
/// `plasticity::checkpoint::write_atomic`.
pub fn replace_file(path: &Path, write: impl FnOnce(&Path) -> AnyResult<()>) -> AnyResult<()> {
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("out");
    let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("tmp");
    let tmp = path.with_file_name(format!(".{name}.tmp.{ext}"));
    let result = write(&tmp).and_then(|()| Ok(std::fs::rename(&tmp, path)?));
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result.map_err(|e| format!("{}: {e}", path.display()).into())
}

/// An [`Error::InvalidConfig`] carrying `msg` followed by the usage text.
pub fn bad(usage: &str, msg: &str) -> Error {
    Error::InvalidConfig(format!("{msg}\n{usage}"))
}

/// Parses the `value` given to `flag`.
pub fn parse<T: std::str::FromStr>(usage: &str, flag: &str, value: &str) -> Result<T> {
    value
        .parse()
        .map_err(|_| bad(usage, &format!("{flag}: cannot parse '{value}'")))
}

/// The command line's `--flag value` pairs, in order; prints `usage` and exits on `--help`.
pub fn flag_pairs(usage: &str) -> Result<Vec<(String, String)>> {
    flag_pairs_with_switches(usage, &[])
}

/// Like [`flag_pairs`], where the flags in `switches` take no value (paired with "").
pub fn flag_pairs_with_switches(usage: &str, switches: &[&str]) -> Result<Vec<(String, String)>> {
    let mut pairs = Vec::new();
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        if flag == "--help" || flag == "-h" {
            println!("{usage}");
            std::process::exit(0);
        }
        if switches.contains(&flag.as_str()) {
            pairs.push((flag, String::new()));
            continue;
        }
        let value = it
            .next()
            .ok_or_else(|| bad(usage, &format!("{flag} needs a value")))?;
        pairs.push((flag, value));
    }
    Ok(pairs)
}

/// Runs an example's body and reports a failure by its message (not its debug form)
/// with exit status 1.
pub fn main_with(body: impl FnOnce() -> Result<()>) -> std::process::ExitCode {
    match body() {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// The options of the examples that train several rules side by side
/// (`alignment`, `compare_rules`): same flags, each example its own defaults.
pub struct RuleStudyArgs {
    /// `--rules R1,R2,...`
    pub rules: Vec<plasticity::Rule>,
    /// `--hidden W1,W2,...`
    pub hidden: Vec<usize>,
    /// `--epochs N`
    pub epochs: usize,
    /// `--train-limit N`
    pub train_limit: Option<usize>,
    /// `--probe N`: training images alignment angles are averaged over.
    pub probe: usize,
    /// `--seed S`
    pub seed: u64,
    /// `--out PATH`
    pub out: String,
}

impl RuleStudyArgs {
    /// Mini-batch size of both rule studies.
    pub const BATCH: usize = 64;

    /// A CPU trainer for `rule` on `train`'s shape: `--hidden` tanh layers, identity
    /// outputs, Adam at 1e-3, batch [`Self::BATCH`], weights from `--seed`.
    pub fn trainer(
        &self,
        rule: plasticity::Rule,
        train: &plasticity::data::Dataset,
    ) -> Result<plasticity::Trainer> {
        use plasticity::{Activation, Device, Network, Optimizer, TrainConfig, Trainer};
        let net = Network::builder(train.dim())
            .hidden(&self.hidden, Activation::Tanh)
            .dense(train.classes(), Activation::Identity)
            .seed(self.seed)
            .build()?;
        let config = TrainConfig {
            rule,
            optimizer: Optimizer::adam(1e-3),
            batch_size: Self::BATCH,
            ..TrainConfig::default()
        };
        Trainer::new(net, config, Device::Cpu)
    }

    /// Overrides `defaults` with the command line's flags.
    pub fn parse(usage: &str, mut args: RuleStudyArgs) -> Result<RuleStudyArgs> {
        for (flag, value) in flag_pairs(usage)? {
            match flag.as_str() {
                "--rules" => {
                    args.rules = value
                        .split(',')
                        .map(|r| {
                            plasticity::Rule::from_name(r)
                                .ok_or_else(|| bad(usage, &format!("rule {r}?")))
                        })
                        .collect::<Result<_>>()?
                }
                "--hidden" => {
                    args.hidden = value
                        .split(',')
                        .map(|w| parse(usage, &flag, w))
                        .collect::<Result<_>>()?
                }
                "--epochs" => args.epochs = parse(usage, &flag, &value)?,
                "--train-limit" => args.train_limit = Some(parse(usage, &flag, &value)?),
                "--probe" => args.probe = parse(usage, &flag, &value)?,
                "--seed" => args.seed = parse(usage, &flag, &value)?,
                "--out" => args.out = value,
                _ => return Err(bad(usage, &format!("unknown option {flag}"))),
            }
        }
        Ok(args)
    }
}
