//! The spatial operations of conv nets ([`Backend::im2col`](crate::backend::Backend::im2col),
//! `col2im`, `pool`, `unpool`) as kernels of `shaders/spatial.wgsl`: one recorded
//! dispatch each, no read-back, so a conv net's step stays one submit.
//!
//! Each kernel gathers: one invocation per element it writes, which it overwrites, with
//! sums taken in the host reference's order ([`spatial::host`](crate::backend::spatial::host)).

use super::bindings::Operand;
use super::blocks::SpatialParams;
use super::buffers::idx;
use super::pipelines::Kernel;
use super::GpuBackend;
use crate::backend::{Im2Col, Mat, Pool, PoolMode, Window};
use crate::error::Result;

impl GpuBackend {
    /// Records one spatial kernel writing `len` elements of `dst` from `src` (and
    /// `aux`, the argmax, bound at the third binding).
    #[allow(clippy::too_many_arguments)]
    fn spatial_dispatch(
        &mut self,
        kernel: Kernel,
        w: &Window,
        mode: u32,
        dst: Mat,
        src: Mat,
        aux: Option<Mat>,
        len: usize,
    ) -> Result<()> {
        let params = SpatialParams {
            channels: idx(w.channels)?,
            height: idx(w.height)?,
            width: idx(w.width)?,
            kernel: idx(w.kernel)?,
            stride: idx(w.stride)?,
            padding: idx(w.padding)?,
            batch: idx(w.batch)?,
            out_h: idx(w.out_height())?,
            out_w: idx(w.out_width())?,
            len: idx(len)?,
            off0: idx(dst.offset)?,
            off1: idx(src.offset)?,
            off2: idx(aux.map_or(0, |m| m.offset))?,
            mode,
            // The host reference's scale, the same f32.
            scale: 1.0 / (w.kernel * w.kernel) as f32,
        };
        let groups = Self::elementwise_groups(len);
        let aux = aux.map_or(Operand::Unused, Operand::from);
        self.dispatch(kernel, &[dst.into(), src.into(), aux], &params, groups)
    }

    pub(super) fn record_im2col(&mut self, op: &Im2Col) -> Result<()> {
        op.check()?;
        self.check(&[op.patches], &[op.image])?;
        let len = op.patches.len();
        self.spatial_dispatch(
            Kernel::Im2Col,
            &op.window,
            0,
            op.patches,
            op.image,
            None,
            len,
        )
    }

    pub(super) fn record_col2im(&mut self, op: &Im2Col) -> Result<()> {
        op.check()?;
        self.check(&[op.image], &[op.patches])?;
        let len = op.image.len();
        self.spatial_dispatch(
            Kernel::Col2Im,
            &op.window,
            0,
            op.image,
            op.patches,
            None,
            len,
        )
    }

    pub(super) fn record_pool(&mut self, op: &Pool) -> Result<()> {
        op.check()?;
        match op.mode {
            PoolMode::Max => self.check(&[op.output, op.argmax], &[op.input])?,
            PoolMode::MaxAt => self.check(&[op.output], &[op.input, op.argmax])?,
            PoolMode::Avg => self.check(&[op.output], &[op.input])?,
        }
        let len = op.output.len();
        let (mode, argmax) = pool_mode(op);
        self.spatial_dispatch(
            Kernel::Pool,
            &op.window,
            mode,
            op.output,
            op.input,
            argmax,
            len,
        )
    }

    pub(super) fn record_unpool(&mut self, op: &Pool) -> Result<()> {
        op.check()?;
        let reads: Vec<Mat> = std::iter::once(op.output)
            .chain(op.argmax_reads())
            .collect();
        self.check(&[op.input], &reads)?;
        let len = op.input.len();
        let (mode, argmax) = pool_mode(op);
        self.spatial_dispatch(
            Kernel::Unpool,
            &op.window,
            mode,
            op.input,
            op.output,
            argmax,
            len,
        )
    }
}

/// The kernel's mode code (`MODE_*` in `spatial.wgsl`) and the argmax it binds (none
/// for average pooling, whose `argmax` may be any region, even an invalid one).
fn pool_mode(op: &Pool) -> (u32, Option<Mat>) {
    match op.mode {
        PoolMode::Max => (0, Some(op.argmax)),
        PoolMode::MaxAt => (1, Some(op.argmax)),
        PoolMode::Avg => (2, None),
    }
}
