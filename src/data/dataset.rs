//! The in-memory classification data set shared by every loader.

use crate::backend::cpu::rows_into_columns;
use crate::error::{checked_product, Error, Result};

/// Samples per block in [`Dataset::gather_feature_major`]; small enough that a
/// block of rows plus the matching output columns stay in L1/L2 cache.
const GATHER_BLOCK: usize = 16;

/// A validated classification data set: features row-major `[len, dim]` and
/// one class label per sample.
#[derive(Debug, Clone)]
pub struct Dataset {
    features: Vec<f32>,
    labels: Vec<u32>,
    dim: usize,
    classes: usize,
    /// Names these contents: a backend that keeps a copy of the set recognises it by
    /// this. Clones share it; changing the features draws a new one.
    id: u64,
}

/// Equal contents (features, labels, sizes), whatever their ids.
impl PartialEq for Dataset {
    fn eq(&self, other: &Self) -> bool {
        (self.dim, self.classes) == (other.dim, other.classes)
            && self.labels == other.labels
            && self.features == other.features
    }
}

/// A fresh [`Dataset`] id.
fn next_id() -> u64 {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
    NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
}

impl Dataset {
    /// Builds a data set after checking that `features.len() == labels.len() * dim`,
    /// `dim > 0`, `classes > 0`, there is at least one sample, every feature is
    /// finite ([`Error::NonFinite`]) and every label is `< classes`
    /// ([`Error::LabelOutOfRange`]).
    pub fn new(features: Vec<f32>, labels: Vec<u32>, dim: usize, classes: usize) -> Result<Self> {
        if dim == 0 {
            return Err(Error::config("dataset feature dimension must be > 0"));
        }
        if classes == 0 {
            return Err(Error::config("dataset must have at least one class"));
        }
        if labels.is_empty() {
            return Err(Error::EmptyData("dataset has no samples".into()));
        }
        check_len(features.len(), labels.len(), dim)?;
        check_finite(&features)?;
        check_labels(&labels, classes)?;
        Ok(Dataset {
            features,
            labels,
            dim,
            classes,
            id: next_id(),
        })
    }

    /// Names these contents (see the field's docs).
    pub(crate) fn id(&self) -> u64 {
        self.id
    }

    /// Number of samples.
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    /// Whether the data set has no samples (never true for a constructed one).
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// Number of features per sample.
    pub fn dim(&self) -> usize {
        self.dim
    }

    /// Number of classes; every label is below this.
    pub fn classes(&self) -> usize {
        self.classes
    }

    /// All features, row-major `[len, dim]`.
    pub fn features(&self) -> &[f32] {
        &self.features
    }

    /// All labels, one per sample.
    pub fn labels(&self) -> &[u32] {
        &self.labels
    }

    /// The features of sample `i`, or `None` if `i >= len()`.
    pub fn sample(&self, i: usize) -> Option<&[f32]> {
        let start = i.checked_mul(self.dim)?;
        self.features.get(start..start.checked_add(self.dim)?)
    }

    /// The first `n` samples (`n` is clamped to `len()`; `n == 0` is an
    /// [`Error::EmptyData`]).
    pub fn take(&self, n: usize) -> Result<Dataset> {
        if n == 0 {
            return Err(Error::EmptyData("take(0) yields no samples".into()));
        }
        let n = n.min(self.len());
        Ok(Dataset {
            features: self.features[..n * self.dim].to_vec(),
            labels: self.labels[..n].to_vec(),
            dim: self.dim,
            classes: self.classes,
            id: next_id(),
        })
    }

    /// The samples at `indices`, in that order (repeats allowed). An empty
    /// index list or any index `>= len()` is an error.
    pub fn select(&self, indices: &[usize]) -> Result<Dataset> {
        if indices.is_empty() {
            return Err(Error::EmptyData("select with no indices".into()));
        }
        let mut features = Vec::with_capacity(checked_product(
            "selected features",
            &[indices.len(), self.dim],
        )?);
        let mut labels = Vec::with_capacity(indices.len());
        for &i in indices {
            features.extend_from_slice(self.checked_sample(i)?);
            labels.push(self.labels[i]);
        }
        Ok(Dataset {
            features,
            labels,
            dim: self.dim,
            classes: self.classes,
            id: next_id(),
        })
    }

    /// Writes the samples at `indices` feature-major into `x`
    /// (`x[f * b + j]` = feature `f` of sample `indices[j]`, `b = indices.len()`)
    /// and their one-hot targets feature-major into `y`
    /// (`y[c * b + j] = 1.0` if the label is `c`, else `0.0`).
    ///
    /// `x` must hold at least `dim * b` and `y` at least `classes * b` values
    /// ([`Error::ShapeMismatch`] otherwise); only that prefix is written.
    /// Any index `>= len()` is an error, and then nothing is written.
    pub fn gather_feature_major(
        &self,
        indices: &[usize],
        x: &mut [f32],
        y: &mut [f32],
    ) -> Result<()> {
        let b = indices.len();
        self.check_gather_shapes(b, x.len(), y.len())?;
        self.check_indices(indices)?;
        self.gather_x(indices, &mut x[..self.dim * b]);
        self.gather_y(indices, &mut y[..self.classes * b]);
        Ok(())
    }

    /// An error naming the first of `indices` that is not a sample's.
    pub(crate) fn check_indices(&self, indices: &[usize]) -> Result<()> {
        match indices.iter().find(|&&i| i >= self.len()) {
            Some(&bad) => Err(self.index_error(bad)),
            None => Ok(()),
        }
    }

    /// Mutable access to the features, for in-place scaling.
    pub(crate) fn features_mut(&mut self) -> &mut [f32] {
        self.id = next_id();
        &mut self.features
    }

    /// Transposes the chosen rows into `x` one block of `GATHER_BLOCK` samples
    /// at a time: the block's rows stay cached while every feature writes one
    /// short contiguous run, instead of striding through `x` per element; 8x8 blocks go
    /// through registers (see [`rows_into_columns`]). Indices must already be validated
    /// ([`Self::check_indices`]) and `x` hold `dim * indices.len()` values.
    pub(crate) fn gather_x(&self, indices: &[usize], x: &mut [f32]) {
        let b = indices.len();
        if self.dim == 0 {
            return;
        }
        for (block, chunk) in indices.chunks(GATHER_BLOCK).enumerate() {
            let mut rows: [&[f32]; GATHER_BLOCK] = [&[]; GATHER_BLOCK];
            for (row, &i) in rows.iter_mut().zip(chunk) {
                *row = &self.features[i * self.dim..(i + 1) * self.dim];
            }
            let rows = &rows[..chunk.len()];
            rows_into_columns(&mut x[block * GATHER_BLOCK..], b, rows, self.dim);
        }
    }

    /// Writes one-hot targets into `y` (`classes * indices.len()` values); indices must
    /// already be validated.
    pub(crate) fn gather_y(&self, indices: &[usize], y: &mut [f32]) {
        let b = indices.len();
        y.fill(0.0);
        for (j, &i) in indices.iter().enumerate() {
            y[self.labels[i] as usize * b + j] = 1.0;
        }
    }

    fn check_gather_shapes(&self, b: usize, x_len: usize, y_len: usize) -> Result<()> {
        let need_x = self.dim.saturating_mul(b);
        if x_len < need_x {
            return Err(Error::shape(
                "gather_feature_major x",
                format!(">= {need_x} values ({} features x {b} samples)", self.dim),
                format!("{x_len}"),
            ));
        }
        let need_y = self.classes.saturating_mul(b);
        if y_len < need_y {
            return Err(Error::shape(
                "gather_feature_major y",
                format!(
                    ">= {need_y} values ({} classes x {b} samples)",
                    self.classes
                ),
                format!("{y_len}"),
            ));
        }
        Ok(())
    }

    fn checked_sample(&self, i: usize) -> Result<&[f32]> {
        self.sample(i).ok_or_else(|| self.index_error(i))
    }

    fn index_error(&self, i: usize) -> Error {
        Error::shape(
            "dataset sample index",
            format!("< {}", self.len()),
            format!("{i}"),
        )
    }
}

fn check_len(features: usize, samples: usize, dim: usize) -> Result<()> {
    match samples.checked_mul(dim) {
        Some(n) if n == features => Ok(()),
        _ => Err(Error::shape(
            "dataset features",
            format!("{samples} samples x {dim} features"),
            format!("{features} values"),
        )),
    }
}

fn check_finite(features: &[f32]) -> Result<()> {
    match features.iter().position(|v| !v.is_finite()) {
        Some(index) => Err(Error::NonFinite {
            context: "dataset features".into(),
            index,
            value: features[index],
        }),
        None => Ok(()),
    }
}

fn check_labels(labels: &[u32], classes: usize) -> Result<()> {
    match labels.iter().position(|&l| l as usize >= classes) {
        Some(index) => Err(Error::LabelOutOfRange {
            index,
            label: i64::from(labels[index]),
            classes,
        }),
        None => Ok(()),
    }
}
