//! Recording the operations of a step and the dependencies between them.
//!
//! [`TracingBackend`] wraps another backend (or none: a dry run that only records)
//! and notes every compute operation with the regions it reads and writes. From
//! that, [`Trace::summary`] finds the **critical path**: the longest chain of
//! operations each of which must wait for an earlier one (it reads what that one
//! wrote, or writes what that one read or wrote). On a GPU each operation is one
//! dispatch, so the critical path is the number of dispatches a step must issue one
//! after another however wide the device is; it is where DFA's parallelism shows:
//! backprop's is `2L + 2` for `L` layers, DFA's `L + 4`.
//!
//! ```
//! use plasticity::backend::TracingBackend;
//! use plasticity::{Activation, Network, Rule, TrainConfig, Trainer};
//!
//! let net = Network::builder(32).hidden(&[32; 8], Activation::Tanh)
//!     .dense(10, Activation::Identity).build()?;
//! let mut depth = Vec::new();
//! for rule in [Rule::Backprop, Rule::DirectFeedbackAlignment] {
//!     let tracer = TracingBackend::dry();
//!     let trace = tracer.trace();
//!     let config = TrainConfig { rule, batch_size: 16, ..Default::default() };
//!     let mut trainer = Trainer::with_backend(net.clone(), config, Box::new(tracer))?;
//!     trace.clear();
//!     trainer.train_step(&vec![0.0; 32 * 16], &[0; 16])?;
//!     depth.push(trace.summary().critical_path);
//! }
//! assert_eq!(depth, [2 * 9 + 2, 9 + 4]);
//! # Ok::<(), plasticity::Error>(())
//! ```

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use super::{
    check_bias, check_same_shape, check_sign_feedback, regions, Axpby, Backend, BufId, ColumnOp,
    Epilogue, Gemm, Im2Col, LayerGrad, LossGrad, Mat, Noise, OptimizerPass, Pool, PoolMode,
};
use crate::activation::Activation;
use crate::error::Result;

/// What a traced operation was.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpKind {
    /// [`Backend::fill`].
    Fill,
    /// [`Backend::gemm`].
    Gemm,
    /// [`Backend::gemm_then`]: a product with fused elementwise work.
    FusedGemm,
    /// [`Backend::bias_activation`].
    BiasActivation,
    /// [`Backend::activation_grad`].
    ActivationGrad,
    /// [`Backend::sign_feedback`].
    SignFeedback,
    /// [`Backend::redrawn_sign_feedback`]: the draw and the feedback in one operation
    /// (two dispatches on a GPU, which runs the default).
    RedrawnSignFeedback,
    /// [`Backend::layer_grads`] over this many layers (one grouped operation).
    LayerGrads(usize),
    /// [`Backend::loss_grad`].
    LossGrad,
    /// [`Backend::optimizer_step`].
    OptimizerStep,
    /// [`Backend::clip_grad_norm`].
    ClipGradNorm,
    /// [`Backend::im2col`].
    Im2Col,
    /// [`Backend::col2im`].
    Col2Im,
    /// [`Backend::pool`].
    Pool,
    /// [`Backend::unpool`].
    Unpool,
    /// [`Backend::axpby`].
    Axpby,
    /// [`Backend::noise`].
    Noise,
    /// [`Backend::columns`].
    Columns,
}

/// One compute operation and the regions it touched.
#[derive(Debug, Clone, PartialEq)]
pub struct TracedOp {
    /// Which operation.
    pub kind: OpKind,
    /// Regions it read.
    pub reads: Vec<Mat>,
    /// Regions it wrote.
    pub writes: Vec<Mat>,
    /// Floating-point operations of its matrix products (0 for elementwise work).
    pub gemm_flops: u64,
    /// How long the wrapped backend took over the call; `None` in a dry run. On the
    /// CPU backend that is the work itself, except that the gradient products it holds
    /// back ([`Backend::layer_grads`]) run, and are timed, inside the optimizer pass
    /// that follows them. A GPU backend's calls only record work for the device, so
    /// their times say little of the work.
    pub elapsed: Option<Duration>,
}

impl TracedOp {
    /// Whether `later` must wait for `self`: read-after-write, write-after-write or
    /// write-after-read on overlapping regions.
    pub fn must_precede(&self, later: &TracedOp) -> bool {
        let hits = |xs: &[Mat], ys: &[Mat]| xs.iter().any(|x| ys.iter().any(|y| x.overlaps(y)));
        hits(&self.writes, &later.reads)
            || hits(&self.writes, &later.writes)
            || hits(&self.reads, &later.writes)
    }
}

/// Totals of a trace.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TraceSummary {
    /// Operations recorded (GPU dispatches, for the GPU backend).
    pub ops: usize,
    /// Length of the longest chain of dependent operations.
    pub critical_path: usize,
    /// Floating-point operations of all matrix products.
    pub gemm_flops: u64,
}

/// The operations recorded by a [`TracingBackend`], shared with its creator (the
/// backend itself usually moves into a [`Trainer`](crate::Trainer)).
#[derive(Debug, Clone, Default)]
pub struct Trace(Arc<Mutex<Vec<TracedOp>>>);

impl Trace {
    fn lock(&self) -> MutexGuard<'_, Vec<TracedOp>> {
        // A panic elsewhere cannot leave the list half-written: pushes are atomic.
        self.0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn push(&self, op: TracedOp) {
        self.lock().push(op);
    }

    /// Forgets everything recorded so far.
    pub fn clear(&self) {
        self.lock().clear();
    }

    /// A copy of the operations recorded so far, in issue order.
    pub fn ops(&self) -> Vec<TracedOp> {
        self.lock().clone()
    }

    /// Operation count, critical path and GEMM work of what was recorded.
    pub fn summary(&self) -> TraceSummary {
        let ops = self.lock();
        let mut depth = vec![0usize; ops.len()];
        for j in 0..ops.len() {
            let waits_for = (0..j)
                .filter(|&i| ops[i].must_precede(&ops[j]))
                .map(|i| depth[i])
                .max()
                .unwrap_or(0);
            depth[j] = waits_for + 1;
        }
        TraceSummary {
            ops: ops.len(),
            critical_path: depth.iter().copied().max().unwrap_or(0),
            gemm_flops: ops.iter().map(|op| op.gemm_flops).sum(),
        }
    }
}

/// A [`Backend`] that records every compute operation into a [`Trace`] and passes it
/// on to the backend it wraps, or, made with [`TracingBackend::dry`], runs nothing
/// (reads return zeros): a dry run costs nothing at any size.
pub struct TracingBackend {
    inner: Option<Box<dyn Backend>>,
    /// Buffer lengths of a dry run.
    dry_lens: Vec<usize>,
    trace: Trace,
}

impl std::fmt::Debug for TracingBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TracingBackend")
            .field("inner", &self.inner.as_ref().map(|b| b.name()))
            .finish()
    }
}

impl TracingBackend {
    /// Records the operations passed on to `inner`.
    pub fn new(inner: Box<dyn Backend>) -> Self {
        TracingBackend {
            inner: Some(inner),
            dry_lens: Vec::new(),
            trace: Trace::default(),
        }
    }

    /// Records operations without running them.
    pub fn dry() -> Self {
        TracingBackend {
            inner: None,
            dry_lens: Vec::new(),
            trace: Trace::default(),
        }
    }

    /// The shared record.
    pub fn trace(&self) -> Trace {
        self.trace.clone()
    }

    /// Records `op` and runs `run` on the wrapped backend, if any.
    fn record(
        &mut self,
        kind: OpKind,
        reads: Vec<Mat>,
        writes: Vec<Mat>,
        gemm_flops: u64,
        run: impl FnOnce(&mut dyn Backend) -> Result<()>,
    ) -> Result<()> {
        let elapsed = match self.inner.as_deref_mut() {
            Some(inner) => {
                let start = Instant::now();
                run(inner)?;
                Some(start.elapsed())
            }
            None => {
                self.check_dry(&reads, &writes)?;
                None
            }
        };
        self.trace.push(TracedOp {
            kind,
            reads,
            writes,
            gemm_flops,
            elapsed,
        });
        Ok(())
    }

    /// Bounds of a dry run's regions, checked as every backend checks them.
    fn check_dry(&self, reads: &[Mat], writes: &[Mat]) -> Result<()> {
        // Only the bounds: `reads` may repeat a written region (C of a GEMM with
        // beta != 0) to record the dependency.
        let all: Vec<Mat> = reads.iter().chain(writes).copied().collect();
        regions::validate(&[], &all, |id| self.dry_lens.get(id.0).copied())
    }
}

impl Backend for TracingBackend {
    fn name(&self) -> String {
        match &self.inner {
            Some(inner) => format!("{} (traced)", inner.name()),
            None => "dry run".into(),
        }
    }

    fn host_resident(&self) -> bool {
        self.inner.as_ref().is_none_or(|b| b.host_resident())
    }

    fn alloc(&mut self, len: usize) -> Result<BufId> {
        match self.inner.as_deref_mut() {
            Some(inner) => inner.alloc(len),
            None => {
                self.dry_lens.push(len);
                Ok(BufId(self.dry_lens.len() - 1))
            }
        }
    }

    fn write(&mut self, buf: BufId, offset: usize, data: &[f32]) -> Result<()> {
        match self.inner.as_deref_mut() {
            Some(inner) => inner.write(buf, offset, data),
            None => self.check_dry(&[Mat::new(buf, offset, data.len(), 1)], &[]),
        }
    }

    fn write_with(
        &mut self,
        buf: BufId,
        offset: usize,
        len: usize,
        fill: &mut dyn FnMut(&mut [f32]),
    ) -> Result<()> {
        match self.inner.as_deref_mut() {
            Some(inner) => inner.write_with(buf, offset, len, fill),
            None => self.check_dry(&[Mat::new(buf, offset, len, 1)], &[]),
        }
    }

    fn read(&mut self, buf: BufId, offset: usize, len: usize) -> Result<Vec<f32>> {
        match self.inner.as_deref_mut() {
            Some(inner) => inner.read(buf, offset, len),
            None => {
                self.check_dry(&[Mat::new(buf, offset, len, 1)], &[])?;
                Ok(vec![0.0; len])
            }
        }
    }

    fn fill(&mut self, m: Mat, value: f32) -> Result<()> {
        self.record(OpKind::Fill, vec![], vec![m], 0, |b| b.fill(m, value))
    }

    fn gemm(&mut self, op: &Gemm) -> Result<()> {
        op.check()?;
        let mut reads = vec![op.a, op.b];
        if op.beta != 0.0 {
            reads.push(op.c);
        }
        self.record(OpKind::Gemm, reads, vec![op.c], op.flops(), |b| b.gemm(op))
    }

    fn gemm_then(&mut self, op: &Gemm, then: Epilogue) -> Result<()> {
        op.check()?;
        then.check(op.c)?;
        let mut reads = vec![op.a, op.b, then.operand()];
        if op.beta != 0.0 {
            reads.push(op.c);
        }
        self.record(OpKind::FusedGemm, reads, vec![op.c], op.flops(), |b| {
            b.gemm_then(op, then)
        })
    }

    fn bias_activation(&mut self, z: Mat, bias: Mat, activation: Activation) -> Result<()> {
        check_bias(z, bias)?;
        self.record(OpKind::BiasActivation, vec![z, bias], vec![z], 0, |b| {
            b.bias_activation(z, bias, activation)
        })
    }

    fn activation_grad(&mut self, delta: Mat, h: Mat, activation: Activation) -> Result<()> {
        check_same_shape("activation_grad", delta, h)?;
        if activation == Activation::Identity {
            // f' = 1: nothing runs on any backend.
            return self
                .inner
                .as_deref_mut()
                .map_or(Ok(()), |b| b.activation_grad(delta, h, activation));
        }
        self.record(
            OpKind::ActivationGrad,
            vec![delta, h],
            vec![delta],
            0,
            |b| b.activation_grad(delta, h, activation),
        )
    }

    fn sign_feedback(
        &mut self,
        out: Mat,
        w: Mat,
        magnitude: Option<Mat>,
        scale: f32,
    ) -> Result<()> {
        let reads = check_sign_feedback(out, w, magnitude)?;
        self.record(OpKind::SignFeedback, reads, vec![out], 0, |b| {
            b.sign_feedback(out, w, magnitude, scale)
        })
    }

    fn redrawn_sign_feedback(&mut self, out: Mat, w: Mat, magnitudes: &Noise) -> Result<()> {
        magnitudes.check()?;
        // The magnitudes are written, then read for the feedback.
        let reads = check_sign_feedback(out, w, Some(magnitudes.out))?;
        let writes = vec![out, magnitudes.out];
        self.record(OpKind::RedrawnSignFeedback, reads, writes, 0, |b| {
            b.redrawn_sign_feedback(out, w, magnitudes)
        })
    }

    fn layer_grads(&mut self, layers: &[LayerGrad]) -> Result<()> {
        let mut flops = 0;
        for layer in layers {
            flops += layer.check()?.flops();
        }
        let reads = layers.iter().flat_map(|l| [l.delta, l.input]).collect();
        let writes = layers.iter().flat_map(|l| [l.grad_w, l.grad_b]).collect();
        self.record(
            OpKind::LayerGrads(layers.len()),
            reads,
            writes,
            flops,
            |b| b.layer_grads(layers),
        )
    }

    fn loss_grad(&mut self, op: &LossGrad) -> Result<()> {
        op.check()?;
        let reads = vec![op.output, op.target, op.stats];
        self.record(OpKind::LossGrad, reads, vec![op.grad, op.stats], 0, |b| {
            b.loss_grad(op)
        })
    }

    fn optimizer_step(&mut self, op: &OptimizerPass) -> Result<()> {
        op.check()?;
        let writes = vec![op.params, op.state[0], op.state[1]];
        self.record(OpKind::OptimizerStep, vec![op.grads], writes, 0, |b| {
            b.optimizer_step(op)
        })
    }

    fn clip_grad_norm(&mut self, grads: Mat, max_norm: f32, norm: Mat) -> Result<()> {
        self.record(OpKind::ClipGradNorm, vec![], vec![grads, norm], 0, |b| {
            b.clip_grad_norm(grads, max_norm, norm)
        })
    }

    fn im2col(&mut self, op: &Im2Col) -> Result<()> {
        op.check()?;
        self.record(OpKind::Im2Col, vec![op.image], vec![op.patches], 0, |b| {
            b.im2col(op)
        })
    }

    fn col2im(&mut self, op: &Im2Col) -> Result<()> {
        op.check()?;
        self.record(OpKind::Col2Im, vec![op.patches], vec![op.image], 0, |b| {
            b.col2im(op)
        })
    }

    fn pool(&mut self, op: &Pool) -> Result<()> {
        op.check()?;
        let (mut reads, mut writes) = (vec![op.input], vec![op.output]);
        match op.mode {
            PoolMode::Max => writes.push(op.argmax),
            PoolMode::MaxAt => reads.push(op.argmax),
            PoolMode::Avg => {}
        }
        self.record(OpKind::Pool, reads, writes, 0, |b| b.pool(op))
    }

    fn unpool(&mut self, op: &Pool) -> Result<()> {
        op.check()?;
        let reads = std::iter::once(op.output)
            .chain(op.argmax_reads())
            .collect();
        self.record(OpKind::Unpool, reads, vec![op.input], 0, |b| b.unpool(op))
    }

    fn axpby(&mut self, op: &Axpby) -> Result<()> {
        op.check()?;
        let mut reads = vec![op.x];
        if op.beta != 0.0 {
            reads.push(op.y);
        }
        self.record(OpKind::Axpby, reads, vec![op.y], 0, |b| b.axpby(op))
    }

    fn noise(&mut self, op: &Noise) -> Result<()> {
        op.check()?;
        let reads = if op.accumulate { vec![op.out] } else { vec![] };
        self.record(OpKind::Noise, reads, vec![op.out], 0, |b| b.noise(op))
    }

    fn columns(&mut self, op: &ColumnOp) -> Result<()> {
        op.check()?;
        let mut reads = vec![op.x];
        if op.reads_out() {
            reads.push(op.out);
        }
        self.record(OpKind::Columns, reads, vec![op.out], 0, |b| b.columns(op))
    }

    fn flush(&mut self) -> Result<()> {
        self.inner.as_deref_mut().map_or(Ok(()), |b| b.flush())
    }

    fn synchronize(&mut self) -> Result<()> {
        self.inner
            .as_deref_mut()
            .map_or(Ok(()), |b| b.synchronize())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::CpuBackend;

    #[test]
    fn independent_ops_share_a_level_dependent_ones_do_not() {
        let mut t = TracingBackend::new(Box::new(CpuBackend::new()));
        let trace = t.trace();
        let buf = t.alloc(64).unwrap();
        let a = Mat::new(buf, 0, 4, 4);
        let b = Mat::new(buf, 16, 4, 4);
        let c = Mat::new(buf, 32, 4, 4);
        let d = Mat::new(buf, 48, 4, 4);
        t.gemm(&Gemm::new(c, a, false, b, false)).unwrap();
        // Reads a and b only: independent of the first product.
        t.gemm(&Gemm::new(d, a, true, b, false)).unwrap();
        assert_eq!(trace.summary().critical_path, 1);
        // Overwrites what both read: waits for them.
        t.fill(a, 0.0).unwrap();
        // Reads what the fill wrote: waits for it.
        t.gemm(&Gemm::new(b, c, false, a, false)).unwrap();
        let s = trace.summary();
        assert_eq!((s.ops, s.critical_path), (4, 3));
        assert_eq!(s.gemm_flops, 3 * 2 * 64);
    }

    #[test]
    fn dry_runs_check_bounds() {
        let mut t = TracingBackend::dry();
        let buf = t.alloc(8).unwrap();
        assert!(t.fill(Mat::new(buf, 4, 2, 4), 1.0).is_err());
        assert!(t.read(buf, 0, 8).unwrap().iter().all(|&v| v == 0.0));
        assert!(t.trace().ops().is_empty());
    }

    #[test]
    fn calls_passed_on_are_timed_and_dry_ones_are_not() {
        for (mut t, timed) in [
            (TracingBackend::new(Box::new(CpuBackend::new())), true),
            (TracingBackend::dry(), false),
        ] {
            let buf = t.alloc(32).unwrap();
            let (a, c) = (Mat::new(buf, 0, 4, 4), Mat::new(buf, 16, 4, 4));
            t.fill(a, 1.0).unwrap();
            t.gemm(&Gemm::new(c, a, false, a, false)).unwrap();
            let ops = t.trace().ops();
            assert_eq!(ops.len(), 2);
            assert!(ops.iter().all(|op| op.elapsed.is_some() == timed));
        }
    }
}
