//! The crate's one error type and its `Result` alias.

use std::path::PathBuf;

/// Everything that can go wrong in `plasticity`, grouped by where it happens.
///
/// Every public function that can fail returns this type; none panics on user input.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    // --- configuration -------------------------------------------------------------
    /// A builder, option or hyperparameter was given a value that cannot work.
    #[error("invalid configuration: {0}")]
    InvalidConfig(String),

    /// An environment variable the crate reads holds a value it does not accept.
    #[error("environment variable {name}={value:?} is not valid: expected {expected}")]
    InvalidEnvVar {
        /// The variable.
        name: &'static str,
        /// Its value.
        value: String,
        /// The values it accepts.
        expected: &'static str,
    },

    /// A size computed from the caller's counts (a product such as samples x
    /// features) does not fit in `usize`, so no buffer of that size can exist.
    #[error("{what}: {product} overflows usize, no buffer can be that large")]
    SizeOverflow {
        /// What was being sized.
        what: String,
        /// The product or sum, written out (`a x b`).
        product: String,
    },

    /// An operation that cannot work with this configuration (for example, a setter
    /// whose value the rule would overwrite before it is used).
    #[error("unsupported: {0}")]
    Unsupported(String),

    /// Two things that must agree in shape do not.
    #[error("shape mismatch in {context}: expected {expected}, got {actual}")]
    ShapeMismatch {
        /// Where the mismatch was found.
        context: String,
        /// The shape that was required.
        expected: String,
        /// The shape that was given.
        actual: String,
    },

    // --- data ----------------------------------------------------------------------
    /// A file could not be opened or read.
    #[error("cannot read {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying I/O error.
        #[source]
        source: std::io::Error,
    },

    /// A file could not be written (or replaced) whole.
    #[error("cannot write {path}: {source}")]
    Write {
        /// The file.
        path: PathBuf,
        /// The underlying I/O error.
        #[source]
        source: std::io::Error,
    },

    /// A file was read but its content is not what its format requires.
    #[error("{path}: {reason}")]
    CorruptFile {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },

    /// A checkpoint file is missing, truncated, corrupt, or does not fit the network.
    #[error("checkpoint {path}: {reason}")]
    Checkpoint {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },

    /// A CSV row could not be parsed.
    #[error("{path}:{line}: {reason}")]
    Csv {
        /// The file.
        path: PathBuf,
        /// One-based line number of the offending row.
        line: usize,
        /// What is wrong with the row.
        reason: String,
    },

    /// A data set's files are not there: missing from the directory given, or (for a
    /// data set this repository does not bundle) no directory was given at all.
    /// `hint` says where to get the data and how to point the loader at it.
    #[error("{dataset} data not found: {reason}. {hint}")]
    DataNotFound {
        /// The data set, as people write it (`"CIFAR-10"`).
        dataset: String,
        /// What is missing.
        reason: String,
        /// Every file looked for and not found (empty when no directory was given).
        missing: Vec<PathBuf>,
        /// Where to download the data and what to pass.
        hint: String,
    },

    /// A class label does not fit the number of classes.
    #[error("label {label} of sample {index} is out of range for {classes} classes")]
    LabelOutOfRange {
        /// Index of the sample.
        index: usize,
        /// The label found.
        label: i64,
        /// The number of classes.
        classes: usize,
    },

    /// A NaN or infinity was found where only finite numbers make sense.
    #[error("non-finite value {value} in {context} at index {index}")]
    NonFinite {
        /// What was being checked.
        context: String,
        /// Flat index of the first offending value.
        index: usize,
        /// The value itself.
        value: f32,
    },

    /// A data set or batch has no samples.
    #[error("empty data: {0}")]
    EmptyData(String),

    // --- training ------------------------------------------------------------------
    /// The loss (or a parameter) became NaN or infinite during training.
    #[error(
        "training diverged at step {step}: {what} is {value}; try a smaller learning rate \
         or gradient clipping (TrainConfig::grad_clip)"
    )]
    Diverged {
        /// Training step (counted from 1) at which it was detected.
        step: u64,
        /// What became non-finite.
        what: String,
        /// The offending value.
        value: f32,
    },

    // --- backends ------------------------------------------------------------------
    /// A backend operation failed.
    #[error("backend error: {0}")]
    Backend(String),

    /// A GPU was asked for but no usable adapter exists.
    #[error("no GPU adapter: {0}")]
    NoAdapter(String),

    /// An allocation exceeds a limit of the device.
    #[error("{what} needs {bytes} bytes, more than the device's {limit_name} of {limit}")]
    BufferTooLarge {
        /// What was being allocated.
        what: String,
        /// Bytes it needs.
        bytes: u64,
        /// The limit exceeded, as wgpu names it.
        limit_name: &'static str,
        /// The limit's value.
        limit: u64,
    },

    /// The GPU device was lost (driver reset, removal, or a fatal error).
    #[error("GPU device lost: {0}")]
    DeviceLost(String),

    /// The device ran out of memory (every buffer fit its limits, but not all at once).
    #[error("out of device memory: {0}")]
    OutOfMemory(String),
}

/// `Result` with this crate's [`Error`].
pub type Result<T> = std::result::Result<T, Error>;

/// The product of `factors`, or [`Error::SizeOverflow`] naming `what` when it does not
/// fit in `usize`. Every size computed from a caller's counts goes through this.
pub(crate) fn checked_product(what: &str, factors: &[usize]) -> Result<usize> {
    factors
        .iter()
        .try_fold(1usize, |acc, &f| acc.checked_mul(f))
        .ok_or_else(|| Error::overflow(what, factors))
}

impl Error {
    /// Shorthand for [`Error::ShapeMismatch`].
    pub(crate) fn shape(
        context: impl Into<String>,
        expected: impl Into<String>,
        actual: impl Into<String>,
    ) -> Self {
        Error::ShapeMismatch {
            context: context.into(),
            expected: expected.into(),
            actual: actual.into(),
        }
    }

    /// Shorthand for [`Error::SizeOverflow`] naming the factors.
    pub(crate) fn overflow(what: impl Into<String>, factors: &[usize]) -> Self {
        let product: Vec<String> = factors.iter().map(usize::to_string).collect();
        Error::SizeOverflow {
            what: what.into(),
            product: product.join(" x "),
        }
    }

    /// Shorthand for [`Error::InvalidConfig`].
    pub(crate) fn config(msg: impl Into<String>) -> Self {
        Error::InvalidConfig(msg.into())
    }
}
