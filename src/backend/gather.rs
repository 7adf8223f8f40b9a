//! Data sets kept on the backend, and batches gathered from them there.
//!
//! A GPU that receives every batch from the host pays an upload (and, when work is
//! already recorded, a staging buffer and a copy) per step. Uploading the data set
//! once and gathering each batch in a kernel, through a permutation drawn on the host,
//! leaves one small upload per epoch (the permutation) and lets many steps share one
//! submit.
//!
//! A stored data set is one buffer of 32-bit words: a 256-entry table of feature
//! values (only when every feature is one of at most 256 values, as MNIST's bytes are),
//! one label per sample, then the features row-major: one byte code per feature,
//! packed four to a word (little-endian), or the `f32` values themselves. Decoding a
//! byte through the table gives back the host's value bit for bit, so CPU and GPU
//! runs see the same inputs. [`host`] is the reference every backend is tested
//! against.

use super::{BufId, Mat};
use crate::error::{Error, Result};

/// Entries of the byte-code table.
pub const TABLE_LEN: usize = 256;

/// How a stored data set holds its features.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FeatureEncoding {
    /// One byte per feature, an index into the table of values (a quarter of the
    /// memory of `f32`s).
    Bytes,
    /// The `f32` values.
    Floats,
}

/// Where a data set stored on a backend lies and how it is laid out (see the
/// [module docs](self)).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct StoredData {
    /// The buffer holding it, from element 0.
    pub buf: BufId,
    /// Number of samples.
    pub samples: usize,
    /// Features per sample.
    pub dim: usize,
    /// Number of classes (every label is below it).
    pub classes: usize,
    /// How the features are held.
    pub encoding: FeatureEncoding,
}

impl StoredData {
    /// Words before the labels: the byte-code table, if any.
    pub fn labels_at(&self) -> usize {
        match self.encoding {
            FeatureEncoding::Bytes => TABLE_LEN,
            FeatureEncoding::Floats => 0,
        }
    }

    /// Index of the first feature word.
    pub fn features_at(&self) -> usize {
        self.labels_at() + self.samples
    }

    /// Words the features take.
    pub fn feature_words(&self) -> usize {
        let values = self.samples.saturating_mul(self.dim);
        match self.encoding {
            FeatureEncoding::Bytes => values.div_ceil(4),
            FeatureEncoding::Floats => values,
        }
    }

    /// Words of the whole stored set.
    pub fn words(&self) -> usize {
        self.features_at().saturating_add(self.feature_words())
    }

    /// The whole stored set as a region.
    pub fn region(&self) -> Mat {
        Mat::new(self.buf, 0, 1, self.words())
    }

    /// Checks the sizes are usable: a sample, a feature and a class at least, and
    /// every feature (byte) index within what a shader's 32-bit index reaches.
    pub fn check(&self) -> Result<()> {
        if self.samples == 0 || self.dim == 0 || self.classes == 0 {
            return Err(Error::config(format!(
                "a stored data set needs samples, features and classes, got {} x {} and {} classes",
                self.samples, self.dim, self.classes
            )));
        }
        let indexed = match self.encoding {
            FeatureEncoding::Bytes => self.samples.checked_mul(self.dim),
            FeatureEncoding::Floats => Some(self.words()),
        };
        match indexed {
            Some(n) if u32::try_from(n).is_ok() => Ok(()),
            _ => Err(Error::config(format!(
                "a data set of {} samples x {} features is more than 32-bit indices reach",
                self.samples, self.dim
            ))),
        }
    }
}

/// The stored form of a data set: its layout and its words (as `f32` bit patterns,
/// since backend buffers hold `f32`).
#[derive(Debug, Clone, PartialEq)]
pub struct EncodedData {
    /// How the features are held.
    pub encoding: FeatureEncoding,
    /// The words to store from element 0 of a buffer.
    pub words: Vec<f32>,
}

/// Encodes `features` (row-major, `labels.len()` samples) for storing: as byte codes
/// when they take at most 256 distinct values, else as they are.
pub fn encode(features: &[f32], labels: &[u32]) -> EncodedData {
    let Some((table, codes)) = byte_codes(features) else {
        let mut words = Vec::with_capacity(labels.len() + features.len());
        words.extend(labels.iter().map(|&l| f32::from_bits(l)));
        words.extend_from_slice(features);
        return EncodedData {
            encoding: FeatureEncoding::Floats,
            words,
        };
    };
    let mut words = Vec::with_capacity(TABLE_LEN + labels.len() + codes.len().div_ceil(4));
    words.extend_from_slice(&table);
    words.extend(labels.iter().map(|&l| f32::from_bits(l)));
    words.extend(codes.chunks(4).map(|c| {
        let mut b = [0u8; 4];
        b[..c.len()].copy_from_slice(c);
        f32::from_bits(u32::from_le_bytes(b))
    }));
    EncodedData {
        encoding: FeatureEncoding::Bytes,
        words,
    }
}

/// The table of distinct values (by bit pattern, at most 256) and each feature's
/// index into it, or `None` when there are more.
fn byte_codes(features: &[f32]) -> Option<([f32; TABLE_LEN], Vec<u8>)> {
    let mut table = [0.0f32; TABLE_LEN];
    let mut index = std::collections::HashMap::<u32, u8>::new();
    let mut codes = Vec::with_capacity(features.len());
    // Runs of equal values (an image's background) skip the lookup.
    let mut last: Option<(u32, u8)> = None;
    for &v in features {
        let bits = v.to_bits();
        let code = match last {
            Some((b, c)) if b == bits => c,
            _ => match index.get(&bits) {
                Some(&c) => c,
                None => {
                    let c = u8::try_from(index.len()).ok()?;
                    index.insert(bits, c);
                    table[c as usize] = v;
                    c
                }
            },
        };
        last = Some((bits, code));
        codes.push(code);
    }
    Some((table, codes))
}

/// Writes a batch from a stored data set: `x[f * b + j]` = feature `f` of sample
/// `order[j]`, `targets[c * b + j]` = 1 where that sample's label is `c`, else 0
/// (`b` = the batch, the number of indices). An index past the data set gives a zero
/// column and no target on a GPU; the host reference refuses it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Gather {
    /// The stored data set.
    pub data: StoredData,
    /// The samples' indices in batch order (`u32` bit patterns), one per column.
    pub order: Mat,
    /// `dim x batch`, written.
    pub x: Mat,
    /// `classes x batch`, written.
    pub targets: Mat,
}

impl Gather {
    /// Samples in the batch.
    pub fn batch(&self) -> usize {
        self.order.len()
    }

    /// Checks the shapes agree with the data set and the batch.
    pub fn check(&self) -> Result<()> {
        self.data.check()?;
        let b = self.batch();
        if b == 0 {
            return Err(Error::EmptyData("a batch needs at least one sample".into()));
        }
        for (what, m, rows) in [
            ("gather x", self.x, self.data.dim),
            ("gather targets", self.targets, self.data.classes),
        ] {
            if (m.rows, m.cols) != (rows, b) {
                return Err(Error::shape(
                    what,
                    format!("{rows}x{b}"),
                    format!("{}x{}", m.rows, m.cols),
                ));
            }
        }
        Ok(())
    }

    /// Every region it reads (the stored set, the indices) and writes.
    pub fn regions(&self) -> (Vec<Mat>, Vec<Mat>) {
        (
            vec![self.data.region(), self.order],
            vec![self.x, self.targets],
        )
    }
}

/// Host reference of the data operations.
pub mod host {
    use super::{FeatureEncoding, Gather};
    use crate::error::{Error, Result};

    /// Runs `op` given the stored words, the index words and the outputs.
    pub fn gather(
        op: &Gather,
        data: &[f32],
        order: &[f32],
        x: &mut [f32],
        targets: &mut [f32],
    ) -> Result<()> {
        let d = &op.data;
        let b = order.len();
        let (labels, features) = (d.labels_at(), d.features_at());
        targets.fill(0.0);
        for (j, index) in order.iter().enumerate() {
            let s = index.to_bits() as usize;
            if s >= d.samples {
                return Err(Error::shape(
                    "gathered sample index",
                    format!("< {}", d.samples),
                    s.to_string(),
                ));
            }
            for f in 0..d.dim {
                let k = s * d.dim + f;
                x[f * b + j] = match d.encoding {
                    FeatureEncoding::Bytes => {
                        let code = (data[features + k / 4].to_bits() >> (8 * (k % 4))) & 0xff;
                        data[code as usize]
                    }
                    FeatureEncoding::Floats => data[features + k],
                };
            }
            let label = data[labels + s].to_bits() as usize;
            if label < d.classes {
                targets[label * b + j] = 1.0;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stored(enc: &EncodedData, samples: usize, dim: usize, classes: usize) -> StoredData {
        StoredData {
            buf: BufId(0),
            samples,
            dim,
            classes,
            encoding: enc.encoding,
        }
    }

    fn gather_host(enc: &EncodedData, d: StoredData, order: &[u32]) -> (Vec<f32>, Vec<f32>) {
        let b = order.len();
        let op = Gather {
            data: d,
            order: Mat::new(BufId(1), 0, 1, b),
            x: Mat::new(BufId(2), 0, d.dim, b),
            targets: Mat::new(BufId(3), 0, d.classes, b),
        };
        op.check().unwrap();
        let order: Vec<f32> = order.iter().map(|&i| f32::from_bits(i)).collect();
        let (mut x, mut t) = (vec![f32::NAN; d.dim * b], vec![f32::NAN; d.classes * b]);
        host::gather(&op, &enc.words, &order, &mut x, &mut t).unwrap();
        (x, t)
    }

    #[test]
    fn byte_codes_decode_to_the_same_bits() {
        // Five samples of three features over a few distinct values, -0.0 among them.
        let features = [
            0.0, 0.5, 1.0, -0.0, 0.5, 0.25, 1.0, 1.0, 0.0, 0.25, 0.5, -0.0, 1.0, 0.0, 0.5,
        ];
        let labels = [2, 0, 1, 2, 1];
        let enc = encode(&features, &labels);
        assert_eq!(enc.encoding, FeatureEncoding::Bytes);
        let d = stored(&enc, 5, 3, 3);
        assert_eq!(enc.words.len(), d.words());
        let (x, t) = gather_host(&enc, d, &[4, 0, 3]);
        for (j, s) in [4usize, 0, 3].into_iter().enumerate() {
            for f in 0..3 {
                assert_eq!(x[f * 3 + j].to_bits(), features[s * 3 + f].to_bits());
            }
            for c in 0..3 {
                assert_eq!(t[c * 3 + j], f32::from(labels[s] as usize == c));
            }
        }
    }

    #[test]
    fn many_distinct_values_stay_floats() {
        let features: Vec<f32> = (0..600).map(|i| i as f32 * 0.1).collect();
        let labels = vec![0; 200];
        let enc = encode(&features, &labels);
        assert_eq!(enc.encoding, FeatureEncoding::Floats);
        let d = stored(&enc, 200, 3, 1);
        let (x, _) = gather_host(&enc, d, &[199, 7]);
        assert_eq!(
            x,
            vec![
                features[597],
                features[21],
                features[598],
                features[22],
                features[599],
                features[23]
            ]
        );
    }

    #[test]
    fn an_index_past_the_set_is_refused() {
        let enc = encode(&[1.0, 2.0], &[0, 1]);
        let d = stored(&enc, 2, 1, 2);
        let op = Gather {
            data: d,
            order: Mat::new(BufId(1), 0, 1, 1),
            x: Mat::new(BufId(2), 0, 1, 1),
            targets: Mat::new(BufId(3), 0, 2, 1),
        };
        let (mut x, mut t) = (vec![0.0], vec![0.0; 2]);
        let err = host::gather(&op, &enc.words, &[f32::from_bits(2)], &mut x, &mut t);
        assert!(err.is_err());
    }
}
