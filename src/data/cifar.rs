//! The CIFAR-10 image data set, read from its official binary files.
//!
//! Source: the "CIFAR-10 binary version" (`cifar-10-binary.tar.gz`) from
//! <https://www.cs.toronto.edu/~kriz/cifar.html>. It is not bundled with this repository
//! (about 160 MiB); extracted, it is a directory `cifar-10-batches-bin/` holding
//! `data_batch_1.bin` ... `data_batch_5.bin` (the training set) and `test_batch.bin`.
//!
//! Layout of every file: records of [`RECORD_BYTES`] (3073) bytes, 10,000 of them in the
//! official files; a record is one label byte (`0..=9`) followed by 3072 pixel bytes: the
//! 1024 red values of the 32x32 image row by row, then the 1024 green, then the 1024
//! blue. That is channel-major `C, H, W` order, which this loader keeps, so a sample's
//! features are exactly what a convolutional network with `NCHW` input expects; feature
//! `c * 1024 + y * 32 + x` is channel `c` at row `y`, column `x`. Pixels are scaled to
//! `[0, 1]` by dividing by 255, as [`Mnist`](crate::data::Mnist) does.

use std::path::{Path, PathBuf};

use crate::data::dataset::Dataset;
use crate::error::{Error, Result};

/// CIFAR-10 has ten classes; [`CLASS_NAMES`] names them by label.
pub const CLASSES: usize = 10;

/// Colour channels of an image (red, green, blue).
pub const CHANNELS: usize = 3;

/// Image height in pixels.
pub const HEIGHT: usize = 32;

/// Image width in pixels.
pub const WIDTH: usize = 32;

/// Features per sample: `CHANNELS * HEIGHT * WIDTH` = 3072.
pub const PIXELS: usize = CHANNELS * HEIGHT * WIDTH;

/// Bytes per record in a batch file: one label byte, then [`PIXELS`] pixel bytes.
pub const RECORD_BYTES: usize = 1 + PIXELS;

/// Records in each of the official batch files.
pub const RECORDS_PER_FILE: usize = 10_000;

/// The class names, indexed by label (from the data set's `batches.meta.txt`).
pub const CLASS_NAMES: [&str; CLASSES] = [
    "airplane",
    "automobile",
    "bird",
    "cat",
    "deer",
    "dog",
    "frog",
    "horse",
    "ship",
    "truck",
];

/// The five training files, whose records form [`Cifar10::train`] in this order.
pub const TRAIN_FILES: [&str; 5] = [
    "data_batch_1.bin",
    "data_batch_2.bin",
    "data_batch_3.bin",
    "data_batch_4.bin",
    "data_batch_5.bin",
];

/// The test file, whose records form [`Cifar10::test`].
pub const TEST_FILE: &str = "test_batch.bin";

/// The folder the official archive extracts to; [`Cifar10::load`] also looks inside it.
pub const ARCHIVE_DIR: &str = "cifar-10-batches-bin";

/// Where to get the data and what to do with it, for error messages.
pub(crate) const HINT: &str = "Download the \"CIFAR-10 binary version\" \
    (cifar-10-binary.tar.gz) from https://www.cs.toronto.edu/~kriz/cifar.html, extract it \
    (tar xzf cifar-10-binary.tar.gz) and pass the cifar-10-batches-bin directory it \
    creates (--data DIR in the examples)";

/// The page the data comes from.
const SOURCE: &str = "https://www.cs.toronto.edu/~kriz/cifar.html";

/// The archive's file name, for the hint to extract it.
const ARCHIVE: &str = "cifar-10-binary.tar.gz";

/// The name used in messages.
const NAME: &str = "CIFAR-10";

/// The CIFAR-10 training (50,000) and test (10,000) sets: features channel-major
/// (`3 x 32 x 32`, see the [module docs](self)) scaled to `[0, 1]`, labels `0..=9`
/// (named by [`CLASS_NAMES`]).
///
/// Held as `f32`, the two sets take about 740 MB of memory.
///
/// ```
/// use plasticity::data::cifar::{self, Cifar10};
///
/// // A tiny stand-in for the real directory: one record per file, each a plain red
/// // image whose label is its file's index.
/// let dir = std::env::temp_dir().join(format!("cifar-doc-{}", std::process::id()));
/// std::fs::create_dir_all(&dir)?;
/// for (label, name) in cifar::TRAIN_FILES.iter().chain([&cifar::TEST_FILE]).enumerate() {
///     let mut record = vec![label as u8];
///     record.extend([255u8; 1024]); // red
///     record.extend([0u8; 2048]); // green, blue
///     std::fs::write(dir.join(name), &record)?;
/// }
///
/// let data = Cifar10::load(&dir)?;
/// assert_eq!(data.train.len(), 5);
/// assert_eq!(data.train.labels(), &[0, 1, 2, 3, 4]);
/// assert_eq!(data.test.labels(), &[5]);
/// let image = data.test.sample(0).unwrap(); // [red plane | green plane | blue plane]
/// assert_eq!((image[0], image[1023], image[1024], image[3071]), (1.0, 1.0, 0.0, 0.0));
/// assert_eq!(cifar::CLASS_NAMES[5], "dog");
///
/// // Without the files, the error names them and says where to get the data.
/// std::fs::remove_dir_all(&dir)?;
/// let err = Cifar10::load(&dir).unwrap_err();
/// assert!(err.to_string().contains("https://www.cs.toronto.edu/~kriz/cifar.html"));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone)]
pub struct Cifar10 {
    /// The training set: the records of [`TRAIN_FILES`], in order.
    pub train: Dataset,
    /// The test set: the records of [`TEST_FILE`].
    pub test: Dataset,
}

impl Cifar10 {
    /// Loads the six official batch files from `dir`, or from `dir/cifar-10-batches-bin`
    /// when `dir` is the folder the archive was extracted in.
    ///
    /// Each file must hold whole records (its size a non-zero multiple of
    /// [`RECORD_BYTES`]) with labels below 10; the official files hold
    /// [`RECORDS_PER_FILE`] each, but any number of whole records is accepted. Missing
    /// files are an [`Error::DataNotFound`] that names every one of them and says
    /// where to get the data; a file of the wrong size or with a label of 10 or more is
    /// an [`Error::CorruptFile`] naming the file.
    pub fn load(dir: impl AsRef<Path>) -> Result<Cifar10> {
        let dir = data_dir(dir.as_ref())?;
        let mut train = Records::default();
        for name in TRAIN_FILES {
            train.read_file(&dir.join(name))?;
        }
        let mut test = Records::default();
        test.read_file(&dir.join(TEST_FILE))?;
        Ok(Cifar10 {
            train: train.into_dataset()?,
            test: test.into_dataset()?,
        })
    }
}

/// Loads one batch file (for example `test_batch.bin`) as a data set.
///
/// The checks are those of [`Cifar10::load`]: a missing file is an
/// [`Error::DataNotFound`], a size that is zero or not a multiple of [`RECORD_BYTES`]
/// or a label of 10 or more an [`Error::CorruptFile`]. The size is checked before the
/// file is read.
pub fn load_batch_file(path: impl AsRef<Path>) -> Result<Dataset> {
    let mut records = Records::default();
    records.read_file(path.as_ref())?;
    records.into_dataset()
}

/// Parses the bytes of one batch file that are already in memory; `path` only names
/// the source in error messages. The checks are those of [`load_batch_file`].
pub fn parse_batch(bytes: &[u8], path: &Path) -> Result<Dataset> {
    let mut records = Records::default();
    records.parse(bytes, path)?;
    records.into_dataset()
}

/// Labels and scaled features gathered from one or more files.
#[derive(Default)]
struct Records {
    features: Vec<f32>,
    labels: Vec<u32>,
}

impl Records {
    /// Checks the file's size, then reads and parses it.
    fn read_file(&mut self, path: &Path) -> Result<()> {
        let meta = std::fs::metadata(path).map_err(|source| io_error(path, source))?;
        if meta.is_dir() {
            return Err(corrupt(
                path,
                "is a directory, not a batch file: pass it to Cifar10::load instead",
            ));
        }
        check_size(meta.len(), path)?;
        let bytes = std::fs::read(path).map_err(|source| io_error(path, source))?;
        self.parse(&bytes, path)
    }

    /// Appends the records in `bytes`, or changes nothing and returns the first problem.
    fn parse(&mut self, bytes: &[u8], path: &Path) -> Result<()> {
        check_size(bytes.len() as u64, path)?;
        let records = bytes.chunks_exact(RECORD_BYTES);
        if let Some((index, &label)) = records
            .clone()
            .filter_map(|r| r.first())
            .enumerate()
            .find(|(_, &label)| usize::from(label) >= CLASSES)
        {
            return Err(corrupt(
                path,
                format!(
                    "record {index} (byte offset {}) has label {label}, but CIFAR-10 labels \
                     are 0 to 9 (a CIFAR-100 file has two label bytes per record and is not \
                     read by this loader)",
                    index * RECORD_BYTES
                ),
            ));
        }
        let count = bytes.len() / RECORD_BYTES;
        self.labels.reserve(count);
        self.features.reserve(count * PIXELS);
        for record in records {
            if let Some((&label, pixels)) = record.split_first() {
                self.labels.push(u32::from(label));
                self.features
                    .extend(pixels.iter().map(|&p| f32::from(p) / 255.0));
            }
        }
        Ok(())
    }

    fn into_dataset(self) -> Result<Dataset> {
        Dataset::new(self.features, self.labels, PIXELS, CLASSES)
    }
}

/// A batch file's size must be a non-zero multiple of [`RECORD_BYTES`].
fn check_size(len: u64, path: &Path) -> Result<()> {
    let record = RECORD_BYTES as u64;
    let official = record * RECORDS_PER_FILE as u64;
    if len == 0 {
        return Err(corrupt(
            path,
            format!(
                "the file is empty: expected whole {RECORD_BYTES}-byte records \
                 ({official} bytes for an official 10,000-record batch file); \
                 download it again. {HINT}"
            ),
        ));
    }
    if len % record != 0 {
        let whole = len / record;
        let cifar100 = if len % (record + 1) == 0 {
            " (the size fits 3074-byte records: is this a CIFAR-100 file?)"
        } else {
            ""
        };
        return Err(corrupt(
            path,
            format!(
                "truncated or not a CIFAR-10 batch file: expected a multiple of \
                 {RECORD_BYTES} bytes (1 label + {PIXELS} pixels per record; {official} \
                 bytes for an official 10,000-record file), but it has {len} bytes: \
                 {whole} whole {noun} and {} bytes over{cifar100}; download it again \
                 from {SOURCE}",
                len % record,
                noun = if whole == 1 { "record" } else { "records" },
            ),
        ));
    }
    Ok(())
}

/// `dir` if it holds any of the files, else its `cifar-10-batches-bin` subfolder if
/// that does, else an [`Error::DataNotFound`] naming every missing file.
fn data_dir(dir: &Path) -> Result<PathBuf> {
    let nested = dir.join(ARCHIVE_DIR);
    for candidate in [dir, nested.as_path()] {
        let missing = missing_files(candidate);
        if missing.is_empty() {
            return Ok(candidate.to_path_buf());
        }
        // Some but not all files: report those, do not look further.
        if missing.len() < TRAIN_FILES.len() + 1 {
            return Err(not_found(missing));
        }
    }
    let reason = if dir.join(ARCHIVE).is_file() {
        format!(
            "{} holds {ARCHIVE} but not its contents: extract it there \
             (tar xzf {ARCHIVE}) and pass the {ARCHIVE_DIR} directory it creates",
            dir.display()
        )
    } else if dir.is_dir() {
        format!(
            "none of {} and {TEST_FILE} is in {} (nor in its {ARCHIVE_DIR} subfolder)",
            TRAIN_FILES.join(", "),
            dir.display()
        )
    } else {
        format!("the directory {} does not exist", dir.display())
    };
    Err(Error::DataNotFound {
        dataset: NAME.into(),
        reason,
        missing: missing_files(dir),
        hint: HINT.into(),
    })
}

fn missing_files(dir: &Path) -> Vec<PathBuf> {
    TRAIN_FILES
        .iter()
        .chain([&TEST_FILE])
        .map(|name| dir.join(name))
        .filter(|path| !path.is_file())
        .collect()
}

fn not_found(missing: Vec<PathBuf>) -> Error {
    let list: Vec<String> = missing.iter().map(|p| p.display().to_string()).collect();
    let verb = if missing.len() == 1 { "does" } else { "do" };
    Error::DataNotFound {
        dataset: NAME.into(),
        reason: format!("{} {verb} not exist", list.join(", ")),
        missing,
        hint: HINT.into(),
    }
}

/// A file that cannot be read: [`Error::DataNotFound`] if it does not exist, else
/// [`Error::Io`].
fn io_error(path: &Path, source: std::io::Error) -> Error {
    if source.kind() == std::io::ErrorKind::NotFound {
        not_found(vec![path.to_path_buf()])
    } else {
        Error::Io {
            path: path.to_path_buf(),
            source,
        }
    }
}

fn corrupt(path: &Path, reason: impl Into<String>) -> Error {
    Error::CorruptFile {
        path: path.to_path_buf(),
        reason: reason.into(),
    }
}
