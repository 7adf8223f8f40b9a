//! Gradient products held back until the optimizer pass that follows them, so each band
//! of weights is updated while its freshly computed gradient is still in the core's
//! cache.
//!
//! A training step ends with the layers' gradient products ([`Backend::layer_grads`])
//! and then one optimizer pass over the parameter arena. Run apart, the pass reads every
//! gradient back from memory after the products wrote it, and reads and writes every
//! parameter: at 784-1024x3-10 that is ~35 MB, about a millisecond of a 12 ms step on a
//! 2-core Xeon, spent after the products. So [`Backend::layer_grads`] only checks its
//! products and holds them. The next call either is that pass, and then each worker
//! takes a band of a layer's gradient rows and, a tile of columns at a time, computes it
//! and at once updates the same elements of the parameters and optimizer state while
//! the tile is in its cache; or it touches a region the held products read or write,
//! and then they run first, as they would have. Values are bit for bit those of
//! the unfused order: every gradient element is the same product over the batch, every
//! update the same [`UpdateStep::apply_slice`] (tested in `tests/cpu_fused_update.rs`).
//! A pass that need not keep the gradients ([`OptimizerPass::keep_grads`], which the
//! trainer leaves off) computes each tile into a worker's own buffer instead of the
//! gradient arena: the tile is applied from there and never stored, which saves writing
//! every gradient back to memory (2-3.5% of a 784-1024x3-10 step and 3-7% of DFA's at
//! width 4096 depth 8, in alternating runs on the 2-core Xeon measured). Plain SGD goes
//! one step further where the bits allow (see `accumulate`): the product adds
//! `-lr · δ hᵀ` into the parameters from its own epilogue, so no tile is stored at all
//! and the parameters' loads overlap the product's arithmetic.
//!
//! [`Backend::layer_grads`]: crate::backend::Backend::layer_grads

use std::cell::RefCell;

use faer::linalg::matmul::matmul;
use faer::{Accum, MatMut, MatRef, Par};
use rayon::prelude::*;

use super::accumulate::rounds_like_apart;
use super::feedback_signs::{FeedbackSigns, Refresh, SignFeedback, Written};
use super::loops::{tile_finite, TileUpdate};
use super::transposed::{Copy, Patch, TransposedCopies};
use super::{apply_update, gemm_slices, row_sums, LayerParallelism, CHUNK};
use crate::backend::regions::{borrow, Borrowed};
use crate::backend::{Gemm, LayerGrad, Mat, OptimizerPass};
use crate::error::{Error, Result};
use crate::optim::UpdateStep;

/// Gradient elements per tile of a fused update: 512 KB of gradient, and as much again
/// of parameters, fit a core's L2 (2 MB on the Xeon measured) beside the batch's inputs.
const TILE_FLOATS: usize = 1 << 17;
thread_local! {
    /// A worker's gradient tile when the pass need not keep the gradients: reused from
    /// tile to tile, so it stays in the core's cache.
    static TILE: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
}

/// Rows of a layer's weight gradient per band (one piece of parallel work, computed and
/// applied tile by tile). Each band's product packs the layer's whole input again, so a
/// band of `r` rows adds `1/r` of copying to its multiply-adds: 32 rows made width-4096
/// steps slower than unfused ones. Fewer rows only when the layers would otherwise give
/// the threads too few bands.
const BAND_ROWS: std::ops::RangeInclusive<usize> = 32..=256;

/// Layer gradients accepted by [`Backend::layer_grads`](crate::backend::Backend) and
/// not yet computed; and, since every write of the backend passes through here, the
/// transposed copies and the sign-concordant feedback records those writes make stale.
#[derive(Debug)]
pub(super) struct Deferred {
    held: Vec<Held>,
    /// Transposed copies of matrices tall `Bᵀ δ` products read (see `transposed`).
    pub(super) copies: TransposedCopies,
    /// Sign-concordant feedback kept with its weights' signs (see `feedback_signs`).
    pub(super) signs: FeedbackSigns,
    /// How products run when they run apart from an optimizer pass.
    pub(super) layer_parallelism: LayerParallelism,
    /// Whether products wait for the optimizer pass at all (else they run at once).
    pub(super) fuse: bool,
}

/// One held layer: its regions and its checked weight-gradient product.
#[derive(Debug, Clone, Copy)]
struct Held {
    layer: LayerGrad,
    product: Gemm,
}

impl Held {
    fn writes(&self) -> [Mat; 2] {
        [self.layer.grad_w, self.layer.grad_b]
    }

    fn reads(&self) -> [Mat; 2] {
        [self.layer.delta, self.layer.input]
    }
}

impl Default for Deferred {
    fn default() -> Self {
        Deferred {
            held: Vec::new(),
            copies: TransposedCopies::default(),
            signs: FeedbackSigns::default(),
            layer_parallelism: LayerParallelism::default(),
            fuse: true,
        }
    }
}

impl Deferred {
    /// Accepts checked layer gradients: held when fusing, else run at once.
    pub(super) fn push(
        &mut self,
        bufs: &mut [Vec<f32>],
        layers: &[LayerGrad],
        products: Vec<Gemm>,
    ) -> Result<()> {
        let writes: Vec<Mat> = layers.iter().flat_map(|g| [g.grad_w, g.grad_b]).collect();
        let reads: Vec<Mat> = layers.iter().flat_map(|g| [g.delta, g.input]).collect();
        // Overlaps within the call are errors, as when run at once; with held products,
        // a dependency.
        crate::backend::regions::validate(&writes, &reads, |id| bufs.get(id.0).map(Vec::len))?;
        self.settle_for(bufs, &writes, &reads)?;
        let held = layers
            .iter()
            .zip(products)
            .map(|(&layer, product)| Held { layer, product });
        self.held.extend(held);
        if !self.fuse {
            self.settle(bufs)?;
        }
        Ok(())
    }

    /// Borrows regions like [`borrow`], after running the held products if the call
    /// depends on them (writes what they read or write, or reads what they write).
    pub(super) fn borrow<'a>(
        &mut self,
        bufs: &'a mut [Vec<f32>],
        writes: &[Mat],
        reads: &[Mat],
    ) -> Result<Borrowed<'a>> {
        self.settle_for(bufs, writes, reads)?;
        self.borrow_held(bufs, writes, reads)
    }

    /// Borrows regions like [`borrow`] without settling anything first, and marks stale
    /// the transposed copies and feedback records of what it hands out to be written:
    /// every write of the backend's buffers comes through here.
    fn borrow_held<'a>(
        &mut self,
        bufs: &'a mut [Vec<f32>],
        writes: &[Mat],
        reads: &[Mat],
    ) -> Result<Borrowed<'a>> {
        self.copies.invalidate(writes);
        self.signs.invalidate(writes);
        borrow(bufs, writes, reads)
    }

    fn settle_for(&mut self, bufs: &mut [Vec<f32>], writes: &[Mat], reads: &[Mat]) -> Result<()> {
        let depends = self.held.iter().any(|h| {
            let touched = |m: &Mat| h.writes().iter().chain(&h.reads()).any(|x| x.overlaps(m));
            writes.iter().any(touched)
                || reads
                    .iter()
                    .any(|r| h.writes().iter().any(|w| w.overlaps(r)))
        });
        if depends {
            self.settle(bufs)?;
        }
        Ok(())
    }

    /// Runs every held product (layers across threads or one after another, see
    /// [`LayerParallelism`]).
    pub(super) fn settle(&mut self, bufs: &mut [Vec<f32>]) -> Result<()> {
        if self.held.is_empty() {
            return Ok(());
        }
        let held = std::mem::take(&mut self.held);
        let writes: Vec<Mat> = held.iter().flat_map(Held::writes).collect();
        let reads: Vec<Mat> = held.iter().flat_map(Held::reads).collect();
        let work: Vec<u64> = held.iter().map(|h| h.product.flops()).collect();
        let across = self.layer_parallelism.across_layers(&work);
        let (w, r) = self.borrow_held(bufs, &writes, &reads)?;
        let mut outputs = w.into_iter();
        let mut jobs = Vec::with_capacity(held.len());
        for (h, read) in held.iter().zip(r.chunks_exact(2)) {
            if let (Some(grad_w), Some(grad_b)) = (outputs.next(), outputs.next()) {
                jobs.push(GradJob {
                    op: h.product,
                    grad_w,
                    grad_b,
                    delta: read[0],
                    input: read[1],
                });
            }
        }
        if across {
            // Largest first, so work stealing balances the tail.
            jobs.sort_by_key(|job| std::cmp::Reverse(job.op.flops()));
            jobs.into_par_iter().for_each(|job| job.run(Par::Seq));
        } else {
            let par = Par::rayon(rayon::current_num_threads());
            jobs.into_iter().for_each(|job| job.run(par));
        }
        Ok(())
    }

    /// Runs the held products fused with `op`, band by band, and returns whether every
    /// updated parameter is finite; `None` (nothing run) unless every held gradient lies
    /// in `op`'s gradients and `op` is unguarded, the caller then running it plainly.
    /// Sign-concordant feedback recorded for a held layer's weights is kept current as
    /// they are updated, so the next `sign_feedback` finds it so (see `feedback_signs`).
    pub(super) fn fused_pass(
        &mut self,
        bufs: &mut [Vec<f32>],
        op: &OptimizerPass,
    ) -> Result<Option<bool>> {
        let inside = |m: &Mat| {
            m.buf == op.grads.buf
                && m.offset >= op.grads.offset
                && m.range().end <= op.grads.range().end
        };
        let pass_writes = [op.params, op.state[0], op.state[1], op.grads];
        let fusable = op.guard.is_none()
            && !self.held.is_empty()
            && self.held.iter().all(|h| {
                h.writes().iter().all(inside)
                    && h.reads()
                        .iter()
                        .all(|r| pass_writes.iter().all(|w| !w.overlaps(r)))
            });
        if !fusable {
            return Ok(None);
        }
        let held_reads: Vec<Mat> = self.held.iter().flat_map(Held::reads).collect();
        let mut kept = self.kept_current(op, &pass_writes, &held_reads);
        let kept_regions = kept.iter().flatten().map(|k| k.record.feedback);
        let writes: Vec<Mat> = pass_writes
            .iter()
            .copied()
            .chain(kept_regions.clone().map(|f| f.out))
            .collect();
        let reads: Vec<Mat> = held_reads
            .iter()
            .copied()
            .chain(kept_regions.filter_map(|f| f.magnitude))
            .collect();
        // Borrowed before the products leave `held`: a pass whose regions are refused
        // leaves them held, to run at the next call that needs them.
        let (w, r) = match self.borrow_held(bufs, &writes, &reads) {
            Ok(borrowed) => borrowed,
            Err(e) => {
                // Nothing written: the records and copies hold as they were.
                kept.into_iter().flatten().for_each(|k| k.put_back(self));
                return Err(e);
            }
        };
        let mut w = w.into_iter();
        let mut next = || {
            w.next()
                .ok_or_else(|| Error::Backend("optimizer regions".into()))
        };
        let (params, s0, s1, grads) = (next()?, next()?, next()?, next()?);
        let (r, mut magnitudes) = (&r[..held_reads.len()], r[held_reads.len()..].iter());
        let whole_rows: Vec<bool> = kept.iter().map(Option::is_some).collect();
        // Each kept feedback's rows, cut band by band below.
        let mut refreshes = Vec::with_capacity(kept.len());
        for k in &mut kept {
            refreshes.push(match k {
                Some(k) => {
                    let f = k.record.feedback;
                    let magnitude =
                        match f.magnitude {
                            Some(_) => Some(*magnitudes.next().ok_or_else(|| {
                                Error::Backend("sign feedback magnitudes".into())
                            })?),
                            None => None,
                        };
                    let follow = k.copy.as_ref().is_some_and(Copy::is_current);
                    Some(Refresh {
                        feedback: f,
                        out: next()?,
                        magnitude,
                        signs: &mut k.record.signs,
                        first: 0,
                        patch: follow.then(Patch::default),
                    })
                }
                None => None,
            });
        }
        let held = std::mem::take(&mut self.held);
        let pieces = pieces(&held, op.grads.offset, op.params.len(), &whole_rows);
        let mut rest = Stretch {
            params,
            grads,
            s0,
            s1,
        };
        let work: Vec<(Piece, Stretch, Option<Refresh>)> = pieces
            .into_iter()
            .map(|piece| {
                let stretch = rest.take_front(piece.len);
                let refresh = match piece.kind {
                    PieceKind::Weights { layer, .. } => {
                        refreshes[layer].as_mut().map(|r| r.take_front(piece.len))
                    }
                    _ => None,
                };
                (piece, stretch, refresh)
            })
            .collect();
        let step = op.step;
        let done: Vec<(bool, Option<(usize, Patch)>)> = work
            .into_par_iter()
            .map(|(piece, stretch, mut refresh)| {
                let operands = |layer: usize| (&held[layer], r[2 * layer], r[2 * layer + 1]);
                let layer = match piece.kind {
                    PieceKind::Weights { layer, .. } => Some(layer),
                    _ => None,
                };
                let finite = match piece.kind {
                    PieceKind::Plain => stretch.update(step),
                    PieceKind::Bias { layer } => {
                        let (h, delta, _) = operands(layer);
                        let (alpha, beta) = (h.product.alpha, h.product.beta);
                        row_sums(stretch.grads, delta, h.layer.delta.cols, alpha, beta);
                        stretch.update(step)
                    }
                    PieceKind::Weights { layer, rows } => {
                        let (h, delta, input) = operands(layer);
                        let band = Band {
                            h,
                            rows,
                            delta,
                            input,
                        };
                        band.run(step, op.keep_grads, stretch, refresh.as_mut())
                    }
                };
                // Only a band of weights has a refresh.
                let patch = refresh.and_then(|r| r.patch).zip(layer);
                (finite, patch.map(|(patch, layer)| (layer, patch)))
            })
            .collect();
        drop(refreshes);
        let finite = done.iter().all(|(finite, _)| *finite);
        let mut patches: Vec<Vec<Patch>> = kept.iter().map(|_| Vec::new()).collect();
        for (layer, patch) in done.into_iter().filter_map(|(_, p)| p) {
            patches[layer].push(patch);
        }
        for (k, patches) in kept.into_iter().zip(&patches) {
            if let Some(mut k) = k {
                if let Some(copy) = k.copy.as_mut() {
                    copy.follow(patches);
                }
                k.record.fresh = true;
                k.put_back(self);
            }
        }
        Ok(Some(finite))
    }

    /// The record of `feedback` (a new one if there is none, see
    /// [`FeedbackSigns::take`]) and the transposed copy of its output, taken out.
    pub(super) fn take_kept(&mut self, feedback: &SignFeedback) -> Kept {
        Kept {
            record: self.signs.take(feedback),
            copy: self.copies.take(feedback.out),
        }
    }

    /// For each held layer, the record of sign-concordant feedback of exactly its
    /// weights (see `feedback_signs`) and its transposed copy, taken out for the pass to
    /// keep current band by band as it updates the weights (the borrow for the pass
    /// would drop the one and make the other stale): unless the feedback's output or
    /// magnitudes overlap the pass's regions, the held products' or another kept one's.
    fn kept_current(
        &mut self,
        op: &OptimizerPass,
        pass_writes: &[Mat],
        held_reads: &[Mat],
    ) -> Vec<Option<Kept>> {
        let mut taken: Vec<Mat> = pass_writes.iter().chain(held_reads).copied().collect();
        let mut kept = Vec::with_capacity(self.held.len());
        for h in &self.held {
            let g = h.layer.grad_w;
            let offset = op.params.offset + (g.offset - op.grads.offset);
            let weights = Mat::new(op.params.buf, offset, g.rows, g.cols);
            let record = self.signs.take_of_weights(&weights).and_then(|record| {
                let f = record.feedback;
                let regions = [Some(f.out), f.magnitude];
                let clear = regions
                    .iter()
                    .flatten()
                    .all(|m| taken.iter().all(|t| !t.overlaps(m)));
                if clear {
                    taken.extend(regions.iter().flatten());
                    Some(record)
                } else {
                    self.signs.put(record);
                    None
                }
            });
            kept.push(record.map(|record| Kept {
                copy: self.copies.take(record.feedback.out),
                record,
            }));
        }
        kept
    }
}

/// Sign-concordant feedback being kept current (by `sign_feedback` or by an optimizer
/// pass): its record and its transposed copy, if any, out of the backend's lists while
/// its output is borrowed for writing, which would drop the one and make the other
/// stale.
pub(super) struct Kept {
    pub(super) record: Written,
    pub(super) copy: Option<Copy>,
}

impl Kept {
    /// Returns the record and the copy to the backend's lists.
    pub(super) fn put_back(self, deferred: &mut Deferred) {
        deferred.signs.put(self.record);
        if let Some(copy) = self.copy {
            deferred.copies.put(copy);
        }
    }
}

/// A contiguous stretch of an optimizer pass.
#[derive(Debug, Clone)]
struct Piece {
    /// Start, relative to the pass.
    start: usize,
    len: usize,
    kind: PieceKind,
}

/// What a [`Piece`] computes before its update.
#[derive(Debug, Clone)]
enum PieceKind {
    /// Nothing: parameters no held product touches.
    Plain,
    /// A held layer's bias gradient.
    Bias { layer: usize },
    /// Rows of a held layer's weight gradient.
    Weights {
        layer: usize,
        rows: std::ops::Range<usize>,
    },
}

/// The pass of `len` elements whose gradients start at `base`, cut into pieces in
/// order: bands of each held weight gradient, each held bias, and the stretches
/// between, in chunks. A layer marked in `whole_rows` (one whose feedback the pass
/// keeps current) gets bands whose tiles span whole rows: the feedback's signs of a
/// tile are then one stretch of memory, which the prefetcher streams, not a short
/// piece of every row. Against half-row tiles (60 alternating steps each): uSF's step
/// at 1024-1024x3-10 20.86 against 21.28 ms, frSF's 17.52 against 17.68, uSF's at
/// width 1024 depth 8 47.3 against 47.8.
fn pieces(held: &[Held], base: usize, len: usize, whole_rows: &[bool]) -> Vec<Piece> {
    let total_rows: usize = held.iter().map(|h| h.layer.grad_w.rows).sum();
    let threads = rayon::current_num_threads().max(1);
    let band = (total_rows / (4 * threads)).clamp(*BAND_ROWS.start(), *BAND_ROWS.end());
    let mut computed = Vec::new();
    for (layer, h) in held.iter().enumerate() {
        let (rows, cols) = (h.layer.grad_w.rows, h.layer.grad_w.cols);
        let band = if whole_rows.get(layer).copied().unwrap_or(false) {
            band.min((TILE_FLOATS / cols.max(1)).max(1))
        } else {
            band
        };
        for r0 in (0..rows).step_by(band) {
            let r1 = (r0 + band).min(rows);
            computed.push(Piece {
                start: h.layer.grad_w.offset - base + r0 * cols,
                len: (r1 - r0) * cols,
                kind: PieceKind::Weights {
                    layer,
                    rows: r0..r1,
                },
            });
        }
        computed.push(Piece {
            start: h.layer.grad_b.offset - base,
            len: rows,
            kind: PieceKind::Bias { layer },
        });
    }
    computed.retain(|p| p.len > 0);
    computed.sort_by_key(|p| p.start);
    let mut all = Vec::with_capacity(computed.len() * 2);
    let mut cursor = 0;
    let plain = |all: &mut Vec<Piece>, from: usize, to: usize| {
        for start in (from..to).step_by(CHUNK) {
            let len = CHUNK.min(to - start);
            let kind = PieceKind::Plain;
            all.push(Piece { start, len, kind });
        }
    };
    for p in computed {
        plain(&mut all, cursor, p.start);
        cursor = p.start + p.len;
        all.push(p);
    }
    plain(&mut all, cursor, len);
    all
}

/// A band of rows of a held layer's weight gradient, with the operands it reads.
struct Band<'a> {
    h: &'a Held,
    rows: std::ops::Range<usize>,
    /// The layer's whole delta and input.
    delta: &'a [f32],
    input: &'a [f32],
}

impl Band<'_> {
    /// Computes the band into `out.grads` (into a worker's own tile instead when the
    /// gradients need not be kept and none accumulate) and applies the update to the
    /// same elements of the parameters and the state, a tile of columns at a time so
    /// each tile's gradient is still in cache when it is applied. Plain SGD on a new
    /// product is added into the parameters by the product itself where that gives
    /// the same bits (see `accumulate`). With `refresh`, the band's sign-concordant
    /// feedback is kept current tile by tile from the tile's new weights, while they
    /// are in cache (see `feedback_signs`). Returns whether every parameter is finite.
    fn run(
        self,
        step: UpdateStep,
        keep_grads: bool,
        mut out: Stretch,
        mut refresh: Option<&mut Refresh>,
    ) -> bool {
        let (batch, cols) = (self.h.layer.delta.cols, self.h.layer.grad_w.cols);
        let count = self.rows.len();
        let delta = &self.delta[self.rows.start * batch..self.rows.end * batch];
        let delta = MatRef::from_row_major_slice(delta, count, batch);
        let tile = (TILE_FLOATS / count.max(1)).clamp(1, cols.max(1));
        let (alpha, beta) = (self.h.product.alpha, self.h.product.beta);
        let plain_rate = step
            .plain_sgd_rate()
            .filter(|_| !keep_grads && alpha == 1.0 && beta == 0.0);
        let mut finite = true;
        for c0 in (0..cols).step_by(tile) {
            let width = tile.min(cols - c0);
            let columns = c0..c0 + width;
            let input = &self.input[c0 * batch..(c0 + width) * batch];
            let input = MatRef::from_row_major_slice(input, width, batch).transpose();
            let rate = plain_rate.filter(|_| rounds_like_apart(count, width, batch));
            finite &= if let Some(rate) = rate {
                // `w - rate · (δ hᵀ)` from the product's epilogue, checked while the tile
                // is in cache.
                let params = MatMut::from_row_major_slice_mut(out.params, count, cols);
                let tile = params.subcols_mut(c0, width);
                matmul(tile, Accum::Add, delta, input, -rate, Par::Seq);
                tile_finite(out.params, cols, columns)
            } else if !keep_grads && beta == 0.0 {
                TILE.with_borrow_mut(|tile| {
                    tile.resize(count * width, 0.0);
                    let product = MatMut::from_row_major_slice_mut(tile, count, width);
                    matmul(product, Accum::Replace, delta, input, alpha, Par::Seq);
                    out.update_tile(step, cols, columns, Some(tile))
                })
            } else {
                if beta != 0.0 && beta != 1.0 {
                    for row in out.grads.chunks_mut(cols) {
                        row[columns.clone()].iter_mut().for_each(|g| *g *= beta);
                    }
                }
                let accum = if beta == 0.0 {
                    Accum::Replace
                } else {
                    Accum::Add
                };
                let grads = MatMut::from_row_major_slice_mut(out.grads, count, cols);
                matmul(
                    grads.subcols_mut(c0, width),
                    accum,
                    delta,
                    input,
                    alpha,
                    Par::Seq,
                );
                out.update_tile(step, cols, columns, None)
            };
            // The tile's new weights are in this core's cache.
            if let Some(refresh) = refresh.as_mut() {
                refresh.rows(out.params, cols, c0..c0 + width);
            }
        }
        finite
    }
}

/// A piece's share of an optimizer pass: its parameters, gradients and the two state
/// arrays, the same elements of each.
struct Stretch<'a> {
    params: &'a mut [f32],
    grads: &'a mut [f32],
    s0: &'a mut [f32],
    s1: &'a mut [f32],
}

impl<'a> Stretch<'a> {
    /// The first `len` elements, leaving the rest in `self`.
    fn take_front(&mut self, len: usize) -> Stretch<'a> {
        fn front<'a>(s: &mut &'a mut [f32], len: usize) -> &'a mut [f32] {
            let (front, rest) = std::mem::take(s).split_at_mut(len);
            *s = rest;
            front
        }
        Stretch {
            params: front(&mut self.params, len),
            grads: front(&mut self.grads, len),
            s0: front(&mut self.s0, len),
            s1: front(&mut self.s1, len),
        }
    }

    /// The update of columns `columns` of every row (`cols` long) from the gradient
    /// tile `from` (rows `columns.len()` long), or from the stretch's own gradients;
    /// whether every updated parameter is finite.
    fn update_tile(
        &mut self,
        step: UpdateStep,
        cols: usize,
        columns: std::ops::Range<usize>,
        from: Option<&[f32]>,
    ) -> bool {
        let (grads, grad_stride, grad_first) = match from {
            Some(tile) => (tile, columns.len(), 0),
            None => (&*self.grads, cols, columns.start),
        };
        TileUpdate {
            step,
            params: self.params,
            s0: self.s0,
            s1: self.s1,
            cols,
            columns,
            grads,
            grad_stride,
            grad_first,
        }
        .apply()
    }

    /// The optimizer's update, vectorised like the plain pass; whether every parameter
    /// is finite.
    fn update(self, step: UpdateStep) -> bool {
        apply_update(step, self.params, self.grads, self.s0, self.s1)
    }
}

/// One layer's gradient products on borrowed host slices.
struct GradJob<'a> {
    op: Gemm,
    grad_w: &'a mut [f32],
    grad_b: &'a mut [f32],
    delta: &'a [f32],
    input: &'a [f32],
}

impl GradJob<'_> {
    fn run(self, par: Par) {
        gemm_slices(&self.op, self.grad_w, self.delta, self.input, par, None);
        let (alpha, beta) = (self.op.alpha, self.op.beta);
        row_sums(self.grad_b, self.delta, self.op.a.cols, alpha, beta);
    }
}
