//! The image classification data sets known by name (`--dataset mnist|fashion-mnist|
//! cifar10` in the examples): their input shapes, classes, where their files are and how
//! to load them.

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use crate::data::cifar::{self, Cifar10};
use crate::data::dataset::Dataset;
use crate::data::mnist::{self, Mnist};
use crate::error::{Error, Result};

/// The Fashion-MNIST repository, which links the four files.
const FASHION_SOURCE: &str = "https://github.com/zalandoresearch/fashion-mnist";

/// The digit names of MNIST's labels.
const DIGITS: [&str; 10] = ["0", "1", "2", "3", "4", "5", "6", "7", "8", "9"];

/// Fashion-MNIST's class names, indexed by label.
const FASHION_NAMES: [&str; 10] = [
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
];

/// An image classification data set this crate can load by name.
///
/// Every sample is one image flattened channel-major (`C, H, W`, the layout of one
/// `NCHW` input): [`input_shape`](Self::input_shape) gives `(C, H, W)`, and a
/// [`Dataset`] loaded by [`load`](Self::load) has `C * H * W` features per sample, scaled
/// to `[0, 1]`, and [`classes`](Self::classes) classes.
///
/// | kind | name | shape | classes | files |
/// |------|------|-------|---------|-------|
/// | [`Mnist`](Self::Mnist) | `mnist` | `(1, 28, 28)` | 10 digits | bundled in `data/mnist` |
/// | [`FashionMnist`](Self::FashionMnist) | `fashion-mnist` | `(1, 28, 28)` | 10 garments | the same IDX file names as MNIST, not bundled |
/// | [`Cifar10`](Self::Cifar10) | `cifar10` | `(3, 32, 32)` | 10 objects | the binary version, not bundled |
///
/// A command line with `--dataset NAME` and an optional `--data DIR` maps onto it as
/// follows; only MNIST has a default directory, the others answer
/// [`Error::DataNotFound`] with a message saying where to get the files:
///
/// ```
/// use std::path::Path;
/// use plasticity::data::{Dataset, DatasetKind};
/// use plasticity::Error;
///
/// fn load(name: &str, data: Option<&Path>) -> plasticity::Result<(Dataset, Dataset)> {
///     let kind = DatasetKind::from_name(name)?;
///     let dir = match data {
///         Some(dir) => dir.to_path_buf(),
///         None => kind.default_dir()?,
///     };
///     kind.load(dir)
/// }
///
/// let kind = DatasetKind::from_name("cifar10")?;
/// assert_eq!(kind.input_shape(), (3, 32, 32));
/// assert_eq!((kind.input_dim(), kind.classes()), (3072, 10));
/// assert_eq!(kind.class_names()[0], "airplane");
///
/// // CIFAR-10 is not bundled: without --data the error says how to get it.
/// let err = load("cifar10", None).unwrap_err();
/// assert!(matches!(err, Error::DataNotFound { .. }));
/// assert!(err.to_string().contains("--data DIR"));
///
/// // MNIST is: `load("mnist", None)` reads data/mnist.
/// assert!(DatasetKind::Mnist.default_dir()?.join("train-images-idx3-ubyte.gz").is_file());
/// # Ok::<(), Error>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DatasetKind {
    /// Handwritten digits, 60,000 training and 10,000 test images of 28x28 grey pixels;
    /// bundled with this repository ([`Mnist::bundled_dir`]).
    Mnist,
    /// Zalando's Fashion-MNIST: garments in the format, sizes and file names of MNIST
    /// (read by [`Mnist::load`]); not bundled.
    FashionMnist,
    /// CIFAR-10: 50,000 training and 10,000 test colour images of 32x32 pixels, read from
    /// the official binary files by [`Cifar10::load`]; not bundled.
    Cifar10,
}

impl DatasetKind {
    /// Every kind, in the order of the table above.
    pub const ALL: [DatasetKind; 3] = [
        DatasetKind::Mnist,
        DatasetKind::FashionMnist,
        DatasetKind::Cifar10,
    ];

    /// The kind called `name`: `mnist`, `fashion-mnist` or `cifar10`. Case, `-` and `_`
    /// are ignored (`Fashion_MNIST`, `CIFAR-10` work too). Any other name is an
    /// [`Error::InvalidConfig`] listing the known ones.
    pub fn from_name(name: &str) -> Result<DatasetKind> {
        let key: String = name
            .trim()
            .chars()
            .filter(|c| *c != '-' && *c != '_')
            .map(|c| c.to_ascii_lowercase())
            .collect();
        DatasetKind::ALL
            .into_iter()
            .find(|kind| kind.name().replace('-', "") == key)
            .ok_or_else(|| {
                let known: Vec<&str> = DatasetKind::ALL.iter().map(|k| k.name()).collect();
                Error::config(format!(
                    "unknown data set {name:?}: expected one of {}",
                    known.join(", ")
                ))
            })
    }

    /// The name [`from_name`](Self::from_name) takes and `Display` prints: `mnist`,
    /// `fashion-mnist` or `cifar10`.
    pub fn name(self) -> &'static str {
        match self {
            DatasetKind::Mnist => "mnist",
            DatasetKind::FashionMnist => "fashion-mnist",
            DatasetKind::Cifar10 => "cifar10",
        }
    }

    /// The name as people write it, for messages: `MNIST`, `Fashion-MNIST`, `CIFAR-10`.
    pub fn title(self) -> &'static str {
        match self {
            DatasetKind::Mnist => "MNIST",
            DatasetKind::FashionMnist => "Fashion-MNIST",
            DatasetKind::Cifar10 => "CIFAR-10",
        }
    }

    /// One sample's shape `(channels, height, width)`: `(1, 28, 28)` for MNIST and
    /// Fashion-MNIST, `(3, 32, 32)` for CIFAR-10. Features are stored in this order.
    pub fn input_shape(self) -> (usize, usize, usize) {
        match self {
            DatasetKind::Mnist | DatasetKind::FashionMnist => (1, 28, 28),
            DatasetKind::Cifar10 => (cifar::CHANNELS, cifar::HEIGHT, cifar::WIDTH),
        }
    }

    /// Features per sample, `channels * height * width` (784 or 3072): the input width
    /// of a dense network.
    pub fn input_dim(self) -> usize {
        let (c, h, w) = self.input_shape();
        c * h * w
    }

    /// Number of classes (10 for all three).
    pub fn classes(self) -> usize {
        self.class_names().len()
    }

    /// The class names, indexed by label.
    pub fn class_names(self) -> &'static [&'static str] {
        match self {
            DatasetKind::Mnist => &DIGITS,
            DatasetKind::FashionMnist => &FASHION_NAMES,
            DatasetKind::Cifar10 => &cifar::CLASS_NAMES,
        }
    }

    /// Whether the files come with this repository (only MNIST's do).
    pub fn is_bundled(self) -> bool {
        self == DatasetKind::Mnist
    }

    /// Where the files are when no directory is given: the bundled `data/mnist` for
    /// MNIST. The others are not bundled, and for them this is an
    /// [`Error::DataNotFound`] that says where to download the files and to pass their
    /// directory (`--data DIR` in the examples).
    pub fn default_dir(self) -> Result<PathBuf> {
        if self.is_bundled() {
            return Ok(Mnist::bundled_dir());
        }
        Err(Error::DataNotFound {
            dataset: self.title().into(),
            reason: "it is not bundled with this repository (only MNIST is, in data/mnist) \
                     and no directory was given"
                .into(),
            missing: Vec::new(),
            hint: self.hint(),
        })
    }

    /// Loads the training and test sets from `dir`, in that order.
    ///
    /// MNIST and Fashion-MNIST are read by [`Mnist::load`] (the four IDX files, gzipped
    /// or not), CIFAR-10 by [`Cifar10::load`] (the six binary batch files). Missing files
    /// are an [`Error::DataNotFound`] naming them, with a hint on where to get them;
    /// malformed files are the loaders' errors; images of another size than
    /// [`input_shape`](Self::input_shape) are an [`Error::ShapeMismatch`].
    pub fn load(self, dir: impl AsRef<Path>) -> Result<(Dataset, Dataset)> {
        let dir = dir.as_ref();
        let (train, test) = match self {
            DatasetKind::Mnist | DatasetKind::FashionMnist => {
                self.check_idx_files(dir)?;
                let data = Mnist::load(dir)?;
                (data.train, data.test)
            }
            DatasetKind::Cifar10 => {
                let data = Cifar10::load(dir)?;
                (data.train, data.test)
            }
        };
        for (set, which) in [(&train, "training"), (&test, "test")] {
            if set.dim() != self.input_dim() {
                let (c, h, w) = self.input_shape();
                return Err(Error::shape(
                    format!("{} {which} images in {}", self.title(), dir.display()),
                    format!("{c}x{h}x{w} = {} pixels", self.input_dim()),
                    format!("{} pixels", set.dim()),
                ));
            }
        }
        Ok((train, test))
    }

    /// Where to get the files and what to pass.
    fn hint(self) -> String {
        match self {
            DatasetKind::Mnist => format!(
                "MNIST is bundled with this repository in {}: pass that directory, or one \
                 holding the same four IDX files (--data DIR in the examples)",
                Mnist::bundled_dir().display()
            ),
            DatasetKind::FashionMnist => format!(
                "Download train-images-idx3-ubyte.gz, train-labels-idx1-ubyte.gz, \
                 t10k-images-idx3-ubyte.gz and t10k-labels-idx1-ubyte.gz (linked from \
                 {FASHION_SOURCE}, folder data/fashion) into one directory, keep their \
                 names, and pass it (--data DIR in the examples)"
            ),
            DatasetKind::Cifar10 => cifar::HINT.into(),
        }
    }

    /// An [`Error::DataNotFound`] if `dir` lacks any of the four IDX files.
    fn check_idx_files(self, dir: &Path) -> Result<()> {
        let missing = mnist::missing_files(dir);
        if missing.is_empty() {
            return Ok(());
        }
        let reason = if dir.is_dir() {
            let names: Vec<String> = missing
                .iter()
                .map(|p| format!("{0} (or {0}.gz)", p.display()))
                .collect();
            format!("{} not found", names.join(", "))
        } else {
            format!("the directory {} does not exist", dir.display())
        };
        Err(Error::DataNotFound {
            dataset: self.title().into(),
            reason,
            missing,
            hint: self.hint(),
        })
    }
}

impl fmt::Display for DatasetKind {
    /// Writes [`name`](Self::name).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for DatasetKind {
    type Err = Error;

    /// The same as [`DatasetKind::from_name`].
    fn from_str(s: &str) -> Result<DatasetKind> {
        DatasetKind::from_name(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn from_name_knows_every_kind_and_its_spellings() {
        for kind in DatasetKind::ALL {
            assert_eq!(DatasetKind::from_name(kind.name()).unwrap(), kind);
            assert_eq!(kind.to_string().parse::<DatasetKind>().unwrap(), kind);
        }
        for (name, kind) in [
            ("MNIST", DatasetKind::Mnist),
            (" mnist ", DatasetKind::Mnist),
            ("Fashion-MNIST", DatasetKind::FashionMnist),
            ("fashion_mnist", DatasetKind::FashionMnist),
            ("fashionmnist", DatasetKind::FashionMnist),
            ("CIFAR-10", DatasetKind::Cifar10),
            ("cifar_10", DatasetKind::Cifar10),
        ] {
            assert_eq!(DatasetKind::from_name(name).unwrap(), kind, "{name}");
        }
    }

    #[test]
    fn from_name_rejects_unknown_names_listing_the_known_ones() {
        for bad in ["", "cifar100", "cifar", "fashion", "emnist", "mnist2"] {
            match DatasetKind::from_name(bad) {
                Err(Error::InvalidConfig(msg)) => {
                    assert!(
                        msg.contains("mnist, fashion-mnist, cifar10"),
                        "{bad:?}: {msg}"
                    );
                }
                other => panic!("{bad:?}: expected InvalidConfig, got {other:?}"),
            }
        }
    }

    #[test]
    fn shapes_and_classes() {
        assert_eq!(DatasetKind::Mnist.input_shape(), (1, 28, 28));
        assert_eq!(DatasetKind::FashionMnist.input_shape(), (1, 28, 28));
        assert_eq!(DatasetKind::Cifar10.input_shape(), (3, 32, 32));
        assert_eq!(DatasetKind::Mnist.input_dim(), 784);
        assert_eq!(DatasetKind::Cifar10.input_dim(), cifar::PIXELS);
        for kind in DatasetKind::ALL {
            assert_eq!(kind.classes(), 10);
        }
        assert_eq!(DatasetKind::FashionMnist.class_names()[9], "Ankle boot");
        assert_eq!(DatasetKind::Cifar10.class_names()[9], "truck");
        assert_eq!(DatasetKind::Mnist.class_names()[7], "7");
    }

    #[test]
    fn only_mnist_has_a_default_dir() {
        let dir = DatasetKind::Mnist.default_dir().unwrap();
        assert!(mnist::missing_files(&dir).is_empty(), "{}", dir.display());
        for (kind, source) in [
            (DatasetKind::FashionMnist, FASHION_SOURCE),
            (
                DatasetKind::Cifar10,
                "https://www.cs.toronto.edu/~kriz/cifar.html",
            ),
        ] {
            let err = kind.default_dir().unwrap_err();
            let msg = err.to_string();
            match err {
                Error::DataNotFound {
                    dataset, missing, ..
                } => {
                    assert_eq!(dataset, kind.title());
                    assert!(missing.is_empty());
                }
                other => panic!("{kind}: expected DataNotFound, got {other:?}"),
            }
            for needle in ["not bundled", source, "--data DIR"] {
                assert!(msg.contains(needle), "{kind}: {needle:?} not in {msg}");
            }
        }
    }

    #[test]
    fn load_from_a_missing_directory_says_where_to_get_the_data() {
        let dir = std::env::temp_dir().join(format!(
            "plasticity-kind-missing-{}/nowhere",
            std::process::id()
        ));
        for kind in DatasetKind::ALL {
            let err = kind.load(&dir).unwrap_err();
            let msg = err.to_string();
            assert!(msg.contains("does not exist"), "{kind}: {msg}");
            assert!(msg.contains("--data DIR"), "{kind}: {msg}");
            match err {
                Error::DataNotFound { missing, .. } => {
                    let expected = if kind == DatasetKind::Cifar10 { 6 } else { 4 };
                    assert_eq!(missing.len(), expected, "{kind}: {missing:?}");
                    assert!(missing.iter().all(|p| p.starts_with(&dir)));
                }
                other => panic!("{kind}: expected DataNotFound, got {other:?}"),
            }
        }
    }
}
