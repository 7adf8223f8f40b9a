//! IDX bytes (raw, or gzipped through a temporary file) must parse or fail, never panic.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use plasticity::data::idx::parse_idx;

fuzz_target!(|data: &[u8]| {
    if let Ok(a) = parse_idx(data, Path::new("fuzz")) {
        assert_eq!(a.data.len(), a.dims.iter().product::<usize>());
    }
});
