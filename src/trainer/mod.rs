//! Training a [`Network`] with a [`Rule`] on a backend.

mod alignment;
mod buffers;
mod checkpoint;
mod resident;

use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;

use crate::backend::{
    Backend, Flags, Guard, LossGrad, Mat, OptimizerPass, StoredData, WorkCounters,
};
use crate::data::Dataset;
use crate::device::Device;
use crate::error::{checked_product, Error, Result};
use crate::init::{rng_for, FeedbackInit, Stream};
use crate::layer::LayerSpec;
use crate::learner::{
    feedback_name, magnitude_name, DeltaRule, Learner, LearnerTensors, StepCx, TensorSpec,
};
use crate::loss::Loss;
use crate::metrics::Evaluation;
use crate::network::{Network, ParamLayout};
use crate::optim::Optimizer;
use crate::rule::{FeedbackShape, Rule};
use crate::schedule::Schedule;
pub(crate) use buffers::DeviceBuffers;
use buffers::StatsSlot;
use resident::{auto_steps_per_submit, gather_op, ResidentSets};
pub use resident::{Residency, MAX_STEPS_PER_SUBMIT};

/// How a [`Trainer`] trains.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TrainConfig {
    /// The learning rule forming hidden deltas ([`Trainer::new`] runs it as a
    /// [`DeltaRule`]; a trainer made with [`Trainer::with_learner`] ignores it).
    pub rule: Rule,
    /// How updates are applied.
    pub optimizer: Optimizer,
    /// The objective.
    pub loss: Loss,
    /// Samples per step (the last batch of an epoch may be smaller).
    pub batch_size: usize,
    /// How the rule's fixed feedback matrices are drawn.
    pub feedback_init: FeedbackInit,
    /// DFA and DRTP: share each conv layer's feedback across positions (see
    /// [`DeltaRule::with_shared_conv_feedback`]); off by default.
    pub shared_conv_feedback: bool,
    /// Learning-rate factor per step (see [`Schedule`]); constant by default.
    pub schedule: Schedule,
    /// Rescale the update direction so its global L2 norm (over all parameters) is at
    /// most this, before the optimizer sees it (PyTorch's `clip_grad_norm_`).
    pub grad_clip: Option<f32>,
}

/// The largest batch size a [`TrainConfig`] accepts.
pub const MAX_BATCH: usize = 1 << 24;

impl TrainConfig {
    /// Checks the optimizer, batch size, schedule and clipping threshold.
    pub fn validate(&self) -> Result<()> {
        self.optimizer.validate()?;
        self.schedule.validate()?;
        // The cap keeps buffer-size products far from overflow (e.g. a forged checkpoint).
        if !(1..=MAX_BATCH).contains(&self.batch_size) {
            return Err(Error::config(format!(
                "batch size must be in 1..={MAX_BATCH}, got {}",
                self.batch_size
            )));
        }
        if let Some(c) = self.grad_clip {
            if !(c.is_finite() && c > 0.0) {
                return Err(Error::config(format!(
                    "gradient clipping threshold must be finite and > 0, got {c}"
                )));
            }
        }
        Ok(())
    }
}

impl Default for TrainConfig {
    /// Backprop, Adam(1e-3), softmax cross-entropy, batch 64, uniform feedback.
    fn default() -> Self {
        TrainConfig {
            rule: Rule::Backprop,
            optimizer: Optimizer::adam(1e-3),
            loss: Loss::SoftmaxCrossEntropy,
            batch_size: 64,
            feedback_init: FeedbackInit::Uniform,
            shared_conv_feedback: false,
            schedule: Schedule::constant(),
            grad_clip: None,
        }
    }
}

/// A network being trained: its parameters, the rule's feedback matrices and the
/// optimizer state all live on the backend; they are read back only on request.
///
/// ```
/// use plasticity::data::Dataset;
/// use plasticity::{Activation, Device, Network, Optimizer, Rule, TrainConfig, Trainer};
/// // Two well separated blobs in 2-D.
/// let features = vec![0.9, 1.1, 1.0, 0.8, -1.0, -0.9, -1.1, -1.0];
/// let data = Dataset::new(features, vec![0, 0, 1, 1], 2, 2)?;
/// let net = Network::builder(2)
///     .dense(8, Activation::Tanh)
///     .dense(2, Activation::Identity)
///     .seed(3)
///     .build()?;
/// let config = TrainConfig {
///     rule: Rule::DirectFeedbackAlignment,
///     optimizer: Optimizer::adam(0.05),
///     batch_size: 4,
///     ..Default::default()
/// };
/// let mut trainer = Trainer::new(net, config, Device::Cpu)?;
/// for _ in 0..100 {
///     trainer.train_epoch(&data, |_, _| {})?;
/// }
/// assert_eq!(trainer.evaluate(&data)?.accuracy, 1.0);
/// # Ok::<(), plasticity::Error>(())
/// ```
pub struct Trainer {
    backend: Box<dyn Backend>,
    bufs: DeviceBuffers,
    learner: Box<dyn Learner>,
    tensors: LearnerTensors,
    layers: Vec<LayerSpec>,
    layout: ParamLayout,
    config: TrainConfig,
    seed: u64,
    steps: u64,
    epochs: u64,
    shuffle_rng: ChaCha8Rng,
    /// A batch's inputs and targets staged on the host for a device backend (empty on
    /// a host backend, whose buffers take them directly).
    host_x: Vec<f32>,
    host_y: Vec<f32>,
    /// Samples in the batch loaded last (per-sample learner tensors hold that batch).
    loaded: usize,
    /// Data sets stored on a device backend.
    resident: ResidentSets,
    /// Steps recorded per submit in an epoch on a device backend (see
    /// [`Trainer::set_steps_per_submit`]).
    steps_per_submit: usize,
}

impl std::fmt::Debug for Trainer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Trainer")
            .field("backend", &self.backend.name())
            .field("layers", &self.layers)
            .field("learner", &self.learner.name())
            .field("config", &self.config)
            .field("steps", &self.steps)
            .finish()
    }
}

impl Trainer {
    /// Uploads `network` to `device` and draws the rule's feedback matrices from the
    /// network's seed.
    pub fn new(network: Network, config: TrainConfig, device: Device) -> Result<Trainer> {
        Trainer::with_backend(network, config, device.backend()?)
    }

    /// Like [`Trainer::new`] on a backend made by the caller.
    pub fn with_backend(
        network: Network,
        config: TrainConfig,
        backend: Box<dyn Backend>,
    ) -> Result<Trainer> {
        let learner = DeltaRule::new(config.rule, config.feedback_init)
            .with_shared_conv_feedback(config.shared_conv_feedback);
        Trainer::with_learner_backend(network, config, Box::new(learner), backend)
    }

    /// A trainer whose steps are `learner`'s (see [`crate::learner`]); `config.rule`
    /// and `config.feedback_init` are not used.
    pub fn with_learner(
        network: Network,
        config: TrainConfig,
        learner: Box<dyn Learner>,
        device: Device,
    ) -> Result<Trainer> {
        Trainer::with_learner_backend(network, config, learner, device.backend()?)
    }

    /// Like [`Trainer::with_learner`] on a backend made by the caller.
    pub fn with_learner_backend(
        network: Network,
        config: TrainConfig,
        learner: Box<dyn Learner>,
        backend: Box<dyn Backend>,
    ) -> Result<Trainer> {
        Trainer::assemble(network, [Vec::new(), Vec::new()], config, learner, backend)
    }

    /// [`Trainer::with_learner_backend`] whose optimizer moments start from `moments`
    /// (each of the parameters' length, or empty for zero), taken over like the
    /// network's parameters.
    pub(crate) fn assemble(
        network: Network,
        moments: [Vec<f32>; 2],
        config: TrainConfig,
        learner: Box<dyn Learner>,
        mut backend: Box<dyn Backend>,
    ) -> Result<Trainer> {
        config.validate()?;
        if let Some(o) = learner.tensor_optimizer() {
            o.validate()?;
        }
        let layers = network.layers().to_vec();
        let layout = network.layout().clone();
        let seed = network.seed();
        let host_x = checked_product("input batch", &[layers[0].inputs(), config.batch_size])?;
        let host_y = checked_product("target batch", &[network.output_size(), config.batch_size])?;
        // Only a device backend's batches are staged on the host (see `load_batch`).
        let staged = |len: usize| {
            if backend.host_resident() {
                Vec::new()
            } else {
                vec![0.0; len]
            }
        };
        let (host_x, host_y) = (staged(host_x), staged(host_y));
        let plan = LearnerTensors::plan(learner.tensors(&layers))?;
        // The network's parameters move into the backend's arena: a large net is
        // never held twice.
        let bufs = DeviceBuffers::new(
            &mut *backend,
            &layers,
            &layout,
            network.into_params(),
            moments,
            plan.trainable_len(),
            config.batch_size,
        )?;
        let arena = [bufs.params, bufs.grads, bufs.state[0], bufs.state[1]];
        let tensors = LearnerTensors::new(
            &mut *backend,
            plan,
            config.batch_size,
            arena,
            layout.total(),
        )?;
        let mut trainer = Trainer {
            backend,
            host_x,
            host_y,
            loaded: config.batch_size,
            resident: ResidentSets::default(),
            steps_per_submit: auto_steps_per_submit(&layers, config.batch_size),
            bufs,
            learner,
            tensors,
            layers,
            layout,
            config,
            seed,
            steps: 0,
            epochs: 0,
            shuffle_rng: rng_for(seed, Stream::Shuffle),
        };
        let (learner, mut cx) = trainer.learner_cx(config.batch_size, StatsSlot::Scratch);
        learner.init(&mut cx, seed)?;
        Ok(trainer)
    }

    /// The learner's name (the rule's for [`Trainer::new`]).
    pub fn learner_name(&self) -> String {
        self.learner.name()
    }

    /// The tensors the learner keeps.
    pub fn tensor_specs(&self) -> &[TensorSpec] {
        self.tensors.specs()
    }

    /// The learner's tensor `name`, row-major (per-sample state holds the last batch,
    /// `rows x` its size).
    pub fn tensor(&mut self, name: &str) -> Result<Vec<f32>> {
        let m = self.tensors.get(name, self.loaded)?;
        self.backend.read(m.buf, m.offset, m.len())
    }

    /// Replaces the learner's tensor `name`. Refuses a feedback tensor the learner
    /// re-derives before every step (sign-symmetric rules), which would be
    /// overwritten.
    pub fn set_tensor(&mut self, name: &str, values: &[f32]) -> Result<()> {
        let m = self.tensors.get(name, self.loaded)?;
        if self.learner.derives_feedback() && name.starts_with("feedback.") {
            let instead = if self.learner.rule() == Some(Rule::FixedRandomSignSymmetry) {
                "; set its magnitudes with set_feedback_magnitudes"
            } else {
                ""
            };
            return Err(Error::Unsupported(format!(
                "set_feedback under rule {}, which re-derives its feedback from the weights' signs before every backward pass{instead}",
                self.learner.name()
            )));
        }
        if values.len() != m.len() {
            return Err(Error::shape(
                format!("learner tensor {name}"),
                format!("{}x{} = {} values", m.rows, m.cols, m.len()),
                format!("{} values", values.len()),
            ));
        }
        check_finite(values, &format!("learner tensor {name}"))?;
        self.backend.write(m.buf, m.offset, values)
    }

    /// The learner and a step context over the batch of `batch` samples loaded into
    /// the buffers, borrowed together.
    fn learner_cx(&mut self, batch: usize, slot: StatsSlot) -> (&mut dyn Learner, StepCx<'_>) {
        let cx = StepCx::new(
            &mut *self.backend,
            &self.bufs,
            &self.tensors,
            batch,
            self.config.loss,
            self.bufs.stats(slot),
        );
        (&mut *self.learner, cx)
    }

    /// A step context over the batch of `batch` samples loaded into the buffers.
    fn step_cx(&mut self, batch: usize, slot: StatsSlot) -> StepCx<'_> {
        self.learner_cx(batch, slot).1
    }

    /// The learner's step on the loaded batch.
    fn learner_step(&mut self, batch: usize, slot: StatsSlot) -> Result<()> {
        let (learner, mut cx) = self.learner_cx(batch, slot);
        learner.step(&mut cx)
    }

    /// The configuration it trains with.
    pub fn config(&self) -> &TrainConfig {
        &self.config
    }

    /// The backend's device name.
    pub fn device_name(&self) -> String {
        self.backend.name()
    }

    /// Waits until the device has finished every step taken so far (steps on a GPU
    /// return once recorded and submitted). Call it before stopping a timer.
    pub fn synchronize(&mut self) -> Result<()> {
        self.backend.synchronize()
    }

    /// Optimizer steps taken so far.
    pub fn steps(&self) -> u64 {
        self.steps
    }

    /// The layers being trained.
    pub fn layers(&self) -> &[LayerSpec] {
        &self.layers
    }

    /// Shapes of the rule's feedback matrices (one per hidden layer with weights; none
    /// for BP): the learner's tensors `feedback.0`, `feedback.1`, ….
    pub fn feedback_shapes(&self) -> Vec<FeedbackShape> {
        let fans = self
            .learner
            .rule()
            .map(|r| r.feedback_shapes(&self.layers))
            .unwrap_or_default();
        (0..)
            .map_while(|i| self.tensors.spec(&feedback_name(i)).ok().map(|s| (i, s)))
            .map(|(i, s)| match fans.get(i) {
                Some(shape) => *shape,
                None => FeedbackShape {
                    rows: s.rows,
                    cols: s.cols,
                    fan: s.rows,
                    fan_in: s.cols,
                },
            })
            .collect()
    }

    /// Feedback matrix `i` (the learner's tensor `feedback.{i}`), row-major.
    pub fn feedback(&mut self, i: usize) -> Result<Vec<f32>> {
        self.tensor(&self.feedback_name(i)?)
    }

    /// Replaces feedback matrix `i` (row-major, shape from [`Trainer::feedback_shapes`]).
    ///
    /// The sign-symmetric rules (uSF, brSF, frSF) derive `B` from the weights' signs
    /// before every backward pass, so a value written here would never be used: they
    /// refuse with [`Error::Unsupported`]. frSF's magnitudes, which it keeps, are set
    /// with [`Trainer::set_feedback_magnitudes`].
    pub fn set_feedback(&mut self, i: usize, values: &[f32]) -> Result<()> {
        let name = self.feedback_name(i)?;
        self.set_tensor(&name, values)
    }

    /// The random magnitudes `M_i` beside feedback matrix `i` (brSF, frSF; row-major,
    /// shaped like the feedback): the rule's `B_i` is `|M_i| ⊙ sign(W_{i+1})`. Other
    /// rules keep none ([`Error::Unsupported`]).
    pub fn feedback_magnitudes(&mut self, i: usize) -> Result<Vec<f32>> {
        let name = self.magnitude_name(i, "feedback_magnitudes", "which keeps no magnitudes")?;
        self.tensor(&name)
    }

    /// Replaces frSF's fixed magnitudes `M_i` (row-major, shaped like feedback matrix
    /// `i`): `B_i` becomes `|M_i| ⊙ sign(W_{i+1})` at once and keeps following the
    /// weights' signs with these magnitudes. brSF redraws its magnitudes every batch
    /// and the other rules keep none, so they refuse with [`Error::Unsupported`].
    pub fn set_feedback_magnitudes(&mut self, i: usize, values: &[f32]) -> Result<()> {
        let frsf = self.learner.rule() == Some(Rule::FixedRandomSignSymmetry);
        let why = if self.learner.rule() == Some(Rule::BatchRandomSignSymmetry) {
            "which redraws its magnitudes before every backward pass"
        } else {
            "which keeps no magnitudes (only frsf does)"
        };
        let name = self.magnitude_name(i, "set_feedback_magnitudes", why)?;
        if !frsf {
            return Err(Error::Unsupported(format!(
                "set_feedback_magnitudes under rule {}, {why}",
                self.learner.name()
            )));
        }
        self.set_tensor(&name, values)?;
        // frSF draws nothing: B follows the new magnitudes from now on.
        let layer = crate::layer::weighted_layers(&self.layers)[i + 1];
        let (b, m) = (
            self.tensors.get(&feedback_name(i), 0)?,
            self.tensors.get(&name, 0)?,
        );
        let w = self.bufs.weights(layer);
        self.backend.sign_feedback(b, w, Some(m), 1.0)
    }

    /// The name of magnitude tensor `i`, or why `call` does not apply.
    fn magnitude_name(&self, i: usize, call: &str, why: &str) -> Result<String> {
        if self.tensors.spec(&magnitude_name(0)).is_err() {
            return Err(Error::Unsupported(format!(
                "{call} under rule {}, {why}",
                self.learner.name()
            )));
        }
        self.feedback_name(i)?;
        Ok(magnitude_name(i))
    }

    fn feedback_name(&self, i: usize) -> Result<String> {
        let count = self.feedback_shapes().len();
        if i >= count {
            return Err(Error::config(format!(
                "{} has {count} feedback matrices, not {}",
                self.learner.name(),
                i + 1
            )));
        }
        Ok(feedback_name(i))
    }

    /// Changes the optimizer's hyperparameters (e.g. the learning rate for a schedule),
    /// keeping its state.
    pub fn set_optimizer(&mut self, optimizer: Optimizer) -> Result<()> {
        optimizer.validate()?;
        if std::mem::discriminant(&optimizer) != std::mem::discriminant(&self.config.optimizer) {
            return Err(Error::config(
                "cannot switch optimizer kind mid-run: its state would not carry over",
            ));
        }
        self.config.optimizer = optimizer;
        Ok(())
    }

    /// `o` with this step's scheduled learning rate.
    fn scheduled(&self, o: Optimizer) -> Optimizer {
        o.with_lr(o.lr() * self.config.schedule.factor(self.steps))
    }

    /// Epochs completed by [`Trainer::train_epoch`].
    pub fn epochs(&self) -> u64 {
        self.epochs
    }

    /// The current network, read back from the backend.
    pub fn network(&mut self) -> Result<Network> {
        let params = self
            .backend
            .read(self.bufs.params, 0, self.layout.total())?;
        let mut net = Network::from_layers(self.layers.clone(), self.seed)?;
        net.set_params(&params)?;
        Ok(net)
    }

    /// One training step on the samples of `data` at `indices`.
    ///
    /// On the CPU a diverging step fails at once with [`Error::Diverged`]. A GPU step
    /// only records its work, so there the step flags the divergence on the device,
    /// leaves the parameters as they were before it, and the next call that reads
    /// statistics ([`Trainer::train_epoch`], [`Trainer::evaluate`]) reports it.
    pub fn train_batch(&mut self, data: &Dataset, indices: &[usize]) -> Result<()> {
        let batch = self.load_batch(data, indices)?;
        self.record_step(batch)?;
        self.backend.flush()
    }

    /// The learner's step and the optimizer's on the loaded batch of `batch` samples,
    /// recorded (a GPU runs it at the next flush).
    fn record_step(&mut self, batch: usize) -> Result<()> {
        self.learner_step(batch, StatsSlot::Train)?;
        self.steps += 1;
        // A device backend watches itself (see `backend::divergence`); the host checks
        // the loss of every step.
        let guard = (!self.backend.host_resident()).then(|| Guard {
            flags: self.bufs.flags(),
            loss: self.bufs.stats(StatsSlot::Train).rows(0, 1).reshape(1, 1),
            step: u32::try_from(self.steps).unwrap_or(u32::MAX),
        });
        if self.backend.host_resident() {
            // A non-finite loss stops the step before it can corrupt the parameters.
            self.check_loss(StatsSlot::Train)
                .map_err(|e| self.locate_divergence(e, batch))?;
        }
        // Frozen layers (last-layer-only) are outside the pass: no decay or momentum.
        let first = self.learner.first_trained_layer(&self.layers);
        let net = |buf| self.bufs.arena_from(buf, first);
        if let Some(max_norm) = self.config.grad_clip {
            self.backend
                .clip_grad_norm(net(self.bufs.grads), max_norm, self.bufs.grad_norm())?;
        }
        // The learner's trainable tensors follow the parameters in the arena: one
        // pass covers both unless the learner updates them its own way.
        let tensors = self.tensors.trainable_len();
        let own = self
            .learner
            .tensor_optimizer()
            .filter(|o| *o != self.config.optimizer && tensors > 0);
        let joint = if own.is_none() { tensors } else { 0 };
        let widen = |m: Mat| Mat::new(m.buf, m.offset, 1, m.len() + joint);
        let mut passes = vec![OptimizerPass {
            params: widen(net(self.bufs.params)),
            grads: widen(net(self.bufs.grads)),
            state: self.bufs.state.map(|s| widen(net(s))),
            step: self
                .scheduled(self.config.optimizer)
                .step_params(self.steps),
            guard,
            keep_grads: false,
        }];
        if let Some(optimizer) = own {
            let t = &self.tensors;
            passes.push(OptimizerPass {
                params: t.trainable_arena(0),
                grads: t.trainable_arena(1),
                state: [t.trainable_arena(2), t.trainable_arena(3)],
                step: self.scheduled(optimizer).step_params(self.steps),
                guard,
                keep_grads: false,
            });
        }
        for pass in passes {
            self.backend
                .optimizer_step(&pass)
                .map_err(|e| self.diverged_parameter(e))?;
        }
        Ok(())
    }

    /// One training step on a raw batch: `x` holds `labels.len()` samples row-major.
    pub fn train_step(&mut self, x: &[f32], labels: &[u32]) -> Result<()> {
        let data = Dataset::new(
            x.to_vec(),
            labels.to_vec(),
            self.layers[0].inputs(),
            self.output_size(),
        )?;
        let indices: Vec<usize> = (0..data.len()).collect();
        self.train_batch(&data, &indices)
    }

    /// One pass over `data` in a fresh seeded order; `on_batch(done, total)` is called
    /// after every step (for progress bars). Returns the loss and accuracy accumulated
    /// over the epoch's batches, as the parameters changed.
    ///
    /// On a GPU the data set is stored on the device the first time (see
    /// [`Trainer::store_data`]), each batch is gathered there, and
    /// [`Trainer::steps_per_submit`] steps share one submit: `on_batch` then reports
    /// steps as they are recorded. Statistics and divergence flags are read back once,
    /// at the end; a divergence is reported with the step and layer, and the parameters
    /// are those from before that step.
    pub fn train_epoch(
        &mut self,
        data: &Dataset,
        mut on_batch: impl FnMut(usize, usize),
    ) -> Result<Evaluation> {
        self.check_data(data)?;
        self.backend.fill(self.bufs.stats(StatsSlot::Train), 0.0)?;
        self.backend.fill(self.bufs.flags(), 0.0)?;
        let mut order: Vec<usize> = (0..data.len()).collect();
        order.shuffle(&mut self.shuffle_rng);
        let b = self.config.batch_size;
        let total = order.len().div_ceil(b);
        let first_step = self.steps;
        let source = self.batches(data, &order)?;
        for i in 0..total {
            let batch = self.load_from(&source, i * b)?;
            self.record_step(batch)?;
            // Eager backends ran the step already; a device runs K at a time.
            if (i + 1) % self.steps_per_submit == 0 {
                self.backend.flush()?;
            }
            on_batch(i + 1, total);
        }
        self.backend.flush()?;
        let stats = self.read_stats(StatsSlot::Train).map_err(|e| {
            let batch_of = |step: u64| (step - first_step - 1) as usize * b;
            self.locate_device_divergence(e, &source, batch_of)
        })?;
        // Counted once it is known to have gone through, as on the CPU.
        self.epochs += 1;
        Ok(stats)
    }

    /// Where the batches of `data` in `order` come from: the set stored on the device
    /// with `order` written beside it, or the host.
    fn batches<'a>(&mut self, data: &'a Dataset, order: &'a [usize]) -> Result<Batches<'a>> {
        Ok(match self.resident.store(&mut *self.backend, data)?.0 {
            Some(stored) => {
                let indices = self
                    .resident
                    .write_order(&mut *self.backend, order.iter().copied())?;
                Batches::Device(stored, indices)
            }
            None => Batches::Host(data, order),
        })
    }

    /// Loads into the batch buffers the samples at positions `first..` of the source's
    /// order (up to a batch of them); returns how many.
    fn load_from(&mut self, source: &Batches, first: usize) -> Result<usize> {
        let batch = self.config.batch_size.min(source.len() - first);
        match *source {
            Batches::Host(data, order) => self.load_batch(data, &order[first..first + batch]),
            Batches::Device(stored, order) => {
                let op = gather_op(
                    stored,
                    order,
                    first,
                    self.bufs.activation(0, batch),
                    self.bufs.targets(batch),
                );
                self.backend.gather(&op)?;
                self.loaded = batch;
                Ok(batch)
            }
        }
    }

    /// Stores `data` on the device (once: later calls with the same set, or a clone,
    /// find it there), so epochs and evaluations over it gather their batches on the
    /// device. [`Trainer::train_epoch`] and [`Trainer::evaluate`] call it themselves;
    /// call it to learn whether the set fits: a set over the adapter's limits stays on
    /// the host ([`Residency::PerBatch`], with the reason) and is uploaded per batch.
    /// The two sets used last are kept.
    pub fn store_data(&mut self, data: &Dataset) -> Result<Residency> {
        self.check_data(data)?;
        Ok(self.resident.store(&mut *self.backend, data)?.1)
    }

    /// Steps an epoch records per submit on a device backend. By default enough for
    /// about 2 ms of a GPU's work (from the network's size and the batch), at most
    /// [`MAX_STEPS_PER_SUBMIT`].
    pub fn steps_per_submit(&self) -> usize {
        self.steps_per_submit
    }

    /// Sets [`Trainer::steps_per_submit`] (1 to [`MAX_STEPS_PER_SUBMIT`]); `None`
    /// restores the default. Results do not depend on it.
    pub fn set_steps_per_submit(&mut self, steps: Option<usize>) -> Result<()> {
        self.steps_per_submit = match steps {
            None => auto_steps_per_submit(&self.layers, self.config.batch_size),
            Some(k @ 1..=MAX_STEPS_PER_SUBMIT) => k,
            Some(k) => {
                return Err(Error::config(format!(
                    "steps per submit must be in 1..={MAX_STEPS_PER_SUBMIT}, got {k}"
                )))
            }
        };
        Ok(())
    }

    /// The device's work counters (submits, dispatches, bytes uploaded and read back)
    /// since its backend was opened; `None` on the CPU.
    pub fn work_counters(&self) -> Option<WorkCounters> {
        self.backend.counters()
    }

    /// Loss and accuracy on `data` (no parameter changes). On a GPU the set is stored
    /// on the device (see [`Trainer::store_data`]) and evaluated in one submit.
    pub fn evaluate(&mut self, data: &Dataset) -> Result<Evaluation> {
        self.check_data(data)?;
        self.backend.fill(self.bufs.stats(StatsSlot::Eval), 0.0)?;
        let in_order: Vec<usize> = (0..data.len()).collect();
        let source = self.batches(data, &in_order)?;
        for first in (0..data.len()).step_by(self.config.batch_size) {
            let batch = self.load_from(&source, first)?;
            self.forward(batch)?;
            self.loss_grad(batch, StatsSlot::Eval)?;
        }
        self.backend.flush()?;
        self.read_stats(StatsSlot::Eval)
    }

    /// The network's outputs for the samples of `data` at `indices`
    /// (`indices.len() x outputs`, row-major; logits for a cross-entropy model).
    pub fn outputs(&mut self, data: &Dataset, indices: &[usize]) -> Result<Vec<f32>> {
        let classes = self.output_size();
        let mut out = vec![0.0; checked_product("outputs", &[indices.len(), classes])?];
        for (c, chunk) in indices.chunks(self.config.batch_size).enumerate() {
            let batch = self.load_batch(data, chunk)?;
            self.forward(batch)?;
            let m = self.bufs.output(self.layers.len() - 1, batch);
            let fm = self.backend.read(m.buf, m.offset, m.len())?;
            let base = c * self.config.batch_size;
            for j in 0..batch {
                for k in 0..classes {
                    out[(base + j) * classes + k] = fm[k * batch + j];
                }
            }
        }
        Ok(out)
    }

    /// The rule's update direction for one batch without applying it: the parameter
    /// gradient (exact for BP, the rule's approximation otherwise), laid out like
    /// [`Network::params`]. Used to compare rules and to check gradients.
    ///
    /// Leaves the run's course unchanged: the learner's host state (brSF's feedback
    /// stream) is put back afterwards, so the next training step draws what it would
    /// have drawn, and calling this between steps changes no later step.
    pub fn update_direction(&mut self, data: &Dataset, indices: &[usize]) -> Result<Vec<f32>> {
        self.keeping_learner_state(|t| {
            let batch = t.load_batch(data, indices)?;
            t.learner_step(batch, StatsSlot::Scratch)?;
            t.backend.read(t.bufs.grads, 0, t.layout.total())
        })
    }

    /// Runs a measurement that takes a learner step, then restores the learner's host
    /// state (brSF draws its magnitudes from its stream in every step).
    fn keeping_learner_state<T>(&mut self, f: impl FnOnce(&mut Self) -> Result<T>) -> Result<T> {
        let state = self.learner.state();
        let out = f(self);
        self.learner.restore_state(&state)?;
        out
    }

    fn output_size(&self) -> usize {
        self.layers[self.layers.len() - 1].outputs()
    }

    fn check_data(&self, data: &Dataset) -> Result<()> {
        if data.dim() != self.layers[0].inputs() {
            return Err(Error::shape(
                "data features vs network inputs",
                format!("{} features", self.layers[0].inputs()),
                format!("{} features", data.dim()),
            ));
        }
        if data.classes() != self.output_size() {
            return Err(Error::shape(
                "data classes vs network outputs",
                format!("{} classes", self.output_size()),
                format!("{} classes", data.classes()),
            ));
        }
        Ok(())
    }

    /// Uploads a batch (feature-major inputs, one-hot targets); returns its size.
    fn load_batch(&mut self, data: &Dataset, indices: &[usize]) -> Result<usize> {
        self.check_data(data)?;
        let batch = indices.len();
        if batch == 0 {
            return Err(Error::EmptyData("a batch needs at least one sample".into()));
        }
        if batch > self.config.batch_size {
            return Err(Error::shape(
                "batch",
                format!(
                    "at most {} samples (the configured batch size)",
                    self.config.batch_size
                ),
                format!("{batch} samples"),
            ));
        }
        let (x, t) = (self.bufs.activation(0, batch), self.bufs.targets(batch));
        if self.backend.host_resident() {
            // Gathered straight into the backend's buffers: no staging copy.
            data.check_indices(indices)?;
            let gather_x = &mut |dst: &mut [f32]| data.gather_x(indices, dst);
            self.backend
                .write_with(x.buf, x.offset, x.len(), gather_x)?;
            let gather_y = &mut |dst: &mut [f32]| data.gather_y(indices, dst);
            self.backend
                .write_with(t.buf, t.offset, t.len(), gather_y)?;
        } else {
            data.gather_feature_major(indices, &mut self.host_x, &mut self.host_y)?;
            self.backend
                .write(x.buf, x.offset, &self.host_x[..x.len()])?;
            self.backend
                .write(t.buf, t.offset, &self.host_y[..t.len()])?;
        }
        self.loaded = batch;
        Ok(batch)
    }

    /// The learner's prediction for the loaded batch (the feedforward pass for most).
    fn forward(&mut self, batch: usize) -> Result<()> {
        let (learner, mut cx) = self.learner_cx(batch, StatsSlot::Scratch);
        learner.infer(&mut cx)
    }

    fn loss_grad(&mut self, batch: usize, slot: StatsSlot) -> Result<()> {
        let last = self.layers.len() - 1;
        self.backend.loss_grad(&LossGrad {
            loss: self.config.loss,
            output: self.bufs.output(last, batch),
            target: self.bufs.targets(batch),
            grad: self.bufs.delta(last, batch),
            stats: self.bufs.stats(slot),
        })
    }

    /// The statistics of `slot`, and any divergence a device step flagged (which is
    /// then cleared: it has been reported).
    fn read_stats(&mut self, slot: StatsSlot) -> Result<Evaluation> {
        let m = self.bufs.all_stats();
        let words = self.backend.read(m.buf, m.offset, m.len())?;
        let flags_at = self.bufs.flags().offset - m.offset;
        let flags = Flags::from_words(&words[flags_at..]);
        if let Some(step) = flags.first() {
            self.backend.fill(self.bufs.flags(), 0.0)?;
            // The device skipped every update from that step on.
            self.steps = u64::from(step);
            let train_loss = words[self.bufs.stats(StatsSlot::Train).offset - m.offset];
            return Err(self.flagged_divergence(flags, train_loss));
        }
        let at = self.bufs.stats(slot).offset - m.offset;
        let eval = Evaluation::from_sums(&words[at..at + 3]);
        if !eval.loss.is_finite() {
            return Err(Error::Diverged {
                step: self.steps,
                what: "loss".into(),
                value: eval.loss,
            });
        }
        Ok(eval)
    }

    /// Zeroes the gradients of frozen layers (before `first`).
    fn clear_frozen_grads(&mut self, first: usize) -> Result<()> {
        let start = self.layout.weights(first).start;
        if start == 0 {
            return Ok(());
        }
        self.backend
            .fill(Mat::new(self.bufs.grads, 0, 1, start), 0.0)
    }

    /// Names the step and layer of a parameter an update made non-finite.
    fn diverged_parameter(&self, error: Error) -> Error {
        let Error::NonFinite { index, value, .. } = error else {
            return error;
        };
        let layer = (0..self.layers.len()).find_map(|l| {
            if self.layout.weights(l).contains(&index) {
                Some(format!("weights of layer {l}"))
            } else if self.layout.bias(l).contains(&index) {
                Some(format!("bias of layer {l}"))
            } else {
                None
            }
        });
        let tensor = || {
            let name = self.tensors.trainable_at(index)?;
            Some(format!("the learner's trainable tensor {name}"))
        };
        Error::Diverged {
            step: self.steps,
            what: layer
                .or_else(tensor)
                .unwrap_or_else(|| format!("parameter {index}")),
            value,
        }
    }

    /// Adds to a non-finite loss the first layer whose output of this batch is
    /// non-finite (the inputs and parameters were checked finite before).
    fn locate_divergence(&mut self, error: Error, batch: usize) -> Error {
        let Error::Diverged { step, what, value } = error else {
            return error;
        };
        for l in 0..self.layers.len() {
            let m = self.bufs.output(l, batch);
            let Ok(h) = self.backend.read(m.buf, m.offset, m.len()) else {
                break;
            };
            if let Some(v) = h.iter().find(|v| !v.is_finite()) {
                return Error::Diverged {
                    step,
                    what: format!("{what} (output of layer {l} is first to hold {v})"),
                    value,
                };
            }
        }
        Error::Diverged {
            step,
            what: format!("{what} (every layer's output is finite: the loss overflowed)"),
            value,
        }
    }

    /// The error for divergence a device step flagged: a non-finite loss, or the first
    /// parameter an update made non-finite.
    fn flagged_divergence(&mut self, flags: Flags, train_loss: f32) -> Error {
        if flags.loss != 0 && (flags.update == 0 || flags.loss <= flags.update) {
            return Error::Diverged {
                step: u64::from(flags.loss),
                what: "loss".into(),
                value: train_loss,
            };
        }
        // The value was not written: only that it would not be finite is known.
        self.diverged_parameter(Error::NonFinite {
            context: String::new(),
            index: flags.index as usize,
            value: f32::INFINITY,
        })
    }

    /// Adds to a loss divergence found after a device epoch the first layer whose
    /// output of that step's batch is non-finite: the batch is loaded again (at
    /// `batch_of(step)` in the source's order) and run forward on the parameters from
    /// before it.
    fn locate_device_divergence(
        &mut self,
        error: Error,
        source: &Batches,
        batch_of: impl Fn(u64) -> usize,
    ) -> Error {
        let Error::Diverged { step, ref what, .. } = error else {
            return error;
        };
        if what != "loss" {
            return error;
        }
        let first = batch_of(step);
        if first >= source.len() {
            return error;
        }
        let batch = match self.load_from(source, first).and_then(|b| {
            self.forward(b)?;
            Ok(b)
        }) {
            Ok(b) => b,
            Err(_) => return error,
        };
        self.locate_divergence(error, batch)
    }

    fn check_loss(&mut self, slot: StatsSlot) -> Result<()> {
        self.read_stats(slot).map(|_| ())
    }
}

/// Where an epoch's or an evaluation's batches come from, in their order.
enum Batches<'a> {
    /// Copied from the data set on the host, the samples at these indices.
    Host(&'a Dataset, &'a [usize]),
    /// Gathered from the set stored on the device through these indices.
    Device(StoredData, Mat),
}

impl Batches<'_> {
    /// Samples in the order.
    fn len(&self) -> usize {
        match self {
            Batches::Host(_, order) => order.len(),
            Batches::Device(_, order) => order.len(),
        }
    }
}

fn check_finite(values: &[f32], context: &str) -> Result<()> {
    match values.iter().position(|v| !v.is_finite()) {
        Some(index) => Err(Error::NonFinite {
            context: context.to_string(),
            index,
            value: values[index],
        }),
        None => Ok(()),
    }
}
