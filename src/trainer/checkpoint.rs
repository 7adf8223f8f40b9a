//! Saving a run's state to a [`Checkpoint`], resuming from one, and predicting with a
//! restored network.

use std::path::Path;

use rand_chacha::rand_core::SeedableRng;
use rand_chacha::ChaCha8Rng;

use super::Trainer;
use crate::backend::Backend;
use crate::checkpoint::{Checkpoint, RngState};
use crate::data::Dataset;
use crate::device::Device;
use crate::error::{checked_product, Error, Result};
use crate::loss::Loss;
use crate::network::Network;
use crate::rule::StepViews;
use crate::WeightInit;

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

impl Trainer {
    /// Everything needed to resume this run, read back from the backend.
    pub fn checkpoint(&mut self) -> Result<Checkpoint> {
        let n = self.layout.total();
        let params = self.backend.read(self.bufs.params, 0, n)?;
        let optimizer_state = [
            self.backend.read(self.bufs.state[0], 0, n)?,
            self.backend.read(self.bufs.state[1], 0, n)?,
        ];
        let shapes = self.bufs.feedback_shapes().to_vec();
        let mut feedback = Vec::with_capacity(shapes.len());
        let mut magnitudes = Vec::new();
        for (i, shape) in shapes.into_iter().enumerate() {
            feedback.push((shape, self.feedback(i)?));
            if self.config.rule.has_magnitudes() {
                let m = self.bufs.magnitude(i);
                magnitudes.push(self.backend.read(m.buf, m.offset, m.len())?);
            }
        }
        Ok(Checkpoint {
            layers: self.layers.clone(),
            params,
            feedback,
            magnitudes,
            optimizer_state,
            config: self.config,
            seed: self.seed,
            steps: self.steps,
            epochs: self.epochs,
            shuffle_rng: rng_state(&self.shuffle_rng),
            feedback_rng: rng_state(&self.feedback_rng),
        })
    }

    /// Saves [`Trainer::checkpoint`] to `path` atomically: a crash mid-save leaves the
    /// previous file in place.
    pub fn save_checkpoint(&mut self, path: impl AsRef<Path>) -> Result<()> {
        self.checkpoint()?.save(path)
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
        let layers = &checkpoint.layers;
        let first = layers
            .first()
            .ok_or_else(|| Error::config("a checkpoint with no layers"))?;
        let mut builder = Network::builder(first.inputs).seed(checkpoint.seed);
        for l in layers {
            builder = builder.dense(l.outputs, l.activation);
        }
        let mut net = builder.init(WeightInit::Zeros).build()?;
        net.set_params(&checkpoint.params)?;
        let mut trainer = Trainer::with_backend(net, checkpoint.config, backend)?;
        trainer.restore(checkpoint)?;
        Ok(trainer)
    }

    /// Loads the checkpoint file at `path` onto `device` (see [`Trainer::from_checkpoint`]).
    pub fn load_checkpoint(path: impl AsRef<Path>, device: Device) -> Result<Trainer> {
        Trainer::from_checkpoint(&Checkpoint::load(path)?, device)
    }

    /// Replaces this trainer's whole state (parameters, feedback, optimizer moments,
    /// counters, generators, configuration) with the checkpoint's. The architecture,
    /// rule and batch size must match; nothing changes when they do not.
    pub fn restore(&mut self, checkpoint: &Checkpoint) -> Result<()> {
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
        if c.rule != self.config.rule {
            return Err(mismatch(
                "rule",
                self.config.rule.to_string(),
                c.rule.to_string(),
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
        let n = self.layout.total();
        let shapes = self.bufs.feedback_shapes();
        let expect_magnitudes = if self.config.rule.has_magnitudes() {
            shapes.len()
        } else {
            0
        };
        let sizes_ok = checkpoint.params.len() == n
            && checkpoint.optimizer_state.iter().all(|s| s.len() == n)
            && checkpoint.feedback.len() == shapes.len()
            && checkpoint
                .feedback
                .iter()
                .zip(shapes)
                .all(|((s, v), t)| s == t && v.len() == t.rows * t.cols)
            && checkpoint.magnitudes.len() == expect_magnitudes
            && checkpoint
                .magnitudes
                .iter()
                .zip(shapes)
                .all(|(v, t)| v.len() == t.rows * t.cols);
        if !sizes_ok {
            return Err(mismatch(
                "tensor sizes",
                "the sizes its layers and rule need".into(),
                "others".into(),
            ));
        }
        // Everything is checked: from here on the writes cannot fail on shape.
        self.backend
            .write(self.bufs.params, 0, &checkpoint.params)?;
        for (buf, values) in self.bufs.state.iter().zip(&checkpoint.optimizer_state) {
            self.backend.write(*buf, 0, values)?;
        }
        for (i, (_, values)) in checkpoint.feedback.iter().enumerate() {
            self.write_feedback(i, values)?;
        }
        for (i, values) in checkpoint.magnitudes.iter().enumerate() {
            let m = self.bufs.magnitude(i);
            self.backend.write(m.buf, m.offset, values)?;
        }
        self.config = *c;
        self.seed = checkpoint.seed;
        self.steps = checkpoint.steps;
        self.epochs = checkpoint.epochs;
        self.shuffle_rng = rng_from(&checkpoint.shuffle_rng);
        self.feedback_rng = rng_from(&checkpoint.feedback_rng);
        Ok(())
    }

    /// Predictions for `n` samples given row-major in `x` (`n x inputs`): class
    /// probabilities (softmax of the outputs) for a cross-entropy model, the raw
    /// outputs otherwise. Returns `n x outputs` values, row-major.
    pub fn predict(&mut self, x: &[f32], n: usize) -> Result<Vec<f32>> {
        let inputs = self.layers[0].inputs;
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
