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

/// Which adapters a probe looks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Probe {
    /// Every backend `WGPU_BACKEND` allows (all by default): listing, opening by index.
    All,
    /// The native APIs (Vulkan, Metal, DX12), then OpenGL only if they offer no
    /// adapter: OpenGL's probe is slow and, on some Linux setups, noisy.
    NativeFirst,
    /// The native APIs only: looking for hardware, not for any adapter at all.
    NativeOnly,
}

impl Probe {
    /// The backend sets to try, in order. `WGPU_BACKEND`, when set, is taken as the
    /// whole answer: the user named the backends.
    fn passes(self) -> Vec<wgpu::Backends> {
        match (wgpu::Backends::from_env(), self) {
            (Some(named), _) => vec![named],
            (None, Probe::All) => vec![wgpu::Backends::all()],
            (None, Probe::NativeFirst) => {
                vec![wgpu::Backends::PRIMARY, wgpu::Backends::SECONDARY]
            }
            (None, Probe::NativeOnly) => vec![wgpu::Backends::PRIMARY],
        }
    }
}

/// An instance of exactly `backends` (no other API is initialised), honouring
/// `WGPU_ADAPTER_NAME`, `WGPU_POWER_PREF` and the other wgpu variables.
fn instance(backends: wgpu::Backends) -> wgpu::Instance {
    let mut desc = wgpu::InstanceDescriptor::new_without_display_handle_from_env();
    desc.backends = backends;
    wgpu::Instance::new(desc)
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

/// The adapters `probe` finds, best first (see [`AdapterSummary::hardware`]): those of
/// the first pass of [`Probe::passes`] that finds any.
fn ranked_adapters(probe: Probe) -> Vec<wgpu::Adapter> {
    for backends in probe.passes() {
        let instance = instance(backends);
        let mut adapters = pollster::block_on(instance.enumerate_adapters(backends));
        if !adapters.is_empty() {
            adapters.sort_by_key(|a| rank(&a.get_info()));
            return adapters;
        }
    }
    Vec::new()
}

/// The adapters this machine offers, best first: real GPUs before software ones.
/// Probes every backend `WGPU_BACKEND` allows (all when it is unset).
pub fn adapters() -> Vec<AdapterSummary> {
    summaries(Probe::All)
}

/// The adapters `probe` finds, best first.
pub(crate) fn summaries(probe: Probe) -> Vec<AdapterSummary> {
    ranked_adapters(probe)
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

/// Why no adapter was found, for [`Error::NoAdapter`] (whose message already begins
/// with "no GPU adapter").
fn none_found() -> String {
    match std::env::var("WGPU_BACKEND") {
        Ok(named) => format!("wgpu found none among WGPU_BACKEND={named}"),
        Err(_) => "wgpu found no Vulkan, Metal, DX12 or OpenGL driver".into(),
    }
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
    /// Opens adapter `index` of [`adapters`]'s list, or the best one
    /// ([`Probe::NativeFirst`]).
    pub fn open(index: Option<usize>) -> Result<Context> {
        let probe = index.map_or(Probe::NativeFirst, |_| Probe::All);
        let mut adapters = ranked_adapters(probe);
        let adapter = match index {
            None if adapters.is_empty() => return Err(Error::NoAdapter(none_found())),
            None => adapters.swap_remove(0),
            Some(i) if i < adapters.len() => adapters.swap_remove(i),
            Some(i) => {
                return Err(Error::NoAdapter(format!(
                    "adapter {i} requested, but wgpu found {}",
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
