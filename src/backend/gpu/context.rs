//! Instance, adapter and device: finding a GPU, opening it with the adapter's own
//! limits, and turning wgpu's asynchronous errors into this crate's typed errors.

use std::sync::{Arc, Mutex};

use crate::error::{Error, Result};

/// What is known about one adapter wgpu can open.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdapterSummary {
    /// Index in [`adapters`]'s list (what [`Device::GpuAdapter`](crate::Device) takes).
    pub index: usize,
    /// Driver-reported name, e.g. `NVIDIA H100` or `llvmpipe (LLVM 15.0.6, 256 bits)`.
    pub name: String,
    /// Graphics API wgpu reaches it through (`Vulkan`, `Metal`, `Dx12`, `Gl`).
    pub backend: String,
    /// Whether it is real hardware: a discrete, integrated or virtual GPU, not a
    /// software rasteriser such as lavapipe, llvmpipe or WARP.
    pub hardware: bool,
}

fn instance() -> wgpu::Instance {
    // Honours WGPU_BACKEND, WGPU_ADAPTER_NAME and friends.
    wgpu::Instance::new(wgpu::InstanceDescriptor::new_without_display_handle_from_env())
}

/// Lower is better: real GPUs before software ones, native APIs before GL.
fn rank(info: &wgpu::AdapterInfo) -> (u8, u8) {
    let kind = match info.device_type {
        wgpu::DeviceType::DiscreteGpu => 0,
        wgpu::DeviceType::IntegratedGpu => 1,
        wgpu::DeviceType::VirtualGpu => 2,
        wgpu::DeviceType::Other => 3,
        wgpu::DeviceType::Cpu => 4,
    };
    let api = match info.backend {
        wgpu::Backend::Vulkan | wgpu::Backend::Metal | wgpu::Backend::Dx12 => 0,
        _ => 1,
    };
    (kind, api)
}

fn is_hardware(info: &wgpu::AdapterInfo) -> bool {
    matches!(
        info.device_type,
        wgpu::DeviceType::DiscreteGpu
            | wgpu::DeviceType::IntegratedGpu
            | wgpu::DeviceType::VirtualGpu
    )
}

/// Every adapter, best first (see [`AdapterSummary::hardware`]).
fn ranked_adapters(instance: &wgpu::Instance) -> Vec<wgpu::Adapter> {
    let mut adapters = pollster::block_on(instance.enumerate_adapters(wgpu::Backends::all()));
    adapters.sort_by_key(|a| rank(&a.get_info()));
    adapters
}

/// The adapters this machine offers, best first: real GPUs before software ones.
pub fn adapters() -> Vec<AdapterSummary> {
    ranked_adapters(&instance())
        .iter()
        .enumerate()
        .map(|(index, a)| {
            let info = a.get_info();
            AdapterSummary {
                index,
                name: info.name.clone(),
                backend: format!("{:?}", info.backend),
                hardware: is_hardware(&info),
            }
        })
        .collect()
}

/// Records errors wgpu reports outside an error scope (its default handler panics)
/// and device loss, so the next backend call returns them.
#[derive(Clone, Default)]
pub(crate) struct ErrorSink {
    first: Arc<Mutex<Option<Error>>>,
    lost: Arc<Mutex<Option<String>>>,
}

impl ErrorSink {
    fn record(&self, error: Error) {
        if let Ok(mut slot) = self.first.lock() {
            slot.get_or_insert(error);
        }
    }

    /// The device loss (sticky) or the first error recorded since the last call.
    pub fn take(&self) -> Result<()> {
        if let Some(reason) = self.lost.lock().ok().and_then(|l| l.clone()) {
            return Err(Error::DeviceLost(reason));
        }
        match self.first.lock().ok().and_then(|mut e| e.take()) {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }
}

/// Converts a wgpu error into this crate's.
pub(crate) fn convert(error: wgpu::Error) -> Error {
    match error {
        wgpu::Error::OutOfMemory { source } => Error::OutOfMemory(source.to_string()),
        wgpu::Error::Validation { description, .. } => {
            Error::Backend(format!("GPU validation error: {description}"))
        }
        wgpu::Error::Internal { description, .. } => {
            Error::Backend(format!("GPU internal error: {description}"))
        }
    }
}

/// An open device and what we need to know about it.
pub(crate) struct Context {
    pub device: wgpu::Device,
    pub queue: wgpu::Queue,
    pub limits: wgpu::Limits,
    pub info: wgpu::AdapterInfo,
    pub errors: ErrorSink,
}

impl Context {
    /// Opens adapter `index` of [`adapters`]'s list, or the best one.
    pub fn open(index: Option<usize>) -> Result<Context> {
        let instance = instance();
        let mut adapters = ranked_adapters(&instance);
        let adapter = match index {
            None if adapters.is_empty() => {
                return Err(Error::NoAdapter(
                    "wgpu found no adapter (no Vulkan, Metal, DX12 or GL driver)".into(),
                ))
            }
            None => adapters.swap_remove(0),
            Some(i) if i < adapters.len() => adapters.swap_remove(i),
            Some(i) => {
                return Err(Error::NoAdapter(format!(
                    "adapter {i} requested but wgpu found {}",
                    adapters.len()
                )))
            }
        };
        let info = adapter.get_info();
        // The adapter's own limits, not the conservative defaults: big layers need big
        // storage bindings.
        let limits = adapter.limits();
        let desc = wgpu::DeviceDescriptor {
            label: Some("plasticity"),
            required_limits: limits.clone(),
            ..Default::default()
        };
        let (device, queue) = pollster::block_on(adapter.request_device(&desc))
            .map_err(|e| Error::NoAdapter(format!("cannot open {}: {e}", info.name)))?;
        let errors = ErrorSink::default();
        let sink = errors.clone();
        device.on_uncaptured_error(Arc::new(move |e| sink.record(convert(e))));
        let lost = errors.lost.clone();
        device.set_device_lost_callback(move |reason, message| {
            if let Ok(mut slot) = lost.lock() {
                slot.get_or_insert(format!("{reason:?}: {message}"));
            }
        });
        Ok(Context {
            device,
            queue,
            limits,
            info,
            errors,
        })
    }

    /// Runs `f` inside out-of-memory and validation error scopes and returns the
    /// first error either caught.
    pub fn scoped<T>(&self, f: impl FnOnce() -> T) -> Result<T> {
        let oom = self.device.push_error_scope(wgpu::ErrorFilter::OutOfMemory);
        let validation = self.device.push_error_scope(wgpu::ErrorFilter::Validation);
        let value = f();
        let validation = pollster::block_on(validation.pop());
        let oom = pollster::block_on(oom.pop());
        match validation.or(oom) {
            Some(e) => Err(convert(e)),
            None => Ok(value),
        }
    }
}
