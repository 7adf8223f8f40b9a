//! Timing training steps: the networks, data and measurements behind the benchmarks
//! (`examples/bench_rules.rs`, `benches/`) and the reference scripts in
//! `benches/reference/`, which build the same networks.
//!
//! A [`StepShape`] names a benchmark network: `width` inputs, `depth` hidden tanh
//! layers of `width` units, [`CLASSES`] identity outputs under softmax cross-entropy,
//! trained with plain SGD on `batch` samples of random data. Only the time matters.
//!
//! ```
//! use plasticity::bench::{time_steps, StepShape};
//! use plasticity::{Device, Rule};
//!
//! let shape = StepShape { width: 64, depth: 4, batch: 32 };
//! let profile = shape.profile(Rule::DirectFeedbackAlignment)?;
//! assert_eq!(profile.critical_path, 5 + 4);
//! let mut trainer = shape.trainer(Rule::DirectFeedbackAlignment, Device::Cpu)?;
//! let data = shape.data(2, 7)?;
//! let timing = time_steps(&mut trainer, &data, 1, 5, 1)?;
//! assert_eq!(timing.samples, 5);
//! assert!(timing.min <= timing.median);
//! # Ok::<(), plasticity::Error>(())
//! ```

use std::time::{Duration, Instant};

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

mod ops;

pub use ops::{time_step_ops, StepOps, TimedOp};

use crate::backend::{TraceSummary, TracingBackend};
use crate::data::Dataset;
use crate::error::{checked_product, Error, Result};
use crate::{Activation, Device, Network, Optimizer, Rule, TrainConfig, Trainer};

/// One product `C = op(A) op(B)` on row-major slices, run exactly as the CPU backend
/// runs [`Backend::gemm`](crate::backend::Backend::gemm) (its threading, and the
/// column-major form it picks for tall `Aᵀ B`), with `alpha = 1`, `beta = 0`: `C` is
/// `m x n`, `A` is stored `m x k` (`k x m` when `trans_a`), `B` is `k x n` (`n x k` when
/// `trans_b`). `scratch` is reused between calls. For timing a step's products alone
/// (`examples/step_time.rs --breakdown`).
#[allow(clippy::too_many_arguments)]
pub fn cpu_product(
    c: &mut [f32],
    a: &[f32],
    b: &[f32],
    (m, k, n): (usize, usize, usize),
    trans_a: bool,
    trans_b: bool,
    scratch: &mut Vec<f32>,
) -> Result<()> {
    use crate::backend::{BufId, Gemm, Mat};
    let stored = |rows, cols, trans| if trans { (cols, rows) } else { (rows, cols) };
    let (ar, ac) = stored(m, k, trans_a);
    let (br, bc) = stored(k, n, trans_b);
    let op = Gemm::new(
        Mat::new(BufId(0), 0, m, n),
        Mat::new(BufId(1), 0, ar, ac),
        trans_a,
        Mat::new(BufId(2), 0, br, bc),
        trans_b,
    );
    op.check()?;
    for (what, len, want) in [
        ("C", c.len(), m * n),
        ("A", a.len(), m * k),
        ("B", b.len(), k * n),
    ] {
        if len != want {
            return Err(Error::Backend(format!(
                "cpu_product: {what} holds {len} values, the {m}x{k}x{n} product needs {want}"
            )));
        }
    }
    crate::backend::cpu::product(&op, c, a, b, scratch, None);
    Ok(())
}

/// Output classes of every benchmark network.
pub const CLASSES: usize = 10;

/// Learning rate of the benchmarks' plain SGD (small, so long runs stay finite).
pub const LEARNING_RATE: f32 = 1e-3;

/// A benchmark network and batch; see the [module docs](self).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct StepShape {
    /// Input features and hidden units per layer.
    pub width: usize,
    /// Hidden layers.
    pub depth: usize,
    /// Samples per step.
    pub batch: usize,
}

impl StepShape {
    /// Checks every dimension is positive.
    pub fn validate(&self) -> Result<()> {
        if self.width == 0 || self.depth == 0 || self.batch == 0 {
            return Err(Error::config(format!(
                "benchmark shape needs positive width, depth and batch, got {self}"
            )));
        }
        Ok(())
    }

    /// The network, its weights drawn from `seed`.
    pub fn network(&self, seed: u64) -> Result<Network> {
        self.builder()?.seed(seed).build()
    }

    fn builder(&self) -> Result<crate::NetworkBuilder> {
        self.validate()?;
        Ok(Network::builder(self.width)
            .hidden(&vec![self.width; self.depth], Activation::Tanh)
            .dense(CLASSES, Activation::Identity))
    }

    /// How the benchmarks train it with `rule`: plain SGD at [`LEARNING_RATE`].
    pub fn config(&self, rule: Rule) -> TrainConfig {
        TrainConfig {
            rule,
            optimizer: Optimizer::sgd(LEARNING_RATE),
            batch_size: self.batch,
            ..TrainConfig::default()
        }
    }

    /// A trainer for `rule` on `device` (network seed 1).
    pub fn trainer(&self, rule: Rule, device: Device) -> Result<Trainer> {
        Trainer::new(self.network(1)?, self.config(rule), device)
    }

    /// `batches` batches of standard-normal inputs with uniform labels, from `seed`.
    pub fn data(&self, batches: usize, seed: u64) -> Result<Dataset> {
        self.validate()?;
        let n = checked_product("benchmark samples", &[batches.max(1), self.batch])?;
        let values = checked_product("benchmark features", &[n, self.width])?;
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let normal = rand_distr::StandardNormal;
        let features = (0..values).map(|_| rng.sample::<f32, _>(normal)).collect();
        let labels = (0..n)
            .map(|_| rng.random_range(0..CLASSES as u32))
            .collect();
        Dataset::new(features, labels, self.width, CLASSES)
    }

    /// Parameters of the network (saturating at `usize::MAX` for shapes too large
    /// to exist).
    pub fn params(&self) -> usize {
        let w = self.width;
        let hidden = self
            .depth
            .saturating_mul(w.saturating_mul(w).saturating_add(w));
        hidden.saturating_add(CLASSES.saturating_mul(w.saturating_add(1)))
    }

    /// Bytes a trainer keeps on its device: parameters, gradients and two optimizer
    /// state arenas, activations, deltas and (for feedback rules) the feedback.
    /// Saturates at `u64::MAX` for shapes too large to exist.
    pub fn device_bytes(&self) -> u64 {
        let u = |v: usize| u64::try_from(v).unwrap_or(u64::MAX);
        let (width, batch, classes) = (u(self.width), u(self.batch), u(CLASSES));
        let hidden = u(self.depth).saturating_mul(width);
        let arenas = u(self.params()).saturating_mul(4);
        let acts = width
            .saturating_add(hidden)
            .saturating_add(classes)
            .saturating_mul(batch);
        let deltas = hidden.saturating_add(classes).saturating_mul(batch);
        let feedback = hidden.saturating_mul(width.max(classes)).saturating_mul(2);
        arenas
            .saturating_add(acts)
            .saturating_add(deltas)
            .saturating_add(feedback)
            .saturating_mul(4)
    }

    /// The operations of one `rule` step, their critical path and GEMM work, from a
    /// dry run (nothing is computed, so any size is free).
    pub fn profile(&self, rule: Rule) -> Result<TraceSummary> {
        let tracer = TracingBackend::dry();
        let trace = tracer.trace();
        // Zero weights: nothing is computed, so drawing millions of them would be waste.
        let network = self.builder()?.init(crate::WeightInit::Zeros).build()?;
        let mut trainer = Trainer::with_backend(network, self.config(rule), Box::new(tracer))?;
        let data = self.data(1, 0)?;
        let indices: Vec<usize> = (0..self.batch).collect();
        trace.clear();
        trainer.train_batch(&data, &indices)?;
        Ok(trace.summary())
    }
}

impl std::fmt::Display for StepShape {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "width {} depth {} batch {}",
            self.width, self.depth, self.batch
        )
    }
}

/// Bytes of memory the host can still give (`MemAvailable` of `/proc/meminfo`), where
/// the OS tells; benchmarks skip shapes whose [`StepShape::device_bytes`] would not fit.
pub fn available_memory() -> Option<u64> {
    let info = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = info.lines().find(|l| l.starts_with("MemAvailable:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// Wall-clock times of repeated samples.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Timing {
    /// The median sample.
    pub median: Duration,
    /// The fastest sample.
    pub min: Duration,
    /// How many samples were taken.
    pub samples: usize,
}

impl Timing {
    /// Median and minimum of `samples`; `None` when there are none.
    pub fn from_samples(mut samples: Vec<Duration>) -> Option<Timing> {
        samples.sort();
        Some(Timing {
            median: median(&samples, |a, b| (a + b) / 2)?,
            min: samples[0],
            samples: samples.len(),
        })
    }

    /// The median in milliseconds.
    pub fn median_ms(&self) -> f64 {
        self.median.as_secs_f64() * 1e3
    }

    /// The minimum in milliseconds.
    pub fn min_ms(&self) -> f64 {
        self.min.as_secs_f64() * 1e3
    }
}

/// Times training steps of `trainer` on consecutive batches of `data`: `warmup`
/// untimed steps, then `repeats` samples of `inner` steps each, every sample ending
/// when the device has finished ([`Trainer::synchronize`]). Sample times are per step.
pub fn time_steps(
    trainer: &mut Trainer,
    data: &Dataset,
    warmup: usize,
    repeats: usize,
    inner: usize,
) -> Result<Timing> {
    let mut cycle = warmed_cycle(trainer, data, warmup)?;
    let samples = (0..repeats)
        .map(|_| timed_steps(&mut cycle, trainer, data, inner.max(1)))
        .collect::<Result<Vec<_>>>()?;
    Timing::from_samples(samples).ok_or_else(|| Error::config("timing needs repeats >= 1"))
}

/// A cycle over `data`'s batches for `trainer`, after `warmup` untimed steps the device
/// has finished; an error when `data` holds less than one batch.
fn warmed_cycle(trainer: &mut Trainer, data: &Dataset, warmup: usize) -> Result<BatchCycle> {
    let batch = trainer.config().batch_size;
    if data.len() < batch {
        return Err(Error::config(format!(
            "timing needs at least one batch of {batch} samples, the data has {}",
            data.len()
        )));
    }
    let mut cycle = BatchCycle::new(batch, data.len());
    for _ in 0..warmup {
        cycle.step(trainer, data)?;
    }
    trainer.synchronize()?;
    Ok(cycle)
}

/// The time per step of `inner` steps, until the device has finished them.
fn timed_steps(
    cycle: &mut BatchCycle,
    trainer: &mut Trainer,
    data: &Dataset,
    inner: usize,
) -> Result<Duration> {
    let start = Instant::now();
    for _ in 0..inner {
        cycle.step(trainer, data)?;
    }
    trainer.synchronize()?;
    Ok(start.elapsed() / inner as u32)
}

/// The middle of `sorted`, or `mean` of its two middle values for an even count;
/// `None` when it is empty.
fn median<T: Copy>(sorted: &[T], mean: impl Fn(T, T) -> T) -> Option<T> {
    let n = sorted.len();
    match n {
        0 => None,
        _ if n % 2 == 1 => Some(sorted[n / 2]),
        _ => Some(mean(sorted[n / 2 - 1], sorted[n / 2])),
    }
}

/// Step times of several trainers measured in turns, for ratios a drifting machine
/// cannot skew (on a shared VM the speed of one core moves by 10-50% over seconds, so
/// timing one rule's steps after another's compares two different machines).
///
/// Every trainer first takes `warmup` untimed steps. Then, `rounds` times, each trainer
/// in turn takes one untimed step (so its own data is back in the caches, as in
/// training) and one timed sample of `inner` steps, ending when its device has
/// finished. `samples[t][r]` is trainer `t`'s time per step in round `r`: a ratio of
/// two trainers is best taken per round ([`median_ratio`]).
pub fn time_in_turns(
    trainers: &mut [Trainer],
    data: &Dataset,
    warmup: usize,
    rounds: usize,
    inner: usize,
) -> Result<Vec<Vec<Duration>>> {
    if rounds == 0 || inner == 0 {
        return Err(Error::config(
            "timing in turns needs rounds >= 1 and inner >= 1",
        ));
    }
    let mut cycles = trainers
        .iter_mut()
        .map(|trainer| warmed_cycle(trainer, data, warmup))
        .collect::<Result<Vec<_>>>()?;
    let mut samples = vec![Vec::with_capacity(rounds); trainers.len()];
    for _ in 0..rounds {
        for ((trainer, cycle), times) in trainers.iter_mut().zip(&mut cycles).zip(&mut samples) {
            // The untimed step of its own, then the timed ones.
            timed_steps(cycle, trainer, data, 1)?;
            times.push(timed_steps(cycle, trainer, data, inner)?);
        }
    }
    Ok(samples)
}

/// The median over rounds of `a[r] / b[r]`: how many times longer `a` took than `b`,
/// each round comparing the two at the machine's speed of that moment. `None` when
/// the two have no rounds in common or a round of `b` took no time.
pub fn median_ratio(a: &[Duration], b: &[Duration]) -> Option<f64> {
    let mut ratios: Vec<f64> = a
        .iter()
        .zip(b)
        .map(|(a, b)| a.as_secs_f64() / b.as_secs_f64())
        .collect();
    if ratios.iter().any(|r| !r.is_finite()) {
        return None;
    }
    ratios.sort_by(f64::total_cmp);
    median(&ratios, |a, b| 0.5 * (a + b))
}

/// Steps a trainer on consecutive batches of a dataset, from the first again after the
/// last (so timed steps see several batches, not one cached one).
#[derive(Debug, Clone)]
pub struct BatchCycle {
    batch: usize,
    batches: usize,
    next: usize,
    /// The current batch's sample indices, refilled in place (no allocation per step).
    indices: Vec<usize>,
}

impl BatchCycle {
    /// Cycles through the `samples / batch` whole batches of a dataset of `samples`.
    pub fn new(batch: usize, samples: usize) -> BatchCycle {
        BatchCycle {
            batch,
            batches: (samples / batch.max(1)).max(1),
            next: 0,
            indices: Vec::with_capacity(batch),
        }
    }

    /// One training step on the next batch of `data`.
    pub fn step(&mut self, trainer: &mut Trainer, data: &Dataset) -> Result<()> {
        let start = self.next * self.batch;
        self.next = (self.next + 1) % self.batches;
        self.indices.clear();
        self.indices.extend(start..start + self.batch);
        trainer.train_batch(data, &self.indices)
    }
}

/// Calls `f` `warmup` times untimed, then times `repeats` calls of it (each call must
/// finish its work itself: synchronize a device inside it).
pub fn time_repeated(
    warmup: usize,
    repeats: usize,
    mut f: impl FnMut() -> Result<()>,
) -> Result<Timing> {
    for _ in 0..warmup {
        f()?;
    }
    let mut samples = Vec::with_capacity(repeats);
    for _ in 0..repeats {
        let start = Instant::now();
        f()?;
        samples.push(start.elapsed());
    }
    Timing::from_samples(samples).ok_or_else(|| Error::config("timing needs repeats >= 1"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn profiles_count_what_the_gpu_would_dispatch() {
        // L = depth + 1 layers: BP/FA 2L + 2 operations all in one chain; DFA L + 4.
        let shape = StepShape {
            width: 16,
            depth: 7,
            batch: 4,
        };
        let layers = shape.depth + 1;
        for (rule, ops) in [
            (Rule::Backprop, 2 * layers + 2),
            (Rule::FeedbackAlignment, 2 * layers + 2),
            (Rule::DirectFeedbackAlignment, layers + 4),
        ] {
            let p = shape.profile(rule).unwrap();
            assert_eq!((p.ops, p.critical_path), (ops, ops), "{rule}");
        }
        // Forward + weight gradients are the same for all; BP adds the W^T δ chain.
        let bp = shape.profile(Rule::Backprop).unwrap().gemm_flops;
        let dfa = shape
            .profile(Rule::DirectFeedbackAlignment)
            .unwrap()
            .gemm_flops;
        let (w, b, k) = (16u64, 4u64, CLASSES as u64);
        assert_eq!(bp - dfa, 2 * b * (6 * w * w + k * w) - 2 * b * (7 * w * k));
    }

    #[test]
    fn turns_time_every_trainer_each_round_after_a_step_of_its_own() {
        let shape = StepShape {
            width: 8,
            depth: 2,
            batch: 4,
        };
        let data = shape.data(3, 1).unwrap();
        let mut trainers = vec![
            shape.trainer(Rule::Backprop, Device::Cpu).unwrap(),
            shape
                .trainer(Rule::DirectFeedbackAlignment, Device::Cpu)
                .unwrap(),
        ];
        let (warmup, rounds, inner) = (2, 3, 4);
        let samples = time_in_turns(&mut trainers, &data, warmup, rounds, inner).unwrap();
        assert_eq!(samples.len(), 2);
        for (trainer, times) in trainers.iter().zip(&samples) {
            assert_eq!(times.len(), rounds);
            assert!(times.iter().all(|t| *t > Duration::ZERO));
            // Warm-up, then per round one untimed step and `inner` timed ones.
            let steps = warmup + rounds * (1 + inner);
            assert_eq!(trainer.steps(), steps as u64);
        }
        assert!(time_in_turns(&mut trainers, &data, 0, 0, 1).is_err());
        assert!(time_in_turns(&mut trainers, &data, 0, 1, 0).is_err());
        let short = StepShape { batch: 2, ..shape }.data(1, 1).unwrap();
        assert!(time_in_turns(&mut trainers, &short, 0, 1, 1).is_err());
    }

    #[test]
    fn ratios_are_taken_round_by_round() {
        let ms = |v: &[u64]| {
            v.iter()
                .map(|&m| Duration::from_millis(m))
                .collect::<Vec<_>>()
        };
        // The machine halves its speed in round 2: each round's ratio is still 2.
        assert_eq!(
            median_ratio(&ms(&[20, 40, 20]), &ms(&[10, 20, 10])),
            Some(2.0)
        );
        // Ratios 1, 3, 4, 5: the median of an even count is the mean of the middle two.
        let even = median_ratio(&ms(&[10, 30, 40, 50]), &ms(&[10, 10, 10, 10]));
        assert_eq!(even, Some(3.5));
        assert_eq!(median_ratio(&[], &[]), None);
        assert_eq!(median_ratio(&ms(&[1]), &ms(&[0])), None);
    }

    #[test]
    fn bad_shapes_and_short_data_are_errors() {
        let zero = StepShape {
            width: 0,
            depth: 2,
            batch: 4,
        };
        assert!(zero.network(1).is_err());
        let shape = StepShape {
            width: 8,
            depth: 1,
            batch: 4,
        };
        let mut t = shape.trainer(Rule::Backprop, Device::Cpu).unwrap();
        let short = StepShape { batch: 2, ..shape }.data(1, 1).unwrap();
        assert!(time_steps(&mut t, &short, 0, 1, 1).is_err());
        assert!(time_steps(&mut t, &shape.data(1, 1).unwrap(), 0, 0, 1).is_err());
    }
}
