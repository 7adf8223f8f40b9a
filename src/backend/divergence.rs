//! Divergence found on the device: flags a step leaves where the host reads them once
//! per epoch.
//!
//! A backend that runs many steps per submit cannot stop at the step whose loss turned
//! NaN: the host learns of it only when it reads. So the steps watch themselves: an
//! optimizer pass with a [`Guard`] records, in [`FLAG_WORDS`] words of a float buffer
//! (`u32` bit patterns, 0 = nothing seen), the first step whose loss was not finite,
//! and the first step whose update would have made a value non-finite with where that
//! was. Such a value is not written (the element keeps its value and moments), and
//! once a flag is set every guarded pass leaves everything alone: the parameters stay
//! finite, as the step before left them (after a non-finite update, plus that step's
//! finite part).

use super::Mat;
use crate::error::{Error, Result};

/// Words of the flag block.
pub const FLAG_WORDS: usize = 3;
/// The first step whose running loss sum was not finite.
pub const LOSS_FLAG: usize = 0;
/// The first step whose update would have made a value non-finite.
pub const UPDATE_FLAG: usize = 1;
/// The index (in its buffer) of a value that update would have made non-finite.
pub const INDEX_FLAG: usize = 2;

/// Makes an optimizer pass watch its step: first it sets the loss flag to `step` if
/// the running loss sum `loss` is not finite; it updates nothing while a flag is set;
/// and it writes no non-finite value, setting the update flag (with the element's
/// index) instead. A flag already set is never overwritten by a later step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Guard {
    /// The [`FLAG_WORDS`] flag words.
    pub flags: Mat,
    /// The running loss sum (one float, in the flags' buffer).
    pub loss: Mat,
    /// This step's number (from 1).
    pub step: u32,
}

impl Guard {
    /// Checks the regions' sizes, that they share a buffer without overlapping, and
    /// that the step is not 0.
    pub fn check(&self) -> Result<()> {
        if self.flags.len() != FLAG_WORDS {
            return Err(Error::shape(
                "divergence flags",
                FLAG_WORDS.to_string(),
                self.flags.len().to_string(),
            ));
        }
        if self.loss.len() != 1 {
            return Err(Error::shape(
                "watched loss",
                "1",
                self.loss.len().to_string(),
            ));
        }
        if self.loss.buf != self.flags.buf || self.loss.overlaps(&self.flags) {
            return Err(Error::Backend(
                "guard: the loss sum must lie in the flags' buffer, apart from them".into(),
            ));
        }
        if self.step == 0 {
            return Err(Error::config("steps are numbered from 1: 0 means no flag"));
        }
        Ok(())
    }
}

/// Host reference of the flag updates.
pub mod host {
    use super::{Guard, INDEX_FLAG, LOSS_FLAG, UPDATE_FLAG};

    /// Flags a non-finite `loss`; returns whether the guarded pass may update (no flag
    /// set).
    pub fn may_update(guard: &Guard, loss: f32, flags: &mut [f32]) -> bool {
        if !loss.is_finite() && flags[LOSS_FLAG].to_bits() == 0 {
            flags[LOSS_FLAG] = f32::from_bits(guard.step);
        }
        flags[LOSS_FLAG].to_bits() == 0 && flags[UPDATE_FLAG].to_bits() == 0
    }

    /// Records that the update of element `index` was not finite.
    pub fn record_update(guard: &Guard, flags: &mut [f32], index: u32) {
        flags[UPDATE_FLAG] = f32::from_bits(guard.step);
        flags[INDEX_FLAG] = f32::from_bits(index);
    }
}

/// What the flags say, read back.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Flags {
    /// First step whose loss was not finite (0: none).
    pub loss: u32,
    /// First step whose update would have made a value non-finite (0: none).
    pub update: u32,
    /// Where: the element's index in its buffer.
    pub index: u32,
}

impl Flags {
    /// Decodes the words read back.
    pub fn from_words(words: &[f32]) -> Flags {
        let word = |i: usize| words.get(i).map_or(0, |w| w.to_bits());
        Flags {
            loss: word(LOSS_FLAG),
            update: word(UPDATE_FLAG),
            index: word(INDEX_FLAG),
        }
    }

    /// The first step that diverged, if any.
    pub fn first(&self) -> Option<u32> {
        [self.loss, self.update]
            .into_iter()
            .filter(|&s| s != 0)
            .min()
    }
}
