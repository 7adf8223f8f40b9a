//! Recording a step's work and submitting it once.
//!
//! Backend calls append [`Op`]s and parameter slots; [`Recorder::flush`] writes the
//! parameter slots with one `write_buffer`, encodes every op into ONE command encoder
//! (consecutive dispatches share one compute pass; wgpu inserts the barriers between
//! dispatches that touch the same buffer) and submits it once.

use std::collections::hash_map::Entry;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use super::bindings::{check, Bound, CopyRange};
use super::buffers::Buffers;
use super::context::Context;
use super::params::ParamArena;
use super::pipelines::{Kernel, Pipelines};
use crate::backend::BufId;
use crate::error::Result;

/// One recorded command.
pub(crate) enum Op {
    /// A compute dispatch: storage ranges bound at `1..` (those in `writable` as
    /// `read_write`, see [`bindings`](super::bindings)), parameters at `param_offset`.
    Dispatch {
        kernel: Kernel,
        writable: u32,
        bound: Vec<Bound>,
        param_offset: u32,
        groups: [u32; 3],
    },
    /// A copy between two of the backend's buffers (an operand bound as a copy).
    CopyWithin(CopyRange),
    /// A buffer copy (staged uploads, read-backs), in bytes.
    Copy {
        src: wgpu::Buffer,
        src_offset: u64,
        dst: wgpu::Buffer,
        dst_offset: u64,
        size: u64,
    },
    /// Zeroes a byte range of a buffer.
    Clear { buf: BufId, offset: u64, size: u64 },
}

type BindKey = (Kernel, u32, Vec<Bound>);

/// Bind groups kept between submits. A training run needs a few per layer and batch
/// size; a caller binding ever-new ranges (say, a random slice each step) would
/// otherwise grow the cache without end, so past this it starts over.
const MAX_CACHED_BIND_GROUPS: usize = 4096;

/// The work recorded since the last submit.
pub(crate) struct Recorder {
    ops: Vec<Op>,
    pub params: ParamArena,
    param_buf: Option<wgpu::Buffer>,
    /// Bind groups depend only on the kernel and the ranges bound (the parameter slot
    /// is a dynamic offset), so a training run creates each once.
    bind_groups: HashMap<BindKey, wgpu::BindGroup>,
    pub counters: GpuCounters,
}

/// Running totals of a [`GpuBackend`](super::GpuBackend)'s work, readable after the
/// backend has been boxed into a [`Trainer`](crate::Trainer) (clones share them).
#[derive(Debug, Clone, Default)]
pub struct GpuCounters {
    dispatches: Arc<AtomicU64>,
    submits: Arc<AtomicU64>,
    uploaded: Arc<AtomicU64>,
    parameters: Arc<AtomicU64>,
    read_back: Arc<AtomicU64>,
    aliased: Arc<AtomicU64>,
}

impl GpuCounters {
    /// Every total at once.
    pub fn snapshot(&self) -> crate::backend::WorkCounters {
        crate::backend::WorkCounters {
            submits: self.submits(),
            dispatches: self.dispatches(),
            bytes_uploaded: self.uploaded.load(Ordering::Relaxed),
            bytes_parameters: self.parameters.load(Ordering::Relaxed),
            bytes_read_back: self.read_back.load(Ordering::Relaxed),
            bytes_aliased: self.aliased.load(Ordering::Relaxed),
        }
    }

    pub(crate) fn add_uploaded(&self, bytes: u64) {
        self.uploaded.fetch_add(bytes, Ordering::Relaxed);
    }

    pub(crate) fn add_aliased(&self, bytes: u64) {
        self.aliased.fetch_add(bytes, Ordering::Relaxed);
    }

    pub(crate) fn add_read_back(&self, bytes: u64) {
        self.read_back.fetch_add(bytes, Ordering::Relaxed);
    }

    /// Compute dispatches recorded so far.
    pub fn dispatches(&self) -> u64 {
        self.dispatches.load(Ordering::Relaxed)
    }

    /// Command buffers submitted so far.
    pub fn submits(&self) -> u64 {
        self.submits.load(Ordering::Relaxed)
    }
}

impl Recorder {
    pub fn new(ctx: &Context) -> Self {
        Recorder {
            ops: Vec::new(),
            params: ParamArena::new(ctx.limits.min_uniform_buffer_offset_alignment),
            param_buf: None,
            bind_groups: HashMap::new(),
            counters: GpuCounters::default(),
        }
    }

    /// Drops the bind groups that hold `buf` (before it is released).
    pub fn forget(&mut self, buf: BufId) {
        self.bind_groups
            .retain(|(_, _, bound), _| bound.iter().all(|b| b.buf != buf));
    }

    /// Whether anything waits for a submit.
    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }

    /// Appends a command.
    pub fn push(&mut self, op: Op) {
        if matches!(op, Op::Dispatch { .. }) {
            self.counters.dispatches.fetch_add(1, Ordering::Relaxed);
        }
        self.ops.push(op);
    }

    /// Encodes and submits everything recorded (nothing if nothing was).
    pub fn flush(&mut self, ctx: &Context, pipelines: &Pipelines, bufs: &Buffers) -> Result<()> {
        if self.ops.is_empty() {
            return Ok(());
        }
        let result = self.submit(ctx, pipelines, bufs);
        self.ops.clear();
        self.params.clear();
        result
    }

    fn submit(&mut self, ctx: &Context, pipelines: &Pipelines, bufs: &Buffers) -> Result<()> {
        let param_buf = self.param_buffer(ctx)?;
        if !self.params.is_empty() {
            let bytes = self.params.contents();
            ctx.queue.write_buffer(&param_buf, 0, bytes);
            self.counters
                .parameters
                .fetch_add(bytes.len() as u64, Ordering::Relaxed);
        }
        if self.bind_groups.len() > MAX_CACHED_BIND_GROUPS {
            self.bind_groups.clear();
        }
        for op in &self.ops {
            if let Op::Dispatch {
                kernel,
                writable,
                bound,
                ..
            } = op
            {
                let key = (*kernel, *writable, bound.clone());
                if let Entry::Vacant(slot) = self.bind_groups.entry(key) {
                    let layout = &pipelines.require(*kernel, *writable)?.layout;
                    let align = u64::from(ctx.limits.min_storage_buffer_offset_alignment);
                    check(bound, *writable, align)?;
                    slot.insert(bind_group(ctx, layout, bufs, &param_buf, *kernel, bound)?);
                }
            }
        }
        let mut encoder = ctx
            .device
            .create_command_encoder(&wgpu::CommandEncoderDescriptor {
                label: Some("plasticity step"),
            });
        let mut i = 0;
        while i < self.ops.len() {
            match &self.ops[i] {
                Op::Dispatch { .. } => {
                    let mut pass = encoder.begin_compute_pass(&wgpu::ComputePassDescriptor {
                        label: Some("plasticity kernels"),
                        timestamp_writes: None,
                    });
                    while let Some(Op::Dispatch {
                        kernel,
                        writable,
                        bound,
                        param_offset,
                        groups,
                    }) = self.ops.get(i)
                    {
                        let group = &self.bind_groups[&(*kernel, *writable, bound.clone())];
                        pass.set_pipeline(&pipelines.require(*kernel, *writable)?.pipeline);
                        pass.set_bind_group(0, group, &[*param_offset]);
                        pass.dispatch_workgroups(groups[0], groups[1], groups[2]);
                        i += 1;
                    }
                }
                Op::Copy {
                    src,
                    src_offset,
                    dst,
                    dst_offset,
                    size,
                } => {
                    encoder.copy_buffer_to_buffer(src, *src_offset, dst, *dst_offset, *size);
                    i += 1;
                }
                Op::CopyWithin(c) => {
                    let (src, dst) = (&bufs.get(c.src)?.buffer, &bufs.get(c.dst)?.buffer);
                    encoder.copy_buffer_to_buffer(src, c.src_offset, dst, c.dst_offset, c.size);
                    i += 1;
                }
                Op::Clear { buf, offset, size } => {
                    encoder.clear_buffer(&bufs.get(*buf)?.buffer, *offset, Some(*size));
                    i += 1;
                }
            }
        }
        ctx.scoped(|| ctx.queue.submit([encoder.finish()]))?;
        self.counters.submits.fetch_add(1, Ordering::Relaxed);
        ctx.errors.take()
    }

    /// The uniform buffer holding the parameter slots, grown to fit this step's.
    fn param_buffer(&mut self, ctx: &Context) -> Result<wgpu::Buffer> {
        let needed = (self.params.contents().len() as u64).max(4096);
        match &self.param_buf {
            Some(buf) if buf.size() >= needed => Ok(buf.clone()),
            _ => {
                let size = needed.next_power_of_two();
                let buf = ctx.scoped(|| {
                    ctx.device.create_buffer(&wgpu::BufferDescriptor {
                        label: Some("plasticity params"),
                        size,
                        usage: wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST,
                        mapped_at_creation: false,
                    })
                })?;
                // Old bind groups point at the old buffer.
                self.bind_groups.clear();
                self.param_buf = Some(buf.clone());
                Ok(buf)
            }
        }
    }
}

fn bind_group(
    ctx: &Context,
    layout: &wgpu::BindGroupLayout,
    bufs: &Buffers,
    param_buf: &wgpu::Buffer,
    kernel: Kernel,
    bound: &[Bound],
) -> Result<wgpu::BindGroup> {
    let mut entries = vec![wgpu::BindGroupEntry {
        binding: 0,
        resource: wgpu::BindingResource::Buffer(wgpu::BufferBinding {
            buffer: param_buf,
            offset: 0,
            size: wgpu::BufferSize::new(kernel.param_bytes()),
        }),
    }];
    for (i, b) in bound.iter().enumerate() {
        entries.push(wgpu::BindGroupEntry {
            binding: i as u32 + 1,
            resource: wgpu::BindingResource::Buffer(wgpu::BufferBinding {
                buffer: &bufs.get(b.buf)?.buffer,
                offset: b.offset,
                size: wgpu::BufferSize::new(b.size),
            }),
        });
    }
    ctx.scoped(|| {
        ctx.device.create_bind_group(&wgpu::BindGroupDescriptor {
            label: Some("plasticity bind group"),
            layout,
            entries: &entries,
        })
    })
}
