//! `PLASTICITY_DEVICE` as a user writes it: spaces and any case around `auto` once made
//! `Device::auto` and `Device::from_name` call each other until the stack overflowed.
//!
//! One test in its own binary: it sets the process environment, which no other test
//! may read at the same time.

use plasticity::device::DEVICE_ENV;
use plasticity::{Device, Error};

#[test]
fn the_device_variable_is_trimmed_validated_and_never_recurses() {
    for auto in [" auto", "AUTO ", " Auto\t", ""] {
        std::env::set_var(DEVICE_ENV, auto);
        let device = Device::auto().unwrap_or_else(|e| panic!("{auto:?}: {e}"));
        assert_eq!(device, Device::detect(), "{auto:?}");
        // `--device auto` in the examples goes through from_name.
        assert_eq!(Device::from_name(" auto ").unwrap(), device, "{auto:?}");
    }
    for (value, device) in [
        (" cpu", Device::Cpu),
        ("GPU ", Device::Gpu),
        (" gpu:1", Device::GpuAdapter(1)),
    ] {
        std::env::set_var(DEVICE_ENV, value);
        assert_eq!(Device::auto().unwrap(), device, "{value:?}");
        assert_eq!(Device::from_name("auto").unwrap(), device, "{value:?}");
    }
    std::env::set_var(DEVICE_ENV, "tpu");
    match Device::auto() {
        Err(e @ Error::InvalidEnvVar { .. }) => {
            let text = e.to_string();
            assert!(
                text.contains(DEVICE_ENV) && text.contains("\"tpu\""),
                "{text}"
            );
            assert!(text.contains("cpu, gpu, gpu:N or auto"), "{text}");
        }
        other => panic!("tpu gave {other:?}"),
    }
    std::env::remove_var(DEVICE_ENV);
    assert_eq!(Device::auto().unwrap(), Device::detect());
}
