//! The named tensors a learner keeps beside the network's parameters.
//!
//! Fixed tensors (feedback matrices) sit one after another in one buffer, in the order
//! the learner declares them, so consecutive tensors of one column count form one
//! stacked matrix (DFA's `[B_1; …; B_L]`). Trainable tensors sit in the network's
//! parameter arena, after the parameters, with their gradients and optimizer moments
//! laid out alike: one optimizer pass updates the network and them together (two
//! passes over the one arena when the learner gives them an optimizer of their own).
//! Per-sample tensors (state such as a settling network's activity) are
//! `rows x batch`, packed for the batch in flight like activations.

use crate::backend::{Backend, BufId, Mat};
use crate::error::{Error, Result};

/// How a learner's tensor is stored and updated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TensorKind {
    /// Changed only by the learner itself (e.g. random feedback).
    Fixed,
    /// Updated by the optimizer from the gradient the learner leaves for it.
    Trainable,
    /// `rows x batch` state of the batch in flight.
    PerSample,
}

/// A tensor a learner keeps: its name (its key in checkpoints), shape and kind.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TensorSpec {
    /// Unique name, e.g. `feedback.0`.
    pub name: String,
    /// Rows.
    pub rows: usize,
    /// Columns (ignored for [`TensorKind::PerSample`]: the batch).
    pub cols: usize,
    /// How it is stored and updated.
    pub kind: TensorKind,
}

impl TensorSpec {
    /// A `rows x cols` tensor the learner alone changes.
    pub fn fixed(name: impl Into<String>, rows: usize, cols: usize) -> TensorSpec {
        TensorSpec {
            name: name.into(),
            rows,
            cols,
            kind: TensorKind::Fixed,
        }
    }

    /// A `rows x cols` tensor the optimizer updates.
    pub fn trainable(name: impl Into<String>, rows: usize, cols: usize) -> TensorSpec {
        TensorSpec {
            kind: TensorKind::Trainable,
            ..TensorSpec::fixed(name, rows, cols)
        }
    }

    /// A `rows x batch` tensor of per-sample state.
    pub fn per_sample(name: impl Into<String>, rows: usize) -> TensorSpec {
        TensorSpec {
            kind: TensorKind::PerSample,
            ..TensorSpec::fixed(name, rows, 0)
        }
    }

    /// Whether it is saved in checkpoints (everything but per-sample state).
    pub fn persistent(&self) -> bool {
        self.kind != TensorKind::PerSample
    }
}

/// Names the crate keeps for the network's own tensors in checkpoints.
const RESERVED_PREFIXES: [&str; 2] = ["layers.", "optimizer."];

/// Where each of a learner's tensors lives on the backend.
#[derive(Debug, Clone)]
pub(crate) struct LearnerTensors {
    specs: Vec<TensorSpec>,
    /// Element offset (row offset for per-sample tensors) within its kind's storage.
    offsets: Vec<usize>,
    fixed: BufId,
    /// The parameter arena's values, gradients and two optimizer moments.
    trainable: [BufId; 4],
    /// Where the trainable tensors begin in the arena (after the parameters).
    trainable_base: usize,
    trainable_len: usize,
    per_sample: BufId,
}

/// The learner's tensors, checked and laid out, before anything is allocated: the
/// trainer sizes its parameter arena with [`TensorPlan::trainable_len`].
pub(crate) struct TensorPlan {
    specs: Vec<TensorSpec>,
    offsets: Vec<usize>,
    /// Floats of the fixed, trainable and per-sample (per sample) tensors.
    sizes: [usize; 3],
}

impl TensorPlan {
    /// Floats the trainable tensors need in the parameter arena.
    pub fn trainable_len(&self) -> usize {
        self.sizes[TensorKind::Trainable as usize]
    }
}

impl LearnerTensors {
    /// Checks names and sizes and gives every tensor its place.
    pub fn plan(specs: Vec<TensorSpec>) -> Result<TensorPlan> {
        let mut seen = std::collections::HashSet::new();
        let mut sizes = [0usize; 3];
        let mut offsets = Vec::with_capacity(specs.len());
        for spec in &specs {
            if spec.name.is_empty() || !seen.insert(spec.name.clone()) {
                return Err(Error::config(format!(
                    "learner tensor name {:?} is empty or used twice",
                    spec.name
                )));
            }
            if let Some(p) = RESERVED_PREFIXES
                .iter()
                .find(|p| spec.name.starts_with(**p))
            {
                return Err(Error::config(format!(
                    "learner tensor {:?}: names starting with {p:?} are the network's",
                    spec.name
                )));
            }
            let slot = &mut sizes[spec.kind as usize];
            offsets.push(*slot);
            let per = match spec.kind {
                TensorKind::PerSample => spec.rows,
                _ => spec.rows.checked_mul(spec.cols).ok_or_else(|| {
                    Error::config(format!("learner tensor {:?} is too large", spec.name))
                })?,
            };
            *slot = slot
                .checked_add(per)
                .ok_or_else(|| Error::config("learner tensors too large"))?;
        }
        Ok(TensorPlan {
            specs,
            offsets,
            sizes,
        })
    }

    /// Allocates the planned tensors; the trainable ones go into the parameter arena
    /// `arena` (values, gradients, two moments) from element `base`, which the trainer
    /// sized for them.
    pub fn new(
        backend: &mut dyn Backend,
        plan: TensorPlan,
        capacity: usize,
        arena: [BufId; 4],
        base: usize,
    ) -> Result<Self> {
        let TensorPlan {
            specs,
            offsets,
            sizes,
        } = plan;
        let per_sample_len = sizes[2]
            .checked_mul(capacity)
            .ok_or_else(|| Error::config("learner per-sample tensors too large"))?;
        // Zero-length buffers are invalid on some backends; allocate at least one float.
        let alloc = |b: &mut dyn Backend, n: usize| b.alloc(n.max(1));
        Ok(LearnerTensors {
            fixed: alloc(backend, sizes[0])?,
            trainable: arena,
            trainable_base: base,
            trainable_len: sizes[1],
            per_sample: alloc(backend, per_sample_len)?,
            specs,
            offsets,
        })
    }

    pub fn specs(&self) -> &[TensorSpec] {
        &self.specs
    }

    fn index(&self, name: &str) -> Result<usize> {
        self.specs
            .iter()
            .position(|s| s.name == name)
            .ok_or_else(|| {
                let names: Vec<&str> = self.specs.iter().map(|s| s.name.as_str()).collect();
                Error::config(format!(
                    "the learner has no tensor {name:?} (it has {names:?})"
                ))
            })
    }

    /// The tensor `name` for a batch of `batch` samples.
    pub fn get(&self, name: &str, batch: usize) -> Result<Mat> {
        let i = self.index(name)?;
        Ok(self.at(i, batch))
    }

    pub fn spec(&self, name: &str) -> Result<&TensorSpec> {
        Ok(&self.specs[self.index(name)?])
    }

    fn at(&self, i: usize, batch: usize) -> Mat {
        let (spec, offset) = (&self.specs[i], self.offsets[i]);
        match spec.kind {
            TensorKind::Fixed => Mat::new(self.fixed, offset, spec.rows, spec.cols),
            TensorKind::Trainable => Mat::new(
                self.trainable[0],
                self.trainable_base + offset,
                spec.rows,
                spec.cols,
            ),
            TensorKind::PerSample => Mat::new(self.per_sample, offset * batch, spec.rows, batch),
        }
    }

    /// The gradient of trainable tensor `name`.
    pub fn grad(&self, name: &str) -> Result<Mat> {
        let i = self.index(name)?;
        if self.specs[i].kind != TensorKind::Trainable {
            return Err(Error::config(format!(
                "learner tensor {name:?} is not trainable, so it has no gradient"
            )));
        }
        let mut m = self.at(i, 0);
        m.buf = self.trainable[1];
        Ok(m)
    }

    /// `rows` rows of consecutive fixed tensors starting at `first`, `cols` wide.
    pub fn stacked(&self, first: &str, rows: usize, cols: usize) -> Result<Mat> {
        let m = self.get(first, 0)?;
        Ok(Mat::new(m.buf, m.offset, rows, cols))
    }

    /// The trainable tensors' part of arena `buf` (0 values, 1 gradients, 2-3
    /// moments).
    pub fn trainable_arena(&self, buf: usize) -> Mat {
        Mat::new(
            self.trainable[buf],
            self.trainable_base,
            1,
            self.trainable_len,
        )
    }

    /// The name of the trainable tensor holding element `index` of the parameter
    /// arena, if one does.
    pub fn trainable_at(&self, index: usize) -> Option<&str> {
        let at = index.checked_sub(self.trainable_base)?;
        self.specs
            .iter()
            .zip(&self.offsets)
            .find(|(s, &o)| {
                s.kind == TensorKind::Trainable && (o..o + s.rows * s.cols).contains(&at)
            })
            .map(|(s, _)| s.name.as_str())
    }

    pub fn trainable_len(&self) -> usize {
        self.trainable_len
    }
}
