//! Safe simultaneous borrows of several regions of host buffers.
//!
//! A backend call names regions of its buffers; several may lie in the same buffer
//! (a layer reads `H_{l-1}` and writes `H_l`, both in the activation arena). This
//! splits each buffer around the regions written so every write gets its own `&mut`
//! slice and every read a shared one, and rejects overlaps instead of aliasing.

use super::{BufId, Mat};
use crate::error::{Error, Result};

/// Mutable slices for the written regions and shared ones for the read regions.
pub(crate) type Borrowed<'a> = (Vec<&'a mut [f32]>, Vec<&'a [f32]>);

/// Borrows `writes` mutably and `reads` immutably, in the order given.
pub(crate) fn borrow<'a>(
    bufs: &'a mut [Vec<f32>],
    writes: &[Mat],
    reads: &[Mat],
) -> Result<Borrowed<'a>> {
    validate(writes, reads, |id| bufs.get(id.0).map(Vec::len))?;

    let mut write_slots: Vec<Option<&'a mut [f32]>> = (0..writes.len()).map(|_| None).collect();
    let mut read_slots: Vec<Option<&'a [f32]>> = vec![None; reads.len()];
    for (id, buf) in bufs.iter_mut().enumerate() {
        let mut own_writes: Vec<usize> = (0..writes.len())
            .filter(|&i| writes[i].buf.0 == id)
            .collect();
        let own_reads: Vec<usize> = (0..reads.len()).filter(|&i| reads[i].buf.0 == id).collect();
        if own_writes.is_empty() && own_reads.is_empty() {
            continue;
        }
        own_writes.sort_by_key(|&i| writes[i].offset);
        // Cut the buffer at the written regions; what lies between them is shared.
        let mut zones: Vec<(usize, &'a [f32])> = Vec::new();
        let mut rest: &'a mut [f32] = buf.as_mut_slice();
        let mut cursor = 0;
        for i in own_writes {
            let w = &writes[i];
            let (before, after) = rest.split_at_mut(w.offset - cursor);
            zones.push((cursor, before));
            let (written, after) = after.split_at_mut(w.len());
            write_slots[i] = Some(written);
            rest = after;
            cursor = w.offset + w.len();
        }
        zones.push((cursor, rest));
        for i in own_reads {
            let r = &reads[i];
            let zone = zones
                .iter()
                .find(|(start, z)| r.offset >= *start && r.offset + r.len() <= start + z.len());
            if let Some(&(start, z)) = zone {
                read_slots[i] = Some(&z[r.offset - start..r.offset - start + r.len()]);
            }
        }
    }
    let writes = write_slots.into_iter().flatten().collect::<Vec<_>>();
    let reads = read_slots.into_iter().flatten().collect::<Vec<_>>();
    Ok((writes, reads))
}

/// Checks every region lies inside its buffer (`len_of` gives buffer lengths) and no
/// written region overlaps another region of the same call. Every backend applies
/// these rules, so all reject the same calls.
pub(crate) fn validate(
    writes: &[Mat],
    reads: &[Mat],
    len_of: impl Fn(BufId) -> Option<usize>,
) -> Result<()> {
    for m in writes.iter().chain(reads) {
        let len = len_of(m.buf)
            .ok_or_else(|| Error::Backend(format!("buffer {} does not exist", m.buf.0)))?;
        if m.offset.checked_add(m.len()).is_none_or(|end| end > len) {
            return Err(Error::Backend(format!(
                "region {:?} ({}x{}) is outside buffer {} of {len} floats",
                m.range(),
                m.rows,
                m.cols,
                m.buf.0
            )));
        }
    }
    for (i, w) in writes.iter().enumerate() {
        if let Some(o) = writes[i + 1..].iter().chain(reads).find(|o| w.overlaps(o)) {
            return Err(Error::Backend(format!(
                "written region {:?} overlaps region {:?} of the same call",
                w.range(),
                o.range()
            )));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_one_buffer_into_disjoint_reads_and_writes() {
        let mut bufs = vec![(0..10).map(|v| v as f32).collect::<Vec<_>>(), vec![7.0; 3]];
        let w = Mat::new(BufId(0), 4, 2, 1);
        let r0 = Mat::new(BufId(0), 0, 2, 2);
        let r1 = Mat::new(BufId(1), 0, 1, 3);
        let (mut ws, rs) = borrow(&mut bufs, &[w], &[r0, r1]).unwrap();
        ws[0][0] = rs[0][3] + rs[1][2];
        assert_eq!(rs[0], &[0.0, 1.0, 2.0, 3.0]);
        assert_eq!(bufs[0][4], 10.0);
    }

    #[test]
    fn rejects_overlap_and_out_of_range() {
        let mut bufs = vec![vec![0.0; 8]];
        let w = Mat::new(BufId(0), 2, 2, 2);
        let r = Mat::new(BufId(0), 5, 1, 2);
        assert!(borrow(&mut bufs, &[w], &[r]).is_err());
        let far = Mat::new(BufId(0), 7, 1, 2);
        assert!(borrow(&mut bufs, &[far], &[]).is_err());
        let missing = Mat::new(BufId(3), 0, 1, 1);
        assert!(borrow(&mut bufs, &[], &[missing]).is_err());
    }
}
