//! Property tests: random and mutated bytes fed to the IDX, CIFAR-10, CSV and checkpoint loaders
//! return values or typed errors, never panic, and a header claiming a huge payload is
//! refused before anything that size is allocated.

use std::io::Write;
use std::path::Path;
use std::sync::OnceLock;

use plasticity::checkpoint::Checkpoint;
use plasticity::data::cifar::{self, parse_batch, RECORD_BYTES};
use plasticity::data::csv::parse_csv;
use plasticity::data::idx::{parse_idx, read_idx};
use plasticity::data::{CsvOptions, LabelColumn};
use plasticity::{Activation, Device, Error, Network, Rule, TrainConfig, Trainer};
use proptest::prelude::*;

fn path() -> &'static Path {
    Path::new("fuzz-input")
}

/// A valid IDX file: `n` images of `h x w` bytes.
fn idx_bytes(n: u32, h: u32, w: u32) -> Vec<u8> {
    let mut b = vec![0, 0, 8, 3];
    for d in [n, h, w] {
        b.extend_from_slice(&d.to_be_bytes());
    }
    b.extend((0..n * h * w).map(|i| i as u8));
    b
}

/// Two valid CIFAR-10 records (labels 3 and 9, pixels counting up).
fn cifar_bytes() -> Vec<u8> {
    let mut b = Vec::with_capacity(2 * RECORD_BYTES);
    for label in [3u8, 9] {
        b.push(label);
        b.extend((0..cifar::PIXELS).map(|i| (i % 251) as u8));
    }
    b
}

/// What any CIFAR-10 batch parse must give: a consistent data set, or a typed
/// file error (never a panic, never an untyped one).
fn check_cifar(bytes: &[u8]) -> Result<(), TestCaseError> {
    match parse_batch(bytes, path()) {
        Ok(d) => {
            prop_assert_eq!(d.len() * RECORD_BYTES, bytes.len());
            prop_assert_eq!(d.features().len(), d.len() * cifar::PIXELS);
            prop_assert!(d.labels().iter().all(|&l| l < 10));
            prop_assert!(d.features().iter().all(|&x| (0.0..=1.0).contains(&x)));
        }
        Err(e) => prop_assert!(matches!(e, Error::CorruptFile { .. }), "{:?}", e),
    }
    Ok(())
}

fn checkpoint_bytes() -> &'static [u8] {
    static BYTES: OnceLock<Vec<u8>> = OnceLock::new();
    BYTES.get_or_init(|| {
        let net = Network::builder(3)
            .dense(4, Activation::Tanh)
            .dense(2, Activation::Identity)
            .build()
            .unwrap();
        let config = TrainConfig {
            rule: Rule::FeedbackAlignment,
            batch_size: 2,
            ..TrainConfig::default()
        };
        let mut t = Trainer::new(net, config, Device::Cpu).unwrap();
        t.checkpoint().unwrap().to_bytes().unwrap()
    })
}

/// Applies `(position, byte)` overwrites and an optional truncation.
fn mutate(mut bytes: Vec<u8>, edits: &[(usize, u8)], cut: Option<usize>) -> Vec<u8> {
    for &(at, v) in edits {
        if !bytes.is_empty() {
            let i = at % bytes.len();
            bytes[i] = v;
        }
    }
    if let Some(c) = cut {
        bytes.truncate(c % (bytes.len() + 1));
    }
    bytes
}

proptest! {
    #[test]
    fn idx_random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
        if let Ok(a) = parse_idx(&bytes, path()) {
            prop_assert_eq!(a.data.len(), a.dims.iter().product::<usize>());
        }
    }

    #[test]
    fn idx_mutations_never_panic(
        edits in proptest::collection::vec((any::<usize>(), any::<u8>()), 0..6),
        cut in proptest::option::of(any::<usize>()),
    ) {
        let bytes = mutate(idx_bytes(3, 4, 5), &edits, cut);
        if let Ok(a) = parse_idx(&bytes, path()) {
            prop_assert_eq!(a.data.len(), a.dims.iter().product::<usize>());
        }
    }

    #[test]
    fn idx_huge_claims_are_refused(n in 1u32.., h in 1u32.., w in 1u32..) {
        // Any header with a tiny body: either the sizes match exactly or it is an error.
        let mut b = vec![0, 0, 8, 3];
        for d in [n, h, w] {
            b.extend_from_slice(&d.to_be_bytes());
        }
        b.extend_from_slice(&[0; 16]);
        let claimed = n as u128 * h as u128 * w as u128;
        let r = parse_idx(&b, path());
        prop_assert_eq!(r.is_ok(), claimed == 16);
    }

    #[test]
    fn cifar_random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..8000)) {
        check_cifar(&bytes)?;
    }

    #[test]
    fn cifar_random_whole_records_parse_iff_every_label_is_below_ten(
        records in 1usize..4,
        labels in proptest::collection::vec(0u8..12, 3),
        fill in any::<u8>(),
    ) {
        let mut bytes = vec![fill; records * RECORD_BYTES];
        for (r, &label) in labels.iter().take(records).enumerate() {
            bytes[r * RECORD_BYTES] = label;
        }
        check_cifar(&bytes)?;
        let valid = labels.iter().take(records).all(|&l| l < 10);
        prop_assert_eq!(parse_batch(&bytes, path()).is_ok(), valid);
    }

    #[test]
    fn cifar_mutations_never_panic(
        edits in proptest::collection::vec((any::<usize>(), any::<u8>()), 0..6),
        cut in proptest::option::of(any::<usize>()),
    ) {
        check_cifar(&mutate(cifar_bytes(), &edits, cut))?;
    }

    #[test]
    fn csv_random_text_never_panics(text in "[0-9a-z.,;\\-\\n eE+]{0,200}", first in any::<bool>()) {
        let options = CsvOptions {
            label_column: if first { LabelColumn::First } else { LabelColumn::Last },
            ..CsvOptions::default()
        };
        if let Ok(d) = parse_csv(&text, path(), &options) {
            prop_assert_eq!(d.features().len(), d.len() * d.dim());
            prop_assert!(d.labels().iter().all(|&l| (l as usize) < d.classes()));
        }
    }

    #[test]
    fn csv_mutations_never_panic(
        edits in proptest::collection::vec((any::<usize>(), any::<u8>()), 0..6),
        cut in proptest::option::of(any::<usize>()),
    ) {
        let good = b"a,b,label\n0.5,1.5,0\n-2,3e2,2\n1,1,1\n".to_vec();
        let bytes = mutate(good, &edits, cut);
        let text = String::from_utf8_lossy(&bytes);
        let options = CsvOptions { has_header: true, ..CsvOptions::default() };
        let _ = parse_csv(&text, path(), &options);
    }

    #[test]
    fn checkpoint_random_bytes_are_typed_errors(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
        let r = Checkpoint::from_bytes(&bytes, path());
        prop_assert!(matches!(r, Err(Error::Checkpoint { .. })), "{:?}", r);
    }

    #[test]
    fn checkpoint_mutations_never_panic(
        edits in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..4),
        cut in proptest::option::of(any::<usize>()),
    ) {
        let bytes = mutate(checkpoint_bytes().to_vec(), &edits, cut);
        match Checkpoint::from_bytes(&bytes, path()) {
            // A mutation in the tensor data may still be a valid checkpoint: it must
            // then load into a trainer or be refused with an error, not a panic.
            Ok(c) => { let _ = Trainer::from_checkpoint(&c, Device::Cpu); }
            Err(e) => prop_assert!(matches!(e, Error::Checkpoint { .. }), "{:?}", e),
        }
    }
}

#[test]
fn a_gzipped_header_claiming_10_to_the_12_images_is_refused_without_allocating_it() {
    // 10^12 images do not fit a u32 dimension, so spread the claim: 10^6 x 10^3 x 10^3.
    let mut raw = vec![0, 0, 8, 3];
    for d in [1_000_000u32, 1000, 1000] {
        raw.extend_from_slice(&d.to_be_bytes());
    }
    raw.extend_from_slice(&[0; 100]);
    let file = std::env::temp_dir().join(format!("huge-{}.idx.gz", std::process::id()));
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(&raw).unwrap();
    std::fs::write(&file, gz.finish().unwrap()).unwrap();
    let err = read_idx(&file).unwrap_err();
    assert!(err.to_string().contains("implausibly large"), "{err}");
    // And a claim within the payload limit but impossible for the compressed size.
    let mut raw = vec![0, 0, 8, 3];
    for d in [60_000u32, 280, 28] {
        raw.extend_from_slice(&d.to_be_bytes());
    }
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(&raw).unwrap();
    std::fs::write(&file, gz.finish().unwrap()).unwrap();
    let err = read_idx(&file).unwrap_err();
    assert!(err.to_string().contains("impossible"), "{err}");
    std::fs::remove_file(&file).unwrap();
}

#[test]
fn a_checkpoint_header_claiming_a_huge_length_is_refused() {
    let mut bytes = checkpoint_bytes().to_vec();
    bytes[..8].copy_from_slice(&(1u64 << 40).to_le_bytes());
    assert!(matches!(
        Checkpoint::from_bytes(&bytes, path()),
        Err(Error::Checkpoint { .. })
    ));
}
