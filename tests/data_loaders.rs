//! Tests for the data loaders: IDX, MNIST, Fashion-MNIST, CIFAR-10, DatasetKind, CSV,
//! Dataset, scaling and batching.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use approx::assert_abs_diff_eq;
use plasticity::data::cifar;
use plasticity::data::csv::parse_csv;
use plasticity::data::idx::{parse_idx, read_idx};
use plasticity::data::{
    load_csv, sequential_batches, shuffled_batches, Cifar10, CsvOptions, Dataset, DatasetKind,
    LabelColumn, Mnist, Scaling, Standardizer,
};
use plasticity::Error;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

// ---------------------------------------------------------------------------------
// helpers

/// A fresh, unique directory under the system temp dir, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> TempDir {
        static COUNTER: AtomicUsize = AtomicUsize::new(0);
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let dir =
            std::env::temp_dir().join(format!("plasticity-data-{tag}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }

    fn write(&self, name: &str, bytes: &[u8]) -> PathBuf {
        let path = self.0.join(name);
        std::fs::write(&path, bytes).unwrap();
        path
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// An IDX file of unsigned bytes with the given dims and payload.
fn idx_bytes(dims: &[u32], payload: &[u8]) -> Vec<u8> {
    let mut out = vec![0, 0, 0x08, dims.len() as u8];
    for d in dims {
        out.extend_from_slice(&d.to_be_bytes());
    }
    out.extend_from_slice(payload);
    out
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    enc.write_all(bytes).unwrap();
    enc.finish().unwrap()
}

fn p() -> &'static Path {
    Path::new("test.idx")
}

fn csv(text: &str, options: &CsvOptions) -> plasticity::Result<Dataset> {
    parse_csv(text, Path::new("test.csv"), options)
}

fn csv_line(err: Error) -> usize {
    match err {
        Error::Csv { line, .. } => line,
        other => panic!("expected Error::Csv, got {other:?}"),
    }
}

/// Writes a tiny MNIST-shaped directory: `n_img` 2x2 images, the given labels.
fn write_mini_mnist(dir: &TempDir, n_img: u32, labels: &[u8], gz: bool) {
    let images = idx_bytes(&[n_img, 2, 2], &vec![255u8; 4 * n_img as usize]);
    let labels = idx_bytes(&[labels.len() as u32], labels);
    for (img_name, lbl_name) in [
        ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
        ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
    ] {
        if gz {
            dir.write(&format!("{img_name}.gz"), &gzip(&images));
            dir.write(&format!("{lbl_name}.gz"), &gzip(&labels));
        } else {
            dir.write(img_name, &images);
            dir.write(lbl_name, &labels);
        }
    }
}

// ---------------------------------------------------------------------------------
// bundled MNIST

#[test]
fn bundled_mnist_loads_with_expected_shape_and_range() {
    let mnist = Mnist::load(Mnist::bundled_dir()).unwrap();
    assert_eq!(mnist.train.len(), 60_000);
    assert_eq!(mnist.test.len(), 10_000);
    for set in [&mnist.train, &mnist.test] {
        assert_eq!(set.dim(), 784);
        assert_eq!(set.classes(), 10);
        let (lo, hi) = set
            .features()
            .iter()
            .fold((f32::MAX, f32::MIN), |(l, h), &x| (l.min(x), h.max(x)));
        assert_eq!(lo, 0.0);
        assert_eq!(hi, 1.0);
    }
    let mut hist = [0usize; 10];
    for &l in mnist.train.labels() {
        hist[l as usize] += 1;
    }
    for (class, &count) in hist.iter().enumerate() {
        assert!((5000..=7000).contains(&count), "class {class}: {count}");
    }
    assert_eq!(hist.iter().sum::<usize>(), 60_000);
}

// ---------------------------------------------------------------------------------
// IDX

#[test]
fn idx_parses_valid_plain_and_gzip() {
    let bytes = idx_bytes(&[2, 3], &[1, 2, 3, 4, 5, 6]);
    let arr = parse_idx(&bytes, p()).unwrap();
    assert_eq!(arr.dims, vec![2, 3]);
    assert_eq!(arr.data, vec![1, 2, 3, 4, 5, 6]);

    let dir = TempDir::new("idx-ok");
    assert_eq!(read_idx(&dir.write("a.idx", &bytes)).unwrap(), arr);
    assert_eq!(
        read_idx(&dir.write("a.idx.gz", &gzip(&bytes))).unwrap(),
        arr
    );
}

fn assert_corrupt(result: plasticity::Result<plasticity::data::idx::IdxArray>) {
    match result {
        Err(Error::CorruptFile { .. }) => {}
        other => panic!("expected CorruptFile, got {other:?}"),
    }
}

#[test]
fn idx_rejects_wrong_magic() {
    let mut bytes = idx_bytes(&[3], &[1, 2, 3]);
    bytes[0] = 1;
    assert_corrupt(parse_idx(&bytes, p()));
    let mut bytes = idx_bytes(&[3], &[1, 2, 3]);
    bytes[3] = 0; // zero dimensions
    assert_corrupt(parse_idx(&bytes, p()));
    let mut bytes = idx_bytes(&[3], &[1, 2, 3]);
    bytes[3] = 9; // too many dimensions
    assert_corrupt(parse_idx(&bytes, p()));
}

#[test]
fn idx_rejects_non_u8_type() {
    let mut bytes = idx_bytes(&[3], &[0; 12]);
    bytes[2] = 0x0D; // f32
    let err = parse_idx(&bytes, p()).unwrap_err();
    assert!(err.to_string().contains("type"), "{err}");
}

#[test]
fn idx_rejects_truncated_and_trailing() {
    let bytes = idx_bytes(&[2, 2], &[1, 2, 3]);
    assert_corrupt(parse_idx(&bytes, p()));
    let bytes = idx_bytes(&[2, 2], &[1, 2, 3, 4, 5]);
    assert_corrupt(parse_idx(&bytes, p()));
    // Truncated inside the dimension list.
    let bytes = idx_bytes(&[2, 2], &[]);
    assert_corrupt(parse_idx(&bytes[..9], p()));

    let dir = TempDir::new("idx-trunc");
    let good = idx_bytes(&[4], &[1, 2, 3, 4]);
    let short = &good[..good.len() - 1];
    assert_corrupt(read_idx(&dir.write("short.gz", &gzip(short))));
    let mut long = good.clone();
    long.push(9);
    assert_corrupt(read_idx(&dir.write("long.gz", &gzip(&long))));
}

#[test]
fn idx_rejects_huge_header_claim_without_allocating() {
    // 10^6 * 10^6 = 10^12 bytes claimed by a 16-byte file.
    let bytes = idx_bytes(&[1_000_000, 1_000_000], &[]);
    let start = std::time::Instant::now();
    assert_corrupt(parse_idx(&bytes, p()));
    let dir = TempDir::new("idx-huge");
    assert_corrupt(read_idx(&dir.write("huge.idx", &bytes)));
    assert_corrupt(read_idx(&dir.write("huge.idx.gz", &gzip(&bytes))));
    // A claim under the cap but far beyond the file's size also fails fast.
    let bytes = idx_bytes(&[u32::MAX], &[1, 2, 3]);
    assert_corrupt(parse_idx(&bytes, p()));
    assert_corrupt(read_idx(&dir.write("big.idx.gz", &gzip(&bytes))));
    assert!(start.elapsed().as_secs() < 2);
}

#[test]
fn idx_rejects_corrupted_gzip() {
    let dir = TempDir::new("idx-gz");
    let bytes = idx_bytes(&[64], &[7; 64]);
    let mut gz = gzip(&bytes);
    // Flip bits in the deflate body and the CRC trailer.
    let mid = gz.len() / 2;
    gz[mid] ^= 0xff;
    let last = gz.len() - 5;
    gz[last] ^= 0xff;
    assert_corrupt(read_idx(&dir.write("bad.gz", &gz)));
    // Only the gzip magic.
    assert_corrupt(read_idx(&dir.write("magic-only.gz", &[0x1f, 0x8b])));
}

#[test]
fn idx_rejects_empty_and_missing_file() {
    assert_corrupt(parse_idx(&[], p()));
    let dir = TempDir::new("idx-empty");
    assert_corrupt(read_idx(&dir.write("empty.idx", &[])));
    assert!(matches!(
        read_idx(&dir.0.join("missing.idx")),
        Err(Error::Io { .. })
    ));
}

// ---------------------------------------------------------------------------------
// MNIST loader on synthetic files

#[test]
fn mnist_loads_small_plain_and_gzip_dirs() {
    for gz in [false, true] {
        let dir = TempDir::new("mnist-ok");
        write_mini_mnist(&dir, 3, &[0, 9, 4], gz);
        let m = Mnist::load(&dir.0).unwrap();
        assert_eq!(m.train.len(), 3);
        assert_eq!(m.train.dim(), 4);
        assert_eq!(m.test.labels(), &[0, 9, 4]);
        assert!(m.train.features().iter().all(|&x| x == 1.0));
    }
}

#[test]
fn mnist_rejects_count_mismatch() {
    let dir = TempDir::new("mnist-count");
    write_mini_mnist(&dir, 3, &[1, 2], true);
    let err = Mnist::load(&dir.0).unwrap_err();
    let msg = err.to_string();
    assert!(msg.contains('2') && msg.contains('3'), "{msg}");
}

#[test]
fn mnist_rejects_label_out_of_range() {
    let dir = TempDir::new("mnist-label");
    write_mini_mnist(&dir, 2, &[3, 10], false);
    assert!(matches!(
        Mnist::load(&dir.0),
        Err(Error::LabelOutOfRange { label: 10, .. })
    ));
}

#[test]
fn mnist_rejects_wrong_dimensionality_and_missing_files() {
    let dir = TempDir::new("mnist-dims");
    write_mini_mnist(&dir, 2, &[1, 2], false);
    // Labels saved as a 2-d array.
    dir.write("train-labels-idx1-ubyte", &idx_bytes(&[2, 1], &[1, 2]));
    assert!(matches!(
        Mnist::load(&dir.0),
        Err(Error::CorruptFile { .. })
    ));
    let empty = TempDir::new("mnist-missing");
    match Mnist::load(&empty.0) {
        Err(e @ Error::DataNotFound { .. }) => {
            let text = e.to_string();
            for needle in [
                "train-images-idx3-ubyte",
                "t10k-labels-idx1-ubyte",
                "https://",
                "--data DIR",
            ] {
                assert!(text.contains(needle), "{text:?} lacks {needle:?}");
            }
        }
        other => panic!("an empty directory gave {other:?}"),
    }
    // Only the missing files are named.
    let partial = TempDir::new("mnist-partial");
    write_mini_mnist(&partial, 2, &[1, 2], false);
    std::fs::remove_file(partial.0.join("t10k-images-idx3-ubyte")).unwrap();
    match Mnist::load(&partial.0) {
        Err(Error::DataNotFound { missing, .. }) => {
            assert_eq!(missing, [partial.0.join("t10k-images-idx3-ubyte")])
        }
        other => panic!("a missing test-image file gave {other:?}"),
    }
}

// ---------------------------------------------------------------------------------
// Fashion-MNIST (the MNIST file names and format) and DatasetKind on synthetic files

/// Writes MNIST-named IDX files of 28x28 images: image `i` is all `10 * i`, labelled
/// `labels[i]`.
fn write_fashion_like(dir: &TempDir, labels: &[u8]) {
    let n = labels.len();
    let pixels: Vec<u8> = (0..n).flat_map(|i| vec![10 * i as u8; 784]).collect();
    let images = gzip(&idx_bytes(&[n as u32, 28, 28], &pixels));
    let labels = gzip(&idx_bytes(&[n as u32], labels));
    for prefix in ["train", "t10k"] {
        dir.write(&format!("{prefix}-images-idx3-ubyte.gz"), &images);
        dir.write(&format!("{prefix}-labels-idx1-ubyte.gz"), &labels);
    }
}

#[test]
fn fashion_mnist_files_load_through_mnist_and_dataset_kind() {
    let dir = TempDir::new("fashion-ok");
    write_fashion_like(&dir, &[9, 0, 5]);
    let m = Mnist::load(&dir.0).unwrap();
    let (train, test) = DatasetKind::FashionMnist.load(&dir.0).unwrap();
    for set in [&m.train, &m.test, &train, &test] {
        assert_eq!(set.len(), 3);
        assert_eq!(set.dim(), DatasetKind::FashionMnist.input_dim());
        assert_eq!(set.classes(), DatasetKind::FashionMnist.classes());
        assert_eq!(set.labels(), &[9, 0, 5]);
        assert!(set.sample(0).unwrap().iter().all(|&x| x == 0.0));
        assert!(set.sample(2).unwrap().iter().all(|&x| x == 20.0 / 255.0));
    }
    assert_eq!(train, m.train);
    assert_eq!(
        DatasetKind::FashionMnist.class_names()[9],
        "Ankle boot",
        "label 9 of Fashion-MNIST"
    );
}

#[test]
fn dataset_kind_load_checks_the_image_size() {
    let dir = TempDir::new("fashion-size");
    write_mini_mnist(&dir, 2, &[1, 2], true); // 2x2 images: Mnist::load takes them
    assert_eq!(Mnist::load(&dir.0).unwrap().train.dim(), 4);
    for kind in [DatasetKind::Mnist, DatasetKind::FashionMnist] {
        match kind.load(&dir.0) {
            Err(Error::ShapeMismatch {
                expected, actual, ..
            }) => {
                assert!(expected.contains("784"), "{expected}");
                assert!(actual.contains('4'), "{actual}");
            }
            other => panic!("{kind}: expected ShapeMismatch, got {other:?}"),
        }
    }
}

#[test]
fn dataset_kind_names_missing_idx_files_and_where_to_get_them() {
    let dir = TempDir::new("fashion-missing");
    write_fashion_like(&dir, &[1]);
    std::fs::remove_file(dir.0.join("t10k-labels-idx1-ubyte.gz")).unwrap();
    let err = DatasetKind::FashionMnist.load(&dir.0).unwrap_err();
    let msg = err.to_string();
    for needle in [
        "Fashion-MNIST",
        "t10k-labels-idx1-ubyte",
        "github.com/zalandoresearch/fashion-mnist",
        "--data DIR",
    ] {
        assert!(msg.contains(needle), "{needle:?} not in {msg}");
    }
    match err {
        Error::DataNotFound { missing, .. } => {
            assert_eq!(missing, vec![dir.0.join("t10k-labels-idx1-ubyte")]);
        }
        other => panic!("expected DataNotFound, got {other:?}"),
    }
    // Mnist::load names the same file, with MNIST's own download hint.
    assert!(matches!(
        Mnist::load(&dir.0),
        Err(Error::DataNotFound { missing, .. }) if missing == [dir.0.join("t10k-labels-idx1-ubyte")]
    ));
}

// ---------------------------------------------------------------------------------
// CIFAR-10 on synthetic files

/// The pixel byte a synthetic CIFAR image holds at channel `c`, row `y`, column `x`
/// (distinct across channels, so a channel mix-up shows).
fn cifar_pixel(image: usize, c: usize, y: usize, x: usize) -> u8 {
    ((image * 31 + c * 85 + y * 7 + x) % 256) as u8
}

/// One CIFAR-10 record: the label, then the red, green and blue planes row by row.
fn cifar_record(image: usize, label: u8) -> Vec<u8> {
    let mut r = vec![label];
    for c in 0..3 {
        for y in 0..32 {
            for x in 0..32 {
                r.push(cifar_pixel(image, c, y, x));
            }
        }
    }
    r
}

/// Records for images `first..first + labels.len()`.
fn cifar_file(first: usize, labels: &[u8]) -> Vec<u8> {
    labels
        .iter()
        .enumerate()
        .flat_map(|(i, &l)| cifar_record(first + i, l))
        .collect()
}

/// Writes the six batch files into `dir`: file `k` holds `k + 1` records labelled `k`.
fn write_cifar_dir(dir: &Path) {
    std::fs::create_dir_all(dir).unwrap();
    let mut first = 0;
    for (k, name) in cifar::TRAIN_FILES
        .iter()
        .chain([&cifar::TEST_FILE])
        .enumerate()
    {
        let labels = vec![k as u8; k + 1];
        std::fs::write(dir.join(name), cifar_file(first, &labels)).unwrap();
        first += k + 1;
    }
}

fn corrupt_reason<T: std::fmt::Debug>(result: plasticity::Result<T>) -> String {
    match result {
        Err(Error::CorruptFile { reason, .. }) => reason,
        other => panic!("expected CorruptFile, got {other:?}"),
    }
}

#[test]
fn cifar_batch_round_trip_keeps_channel_major_order() {
    let dir = TempDir::new("cifar-ok");
    let path = dir.write("data_batch_1.bin", &cifar_file(0, &[6, 0, 9]));
    let data = cifar::load_batch_file(&path).unwrap();
    assert_eq!(data.len(), 3);
    assert_eq!(data.dim(), 3072);
    assert_eq!(data.classes(), 10);
    assert_eq!(data.labels(), &[6, 0, 9]);
    for image in 0..3 {
        let sample = data.sample(image).unwrap();
        for c in 0..3 {
            for y in 0..32 {
                for x in 0..32 {
                    let want = f32::from(cifar_pixel(image, c, y, x)) / 255.0;
                    assert_eq!(sample[c * 1024 + y * 32 + x], want, "{image} {c} {y} {x}");
                }
            }
        }
    }
    // Pure planes: feature 0 is red, 1024 green, 2048 blue; 0 and 255 map to 0 and 1.
    let mut rec = vec![1u8];
    rec.extend([255u8; 1024]);
    rec.extend([0u8; 1024]);
    rec.extend([128u8; 1024]);
    let data = cifar::parse_batch(&rec, Path::new("planes.bin")).unwrap();
    let s = data.sample(0).unwrap();
    assert_eq!((s[0], s[1023], s[1024], s[2047]), (1.0, 1.0, 0.0, 0.0));
    assert_eq!((s[2048], s[3071]), (128.0 / 255.0, 128.0 / 255.0));
}

#[test]
fn cifar_loads_a_directory_and_its_archive_folder() {
    let root = TempDir::new("cifar-dir");
    write_cifar_dir(&root.0);
    let nested = TempDir::new("cifar-nested");
    write_cifar_dir(&nested.0.join(cifar::ARCHIVE_DIR));
    for dir in [&root.0, &nested.0] {
        let data = Cifar10::load(dir).unwrap();
        // Files 1..=5 in order: 1 + 2 + 3 + 4 + 5 records, labels 0..=4.
        let want: Vec<u32> = (0..5u32).flat_map(|k| vec![k; k as usize + 1]).collect();
        assert_eq!(data.train.labels(), &want[..]);
        assert_eq!(data.test.labels(), &[5; 6]);
        // The test set's first image is image 15 of the sequence written.
        let want = f32::from(cifar_pixel(15, 2, 31, 30)) / 255.0;
        assert_eq!(data.test.sample(0).unwrap()[2 * 1024 + 31 * 32 + 30], want);
        let (train, test) = DatasetKind::Cifar10.load(dir).unwrap();
        assert_eq!((train, test), (data.train, data.test));
    }
}

#[test]
fn cifar_rejects_truncated_and_oversized_files_with_sizes() {
    let dir = TempDir::new("cifar-trunc");
    let good = cifar_file(0, &[1, 2]);
    let short = dir.write("short.bin", &good[..good.len() - 1]);
    let reason = corrupt_reason(cifar::load_batch_file(&short));
    for needle in [
        "truncated",
        "3073",
        "6145 bytes",
        "1 whole record and 3072 bytes over",
    ] {
        assert!(reason.contains(needle), "{needle:?} not in {reason}");
    }
    let mut long = good.clone();
    long.extend([0; 5]);
    let reason = corrupt_reason(cifar::parse_batch(&long, Path::new("long.bin")));
    assert!(reason.contains("5 bytes over"), "{reason}");
    // A CIFAR-100 sized file (3074-byte records) gets a hint.
    let reason = corrupt_reason(cifar::parse_batch(&[0; 3074 * 2], Path::new("c100")));
    assert!(reason.contains("CIFAR-100"), "{reason}");
    // A truncated file in a directory is named.
    write_cifar_dir(&dir.0);
    let victim = dir.0.join("data_batch_3.bin");
    let bytes = std::fs::read(&victim).unwrap();
    std::fs::write(&victim, &bytes[..bytes.len() - 100]).unwrap();
    match Cifar10::load(&dir.0) {
        Err(Error::CorruptFile { path, .. }) => assert_eq!(path, victim),
        other => panic!("expected CorruptFile, got {other:?}"),
    }
}

#[test]
fn cifar_rejects_empty_files() {
    let dir = TempDir::new("cifar-empty");
    let reason = corrupt_reason(cifar::load_batch_file(dir.write("e.bin", &[])));
    assert!(reason.contains("empty"), "{reason}");
    let reason = corrupt_reason(cifar::parse_batch(&[], Path::new("e.bin")));
    assert!(reason.contains("30730000 bytes"), "{reason}");
}

#[test]
fn cifar_rejects_labels_of_ten_and_more() {
    for bad in [10u8, 99, 255] {
        let bytes = cifar_file(0, &[3, bad, 4]);
        let reason = corrupt_reason(cifar::parse_batch(&bytes, Path::new("bad.bin")));
        assert!(
            reason.contains(&format!("record 1 (byte offset 3073) has label {bad}")),
            "{reason}"
        );
        assert!(reason.contains("0 to 9"), "{reason}");
    }
    let dir = TempDir::new("cifar-label");
    write_cifar_dir(&dir.0);
    let mut bytes = cifar_file(0, &[0; 6]);
    bytes[2 * 3073] = 10;
    std::fs::write(dir.0.join(cifar::TEST_FILE), bytes).unwrap();
    assert!(corrupt_reason(Cifar10::load(&dir.0)).contains("record 2"));
}

#[test]
fn cifar_missing_files_are_named_with_where_to_get_them() {
    let dir = TempDir::new("cifar-missing");
    write_cifar_dir(&dir.0);
    std::fs::remove_file(dir.0.join("data_batch_4.bin")).unwrap();
    std::fs::remove_file(dir.0.join("test_batch.bin")).unwrap();
    let err = Cifar10::load(&dir.0).unwrap_err();
    let msg = err.to_string();
    for needle in [
        "data_batch_4.bin",
        "test_batch.bin",
        "https://www.cs.toronto.edu/~kriz/cifar.html",
        "CIFAR-10 binary version",
    ] {
        assert!(msg.contains(needle), "{needle:?} not in {msg}");
    }
    assert!(!msg.contains("data_batch_1.bin"), "{msg}");
    match err {
        Error::DataNotFound { missing, .. } => assert_eq!(
            missing,
            vec![dir.0.join("data_batch_4.bin"), dir.0.join("test_batch.bin")]
        ),
        other => panic!("expected DataNotFound, got {other:?}"),
    }

    // An empty directory: all six files; one holding the archive: extract it.
    let empty = TempDir::new("cifar-none");
    match Cifar10::load(&empty.0) {
        Err(Error::DataNotFound { missing, .. }) => assert_eq!(missing.len(), 6),
        other => panic!("expected DataNotFound, got {other:?}"),
    }
    empty.write("cifar-10-binary.tar.gz", &[0x1f, 0x8b]);
    let msg = Cifar10::load(&empty.0).unwrap_err().to_string();
    assert!(msg.contains("tar xzf"), "{msg}");

    // One file by path, missing, and a directory given as a file.
    let err = cifar::load_batch_file(empty.0.join("test_batch.bin")).unwrap_err();
    assert!(matches!(err, Error::DataNotFound { .. }), "{err:?}");
    let reason = corrupt_reason(cifar::load_batch_file(&empty.0));
    assert!(reason.contains("directory"), "{reason}");
}
// ---------------------------------------------------------------------------------
// CSV

#[test]
fn csv_label_last_no_header() {
    let d = csv("1,2,0\n3,4,1\n5,6,2\n", &CsvOptions::default()).unwrap();
    assert_eq!(d.len(), 3);
    assert_eq!(d.dim(), 2);
    assert_eq!(d.classes(), 3);
    assert_eq!(d.features(), &[1., 2., 3., 4., 5., 6.]);
    assert_eq!(d.labels(), &[0, 1, 2]);
}

#[test]
fn csv_header_label_first_and_index() {
    let opts = CsvOptions {
        has_header: true,
        label_column: LabelColumn::First,
        ..CsvOptions::default()
    };
    let d = csv("label,a,b\n1, 0.5 ,2\n0,-1e2,3\n", &opts).unwrap();
    assert_eq!(d.labels(), &[1, 0]);
    assert_eq!(d.features(), &[0.5, 2., -100., 3.]);

    let opts = CsvOptions {
        label_column: LabelColumn::Index(1),
        delimiter: b';',
        classes: Some(5),
        ..CsvOptions::default()
    };
    let d = csv("1;4;2\n3;2.0;4\n", &opts).unwrap();
    assert_eq!(d.labels(), &[4, 2]);
    assert_eq!(d.features(), &[1., 2., 3., 4.]);
    assert_eq!(d.classes(), 5);

    let opts = CsvOptions {
        label_column: LabelColumn::Index(3),
        ..CsvOptions::default()
    };
    assert_eq!(csv_line(csv("1,2,3\n", &opts).unwrap_err()), 1);
}

#[test]
fn csv_skips_blank_lines_and_handles_crlf() {
    let d = csv("\n1,2,0\r\n   \r\n\n3,4,1\r\n\n", &CsvOptions::default()).unwrap();
    assert_eq!(d.len(), 2);
    assert_eq!(d.features(), &[1., 2., 3., 4.]);
}

#[test]
fn csv_rejects_ragged_rows() {
    let err = csv("1,2,0\n3,4,1\n5,1\n", &CsvOptions::default()).unwrap_err();
    assert_eq!(csv_line(err), 3);
    // The header fixes the field count too.
    let opts = CsvOptions {
        has_header: true,
        ..CsvOptions::default()
    };
    assert_eq!(csv_line(csv("a,b\n1,2,0\n", &opts).unwrap_err()), 2);
}

#[test]
fn csv_rejects_non_numeric_field_naming_line() {
    let err = csv("1,2,0\n\n3,x,1\n", &CsvOptions::default()).unwrap_err();
    let msg = err.to_string();
    assert!(msg.contains("test.csv:3"), "{msg}");
    assert!(msg.contains("\"x\""), "{msg}");
    let err = csv("1,\"2\",0\n", &CsvOptions::default()).unwrap_err();
    assert!(err.to_string().contains("quoted"), "{err}");
}

#[test]
fn csv_rejects_bad_labels() {
    for bad in ["1,2,-1\n", "1,2,1.5\n", "1,2,abc\n", "1,2,\n", "1,2,nan\n"] {
        let err = csv(bad, &CsvOptions::default()).unwrap_err();
        assert_eq!(csv_line(err), 1, "{bad:?}");
    }
    let opts = CsvOptions {
        classes: Some(3),
        ..CsvOptions::default()
    };
    assert!(matches!(
        csv("1,2,0\n1,2,3\n", &opts),
        Err(Error::LabelOutOfRange {
            index: 1,
            label: 3,
            classes: 3
        })
    ));
}

#[test]
fn csv_rejects_non_finite_features() {
    for bad in ["NaN,1,0\n", "1,inf,0\n", "-infinity,1,0\n"] {
        let err = csv(&format!("0,0,0\n{bad}"), &CsvOptions::default()).unwrap_err();
        assert_eq!(csv_line(err), 2, "{bad:?}");
    }
}

#[test]
fn csv_rejects_empty_inputs() {
    let header = CsvOptions {
        has_header: true,
        ..CsvOptions::default()
    };
    for (text, opts) in [
        ("", CsvOptions::default()),
        ("\n \n", CsvOptions::default()),
        ("a,b,label\n", header.clone()),
        ("", header),
    ] {
        assert!(
            matches!(csv(text, &opts), Err(Error::EmptyData(_))),
            "{text:?}"
        );
    }
}

#[test]
fn csv_loads_from_file_and_reports_missing() {
    let dir = TempDir::new("csv");
    let path = dir.write("d.csv", b"0.1,0.2,1\n0.3,0.4,0\n");
    let d = load_csv(&path, &CsvOptions::default()).unwrap();
    assert_eq!(d.len(), 2);
    assert!(matches!(
        load_csv(dir.0.join("nope.csv"), &CsvOptions::default()),
        Err(Error::Io { .. })
    ));
}

// ---------------------------------------------------------------------------------
// Dataset

#[test]
fn dataset_new_validates() {
    assert!(Dataset::new(vec![1., 2.], vec![0], 2, 1).is_ok());
    assert!(matches!(
        Dataset::new(vec![1., f32::NAN], vec![0], 2, 1),
        Err(Error::NonFinite { index: 1, .. })
    ));
    assert!(matches!(
        Dataset::new(vec![f32::INFINITY, 0.], vec![0], 2, 1),
        Err(Error::NonFinite { index: 0, .. })
    ));
    assert!(matches!(
        Dataset::new(vec![1., 2., 3.], vec![0], 2, 1),
        Err(Error::ShapeMismatch { .. })
    ));
    assert!(matches!(
        Dataset::new(vec![1., 2.], vec![2], 2, 2),
        Err(Error::LabelOutOfRange { .. })
    ));
    assert!(Dataset::new(vec![], vec![], 2, 1).is_err());
    assert!(Dataset::new(vec![1.], vec![0], 0, 1).is_err());
    assert!(Dataset::new(vec![1.], vec![0], 1, 0).is_err());
}

fn toy() -> Dataset {
    // 5 samples, 3 features: sample i = [10i, 10i+1, 10i+2], label i % 4.
    let features = (0..5)
        .flat_map(|i| (0..3).map(move |f| (10 * i + f) as f32))
        .collect();
    Dataset::new(features, vec![0, 1, 2, 3, 0], 3, 4).unwrap()
}

#[test]
fn dataset_accessors_take_select() {
    let d = toy();
    assert_eq!(d.sample(2), Some(&[20., 21., 22.][..]));
    assert_eq!(d.sample(5), None);
    assert_eq!(d.sample(usize::MAX), None);
    let t = d.take(2).unwrap();
    assert_eq!(t.len(), 2);
    assert_eq!(t.labels(), &[0, 1]);
    assert_eq!(d.take(100).unwrap().len(), 5);
    assert!(matches!(d.take(0), Err(Error::EmptyData(_))));
    let s = d.select(&[4, 1, 1]).unwrap();
    assert_eq!(s.labels(), &[0, 1, 1]);
    assert_eq!(s.features(), &[40., 41., 42., 10., 11., 12., 10., 11., 12.]);
    assert!(d.select(&[0, 5]).is_err());
    assert!(d.select(&[]).is_err());
}

#[test]
fn gather_feature_major_transposes_and_one_hots() {
    let d = toy();
    let idx = [3, 0, 4];
    let b = idx.len();
    let mut x = vec![-1.0; 3 * b + 2];
    let mut y = vec![-1.0; 4 * b + 1];
    d.gather_feature_major(&idx, &mut x, &mut y).unwrap();
    assert_eq!(&x[..3 * b], &[30., 0., 40., 31., 1., 41., 32., 2., 42.]);
    assert_eq!(&x[3 * b..], &[-1.0, -1.0], "only the prefix is written");
    #[rustfmt::skip]
    let want_y = [
        0., 1., 1., // class 0
        0., 0., 0., // class 1
        0., 0., 0., // class 2
        1., 0., 0., // class 3
    ];
    assert_eq!(&y[..4 * b], &want_y);
    assert_eq!(y[4 * b], -1.0);

    assert!(matches!(
        d.gather_feature_major(&idx, &mut vec![0.0; 3 * b - 1], &mut y),
        Err(Error::ShapeMismatch { .. })
    ));
    assert!(matches!(
        d.gather_feature_major(&idx, &mut x, &mut vec![0.0; 4 * b - 1]),
        Err(Error::ShapeMismatch { .. })
    ));
    assert!(d.gather_feature_major(&[0, 5], &mut x, &mut y).is_err());
}

#[test]
fn gather_feature_major_matches_naive_on_large_batch() {
    let mnist_like: Vec<f32> = (0..100 * 37).map(|v| v as f32).collect();
    let labels: Vec<u32> = (0..100).map(|i| i % 7).collect();
    let d = Dataset::new(mnist_like, labels, 37, 7).unwrap();
    let idx: Vec<usize> = (0..53).map(|j| (j * 31) % 100).collect();
    let b = idx.len();
    let mut x = vec![0.0; 37 * b];
    let mut y = vec![0.0; 7 * b];
    d.gather_feature_major(&idx, &mut x, &mut y).unwrap();
    for (j, &i) in idx.iter().enumerate() {
        for f in 0..37 {
            assert_eq!(x[f * b + j], d.sample(i).unwrap()[f]);
        }
        for c in 0..7 {
            let want = if d.labels()[i] as usize == c {
                1.0
            } else {
                0.0
            };
            assert_eq!(y[c * b + j], want);
        }
    }
}

// ---------------------------------------------------------------------------------
// batches

#[test]
fn shuffled_batches_is_a_seeded_permutation() {
    let len = 103;
    let batches = shuffled_batches(len, 10, &mut ChaCha8Rng::seed_from_u64(7)).unwrap();
    assert_eq!(batches.len(), 11);
    assert!(batches[..10].iter().all(|b| b.len() == 10));
    assert_eq!(batches[10].len(), 3);
    let mut all: Vec<usize> = batches.iter().flatten().copied().collect();
    assert_ne!(all, (0..len).collect::<Vec<_>>(), "should be shuffled");
    all.sort_unstable();
    assert_eq!(all, (0..len).collect::<Vec<_>>());

    let again = shuffled_batches(len, 10, &mut ChaCha8Rng::seed_from_u64(7)).unwrap();
    assert_eq!(batches, again);
    let other = shuffled_batches(len, 10, &mut ChaCha8Rng::seed_from_u64(8)).unwrap();
    assert_ne!(batches, other);

    assert!(matches!(
        shuffled_batches(len, 0, &mut ChaCha8Rng::seed_from_u64(7)),
        Err(Error::InvalidConfig(_))
    ));
    assert!(shuffled_batches(0, 4, &mut ChaCha8Rng::seed_from_u64(7))
        .unwrap()
        .is_empty());
}

#[test]
fn sequential_batches_in_order() {
    let b = sequential_batches(7, 3).unwrap();
    assert_eq!(b, vec![vec![0, 1, 2], vec![3, 4, 5], vec![6]]);
    assert!(sequential_batches(7, 0).is_err());
}

// ---------------------------------------------------------------------------------
// scaling

fn column(d: &Dataset, f: usize) -> Vec<f64> {
    d.features()
        .chunks_exact(d.dim())
        .map(|row| f64::from(row[f]))
        .collect()
}

fn mean_std(v: &[f64]) -> (f64, f64) {
    let n = v.len() as f64;
    let m = v.iter().sum::<f64>() / n;
    let var = v.iter().map(|x| (x - m).powi(2)).sum::<f64>() / n;
    (m, var.sqrt())
}

fn random_set(seed: u64, n: usize) -> Dataset {
    use rand::Rng;
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut features = Vec::with_capacity(n * 3);
    for _ in 0..n {
        features.push(rng.random_range(-5.0..15.0f32));
        features.push(rng.random_range(1000.0..1001.0f32));
        features.push(4.0); // constant feature
    }
    Dataset::new(features, vec![0; n], 3, 1).unwrap()
}

#[test]
fn standardize_fits_train_and_applies_to_test() {
    let mut train = random_set(1, 500);
    let mut test = random_set(2, 200);
    let s = Standardizer::fit(&train, Scaling::Standardize).unwrap();
    s.apply(&mut train).unwrap();
    s.apply(&mut test).unwrap();
    for f in 0..2 {
        let (m, sd) = mean_std(&column(&train, f));
        assert_abs_diff_eq!(m, 0.0, epsilon = 1e-4);
        assert_abs_diff_eq!(sd, 1.0, epsilon = 1e-3);
        // The test set uses train statistics: close to, but not exactly, 0/1.
        let (m, sd) = mean_std(&column(&test, f));
        assert!(m.abs() < 0.3 && (sd - 1.0).abs() < 0.3, "{m} {sd}");
    }
    assert!(column(&train, 2).iter().all(|&x| x == 0.0));

    let mut wrong = Dataset::new(vec![1.0; 4], vec![0, 0], 2, 1).unwrap();
    assert!(matches!(
        s.apply(&mut wrong),
        Err(Error::ShapeMismatch { .. })
    ));
}

#[test]
fn min_max_maps_to_unit_interval() {
    let mut train = random_set(3, 300);
    let s = Standardizer::fit(&train, Scaling::MinMax).unwrap();
    s.apply(&mut train).unwrap();
    for f in 0..2 {
        let col = column(&train, f);
        let lo = col.iter().copied().fold(f64::MAX, f64::min);
        let hi = col.iter().copied().fold(f64::MIN, f64::max);
        assert_abs_diff_eq!(lo, 0.0, epsilon = 1e-6);
        assert_abs_diff_eq!(hi, 1.0, epsilon = 1e-6);
    }
    assert!(column(&train, 2).iter().all(|&x| x == 0.0));
}

#[test]
fn divide_scaling_and_bad_divisors() {
    let mut d = Dataset::new(vec![0., 51., 255., 510.], vec![0, 0], 2, 1).unwrap();
    Standardizer::fit(&d, Scaling::Divide(255.0))
        .unwrap()
        .apply(&mut d)
        .unwrap();
    assert_eq!(d.features(), &[0.0, 0.2, 1.0, 2.0]);
    for bad in [0.0, f32::NAN, f32::INFINITY] {
        assert!(matches!(
            Standardizer::fit(&d, Scaling::Divide(bad)),
            Err(Error::InvalidConfig(_))
        ));
    }
    // A result that would overflow leaves the data untouched.
    let mut big = Dataset::new(vec![f32::MAX, 1.0], vec![0], 2, 1).unwrap();
    let tiny = Standardizer::fit(&big, Scaling::Divide(1e-30)).unwrap();
    assert!(matches!(tiny.apply(&mut big), Err(Error::NonFinite { .. })));
    assert_eq!(big.features(), &[f32::MAX, 1.0]);
}
