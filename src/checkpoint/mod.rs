//! Checkpoint files: everything a training run needs to continue, in `safetensors`.
//!
//! Tensors (all `F32`, row-major):
//!
//! | name | shape | what |
//! |------|-------|------|
//! | `layers.{m}.weight` | `[outputs, inputs]` or `[out, in, k, k]` | a dense or convolutional layer's weights (PyTorch's `nn.Linear` / `nn.Conv2d` layout) |
//! | `layers.{m}.bias` | `[outputs]` | its bias |
//! | any other name, e.g. `feedback.{i}` | `[rows, cols]` | the learner's tensors, by the names it gives them (a delta rule's feedback matrix `i`) |
//! | `optimizer.state0`, `optimizer.state1` | `[parameters]` | optimizer moments, laid out like the parameters |
//! | `optimizer.learner0`, `optimizer.learner1` | `[trainable floats]` | moments of the learner's trainable tensors (absent when it has none) |
//!
//! where `m` is the layer's index in the `nn.Sequential` PyTorch would build for the
//! same network, each non-identity activation a module of its own after its layer
//! ([`torch_index`]): `safetensors.torch.load_file(path)` is then a `state_dict` that
//! such a model, held as `self.layers`, loads directly.
//! The architecture, the [`TrainConfig`], the step and epoch counts and the shuffle
//! generator's state are strings in the file's metadata (floats written with Rust's
//! shortest round-trip formatting, so they read back bit for bit).
//!
//! Saving is atomic: the bytes go to a temporary file in the same directory, which is
//! flushed to disk and then renamed over the target, so a crash mid-save leaves the
//! previous checkpoint intact. They are streamed there (from a checkpoint's vectors, or
//! by [`Trainer::save_checkpoint`](crate::Trainer::save_checkpoint) from the backend's
//! buffers a piece at a time), never gathered in memory first. Loading checks
//! everything and answers a malformed file with [`Error::Checkpoint`] naming the
//! problem.

use std::collections::HashMap;
use std::path::Path;

use crate::activation::Activation;
use crate::error::{Error, Result};
use crate::init::FeedbackInit;
use crate::layer::{LayerKind, LayerSpec, Shape};
use crate::loss::Loss;
use crate::optim::Optimizer;
use crate::rule::Rule;
use crate::schedule::{Decay, Schedule};
use crate::trainer::TrainConfig;
use reader::{FileSource, Reader, Source};
pub use writer::write_atomic;
use writer::{Part, Planned, Sink};

mod reader;
pub(crate) mod writer;

/// The value of the `format` metadata key this version writes and reads.
pub const FORMAT: &str = "plasticity-checkpoint-2";

/// The state of a ChaCha8 generator (seed, stream and position), enough to resume it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RngState {
    /// The 32-byte key.
    pub seed: [u8; 32],
    /// The stream number.
    pub stream: u64,
    /// The position in the stream, in 32-bit words.
    pub word_pos: u128,
}

/// One named tensor of a learner.
#[derive(Debug, Clone, PartialEq)]
pub struct NamedTensor {
    /// Its name (its key in the file).
    pub name: String,
    /// `[rows, cols]`.
    pub shape: Vec<usize>,
    /// Row-major values.
    pub values: Vec<f32>,
}

/// A training run's complete state, as read back from a backend or from a file.
#[derive(Debug, Clone, PartialEq)]
pub struct Checkpoint {
    /// The layers, input side first.
    pub layers: Vec<LayerSpec>,
    /// All parameters, in [`Network::params`](crate::Network::params) layout.
    pub params: Vec<f32>,
    /// The learner's name ([`Learner::name`](crate::Learner::name)).
    pub learner: String,
    /// The learner's tensors that persist across steps (feedback matrices, trainable
    /// tensors), by name.
    pub tensors: Vec<NamedTensor>,
    /// The learner's host-side state ([`Learner::state`](crate::Learner::state)).
    pub learner_state: Vec<(String, String)>,
    /// The optimizer's two moment arenas (zeros when the optimizer uses none).
    pub optimizer_state: [Vec<f32>; 2],
    /// The moments of the learner's trainable tensors (empty when it has none).
    pub learner_optimizer_state: [Vec<f32>; 2],
    /// How the run trains.
    pub config: TrainConfig,
    /// The run's seed.
    pub seed: u64,
    /// Optimizer steps taken.
    pub steps: u64,
    /// Epochs completed by [`Trainer::train_epoch`](crate::Trainer::train_epoch).
    pub epochs: u64,
    /// The batch-shuffling generator.
    pub shuffle_rng: RngState,
}

impl Checkpoint {
    /// The `safetensors` bytes of this checkpoint.
    pub fn to_bytes(&self) -> Result<Vec<u8>> {
        let tensors = self.plan()?;
        let mut bytes = Vec::new();
        let path = Path::new("");
        let metadata = self.metadata();
        writer::write_tensors(&mut bytes, path, metadata, &tensors, &mut |t, sink| {
            self.lend(t, sink)
        })?;
        Ok(bytes)
    }

    /// Writes the checkpoint to `path` atomically (temporary file, fsync, rename). The
    /// tensors go to the file straight from this checkpoint's vectors, so saving holds
    /// no second copy of them, as bytes or as the file's image.
    pub fn save(&self, path: impl AsRef<Path>) -> Result<()> {
        let path = path.as_ref();
        let tensors = self.plan().map_err(|e| writer::with_path(e, path))?;
        writer::write_file(path, self.metadata(), &tensors, &mut |t, sink| {
            self.lend(t, sink)
        })
    }

    /// The file's tensors and where each lives in this checkpoint.
    fn plan(&self) -> Result<Vec<Planned>> {
        let tensors: Vec<(&str, &[usize])> = self
            .tensors
            .iter()
            .map(|t| (t.name.as_str(), &t.shape[..]))
            .collect();
        let learner_moments = self.learner_optimizer_state[0].len();
        let learner_moments = (learner_moments > 0).then_some(learner_moments);
        writer::plan(&self.layers, self.params.len(), &tensors, learner_moments)
    }

    /// Hands `sink` the values of tensor `t` from this checkpoint's vectors, whole.
    fn lend(&self, t: &Planned, sink: &mut Sink<'_>) -> Result<()> {
        sink(match &t.part {
            Part::Params(range) => &self.params[range.clone()],
            Part::Tensor(k) => &self.tensors[*k].values,
            Part::Moment(i) => &self.optimizer_state[*i],
            Part::LearnerMoment(i) => &self.learner_optimizer_state[*i],
        })
    }

    /// Reads and checks a checkpoint file, tensor by tensor from the file: loading holds
    /// the values read, never the file's bytes beside them.
    pub fn load(path: impl AsRef<Path>) -> Result<Checkpoint> {
        let path = path.as_ref();
        Checkpoint::read(Reader::open(FileSource::open(path)?, path)?, path)
    }

    /// Parses checkpoint bytes; `path` only names the source in errors. Never panics
    /// and allocates no more than the bytes given can fill.
    pub fn from_bytes(bytes: &[u8], path: &Path) -> Result<Checkpoint> {
        Checkpoint::read(Reader::open(bytes, path)?, path)
    }

    /// The checkpoint in a checked file.
    fn read(mut tensors: Reader<impl Source>, path: &Path) -> Result<Checkpoint> {
        let bad = |reason: String| Error::Checkpoint {
            path: path.to_path_buf(),
            reason,
        };
        let map = tensors
            .metadata()
            .cloned()
            .ok_or_else(|| bad("no metadata: not a plasticity checkpoint".into()))?;
        let meta = Meta { map: &map, path };
        let format = meta.get("format")?;
        if format != FORMAT {
            return Err(bad(format!("format {format:?}, expected {FORMAT:?}")));
        }
        let layers = meta.layers()?;
        let mut params = Vec::new();
        let mut weighted = 0;
        for (l, layer) in layers.iter().enumerate() {
            let Some(shape) = layer.weight_shape() else {
                continue;
            };
            weighted += 1;
            let m = torch_index(&layers, l);
            let w = tensors.read(&format!("layers.{m}.weight"), &shape.torch_shape())?;
            let b = tensors.read(&format!("layers.{m}.bias"), &[shape.rows])?;
            params.extend_from_slice(&w);
            params.extend_from_slice(&b);
        }
        let config = meta.config()?;
        let n = params.len();
        let optimizer_state = [
            tensors.read("optimizer.state0", &[n])?,
            tensors.read("optimizer.state1", &[n])?,
        ];
        let mut learner_optimizer_state = [Vec::new(), Vec::new()];
        for (i, state) in learner_optimizer_state.iter_mut().enumerate() {
            let name = format!("optimizer.learner{i}");
            if let Some(shape) = tensors.shape(&name).map(<[usize]>::to_vec) {
                *state = tensors.read(&name, &shape)?;
            }
        }
        // Everything that is not the network's is the learner's, by name.
        let all = tensors.names();
        let mut names: Vec<&String> = all
            .iter()
            .filter(|n| !n.starts_with("layers.") && !n.starts_with("optimizer."))
            .collect();
        names.sort();
        let mut learner_tensors = Vec::with_capacity(names.len());
        for name in names {
            let shape = tensors
                .shape(name)
                .map(<[usize]>::to_vec)
                .unwrap_or_default();
            let values = tensors.read(name, &shape)?;
            let name = name.clone();
            learner_tensors.push(NamedTensor {
                name,
                shape,
                values,
            });
        }
        let network_tensors = all.len() - learner_tensors.len();
        let expected = 2 * weighted
            + 2
            + learner_optimizer_state
                .iter()
                .filter(|s| !s.is_empty())
                .count();
        if network_tensors != expected {
            return Err(bad(format!(
                "{network_tensors} tensors named layers.* or optimizer.*, expected {expected}: {all:?}"
            )));
        }
        let learner_state = meta
            .map
            .iter()
            .filter_map(|(k, v)| Some((k.strip_prefix("learner.")?.to_string(), v.clone())))
            .collect::<std::collections::BTreeMap<_, _>>()
            .into_iter()
            .collect();
        Ok(Checkpoint {
            layers,
            params,
            learner: meta.get("learner")?.to_string(),
            tensors: learner_tensors,
            learner_state,
            optimizer_state,
            learner_optimizer_state,
            config,
            seed: meta.parse("seed")?,
            steps: meta.parse("steps")?,
            epochs: meta.parse("epochs")?,
            shuffle_rng: meta.rng("rng")?,
        })
    }

    /// The header's string metadata: everything but the tensors.
    pub(crate) fn metadata(&self) -> HashMap<String, String> {
        let c = &self.config;
        let mut m: HashMap<String, String> = HashMap::new();
        let mut put = |k: &str, v: String| {
            m.insert(k.to_string(), v);
        };
        put("format", FORMAT.into());
        put(
            "inputs",
            self.layers
                .first()
                .map_or("0".into(), |l| l.input_shape().to_string()),
        );
        let layers: Vec<String> = self
            .layers
            .iter()
            .map(|l| format!("{}:{}", l.kind().describe(), l.activation().name()))
            .collect();
        put("layers", layers.join(","));
        put("rule", c.rule.name().into());
        put("loss", c.loss.name().into());
        put("batch_size", c.batch_size.to_string());
        put("feedback_init", c.feedback_init.name().into());
        put("shared_conv_feedback", c.shared_conv_feedback.to_string());
        match c.optimizer {
            Optimizer::Sgd {
                lr,
                momentum,
                weight_decay,
                nesterov,
            } => {
                put("optimizer", "sgd".into());
                put("optimizer.lr", lr.to_string());
                put("optimizer.momentum", momentum.to_string());
                put("optimizer.weight_decay", weight_decay.to_string());
                put("optimizer.nesterov", nesterov.to_string());
            }
            Optimizer::Adam {
                lr,
                beta1,
                beta2,
                eps,
                weight_decay,
            } => {
                put("optimizer", "adam".into());
                put("optimizer.lr", lr.to_string());
                put("optimizer.beta1", beta1.to_string());
                put("optimizer.beta2", beta2.to_string());
                put("optimizer.eps", eps.to_string());
                put("optimizer.weight_decay", weight_decay.to_string());
            }
        }
        put("schedule.warmup", c.schedule.warmup_steps.to_string());
        match c.schedule.decay {
            Decay::Constant => put("schedule.decay", "constant".into()),
            Decay::Step { every, gamma } => {
                put("schedule.decay", "step".into());
                put("schedule.every", every.to_string());
                put("schedule.gamma", gamma.to_string());
            }
            Decay::Cosine {
                total_steps,
                min_factor,
            } => {
                put("schedule.decay", "cosine".into());
                put("schedule.total_steps", total_steps.to_string());
                put("schedule.min_factor", min_factor.to_string());
            }
        }
        put(
            "grad_clip",
            c.grad_clip.map_or("none".into(), |v| v.to_string()),
        );
        put("seed", self.seed.to_string());
        put("steps", self.steps.to_string());
        put("epochs", self.epochs.to_string());
        let rng = self.shuffle_rng;
        let hex: String = rng.seed.iter().map(|b| format!("{b:02x}")).collect();
        put("rng.seed", hex);
        put("rng.stream", rng.stream.to_string());
        put("rng.word_pos", rng.word_pos.to_string());
        put("learner", self.learner.clone());
        for (k, v) in &self.learner_state {
            put(&format!("learner.{k}"), v.clone());
        }
        m
    }
}

/// Layer `l`'s index in the `nn.Sequential` PyTorch would build for `layers`, where
/// each non-identity activation is a module of its own right after its layer.
///
/// ```
/// use plasticity::checkpoint::torch_index;
/// use plasticity::{Activation, Network};
/// let net = Network::builder(4).dense(8, Activation::Tanh).dense(2, Activation::Identity).build()?;
/// // nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 2))
/// assert_eq!(torch_index(net.layers(), 1), 2);
/// # Ok::<(), plasticity::Error>(())
/// ```
pub fn torch_index(layers: &[LayerSpec], l: usize) -> usize {
    layers[..l.min(layers.len())]
        .iter()
        .map(|layer| 1 + usize::from(layer.activation() != Activation::Identity))
        .sum()
}

/// The most layers a checkpoint may declare (a forged header cannot make us loop long).
const MAX_LAYERS: usize = 4096;

/// Typed access to the metadata strings.
struct Meta<'a> {
    map: &'a HashMap<String, String>,
    path: &'a Path,
}

impl Meta<'_> {
    fn bad(&self, reason: String) -> Error {
        Error::Checkpoint {
            path: self.path.to_path_buf(),
            reason,
        }
    }

    fn get(&self, key: &str) -> Result<&str> {
        self.map
            .get(key)
            .map(String::as_str)
            .ok_or_else(|| self.bad(format!("metadata key {key:?} is missing")))
    }

    fn parse<T: std::str::FromStr>(&self, key: &str) -> Result<T> {
        let v = self.get(key)?;
        v.parse()
            .map_err(|_| self.bad(format!("metadata {key} = {v:?} does not parse")))
    }

    fn hex32(&self, key: &str) -> Result<[u8; 32]> {
        let v = self.get(key)?;
        let mut out = [0u8; 32];
        let ok = v.len() == 64
            && v.is_ascii()
            && out.iter_mut().enumerate().all(|(i, b)| {
                u8::from_str_radix(&v[2 * i..2 * i + 2], 16)
                    .map(|x| *b = x)
                    .is_ok()
            });
        if !ok {
            return Err(self.bad(format!("metadata {key} is not 64 hex digits")));
        }
        Ok(out)
    }

    fn rng(&self, key: &str) -> Result<RngState> {
        Ok(RngState {
            seed: self.hex32(&format!("{key}.seed"))?,
            stream: self.parse(&format!("{key}.stream"))?,
            word_pos: self.parse(&format!("{key}.word_pos"))?,
        })
    }

    fn layers(&self) -> Result<Vec<LayerSpec>> {
        let mut input: Shape = self
            .get("inputs")?
            .parse()
            .map_err(|e: String| self.bad(e))?;
        let text = self.get("layers")?;
        let mut layers = Vec::new();
        for part in text.split(',') {
            if layers.len() >= MAX_LAYERS {
                return Err(self.bad(format!("more than {MAX_LAYERS} layers")));
            }
            let (kind, act) = part
                .split_once(':')
                .ok_or_else(|| self.bad(format!("layer {part:?} is not KIND:ACTIVATION")))?;
            let kind = LayerKind::parse(kind)
                .ok_or_else(|| self.bad(format!("layer {kind:?} does not parse")))?;
            let activation = Activation::from_name(act)
                .ok_or_else(|| self.bad(format!("unknown activation {act:?}")))?;
            if input.is_empty() {
                return Err(self.bad(format!("layer {} has an empty input", layers.len())));
            }
            let layer = LayerSpec::new(kind, input, activation)
                .map_err(|why| self.bad(format!("layer {}: {why}", layers.len())))?;
            input = layer.output_shape();
            layers.push(layer);
        }
        Ok(layers)
    }

    fn named<T>(&self, key: &str, from: impl Fn(&str) -> Option<T>) -> Result<T> {
        let v = self.get(key)?;
        from(v).ok_or_else(|| self.bad(format!("unknown {key} {v:?}")))
    }

    fn config(&self) -> Result<TrainConfig> {
        let optimizer = match self.get("optimizer")? {
            "sgd" => Optimizer::Sgd {
                lr: self.parse("optimizer.lr")?,
                momentum: self.parse("optimizer.momentum")?,
                weight_decay: self.parse("optimizer.weight_decay")?,
                nesterov: self.parse("optimizer.nesterov")?,
            },
            "adam" => Optimizer::Adam {
                lr: self.parse("optimizer.lr")?,
                beta1: self.parse("optimizer.beta1")?,
                beta2: self.parse("optimizer.beta2")?,
                eps: self.parse("optimizer.eps")?,
                weight_decay: self.parse("optimizer.weight_decay")?,
            },
            other => return Err(self.bad(format!("unknown optimizer {other:?}"))),
        };
        let decay = match self.get("schedule.decay")? {
            "constant" => Decay::Constant,
            "step" => Decay::Step {
                every: self.parse("schedule.every")?,
                gamma: self.parse("schedule.gamma")?,
            },
            "cosine" => Decay::Cosine {
                total_steps: self.parse("schedule.total_steps")?,
                min_factor: self.parse("schedule.min_factor")?,
            },
            other => return Err(self.bad(format!("unknown schedule {other:?}"))),
        };
        let grad_clip = match self.get("grad_clip")? {
            "none" => None,
            _ => Some(self.parse("grad_clip")?),
        };
        let config = TrainConfig {
            rule: self.named("rule", Rule::from_name)?,
            optimizer,
            loss: self.named("loss", Loss::from_name)?,
            batch_size: self.parse("batch_size")?,
            feedback_init: self.named("feedback_init", FeedbackInit::from_name)?,
            shared_conv_feedback: self.parse("shared_conv_feedback")?,
            schedule: Schedule {
                warmup_steps: self.parse("schedule.warmup")?,
                decay,
            },
            grad_clip,
        };
        config
            .validate()
            .map_err(|e| self.bad(format!("bad configuration: {e}")))?;
        Ok(config)
    }
}
