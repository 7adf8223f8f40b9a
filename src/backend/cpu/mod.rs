//! The CPU backend: host buffers, faer's GEMM, rayon across independent layers.

use faer::{Accum, MatRef, Par};
use rayon::prelude::*;

mod accumulate;
mod bands;
mod deferred;
mod epilogue;
mod feedback_signs;
mod loops;
mod transpose;
mod transposed;

pub(crate) use transpose::rows_into_columns;

use super::columns::ColumnOp;
use super::divergence::{self, Guard};
use super::elementwise::{Axpby, Noise};
use super::gather::{self, Gather};
use super::spatial::{self, Im2Col, Pool, PoolMode};
use super::{
    check_same_shape, check_sign_feedback, Backend, BufId, Epilogue, Gemm, LayerGrad, LossGrad,
    Mat, OptimizerPass,
};
use crate::activation::Activation;
use crate::error::{Error, Result};
use deferred::Deferred;
use epilogue::Then;
#[cfg(test)]
use epilogue::{ActivationGradChunk, BiasActivationRow};
use feedback_signs::SignFeedback;
use loops::{apply_update, row_sums, AxpbyChunk, ColumnPass, NoiseChunk, RedrawnSignFeedbackChunk};

/// Products smaller than this many multiply-adds run on one thread: splitting them
/// costs more in synchronisation than it saves.
const PARALLEL_GEMM_MIN_MACS: usize = 1 << 18;
/// Elementwise passes shorter than this run on one thread.
const PARALLEL_ELEMENTWISE_MIN: usize = 1 << 16;
/// Elements per parallel piece of an elementwise pass.
const CHUNK: usize = 1 << 14;
/// `C = Aᵀ B` products (BP's `Wᵀ δ`) with at least this many rows of `C` and this depth
/// run faster written column-major into scratch and transposed into place: faer then
/// packs the large transposed operand in its favour. Measured on a 2-core Xeon
/// (AVX-512), batch 32-512: 1.03-1.9x for 1024-4096 rows, slower below 1024 (0.7-0.98x at
/// 512-784 rows). Narrow products (a batch of a few samples) stay as they are.
const COLUMN_MAJOR_MIN_ROWS: usize = 1024;
const COLUMN_MAJOR_MIN_DEPTH: usize = 512;
const COLUMN_MAJOR_MIN_COLS: usize = 16;
/// Matrices from 512x512 up get transposed copies (see [`copy_of_a_pays`]).
const COPY_MIN_FLOATS: usize = 1 << 18;

/// How [`Backend::layer_grads`] spreads independent layers over the CPU's threads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LayerParallelism {
    /// One layer after another, each product using every thread.
    Sequential,
    /// Layers on separate threads, each product single-threaded (DFA's layer parallelism).
    AcrossLayers,
    /// Across layers when their work splits evenly over the threads (largest-first
    /// assignment within 15% of a perfect split), else sequential.
    #[default]
    Auto,
}

impl LayerParallelism {
    /// Whether to give layers their own threads, given each layer's work (flops).
    fn across_layers(self, work: &[u64]) -> bool {
        match self {
            LayerParallelism::Sequential => false,
            LayerParallelism::AcrossLayers => true,
            LayerParallelism::Auto => {
                // Layers of uneven size leave threads idle: only spread them when a
                // greedy largest-first assignment is nearly as short as a perfect split.
                let threads = rayon::current_num_threads().max(1);
                let total: u64 = work.iter().sum();
                work.len() >= threads
                    && longest_first_makespan(work, threads) as f64
                        <= 1.15 * total as f64 / threads as f64
            }
        }
    }
}

/// Runs every operation on the host, at once except the layers' gradient products,
/// which wait for the optimizer pass that follows them so the two run fused (see
/// [`CpuBackend::with_fused_updates`]). Beside each sign-concordant feedback matrix
/// (uSF, frSF) it keeps the signs of the weights it was written from, a byte per value,
/// so that each step rewrites only the values whose signs changed.
#[derive(Debug, Default)]
pub struct CpuBackend {
    bufs: Vec<Vec<f32>>,
    /// Gradient products not yet run.
    deferred: Deferred,
    /// Column-major products before they are transposed into place.
    scratch: Vec<f32>,
}

impl CpuBackend {
    /// A backend with no buffers yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Chooses how independent layers share the CPU's threads when their gradient
    /// products run apart from an optimizer pass.
    pub fn with_layer_parallelism(mut self, mode: LayerParallelism) -> Self {
        self.deferred.layer_parallelism = mode;
        self
    }

    /// Whether [`Backend::layer_grads`] waits for the optimizer pass that follows it
    /// and runs fused with it, tile by tile of each layer's gradient, each tile's
    /// parameters updated while its gradient is in cache (the default); `false` runs
    /// the products at once. Either way the values are the same, bit for bit; a call
    /// that depends on the products runs them first.
    pub fn with_fused_updates(mut self, fuse: bool) -> Self {
        self.deferred.fuse = fuse;
        self
    }

    /// Caps the memory of the transposed copies the backend keeps of matrices (512x512
    /// and up) that `Bᵀ δ` products read again and again unchanged (FA's fixed
    /// feedback) or changed in few places (uSF's and frSF's, whose copies follow the
    /// values each refresh changes), so that
    /// those products run untransposed, at the speed of the forward pass's `W x`:
    /// 256 MiB unless set, and 0 turns them off. A copy is as large as its matrix;
    /// matrices past the cap are multiplied as before. Values are the same either way
    /// up to rounding (faer may sum in another order).
    ///
    /// ```
    /// use plasticity::backend::CpuBackend;
    /// // Copies for weights up to 64 MiB in all.
    /// let cpu = CpuBackend::new().with_transposed_copies(64 << 20);
    /// ```
    pub fn with_transposed_copies(mut self, max_bytes: usize) -> Self {
        self.deferred.copies = transposed::TransposedCopies::with_budget(max_bytes);
        self
    }

    /// [`Backend::gemm`], followed by `then` on its output when given.
    fn product_then(&mut self, op: &Gemm, then: Option<Epilogue>) -> Result<()> {
        op.check()?;
        // The epilogue's operand rides along as a third read (an unused repeat of `b`
        // without one).
        let operand = then.map_or(op.b, |t| t.operand());
        let (mut w, r) = self
            .deferred
            .borrow(&mut self.bufs, &[op.c], &[op.a, op.b, operand])?;
        let then = then.map(|t| Then::new(t, r[2]));
        if copy_of_a_pays(op) {
            if let Some(a_t) = self.deferred.copies.current(op.a, r[0]) {
                // `Aᵀ B` as the plain product of the copy (`a`'s buffer is not read).
                let plain = Gemm {
                    a: Mat::new(op.a.buf, 0, op.a.cols, op.a.rows),
                    trans_a: false,
                    ..*op
                };
                gemm_slices(&plain, w[0], a_t, r[1], parallelism(op), then);
                return Ok(());
            }
        }
        product(op, w[0], r[0], r[1], &mut self.scratch, then);
        Ok(())
    }

    /// An epilogue on its own, over all of `c`.
    fn epilogue(&mut self, c: Mat, then: Epilogue) -> Result<()> {
        then.check(c)?;
        if let Epilogue::ActivationGrad {
            activation: Activation::Identity,
            ..
        } = then
        {
            return Ok(());
        }
        let (mut w, r) = self
            .deferred
            .borrow(&mut self.bufs, &[c], &[then.operand()])?;
        Then::new(then, r[0]).all(c.cols, w[0]);
        Ok(())
    }
}

impl Backend for CpuBackend {
    fn name(&self) -> String {
        format!("cpu ({} threads)", rayon::current_num_threads())
    }

    fn host_resident(&self) -> bool {
        true
    }

    fn alloc(&mut self, len: usize) -> Result<BufId> {
        // Zeroed by the allocator, not by writing: the OS maps large zeroed blocks on
        // first touch, so a buffer a run never writes (plain SGD's two moment arenas, as
        // large as the parameters) costs no memory.
        let buf = bytemuck::allocation::try_zeroed_slice_box::<f32>(len)
            .map_err(|()| host_alloc_error(len))?
            .into_vec();
        self.bufs.push(buf);
        Ok(BufId(self.bufs.len() - 1))
    }

    fn alloc_from(&mut self, mut data: Vec<f32>, len: usize) -> Result<BufId> {
        if data.is_empty() {
            // Zeroed by the allocator: untouched, it holds no memory.
            return self.alloc(len);
        }
        if data.len() > len {
            return Err(Error::shape(
                "initial values of a buffer",
                format!("at most {len} values"),
                format!("{} values", data.len()),
            ));
        }
        // Grown in place where the allocator can (a large block is remapped, not
        // copied), so the values are not held twice even for a moment.
        data.try_reserve_exact(len - data.len())
            .map_err(|_| host_alloc_error(len))?;
        data.resize(len, 0.0);
        self.bufs.push(data);
        Ok(BufId(self.bufs.len() - 1))
    }

    fn write(&mut self, buf: BufId, offset: usize, data: &[f32]) -> Result<()> {
        self.write_with(buf, offset, data.len(), &mut |dst| {
            dst.copy_from_slice(data)
        })
    }

    fn write_with(
        &mut self,
        buf: BufId,
        offset: usize,
        len: usize,
        fill: &mut dyn FnMut(&mut [f32]),
    ) -> Result<()> {
        let (mut w, _) =
            self.deferred
                .borrow(&mut self.bufs, &[Mat::new(buf, offset, 1, len)], &[])?;
        fill(w[0]);
        Ok(())
    }

    fn read(&mut self, buf: BufId, offset: usize, len: usize) -> Result<Vec<f32>> {
        let (_, r) = self
            .deferred
            .borrow(&mut self.bufs, &[], &[Mat::new(buf, offset, 1, len)])?;
        Ok(r[0].to_vec())
    }

    fn fill(&mut self, m: Mat, value: f32) -> Result<()> {
        let (mut w, _) = self.deferred.borrow(&mut self.bufs, &[m], &[])?;
        w[0].fill(value);
        Ok(())
    }

    fn gemm(&mut self, op: &Gemm) -> Result<()> {
        self.product_then(op, None)
    }

    /// The epilogue runs on each band of the product by the thread that computed it
    /// (see `epilogue`), or right after the product where it is not banded.
    fn gemm_then(&mut self, op: &Gemm, then: Epilogue) -> Result<()> {
        then.check(op.c)?;
        self.product_then(op, Some(then))
    }

    fn bias_activation(&mut self, z: Mat, bias: Mat, activation: Activation) -> Result<()> {
        self.epilogue(z, Epilogue::BiasActivation { bias, activation })
    }

    fn activation_grad(&mut self, delta: Mat, h: Mat, activation: Activation) -> Result<()> {
        self.epilogue(delta, Epilogue::ActivationGrad { h, activation })
    }

    fn sign_feedback(
        &mut self,
        out: Mat,
        w: Mat,
        magnitude: Option<Mat>,
        scale: f32,
    ) -> Result<()> {
        let reads = check_sign_feedback(out, w, magnitude)?;
        let feedback = SignFeedback {
            out,
            w,
            magnitude,
            scale,
        };
        let mut kept = self.deferred.take_kept(&feedback);
        let (mut o, r) = match self.deferred.borrow(&mut self.bufs, &[out], &reads) {
            Ok(borrowed) => borrowed,
            Err(e) => {
                kept.put_back(&mut self.deferred);
                return Err(e);
            }
        };
        if !kept.record.fresh {
            // The optimizer pass did not keep it current: compare, and rewrite the
            // lines whose signs changed, which a current copy then follows.
            let follow = kept.copy.as_ref().is_some_and(|c| c.is_current());
            let (w, m) = (r[0], r.get(1).copied());
            let patches = kept.record.keep_current(o.swap_remove(0), w, m, follow);
            if let Some(copy) = kept.copy.as_mut() {
                copy.follow(&patches);
            }
        }
        kept.put_back(&mut self.deferred);
        Ok(())
    }

    /// One loop draws each magnitude and writes its feedback value at once, so the
    /// draw's arithmetic overlaps the loads of the weights and nothing is read back.
    /// Each value is that of the two operations apart. A draw added to the magnitudes
    /// (`accumulate`) runs as the two.
    fn redrawn_sign_feedback(&mut self, out: Mat, w: Mat, magnitudes: &Noise) -> Result<()> {
        magnitudes.check()?;
        check_sign_feedback(out, w, Some(magnitudes.out))?;
        if magnitudes.accumulate {
            self.noise(magnitudes)?;
            return self.sign_feedback(out, w, Some(magnitudes.out), 1.0);
        }
        let (writes, r) = self
            .deferred
            .borrow(&mut self.bufs, &[out, magnitudes.out], &[w])?;
        let [b, m] = <[&mut [f32]; 2]>::try_from(writes)
            .map_err(|_| crate::Error::Backend("redrawn_sign_feedback regions".into()))?;
        let w = r[0];
        in_paired_pieces(b, m, |first, b, m| {
            super::simd_state::widest(RedrawnSignFeedbackChunk {
                op: magnitudes,
                magnitudes: m,
                out: b,
                w: &w[first..],
                // `magnitudes.check` bounds the region's length by u32::MAX.
                first: first as u32,
            })
        });
        Ok(())
    }

    fn layer_grads(&mut self, layers: &[LayerGrad]) -> Result<()> {
        let products = layers.iter().map(LayerGrad::check).collect::<Result<_>>()?;
        self.deferred.push(&mut self.bufs, layers, products)
    }

    fn loss_grad(&mut self, op: &LossGrad) -> Result<()> {
        op.check()?;
        let (classes, batch) = (op.output.rows, op.output.cols);
        let (mut w, r) = self.deferred.borrow(
            &mut self.bufs,
            &[op.grad, op.stats],
            &[op.output, op.target],
        )?;
        let (grad, rest) = w.split_at_mut(1);
        let (grad, stats, out, target) = (&mut *grad[0], &mut *rest[0], r[0], r[1]);
        let scale = 1.0 / batch as f32;
        let (mut loss_sum, mut correct) = (0.0f32, 0.0f32);
        for j in 0..batch {
            loss_sum += op.loss.sample(
                classes,
                |k| out[k * batch + j],
                |k| target[k * batch + j],
                |k, g| grad[k * batch + j] = g,
                scale,
            );
            let predicted = argmax((0..classes).map(|k| out[k * batch + j]));
            let expected = argmax((0..classes).map(|k| target[k * batch + j]));
            correct += f32::from(predicted == expected);
        }
        stats[0] += loss_sum;
        stats[1] += correct;
        stats[2] += batch as f32;
        Ok(())
    }

    fn optimizer_step(&mut self, op: &OptimizerPass) -> Result<()> {
        op.check()?;
        if let Some(g) = op.guard {
            return self.guarded_optimizer_step(op, &g);
        }
        if let Some(finite) = self.deferred.fused_pass(&mut self.bufs, op)? {
            return if finite {
                Ok(())
            } else {
                let (_, r) = self.deferred.borrow(&mut self.bufs, &[], &[op.params])?;
                Err(non_finite_parameter(op, r[0]))
            };
        }
        let ([params, s0, s1], grads) = pass_regions(&mut self.bufs, &mut self.deferred, op)?;
        let step = op.step;
        // The finiteness check rides along the update pass, so it costs no extra sweep.
        let all_finite = params
            .par_chunks_mut(CHUNK)
            .zip(s0.par_chunks_mut(CHUNK))
            .zip(s1.par_chunks_mut(CHUNK))
            .zip(grads.par_chunks(CHUNK))
            .map(|(((params, s0), s1), grads)| apply_update(step, params, grads, s0, s1))
            .reduce(|| true, |x, y| x && y);
        if !all_finite {
            return Err(non_finite_parameter(op, params));
        }
        Ok(())
    }

    fn gather(&mut self, op: &Gather) -> Result<()> {
        op.check()?;
        let (reads, writes) = op.regions();
        let (mut w, r) = self.deferred.borrow(&mut self.bufs, &writes, &reads)?;
        let (x, targets) = w.split_at_mut(1);
        gather::host::gather(op, r[0], r[1], x[0], targets[0])
    }

    fn release(&mut self, buf: BufId) -> Result<()> {
        self.deferred.settle(&mut self.bufs)?;
        self.deferred.copies.forget(buf);
        self.deferred.signs.forget(buf);
        match self.bufs.get_mut(buf.0) {
            Some(b) => {
                *b = Vec::new();
                Ok(())
            }
            None => Err(Error::Backend(format!("buffer {} does not exist", buf.0))),
        }
    }

    fn clip_grad_norm(&mut self, grads: Mat, max_norm: f32, norm: Mat) -> Result<()> {
        check_same_shape("clip norm", norm, Mat::new(norm.buf, 0, 1, 1))?;
        let (mut w, _) = self.deferred.borrow(&mut self.bufs, &[grads, norm], &[])?;
        w[1][0] = super::clip_in_place(w[0], max_norm);
        Ok(())
    }

    fn im2col(&mut self, op: &Im2Col) -> Result<()> {
        op.check()?;
        let (mut w, r) = self
            .deferred
            .borrow(&mut self.bufs, &[op.patches], &[op.image])?;
        spatial::host::im2col(&op.window, r[0], w[0]);
        Ok(())
    }

    fn col2im(&mut self, op: &Im2Col) -> Result<()> {
        op.check()?;
        let (mut w, r) = self
            .deferred
            .borrow(&mut self.bufs, &[op.image], &[op.patches])?;
        spatial::host::col2im(&op.window, r[0], w[0]);
        Ok(())
    }

    fn pool(&mut self, op: &Pool) -> Result<()> {
        op.check()?;
        let mut scratch = Vec::new();
        match op.mode {
            PoolMode::Max => {
                let (mut w, r) =
                    self.deferred
                        .borrow(&mut self.bufs, &[op.output, op.argmax], &[op.input])?;
                let (out, argmax) = w.split_at_mut(1);
                spatial::host::pool(&op.window, op.mode, r[0], out[0], argmax[0]);
            }
            PoolMode::MaxAt => {
                let (mut w, r) =
                    self.deferred
                        .borrow(&mut self.bufs, &[op.output], &[op.input, op.argmax])?;
                scratch.extend_from_slice(r[1]);
                spatial::host::pool(&op.window, op.mode, r[0], w[0], &mut scratch);
            }
            PoolMode::Avg => {
                let (mut w, r) = self
                    .deferred
                    .borrow(&mut self.bufs, &[op.output], &[op.input])?;
                spatial::host::pool(&op.window, op.mode, r[0], w[0], &mut scratch);
            }
        }
        Ok(())
    }

    fn unpool(&mut self, op: &Pool) -> Result<()> {
        op.check()?;
        let reads: Vec<Mat> = std::iter::once(op.output)
            .chain(op.argmax_reads())
            .collect();
        let (mut w, r) = self.deferred.borrow(&mut self.bufs, &[op.input], &reads)?;
        let argmax = r.get(1).copied().unwrap_or(&[]);
        spatial::host::unpool(&op.window, op.mode, r[0], argmax, w[0]);
        Ok(())
    }

    fn axpby(&mut self, op: &Axpby) -> Result<()> {
        op.check()?;
        let (mut w, r) = self.deferred.borrow(&mut self.bufs, &[op.y], &[op.x])?;
        let x = r[0];
        in_pieces(w[0], |start, y| {
            let x = &x[start..start + y.len()];
            super::simd_state::wide(AxpbyChunk { op, y, x })
        });
        Ok(())
    }

    fn noise(&mut self, op: &Noise) -> Result<()> {
        op.check()?;
        let (mut w, _) = self.deferred.borrow(&mut self.bufs, &[op.out], &[])?;
        // Element i depends on (seed, i) alone: chunks drawn in parallel are the same
        // values.
        w[0].par_chunks_mut(CHUNK).enumerate().for_each(|(c, out)| {
            // `op.check` bounds the region's length by u32::MAX.
            let first = (c * CHUNK) as u32;
            super::simd_state::widest(NoiseChunk { op, out, first })
        });
        Ok(())
    }

    fn columns(&mut self, op: &ColumnOp) -> Result<()> {
        op.check()?;
        let (mut w, r) = self.deferred.borrow(&mut self.bufs, &[op.out], &[op.x])?;
        super::simd_state::wide(ColumnPass {
            op,
            x: r[0],
            out: w[0],
        });
        Ok(())
    }

    fn flush(&mut self) -> Result<()> {
        self.deferred.settle(&mut self.bufs)
    }
}

impl CpuBackend {
    /// [`OptimizerPass`] with a [`Guard`] (see [`divergence`]): the GPU's semantics on
    /// the host, for parity (the trainer checks the host's steps itself).
    fn guarded_optimizer_step(&mut self, op: &OptimizerPass, g: &Guard) -> Result<()> {
        let (mut w, r) = self
            .deferred
            .borrow(&mut self.bufs, &[g.flags], &[g.loss])?;
        if !divergence::host::may_update(g, r[0][0], w[0]) {
            return Ok(());
        }
        let ([params, s0, s1], grads) = pass_regions(&mut self.bufs, &mut self.deferred, op)?;
        let mut first_bad = None;
        for i in 0..params.len() {
            let (mut p, mut a, mut b) = ([params[i]], [s0[i]], [s1[i]]);
            if op.step.apply_slice(&mut p, &grads[i..=i], &mut a, &mut b) {
                (params[i], s0[i], s1[i]) = (p[0], a[0], b[0]);
            } else {
                first_bad.get_or_insert(op.params.offset + i);
            }
        }
        if let Some(index) = first_bad {
            let (mut w, _) = self.deferred.borrow(&mut self.bufs, &[g.flags], &[])?;
            divergence::host::record_update(g, w[0], idx_u32(index)?);
        }
        Ok(())
    }
}

/// Runs `f(start, piece)` over `out` in pieces of [`CHUNK`] elements on every thread when
/// it is large (from [`PARALLEL_ELEMENTWISE_MIN`]), else once over all of it; `start` is
/// the piece's offset in `out`, for the matching elements of the pass's inputs.
fn in_pieces(out: &mut [f32], f: impl Fn(usize, &mut [f32]) + Sync) {
    if out.len() >= PARALLEL_ELEMENTWISE_MIN {
        out.par_chunks_mut(CHUNK)
            .enumerate()
            .for_each(|(i, piece)| f(i * CHUNK, piece));
    } else {
        f(0, out);
    }
}

/// [`in_pieces`] over two slices cut alike, `f(start, piece of a, piece of b)` (`b`
/// as long as `a`), returning each piece's result in order.
fn in_paired_pieces<T: Send, R: Send>(
    a: &mut [f32],
    b: &mut [T],
    f: impl Fn(usize, &mut [f32], &mut [T]) -> R + Sync,
) -> Vec<R> {
    if a.len() >= PARALLEL_ELEMENTWISE_MIN {
        let pieces = a.par_chunks_mut(CHUNK).zip(b.par_chunks_mut(CHUNK));
        let each = |(i, (a, b)): (usize, (&mut [f32], &mut [T]))| f(i * CHUNK, a, b);
        pieces.enumerate().map(each).collect()
    } else {
        vec![f(0, a, b)]
    }
}

/// An optimizer pass's parameters and two moments (written) and gradients (read).
type PassRegions<'a> = ([&'a mut [f32]; 3], &'a [f32]);

fn pass_regions<'a>(
    bufs: &'a mut [Vec<f32>],
    deferred: &mut Deferred,
    op: &OptimizerPass,
) -> Result<PassRegions<'a>> {
    let writes = [op.params, op.state[0], op.state[1]];
    let (w, r) = deferred.borrow(bufs, &writes, &[op.grads])?;
    match (<[&mut [f32]; 3]>::try_from(w), r.first()) {
        (Ok(w), Some(&g)) => Ok((w, g)),
        _ => Err(Error::Backend("optimizer regions".into())),
    }
}

/// The error for a pass that left a parameter non-finite: the first such one.
fn non_finite_parameter(op: &OptimizerPass, params: &[f32]) -> Error {
    let index = params.iter().position(|v| !v.is_finite()).unwrap_or(0);
    Error::NonFinite {
        context: "parameters after the optimizer step".into(),
        index: op.params.offset + index,
        value: params.get(index).copied().unwrap_or(f32::NAN),
    }
}

fn idx_u32(i: usize) -> Result<u32> {
    u32::try_from(i).map_err(|_| Error::Backend(format!("index {i} exceeds u32")))
}

/// The error for a host buffer of `len` floats the allocator refused.
fn host_alloc_error(len: usize) -> Error {
    Error::Backend(format!(
        "cannot allocate {len} floats ({} bytes) on the host",
        len.saturating_mul(4)
    ))
}

/// Finish time of `work` spread over `threads` by assigning each job, largest first,
/// to the least loaded thread.
fn longest_first_makespan(work: &[u64], threads: usize) -> u64 {
    let mut sorted = work.to_vec();
    sorted.sort_unstable_by(|a, b| b.cmp(a));
    let mut loads = vec![0u64; threads.max(1)];
    for w in sorted {
        if let Some(least) = loads.iter_mut().min() {
            *least += w;
        }
    }
    loads.into_iter().max().unwrap_or(0)
}

/// Index of the first largest value (NaN never wins).
fn argmax(values: impl Iterator<Item = f32>) -> usize {
    let mut best = (0, f32::NEG_INFINITY);
    for (i, v) in values.enumerate() {
        if v > best.1 {
            best = (i, v);
        }
    }
    best.0
}

/// [`Backend::gemm`] on the operands' slices, with `scratch` for the column-major form:
/// threaded when large, and tall `Aᵀ B` products written column-major and transposed
/// into place (see [`COLUMN_MAJOR_MIN_ROWS`]). `plasticity::bench::cpu_product` times it.
pub(crate) fn product(
    op: &Gemm,
    c: &mut [f32],
    a: &[f32],
    b: &[f32],
    scratch: &mut Vec<f32>,
    then: Option<Then>,
) {
    let par = parallelism(op);
    if transposed_a_is_slow(op) {
        scratch.resize(op.c.len(), 0.0);
        let a = MatRef::from_row_major_slice(a, op.a.rows, op.a.cols).transpose();
        let b = MatRef::from_row_major_slice(b, op.b.rows, op.b.cols);
        bands::matmul_column_major(c, scratch, (a, b), op.alpha, par, then);
    } else {
        gemm_slices(op, c, a, b, par, then);
    }
}

/// All threads for a product large enough to split, else one.
fn parallelism(op: &Gemm) -> Par {
    let macs = op.flops() as usize / 2;
    if macs >= PARALLEL_GEMM_MIN_MACS {
        Par::rayon(rayon::current_num_threads())
    } else {
        Par::Seq
    }
}

/// A tall `Aᵀ B` product (BP's `Wᵀ δ`), which faer runs slowly as it is laid out:
/// written column-major and transposed into place (see [`COLUMN_MAJOR_MIN_ROWS`]).
fn transposed_a_is_slow(op: &Gemm) -> bool {
    op.trans_a
        && !op.trans_b
        && op.beta == 0.0
        && op.c.rows >= COLUMN_MAJOR_MIN_ROWS
        && op.a.rows >= COLUMN_MAJOR_MIN_DEPTH
        && op.c.cols >= COLUMN_MAJOR_MIN_COLS
}

/// An `Aᵀ B` product large enough that running it on a transposed copy of `A` (when
/// the backend keeps one, see `transposed`) beats both the row-major and the
/// column-major form: measured 1.24x faster than the best of them at 512x512 by 128.
fn copy_of_a_pays(op: &Gemm) -> bool {
    op.trans_a
        && !op.trans_b
        && op.beta == 0.0
        && op.a.len() >= COPY_MIN_FLOATS
        && op.c.cols >= COLUMN_MAJOR_MIN_COLS
}

/// Runs a checked [`Gemm`] on host slices, row-major, on `par`'s threads, with `then`
/// on each band of `C` as it is done.
fn gemm_slices(op: &Gemm, c: &mut [f32], a: &[f32], b: &[f32], par: Par, then: Option<Then>) {
    let a_view = MatRef::from_row_major_slice(a, op.a.rows, op.a.cols);
    let b_view = MatRef::from_row_major_slice(b, op.b.rows, op.b.cols);
    let a_view = if op.trans_a {
        a_view.transpose()
    } else {
        a_view
    };
    let b_view = if op.trans_b {
        b_view.transpose()
    } else {
        b_view
    };
    let accum = if op.beta == 0.0 {
        Accum::Replace
    } else {
        if op.beta != 1.0 {
            c.iter_mut().for_each(|v| *v *= op.beta);
        }
        Accum::Add
    };
    // Leaves a clean upper state: the scalar passes that follow are SSE code.
    bands::matmul_rows(c, op.c.cols, accum, (a_view, b_view), op.alpha, par, then);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The vector becomes the buffer (no copy), the rest of the buffer is zero, and
    /// values longer than the buffer are refused.
    #[test]
    fn alloc_from_takes_the_vector_over() {
        let mut backend = CpuBackend::new();
        let mut data = Vec::with_capacity(6);
        data.extend([1.0, -2.0, 3.5]);
        let at = data.as_ptr();
        let buf = backend.alloc_from(data, 6).unwrap();
        assert_eq!(backend.bufs[buf.0].as_ptr(), at, "the values were copied");
        assert_eq!(
            backend.read(buf, 0, 6).unwrap(),
            [1.0, -2.0, 3.5, 0.0, 0.0, 0.0]
        );
        let grown = backend.alloc_from(vec![7.0; 3], 1000).unwrap();
        let values = backend.read(grown, 0, 1000).unwrap();
        assert_eq!(&values[..4], [7.0, 7.0, 7.0, 0.0]);
        assert!(values[3..].iter().all(|&v| v == 0.0));
        let err = backend.alloc_from(vec![0.0; 4], 3).unwrap_err();
        assert!(matches!(err, Error::ShapeMismatch { .. }), "{err}");
    }

    /// `write_with` hands `fill` the buffer's own elements (nothing staged), and a
    /// region past the buffer is refused before `fill` runs.
    #[test]
    fn write_with_fills_the_buffer_in_place() {
        let mut backend = CpuBackend::new();
        let buf = backend.alloc(10).unwrap();
        let inside = backend.bufs[buf.0][3..].as_ptr();
        let mut seen = None;
        backend
            .write_with(buf, 3, 4, &mut |dst| {
                seen = Some(dst.as_ptr());
                dst.copy_from_slice(&[1.0, 2.0, 3.0, 4.0]);
            })
            .unwrap();
        assert_eq!(seen, Some(inside), "the values were staged");
        let read = backend.read(buf, 0, 10).unwrap();
        assert_eq!(read, [0.0, 0.0, 0.0, 1.0, 2.0, 3.0, 4.0, 0.0, 0.0, 0.0]);
        let mut called = false;
        let err = backend.write_with(buf, 8, 3, &mut |_| called = true);
        assert!(matches!(err, Err(Error::Backend(_))), "{err:?}");
        assert!(!called);
    }

    /// `C = alpha Aᵀ B` through the backend (column-major scratch over the thresholds)
    /// against the plain row-major product and f64 sums, to rounding.
    fn transposed_product(rows: usize, depth: usize, cols: usize) {
        let value = |i: usize, salt: usize| ((i * 7919 + salt) % 1013) as f32 / 1013.0 - 0.5;
        let a: Vec<f32> = (0..depth * rows).map(|i| value(i, 1)).collect();
        let b: Vec<f32> = (0..depth * cols).map(|i| value(i, 2)).collect();
        let mut backend = CpuBackend::new();
        let (ab, bb, cb) = (
            backend.alloc(a.len()).unwrap(),
            backend.alloc(b.len()).unwrap(),
            backend.alloc(rows * cols).unwrap(),
        );
        backend.write(ab, 0, &a).unwrap();
        backend.write(bb, 0, &b).unwrap();
        backend.fill(Mat::new(cb, 0, rows, cols), f32::NAN).unwrap();
        let op = Gemm {
            alpha: 0.5,
            ..Gemm::new(
                Mat::new(cb, 0, rows, cols),
                Mat::new(ab, 0, depth, rows),
                true,
                Mat::new(bb, 0, depth, cols),
                false,
            )
        };
        backend.gemm(&op).unwrap();
        let got = backend.read(cb, 0, rows * cols).unwrap();
        let mut plain = vec![0.0; rows * cols];
        gemm_slices(&op, &mut plain, &a, &b, Par::Seq, None);
        for i in 0..rows {
            for j in 0..cols {
                let (exact, magnitude) = (0..depth)
                    .map(|k| a[k * rows + i] as f64 * b[k * cols + j] as f64)
                    .fold((0.0, 0.0), |(s, m), t| (s + t, m + t.abs()));
                let tolerance = 1e-6 * magnitude;
                let (g, p) = (got[i * cols + j] as f64, plain[i * cols + j] as f64);
                assert!(
                    (g - 0.5 * exact).abs() <= tolerance && (g - p).abs() <= tolerance,
                    "{rows}x{depth}x{cols} at ({i}, {j}): {g} against {p} row-major, {} exact",
                    0.5 * exact
                );
            }
        }
    }

    #[test]
    fn transposed_products_written_column_major_match_the_row_major_ones() {
        // Over the threshold, with rows and columns that are not multiples of the tile.
        transposed_product(COLUMN_MAJOR_MIN_ROWS + 37, COLUMN_MAJOR_MIN_DEPTH, 45);
        transposed_product(COLUMN_MAJOR_MIN_ROWS, COLUMN_MAJOR_MIN_DEPTH + 1, 16);
        // Under it: the plain path.
        transposed_product(100, 64, 33);
    }

    /// How a loop is compiled: for the scalar baseline, through `wide` (AVX2) or through
    /// `widest` (AVX-512 where the CPU has it, else AVX2).
    #[derive(Debug, Clone, Copy)]
    enum Lanes {
        Baseline,
        Wide,
        Widest,
    }

    fn run<Op: pulp::WithSimd<Output = ()>>(op: Op, lanes: Lanes) {
        match lanes {
            Lanes::Baseline => op.with_simd(pulp::Scalar::new()),
            Lanes::Wide => super::super::simd_state::wide(op),
            Lanes::Widest => super::super::simd_state::widest(op),
        }
    }

    #[test]
    fn vectorised_elementwise_loops_give_the_baselines_values_bit_for_bit() {
        let inputs: Vec<f32> = (0..4099)
            .map(|i| ((i * 7919) % 20011) as f32 / 1000.0 - 10.0)
            .chain([0.0, -0.0, 1e-30, -1e-30, 8.0, -8.0, f32::INFINITY])
            .collect();
        let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
        // Runs `pass` over a copy of the inputs every way, checks the bits agree and
        // returns the result.
        let same_bits = |what: &str, pass: &dyn Fn(&mut [f32], Lanes)| {
            let mut base = inputs.clone();
            pass(&mut base, Lanes::Baseline);
            for lanes in [Lanes::Wide, Lanes::Widest] {
                let mut vector = inputs.clone();
                pass(&mut vector, lanes);
                assert_eq!(bits(&vector), bits(&base), "{what} through {lanes:?}");
            }
            base
        };
        for activation in Activation::ALL {
            let h = same_bits(&format!("{activation:?} forward"), &|row, lanes| {
                run(
                    BiasActivationRow {
                        row,
                        b: 0.25,
                        activation,
                    },
                    lanes,
                )
            });
            same_bits(&format!("{activation:?} derivative"), &|d, lanes| {
                run(
                    ActivationGradChunk {
                        d,
                        h: &h,
                        activation,
                    },
                    lanes,
                )
            });
        }
        // The noise draw, both distributions, from an offset into the draw.
        let out = Mat::new(BufId(0), 0, 1, inputs.len());
        for op in [
            Noise::normal(out, 0.7, 11),
            Noise::uniform(out, -1.0, 3.0, 12),
        ] {
            same_bits(&format!("{op:?}"), &|out, lanes| {
                run(
                    NoiseChunk {
                        op: &op,
                        out,
                        first: 77,
                    },
                    lanes,
                )
            });
        }
        // A scaled sum, overwriting and accumulating.
        let (y, x) = (out, Mat::new(BufId(1), 0, 1, inputs.len()));
        let x_values: Vec<f32> = inputs.iter().rev().copied().collect();
        for op in [Axpby::new(y, -1.5, x, 0.0), Axpby::new(y, 0.3, x, 0.7)] {
            same_bits(&format!("{op:?}"), &|y, lanes| {
                run(
                    AxpbyChunk {
                        op: &op,
                        y,
                        x: &x_values,
                    },
                    lanes,
                )
            });
        }
        // Per-sample passes over a 41 x 97 feature-major batch.
        let (x, full) = (Mat::new(BufId(0), 0, 41, 97), Mat::new(BufId(1), 0, 41, 97));
        let x_values = &inputs[..x.len()];
        for op in [
            ColumnOp::mean_squares(Mat::new(BufId(1), 0, 1, 97), x, true),
            ColumnOp::normalize(full, x, 1.5, 1e-6),
        ] {
            same_bits(&format!("{op:?}"), &|out, lanes| {
                let out = &mut out[..op.out.len()];
                run(
                    ColumnPass {
                        op: &op,
                        x: x_values,
                        out,
                    },
                    lanes,
                )
            });
        }
    }

    /// The draw and the feedback in one pass give the bits of the two apart, for both
    /// distributions and for a draw added to the magnitudes: one piece, a ragged last
    /// piece, and enough pieces to run in parallel; the weights include zeros of both
    /// signs.
    #[test]
    fn redrawn_sign_feedback_gives_the_bits_of_the_draw_and_the_feedback_apart() {
        let bits = |v: Vec<f32>| v.into_iter().map(f32::to_bits).collect::<Vec<_>>();
        for (rows, cols) in [
            (3, 5),
            (7, CHUNK / 4 + 1),
            (19, PARALLEL_ELEMENTWISE_MIN / 16),
        ] {
            let len = rows * cols;
            let w: Vec<f32> = (0..len)
                .map(|i| match i % 11 {
                    0 => 0.0,
                    1 => -0.0,
                    _ => ((i * 7919) % 2003) as f32 / 1000.0 - 1.0,
                })
                .collect();
            // Feedback, magnitudes and weights side by side in one buffer, as in the
            // trainer's arenas.
            let (b, m, wm) = (
                Mat::new(BufId(0), 0, rows, cols),
                Mat::new(BufId(0), len, rows, cols),
                Mat::new(BufId(0), 2 * len, rows, cols),
            );
            let added = Noise {
                accumulate: true,
                ..Noise::normal(m, 0.3, 13)
            };
            for magnitudes in [
                Noise::normal(m, 0.7, 11),
                Noise::uniform(m, -1.0, 3.0, 12),
                added,
            ] {
                let mut results = Vec::new();
                for fused in [true, false] {
                    let mut backend = CpuBackend::new();
                    let buf = backend.alloc(3 * len).unwrap();
                    backend.write(buf, 2 * len, &w).unwrap();
                    if fused {
                        backend.redrawn_sign_feedback(b, wm, &magnitudes).unwrap();
                    } else {
                        backend.noise(&magnitudes).unwrap();
                        backend.sign_feedback(b, wm, Some(m), 1.0).unwrap();
                    }
                    results.push(bits(backend.read(buf, 0, 2 * len).unwrap()));
                }
                assert_eq!(results[0], results[1], "{rows}x{cols}, {magnitudes:?}");
            }
        }
    }

    /// A transposed copy of sign-concordant feedback follows it through every kind of
    /// refresh: the fused pass under plain SGD and under Adam, a call that finds it
    /// current, a call after a write to a few weights; and goes stale, to be made again
    /// at the next read, when every sign flips. After each, `B` is the formula of the
    /// present weights and the copy, when current, its exact transposition.
    #[test]
    fn transposed_copies_of_sign_feedback_follow_every_refresh() {
        use crate::optim::Optimizer;
        let (rows, cols, batch) = (600, 700, 32);
        let value = |i: usize, salt: usize| ((i * 7919 + salt) % 1013) as f32 / 1013.0 - 0.5;
        let mut cpu = CpuBackend::new();
        let params_len = rows * cols + rows;
        let mut buf = |len: usize, values: &dyn Fn(usize) -> f32| {
            let id = cpu.alloc(len).unwrap();
            let data: Vec<f32> = (0..len).map(values).collect();
            cpu.write(id, 0, &data).unwrap();
            id
        };
        // Steps that flip a few hundred of the weights' signs.
        let params = buf(params_len, &|i| value(i, 3));
        let (delta, input) = (
            buf(rows * batch, &|i| value(i, 1)),
            buf(cols * batch, &|i| value(i, 2)),
        );
        let (grads, feedback, below) = (
            buf(params_len, &|_| 0.0),
            buf(rows * cols, &|_| 0.0),
            buf(cols * batch, &|_| 0.0),
        );
        let state = [buf(params_len, &|_| 0.0), buf(params_len, &|_| 0.0)];
        let (b, w) = (
            Mat::new(feedback, 0, rows, cols),
            Mat::new(params, 0, rows, cols),
        );
        let scale = 0.5;
        // `Bᵀ δ`, which reads `B` through its copy.
        let product = Gemm::new(
            Mat::new(below, 0, cols, batch),
            b,
            true,
            Mat::new(delta, 0, rows, batch),
            false,
        );
        let check = |cpu: &mut CpuBackend, copied: bool, what: &str| {
            let (w_now, b_now) = (
                cpu.read(params, 0, w.len()).unwrap(),
                cpu.read(feedback, 0, b.len()).unwrap(),
            );
            let sign = |v: f32| f32::from(v > 0.0) - f32::from(v < 0.0);
            for (i, (&b, &w)) in b_now.iter().zip(&w_now).enumerate() {
                assert_eq!(b.to_bits(), (scale * sign(w)).to_bits(), "{what}: B at {i}");
            }
            let copy = cpu.deferred.copies.current_copy(b);
            assert_eq!(copy.is_some(), copied, "{what}: a current copy");
            for (i, &v) in copy.into_iter().flatten().enumerate() {
                let (c, r) = (i / rows, i % rows);
                assert_eq!(
                    v.to_bits(),
                    b_now[r * cols + c].to_bits(),
                    "{what}: copy at {i}"
                );
            }
        };
        cpu.sign_feedback(b, w, None, scale).unwrap();
        cpu.gemm(&product).unwrap();
        check(&mut cpu, false, "first read");
        cpu.gemm(&product).unwrap();
        check(&mut cpu, true, "second read");
        for (step, optimizer) in [Optimizer::sgd(0.01), Optimizer::adam(0.002)]
            .iter()
            .enumerate()
        {
            cpu.layer_grads(&[LayerGrad::new(
                Mat::new(delta, 0, rows, batch),
                Mat::new(input, 0, cols, batch),
                Mat::new(grads, 0, rows, cols),
                Mat::new(grads, rows * cols, rows, 1),
            )])
            .unwrap();
            let all = |buf| Mat::new(buf, 0, 1, params_len);
            let pass = OptimizerPass {
                params: all(params),
                grads: all(grads),
                state: state.map(all),
                step: optimizer.step_params(step as u64 + 1),
                guard: None,
                keep_grads: false,
            };
            let before = cpu.read(params, 0, w.len()).unwrap();
            cpu.optimizer_step(&pass).unwrap();
            let after = cpu.read(params, 0, w.len()).unwrap();
            let flips = before.iter().zip(&after);
            let flipped = flips.filter(|(a, b)| (**a > 0.0) != (**b > 0.0)).count();
            assert!(flipped > 300, "{optimizer}: only {flipped} signs flipped");
            check(&mut cpu, true, &format!("{optimizer} pass"));
            cpu.sign_feedback(b, w, None, scale).unwrap();
            check(&mut cpu, true, &format!("{optimizer}, asked again"));
            cpu.gemm(&product).unwrap();
        }
        // A few weights written: the call compares and the copy follows.
        let mut w_now = cpu.read(params, 0, w.len()).unwrap();
        w_now.iter_mut().step_by(97).for_each(|v| *v = -*v);
        cpu.write(params, 0, &w_now).unwrap();
        cpu.sign_feedback(b, w, None, scale).unwrap();
        check(&mut cpu, true, "a few weights written");
        // Every sign flipped: too many to follow, so the copy is made again when read.
        w_now.iter_mut().for_each(|v| *v = -*v);
        cpu.write(params, 0, &w_now).unwrap();
        cpu.sign_feedback(b, w, None, scale).unwrap();
        check(&mut cpu, false, "every weight flipped");
        cpu.gemm(&product).unwrap();
        check(&mut cpu, true, "read again");
    }
}
