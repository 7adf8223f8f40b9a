//! Criterion benchmarks of one training step ([`Trainer::train_batch`]) per rule
//! (backprop `bp`, feedback alignment `fa`, direct feedback alignment `dfa`) over a
//! grid of networks: widths 256, 1024, 4096; depths 2, 4, 8, 16; batches 32, 128,
//! 512 (36 shapes, see [`StepShape`]: `width` inputs, `depth` tanh layers of `width`
//! units, 10 outputs, plain SGD), on each available backend. Ids read
//! `step/<backend>/w<width>/d<depth>/b<batch>/<rule>`, e.g. `step/cpu/w1024/d8/b128/dfa`.
//!
//! Throughput is in training samples per second (criterion's "elements": `batch` per
//! step). Each sample takes steps on consecutive batches of four batches of random
//! data and ends when the device has finished them ([`Trainer::synchronize`]), so GPU
//! times are real, not just recording.
//!
//! ```text
//! cargo bench --bench step -- 'step/cpu/w1024/d8/'
//! cargo bench --bench step -- 'step/cpu/w256/d2/b32/'
//! PLASTICITY_BENCH_GPU=1 cargo bench --bench step -- 'step/gpu/w256/.*/dfa'
//! cargo bench --bench step -- --list
//! ```
//!
//! The whole grid takes hours on a small CPU (the largest step, width 4096 and depth
//! 16 at batch 512, is about 0.8 TFLOP of GEMM): pick benchmarks with criterion's
//! filter (a regex on the id). Trainers are only built for benchmarks the filter
//! selects, so `--list` and filtered runs cost nothing for the rest. `cargo test
//! --benches` runs every selected benchmark once: filter that too.
//!
//! The CPU always runs; the GPU when wgpu finds a hardware adapter, or on any adapter
//! (lavapipe too) with `PLASTICITY_BENCH_GPU=1` (see `benches/common/mod.rs`). A CPU
//! shape whose [`StepShape::device_bytes`] exceed the memory budget (half the
//! available memory, or `PLASTICITY_BENCH_MEM_GIB`) is skipped with a note, and so is
//! any shape whose trainer cannot be built (on a GPU: a buffer over the device's
//! limits, out of memory).

mod common;

use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion, SamplingMode, Throughput};
use plasticity::bench::{BatchCycle, StepShape};
use plasticity::data::Dataset;
use plasticity::{Device, Rule, Trainer};

/// Hidden-layer widths (and inputs).
const WIDTHS: [usize; 3] = [256, 1024, 4096];

/// Hidden layers.
const DEPTHS: [usize; 4] = [2, 4, 8, 16];

/// Samples per step.
const BATCHES: [usize; 3] = [32, 128, 512];

/// The rules compared.
const RULES: [Rule; 3] = [
    Rule::Backprop,
    Rule::FeedbackAlignment,
    Rule::DirectFeedbackAlignment,
];

/// Distinct batches of random data the timed steps cycle through.
const DATA_BATCHES: usize = 4;

/// Seed of the random data.
const DATA_SEED: u64 = 7;

/// A trainer ready to time, with its data.
struct Steps {
    trainer: Trainer,
    data: Dataset,
    cycle: BatchCycle,
}

impl Steps {
    /// Builds the trainer for benchmark `id`, or skips the benchmark (see
    /// [`common::skip`]) when it does not fit in `cpu_budget` on the CPU or cannot be
    /// built.
    fn new(id: &str, shape: StepShape, rule: Rule, device: Device, cpu_budget: u64) -> Steps {
        let bytes = shape.device_bytes();
        if device == Device::Cpu && bytes > cpu_budget {
            common::skip(
                id,
                format!(
                    "needs {} of memory, over the CPU budget of {} (set {})",
                    common::human_bytes(bytes),
                    common::human_bytes(cpu_budget),
                    common::MEM_ENV
                ),
            );
        }
        let trainer = shape
            .trainer(rule, device)
            .unwrap_or_else(|e| common::skip(id, format!("cannot build the trainer: {e}")));
        let data = shape.data(DATA_BATCHES, DATA_SEED).expect("benchmark data");
        let cycle = BatchCycle::new(shape.batch, data.len());
        Steps {
            trainer,
            data,
            cycle,
        }
    }

    /// Wall time of `iters` steps, up to the device finishing them.
    fn time(&mut self, iters: u64) -> Duration {
        let start = Instant::now();
        for _ in 0..iters {
            self.cycle
                .step(&mut self.trainer, &self.data)
                .expect("training step failed");
        }
        self.trainer.synchronize().expect("synchronize failed");
        start.elapsed()
    }
}

fn bench_step(c: &mut Criterion) {
    let cpu_budget = common::cpu_budget_bytes();
    let mut group = c.benchmark_group("step");
    // Steps take up to seconds: equal iteration counts per sample, not a linear ramp.
    group.sampling_mode(SamplingMode::Flat);
    for target in common::targets() {
        for width in WIDTHS {
            for depth in DEPTHS {
                for batch in BATCHES {
                    let shape = StepShape {
                        width,
                        depth,
                        batch,
                    };
                    group.throughput(Throughput::Elements(batch as u64));
                    for rule in RULES {
                        let name =
                            format!("{}/w{width}/d{depth}/b{batch}/{}", target.name, rule.name());
                        let id = format!("step/{name}");
                        // Built on the first call, which criterion makes only when
                        // its filter selects this benchmark; dropped after it.
                        let mut steps: Option<Steps> = None;
                        common::skippable(|| {
                            group.bench_function(&name, |b| {
                                let steps = steps.get_or_insert_with(|| {
                                    Steps::new(&id, shape, rule, target.device, cpu_budget)
                                });
                                b.iter_custom(|iters| steps.time(iters));
                            });
                        });
                    }
                }
            }
        }
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = common::criterion();
    targets = bench_step
}
criterion_main!(benches);
