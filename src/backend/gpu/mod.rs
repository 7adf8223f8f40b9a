//! The GPU backend: wgpu compute shaders (Vulkan, Metal, DX12, GL).
//!
//! Every [`Backend`](super::Backend) call validates its regions on the host and records its work; the
//! work runs at [`Backend::flush`](super::Backend::flush) (one command encoder, one submit per training step)
//! or when a buffer is read back. Nothing is read back unless asked: loss and accuracy
//! accumulate on the device.
//!
//! Layout of the module: `context` (adapter, device, limits, error capture),
//! `pipelines` (kernels compiled once), `buffers` (allocation, region checks),
//! `params` (per-dispatch parameter slots), `encode` (recording and submitting),
//! `kernels` (the [`Backend`](super::Backend) operations), `spatial` (the conv-net ones:
//! im2col, col2im, pooling). The WGSL lives in `shaders/`.

mod bindings;
mod blocks;
mod buffers;
mod context;
mod encode;
mod kernels;
mod params;
mod pipelines;
mod spatial;

use buffers::{Buffers, F32};
use context::Context;
use encode::{Op, Recorder};
use pipelines::Pipelines;

pub use context::{adapters, AdapterSummary};
pub use encode::GpuCounters;

use super::{BufId, Mat};
use crate::error::{Error, Result};

/// Runs training steps on a GPU through wgpu.
pub struct GpuBackend {
    ctx: Context,
    pipelines: Pipelines,
    bufs: Buffers,
    rec: Recorder,
    /// Read-back buffer, grown to the largest read so far.
    staging: Option<wgpu::Buffer>,
    /// Forces one GEMM kernel (see [`GpuBackend::force_gemm_kernel`]).
    gemm_override: Option<GemmKernel>,
    /// Forces split-K (see [`GpuBackend::force_split_k`]).
    split_override: Option<usize>,
}

/// The GEMM kernels, by output tile (see `gemm_dispatch` in `kernels.rs` for which one
/// a product gets). Only for [`GpuBackend::force_gemm_kernel`]: tests and benchmarks.
#[doc(hidden)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum GemmKernel {
    /// 32x32 output tiles, 8x8 invocations of 4x4 outputs (`shaders/gemm.wgsl`, for
    /// skinny and small products).
    Tile32,
    /// 64x64 output tiles, 16x16 invocations of 4x4 outputs (`shaders/gemm.wgsl`).
    Tile64,
    /// 128x128 output tiles, 16x16 invocations of 8x8 outputs
    /// (`shaders/gemm_wide.wgsl`, for large products).
    Tile128,
}

impl std::fmt::Debug for GpuBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GpuBackend")
            .field("adapter", &self.ctx.info.name)
            .field("counters", &self.rec.counters)
            .finish()
    }
}

impl GpuBackend {
    /// Opens the best adapter (see [`adapters`]), a software one if nothing better
    /// exists. Probes Vulkan, Metal and DX12 first and OpenGL only when they offer no
    /// adapter (`WGPU_BACKEND`, when set, names the backends instead). Fails with
    /// [`Error::NoAdapter`] when there is none.
    pub fn new() -> Result<GpuBackend> {
        Self::open(None)
    }

    /// Opens adapter `index` of [`adapters`]'s list.
    pub fn with_adapter(index: usize) -> Result<GpuBackend> {
        Self::open(Some(index))
    }

    fn open(index: Option<usize>) -> Result<GpuBackend> {
        let ctx = Context::open(index)?;
        let pipelines = Pipelines::build(&ctx)?;
        let rec = Recorder::new(&ctx);
        let mut bufs = Buffers::default();
        let align = u64::from(ctx.limits.min_storage_buffer_offset_alignment);
        let spare = bindings::spare_bytes(pipelines::MAX_STORAGE_BINDINGS, align) / F32;
        bufs.alloc_spare(&ctx, spare as usize)?;
        Ok(GpuBackend {
            ctx,
            pipelines,
            bufs,
            rec,
            staging: None,
            gemm_override: None,
            split_override: None,
        })
    }

    /// Compute dispatches recorded since the backend was created (divide a difference
    /// by the steps taken for dispatches per step).
    pub fn dispatch_count(&self) -> u64 {
        self.rec.counters.dispatches()
    }

    /// Testing and benchmarking knob: `Some(kernel)` runs every GEMM on that kernel,
    /// `None` (the default) picks by output size. Results are the same, bit for bit,
    /// on every kernel.
    #[doc(hidden)]
    pub fn force_gemm_kernel(&mut self, kernel: Option<GemmKernel>) {
        self.gemm_override = kernel;
    }

    /// Testing and benchmarking knob: `Some(s)` splits every 32x32- or 64x64-tile GEMM
    /// over K into up to `s` slices (1: never), `None` (the default) splits skinny
    /// products on hardware GPUs only. Split products sum in another order: within the
    /// same error bound, not the same bits.
    #[doc(hidden)]
    pub fn force_split_k(&mut self, slices: Option<usize>) {
        self.split_override = slices;
    }

    /// Command buffers submitted since the backend was created.
    pub fn submit_count(&self) -> u64 {
        self.rec.counters.submits()
    }

    /// A handle on the dispatch and submit totals that stays valid after the backend
    /// is moved into a [`Trainer`](crate::Trainer).
    pub fn counters(&self) -> GpuCounters {
        self.rec.counters.clone()
    }

    /// The adapter's name as its driver reports it.
    pub fn adapter_name(&self) -> &str {
        &self.ctx.info.name
    }

    /// Whether the adapter is a software rasteriser (lavapipe, llvmpipe, WARP).
    pub fn is_software(&self) -> bool {
        self.ctx.info.device_type == wgpu::DeviceType::Cpu
    }

    /// Blocks until every submitted command buffer has finished.
    fn wait_idle(&self) -> Result<()> {
        self.ctx
            .device
            .poll(wgpu::PollType::wait_indefinitely())
            .map_err(|e| Error::DeviceLost(format!("waiting for the GPU: {e}")))?;
        self.ctx.errors.take()
    }

    fn submit(&mut self) -> Result<()> {
        self.ctx.errors.take()?;
        self.rec.flush(&self.ctx, &self.pipelines, &self.bufs)
    }

    /// A read-back buffer of at least `bytes`.
    fn staging(&mut self, bytes: u64) -> Result<wgpu::Buffer> {
        if let Some(buf) = self.staging.as_ref().filter(|b| b.size() >= bytes) {
            return Ok(buf.clone());
        }
        let ctx = &self.ctx;
        let buf = ctx.scoped(|| {
            ctx.device.create_buffer(&wgpu::BufferDescriptor {
                label: Some("plasticity read-back"),
                size: bytes.next_power_of_two(),
                usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
                mapped_at_creation: false,
            })
        })?;
        self.staging = Some(buf.clone());
        Ok(buf)
    }

    /// Copies `len` floats of `buf` from `offset` to the host, after all recorded work.
    fn read_back(&mut self, buf: BufId, offset: usize, len: usize) -> Result<Vec<f32>> {
        let bytes = len as u64 * F32;
        let staging = self.staging(bytes)?;
        self.rec.push(Op::Copy {
            src: self.bufs.get(buf)?.buffer.clone(),
            src_offset: offset as u64 * F32,
            dst: staging.clone(),
            dst_offset: 0,
            size: bytes,
        });
        self.submit()?;
        let (tx, rx) = std::sync::mpsc::channel();
        staging.map_async(wgpu::MapMode::Read, 0..bytes, move |r| {
            // The receiver outlives the poll below; a send error cannot happen.
            let _ = tx.send(r);
        });
        self.wait_idle()?;
        self.rec.counters.add_read_back(bytes);
        rx.recv()
            .map_err(|_| Error::Backend("read-back was never completed".into()))?
            .map_err(|e| Error::Backend(format!("cannot map the read-back buffer: {e}")))?;
        let values = {
            let view = staging
                .get_mapped_range(0..bytes)
                .map_err(|e| Error::Backend(format!("cannot read the mapped buffer: {e}")))?;
            view.chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect()
        };
        staging.unmap();
        Ok(values)
    }

    /// Uploads `data` to `buf` from `offset`, ordered after everything recorded.
    fn upload(&mut self, buf: BufId, offset: usize, data: &[f32]) -> Result<()> {
        let target = self.bufs.get(buf)?.buffer.clone();
        let bytes: &[u8] = bytemuck::cast_slice(data);
        self.rec.counters.add_uploaded(bytes.len() as u64);
        if self.rec.is_empty() {
            // Runs before the next submit, after the previous ones: in order.
            self.ctx
                .queue
                .write_buffer(&target, offset as u64 * F32, bytes);
            return Ok(());
        }
        // Recorded work may still read the old contents (evaluation records several
        // batches before one submit): stage the data and copy it in order.
        use wgpu::util::DeviceExt;
        let ctx = &self.ctx;
        let src = ctx.scoped(|| {
            ctx.device
                .create_buffer_init(&wgpu::util::BufferInitDescriptor {
                    label: Some("plasticity upload"),
                    contents: bytes,
                    usage: wgpu::BufferUsages::COPY_SRC,
                })
        })?;
        self.rec.push(Op::Copy {
            src,
            src_offset: 0,
            dst: target,
            dst_offset: offset as u64 * F32,
            size: bytes.len() as u64,
        });
        Ok(())
    }

    fn check(&self, writes: &[Mat], reads: &[Mat]) -> Result<()> {
        self.ctx.errors.take()?;
        self.bufs.check(writes, reads)
    }
}

/// Whether the native APIs (or the backends `WGPU_BACKEND` names) offer an adapter,
/// and whether the best one is real hardware. OpenGL is not probed.
pub(crate) fn best_adapter_is_hardware() -> Option<bool> {
    context::summaries(context::Probe::NativeOnly)
        .first()
        .map(|a| a.hardware)
}
