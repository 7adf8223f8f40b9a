//! Choosing where a network trains.

use crate::backend::{Backend, CpuBackend};
use crate::error::{Error, Result};

/// Environment variable that overrides [`Device::auto`]: `cpu` (or `gpu` once a GPU
/// backend is compiled in).
pub const DEVICE_ENV: &str = "PLASTICITY_DEVICE";

/// The hardware a [`Trainer`](crate::Trainer) runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Device {
    /// The host CPU, all its cores (rayon's thread pool).
    #[default]
    Cpu,
}

impl Device {
    /// The best device available, unless [`DEVICE_ENV`] names one.
    pub fn auto() -> Result<Device> {
        match std::env::var(DEVICE_ENV) {
            Ok(name) if !name.is_empty() && name != "auto" => Device::from_name(&name),
            _ => Ok(Device::Cpu),
        }
    }

    /// Parses `cpu` or `auto`.
    pub fn from_name(name: &str) -> Result<Device> {
        match name.to_ascii_lowercase().as_str() {
            "cpu" => Ok(Device::Cpu),
            "auto" => Device::auto(),
            other => Err(Error::config(format!(
                "unknown device '{other}' (this build knows: cpu, auto)"
            ))),
        }
    }

    /// A fresh backend for this device.
    pub fn backend(&self) -> Result<Box<dyn Backend>> {
        match self {
            Device::Cpu => Ok(Box::new(CpuBackend::new())),
        }
    }
}
