//! Choosing where a network trains.

use crate::backend::gpu::{self, GpuBackend};
use crate::backend::{Backend, CpuBackend};
use crate::error::{Error, Result};

/// Environment variable that overrides [`Device::auto`]: `cpu`, `gpu`, `gpu:N` (adapter
/// `N` of [`gpu::adapters`]) or `auto`.
pub const DEVICE_ENV: &str = "PLASTICITY_DEVICE";

/// The hardware a [`Trainer`](crate::Trainer) runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Device {
    /// The host CPU, all its cores (rayon's thread pool).
    #[default]
    Cpu,
    /// The best GPU adapter wgpu finds: real hardware first, else a software one
    /// (lavapipe, llvmpipe, WARP), so forcing it runs the shaders anywhere.
    Gpu,
    /// GPU adapter `N` of [`gpu::adapters`]'s list.
    GpuAdapter(usize),
}

impl Device {
    /// The best device available, unless [`DEVICE_ENV`] names one: a real GPU when
    /// there is one, else the CPU. Software GPU adapters are never picked here: on
    /// them the CPU backend is far faster.
    pub fn auto() -> Result<Device> {
        match std::env::var(DEVICE_ENV) {
            Ok(name) if !name.is_empty() && !name.eq_ignore_ascii_case("auto") => {
                Device::from_name(&name)
            }
            _ => Ok(Device::detect()),
        }
    }

    /// [`Device::Gpu`] when a hardware adapter exists, else [`Device::Cpu`]; ignores
    /// [`DEVICE_ENV`].
    pub fn detect() -> Device {
        match gpu::best_adapter_is_hardware() {
            Some(true) => Device::Gpu,
            _ => Device::Cpu,
        }
    }

    /// Parses `cpu`, `gpu`, `gpu:N` or `auto`.
    pub fn from_name(name: &str) -> Result<Device> {
        let lower = name.trim().to_ascii_lowercase();
        match lower.as_str() {
            "cpu" => Ok(Device::Cpu),
            "gpu" => Ok(Device::Gpu),
            "auto" => Device::auto(),
            other => match other.strip_prefix("gpu:").map(str::parse::<usize>) {
                Some(Ok(i)) => Ok(Device::GpuAdapter(i)),
                _ => Err(Error::config(format!(
                    "unknown device '{name}' (expected cpu, gpu, gpu:N or auto)"
                ))),
            },
        }
    }

    /// A fresh backend for this device. A GPU device fails with
    /// [`Error::NoAdapter`] when no adapter can be opened.
    pub fn backend(&self) -> Result<Box<dyn Backend>> {
        match self {
            Device::Cpu => Ok(Box::new(CpuBackend::new())),
            Device::Gpu => Ok(Box::new(GpuBackend::new()?)),
            Device::GpuAdapter(i) => Ok(Box::new(GpuBackend::with_adapter(*i)?)),
        }
    }
}

impl std::fmt::Display for Device {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Device::Cpu => f.write_str("cpu"),
            Device::Gpu => f.write_str("gpu"),
            Device::GpuAdapter(i) => write!(f, "gpu:{i}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_parse() {
        assert_eq!(Device::from_name("cpu").unwrap(), Device::Cpu);
        assert_eq!(Device::from_name("GPU").unwrap(), Device::Gpu);
        assert_eq!(Device::from_name("gpu:2").unwrap(), Device::GpuAdapter(2));
        assert!(Device::from_name("tpu").is_err());
        assert!(Device::from_name("gpu:x").is_err());
        for d in [Device::Cpu, Device::Gpu, Device::GpuAdapter(1)] {
            assert_eq!(Device::from_name(&d.to_string()).unwrap(), d);
        }
    }
}
