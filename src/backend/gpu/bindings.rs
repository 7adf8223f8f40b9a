//! How one dispatch binds its operands, under WebGPU's rules for storage buffers.
//!
//! A dispatch binds the range of a buffer each operand occupies, not the whole buffer,
//! and obeys three rules that Dawn (and so every browser) enforces, though wgpu's
//! native backends check only the first:
//! 1. **Usage scope**: in one dispatch a buffer is read-only in all its bindings or
//!    writable in all of them.
//! 2. **No aliasing writes**: writable bindings of one buffer do not overlap.
//! 3. **Alignment**: a binding starts at a multiple of the device's
//!    `min_storage_buffer_offset_alignment`, and an `array<vec4<f32>>` binding's size is
//!    a multiple of 16 bytes.
//!
//! The shaders declare their inputs `read` and their outputs `read_write`. [`plan`]
//! keeps that where it can; an input whose buffer the same dispatch writes (a layer
//! reads `H_{l-1}` and writes `H_l`, both in the activation arena) is redeclared
//! `read_write` (a pipeline variant, see [`pipelines`](super::pipelines)), and where the
//! aligned ranges of one written buffer would still overlap, the operand is bound as a
//! copy in the backend's [`ALIAS`] buffer instead: copied in before the dispatch and,
//! if the dispatch writes it, back out after. The trainer's arenas keep every tensor on
//! a 256-byte boundary at the usual batch sizes, so a training step copies nothing
//! (tested); the copies make any other call correct, not fast.

use crate::backend::{BufId, Mat};
use crate::error::{Error, Result};

use super::buffers::{F32, SPARE};

/// Names the backend's buffer for operands bound as copies.
pub(crate) const ALIAS: BufId = BufId(usize::MAX - 2);

/// Bytes every binding's size is a multiple of (a `vec4<f32>`).
const VEC4: u64 = 16;

/// What a storage binding of a dispatch holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Operand {
    /// Elements `start..end` of a buffer (the floats the kernel may touch).
    Range {
        buf: BufId,
        start: usize,
        end: usize,
    },
    /// A binding the kernel declares but this call does not use.
    Unused,
}

impl From<Mat> for Operand {
    fn from(m: Mat) -> Self {
        Operand::Range {
            buf: m.buf,
            start: m.offset,
            end: m.offset + m.len(),
        }
    }
}

impl Operand {
    /// The smallest range holding every region of `mats` (all in one buffer).
    pub fn spanning(mats: &[Mat]) -> Result<Operand> {
        let first = mats
            .first()
            .ok_or_else(|| Error::Backend("a binding spans no region".into()))?;
        if let Some(other) = mats.iter().find(|m| m.buf != first.buf) {
            return Err(Error::Backend(format!(
                "one binding cannot span buffers {} and {}",
                first.buf.0, other.buf.0
            )));
        }
        Ok(Operand::Range {
            buf: first.buf,
            start: mats.iter().map(|m| m.offset).min().unwrap_or(0),
            end: mats.iter().map(|m| m.offset + m.len()).max().unwrap_or(0),
        })
    }
}

/// A byte range of a buffer, as bound.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct Bound {
    pub buf: BufId,
    pub offset: u64,
    pub size: u64,
}

impl Bound {
    fn end(self) -> u64 {
        self.offset + self.size
    }

    fn overlaps(self, other: Bound) -> bool {
        self.buf == other.buf && self.offset < other.end() && other.offset < self.end()
    }
}

/// A copy between two buffers, in bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct CopyRange {
    pub src: BufId,
    pub src_offset: u64,
    pub dst: BufId,
    pub dst_offset: u64,
    pub size: u64,
}

/// How one dispatch binds its operands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Plan {
    /// Storage bindings `1..`, in order.
    pub bound: Vec<Bound>,
    /// Bit `i`: binding `i + 1` is declared `read_write`.
    pub writable: u32,
    /// The element each binding starts at, in its operand's own buffer: what the
    /// kernel parameters' offsets are made relative to.
    pub bases: Vec<u32>,
    /// Copies into [`ALIAS`] before the dispatch.
    pub before: Vec<CopyRange>,
    /// Copies out of [`ALIAS`] after it.
    pub after: Vec<CopyRange>,
    /// Bytes of [`ALIAS`] the plan uses.
    pub alias_bytes: u64,
}

/// Bytes of the backend's [`SPARE`] buffer that unused bindings need: one aligned slot
/// each for up to `bindings` of them.
pub(crate) fn spare_bytes(bindings: usize, align: u64) -> u64 {
    bindings as u64 * align.max(VEC4)
}

/// Plans the bindings of `operands` for a kernel whose bindings in `outputs` (bit `i`
/// for binding `i + 1`) are declared `read_write`. `align` is the device's
/// `min_storage_buffer_offset_alignment`; `bytes_of` gives a buffer's size (a multiple
/// of 16 bytes).
pub(crate) fn plan(
    operands: &[Operand],
    outputs: u32,
    align: u64,
    bytes_of: impl Fn(BufId) -> Result<u64>,
) -> Result<Plan> {
    let align = align.max(VEC4);
    let mut bound = Vec::with_capacity(operands.len());
    let mut bases = Vec::with_capacity(operands.len());
    // The exact byte range each operand occupies (for copying a written one back).
    let mut exact = Vec::with_capacity(operands.len());
    for (i, op) in operands.iter().enumerate() {
        match *op {
            // An empty region is never read or written (a product with k = 0 reads no
            // factor): bound like an unused binding, whatever its offset.
            Operand::Range { buf, start, end } if end > start => {
                let lo = start as u64 * F32;
                let hi = end as u64 * F32;
                let offset = lo / align * align;
                let end = hi.next_multiple_of(VEC4).min(bytes_of(buf)?);
                bound.push(Bound {
                    buf,
                    offset,
                    size: end - offset,
                });
                bases.push(offset_elements(offset)?);
                exact.push((lo, hi));
            }
            Operand::Range { .. } | Operand::Unused => {
                bound.push(Bound {
                    buf: SPARE,
                    offset: i as u64 * align,
                    size: VEC4,
                });
                bases.push(0);
                exact.push((0, 0));
            }
        }
    }
    let mut plan = Plan {
        writable: 0,
        bound,
        bases,
        before: Vec::new(),
        after: Vec::new(),
        alias_bytes: 0,
    };
    loop {
        plan.writable = writable_mask(&plan.bound, outputs);
        let Some(victim) = first_conflict(&plan.bound, plan.writable, outputs) else {
            return Ok(plan);
        };
        let was = plan.bound[victim];
        let copy = Bound {
            buf: ALIAS,
            offset: plan.alias_bytes,
            size: was.size,
        };
        plan.alias_bytes += was.size.next_multiple_of(align);
        plan.before.push(CopyRange {
            src: was.buf,
            src_offset: was.offset,
            dst: ALIAS,
            dst_offset: copy.offset,
            size: was.size,
        });
        if outputs & (1 << victim) != 0 {
            // Back exactly the floats it owns: the rest of its aligned range may be
            // another operand's.
            let (lo, hi) = exact[victim];
            plan.after.push(CopyRange {
                src: ALIAS,
                src_offset: copy.offset + (lo - was.offset),
                dst: was.buf,
                dst_offset: lo,
                size: hi - lo,
            });
        }
        plan.bound[victim] = copy;
    }
}

fn offset_elements(bytes: u64) -> Result<u32> {
    u32::try_from(bytes / F32)
        .map_err(|_| Error::Backend(format!("binding offset {bytes} exceeds u32 elements")))
}

/// Rule 1: a binding is writable if its kernel writes it, or writes its buffer
/// through another binding.
fn writable_mask(bound: &[Bound], outputs: u32) -> u32 {
    let written = |buf: BufId| {
        bound
            .iter()
            .enumerate()
            .any(|(i, b)| outputs & (1 << i) != 0 && b.buf == buf)
    };
    bound
        .iter()
        .enumerate()
        .filter(|&(i, b)| outputs & (1 << i) != 0 || written(b.buf))
        .fold(0, |mask, (i, _)| mask | 1 << i)
}

/// Rule 2: of the first two overlapping writable bindings, the one to bind as a copy
/// (an input rather than an output where there is a choice: it needs no copy back).
fn first_conflict(bound: &[Bound], writable: u32, outputs: u32) -> Option<usize> {
    let is_writable = |i: usize| writable & (1 << i) != 0;
    for i in 0..bound.len() {
        for j in i + 1..bound.len() {
            if is_writable(i) && is_writable(j) && bound[i].overlaps(bound[j]) {
                return Some(if outputs & (1 << i) == 0 { i } else { j });
            }
        }
    }
    None
}

/// Checks a plan against the three rules (the encoder runs it on every new bind
/// group, so a planning mistake is an error, not a device loss on another backend).
pub(crate) fn check(bound: &[Bound], writable: u32, align: u64) -> Result<()> {
    let align = align.max(VEC4);
    let is_writable = |i: usize| writable & (1 << i) != 0;
    for (i, b) in bound.iter().enumerate() {
        if b.offset % align != 0 || b.size == 0 || b.size % VEC4 != 0 {
            return Err(Error::Backend(format!(
                "binding {} of buffer {} at byte {} (+{}) breaks the alignment rules",
                i + 1,
                b.buf.0,
                b.offset,
                b.size
            )));
        }
        for (j, c) in bound.iter().enumerate().skip(i + 1) {
            if b.buf != c.buf {
                continue;
            }
            if is_writable(i) != is_writable(j) {
                return Err(Error::Backend(format!(
                    "bindings {} and {} use buffer {} read-only and writable at once",
                    i + 1,
                    j + 1,
                    b.buf.0
                )));
            }
            if is_writable(i) && b.overlaps(*c) {
                return Err(Error::Backend(format!(
                    "writable bindings {} and {} overlap in buffer {}",
                    i + 1,
                    j + 1,
                    b.buf.0
                )));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: BufId = BufId(0);
    const B: BufId = BufId(1);

    fn bound(buf: BufId, offset: u64, size: u64) -> Bound {
        Bound { buf, offset, size }
    }

    fn range(buf: BufId, start: usize, end: usize) -> Operand {
        Operand::Range { buf, start, end }
    }

    fn planned(operands: &[Operand], outputs: u32, align: u64) -> Plan {
        let plan = plan(operands, outputs, align, |_| Ok(1 << 20)).expect("plans");
        check(&plan.bound, plan.writable, align).expect("obeys the rules");
        plan
    }

    #[test]
    fn inputs_in_unwritten_buffers_stay_read_only_and_may_overlap() {
        // C in A; both factors the same region of B.
        let p = planned(&[range(A, 0, 64), range(B, 3, 99), range(B, 3, 99)], 1, 256);
        assert_eq!(p.writable, 0b001);
        assert!(p.before.is_empty() && p.after.is_empty());
        assert_eq!(p.bound[1], bound(B, 0, 400));
        assert_eq!(p.bases, vec![0, 0, 0]);
    }

    #[test]
    fn an_input_sharing_the_written_buffer_becomes_writable_on_its_own_range() {
        // A layer reading H_{l-1} (elements 0..128) and writing H_l (128..256).
        let p = planned(&[range(A, 128, 256), range(A, 0, 128)], 1, 256);
        assert_eq!(p.writable, 0b11);
        assert!(p.before.is_empty());
        assert_eq!(p.bound[0], bound(A, 512, 512));
        assert_eq!(p.bases, vec![128, 0]);
    }

    #[test]
    fn an_input_within_the_alignment_of_the_output_is_bound_as_a_copy() {
        // Output 10..20 and input 20..30 share the first 256 bytes.
        let p = planned(&[range(A, 10, 20), range(A, 20, 30)], 1, 256);
        assert_eq!(p.bound[1].buf, ALIAS);
        assert_eq!(p.writable & 0b10, 0, "the copy is read-only");
        assert_eq!(
            p.before,
            vec![CopyRange {
                src: A,
                src_offset: 0,
                dst: ALIAS,
                dst_offset: 0,
                size: 128
            }]
        );
        assert!(p.after.is_empty(), "an input is not copied back");
        // The copy keeps the layout: offsets stay relative to the aligned start.
        assert_eq!(p.bases, vec![0, 0]);
    }

    #[test]
    fn two_outputs_within_the_alignment_of_each_other_copy_one_back() {
        let p = planned(&[range(A, 0, 10), range(A, 10, 21)], 0b11, 64);
        assert_eq!(p.bound[1], bound(ALIAS, 0, 96));
        assert_eq!(p.before.len(), 1);
        // Back only floats 10..21 (bytes 40..84), not the whole aligned range.
        assert_eq!(
            p.after,
            vec![CopyRange {
                src: ALIAS,
                src_offset: 40,
                dst: A,
                dst_offset: 40,
                size: 44
            }]
        );
    }

    #[test]
    fn unused_bindings_get_disjoint_slots_of_the_spare_buffer() {
        let p = planned(
            &[range(A, 0, 4), Operand::Unused, Operand::Unused],
            0b111,
            256,
        );
        assert_eq!(p.bound[1], bound(SPARE, 256, 16));
        assert_eq!(p.bound[2], bound(SPARE, 512, 16));
        assert!(p.before.is_empty());
        assert!(spare_bytes(3, 256) >= p.bound[2].offset + p.bound[2].size);
    }

    #[test]
    fn an_empty_region_is_bound_like_an_unused_one_even_at_its_buffer_end() {
        let p = plan(&[range(A, 0, 4), range(A, 64, 64)], 1, 256, |_| Ok(256)).expect("plans");
        assert_eq!(p.bound[1], bound(SPARE, 256, 16));
        check(&p.bound, p.writable, 256).expect("obeys the rules");
    }

    #[test]
    fn the_check_rejects_each_broken_rule() {
        assert!(check(&[bound(A, 0, 64), bound(A, 64, 64)], 0b11, 64).is_ok());
        assert!(
            check(&[bound(A, 0, 64), bound(A, 32, 64)], 0b11, 16).is_err(),
            "overlap"
        );
        assert!(
            check(&[bound(A, 0, 64), bound(A, 64, 64)], 0b01, 64).is_err(),
            "mixed usage"
        );
        assert!(check(&[bound(A, 16, 64)], 0b1, 256).is_err(), "misaligned");
        assert!(
            check(&[bound(A, 0, 20)], 0b1, 256).is_err(),
            "size not a vec4 multiple"
        );
        // Read-only bindings may overlap.
        assert!(check(&[bound(A, 0, 64), bound(A, 0, 64)], 0, 256).is_ok());
    }

    #[test]
    fn a_range_ends_on_a_vec4_boundary_inside_its_buffer() {
        let p = plan(&[range(A, 0, 5)], 1, 256, |_| Ok(32)).expect("plans");
        assert_eq!(p.bound[0].size, 32);
        assert!(plan(&[range(A, 0, 5)], 1, 256, |_| Err(Error::Backend(
            "gone".into()
        )))
        .is_err());
    }
}
