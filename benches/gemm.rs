//! Criterion benchmarks of one backend GEMM, `C = op(A) op(B)` ([`Backend::gemm`]),
//! for every transpose variant (`nn`, `tn`, `nt`, `tt`: `t` transposes `A`, then `B`)
//! on square `n x n` matrices, `n` in 256, 1024, 2048, 4096, on each available
//! backend. Ids read `gemm/<backend>/<variant>/<n>`, e.g. `gemm/cpu/nt/1024`.
//!
//! Throughput is in criterion's "elements" per second, where one element is one
//! floating-point operation (`2 n^3` per GEMM): `Gelem/s` reads as GFLOP/s.
//!
//! Each sample records its GEMMs on the backend (flushing every
//! [`FLUSH_EVERY`]) and ends when the device has finished them
//! ([`Backend::synchronize`]), so GPU times are real, not just recording.
//!
//! ```text
//! cargo bench --bench gemm -- 'gemm/cpu/nt/1024'
//! cargo bench --bench gemm -- 'gemm/cpu/../256' --quick
//! PLASTICITY_BENCH_GPU=1 cargo bench --bench gemm -- gpu
//! cargo bench --bench gemm -- --list
//! ```
//!
//! The CPU always runs; the GPU when wgpu finds a hardware adapter, or on any adapter
//! (lavapipe too) with `PLASTICITY_BENCH_GPU=1` (see `benches/common/mod.rs`). The
//! full set takes a long while on a small CPU (a 4096 GEMM is about a second on two
//! cores): pick benchmarks with criterion's filter (a regex on the id). Buffers and
//! the GPU device are only made for benchmarks the filter selects.

mod common;

use std::cell::RefCell;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use plasticity::backend::{Backend, BufId, Gemm, Mat};
use plasticity::Device;

/// Matrix sizes `n` (all three matrices `n x n`).
const SIZES: [usize; 4] = [256, 1024, 2048, 4096];

/// Transpose variants: name, transpose `A`, transpose `B`.
const VARIANTS: [(&str, bool, bool); 4] = [
    ("nn", false, false),
    ("tn", true, false),
    ("nt", false, true),
    ("tt", true, true),
];

/// GEMMs recorded per submit on backends that record (the CPU runs each at once).
const FLUSH_EVERY: u64 = 32;

/// One backend, opened on first use, and its `A`, `B`, `C` buffers per size.
struct LazyBackend {
    device: Device,
    backend: Option<Result<Box<dyn Backend>, String>>,
    buffers: Vec<(usize, [BufId; 3])>,
}

impl LazyBackend {
    fn new(device: Device) -> Self {
        LazyBackend {
            device,
            backend: None,
            buffers: Vec::new(),
        }
    }

    /// The backend and the `n x n` product in the given variant, allocating and
    /// filling the matrices the first time `n` is asked for.
    fn gemm(
        &mut self,
        n: usize,
        trans_a: bool,
        trans_b: bool,
    ) -> Result<(&mut dyn Backend, Gemm), String> {
        let device = self.device;
        let backend = self
            .backend
            .get_or_insert_with(|| {
                device
                    .backend()
                    .map_err(|e| format!("cannot open the {device} backend: {e}"))
            })
            .as_mut()
            .map_err(|e| e.clone())?;
        let bufs = match self.buffers.iter().find(|(size, _)| *size == n) {
            Some(&(_, bufs)) => bufs,
            None => {
                let bufs = alloc_matrices(&mut **backend, n).map_err(|e| e.to_string())?;
                self.buffers.push((n, bufs));
                bufs
            }
        };
        let [a, b, c] = bufs.map(|buf| Mat::new(buf, 0, n, n));
        Ok((&mut **backend, Gemm::new(c, a, trans_a, b, trans_b)))
    }
}

/// Three `n x n` buffers, `A` and `B` filled with small non-zero values.
fn alloc_matrices(backend: &mut dyn Backend, n: usize) -> plasticity::Result<[BufId; 3]> {
    let bufs = [
        backend.alloc(n * n)?,
        backend.alloc(n * n)?,
        backend.alloc(n * n)?,
    ];
    for (i, &buf) in bufs[..2].iter().enumerate() {
        let values: Vec<f32> = (0..n * n)
            .map(|j| ((j * (i + 3)) % 17) as f32 / 17.0 - 0.5)
            .collect();
        backend.write(buf, 0, &values)?;
    }
    backend.synchronize()?;
    Ok(bufs)
}

/// Wall time of `iters` GEMMs, up to the device finishing them.
fn time_gemms(backend: &mut dyn Backend, op: &Gemm, iters: u64) -> Duration {
    let start = Instant::now();
    for i in 1..=iters {
        backend.gemm(op).expect("gemm failed");
        if i % FLUSH_EVERY == 0 {
            backend.flush().expect("flush failed");
        }
    }
    backend.synchronize().expect("synchronize failed");
    start.elapsed()
}

fn bench_gemm(c: &mut Criterion) {
    let mut group = c.benchmark_group("gemm");
    for target in common::targets() {
        let lazy = RefCell::new(LazyBackend::new(target.device));
        for n in SIZES {
            let flops = 2 * (n as u64).pow(3);
            for (variant, trans_a, trans_b) in VARIANTS {
                let name = format!("{}/{variant}/{n}", target.name);
                let id = format!("gemm/{name}");
                group.throughput(Throughput::Elements(flops));
                common::skippable(|| {
                    group.bench_function(&name, |b| {
                        let mut lazy = lazy.borrow_mut();
                        let (backend, op) = lazy
                            .gemm(n, trans_a, trans_b)
                            .unwrap_or_else(|e| common::skip(&id, e));
                        b.iter_custom(|iters| time_gemms(backend, &op, iters));
                    });
                });
            }
        }
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = common::criterion();
    targets = bench_gemm
}
criterion_main!(benches);
