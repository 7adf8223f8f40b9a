//! Data sets kept on a device backend, and how many steps share one submit.
//!
//! On a GPU the trainer stores a data set once (see [`crate::backend::gather`]) and
//! gathers every batch there through the epoch's permutation, so an epoch uploads only
//! that permutation, and records many steps into each submit. A set the device cannot
//! hold falls back to per-batch uploads, and says why.

use crate::backend::gather::{encode, TABLE_LEN};
use crate::backend::{Backend, BufId, Gather, Mat, StoredData};
use crate::data::Dataset;
use crate::error::{Error, Result};
use crate::layer::LayerSpec;

/// Where the batches of a data set come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Residency {
    /// The backend works in host memory: batches are copied from the data set.
    Host,
    /// Stored on the device (`bytes` of it): batches are gathered there.
    Device {
        /// Device memory the stored set takes.
        bytes: u64,
        /// Whether features are held as byte codes (they take at most 256 values).
        byte_codes: bool,
    },
    /// Not stored (the reason says why, e.g. over the adapter's binding limit):
    /// every batch is uploaded.
    PerBatch(String),
}

/// Data sets stored so far: the last two (a training and a test set), by
/// [`Dataset`] id.
#[derive(Default)]
pub(crate) struct ResidentSets {
    sets: Vec<(u64, Option<StoredData>, Residency)>,
    /// Sample indices (`u32` bit patterns) of the current epoch or evaluation.
    order: Option<(BufId, usize)>,
    /// What the order buffer holds from its start, so an order written again (every
    /// evaluation's) is not uploaded again.
    written: Vec<u32>,
}

/// Stored sets kept at once (older ones are released).
const KEPT: usize = 2;

impl ResidentSets {
    /// `data` stored on `backend` (uploaded the first time), or why it is not.
    pub fn store(
        &mut self,
        backend: &mut dyn Backend,
        data: &Dataset,
    ) -> Result<(Option<StoredData>, Residency)> {
        if backend.host_resident() {
            return Ok((None, Residency::Host));
        }
        if let Some((_, stored, why)) = self.sets.iter().find(|(id, ..)| *id == data.id()) {
            return Ok((*stored, why.clone()));
        }
        let (stored, why) = upload(backend, data)?;
        if self.sets.len() == KEPT {
            let (_, old, _) = self.sets.remove(0);
            if let Some(old) = old {
                backend.release(old.buf)?;
            }
        }
        self.sets.push((data.id(), stored, why.clone()));
        Ok((stored, why))
    }

    /// Writes sample indices for the gathers that follow; returns their region.
    pub fn write_order(
        &mut self,
        backend: &mut dyn Backend,
        indices: impl ExactSizeIterator<Item = usize>,
    ) -> Result<Mat> {
        let n = indices.len();
        let buf = match self.order {
            Some((buf, cap)) if cap >= n => buf,
            other => {
                if let Some((old, _)) = other {
                    backend.release(old)?;
                }
                let buf = backend.alloc(n)?;
                self.order = Some((buf, n));
                self.written.clear();
                buf
            }
        };
        let words: Vec<u32> = indices.map(|i| i as u32).collect();
        if self.written.get(..n) != Some(&words[..]) {
            // Written as the f32s with the indices' bit patterns.
            backend.write(buf, 0, bytemuck::cast_slice(&words))?;
            // The buffer now holds `words`, then whatever it held past them.
            if self.written.len() < n {
                self.written.resize(n, 0);
            }
            self.written[..n].copy_from_slice(&words);
        }
        Ok(Mat::new(buf, 0, 1, n))
    }
}

/// Stores `data` on `backend`, or says why it stays on the host.
fn upload(backend: &mut dyn Backend, data: &Dataset) -> Result<(Option<StoredData>, Residency)> {
    if u32::try_from(data.len()).is_err() {
        let why = format!("{} samples is more than 32-bit indices reach", data.len());
        return Ok((None, Residency::PerBatch(why)));
    }
    let encoded = encode(data.features(), data.labels());
    let stored = |buf| StoredData {
        buf,
        samples: data.len(),
        dim: data.dim(),
        classes: data.classes(),
        encoding: encoded.encoding,
    };
    if let Err(e) = stored(BufId(0)).check() {
        return Ok((None, Residency::PerBatch(e.to_string())));
    }
    let buf = match backend.alloc(encoded.words.len()) {
        Ok(buf) => buf,
        Err(e @ (Error::BufferTooLarge { .. } | Error::OutOfMemory(_))) => {
            return Ok((None, Residency::PerBatch(e.to_string())))
        }
        Err(e) => return Err(e),
    };
    backend.write(buf, 0, &encoded.words)?;
    let stored = stored(buf);
    let residency = Residency::Device {
        bytes: encoded.words.len() as u64 * 4,
        byte_codes: stored.labels_at() == TABLE_LEN,
    };
    Ok((Some(stored), residency))
}

/// The gather of the `batch` samples listed at `order`'s columns `first..` into the
/// input and target regions `x` and `targets`.
pub(crate) fn gather_op(
    stored: StoredData,
    order: Mat,
    first: usize,
    x: Mat,
    targets: Mat,
) -> Gather {
    let batch = x.cols;
    Gather {
        data: stored,
        order: Mat::new(order.buf, order.offset + first, 1, batch),
        x,
        targets,
    }
}

/// Work a submit should hold, in multiply-adds: about 2 ms on a GPU that sustains
/// 5 TFLOP/s on a training step's skinny products. Fewer and the fixed cost of a
/// submit (tens of microseconds of driver and queue work) shows; more only delays the
/// host's view of progress.
const SUBMIT_MACS: u64 = 5_000_000_000;

/// At most this many steps share a submit: it bounds the parameter slots recorded at
/// once and how late a divergence is seen.
pub const MAX_STEPS_PER_SUBMIT: usize = 64;

/// Steps per submit for a network of `layers` at `batch`: enough for
/// [`SUBMIT_MACS`] of work (a step is about three times its forward pass: forward,
/// input gradients, weight gradients), at most [`MAX_STEPS_PER_SUBMIT`].
pub(crate) fn auto_steps_per_submit(layers: &[LayerSpec], batch: usize) -> usize {
    let forward: u64 = layers
        .iter()
        .filter_map(|l| {
            let w = l.weight_shape()?;
            let positions = l.outputs() / w.rows.max(1);
            Some((w.len() * positions) as u64)
        })
        .sum();
    let step = (3 * forward).saturating_mul(batch as u64).max(1);
    (SUBMIT_MACS / step).clamp(1, MAX_STEPS_PER_SUBMIT as u64) as usize
}
