//! CSV text must parse into a consistent data set or fail, never panic.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use plasticity::data::csv::parse_csv;
use plasticity::data::CsvOptions;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let header = data.first().is_some_and(|b| b & 1 == 1);
    let options = CsvOptions {
        has_header: header,
        ..CsvOptions::default()
    };
    if let Ok(d) = parse_csv(&text, Path::new("fuzz"), &options) {
        assert_eq!(d.features().len(), d.len() * d.dim());
    }
});
