//! The compute pipelines, compiled once when the backend opens its device.
//!
//! Every kernel binds, in group 0, its parameter block at binding 0 (a uniform with a
//! dynamic offset, see [`params`](super::params)) and its buffers at bindings
//! `1..=n`, all as read-write storage so one buffer may appear in several bindings
//! (the GEMM family binds its factors twice: as `array<f32>` and `array<vec4<f32>>`).

use super::context::Context;
use super::params::{BLOCK_BYTES, TABLE_BYTES};
use crate::error::{Error, Result};

const ACTIVATION: &str = include_str!("../../../shaders/activation.wgsl");
const GEMM_TILE: &str = include_str!("../../../shaders/gemm_tile.wgsl");
const GEMM_COMMON: &str = include_str!("../../../shaders/gemm_common.wgsl");
const GEMM: &str = include_str!("../../../shaders/gemm.wgsl");
const GEMM_WIDE: &str = include_str!("../../../shaders/gemm_wide.wgsl");
const LAYER_GRADS: &str = include_str!("../../../shaders/layer_grads.wgsl");
const ELEMENTWISE: &str = include_str!("../../../shaders/elementwise.wgsl");
const LOSS: &str = include_str!("../../../shaders/loss.wgsl");
const OPTIMIZER: &str = include_str!("../../../shaders/optimizer.wgsl");
const FEEDBACK: &str = include_str!("../../../shaders/feedback.wgsl");
const CLIP: &str = include_str!("../../../shaders/clip.wgsl");

/// One compute kernel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) enum Kernel {
    /// 64x64 output tiles (`shaders/gemm.wgsl`).
    Gemm,
    /// 128x128 output tiles, for large products (`shaders/gemm_wide.wgsl`).
    GemmWide,
    LayerGrads,
    Fill,
    BiasActivation,
    ActivationGrad,
    Loss,
    Optimizer,
    SignFeedback,
    GradNorm,
    GradScale,
}

impl Kernel {
    const ALL: [Kernel; 11] = [
        Kernel::Gemm,
        Kernel::GemmWide,
        Kernel::LayerGrads,
        Kernel::Fill,
        Kernel::BiasActivation,
        Kernel::ActivationGrad,
        Kernel::Loss,
        Kernel::Optimizer,
        Kernel::SignFeedback,
        Kernel::GradNorm,
        Kernel::GradScale,
    ];

    /// Index of its shader module in [`MODULES`] and its entry point.
    fn source(self) -> (usize, &'static str) {
        match self {
            Kernel::Gemm => (0, "gemm"),
            Kernel::GemmWide => (1, "gemm_wide"),
            Kernel::LayerGrads => (2, "layer_grads"),
            Kernel::Fill => (3, "fill"),
            Kernel::BiasActivation => (3, "bias_activation"),
            Kernel::ActivationGrad => (3, "activation_grad"),
            Kernel::Loss => (4, "loss_grad"),
            Kernel::Optimizer => (5, "optimizer_step"),
            Kernel::SignFeedback => (6, "sign_feedback"),
            Kernel::GradNorm => (7, "grad_norm"),
            Kernel::GradScale => (7, "grad_scale"),
        }
    }

    /// Storage buffers it binds (bindings `1..=n`).
    pub fn storage_bindings(self) -> usize {
        match self {
            Kernel::Fill => 1,
            Kernel::BiasActivation | Kernel::ActivationGrad => 2,
            Kernel::GradNorm | Kernel::GradScale => 2,
            Kernel::SignFeedback => 3,
            Kernel::Loss | Kernel::Optimizer => 4,
            // C, A, B, A and B again as vec4 views, the epilogue's operand.
            // grad_w, deltas, inputs, grad_b, then deltas and inputs as vec4 views.
            Kernel::Gemm | Kernel::GemmWide | Kernel::LayerGrads => 6,
        }
    }

    /// Size of its parameter binding.
    pub fn param_bytes(self) -> u64 {
        match self {
            Kernel::LayerGrads => TABLE_BYTES,
            _ => BLOCK_BYTES,
        }
    }
}

/// Shader modules by name. The two GEMM kernels share their parameters, bindings and
/// epilogue (`gemm_common.wgsl`) but not their tile loops, so each gets its own module
/// and declares only its own workgroup memory; `gemm` and `layer_grads` share the
/// 64x64 tile loop (`gemm_tile.wgsl`).
const MODULES: [&str; 8] = [
    "gemm",
    "gemm_wide",
    "layer_grads",
    "elementwise",
    "loss",
    "optimizer",
    "feedback",
    "clip",
];

fn module_source(index: usize) -> String {
    match index {
        0 => format!("{ACTIVATION}\n{GEMM_TILE}\n{GEMM_COMMON}\n{GEMM}"),
        1 => format!("{ACTIVATION}\n{GEMM_COMMON}\n{GEMM_WIDE}"),
        2 => format!("{GEMM_TILE}\n{LAYER_GRADS}"),
        3 => format!("{ACTIVATION}\n{ELEMENTWISE}"),
        4 => LOSS.to_string(),
        5 => OPTIMIZER.to_string(),
        6 => FEEDBACK.to_string(),
        _ => CLIP.to_string(),
    }
}

/// A compiled kernel and the layout its bind groups follow.
pub(crate) struct Pipeline {
    pub pipeline: wgpu::ComputePipeline,
    pub layout: wgpu::BindGroupLayout,
}

/// Every kernel, compiled.
pub(crate) struct Pipelines {
    pipelines: Vec<Pipeline>,
}

impl Pipelines {
    /// Compiles every shader and builds every pipeline.
    pub fn build(ctx: &Context) -> Result<Pipelines> {
        let allowed = ctx.limits.max_storage_buffers_per_shader_stage as usize;
        if let Some(kernel) = Kernel::ALL
            .into_iter()
            .find(|k| k.storage_bindings() > allowed)
        {
            return Err(Error::Backend(format!(
                "{kernel:?} binds {} storage buffers, more than the device's \
                 max_storage_buffers_per_shader_stage of {allowed}",
                kernel.storage_bindings()
            )));
        }
        ctx.scoped(|| {
            let modules: Vec<wgpu::ShaderModule> = (0..MODULES.len())
                .map(|i| {
                    ctx.device
                        .create_shader_module(wgpu::ShaderModuleDescriptor {
                            label: Some(MODULES[i]),
                            source: wgpu::ShaderSource::Wgsl(module_source(i).into()),
                        })
                })
                .collect();
            let pipelines = Kernel::ALL
                .iter()
                .map(|&kernel| {
                    let (module, entry) = kernel.source();
                    build_one(ctx, kernel, &modules[module], entry)
                })
                .collect();
            Pipelines { pipelines }
        })
    }

    /// The pipeline of `kernel`.
    pub fn get(&self, kernel: Kernel) -> &Pipeline {
        &self.pipelines[kernel as usize]
    }
}

fn build_one(ctx: &Context, kernel: Kernel, module: &wgpu::ShaderModule, entry: &str) -> Pipeline {
    let mut entries = vec![wgpu::BindGroupLayoutEntry {
        binding: 0,
        visibility: wgpu::ShaderStages::COMPUTE,
        ty: wgpu::BindingType::Buffer {
            ty: wgpu::BufferBindingType::Uniform,
            has_dynamic_offset: true,
            min_binding_size: wgpu::BufferSize::new(kernel.param_bytes()),
        },
        count: None,
    }];
    for binding in 1..=kernel.storage_bindings() as u32 {
        entries.push(wgpu::BindGroupLayoutEntry {
            binding,
            visibility: wgpu::ShaderStages::COMPUTE,
            ty: wgpu::BindingType::Buffer {
                ty: wgpu::BufferBindingType::Storage { read_only: false },
                has_dynamic_offset: false,
                min_binding_size: None,
            },
            count: None,
        });
    }
    let layout = ctx
        .device
        .create_bind_group_layout(&wgpu::BindGroupLayoutDescriptor {
            label: Some(entry),
            entries: &entries,
        });
    let pipeline_layout = ctx
        .device
        .create_pipeline_layout(&wgpu::PipelineLayoutDescriptor {
            label: Some(entry),
            bind_group_layouts: &[Some(&layout)],
            immediate_size: 0,
        });
    let pipeline = ctx
        .device
        .create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
            label: Some(entry),
            layout: Some(&pipeline_layout),
            module,
            entry_point: Some(entry),
            compilation_options: Default::default(),
            cache: None,
        });
    Pipeline { pipeline, layout }
}
