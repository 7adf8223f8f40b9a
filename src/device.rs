//! Choosing where a network trains.

#[cfg(feature = "gpu")]
use crate::backend::GpuBackend;
use crate::backend::{Backend, CpuBackend};
use crate::error::{Error, Result};

/// Environment variable that overrides [`Device::auto`]: `cpu`, `gpu`, `gpu:N` (adapter
/// `N` of [`adapters`](crate::backend::gpu::adapters)) or `auto`.
pub const DEVICE_ENV: &str = "PLASTICITY_DEVICE";

/// The hardware a [`Trainer`](crate::Trainer) runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Device {
    /// The host CPU, all its cores (rayon's thread pool).
    #[default]
    Cpu,
    /// The best GPU adapter wgpu finds: real hardware first, else a software one
    /// (lavapipe, llvmpipe, WARP), so forcing it runs the shaders anywhere. Vulkan,
    /// Metal and DX12 are searched first, OpenGL only when they offer nothing (pick a
    /// GPU reachable only through OpenGL by its index in [`adapters`](crate::backend::gpu::adapters)).
    Gpu,
    /// GPU adapter `N` of [`adapters`](crate::backend::gpu::adapters)'s list.
    GpuAdapter(usize),
}

/// The values [`DEVICE_ENV`] and [`Device::from_name`] accept.
const ACCEPTED: &str = "cpu, gpu, gpu:N or auto (any case, spaces around ignored)";

/// What a device name asks for: a device, or the automatic choice.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Named {
    Auto,
    Device(Device),
}

/// Parses a device name (trimmed, any case); `None` when it is not one.
fn parse_name(name: &str) -> Option<Named> {
    let lower = name.trim().to_ascii_lowercase();
    match lower.as_str() {
        "auto" => Some(Named::Auto),
        "cpu" => Some(Named::Device(Device::Cpu)),
        "gpu" => Some(Named::Device(Device::Gpu)),
        other => other
            .strip_prefix("gpu:")
            .and_then(|i| i.trim().parse().ok())
            .map(|i| Named::Device(Device::GpuAdapter(i))),
    }
}

/// [`Device::auto`]'s decision for the value of [`DEVICE_ENV`] (`None` when unset),
/// calling `detect` only when the value leaves the choice to it. Never calls
/// [`Device::from_name`], so `auto` in any spelling cannot recurse.
fn resolve_env(value: Option<&str>, detect: impl FnOnce() -> Device) -> Result<Device> {
    let Some(value) = value.filter(|v| !v.trim().is_empty()) else {
        return Ok(detect());
    };
    match parse_name(value) {
        Some(Named::Auto) => Ok(detect()),
        Some(Named::Device(d)) => Ok(d),
        None => Err(Error::InvalidEnvVar {
            name: DEVICE_ENV,
            value: value.to_string(),
            expected: ACCEPTED,
        }),
    }
}

impl Device {
    /// The best device available, unless [`DEVICE_ENV`] names one: a real GPU when
    /// there is one, else the CPU. Software GPU adapters are never picked here: on
    /// them the CPU backend is far faster.
    ///
    /// The variable is trimmed and read in any case; unset or empty means `auto`. A
    /// value that names no device is [`Error::InvalidEnvVar`]. Adapters are probed
    /// only when the choice is automatic (see [`Device::detect`]).
    pub fn auto() -> Result<Device> {
        let value = match std::env::var(DEVICE_ENV) {
            Ok(v) => Some(v),
            Err(std::env::VarError::NotPresent) => None,
            Err(std::env::VarError::NotUnicode(v)) => {
                return Err(Error::InvalidEnvVar {
                    name: DEVICE_ENV,
                    value: v.to_string_lossy().into_owned(),
                    expected: ACCEPTED,
                })
            }
        };
        resolve_env(value.as_deref(), Device::detect)
    }

    /// [`Device::Gpu`] when a hardware adapter exists, else [`Device::Cpu`]; ignores
    /// [`DEVICE_ENV`].
    ///
    /// Probes the native APIs only (Vulkan, Metal, DX12; or exactly the backends
    /// `WGPU_BACKEND` names), once per process: the answer is cached. A GPU reachable
    /// only through OpenGL is not picked here; [`Device::Gpu`] still opens it.
    pub fn detect() -> Device {
        static DETECTED: std::sync::OnceLock<Device> = std::sync::OnceLock::new();
        *DETECTED.get_or_init(|| match hardware_gpu() {
            Some(true) => Device::Gpu,
            _ => Device::Cpu,
        })
    }

    /// Parses `cpu`, `gpu`, `gpu:N` or `auto` (trimmed, any case); `auto` resolves
    /// through [`Device::auto`], so [`DEVICE_ENV`] still decides. Probes adapters only
    /// for `auto`.
    pub fn from_name(name: &str) -> Result<Device> {
        match parse_name(name) {
            Some(Named::Auto) => Device::auto(),
            Some(Named::Device(d)) => Ok(d),
            None => Err(Error::config(format!(
                "unknown device '{name}' (expected {ACCEPTED})"
            ))),
        }
    }

    /// A fresh backend for this device. A GPU device fails with
    /// [`Error::NoAdapter`] when no adapter can be opened.
    pub fn backend(&self) -> Result<Box<dyn Backend>> {
        match self {
            Device::Cpu => Ok(Box::new(CpuBackend::new())),
            #[cfg(feature = "gpu")]
            Device::Gpu => Ok(Box::new(GpuBackend::new()?)),
            #[cfg(feature = "gpu")]
            Device::GpuAdapter(i) => Ok(Box::new(GpuBackend::with_adapter(*i)?)),
            #[cfg(not(feature = "gpu"))]
            Device::Gpu | Device::GpuAdapter(_) => Err(Error::NoAdapter(
                "this build of plasticity has no GPU backend: enable its `gpu` feature \
                 (on by default)"
                    .into(),
            )),
        }
    }
}

/// Whether the best adapter of the native APIs is real hardware (`None`: no adapter,
/// or a build without the `gpu` feature).
#[cfg(feature = "gpu")]
fn hardware_gpu() -> Option<bool> {
    crate::backend::gpu::best_adapter_is_hardware()
}

#[cfg(not(feature = "gpu"))]
fn hardware_gpu() -> Option<bool> {
    None
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
        assert_eq!(
            Device::from_name(" Gpu: 3 ").unwrap(),
            Device::GpuAdapter(3)
        );
        for d in [Device::Cpu, Device::Gpu, Device::GpuAdapter(1)] {
            assert_eq!(Device::from_name(&d.to_string()).unwrap(), d);
        }
    }

    #[test]
    fn the_variable_is_trimmed_and_auto_in_any_spelling_detects() {
        // A sentinel no value parses to, so a call of `detect` is visible.
        let detected = Device::GpuAdapter(99);
        for auto in [
            None,
            Some(""),
            Some("  "),
            Some(" auto"),
            Some("AUTO "),
            Some("\tAuto\n"),
        ] {
            assert_eq!(
                resolve_env(auto, || detected).unwrap(),
                detected,
                "{auto:?}"
            );
        }
        for (value, device) in [
            (" cpu ", Device::Cpu),
            ("GPU", Device::Gpu),
            ("gpu:1 ", Device::GpuAdapter(1)),
        ] {
            let no_probe = || panic!("{value:?} must not probe adapters");
            assert_eq!(resolve_env(Some(value), no_probe).unwrap(), device);
        }
    }

    #[test]
    fn an_unknown_value_names_the_variable_and_the_accepted_values() {
        let err = resolve_env(Some(" tpu"), || Device::Cpu).unwrap_err();
        assert!(
            matches!(
                err,
                Error::InvalidEnvVar {
                    name: DEVICE_ENV,
                    ..
                }
            ),
            "{err:?}"
        );
        let text = err.to_string();
        for needle in [DEVICE_ENV, "\" tpu\"", "cpu, gpu, gpu:N or auto"] {
            assert!(text.contains(needle), "{text:?} lacks {needle:?}");
        }
    }
}
