//! Per-dispatch parameters (offsets, shapes, flags, scalars).
//!
//! A step records many dispatches with different parameters into one encoder, so each
//! dispatch's parameters get their own slot in one uniform buffer, at an offset aligned
//! to `min_uniform_buffer_offset_alignment`, and the dispatch binds it with a dynamic
//! offset. The slots are gathered on the host while recording and written with one
//! `write_buffer` just before the single submit (wgpu orders that write before the
//! submitted commands).

use crate::error::{Error, Result};

/// Bytes of an ordinary kernel's parameter binding: room for thirty-two 32-bit words
/// (the blocks of `blocks.rs` hold up to 18; the slots are 256-byte aligned anyway).
pub(crate) const BLOCK_BYTES: u64 = 128;

/// Layers one grouped layer-gradient dispatch can hold (its table fills one slot).
pub(crate) const MAX_GROUPED_LAYERS: usize = 64;

/// Bytes of the layer-gradient table: a 16-byte header and 48 bytes per layer.
pub(crate) const TABLE_BYTES: u64 = 16 + 48 * MAX_GROUPED_LAYERS as u64;

/// The host copy of this step's parameter slots.
pub(crate) struct ParamArena {
    bytes: Vec<u8>,
    align: usize,
}

impl ParamArena {
    /// An empty arena whose slots start at multiples of `align` bytes.
    pub fn new(align: u32) -> Self {
        ParamArena {
            bytes: Vec::new(),
            align: (align as usize).max(16),
        }
    }

    /// Appends one slot; returns its byte offset (the dynamic offset to bind).
    pub fn push(&mut self, data: &[u8]) -> Result<u32> {
        let start = self.bytes.len().next_multiple_of(self.align);
        let offset = u32::try_from(start)
            .map_err(|_| Error::Backend("too many dispatches recorded in one step".into()))?;
        self.bytes.resize(start, 0);
        self.bytes.extend_from_slice(data);
        Ok(offset)
    }

    /// Everything recorded. Each slot holds its binding's full size, so every
    /// dynamic offset plus binding size lies inside.
    pub fn contents(&self) -> &[u8] {
        &self.bytes
    }

    /// Whether nothing was recorded.
    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }

    /// Forgets every slot (after a submit).
    pub fn clear(&mut self) {
        self.bytes.clear();
    }
}
