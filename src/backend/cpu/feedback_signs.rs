//! Sign-concordant feedback rewritten only where a weight changed sign.
//!
//! uSF and frSF rewrite `B = scale · |M| · sign(W)` from the weights before every
//! backward pass ([`Backend::sign_feedback`]): a read of every feedback weight and a
//! write of all of `B`, 0.27-0.59 ms per 1024x1024 layer inside a step on the 2-core
//! Xeon measured (as the VM's speed drifted), which no product counts. Yet between two steps few weights change
//! sign: training 784-1024x3-10 on MNIST (batch 128), 0.02-0.09% of a 1024x1024
//! layer's weights per step under SGD, and under Adam 0.9% in the first steps and
//! about 0.1% after 50. So the backend keeps, beside each feedback matrix it wrote, the
//! signs of the weights it was written from (one byte per value, a quarter of `B`'s
//! size) and rewrites only the lines of 64 values whose signs changed
//! ([`SignFeedbackChunk`]):
//!
//! - The fused optimizer pass (`deferred`) does it tile by tile right after it updates
//!   a tile of weights, while they are in cache, and the next call finds `B` current
//!   and returns at once.
//! - A call after any other write to the weights compares their signs in a pass of its
//!   own: a read of `W` and of the signs, 0.31-0.34 against 0.45 ms a 1024x1024 layer
//!   for the pass that writes all of `B`.
//!
//! Either way the values that changed are handed to the transposed copy of `B`, if one
//! is current, which then stays current (see `transposed`): `Bᵀ δ` runs untransposed
//! on it, as FA's does, 1.96 against 2.35 ms a 1024x1024 layer. Measured with the
//! variants alternating step by step (plain SGD, batch 128, 2-core Xeon): uSF's step at
//! 784-1024x3-10 18.09 ms before, 17.14 with the compare and the copy, 16.84 with the
//! optimizer pass keeping `B` current as well (0.5 ms more in the pass against 0.66 for
//! the two compares); frSF's 16.20, 14.94, 14.79 ms; uSF's at width 1024 depth 8 46.3,
//! 42.7, 41.7 ms.
//!
//! A record holds while nothing else writes `B` or `M`: any such write drops it, and
//! the next call writes everything again. A write to `W` only makes the record stale
//! (the next call compares), for the signs still say what `B` holds. A feedback value
//! depends on its weight only through that sign, so every call gives the plain
//! formula's values, bit for bit.
//!
//! [`Backend::sign_feedback`]: crate::backend::Backend::sign_feedback
//! [`SignFeedbackChunk`]: super::loops::SignFeedbackChunk

use super::in_paired_pieces;
use super::loops::SignFeedbackChunk;
use super::transposed::Patch;
use crate::backend::simd_state::widest;
use crate::backend::{BufId, Mat};

/// One [`Backend::sign_feedback`](crate::backend::Backend::sign_feedback) call: `out =
/// scale · |magnitude| · sign(w)`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) struct SignFeedback {
    pub(super) out: Mat,
    pub(super) w: Mat,
    pub(super) magnitude: Option<Mat>,
    pub(super) scale: f32,
}

impl SignFeedback {
    /// Keeps a piece of the feedback current: `out`, `w` and `magnitude` are the same
    /// elements of the three regions, `signs` of the record's signs; `changed`, where
    /// to record the values whose sign changed and the piece's first index in the
    /// matrix. At AVX-512 where the CPU has it (a pass of its own took 0.38 against
    /// 0.41 ms a 1024x1024 layer at AVX2 inside uSF's step, 40 alternating steps).
    pub(super) fn refresh(
        &self,
        out: &mut [f32],
        w: &[f32],
        magnitude: Option<&[f32]>,
        signs: &mut [i8],
        changed: Option<(&mut Patch, usize)>,
    ) {
        widest(SignFeedbackChunk {
            out,
            w,
            magnitude,
            signs,
            scale: self.scale,
            changed,
        });
    }
}

/// Feedback the backend wrote, and the signs of the weights it was written from.
#[derive(Debug)]
pub(super) struct Written {
    pub(super) feedback: SignFeedback,
    /// `-1`, `0` or `1` per value of `out`, or `i8::MIN` where nothing was written yet.
    pub(super) signs: Vec<i8>,
    /// Whether the weights are unwritten since, so `signs` are still theirs.
    pub(super) fresh: bool,
}

impl Written {
    /// Keeps all of the feedback `out` current from the weights `w` (and magnitudes
    /// `m`), in pieces in parallel, and marks the record fresh. With `follow`, returns
    /// the values that changed, piece by piece, for a transposed copy to follow.
    pub(super) fn keep_current(
        &mut self,
        out: &mut [f32],
        w: &[f32],
        m: Option<&[f32]>,
        follow: bool,
    ) -> Vec<Patch> {
        let feedback = self.feedback;
        let patches = in_paired_pieces(out, &mut self.signs, |first, out, signs| {
            let range = first..first + out.len();
            let mut patch = follow.then(|| Patch::for_piece(out.len()));
            let changed = patch.as_mut().map(|p| (p, first));
            feedback.refresh(out, &w[range.clone()], m.map(|m| &m[range]), signs, changed);
            patch
        });
        self.fresh = true;
        patches.into_iter().flatten().collect()
    }
}

/// Rows of a record's feedback not yet handed to a band of the optimizer pass that
/// keeps them current: its output, magnitudes and signs, the same elements of each.
pub(super) struct Refresh<'a> {
    pub(super) feedback: SignFeedback,
    pub(super) out: &'a mut [f32],
    pub(super) magnitude: Option<&'a [f32]>,
    pub(super) signs: &'a mut [i8],
    /// The index of the rows' first element in the matrix.
    pub(super) first: usize,
    /// Where the values that changed are recorded, for a transposed copy of the
    /// feedback to follow. On the whole matrix it only says whether to record: each
    /// band taken from the front gets a patch of its own.
    pub(super) patch: Option<Patch>,
}

impl<'a> Refresh<'a> {
    /// The first `len` elements, leaving the rest in `self`.
    pub(super) fn take_front(&mut self, len: usize) -> Refresh<'a> {
        let (out, rest) = std::mem::take(&mut self.out).split_at_mut(len);
        self.out = rest;
        let (signs, rest) = std::mem::take(&mut self.signs).split_at_mut(len);
        self.signs = rest;
        let magnitude = self.magnitude.map(|m| {
            let (front, rest) = m.split_at(len);
            self.magnitude = Some(rest);
            front
        });
        let first = self.first;
        self.first += len;
        Refresh {
            feedback: self.feedback,
            out,
            magnitude,
            signs,
            first,
            patch: self.patch.as_ref().map(|_| Patch::for_piece(len)),
        }
    }

    /// Keeps columns `columns` of these rows (`cols` long) current from their weights
    /// `w`.
    pub(super) fn rows(&mut self, w: &[f32], cols: usize, columns: std::ops::Range<usize>) {
        let lines = self.out.chunks_mut(cols).zip(self.signs.chunks_mut(cols));
        for (row, (out, signs)) in lines.enumerate() {
            let at = |i: usize| row * cols + i;
            let magnitude = self
                .magnitude
                .map(|m| &m[at(columns.start)..at(columns.end)]);
            let first = self.first + at(columns.start);
            self.feedback.refresh(
                &mut out[columns.clone()],
                &w[at(columns.start)..at(columns.end)],
                magnitude,
                &mut signs[columns.clone()],
                self.patch.as_mut().map(|p| (p, first)),
            );
        }
    }
}

/// The feedback matrices the backend keeps current, each with its weights' signs.
#[derive(Debug, Default)]
pub(super) struct FeedbackSigns {
    written: Vec<Written>,
}

impl FeedbackSigns {
    /// The record of `feedback`, taken out until [`put`](Self::put) back: the one kept
    /// if its regions are unwritten since, else a new one whose every line is to be
    /// written.
    pub(super) fn take(&mut self, feedback: &SignFeedback) -> Written {
        match self.written.iter().position(|w| w.feedback == *feedback) {
            Some(i) => self.written.swap_remove(i),
            None => Written {
                feedback: *feedback,
                signs: vec![i8::MIN; feedback.out.len()],
                fresh: false,
            },
        }
    }

    /// The record of the feedback of exactly the weights `w`, taken out like
    /// [`take`](Self::take); `None` if there is none.
    pub(super) fn take_of_weights(&mut self, w: &Mat) -> Option<Written> {
        let i = self.written.iter().position(|r| r.feedback.w == *w)?;
        Some(self.written.swap_remove(i))
    }

    /// Puts back a record whose feedback was just written or kept current, dropping
    /// any other whose output it overwrote.
    pub(super) fn put(&mut self, record: Written) {
        let out = record.feedback.out;
        self.written.retain(|r| !r.feedback.out.overlaps(&out));
        self.written.push(record);
    }

    /// Accounts for writes to `writes`: a record whose output or magnitudes they touch
    /// no longer says what its output holds and is dropped; one whose weights they
    /// touch is stale.
    pub(super) fn invalidate(&mut self, writes: &[Mat]) {
        let touched = |m: &Mat| writes.iter().any(|w| w.overlaps(m));
        self.written.retain(|r| {
            let f = &r.feedback;
            !touched(&f.out) && !f.magnitude.as_ref().is_some_and(touched)
        });
        for r in &mut self.written {
            if touched(&r.feedback.w) {
                r.fresh = false;
            }
        }
    }

    /// Drops the records touching `buf`, which is being released.
    pub(super) fn forget(&mut self, buf: BufId) {
        self.written.retain(|r| {
            let f = &r.feedback;
            let regions = [Some(f.out), Some(f.w), f.magnitude];
            regions.iter().flatten().all(|m| m.buf != buf)
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_are_dropped_by_writes_to_their_feedback_and_stale_after_ones_to_weights() {
        let (out, w, m) = (
            Mat::new(BufId(0), 0, 2, 3),
            Mat::new(BufId(1), 6, 2, 3),
            Mat::new(BufId(2), 0, 2, 3),
        );
        let feedback = SignFeedback {
            out,
            w,
            magnitude: Some(m),
            scale: 1.0,
        };
        let mut signs = FeedbackSigns::default();
        let kept = |signs: &mut FeedbackSigns, f: &SignFeedback| {
            let r = signs.take(f);
            let known = r.signs.iter().all(|&s| s != i8::MIN);
            let fresh = r.fresh;
            signs.put(r);
            (known, fresh)
        };
        // A new record knows no sign.
        let mut r = signs.take(&feedback);
        assert_eq!((r.signs.len(), r.fresh), (6, false));
        assert!(r.signs.iter().all(|&s| s == i8::MIN));
        r.signs.fill(1);
        r.fresh = true;
        signs.put(r);
        assert_eq!(kept(&mut signs, &feedback), (true, true));
        // Another scale is another call.
        let halved = SignFeedback {
            scale: 0.5,
            ..feedback
        };
        let other = signs.take(&halved);
        assert!(other.signs.iter().all(|&s| s == i8::MIN));
        // Writes beside the regions leave the record as it was.
        signs.invalidate(&[Mat::new(BufId(1), 0, 1, 6), Mat::new(BufId(3), 0, 9, 9)]);
        assert_eq!(kept(&mut signs, &feedback), (true, true));
        // One element of the weights makes it stale, and it keeps its signs.
        signs.invalidate(&[Mat::new(BufId(1), 11, 1, 1)]);
        assert_eq!(kept(&mut signs, &feedback), (true, false));
        assert_eq!(signs.take_of_weights(&w).unwrap().feedback, feedback);
        assert!(signs.take_of_weights(&w).is_none(), "taken out");
        // One element of the output or of the magnitudes drops it.
        for touched in [out, m] {
            let mut r = signs.take(&feedback);
            r.signs.fill(0);
            signs.put(r);
            signs.invalidate(&[Mat::new(touched.buf, touched.offset + 5, 1, 1)]);
            assert_eq!(kept(&mut signs, &feedback), (false, false), "{touched:?}");
        }
        // A record into the same output replaces the one there; releasing any of its
        // buffers forgets it.
        let mut r = signs.take(&feedback);
        r.signs.fill(0);
        signs.put(r);
        let plain = SignFeedback {
            magnitude: None,
            ..feedback
        };
        let mut r = signs.take(&plain);
        r.signs.fill(0);
        signs.put(r);
        assert_eq!(kept(&mut signs, &plain), (true, false));
        let replaced = signs.take(&feedback);
        assert!(replaced.signs.iter().all(|&s| s == i8::MIN));
        signs.forget(BufId(2));
        assert_eq!(kept(&mut signs, &plain), (true, false));
        signs.forget(BufId(1));
        assert_eq!(kept(&mut signs, &plain), (false, false));
    }
}
