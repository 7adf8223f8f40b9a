//! What `benches/gemm.rs` and `benches/step.rs` share: which backends they run on,
//! criterion's settings, the CPU memory budget, and skipping a benchmark that cannot
//! run on this machine.
//!
//! Environment:
//!
//! - `PLASTICITY_BENCH_GPU`: unset or empty runs the GPU benchmarks only when wgpu
//!   finds a hardware adapter; `1` (or `true`, `yes`, `on`) runs them on the best
//!   adapter there is, software ones (lavapipe, llvmpipe, WARP) included; `0` (or
//!   `false`, `no`, `off`) runs the CPU only.
//! - `PLASTICITY_BENCH_MEM_GIB`: the CPU memory budget in GiB (default: half of
//!   `MemAvailable` in `/proc/meminfo`, or 4 GiB where that cannot be read).

// Each bench target uses only part of this module.
#![allow(dead_code)]

use std::fmt::Display;
use std::panic::{self, AssertUnwindSafe};
use std::time::Duration;

use criterion::Criterion;
use plasticity::backend::gpu;
use plasticity::Device;

/// Environment variable that forces (`1`) or disables (`0`) the GPU benchmarks.
pub const GPU_ENV: &str = "PLASTICITY_BENCH_GPU";

/// Environment variable that overrides the CPU memory budget, in GiB.
pub const MEM_ENV: &str = "PLASTICITY_BENCH_MEM_GIB";

/// A backend to benchmark: its name in benchmark ids and the device that opens it.
#[derive(Debug, Clone, Copy)]
pub struct Target {
    /// `cpu` or `gpu`, the second part of every benchmark id.
    pub name: &'static str,
    /// The device whose backend runs the benchmarks.
    pub device: Device,
}

/// Criterion's settings for these benchmarks, which time operations of up to seconds:
/// 10 samples, 1 s of warm-up and 3 s of measurement, no plots. Criterion's own flags
/// (`--sample-size`, `--warm-up-time`, `--measurement-time`, `--quick`) override them.
pub fn criterion() -> Criterion {
    Criterion::default()
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .without_plots()
}

/// The backends to benchmark: the CPU always, the GPU as [`GPU_ENV`] and the adapters
/// found decide. Says on stderr which run and, when the GPU does not, why.
pub fn targets() -> Vec<Target> {
    let cpu = Target {
        name: "cpu",
        device: Device::Cpu,
    };
    let gpu = Target {
        name: "gpu",
        device: Device::Gpu,
    };
    let setting = std::env::var(GPU_ENV).unwrap_or_default();
    let force = match setting.trim().to_ascii_lowercase().as_str() {
        "" => false,
        "1" | "true" | "yes" | "on" => true,
        "0" | "false" | "no" | "off" => {
            eprintln!("benchmark backends: cpu (gpu skipped: {GPU_ENV}={setting})");
            return vec![cpu];
        }
        _ => {
            eprintln!("{GPU_ENV}={setting:?} is not 0 or 1; treating it as unset");
            false
        }
    };
    // Best first: the one `Device::Gpu` opens.
    let skipped = match gpu::adapters().first() {
        None => "wgpu finds no adapter".to_string(),
        Some(best) if best.hardware || force => {
            let kind = if best.hardware {
                "hardware"
            } else {
                "software"
            };
            let why = if force && !best.hardware {
                format!(", forced by {GPU_ENV}=1")
            } else {
                String::new()
            };
            eprintln!(
                "benchmark backends: cpu, gpu ({} via {}, {kind}{why})",
                best.name, best.backend
            );
            return vec![cpu, gpu];
        }
        Some(best) => format!(
            "the only adapters are software ones, best {} via {}; set {GPU_ENV}=1 to \
             run on it anyway",
            best.name, best.backend
        ),
    };
    eprintln!("benchmark backends: cpu (gpu skipped: {skipped})");
    vec![cpu]
}

/// Bytes a CPU benchmark may keep: [`MEM_ENV`] GiB when set, else half of the
/// memory available (`MemAvailable` in `/proc/meminfo`, else an assumed 8 GiB).
pub fn cpu_budget_bytes() -> u64 {
    const GIB: f64 = (1u64 << 30) as f64;
    if let Some(gib) = std::env::var(MEM_ENV)
        .ok()
        .and_then(|v| v.trim().parse::<f64>().ok())
        .filter(|g| *g >= 0.0)
    {
        return (gib * GIB) as u64;
    }
    plasticity::bench::available_memory().unwrap_or(8 << 30) / 2
}

/// Formats bytes for messages, in MiB below a GiB.
pub fn human_bytes(bytes: u64) -> String {
    let mib = bytes as f64 / (1u64 << 20) as f64;
    if mib < 1024.0 {
        format!("{mib:.1} MiB")
    } else {
        format!("{:.1} GiB", mib / 1024.0)
    }
}

/// The payload [`skip`] unwinds with.
struct Skipped;

/// Abandons the benchmark `id` (which cannot run here: too big, no adapter) with a
/// note on stderr. Criterion cannot skip a benchmark once it has started it, so this
/// unwinds, without the panic message, to the enclosing [`skippable`]; call it from
/// inside a benchmark closure only, before any measurement.
pub fn skip(id: &str, reason: impl Display) -> ! {
    eprintln!("\nskipping {id}: {reason}");
    panic::resume_unwind(Box::new(Skipped))
}

/// Registers (and, when criterion's filter selects it, runs) a benchmark in `f`,
/// which [`skip`] may abandon; any other panic goes on.
pub fn skippable(f: impl FnOnce()) {
    if let Err(payload) = panic::catch_unwind(AssertUnwindSafe(f)) {
        if !payload.is::<Skipped>() {
            panic::resume_unwind(payload);
        }
    }
}
