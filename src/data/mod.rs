//! Loading, validating, scaling and batching classification data sets.
//!
//! Every loader validates what it reads (shapes, finiteness, label ranges) and
//! returns an [`Error`](crate::Error) instead of panicking on malformed input.
//!
//! Image sets: [`Mnist`] (bundled; also reads Fashion-MNIST, which uses the same
//! files) and [`Cifar10`] (the official binary files); [`DatasetKind`] names the three
//! and loads one by name, with its input shape and classes.

pub mod batches;
pub mod cifar;
pub mod csv;
pub mod dataset;
pub mod idx;
pub mod kind;
pub mod mnist;
pub mod scaling;

pub use batches::{sequential_batches, shuffled_batches};
pub use cifar::Cifar10;
pub use csv::{load_csv, CsvOptions, LabelColumn};
pub use dataset::Dataset;
pub use kind::DatasetKind;
pub use mnist::Mnist;
pub use scaling::{Scaling, Standardizer};
