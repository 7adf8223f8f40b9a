//! Loading, validating, scaling and batching classification data sets.
//!
//! Every loader validates what it reads (shapes, finiteness, label ranges) and
//! returns an [`Error`](crate::Error) instead of panicking on malformed input.
//!
//! Image sets: [`Mnist`] (bundled) and [`Cifar10`] (the official binary files).

pub mod batches;
pub mod cifar;
pub mod csv;
pub mod dataset;
pub mod idx;
pub mod mnist;
pub mod scaling;

pub use batches::{sequential_batches, shuffled_batches};
pub use cifar::Cifar10;
pub use csv::{load_csv, CsvOptions, LabelColumn};
pub use dataset::Dataset;
pub use mnist::Mnist;
pub use scaling::{Scaling, Standardizer};
