//! AVX upper-state hygiene for the CPU backend.
//!
//! faer's GEMM kernels run in AVX-512/AVX2 and can return with the upper halves of the
//! vector registers still dirty. The rest of the crate is compiled for baseline x86-64
//! (SSE encodings), and on Intel cores every SSE instruction executed with a dirty
//! upper state pays a transition penalty. Measured on this project's 2-core Xeon: a
//! DDTP step at batch 64 spent 70% of its time in the scalar noise loop and ran 6x
//! slower than the same work at batch 128, and 9x faster when the crate was compiled
//! with VEX encodings (`-C target-feature=+avx2,+fma`). Zeroing the upper state after
//! every product (`vzeroupper`, which the compiler emits on leaving a function that
//! touched wide registers) removes it without any `unsafe` here, on the calling thread.
//! A parallel product also dirties the worker threads, so a pass whose chunks run there
//! next is compiled for AVX2 through [`wide`] (VEX encodings pay no penalty): the noise
//! draw ran 8x slower inside weight-mirror training than alone until it was.

use pulp::{Simd, WithSimd};

/// A wide operation the compiler must keep, so the vectorised wrapper it runs in ends
/// with `vzeroupper`.
struct TouchWide;

impl WithSimd for TouchWide {
    type Output = ();

    #[inline(always)]
    fn with_simd<S: Simd>(self, simd: S) {
        std::hint::black_box(simd.splat_f32s(0.0));
    }
}

/// Leaves the calling thread's vector registers with a clean upper state (a no-op
/// without AVX). The wide operation is 256-bit (AVX2) on purpose: a 512-bit one can
/// lower the core's clock on some Intel parts, which measured as a slower DFA step.
#[cfg(target_arch = "x86_64")]
#[inline]
pub(crate) fn clear_upper() {
    if let Some(avx2) = pulp::x86::V3::try_new() {
        Simd::vectorize(avx2, TouchWide);
    }
}

/// Elsewhere there is no AVX state to clear.
#[cfg(not(target_arch = "x86_64"))]
#[inline]
pub(crate) fn clear_upper() {}

/// Runs `op` compiled for AVX2 (8 lanes, against baseline x86-64's 4) when the CPU has
/// it, else for the baseline: for elementwise loops the compiler vectorises, written out
/// in the op's `with_simd` (a closure called from there would be compiled for the
/// baseline). The same operations lane for lane (Rust never fuses a multiply and an add
/// on its own), so the values are the same either way. 256-bit on purpose, like
/// [`clear_upper`]; the wrapper leaves a clean upper state.
#[inline(always)]
pub(crate) fn wide<Op: WithSimd>(op: Op) -> Op::Output {
    #[cfg(target_arch = "x86_64")]
    if let Some(avx2) = pulp::x86::V3::try_new() {
        return Simd::vectorize(avx2, op);
    }
    op.with_simd(pulp::Scalar::new())
}

/// [`wide`] at AVX-512 (16 lanes) when the CPU has it (pulp's x86-v4 level): for loops
/// that compute far more than they move, where the wider lanes pay. The noise draw ran
/// 1.2-1.5x (uniform) and 1.5-1.6x (normal) faster so than through [`wide`], and brSF's
/// step (a fresh draw of every feedback magnitude) 3.6-5.0% faster; the forward pass's
/// `tanh` 1.3x faster (see `cpu::epilogue`); the sign feedback's compare of a
/// 1024x1024 layer 0.38 against 0.41 ms. Alternating runs on the 2-core Xeon
/// measured, where faer's own kernels run at AVX-512 already. The same operations lane
/// for lane, so the same values.
#[inline(always)]
pub(crate) fn widest<Op: WithSimd>(op: Op) -> Op::Output {
    #[cfg(target_arch = "x86_64")]
    if let Some(avx512) = pulp::x86::V4::try_new() {
        return Simd::vectorize(avx512, op);
    }
    wide(op)
}
