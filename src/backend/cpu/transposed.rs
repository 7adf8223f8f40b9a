//! Transposed copies of the matrices that `Wᵀ δ` products read.
//!
//! faer runs a product fastest with its large operand as a column-major right-hand
//! factor. The forward pass's `W x` has that layout; the backward pass's `Wᵀ δ` (the
//! delta of BP and of every rule that sends it down through a feedback matrix) does
//! not, and even written column-major and transposed into place it ran 1.24x slower
//! than the same shape untransposed at 512, 1.38x at 800, 1.4x at 1024 and 1.65x at
//! 2048 (batch 128, on the 2-core Xeon measured). So for a matrix such products keep
//! reading unchanged, the backend keeps `Bᵀ` laid out row-major and runs the product
//! untransposed on it: FA's fixed feedback matrices (from 512x512 up) are copied once,
//! at their second use, which made FA's step 7-10% faster at 784-1024x3-10 (batch 128),
//! 8% at 784-512x3-10 and 12% at 784-800-800-10 (batch 64, the `mnist` example's net).
//!
//! A copy goes stale when anything writes its matrix, and is made again only at the
//! second read after that write. A matrix written before every read gets none: BP's
//! weights (updated by every step's optimizer pass), and brSF's feedback (drawn afresh
//! before every use). Keeping their copies current cost more than it saved: a
//! transposition of a 1024x1024 matrix took 0.5-0.8 ms here, three times a copy of its
//! bytes, against 0.4-0.5 ms saved on the product, and the same proportion at 2048 and
//! 4096, whether written tile by tile inside the fused optimizer pass or after it. With
//! the transposition 1.3-1.5x faster, a copy made at every first read still made BP's
//! step at 784-1024x3-10 7.6% slower and uSF's 7.8-8.8% (20-30 alternating rounds):
//! inside a step the matrix comes from memory, not from the cache a lone transposition
//! enjoys.
//!
//! uSF's and frSF's feedback is the exception: between steps it changes only where a
//! weight changed sign, and the backend rewrites only those values (see
//! `feedback_signs`). Such a write hands the copy the values it changed
//! ([`Patch`]) instead of making it stale, and does not count as a write for the second
//! read, so uSF's and frSF's `Bᵀ δ` run on a copy kept current like FA's: at
//! 1024-1024x3-10 each took 1.96 ms on it against 2.35 ms column-major (steps
//! alternating). A write that changes more than a sixteenth of a piece's values makes
//! the copy stale instead.
//!
//! A copy is an exact transposition, and which products use one depends only on the
//! order of operations. The copies cost memory, as much as the matrices they mirror, so
//! they stop at a budget
//! ([`CpuBackend::with_transposed_copies`](super::CpuBackend::with_transposed_copies));
//! a matrix without one is multiplied as before.

use super::transpose::transpose;
use crate::backend::{BufId, Mat};

/// The default budget: every feedback matrix of nets up to width 2048 or so, and four
/// layers' worth at width 4096.
pub(super) const DEFAULT_BUDGET_BYTES: usize = 256 << 20;

/// The copies, and how much they may hold.
#[derive(Debug)]
pub(super) struct TransposedCopies {
    copies: Vec<Copy>,
    /// Most floats the copies may hold together.
    budget: usize,
}

#[derive(Debug)]
pub(super) struct Copy {
    /// The matrix, as the product reads it (`rows x cols`).
    source: Mat,
    /// `sourceᵀ`: `cols x rows`, row-major; empty until first made.
    data: Vec<f32>,
    /// Whether `data` holds the transposition of the source's present values.
    current: bool,
    /// Products that read the source since it was last written.
    reads_since_write: u32,
}

impl Copy {
    fn make(&mut self, values: &[f32]) {
        self.data.resize(self.source.len(), 0.0);
        transpose(&mut self.data, values, self.source.rows, self.source.cols);
        self.current = true;
    }

    /// Whether the copy holds the transposition of its matrix's present values.
    pub(super) fn is_current(&self) -> bool {
        self.current
    }

    /// Follows a write that changed only `patch`'s values of the matrix: a current copy
    /// takes them (and goes stale if the patch overflowed); its reads since the last
    /// write stand either way, as for a write of the same values.
    pub(super) fn follow(&mut self, patches: &[Patch]) {
        if !self.current {
            return;
        }
        if patches.iter().any(|p| p.overflowed) {
            self.current = false;
            return;
        }
        let (rows, cols) = (self.source.rows, self.source.cols);
        for &(i, v) in patches.iter().flat_map(|p| &p.values) {
            self.data[(i % cols) * rows + i / cols] = v;
        }
    }
}

/// Values a write changed in a matrix, by element index, for a copy to follow
/// ([`Copy::follow`]); at most a cap of them, past which the patch only says it
/// overflowed.
#[derive(Debug, Default)]
pub(super) struct Patch {
    values: Vec<(usize, f32)>,
    cap: usize,
    overflowed: bool,
}

impl Patch {
    /// An empty patch of at most `cap` values.
    pub(super) fn with_cap(cap: usize) -> Self {
        Patch {
            cap,
            ..Patch::default()
        }
    }

    /// An empty patch for a write to a piece of `len` values: at most a sixteenth of
    /// them, past which following value by value would cost more than a transposition
    /// made at the next read.
    pub(super) fn for_piece(len: usize) -> Self {
        Self::with_cap(len / 16)
    }

    /// The values recorded, by element index.
    #[cfg(test)]
    pub(super) fn values(&self) -> &[(usize, f32)] {
        &self.values
    }

    /// Records that element `i` became `v`.
    #[inline]
    pub(super) fn push(&mut self, i: usize, v: f32) {
        if self.values.len() < self.cap {
            self.values.push((i, v));
        } else {
            self.overflowed = true;
        }
    }
}

impl Default for TransposedCopies {
    fn default() -> Self {
        Self::with_budget(DEFAULT_BUDGET_BYTES)
    }
}

impl TransposedCopies {
    /// No copies yet; at most `bytes` of them.
    pub(super) fn with_budget(bytes: usize) -> Self {
        TransposedCopies {
            copies: Vec::new(),
            budget: bytes / std::mem::size_of::<f32>(),
        }
    }

    /// Marks stale every copy whose matrix overlaps one of `writes`.
    pub(super) fn invalidate(&mut self, writes: &[Mat]) {
        for copy in &mut self.copies {
            if writes.iter().any(|w| w.overlaps(&copy.source)) {
                copy.current = false;
                copy.reads_since_write = 0;
            }
        }
    }

    /// Takes the copy of exactly `source` out (`None` if there is none), so a write
    /// that changes few of its values can leave it current ([`Copy::follow`]) before
    /// it is [`put`](Self::put) back.
    pub(super) fn take(&mut self, source: Mat) -> Option<Copy> {
        let i = self.copies.iter().position(|c| c.source == source)?;
        Some(self.copies.swap_remove(i))
    }

    /// Puts back a copy [`take`](Self::take)n out.
    pub(super) fn put(&mut self, copy: Copy) {
        self.copies.push(copy);
    }

    /// Drops the copies of matrices in `buf`, which is being released.
    pub(super) fn forget(&mut self, buf: BufId) {
        self.copies.retain(|c| c.source.buf != buf);
    }

    /// `aᵀ`, row-major, for a product about to read `a` (`values`, its elements): the
    /// copy kept for `a` if current, or made now if `a` was read before since it was
    /// last written and the budget has room. `None` otherwise.
    pub(super) fn current(&mut self, a: Mat, values: &[f32]) -> Option<&[f32]> {
        let index = match self.copies.iter().position(|c| c.source == a) {
            Some(i) => i,
            None => {
                self.copies.push(Copy {
                    source: a,
                    data: Vec::new(),
                    current: false,
                    reads_since_write: 0,
                });
                self.copies.len() - 1
            }
        };
        let held = self.held();
        let copy = &mut self.copies[index];
        let read_before = copy.reads_since_write > 0;
        copy.reads_since_write = copy.reads_since_write.saturating_add(1);
        if !copy.current {
            let room = held - copy.data.len() + a.len() <= self.budget;
            if !(read_before && room) {
                return None;
            }
            copy.make(values);
        }
        Some(&copy.data)
    }

    /// Floats held by the copies.
    fn held(&self) -> usize {
        self.copies.iter().map(|c| c.data.len()).sum()
    }

    /// The copy of exactly `source`, if current.
    #[cfg(test)]
    pub(super) fn current_copy(&self, source: Mat) -> Option<&[f32]> {
        let copy = self.copies.iter().find(|c| c.source == source)?;
        copy.current.then_some(&copy.data[..])
    }

    /// The number of copies kept.
    #[cfg(test)]
    fn kept(&self) -> usize {
        self.copies.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values(m: Mat) -> Vec<f32> {
        (0..m.len()).map(|v| v as f32).collect()
    }

    #[test]
    fn a_copy_is_made_at_a_second_read_and_kept_until_a_write() {
        let w = Mat::new(BufId(0), 4, 3, 5);
        let mut copies = TransposedCopies::with_budget(15 * 4);
        // First read: kept in mind, not made.
        assert!(copies.current(w, &values(w)).is_none());
        assert_eq!((copies.kept(), copies.held()), (1, 0));
        let second = copies.current(w, &values(w)).unwrap().to_vec();
        assert_eq!(second[..4], [0.0, 5.0, 10.0, 1.0]);
        // A write beside it leaves it current; one into it does not, and the next read
        // after that write is the first again.
        copies.invalidate(&[Mat::new(BufId(0), 0, 1, 4)]);
        assert!(copies.copies[0].current);
        copies.invalidate(&[Mat::new(BufId(0), 18, 1, 1)]);
        assert!(copies.current(w, &values(w)).is_none());
        let changed: Vec<f32> = values(w).iter().map(|v| v + 1.0).collect();
        assert_eq!(copies.current(w, &changed).unwrap()[..2], [1.0, 6.0]);
        // No room for a second one.
        let other = Mat::new(BufId(1), 0, 2, 2);
        assert!(copies.current(other, &values(other)).is_none());
        assert!(copies.current(other, &values(other)).is_none());
        assert_eq!((copies.kept(), copies.held()), (2, 15));
        copies.forget(BufId(0));
        assert_eq!((copies.kept(), copies.held()), (1, 0));
    }
}
