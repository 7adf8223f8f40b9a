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

/// Runs an example's body (after [`quiet_gpu_probe`]) and reports a failure by its
/// message (not its debug form) with exit status 1.
pub fn main_with(body: impl FnOnce() -> Result<()>) -> std::process::ExitCode {
    quiet_gpu_probe();
    match body() {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            report_failure(&e);
            std::process::ExitCode::FAILURE
        }
    }
}

/// Prints `NAME failed: MESSAGE` on stderr, `NAME` the example's. Not `error: ...`:
/// that is how the Vulkan loader's own complaints start, and a failure should not
/// look like one (nor a loader line like a failure).
pub fn report_failure(e: &dyn std::fmt::Display) {
    let exe = std::env::args().next().unwrap_or_default();
    let name = Path::new(&exe)
        .file_stem()
        .map_or_else(|| "example".into(), |s| s.to_string_lossy().into_owned());
    eprintln!("{name} failed: {e}");
}

/// Keeps Mesa's Vulkan device-select layer from printing `error: XDG_RUNTIME_DIR is
/// invalid or not set in the environment.` on every adapter probe of a session that
/// has no runtime directory (a container, `ssh` without a login session, CI).
///
/// The layer asks the Wayland compositor which GPU drives the display, and libwayland
/// prints that line when there is no runtime directory to find one in. plasticity ranks
/// adapters itself, so the layer's answer is not needed there: this sets the layer's own
/// switch `NODEVICE_SELECT=1`, and only when the runtime directory is missing and the
/// user has not configured the layer or a Wayland connection (`NODEVICE_SELECT`,
/// `MESA_VK_DEVICE_SELECT`, `DRI_PRIME`, `WAYLAND_DISPLAY`, `WAYLAND_SOCKET`).
///
/// An application may change its environment at start-up, while it has one thread;
/// the library never does (another thread may be reading it), which is why this lives
/// here and examples call it first thing in `main`.
pub fn quiet_gpu_probe() {
    let runtime_dir =
        std::env::var_os("XDG_RUNTIME_DIR").is_some_and(|d| Path::new(&d).is_absolute());
    let configured = [
        "NODEVICE_SELECT",
        "MESA_VK_DEVICE_SELECT",
        "DRI_PRIME",
        "WAYLAND_DISPLAY",
        "WAYLAND_SOCKET",
    ]
    .iter()
    .any(|v| std::env::var_os(v).is_some());
    if !runtime_dir && !configured {
        std::env::set_var("NODEVICE_SELECT", "1");
    }
}

/// Fails unless a file can be created where `path` will be written: run before a
/// long computation whose result goes there, so a bad path costs nothing. Creates and
/// removes a temporary file beside `path`; `flag` names the option in the message.
pub fn check_writable(flag: &str, path: &Path) -> Result<()> {
    let fail = |source: std::io::Error| Error::Write {
        path: path.to_path_buf(),
        source,
    };
    if path.is_dir() {
        return Err(fail(std::io::Error::other(format!(
            "{flag} names a directory, not a file"
        ))));
    }
    let name = path
        .file_name()
        .ok_or_else(|| fail(std::io::Error::other(format!("{flag} has no file name"))))?;
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => std::path::PathBuf::from("."),
    };
    let mut probe_name = std::ffi::OsString::from(".");
    probe_name.push(name);
    probe_name.push(format!(".probe{}", std::process::id()));
    let probe = dir.join(probe_name);
    std::fs::File::create(&probe).map_err(fail)?;
    let _ = std::fs::remove_file(&probe);
    Ok(())
}

/// The options of the examples that train several rules side by side
/// (`alignment`, `compare_rules`): same flags, each example its own defaults.
pub struct RuleStudyArgs {
    /// `--rules R1,R2,...`: built-in learner names (see `plasticity::learner::catalogue`).
    pub rules: Vec<String>,
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

    /// A CPU trainer for the built-in learner `rule` on `train`'s shape: `--hidden`
    /// tanh layers, identity outputs, Adam at 1e-3, batch [`Self::BATCH`], weights
    /// from `--seed`.
    pub fn trainer(
        &self,
        rule: &str,
        train: &plasticity::data::Dataset,
    ) -> Result<plasticity::Trainer> {
        use plasticity::{learner, Activation, Device, Network, Optimizer, TrainConfig, Trainer};
        let net = Network::builder(train.dim())
            .hidden(&self.hidden, Activation::Tanh)
            .dense(train.classes(), Activation::Identity)
            .seed(self.seed)
            .build()?;
        let config = TrainConfig {
            rule: plasticity::Rule::from_name(rule).unwrap_or_default(),
            optimizer: Optimizer::adam(1e-3),
            batch_size: Self::BATCH,
            ..TrainConfig::default()
        };
        let learner = learner::builtin(rule, &config)?;
        Trainer::with_learner(net, config, learner, Device::Cpu)
    }

    /// Overrides `defaults` with the command line's flags.
    pub fn parse(usage: &str, mut args: RuleStudyArgs) -> Result<RuleStudyArgs> {
        for (flag, value) in flag_pairs(usage)? {
            match flag.as_str() {
                "--rules" => {
                    args.rules = value
                        .split(',')
                        .map(|r| {
                            let config = plasticity::TrainConfig::default();
                            plasticity::learner::builtin(r, &config)
                                .map(|l| l.name())
                                .map_err(|e| bad(usage, &e.to_string()))
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

/// `--settings K=V,K=V,...`: a learner's own settings as key/value pairs.
pub fn parse_settings(usage: &str, value: &str) -> Result<Vec<(String, String)>> {
    value
        .split(',')
        .filter(|s| !s.is_empty())
        .map(|kv| match kv.split_once('=') {
            Some((k, v)) => Ok((k.trim().to_string(), v.trim().to_string())),
            None => Err(bad(usage, &format!("--settings {kv}: expected KEY=VALUE"))),
        })
        .collect()
}

/// Sets `settings` on `learner` through the keys of its checkpointed state (the
/// settings it keeps there); a key it does not have is an error listing those it has.
pub fn apply_settings(
    usage: &str,
    learner: &mut dyn plasticity::Learner,
    settings: &[(String, String)],
) -> Result<()> {
    let mut state = learner.state();
    for (key, value) in settings {
        match state.iter_mut().find(|(k, _)| k == key) {
            Some(slot) => slot.1 = value.clone(),
            None => {
                let keys: Vec<&str> = state.iter().map(|(k, _)| k.as_str()).collect();
                return Err(bad(
                    usage,
                    &format!(
                        "--settings {key}: this learner's settings are [{}]",
                        keys.join(", ")
                    ),
                ));
            }
        }
    }
    learner.restore_state(&state)
}

/// `n` random MNIST-shaped samples (784 pixels uniform in [0, 1), labels uniform in
/// 0..10) from a fixed seed: the data of the step timers, where only the time matters.
pub fn random_images(n: usize) -> Result<plasticity::data::Dataset> {
    use rand::{Rng, SeedableRng};
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(1);
    let features: Vec<f32> = (0..n * 784).map(|_| rng.random_range(0.0..1.0)).collect();
    let labels: Vec<u32> = (0..n).map(|_| rng.random_range(0..10)).collect();
    plasticity::data::Dataset::new(features, labels, 784, 10)
}
