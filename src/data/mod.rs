//! Loading, validating, scaling and batching classification data sets.
//!
//! Every loader validates what it reads (shapes, finiteness, label ranges) and
//! returns an [`Error`](crate::Error) instead of panicking on malformed input.

pub mod batches;
pub mod csv;
pub mod dataset;
pub mod idx;
pub mod mnist;
pub mod scaling;

pub use batches::{sequential_batches, shuffled_batches};
pub use csv::{load_csv, CsvOptions, LabelColumn};
pub use dataset::Dataset;
pub use mnist::Mnist;
pub use scaling::{Scaling, Standardizer};
