//! The [`Backend`] operations: validate on the host, then record a dispatch with its
//! parameter block. The checks mirror the CPU backend's so both reject the same calls.

use super::bindings::{self, Operand, ALIAS};
use super::blocks::{
    activation_code, ClipParams, ColumnsParams, DataParams, ElementwiseParams, FeedbackParams,
    GemmParams, KernelParams, LayerEntry, LossParams, OptimizerParams, BIAS_WITH_WEIGHTS, GROUP,
};
use super::buffers::{idx, F32, SCRATCH, SPARE};
use super::encode::Op;
use super::params::{BLOCK_BYTES, MAX_GROUPED_LAYERS, TABLE_BYTES};
use super::pipelines::{Kernel, NARROW_TILE, TILE};
use super::{GemmKernel, GpuBackend};
use crate::activation::Activation;
use crate::backend::{
    check_bias, check_same_shape, check_sign_feedback, Axpby, Backend, BufId, ColumnKind, ColumnOp,
    Distribution, Epilogue, FeatureEncoding, Gather, Gemm, Im2Col, LayerGrad, LossGrad, Mat, Noise,
    OptimizerPass, Pool, WorkCounters,
};
use crate::error::{Error, Result};
use crate::loss::Loss;
use crate::optim::UpdateStep;

/// Output tile of the wide GEMM kernel (see `shaders/gemm_wide.wgsl`).
const WIDE_TILE: usize = 128;
/// Workgroups a product's grid should reach on a hardware GPU: each GEMM takes the
/// widest output tile (128x128, 64x64, 32x32) whose grid has at least this many, so
/// the device's compute units all get work, and the largest tile that does so gets the
/// best reuse per load.
///
/// A large GPU has around 128 compute units (132 on an H100 or H200). Wider tiles do
/// more work per workgroup at more arithmetic per float loaded (the 128x128 kernel
/// twice the 64x64's, which does twice the 32x32's), but a grid of fewer workgroups
/// than compute units leaves the rest idle while each of its workgroups walks all of K
/// alone. Training-step products are skinny: at width 1024 and batch 128 the forward
/// product has a 1024x128 output, 8 tiles of 128x128, 32 of 64x64 and 128 of 32x32,
/// so it takes the 32x32 kernel (up to four times the 64x64 kernel's speed on an idle
/// large GPU); a 4096x4096 product has 1024 wide tiles and takes the wide kernel; at
/// 1024x1024 the 64 wide tiles would leave half of such a GPU idle, so it takes the
/// 256 tiles of 64x64. Products whose 32x32 grid is still short are split over K (see
/// [`SPLIT_TARGET_GROUPS`]).
const HARDWARE_FILL: usize = 128;
/// [`HARDWARE_FILL`] for a software adapter, whose worker threads (a few CPU cores)
/// are busy with a handful of workgroups: 512x512 already takes the wide kernel (16
/// tiles) and skinny products the 64x64 one, sparing the 32x32 kernel's extra loads
/// (about 15% on lavapipe).
const SOFTWARE_FILL: usize = 16;
/// Elementwise grids stop growing here; each invocation then strides over the rest.
const MAX_ELEMENTWISE_GROUPS: usize = 4096;

/// Whether the GEMM family may load a factor at element `offset` with leading
/// dimension `ld` as aligned `vec4<f32>`s (see `shaders/gemm_tile.wgsl`): every run of
/// 4 floats it reads then starts at a multiple of 4 floats, i.e. 16 bytes.
fn vec4_loadable(offset: usize, ld: usize) -> bool {
    offset % 4 == 0 && ld % 4 == 0
}

/// Products whose 32x32 grid has fewer workgroups than this are split over K on a
/// hardware GPU: a training step's skinny products (an 800 x 64 output is 50 tiles) would
/// otherwise leave most of a large GPU's compute units idle while a few workgroups walk
/// all of K alone. 256 is two workgroups for each of the ~128 compute units of a large
/// GPU. An estimate from the kernels' shapes, to confirm on hardware
/// (`bench_rules --gemm`); a software adapter's few threads are busy with a handful of
/// workgroups already, so it never splits (the extra pass would only cost).
const SPLIT_TARGET_GROUPS: usize = 256;
/// Each slice keeps at least this much of K: below it the partial blocks' traffic and
/// the reduction outweigh the parallelism gained.
const MIN_SPLIT_K: usize = 256;
/// At most this many slices.
const MAX_SPLIT: usize = 16;

/// How many slices of K a product with `groups` output workgroups and inner size `k`
/// is split into (1: not split).
fn split_slices(groups: usize, k: usize) -> usize {
    if groups >= SPLIT_TARGET_GROUPS {
        return 1;
    }
    (SPLIT_TARGET_GROUPS / groups.max(1))
        .min(k / MIN_SPLIT_K)
        .clamp(1, MAX_SPLIT)
}

/// `a * b` floats, or an error naming the overflow.
fn checked_len(a: usize, b: usize) -> Result<usize> {
    a.checked_mul(b)
        .ok_or_else(|| Error::Backend("split-K scratch size overflows".into()))
}

/// The GEMM kernel for an `m` x `n` output: the widest tile whose grid has at least
/// `fill` workgroups ([`HARDWARE_FILL`] or [`SOFTWARE_FILL`]), the wide one only if
/// the device can run it (`wide`), else the 32x32 one.
fn gemm_kernel(m: usize, n: usize, fill: usize, wide: bool) -> GemmKernel {
    let groups = |tile: usize| m.div_ceil(tile) * n.div_ceil(tile);
    if wide && groups(WIDE_TILE) >= fill {
        GemmKernel::Tile128
    } else if groups(TILE) >= fill {
        GemmKernel::Tile64
    } else {
        GemmKernel::Tile32
    }
}

impl GpuBackend {
    /// Records one dispatch of `kernel` over `operands` (one per storage binding) with
    /// its parameter block `params`, whose offsets are made relative to the ranges
    /// bound.
    pub(super) fn dispatch<P: KernelParams>(
        &mut self,
        kernel: Kernel,
        operands: &[Operand],
        params: &P,
        groups: [usize; 3],
    ) -> Result<()> {
        if !kernel.reads::<P>() {
            return Err(Error::Backend(format!(
                "{kernel:?} was given another kernel's parameter block"
            )));
        }
        self.dispatch_with(kernel, operands, groups, |bases| {
            let mut params = *params;
            params.rebase(bases);
            let mut block = vec![0u8; BLOCK_BYTES as usize];
            let bytes = bytemuck::bytes_of(&params);
            block[..bytes.len()].copy_from_slice(bytes);
            Ok(block)
        })
    }

    /// Records one dispatch whose parameter binding holds `params(bases)`, given where
    /// each storage binding starts (see [`bindings::plan`]), with the copies the plan
    /// needs before and after it.
    fn dispatch_with(
        &mut self,
        kernel: Kernel,
        operands: &[Operand],
        groups: [usize; 3],
        params: impl FnOnce(&[u32]) -> Result<Vec<u8>>,
    ) -> Result<()> {
        if operands.len() != kernel.storage_bindings() {
            return Err(Error::Backend(format!(
                "{kernel:?} binds {} buffers, was given {}",
                kernel.storage_bindings(),
                operands.len()
            )));
        }
        let max = self.ctx.limits.max_compute_workgroups_per_dimension as usize;
        if let Some(&g) = groups.iter().find(|&&g| g > max) {
            return Err(Error::Backend(format!(
                "{kernel:?} needs {g} workgroups in one dimension, more than the device's \
                 max_compute_workgroups_per_dimension of {max}"
            )));
        }
        if groups.contains(&0) {
            return Ok(());
        }
        let align = u64::from(self.ctx.limits.min_storage_buffer_offset_alignment);
        let outputs = self.pipelines.outputs(kernel);
        let plan = bindings::plan(operands, outputs, align, |id| self.bufs.bytes_of(id))?;
        self.pipelines.prepare(&self.ctx, kernel, plan.writable)?;
        if plan.alias_bytes > 0
            && self
                .bufs
                .ensure(&self.ctx, ALIAS, (plan.alias_bytes / F32) as usize)?
        {
            self.rec.forget(ALIAS);
        }
        let params = params(&plan.bases)?;
        let param_offset = self.rec.params.push(&params)?;
        for copy in &plan.before {
            self.rec.counters.add_aliased(copy.size);
            self.rec.push(Op::CopyWithin(*copy));
        }
        self.rec.push(Op::Dispatch {
            kernel,
            writable: plan.writable,
            bound: plan.bound,
            param_offset,
            groups: groups.map(|g| g as u32),
        });
        for copy in plan.after {
            self.rec.counters.add_aliased(copy.size);
            self.rec.push(Op::CopyWithin(copy));
        }
        Ok(())
    }

    /// Records `op`, with `then` fused into its epilogue (see `shaders/gemm_common.wgsl`),
    /// on the widest tile whose grid fills the device (see [`HARDWARE_FILL`]).
    fn gemm_dispatch(&mut self, op: &Gemm, then: Option<Epilogue>) -> Result<()> {
        op.check()?;
        let mut reads = vec![op.a, op.b];
        if let Some(e) = then {
            e.check(op.c)?;
            reads.push(e.operand());
        }
        self.check(&[op.c], &reads)?;
        let (epilogue, operand) = match then {
            None => (0, None),
            Some(Epilogue::BiasActivation { bias, activation }) => {
                (1 | activation_code(activation) << 8, Some(bias))
            }
            Some(Epilogue::ActivationGrad { h, activation }) => {
                (2 | activation_code(activation) << 8, Some(h))
            }
        };
        let (m, k) = op.a.shape(op.trans_a);
        let n = op.c.cols;
        let params = GemmParams {
            m: idx(m)?,
            n: idx(n)?,
            k: idx(k)?,
            a_off: idx(op.a.offset)?,
            lda: idx(op.a.cols)?,
            trans_a: u32::from(op.trans_a),
            b_off: idx(op.b.offset)?,
            ldb: idx(op.b.cols)?,
            trans_b: u32::from(op.trans_b),
            c_off: idx(op.c.offset)?,
            ldc: idx(op.c.cols)?,
            alpha: op.alpha,
            beta: op.beta,
            vec_a: u32::from(vec4_loadable(op.a.offset, op.a.cols)),
            vec_b: u32::from(vec4_loadable(op.b.offset, op.b.cols)),
            vec_c: u32::from(vec4_loadable(op.c.offset, op.c.cols)),
            epilogue,
            e_off: idx(operand.map_or(0, |e| e.offset))?,
            ..Default::default()
        };
        let operand = operand.map_or(Operand::Unused, Operand::from);
        let choice = match self.gemm_override {
            Some(forced) => forced,
            None => {
                let fill = if self.is_software() {
                    SOFTWARE_FILL
                } else {
                    HARDWARE_FILL
                };
                // A device without the wide kernel's workgroup memory never takes it.
                let wide = self.pipelines.has(Kernel::Gemm(GemmKernel::Tile128));
                gemm_kernel(m, n, fill, wide)
            }
        };
        let tile = match choice {
            GemmKernel::Tile32 => NARROW_TILE,
            GemmKernel::Tile64 => TILE,
            GemmKernel::Tile128 => WIDE_TILE,
        };
        let kernel = Kernel::Gemm(choice);
        let groups = [n.div_ceil(tile), m.div_ceil(tile), 1];
        let slices = match (self.split_override, choice) {
            (Some(s), _) => s,
            (None, GemmKernel::Tile32) if !self.is_software() => {
                split_slices(groups[0] * groups[1], k)
            }
            _ => 1,
        };
        // Below 17 k a split would leave one slice anyway.
        if slices > 1 && k > 16 && choice != GemmKernel::Tile128 {
            return self.split_gemm(
                params,
                (kernel, groups),
                slices,
                [op.c.into(), op.a.into(), op.b.into(), operand],
            );
        }
        let operands = [op.c.into(), op.a.into(), op.b.into(), operand];
        self.dispatch(kernel, &operands, &params, groups)
    }

    /// Records a product split over K into `slices` (see [`split_slices`]): each slice's
    /// partial product into the scratch buffer, then one pass that sums them in order and
    /// stores C with `params`' alpha, beta and epilogue. Not the same bits as the unsplit
    /// product (another summation order), within the same error bound.
    fn split_gemm(
        &mut self,
        params: GemmParams,
        (kernel, groups): (Kernel, [usize; 3]),
        slices: usize,
        [c, a, b, operand]: [Operand; 4],
    ) -> Result<()> {
        let (m, n, k) = (params.m as usize, params.n as usize, params.k as usize);
        // Slices of a multiple of 16 k (the tile loop's step), so vec4 loads stay aligned.
        let split = k.div_ceil(slices).next_multiple_of(16);
        let slices = k.div_ceil(split);
        let block = m * n;
        let scratch = checked_len(block, slices)?;
        if self.bufs.ensure(&self.ctx, SCRATCH, scratch)? {
            self.rec.forget(SCRATCH);
        }
        let partials = Operand::Range {
            buf: SCRATCH,
            start: 0,
            end: scratch,
        };
        // Each slice's block starts at a multiple of m n, so its runs align when n does.
        let partial = GemmParams {
            c_off: 0,
            ldc: params.n,
            vec_c: u32::from(vec4_loadable(0, n)),
            alpha: 1.0,
            beta: 0.0,
            epilogue: 0,
            split: idx(split)?,
            ..params
        };
        let grid = [groups[0], groups[1], slices];
        self.dispatch(kernel, &[partials, a, b, Operand::Unused], &partial, grid)?;
        let reduce = GemmParams {
            slices: idx(slices)?,
            s_off: 0,
            ..params
        };
        let operands = [c, partials, Operand::Unused, operand];
        let groups = Self::elementwise_groups(block);
        self.dispatch(Kernel::GemmReduce, &operands, &reduce, groups)
    }

    /// The grid of a kernel striding over `len` elements (256 per workgroup, at most
    /// [`MAX_ELEMENTWISE_GROUPS`] workgroups).
    pub(super) fn elementwise_groups(len: usize) -> [usize; 3] {
        [
            len.div_ceil(GROUP as usize).min(MAX_ELEMENTWISE_GROUPS),
            1,
            1,
        ]
    }

    /// Records the layers of one group, which share all their buffers. Each binding
    /// spans its regions of every layer; biases kept beside the weights (the
    /// trainer's arena) are written through the weights' binding, so the two writable
    /// ranges of that buffer cannot overlap.
    fn layer_grads_group(&mut self, layers: &[LayerGrad]) -> Result<()> {
        let regions = |pick: fn(&LayerGrad) -> Mat| layers.iter().map(pick).collect::<Vec<_>>();
        let (grad_w, grad_b) = (regions(|g| g.grad_w), regions(|g| g.grad_b));
        let together = grad_w[0].buf == grad_b[0].buf;
        let (weights, biases) = if together {
            let both = [grad_w, grad_b].concat();
            (Operand::spanning(&both)?, Operand::Unused)
        } else {
            (Operand::spanning(&grad_w)?, Operand::spanning(&grad_b)?)
        };
        let operands = [
            weights,
            Operand::spanning(&regions(|g| g.delta))?,
            Operand::spanning(&regions(|g| g.input))?,
            biases,
        ];
        let (mut gx, mut gy) = (0, 0);
        let mut entries = Vec::with_capacity(layers.len());
        for g in layers {
            let mut entry = LayerEntry {
                delta_off: idx(g.delta.offset)?,
                input_off: idx(g.input.offset)?,
                grad_w_off: idx(g.grad_w.offset)?,
                grad_b_off: idx(g.grad_b.offset)?,
                outputs: idx(g.delta.rows)?,
                inputs: idx(g.input.rows)?,
                batch: idx(g.delta.cols)?,
                flags: u32::from(vec4_loadable(g.delta.offset, g.delta.cols))
                    | (u32::from(vec4_loadable(g.input.offset, g.input.cols)) << 1),
                alpha: g.alpha,
                beta: g.beta,
                ..Default::default()
            };
            if together {
                entry.flags |= BIAS_WITH_WEIGHTS;
            }
            entries.push(entry);
            // One extra output column holds the bias gradient.
            gx = gx.max((g.input.rows + 1).div_ceil(TILE));
            gy = gy.max(g.delta.rows.div_ceil(TILE));
        }
        let count = idx(layers.len())?;
        self.dispatch_with(
            Kernel::LayerGrads,
            &operands,
            [gx, gy, layers.len()],
            |bases| {
                // The header (count, three words of padding), then the entries.
                let mut table = bytemuck::cast_slice::<u32, u8>(&[count, 0, 0, 0]).to_vec();
                for mut entry in entries {
                    entry.rebase(bases);
                    let bias_binding = if together { 0 } else { 3 };
                    entry.grad_b_off = entry.grad_b_off.wrapping_sub(bases[bias_binding]);
                    table.extend_from_slice(bytemuck::bytes_of(&entry));
                }
                table.resize(TABLE_BYTES as usize, 0);
                Ok(table)
            },
        )
    }
}

impl Backend for GpuBackend {
    fn name(&self) -> String {
        let info = &self.ctx.info;
        format!(
            "gpu: {} ({:?}, {:?})",
            info.name, info.backend, info.device_type
        )
    }

    fn host_resident(&self) -> bool {
        false
    }

    fn alloc(&mut self, len: usize) -> Result<BufId> {
        self.ctx.errors.take()?;
        self.bufs.alloc(&self.ctx, len)
    }

    fn write(&mut self, buf: BufId, offset: usize, data: &[f32]) -> Result<()> {
        self.check(&[Mat::new(buf, offset, 1, data.len())], &[])?;
        if data.is_empty() {
            return Ok(());
        }
        self.upload(buf, offset, data)
    }

    fn read(&mut self, buf: BufId, offset: usize, len: usize) -> Result<Vec<f32>> {
        self.check(&[], &[Mat::new(buf, offset, 1, len)])?;
        if len == 0 {
            return Ok(Vec::new());
        }
        self.read_back(buf, offset, len)
    }

    fn fill(&mut self, m: Mat, value: f32) -> Result<()> {
        self.check(&[m], &[])?;
        if m.is_empty() {
            return Ok(());
        }
        if value.to_bits() == 0 {
            // Zeroing (+0.0 only) needs no kernel.
            self.rec.push(Op::Clear {
                buf: m.buf,
                offset: m.offset as u64 * F32,
                size: m.len() as u64 * F32,
            });
            return Ok(());
        }
        let params = ElementwiseParams {
            off0: idx(m.offset)?,
            len: idx(m.len())?,
            cols: 1,
            value,
            ..Default::default()
        };
        let groups = Self::elementwise_groups(m.len());
        self.dispatch(Kernel::Fill, &[m.into()], &params, groups)
    }

    fn gemm(&mut self, op: &Gemm) -> Result<()> {
        self.gemm_dispatch(op, None)
    }

    fn gemm_then(&mut self, op: &Gemm, then: Epilogue) -> Result<()> {
        self.gemm_dispatch(op, Some(then))
    }

    fn bias_activation(&mut self, z: Mat, bias: Mat, activation: Activation) -> Result<()> {
        check_bias(z, bias)?;
        self.check(&[z], &[bias])?;
        let params = ElementwiseParams {
            off0: idx(z.offset)?,
            len: idx(z.len())?,
            off1: idx(bias.offset)?,
            cols: idx(z.cols.max(1))?,
            act: activation_code(activation),
            ..Default::default()
        };
        let groups = Self::elementwise_groups(z.len());
        self.dispatch(
            Kernel::BiasActivation,
            &[z.into(), bias.into()],
            &params,
            groups,
        )
    }

    fn activation_grad(&mut self, delta: Mat, h: Mat, activation: Activation) -> Result<()> {
        check_same_shape("activation_grad", delta, h)?;
        if activation == Activation::Identity {
            return Ok(());
        }
        self.check(&[delta], &[h])?;
        let params = ElementwiseParams {
            off0: idx(delta.offset)?,
            len: idx(delta.len())?,
            off1: idx(h.offset)?,
            cols: idx(delta.cols.max(1))?,
            act: activation_code(activation),
            ..Default::default()
        };
        let groups = Self::elementwise_groups(delta.len());
        self.dispatch(
            Kernel::ActivationGrad,
            &[delta.into(), h.into()],
            &params,
            groups,
        )
    }

    fn axpby(&mut self, op: &Axpby) -> Result<()> {
        op.check()?;
        self.check(&[op.y], &[op.x])?;
        if op.y.is_empty() {
            return Ok(());
        }
        let params = ElementwiseParams {
            off0: idx(op.y.offset)?,
            len: idx(op.y.len())?,
            off1: idx(op.x.offset)?,
            cols: 1,
            value: op.alpha,
            beta: op.beta,
            ..Default::default()
        };
        let groups = Self::elementwise_groups(op.y.len());
        self.dispatch(Kernel::Axpby, &[op.y.into(), op.x.into()], &params, groups)
    }

    fn noise(&mut self, op: &Noise) -> Result<()> {
        op.check()?;
        self.check(&[op.out], &[])?;
        if op.out.is_empty() {
            return Ok(());
        }
        let (kernel, value, beta) = match op.distribution {
            Distribution::Normal { std } => (Kernel::Noise, std, 0.0),
            Distribution::Uniform { lo, hi } => (Kernel::UniformNoise, lo, hi),
        };
        let params = ElementwiseParams {
            off0: idx(op.out.offset)?,
            len: idx(op.out.len())?,
            cols: 1,
            value,
            beta,
            seed: op.seed,
            accumulate: u32::from(op.accumulate),
            ..Default::default()
        };
        let groups = Self::elementwise_groups(op.out.len());
        self.dispatch(kernel, &[op.out.into()], &params, groups)
    }

    fn columns(&mut self, op: &ColumnOp) -> Result<()> {
        op.check()?;
        self.check(&[op.out], &[op.x])?;
        if op.out.is_empty() {
            return Ok(());
        }
        let (kernel, shape, accumulate, eps, length) = match op.kind {
            ColumnKind::MeanSquares { accumulate } => {
                (Kernel::ColumnMeanSquares, op.x, accumulate, 0.0, 0.0)
            }
            ColumnKind::Normalize { length, eps } => {
                (Kernel::ColumnNormalize, op.x, false, eps, length)
            }
            ColumnKind::Scale => (Kernel::ColumnScale, op.out, false, 0.0, 0.0),
            ColumnKind::ArgmaxOneHot => (Kernel::ColumnArgmaxOneHot, op.x, false, 0.0, 0.0),
        };
        let params = ColumnsParams {
            off_x: idx(op.x.offset)?,
            off_out: idx(op.out.offset)?,
            rows: idx(shape.rows)?,
            cols: idx(shape.cols)?,
            accumulate: u32::from(accumulate),
            eps,
            length,
        };
        let groups = match kernel {
            Kernel::ColumnScale => Self::elementwise_groups(op.out.len()),
            _ => [shape.cols.div_ceil(64).clamp(1, 65_535), 1, 1],
        };
        self.dispatch(kernel, &[op.out.into(), op.x.into()], &params, groups)
    }

    fn sign_feedback(
        &mut self,
        out: Mat,
        w: Mat,
        magnitude: Option<Mat>,
        scale: f32,
    ) -> Result<()> {
        let reads = check_sign_feedback(out, w, magnitude)?;
        self.check(&[out], &reads)?;
        let params = FeedbackParams {
            off_out: idx(out.offset)?,
            len: idx(out.len())?,
            off_w: idx(w.offset)?,
            off_mag: idx(magnitude.map_or(0, |m| m.offset))?,
            has_mag: u32::from(magnitude.is_some()),
            scale,
        };
        let groups = Self::elementwise_groups(out.len());
        let magnitude = magnitude.map_or(Operand::Unused, Operand::from);
        let operands = [out.into(), w.into(), magnitude];
        self.dispatch(Kernel::SignFeedback, &operands, &params, groups)
    }

    fn layer_grads(&mut self, layers: &[LayerGrad]) -> Result<()> {
        for g in layers {
            g.check()?;
        }
        let writes: Vec<Mat> = layers.iter().flat_map(|g| [g.grad_w, g.grad_b]).collect();
        let reads: Vec<Mat> = layers.iter().flat_map(|g| [g.delta, g.input]).collect();
        self.check(&writes, &reads)?;
        // Layers whose regions live in the same four buffers share one dispatch (the
        // trainer's arenas make that every layer); others get their own.
        let key = |g: &LayerGrad| (g.grad_w.buf, g.delta.buf, g.input.buf, g.grad_b.buf);
        let mut start = 0;
        while start < layers.len() {
            let mut end = start + 1;
            while end < layers.len()
                && end - start < MAX_GROUPED_LAYERS
                && key(&layers[end]) == key(&layers[start])
            {
                end += 1;
            }
            self.layer_grads_group(&layers[start..end])?;
            start = end;
        }
        Ok(())
    }

    fn loss_grad(&mut self, op: &LossGrad) -> Result<()> {
        op.check()?;
        self.check(&[op.grad, op.stats], &[op.output, op.target])?;
        let kind = match op.loss {
            Loss::SoftmaxCrossEntropy => 0,
            Loss::MeanSquaredError => 1,
        };
        let params = LossParams {
            out_off: idx(op.output.offset)?,
            target_off: idx(op.target.offset)?,
            grad_off: idx(op.grad.offset)?,
            stats_off: idx(op.stats.offset)?,
            classes: idx(op.output.rows)?,
            batch: idx(op.output.cols)?,
            kind,
            lowest: f32::NEG_INFINITY,
        };
        let operands = [
            op.output.into(),
            op.target.into(),
            op.grad.into(),
            op.stats.into(),
        ];
        // One workgroup loops over the batch and reduces in a fixed order.
        self.dispatch(Kernel::Loss, &operands, &params, [1, 1, 1])
    }

    fn optimizer_step(&mut self, op: &OptimizerPass) -> Result<()> {
        let n = op.params.len();
        op.check()?;
        self.check(&[op.params, op.state[0], op.state[1]], &[op.grads])?;
        // Unguarded, the kernel does not read its flags binding.
        let (flags, loss, guard) = match op.guard {
            Some(g) => {
                self.check(&[g.flags], &[g.loss])?;
                (
                    g.flags.offset,
                    g.loss.offset,
                    Operand::spanning(&[g.flags, g.loss])?,
                )
            }
            None => (0, 0, Operand::Unused),
        };
        let step = op.guard.map_or(0, |g| g.step);
        let mut params = OptimizerParams {
            param_off: idx(op.params.offset)?,
            grad_off: idx(op.grads.offset)?,
            s0_off: idx(op.state[0].offset)?,
            s1_off: idx(op.state[1].offset)?,
            len: idx(n)?,
            guarded: u32::from(op.guard.is_some()),
            flags_off: idx(flags)?,
            step,
            loss_off: idx(loss)?,
            ..Default::default()
        };
        match op.step {
            UpdateStep::Sgd {
                lr,
                momentum,
                weight_decay,
                nesterov,
            } => {
                params.nesterov = u32::from(nesterov);
                params.lr = lr;
                params.momentum = momentum;
                params.weight_decay = weight_decay;
                params.inv_sqrt_correction2 = 1.0;
            }
            UpdateStep::Adam {
                step_size,
                beta1,
                beta2,
                eps,
                weight_decay,
                inv_sqrt_correction2,
            } => {
                params.kind = 1;
                params.lr = step_size;
                params.momentum = beta1;
                params.beta2 = beta2;
                params.eps = eps;
                params.weight_decay = weight_decay;
                params.inv_sqrt_correction2 = inv_sqrt_correction2;
            }
        }
        let operands = [
            op.params.into(),
            op.grads.into(),
            op.state[0].into(),
            op.state[1].into(),
            guard,
        ];
        let groups = Self::elementwise_groups(n);
        self.dispatch(Kernel::Optimizer, &operands, &params, groups)
    }

    fn clip_grad_norm(&mut self, grads: Mat, max_norm: f32, norm: Mat) -> Result<()> {
        check_same_shape("clip norm", norm, Mat::new(norm.buf, 0, 1, 1))?;
        self.check(&[grads, norm], &[])?;
        let params = ClipParams {
            grad_off: idx(grads.offset)?,
            len: idx(grads.len())?,
            norm_off: idx(norm.offset)?,
            max_norm,
        };
        let operands = [grads.into(), norm.into()];
        // The norm stays on the device: no read-back inside a step.
        self.dispatch(Kernel::GradNorm, &operands, &params, [1, 1, 1])?;
        let groups = Self::elementwise_groups(grads.len());
        self.dispatch(Kernel::GradScale, &operands, &params, groups)
    }

    fn im2col(&mut self, op: &Im2Col) -> Result<()> {
        self.record_im2col(op)
    }

    fn col2im(&mut self, op: &Im2Col) -> Result<()> {
        self.record_col2im(op)
    }

    fn pool(&mut self, op: &Pool) -> Result<()> {
        self.record_pool(op)
    }

    fn unpool(&mut self, op: &Pool) -> Result<()> {
        self.record_unpool(op)
    }

    fn gather(&mut self, op: &Gather) -> Result<()> {
        op.check()?;
        let (reads, writes) = op.regions();
        self.check(&writes, &reads)?;
        let d = &op.data;
        let params = DataParams {
            table_off: 0,
            labels_off: idx(d.labels_at())?,
            features_off: idx(d.features_at())?,
            samples: idx(d.samples)?,
            dim: idx(d.dim)?,
            classes: idx(d.classes)?,
            batch: idx(op.batch())?,
            bytes: u32::from(d.encoding == FeatureEncoding::Bytes),
            order_off: idx(op.order.offset)?,
            x_off: idx(op.x.offset)?,
            targets_off: idx(op.targets.offset)?,
        };
        let len = (op.x.len()).saturating_add(op.targets.len());
        let groups = Self::elementwise_groups(len);
        let operands = [
            d.region().into(),
            op.order.into(),
            op.x.into(),
            op.targets.into(),
        ];
        self.dispatch(Kernel::Gather, &operands, &params, groups)
    }

    fn release(&mut self, buf: BufId) -> Result<()> {
        if buf == SPARE {
            return Err(Error::Backend(
                "cannot release the backend's own buffer".into(),
            ));
        }
        // Recorded work may still use it: run that first.
        self.submit()?;
        self.rec.forget(buf);
        self.bufs.release(buf)
    }

    fn counters(&self) -> Option<WorkCounters> {
        Some(self.rec.counters.snapshot())
    }

    fn flush(&mut self) -> Result<()> {
        self.submit()
    }

    fn synchronize(&mut self) -> Result<()> {
        self.submit()?;
        self.wait_idle()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gemm_kernel_by_workgroups() {
        let hw = |m, n| gemm_kernel(m, n, HARDWARE_FILL, true);
        // A hardware GPU: the wide kernel from 128 of its tiles (partial ones count).
        assert_eq!(hw(4096, 4096), GemmKernel::Tile128);
        assert_eq!(hw(1409, 1409), GemmKernel::Tile128);
        assert_eq!(hw(16 * 128, 8 * 128), GemmKernel::Tile128);
        // 64 and 120 wide tiles: the 64x64 kernel's 256 and 480.
        assert_eq!(hw(1024, 1024), GemmKernel::Tile64);
        assert_eq!(hw(15 * 128, 8 * 128), GemmKernel::Tile64);
        // Skinny training-step products: 32 and 8 tiles of 64x64, and small ones.
        assert_eq!(hw(1024, 128), GemmKernel::Tile32);
        assert_eq!(hw(128, 1024), GemmKernel::Tile32);
        assert_eq!(hw(256, 128), GemmKernel::Tile32);
        assert_eq!(hw(10, 784), GemmKernel::Tile32);
        assert_eq!(hw(1, 1), GemmKernel::Tile32);
        // 127 tiles of 64x64: still the narrow kernel; from 128 up the 64x64 one.
        assert_eq!(hw(127 * 64, 64), GemmKernel::Tile32);
        assert_eq!(hw(4032, 128), GemmKernel::Tile32);
        assert_eq!(hw(128 * 64, 64), GemmKernel::Tile64);
        assert_eq!(hw(4033, 128), GemmKernel::Tile64);
        assert_eq!(hw(4096, 128), GemmKernel::Tile64);
        // Without the wide kernel, the 64x64 one instead.
        assert_eq!(
            gemm_kernel(4096, 4096, HARDWARE_FILL, false),
            GemmKernel::Tile64
        );
        // A software adapter fills sooner.
        let sw = |m, n| gemm_kernel(m, n, SOFTWARE_FILL, true);
        assert_eq!(sw(512, 512), GemmKernel::Tile128);
        assert_eq!(sw(513, 517), GemmKernel::Tile128);
        assert_eq!(sw(1024, 128), GemmKernel::Tile64);
        assert_eq!(sw(256, 256), GemmKernel::Tile64);
        assert_eq!(sw(256, 128), GemmKernel::Tile32);
    }
}
