//! Device buffers named by [`BufId`], their allocation against the device's limits,
//! and the region checks every call makes before recording anything.

use super::bindings::ALIAS;
use super::context::Context;
use crate::backend::regions::validate;
use crate::backend::{BufId, Mat};
use crate::error::{Error, Result};

/// Bytes per element: every buffer holds `f32`.
pub(crate) const F32: u64 = 4;

/// Bytes of a `vec4<f32>`: every buffer's size is a multiple of it.
const VEC4: u64 = 16;

/// One allocation.
pub(crate) struct GpuBuf {
    pub buffer: wgpu::Buffer,
    /// Length in floats.
    pub len: usize,
}

/// All buffers of a backend.
#[derive(Default)]
pub(crate) struct Buffers {
    /// `None` once released.
    bufs: Vec<Option<GpuBuf>>,
    /// The backend's own zeroed words (see [`SPARE`]).
    spare: Option<GpuBuf>,
    /// Split-K partial products (see [`SCRATCH`]), grown on demand.
    scratch: Option<GpuBuf>,
    /// Operands bound as copies (see [`ALIAS`]), grown on demand.
    alias: Option<GpuBuf>,
}

/// Names the backend's scratch buffer for split-K partial products.
pub(crate) const SCRATCH: BufId = BufId(usize::MAX - 1);

/// Names the backend's own buffer of zeroed words, outside the ids it hands out (so
/// every backend numbers the caller's buffers alike), for bindings a kernel declares
/// but a call does not use (each in its own aligned slot, see
/// [`spare_bytes`](super::bindings::spare_bytes)).
pub(crate) const SPARE: BufId = BufId(usize::MAX);

impl Buffers {
    /// Allocates a zeroed buffer of `len` floats, checked against the device's limits.
    pub fn alloc(&mut self, ctx: &Context, len: usize) -> Result<BufId> {
        let buf = Self::create(ctx, len)?;
        self.bufs.push(Some(buf));
        Ok(BufId(self.bufs.len() - 1))
    }

    /// Creates the [`SPARE`] buffer of `len` floats.
    pub fn alloc_spare(&mut self, ctx: &Context, len: usize) -> Result<()> {
        self.spare = Some(Self::create(ctx, len)?);
        Ok(())
    }

    fn create(ctx: &Context, len: usize) -> Result<GpuBuf> {
        // Zero-sized bindings are invalid: keep at least one element. Round up to a
        // multiple of 16 bytes so the GEMM family can bind any buffer as
        // `array<vec4<f32>>` too, and a vec4 holding a region's last float lies inside.
        let bytes = (len.max(1) as u64)
            .saturating_mul(F32)
            .saturating_add(VEC4 - 1)
            / VEC4
            * VEC4;
        let what = || format!("a buffer of {len} floats");
        let limits = [
            ("max_buffer_size", ctx.limits.max_buffer_size),
            (
                "max_storage_buffer_binding_size",
                ctx.limits.max_storage_buffer_binding_size,
            ),
            // Shaders index elements with u32.
            ("u32 element index range", F32 * u64::from(u32::MAX)),
        ];
        for (limit_name, limit) in limits {
            if bytes > limit {
                return Err(Error::BufferTooLarge {
                    what: what(),
                    bytes,
                    limit_name,
                    limit,
                });
            }
        }
        let buffer = ctx.scoped(|| {
            ctx.device.create_buffer(&wgpu::BufferDescriptor {
                label: Some("plasticity buffer"),
                size: bytes,
                usage: wgpu::BufferUsages::STORAGE
                    | wgpu::BufferUsages::COPY_SRC
                    | wgpu::BufferUsages::COPY_DST,
                // wgpu zero-initialises buffers.
                mapped_at_creation: false,
            })
        })?;
        Ok(GpuBuf { buffer, len })
    }

    /// The buffer `id` names.
    pub fn get(&self, id: BufId) -> Result<&GpuBuf> {
        self.find(id)
            .ok_or_else(|| Error::Backend(format!("buffer {} does not exist", id.0)))
    }

    /// Makes the backend's growable buffer `id` ([`SCRATCH`] or [`ALIAS`]) hold at
    /// least `len` floats; returns whether it was replaced (bind groups holding the old
    /// one must go; recorded work names it by id, so it all binds the new one).
    pub fn ensure(&mut self, ctx: &Context, id: BufId, len: usize) -> Result<bool> {
        let slot = match id {
            SCRATCH => &mut self.scratch,
            ALIAS => &mut self.alias,
            _ => return Err(Error::Backend(format!("buffer {} does not grow", id.0))),
        };
        if slot.as_ref().is_some_and(|s| s.len >= len) {
            return Ok(false);
        }
        let grown = slot.as_ref().map_or(0, |s| s.len.saturating_mul(2));
        *slot = Some(Self::create(ctx, len.max(grown))?);
        Ok(true)
    }

    /// The size of buffer `id` in bytes (a multiple of 16).
    pub fn bytes_of(&self, id: BufId) -> Result<u64> {
        Ok(self.get(id)?.buffer.size())
    }

    fn find(&self, id: BufId) -> Option<&GpuBuf> {
        match id {
            SPARE => self.spare.as_ref(),
            SCRATCH => self.scratch.as_ref(),
            ALIAS => self.alias.as_ref(),
            _ => self.bufs.get(id.0).and_then(Option::as_ref),
        }
    }

    /// Frees buffer `id` (the device memory goes once no command uses it).
    pub fn release(&mut self, id: BufId) -> Result<()> {
        match self.bufs.get_mut(id.0).and_then(Option::take) {
            // Dropped, not destroyed: submitted work may still use it.
            Some(_) => Ok(()),
            None => Err(Error::Backend(format!("buffer {} does not exist", id.0))),
        }
    }

    /// Checks every region lies in its buffer and no written region overlaps another
    /// region of the same call (the same rules as the CPU backend).
    pub fn check(&self, writes: &[Mat], reads: &[Mat]) -> Result<()> {
        validate(writes, reads, |id| self.find(id).map(|b| b.len))
    }
}

/// An element index or count as the shaders take it (buffers are checked to fit u32
/// indices at allocation, so this only fails on regions that are already invalid).
pub(crate) fn idx(v: usize) -> Result<u32> {
    u32::try_from(v).map_err(|_| Error::Backend(format!("index {v} exceeds u32")))
}
