//! Helpers for the GPU tests: a backend or a loud skip, seeded networks, a CPU-vs-GPU
//! comparison with the tolerance the parity tests state.

use plasticity::backend::{CpuBackend, GpuBackend};
use plasticity::data::Dataset;
use plasticity::{Activation, Loss, Network, Optimizer, Rule, TrainConfig, Trainer};

/// A GPU backend, or `None` (after saying so loudly) when this machine has no adapter.
/// The first backend of a test binary names its adapter on the terminal, so a log
/// shows what the GPU tests ran on (lavapipe, llvmpipe through OpenGL, hardware).
pub fn gpu() -> Option<GpuBackend> {
    match GpuBackend::new() {
        Ok(b) => {
            static NAMED: std::sync::Once = std::sync::Once::new();
            NAMED.call_once(|| {
                use plasticity::backend::Backend;
                terminal(&format!(
                    "note: GPU tests in {} run on {}",
                    binary(),
                    b.name()
                ));
            });
            Some(b)
        }
        Err(e) => {
            skip(&e);
            None
        }
    }
}

/// Records that a GPU test found no adapter: a failure under
/// `PLASTICITY_REQUIRE_GPU=1`, else a skip that shows in plain `cargo test` output.
///
/// libtest captures `eprintln!` (and `print!`) of a passing test, so a per-test
/// "SKIPPED" line shows only with `--nocapture` while the test reads `ok`. A write to
/// the stderr handle itself is not captured: the first skip of a test binary writes one
/// warning there, naming the binary and why.
pub fn skip(why: &dyn std::fmt::Display) {
    if std::env::var("PLASTICITY_REQUIRE_GPU").as_deref() == Ok("1") {
        panic!("PLASTICITY_REQUIRE_GPU=1 but {why}");
    }
    eprintln!("SKIPPED: {why}; set PLASTICITY_REQUIRE_GPU=1 to fail");
    static WARNED: std::sync::Once = std::sync::Once::new();
    WARNED.call_once(|| {
        terminal(&format!(
            "warning: GPU tests SKIPPED in {}: {why}.\n         \
             They report `ok` but check nothing on the GPU. Install a driver (Debian: \
             mesa-vulkan-drivers) or set PLASTICITY_REQUIRE_GPU=1 to make this a failure.",
            binary()
        ));
    });
}

/// The test binary's name (cargo names them `NAME-HASH`).
fn binary() -> String {
    let exe = std::env::args().next().unwrap_or_default();
    let stem = std::path::Path::new(&exe)
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    stem.rsplit_once('-')
        .map_or(stem.clone(), |(name, _)| name.to_string())
}

/// Writes `line` to the stderr handle itself, which libtest does not capture (it
/// captures `eprintln!`), on a line of its own.
fn terminal(line: &str) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr(), "\n{line}\n");
}

/// Asserts `|g - c| <= 2e-6 + 1e-5 |c|`; returns the largest `|g - c|`.
pub fn assert_close(c: &[f32], g: &[f32], what: &str) -> f32 {
    assert_eq!(c.len(), g.len(), "{what}: lengths");
    let mut worst = 0.0f32;
    for (i, (&c, &g)) in c.iter().zip(g).enumerate() {
        let diff = (c - g).abs();
        assert!(
            diff <= 2e-6 + 1e-5 * c.abs(),
            "{what}: element {i}: cpu {c} gpu {g}"
        );
        worst = worst.max(diff);
    }
    worst
}

/// `inputs - hidden... - outputs` with identity outputs and the parity tests' seed (11).
pub fn seeded_net(
    inputs: usize,
    hidden: &[usize],
    activation: Activation,
    outputs: usize,
) -> Network {
    Network::builder(inputs)
        .hidden(hidden, activation)
        .dense(outputs, Activation::Identity)
        .seed(11)
        .build()
        .unwrap()
}

/// A training configuration whose CPU and GPU steps are compared.
pub struct Case {
    pub rule: Rule,
    pub hidden: &'static [usize],
    pub activation: Activation,
    pub loss: Loss,
    pub optimizer: Optimizer,
}

impl Case {
    /// The case's seeded net (see [`seeded_net`]).
    pub fn net(&self, inputs: usize, outputs: usize) -> Network {
        seeded_net(inputs, self.hidden, self.activation, outputs)
    }

    /// Rule, widths, activation and loss, for messages.
    pub fn name(&self) -> String {
        format!(
            "{} {:?} {} {}",
            self.rule, self.hidden, self.activation, self.loss
        )
    }
}

/// Both trainers after [`step_parity`], for the checks a test adds.
pub struct Parity {
    pub cpu: Trainer,
    pub gpu: Trainer,
    /// The parameters both started from.
    pub start: Network,
    /// Largest `|gpu - cpu|` of the first update direction.
    pub worst_direction: f32,
    /// Largest `|gpu - cpu|` of the parameters after the steps.
    pub worst_params: f32,
    /// GPU dispatches per training step.
    pub dispatches_per_step: f64,
}

/// Trains `case`'s net from the same start on the CPU and on `gpu` with batches of
/// `batch` samples of `data` (70 samples), and asserts, within [`assert_close`]'s
/// tolerance: the first update direction and every feedback matrix agree; after 6
/// steps (the last on a batch of 7, exercising the packing for other sizes), taken
/// with one submit each on the GPU, the parameters agree.
pub fn step_parity(case: &Case, gpu: GpuBackend, data: &Dataset, batch: usize) -> Parity {
    let start = case.net(data.dim(), data.classes());
    step_parity_from(case, &case.name(), start, gpu, data, batch)
}

/// [`step_parity`] from the network `start` (any layers: conv nets too) instead of
/// `case`'s MLP, whose widths and activation it ignores; `what` names it in messages.
pub fn step_parity_from(
    case: &Case,
    what: &str,
    start: Network,
    gpu: GpuBackend,
    data: &Dataset,
    batch: usize,
) -> Parity {
    let counters = gpu.counters();
    let config = TrainConfig {
        rule: case.rule,
        optimizer: case.optimizer,
        loss: case.loss,
        batch_size: batch,
        ..Default::default()
    };
    let mut cpu_t =
        Trainer::with_backend(start.clone(), config, Box::new(CpuBackend::new())).unwrap();
    let mut gpu_t = Trainer::with_backend(start.clone(), config, Box::new(gpu)).unwrap();

    let first: Vec<usize> = (0..batch).collect();
    let dc = cpu_t.update_direction(data, &first).unwrap();
    let dg = gpu_t.update_direction(data, &first).unwrap();
    let worst_direction = assert_close(&dc, &dg, &format!("{what}: update direction"));
    for i in 0..cpu_t.feedback_shapes().len() {
        let (fc, fg) = (cpu_t.feedback(i).unwrap(), gpu_t.feedback(i).unwrap());
        assert_close(&fc, &fg, &format!("{what}: feedback {i}"));
    }

    let (d0, s0) = (counters.dispatches(), counters.submits());
    let steps = 6;
    for step in 0..steps {
        let size = if step == steps - 1 { 7 } else { batch };
        let indices: Vec<usize> = (0..size).map(|i| (step * 11 + i * 3) % 70).collect();
        cpu_t.train_batch(data, &indices).unwrap();
        gpu_t.train_batch(data, &indices).unwrap();
    }
    let dispatches_per_step = (counters.dispatches() - d0) as f64 / steps as f64;
    assert_eq!(
        counters.submits() - s0,
        steps as u64,
        "{what}: one submit per step"
    );
    let pc = cpu_t.network().unwrap();
    let pg = gpu_t.network().unwrap();
    let worst_params = assert_close(pc.params(), pg.params(), &format!("{what}: params"));
    Parity {
        cpu: cpu_t,
        gpu: gpu_t,
        start,
        worst_direction,
        worst_params,
        dispatches_per_step,
    }
}

/// Builds the same run on the CPU and on `gpu` with `make`, checks the GPU records its
/// first step (on the first `batch` samples of `data`) as ONE submit, trains both
/// `epochs` more epochs, and asserts their parameters agree within
/// [`super::assert_trained_close`]'s tolerance. Returns `(cpu, gpu)`.
pub fn assert_gpu_run_matches_cpu(
    make: impl Fn(Box<dyn plasticity::backend::Backend>) -> plasticity::Trainer,
    gpu: GpuBackend,
    data: &Dataset,
    batch: usize,
    epochs: usize,
) -> (plasticity::Trainer, plasticity::Trainer) {
    let counters = gpu.counters();
    let mut on_cpu = make(Box::new(plasticity::backend::CpuBackend::new()));
    let mut on_gpu = make(Box::new(gpu));
    let first: Vec<usize> = (0..batch).collect();
    let submits = counters.submits();
    on_gpu.train_batch(data, &first).unwrap();
    assert_eq!(
        counters.submits() - submits,
        1,
        "a whole step is one submit"
    );
    on_cpu.train_batch(data, &first).unwrap();
    for _ in 0..epochs {
        on_cpu.train_epoch(data, |_, _| {}).unwrap();
        on_gpu.train_epoch(data, |_, _| {}).unwrap();
    }
    let (c, g) = (on_cpu.network().unwrap(), on_gpu.network().unwrap());
    super::assert_trained_close(c.params(), g.params(), "parameter");
    (on_cpu, on_gpu)
}
