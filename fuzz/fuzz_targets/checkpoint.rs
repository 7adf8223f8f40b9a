//! Checkpoint bytes must load (and then build a trainer or fail) or be refused with a
//! typed error, never panic.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use plasticity::checkpoint::Checkpoint;
use plasticity::{Device, Error, Trainer};

fuzz_target!(|data: &[u8]| {
    match Checkpoint::from_bytes(data, Path::new("fuzz")) {
        Ok(c) => {
            let _ = Trainer::from_checkpoint(&c, Device::Cpu);
        }
        Err(e) => assert!(matches!(e, Error::Checkpoint { .. }), "{e:?}"),
    }
});
