//! Saving a run's state to a [`Checkpoint`], resuming from one, and predicting with a
//! restored network.

use std::path::Path;

use rand_chacha::rand_core::SeedableRng;
use rand_chacha::ChaCha8Rng;

use super::Trainer;
use crate::backend::Backend;
use crate::backend::Mat;
use crate::checkpoint::writer::{self, Part, Planned, Sink};
use crate::checkpoint::{Checkpoint, NamedTensor, RngState};
use crate::data::Dataset;
use crate::device::Device;
use crate::error::{checked_product, Error, Result};
use crate::learner::Learner;
use crate::loss::Loss;
use crate::network::Network;

fn rng_state(rng: &ChaCha8Rng) -> RngState {
    RngState {
        seed: rng.get_seed(),
        stream: rng.get_stream(),
        word_pos: rng.get_word_pos(),
    }
}

fn rng_from(state: &RngState) -> ChaCha8Rng {
    let mut rng = ChaCha8Rng::from_seed(state.seed);
    rng.set_stream(state.stream);
    rng.set_word_pos(state.word_pos);
    rng
}

/// Floats read back from the backend at once while a checkpoint is saved: 4 MB.
const SAVE_PIECE: usize = 1 << 20;

impl Trainer {
    fn read_region(&mut self, m: Mat) -> Result<Vec<f32>> {
        self.backend.read(m.buf, m.offset, m.len())
    }

    /// Everything needed to resume this run, read back from the backend.
    pub fn checkpoint(&mut self) -> Result<Checkpoint> {
        let n = self.layout.total();
        let params = self.backend.read(self.bufs.params, 0, n)?;
        let optimizer_state = [
            self.backend.read(self.bufs.state[0], 0, n)?,
            self.backend.read(self.bufs.state[1], 0, n)?,
        ];
        let mut checkpoint = self.checkpoint_header();
        checkpoint.params = params;
        checkpoint.optimizer_state = optimizer_state;
        let mut tensors = Vec::new();
        for spec in self.tensors.specs().to_vec() {
            if spec.persistent() {
                tensors.push(NamedTensor {
                    values: self.tensor(&spec.name)?,
                    shape: vec![spec.rows, spec.cols],
                    name: spec.name,
                });
            }
        }
        let learner_optimizer_state = match self.tensors.trainable_len() {
            0 => [Vec::new(), Vec::new()],
            _ => [
                self.read_region(self.tensors.trainable_arena(2))?,
                self.read_region(self.tensors.trainable_arena(3))?,
            ],
        };
        checkpoint.tensors = tensors;
        checkpoint.learner_optimizer_state = learner_optimizer_state;
        Ok(checkpoint)
    }

    /// The checkpoint's fields other than its tensors' values (left empty).
    fn checkpoint_header(&self) -> Checkpoint {
        Checkpoint {
            layers: self.layers.clone(),
            params: Vec::new(),
            learner: self.learner.name(),
            tensors: Vec::new(),
            learner_state: self.learner.state(),
            optimizer_state: [Vec::new(), Vec::new()],
            learner_optimizer_state: [Vec::new(), Vec::new()],
            config: self.config,
            seed: self.seed,
            steps: self.steps,
            epochs: self.epochs,
            shuffle_rng: rng_state(&self.shuffle_rng),
        }
    }

    /// Saves [`Trainer::checkpoint`] to `path` atomically: a crash mid-save leaves the
    /// previous file in place. The file is written from the backend's buffers a piece
    /// at a time (4 MB read back at once), so saving holds none of the run's state
    /// twice.
    pub fn save_checkpoint(&mut self, path: impl AsRef<Path>) -> Result<()> {
        let path = path.as_ref();
        let specs: Vec<_> = self
            .tensors
            .specs()
            .iter()
            .filter(|s| s.persistent())
            .map(|s| (s.name.clone(), [s.rows, s.cols]))
            .collect();
        let named: Vec<(&str, &[usize])> = specs
            .iter()
            .map(|(n, shape)| (n.as_str(), &shape[..]))
            .collect();
        let trainable = self.tensors.trainable_len();
        let n = self.layout.total();
        let plan = writer::plan(
            &self.layers,
            n,
            &named,
            (trainable > 0).then_some(trainable),
        )
        .map_err(|e| writer::with_path(e, path))?;
        let metadata = self.checkpoint_header().metadata();
        let (bufs, tensors, loaded) = (&self.bufs, &self.tensors, self.loaded);
        let backend = &mut self.backend;
        let mut read = |t: &Planned, sink: &mut Sink<'_>| {
            let m = match &t.part {
                Part::Params(r) => Mat::new(bufs.params, r.start, 1, r.len()),
                Part::Tensor(k) => tensors.get(&specs[*k].0, loaded)?,
                Part::Moment(i) => Mat::new(bufs.state[*i], 0, 1, n),
                Part::LearnerMoment(i) => tensors.trainable_arena(2 + *i),
            };
            for start in (0..m.len()).step_by(SAVE_PIECE) {
                let len = SAVE_PIECE.min(m.len() - start);
                sink(&backend.read(m.buf, m.offset + start, len)?)?;
            }
            Ok(())
        };
        writer::write_file(path, metadata, &plan, &mut read)
    }

    /// A trainer on `device` that continues the run saved in `checkpoint`: on the CPU
    /// the following steps are bit-identical to those of the run that saved it.
    pub fn from_checkpoint(checkpoint: &Checkpoint, device: Device) -> Result<Trainer> {
        Trainer::from_checkpoint_with_backend(checkpoint, device.backend()?)
    }

    /// Like [`Trainer::from_checkpoint`] on a backend made by the caller.
    pub fn from_checkpoint_with_backend(
        checkpoint: &Checkpoint,
        backend: Box<dyn Backend>,
    ) -> Result<Trainer> {
        Trainer::from_checkpoint_with_learner(checkpoint, builtin_learner(checkpoint)?, backend)
    }

    /// Loads the checkpoint file at `path` onto `device` (see [`Trainer::from_checkpoint`]).
    /// Each of the file's large vectors is dropped once it is on the device, so resuming
    /// holds the run's state about once, not twice.
    pub fn load_checkpoint(path: impl AsRef<Path>, device: Device) -> Result<Trainer> {
        let mut checkpoint = Checkpoint::load(path)?;
        let learner = builtin_learner(&checkpoint)?;
        // The network's zero parameters hold no memory; the checkpoint's move in, and
        // so do its optimizer moments. An all-zero moment (plain SGD's) is left out:
        // the trainer's then starts zeroed and untouched, holding no memory.
        let params = std::mem::take(&mut checkpoint.params);
        let n = params.len();
        let net = Network::from_layers(checkpoint.layers.clone(), checkpoint.seed)?
            .with_params(params)?;
        let moments = std::mem::take(&mut checkpoint.optimizer_state).map(|m| {
            if m.iter().all(|&v| v == 0.0) {
                Vec::new()
            } else {
                m
            }
        });
        if moments.iter().any(|m| !m.is_empty() && m.len() != n) {
            return Err(tensor_sizes_differ());
        }
        let backend = device.backend()?;
        let mut trainer = Trainer::assemble(net, moments, checkpoint.config, learner, backend)?;
        trainer.check_fits(&checkpoint)?;
        trainer.learner.restore_state(&checkpoint.learner_state)?;
        trainer.restore_rest(&checkpoint)?;
        Ok(trainer)
    }

    /// A trainer on `backend` that continues the run of `learner` saved in
    /// `checkpoint` (for learners defined outside the crate).
    pub fn from_checkpoint_with_learner(
        checkpoint: &Checkpoint,
        learner: Box<dyn Learner>,
        backend: Box<dyn Backend>,
    ) -> Result<Trainer> {
        let mut net = Network::from_layers(checkpoint.layers.clone(), checkpoint.seed)?;
        net.set_params(&checkpoint.params)?;
        let mut trainer = Trainer::with_learner_backend(net, checkpoint.config, learner, backend)?;
        trainer.restore(checkpoint)?;
        Ok(trainer)
    }

    /// Replaces this trainer's whole state (parameters, feedback, optimizer moments,
    /// counters, generators, configuration) with the checkpoint's. The architecture,
    /// rule and batch size must match; nothing changes when they do not.
    pub fn restore(&mut self, checkpoint: &Checkpoint) -> Result<()> {
        self.check_fits(checkpoint)?;
        let n = self.layout.total();
        let sizes_ok =
            checkpoint.params.len() == n && checkpoint.optimizer_state.iter().all(|s| s.len() == n);
        if !sizes_ok {
            return Err(tensor_sizes_differ());
        }
        self.learner.restore_state(&checkpoint.learner_state)?;
        // Everything is checked: from here on the writes cannot fail on shape.
        self.backend
            .write(self.bufs.params, 0, &checkpoint.params)?;
        for (buf, values) in self.bufs.state.iter().zip(&checkpoint.optimizer_state) {
            self.backend.write(*buf, 0, values)?;
        }
        self.restore_rest(checkpoint)
    }

    /// Checks that `checkpoint` fits this trainer: architecture, learner, batch size,
    /// optimizer kind, the learner's tensors and moments (the parameters' and moments'
    /// sizes are the caller's to check).
    fn check_fits(&self, checkpoint: &Checkpoint) -> Result<()> {
        let mismatch = |what: &str, ours: String, theirs: String| Error::Checkpoint {
            path: Default::default(),
            reason: format!("{what} differs: the trainer has {ours}, the checkpoint {theirs}"),
        };
        if checkpoint.layers != self.layers {
            return Err(mismatch(
                "architecture",
                format!("{:?}", self.layers),
                format!("{:?}", checkpoint.layers),
            ));
        }
        let c = &checkpoint.config;
        if checkpoint.learner != self.learner.name() {
            return Err(mismatch(
                "learner (rule)",
                self.learner.name(),
                checkpoint.learner.clone(),
            ));
        }
        if c.batch_size != self.config.batch_size {
            return Err(mismatch(
                "batch size",
                self.config.batch_size.to_string(),
                c.batch_size.to_string(),
            ));
        }
        if std::mem::discriminant(&c.optimizer) != std::mem::discriminant(&self.config.optimizer) {
            return Err(mismatch(
                "optimizer kind",
                self.config.optimizer.to_string(),
                c.optimizer.to_string(),
            ));
        }
        c.validate()?;
        let trainable = self.tensors.trainable_len();
        let persistent: Vec<_> = self
            .tensors
            .specs()
            .iter()
            .filter(|s| s.persistent())
            .cloned()
            .collect();
        for spec in &persistent {
            match checkpoint.tensors.iter().find(|t| t.name == spec.name) {
                None => {
                    return Err(mismatch(
                        "learner tensors",
                        format!("tensor {} (it is missing from the checkpoint)", spec.name),
                        "none".into(),
                    ))
                }
                Some(t)
                    if t.shape != [spec.rows, spec.cols]
                        || t.values.len() != spec.rows * spec.cols =>
                {
                    return Err(mismatch(
                        &format!("shape of tensor {}", spec.name),
                        format!("[{}, {}]", spec.rows, spec.cols),
                        format!("{:?}", t.shape),
                    ))
                }
                Some(_) => {}
            }
        }
        if let Some(extra) = checkpoint
            .tensors
            .iter()
            .find(|t| !persistent.iter().any(|s| s.name == t.name))
        {
            return Err(mismatch(
                "learner tensors",
                "no such tensor".into(),
                format!("tensor {} the learner does not keep", extra.name),
            ));
        }
        let learner_state_ok = checkpoint
            .learner_optimizer_state
            .iter()
            .all(|s| s.len() == trainable || (s.is_empty() && trainable == 0));
        if !learner_state_ok {
            return Err(tensor_sizes_differ());
        }
        Ok(())
    }

    /// Everything but the parameters and the optimizer moments, from a checkpoint
    /// [`Trainer::check_fits`] has passed.
    fn restore_rest(&mut self, checkpoint: &Checkpoint) -> Result<()> {
        let trainable = self.tensors.trainable_len();
        for t in &checkpoint.tensors {
            let m = self.tensors.get(&t.name, self.config.batch_size)?;
            self.backend.write(m.buf, m.offset, &t.values)?;
        }
        if trainable > 0 {
            for (i, values) in checkpoint.learner_optimizer_state.iter().enumerate() {
                let m = self.tensors.trainable_arena(2 + i);
                self.backend.write(m.buf, m.offset, values)?;
            }
        }
        self.config = checkpoint.config;
        self.seed = checkpoint.seed;
        self.steps = checkpoint.steps;
        self.epochs = checkpoint.epochs;
        self.shuffle_rng = rng_from(&checkpoint.shuffle_rng);
        Ok(())
    }

    /// Predictions for `n` samples given row-major in `x` (`n x inputs`): class
    /// probabilities (softmax of the outputs) for a cross-entropy model, the raw
    /// outputs otherwise. Returns `n x outputs` values, row-major.
    pub fn predict(&mut self, x: &[f32], n: usize) -> Result<Vec<f32>> {
        let inputs = self.layers[0].inputs();
        if n == 0 {
            return Err(Error::EmptyData("predict needs at least one sample".into()));
        }
        let values = checked_product("predict input", &[n, inputs])?;
        if x.len() != values {
            return Err(Error::shape(
                "predict input vs network inputs",
                format!("{n} samples x {inputs} features = {values} values"),
                format!("{} values", x.len()),
            ));
        }
        let classes = self.output_size();
        let data = Dataset::new(x.to_vec(), vec![0; n], inputs, classes)?;
        let indices: Vec<usize> = (0..n).collect();
        let mut out = self.outputs(&data, &indices)?;
        if self.config.loss == Loss::SoftmaxCrossEntropy {
            out.chunks_mut(classes).for_each(softmax);
        }
        Ok(out)
    }
}

/// In-place softmax with the maximum subtracted first, so large logits cannot overflow.
fn softmax(row: &mut [f32]) {
    let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let mut sum = 0.0;
    for v in row.iter_mut() {
        *v = (*v - max).exp();
        sum += *v;
    }
    row.iter_mut().for_each(|v| *v /= sum);
}

/// The built-in learner that trained `checkpoint`'s run: only one of exactly that name,
/// since an alias (`kolen-pollack`) may be another learner's own name.
fn builtin_learner(checkpoint: &Checkpoint) -> Result<Box<dyn Learner>> {
    crate::learner::builtin(&checkpoint.learner, &checkpoint.config)
        .ok()
        .filter(|l| l.name() == checkpoint.learner)
        .ok_or_else(|| Error::Checkpoint {
            path: Default::default(),
            reason: format!(
                "the run was trained by learner {:?}, which is not built in: resume it with Trainer::from_checkpoint_with_learner",
                checkpoint.learner
            ),
        })
}

/// The error for a checkpoint whose tensors are not the sizes the trainer's layers and
/// learner need.
fn tensor_sizes_differ() -> Error {
    Error::Checkpoint {
        path: Default::default(),
        reason: "tensor sizes differ: the trainer has the sizes its layers and learner need, \
                 the checkpoint others"
            .into(),
    }
}
