//! Helpers for the GPU tests: a backend or a loud skip, seeded networks, a CPU-vs-GPU
//! comparison with the tolerance the parity tests state.

use plasticity::backend::GpuBackend;
use plasticity::{Activation, Network};

/// A GPU backend, or `None` (after saying so loudly) when this machine has no adapter.
pub fn gpu() -> Option<GpuBackend> {
    match GpuBackend::new() {
        Ok(b) => Some(b),
        Err(e) if std::env::var("PLASTICITY_REQUIRE_GPU").as_deref() == Ok("1") => {
            panic!("PLASTICITY_REQUIRE_GPU=1 but no GPU backend: {e}")
        }
        Err(e) => {
            eprintln!("SKIPPED: no GPU adapter ({e}); set PLASTICITY_REQUIRE_GPU=1 to fail");
            None
        }
    }
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
