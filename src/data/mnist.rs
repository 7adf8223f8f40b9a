//! The MNIST handwritten-digit data set, read from its IDX files.
//!
//! Fashion-MNIST (<https://github.com/zalandoresearch/fashion-mnist>) is a drop-in
//! replacement: the same four file names, the same IDX format, 60,000 + 10,000
//! 28x28 grey images in ten classes, so [`Mnist::load`] reads it unchanged (see
//! [`DatasetKind`](crate::data::DatasetKind) for the names of its classes).

use std::path::{Path, PathBuf};

use crate::data::dataset::Dataset;
use crate::data::idx::{read_idx, IdxArray};
use crate::error::{Error, Result};

/// MNIST has ten digit classes.
const CLASSES: usize = 10;

const TRAIN_IMAGES: &str = "train-images-idx3-ubyte";
const TRAIN_LABELS: &str = "train-labels-idx1-ubyte";
const TEST_IMAGES: &str = "t10k-images-idx3-ubyte";
const TEST_LABELS: &str = "t10k-labels-idx1-ubyte";

/// The four files, in the order [`Mnist::load`] reads them.
const FILES: [&str; 4] = [TRAIN_IMAGES, TRAIN_LABELS, TEST_IMAGES, TEST_LABELS];

/// Where to get the files, for [`Error::DataNotFound`].
pub const DOWNLOAD_HINT: &str = "download the four .gz files (11 MB) from \
    https://github.com/plasticity-rs/plasticity/tree/main/data/mnist or \
    https://ossci-datasets.s3.amazonaws.com/mnist/ into that directory, or load another \
    directory (the examples take --data DIR); the crates.io package does not ship them";

/// The MNIST training (60 000) and test (10 000) sets, pixels scaled to `[0, 1]`.
#[derive(Debug, Clone)]
pub struct Mnist {
    /// The training set.
    pub train: Dataset,
    /// The test set.
    pub test: Dataset,
}

impl Mnist {
    /// Loads the four standard MNIST files from `dir`, each either gzipped
    /// (`name.gz`, preferred when both exist) or raw (`name`).
    ///
    /// Images must be 3-dimensional IDX files, labels 1-dimensional, the counts
    /// must agree and every label must be below 10. When files are missing the error
    /// is [`Error::DataNotFound`], naming them and where to download them.
    ///
    /// Fashion-MNIST's files have the same names and format, so this loads a
    /// Fashion-MNIST directory as well ([`DatasetKind::FashionMnist`] does exactly
    /// that, with its own download hint).
    ///
    /// [`DatasetKind::FashionMnist`]: crate::data::DatasetKind::FashionMnist
    pub fn load(dir: impl AsRef<Path>) -> Result<Mnist> {
        let dir = dir.as_ref();
        let missing = missing_files(dir);
        if !missing.is_empty() {
            let names: Vec<String> = missing
                .iter()
                .filter_map(|p| p.file_name())
                .map(|n| format!("{}(.gz)", n.to_string_lossy()))
                .collect();
            return Err(Error::DataNotFound {
                dataset: "MNIST".into(),
                reason: format!("{} lacks {}", dir.display(), names.join(", ")),
                missing,
                hint: DOWNLOAD_HINT.into(),
            });
        }
        let train = load_split(&locate(dir, TRAIN_IMAGES)?, &locate(dir, TRAIN_LABELS)?)?;
        let test = load_split(&locate(dir, TEST_IMAGES)?, &locate(dir, TEST_LABELS)?)?;
        Ok(Mnist { train, test })
    }

    /// The repository's `data/mnist`, which holds MNIST in a clone of the repository.
    /// The crates.io package leaves it out (its 11 MB would pass the registry's size
    /// limit), so there [`Mnist::load`] of this directory is
    /// [`Error::DataNotFound`], saying where to download the files
    /// ([`DOWNLOAD_HINT`]).
    pub fn bundled_dir() -> PathBuf {
        PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/data/mnist"))
    }
}

/// Loads one images/labels pair of IDX files as a data set with pixels in `[0, 1]`.
pub fn load_split(images_path: &Path, labels_path: &Path) -> Result<Dataset> {
    let images = read_idx(images_path)?;
    let labels = read_idx(labels_path)?;
    let (count, dim) = image_shape(&images, images_path)?;
    let label_count = label_shape(&labels, labels_path)?;
    if count != label_count {
        return Err(Error::CorruptFile {
            path: labels_path.to_path_buf(),
            reason: format!(
                "{label_count} labels but {} holds {count} images",
                images_path.display()
            ),
        });
    }
    let features = images.data.iter().map(|&p| f32::from(p) / 255.0).collect();
    let labels = labels.data.iter().map(|&l| u32::from(l)).collect();
    Dataset::new(features, labels, dim, CLASSES)
}

/// `(count, rows * cols)` of an image file, which must be 3-dimensional.
fn image_shape(images: &IdxArray, path: &Path) -> Result<(usize, usize)> {
    match images.dims[..] {
        [count, rows, cols] => Ok((count, rows.saturating_mul(cols))),
        _ => Err(Error::CorruptFile {
            path: path.to_path_buf(),
            reason: format!(
                "MNIST images must have 3 dimensions (magic 0x00000803), found {:?}",
                images.dims
            ),
        }),
    }
}

/// Number of labels in a label file, which must be 1-dimensional.
fn label_shape(labels: &IdxArray, path: &Path) -> Result<usize> {
    match labels.dims[..] {
        [count] => Ok(count),
        _ => Err(Error::CorruptFile {
            path: path.to_path_buf(),
            reason: format!(
                "MNIST labels must have 1 dimension (magic 0x00000801), found {:?}",
                labels.dims
            ),
        }),
    }
}

/// The four files `dir` lacks (in neither the gzipped nor the raw form), each named
/// by its raw path; empty when all are there.
pub(crate) fn missing_files(dir: &Path) -> Vec<PathBuf> {
    FILES
        .into_iter()
        .filter_map(|name| locate(dir, name).err().map(|_| dir.join(name)))
        .collect()
}

/// `dir/name.gz` if it exists, else `dir/name`, else a not-found error.
fn locate(dir: &Path, name: &str) -> Result<PathBuf> {
    let gz = dir.join(format!("{name}.gz"));
    if gz.is_file() {
        return Ok(gz);
    }
    let raw = dir.join(name);
    if raw.is_file() {
        return Ok(raw);
    }
    Err(Error::Io {
        path: raw,
        source: std::io::Error::new(
            std::io::ErrorKind::NotFound,
            format!("neither {name} nor {name}.gz exists"),
        ),
    })
}
