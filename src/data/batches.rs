//! Mini-batch index lists: seeded shuffles for training, in order for evaluation.

use rand::seq::SliceRandom;

use crate::error::{Error, Result};

/// A uniformly random permutation of `0..len` drawn from `rng` (Fisher–Yates),
/// cut into batches of `batch_size`; the last batch may be smaller.
///
/// The same seeded `rng` always gives the same batches. `batch_size == 0` is an
/// [`Error::InvalidConfig`]; `len == 0` gives no batches.
pub fn shuffled_batches<R: rand::Rng + ?Sized>(
    len: usize,
    batch_size: usize,
    rng: &mut R,
) -> Result<Vec<Vec<usize>>> {
    check_batch_size(batch_size)?;
    let mut order: Vec<usize> = (0..len).collect();
    order.shuffle(rng);
    Ok(cut(&order, batch_size))
}

/// `0..len` in order, cut into batches of `batch_size` (the last may be
/// smaller); for evaluation. `batch_size == 0` is an [`Error::InvalidConfig`].
pub fn sequential_batches(len: usize, batch_size: usize) -> Result<Vec<Vec<usize>>> {
    check_batch_size(batch_size)?;
    let order: Vec<usize> = (0..len).collect();
    Ok(cut(&order, batch_size))
}

fn check_batch_size(batch_size: usize) -> Result<()> {
    if batch_size == 0 {
        return Err(Error::config("batch size must be > 0"));
    }
    Ok(())
}

fn cut(order: &[usize], batch_size: usize) -> Vec<Vec<usize>> {
    order.chunks(batch_size).map(<[usize]>::to_vec).collect()
}
