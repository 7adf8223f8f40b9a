//! The compute pipelines, compiled once when the backend opens its device.
//!
//! Every kernel binds, in group 0, its parameter block at binding 0 (a uniform with a
//! dynamic offset, see [`params`](super::params)) and ranges of its buffers at bindings
//! `1..=n`: its outputs as `read_write` storage, its inputs as `read` storage. A
//! dispatch whose input shares a buffer with its output needs that input `read_write`
//! too (see [`bindings`](super::bindings)): such a pipeline variant is compiled on first
//! use, from the same WGSL with that declaration changed.

use std::any::TypeId;
use std::collections::HashMap;

use super::blocks::{
    constants, ClipParams, ColumnsParams, DataParams, ElementwiseParams, FeedbackParams,
    GemmParams, KernelParams, LayerEntry, LossParams, OptimizerParams, SpatialParams,
};
use super::context::Context;
use super::params::{BLOCK_BYTES, TABLE_BYTES};
use super::GemmKernel;
use crate::error::{Error, Result};

const ACTIVATION: &str = include_str!("../../../shaders/activation.wgsl");
const GEMM_TILE: &str = include_str!("../../../shaders/gemm_tile.wgsl");
const GEMM_COMMON: &str = include_str!("../../../shaders/gemm_common.wgsl");
const FACTORS: &str = include_str!("../../../shaders/factors.wgsl");
const GEMM: &str = include_str!("../../../shaders/gemm.wgsl");
const GEMM_WIDE: &str = include_str!("../../../shaders/gemm_wide.wgsl");
const LAYER_GRADS: &str = include_str!("../../../shaders/layer_grads.wgsl");
const ELEMENTWISE: &str = include_str!("../../../shaders/elementwise.wgsl");
const LOSS: &str = include_str!("../../../shaders/loss.wgsl");
const OPTIMIZER: &str = include_str!("../../../shaders/optimizer.wgsl");
const FEEDBACK: &str = include_str!("../../../shaders/feedback.wgsl");
const CLIP: &str = include_str!("../../../shaders/clip.wgsl");
const SPATIAL: &str = include_str!("../../../shaders/spatial.wgsl");
const COLUMNS: &str = include_str!("../../../shaders/columns.wgsl");
const DATA: &str = include_str!("../../../shaders/data.wgsl");

/// One compute kernel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Kernel {
    /// A GEMM by its output tile: 64x64 and 32x32 (`shaders/gemm.wgsl` with `TILE` 64
    /// or 32), 128x128 (`shaders/gemm_wide.wgsl`).
    Gemm(GemmKernel),
    /// Sums a split-K product's slices into C (`gemm_reduce` in `shaders/gemm.wgsl`).
    GemmReduce,
    LayerGrads,
    Fill,
    BiasActivation,
    ActivationGrad,
    Loss,
    Optimizer,
    SignFeedback,
    GradNorm,
    GradScale,
    Im2Col,
    Col2Im,
    Pool,
    Unpool,
    Axpby,
    Noise,
    UniformNoise,
    ColumnMeanSquares,
    ColumnNormalize,
    ColumnScale,
    ColumnArgmaxOneHot,
    Gather,
}

impl Kernel {
    const ALL: [Kernel; 25] = [
        Kernel::Gemm(GemmKernel::Tile64),
        Kernel::Gemm(GemmKernel::Tile32),
        Kernel::Gemm(GemmKernel::Tile128),
        Kernel::GemmReduce,
        Kernel::LayerGrads,
        Kernel::Fill,
        Kernel::BiasActivation,
        Kernel::ActivationGrad,
        Kernel::Loss,
        Kernel::Optimizer,
        Kernel::SignFeedback,
        Kernel::GradNorm,
        Kernel::GradScale,
        Kernel::Im2Col,
        Kernel::Col2Im,
        Kernel::Pool,
        Kernel::Unpool,
        Kernel::Axpby,
        Kernel::Noise,
        Kernel::UniformNoise,
        Kernel::ColumnMeanSquares,
        Kernel::ColumnNormalize,
        Kernel::ColumnScale,
        Kernel::ColumnArgmaxOneHot,
        Kernel::Gather,
    ];

    /// Whether `P` is the parameter block it reads (a type check, so a dispatch pays
    /// no more than a comparison for it).
    pub fn reads<P: KernelParams>(self) -> bool {
        self.source().0.params().1 == TypeId::of::<P>()
    }

    /// Its position in [`Kernel::ALL`] (and in [`Pipelines`]).
    fn index(self) -> usize {
        Kernel::ALL.iter().position(|&k| k == self).unwrap_or(0)
    }

    /// Its shader module and entry point.
    fn source(self) -> (Module, &'static str) {
        match self {
            Kernel::Gemm(GemmKernel::Tile64) => (Module::Gemm, "gemm"),
            Kernel::Gemm(GemmKernel::Tile32) => (Module::GemmNarrow, "gemm"),
            Kernel::Gemm(GemmKernel::Tile128) => (Module::GemmWide, "gemm_wide"),
            Kernel::GemmReduce => (Module::GemmNarrow, "gemm_reduce"),
            Kernel::LayerGrads => (Module::LayerGrads, "layer_grads"),
            Kernel::Fill => (Module::Elementwise, "fill"),
            Kernel::BiasActivation => (Module::Elementwise, "bias_activation"),
            Kernel::ActivationGrad => (Module::Elementwise, "activation_grad"),
            Kernel::Loss => (Module::Loss, "loss_grad"),
            Kernel::Optimizer => (Module::Optimizer, "optimizer_step"),
            Kernel::SignFeedback => (Module::Feedback, "sign_feedback"),
            Kernel::GradNorm => (Module::Clip, "grad_norm"),
            Kernel::GradScale => (Module::Clip, "grad_scale"),
            Kernel::Im2Col => (Module::Spatial, "im2col"),
            Kernel::Col2Im => (Module::Spatial, "col2im"),
            Kernel::Pool => (Module::Spatial, "pool"),
            Kernel::Unpool => (Module::Spatial, "unpool"),
            Kernel::Axpby => (Module::Elementwise, "axpby"),
            Kernel::Noise => (Module::Elementwise, "noise"),
            Kernel::UniformNoise => (Module::Elementwise, "uniform_noise"),
            Kernel::ColumnMeanSquares => (Module::Columns, "column_mean_squares"),
            Kernel::ColumnNormalize => (Module::Columns, "column_normalize"),
            Kernel::ColumnScale => (Module::Columns, "column_scale"),
            Kernel::ColumnArgmaxOneHot => (Module::Columns, "column_argmax_one_hot"),
            Kernel::Gather => (Module::Data, "gather"),
        }
    }

    /// Storage buffers it binds (bindings `1..=n`, at most [`MAX_STORAGE_BINDINGS`]).
    pub fn storage_bindings(self) -> usize {
        match self {
            Kernel::Fill | Kernel::Noise | Kernel::UniformNoise => 1,
            Kernel::BiasActivation | Kernel::ActivationGrad | Kernel::Axpby => 2,
            Kernel::ColumnMeanSquares
            | Kernel::ColumnNormalize
            | Kernel::ColumnScale
            | Kernel::ColumnArgmaxOneHot => 2,
            Kernel::GradNorm | Kernel::GradScale => 2,
            Kernel::SignFeedback => 3,
            // Written region, input, argmax.
            Kernel::Im2Col | Kernel::Col2Im | Kernel::Pool | Kernel::Unpool => 3,
            // Stored data, indices, inputs, targets.
            Kernel::Loss | Kernel::Gather => 4,
            // Parameters, gradients, two moments, divergence flags.
            Kernel::Optimizer => 5,
            // C, A, B, the epilogue's operand; grad_w, deltas, inputs, grad_b.
            Kernel::Gemm(_) | Kernel::GemmReduce | Kernel::LayerGrads => 4,
        }
    }

    /// Its outputs: bit `i` for binding `i + 1` if its module declares that binding
    /// `read_write`. Reads the module's source: [`Pipelines::outputs`] keeps the
    /// answer for dispatches.
    fn outputs(self) -> u32 {
        let mask = (1u32 << self.storage_bindings()) - 1;
        self.source().0.outputs() & mask
    }

    /// Bytes of workgroup memory it declares (checked against the shaders by a test).
    pub fn workgroup_bytes(self) -> u32 {
        match self {
            // Two tiles of TILE_Q x TILE_K vec4s (`gemm_tile.wgsl`).
            Kernel::Gemm(GemmKernel::Tile64) | Kernel::LayerGrads => {
                2 * (TILE as u32 / 4) * 16 * 16
            }
            Kernel::Gemm(GemmKernel::Tile32) => 2 * (NARROW_TILE as u32 / 4) * 16 * 16,
            // Two 512-vec4 tiles (`gemm_wide.wgsl`).
            Kernel::Gemm(GemmKernel::Tile128) => 2 * 512 * 16,
            // Two 256-float reduction arrays, one for the gradient norm.
            Kernel::Loss => 2 * 256 * 4,
            Kernel::GradNorm => 256 * 4,
            _ => 0,
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

/// A shader module. The three GEMM kernels share their parameters, bindings and
/// epilogue (`gemm_common.wgsl`) but not their tile sizes, so each gets its own module
/// and declares only its own workgroup memory. `gemm` (64x64), `gemm_narrow` (32x32)
/// and `layer_grads` (64x64) share one tile loop (`gemm_tile.wgsl`), sized by the
/// `TILE` constant that [`Module::source`] prepends; `gemm` and `gemm_narrow` also share
/// their entry point (`gemm.wgsl`). `gemm_wide` has its own loop (8x8 outputs per
/// invocation).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Module {
    Gemm,
    GemmNarrow,
    GemmWide,
    LayerGrads,
    Elementwise,
    Loss,
    Optimizer,
    Feedback,
    Clip,
    Spatial,
    Columns,
    Data,
}

/// The WGSL declaration of storage binding `binding` with access `access`.
fn declaration(binding: usize, access: &str) -> String {
    format!("@group(0) @binding({binding}) var<storage, {access}>")
}

impl Module {
    /// Every module, in the order [`Pipelines::build`] compiles them (`module as usize`).
    const ALL: [Module; 12] = [
        Module::Gemm,
        Module::GemmNarrow,
        Module::GemmWide,
        Module::LayerGrads,
        Module::Elementwise,
        Module::Loss,
        Module::Optimizer,
        Module::Feedback,
        Module::Clip,
        Module::Spatial,
        Module::Columns,
        Module::Data,
    ];

    /// Its label.
    fn name(self) -> &'static str {
        match self {
            Module::Gemm => "gemm",
            Module::GemmNarrow => "gemm_narrow",
            Module::GemmWide => "gemm_wide",
            Module::LayerGrads => "layer_grads",
            Module::Elementwise => "elementwise",
            Module::Loss => "loss",
            Module::Optimizer => "optimizer",
            Module::Feedback => "feedback",
            Module::Clip => "clip",
            Module::Spatial => "spatial",
            Module::Columns => "columns",
            Module::Data => "data",
        }
    }

    /// The parameter block it reads: its WGSL `struct` (generated from the Rust one)
    /// and the Rust type.
    fn params(self) -> (&'static str, TypeId) {
        fn block<P: KernelParams>() -> (&'static str, TypeId) {
            (P::WGSL, TypeId::of::<P>())
        }
        match self {
            Module::Gemm | Module::GemmNarrow | Module::GemmWide => block::<GemmParams>(),
            Module::LayerGrads => block::<LayerEntry>(),
            Module::Elementwise => block::<ElementwiseParams>(),
            Module::Loss => block::<LossParams>(),
            Module::Optimizer => block::<OptimizerParams>(),
            Module::Feedback => block::<FeedbackParams>(),
            Module::Clip => block::<ClipParams>(),
            Module::Spatial => block::<SpatialParams>(),
            Module::Columns => block::<ColumnsParams>(),
            Module::Data => block::<DataParams>(),
        }
    }

    /// The storage bindings it declares `read_write`: bit `i` for binding `i + 1`.
    fn outputs(self) -> u32 {
        let source = self.source();
        (1..=MAX_STORAGE_BINDINGS)
            .filter(|&b| source.contains(&declaration(b, "read_write")))
            .fold(0, |mask, b| mask | 1 << (b - 1))
    }

    /// Its WGSL with the bindings in `writable` declared `read_write`.
    fn source_with(self, writable: u32) -> String {
        let mut source = self.source();
        for b in (1..=MAX_STORAGE_BINDINGS).filter(|b| writable & (1 << (b - 1)) != 0) {
            source = source.replace(&declaration(b, "read"), &declaration(b, "read_write"));
        }
        source
    }

    /// Its WGSL: the injected constants, its parameter block, then its files.
    fn source(self) -> String {
        let body = match self {
            Module::Gemm => format!(
                "{ACTIVATION}\n{}\n{FACTORS}\n{GEMM_COMMON}\n{GEMM}",
                tile_loop(TILE)
            ),
            Module::GemmNarrow => format!(
                "{ACTIVATION}\n{}\n{FACTORS}\n{GEMM_COMMON}\n{GEMM}",
                tile_loop(NARROW_TILE)
            ),
            Module::GemmWide => format!("{ACTIVATION}\n{FACTORS}\n{GEMM_COMMON}\n{GEMM_WIDE}"),
            Module::LayerGrads => format!("{}\n{FACTORS}\n{LAYER_GRADS}", tile_loop(TILE)),
            Module::Elementwise => format!("{ACTIVATION}\n{ELEMENTWISE}"),
            Module::Loss => LOSS.to_string(),
            Module::Optimizer => OPTIMIZER.to_string(),
            Module::Feedback => FEEDBACK.to_string(),
            Module::Clip => CLIP.to_string(),
            Module::Spatial => SPATIAL.to_string(),
            Module::Columns => COLUMNS.to_string(),
            Module::Data => DATA.to_string(),
        };
        format!("{}{}\n{body}", constants(), self.params().0)
    }
}

/// The most storage bindings a kernel declares (the optimizer's five).
pub(crate) const MAX_STORAGE_BINDINGS: usize = 5;

/// Output tile side of the `gemm` kernel and of `layer_grads` (`TILE` in
/// `gemm_tile.wgsl`; `layer_grads.wgsl` assumes 64).
pub(crate) const TILE: usize = 64;
/// Output tile side of the `gemm_narrow` kernel.
pub(crate) const NARROW_TILE: usize = 32;

/// `gemm_tile.wgsl` sized for `TILE` x `TILE` output tiles (64 or 32: the workgroup is
/// `TILE / 4` invocations square and must divide the loads evenly).
fn tile_loop(tile: usize) -> String {
    format!("const TILE: u32 = {tile}u;\n{GEMM_TILE}")
}

/// A compiled kernel and the layout its bind groups follow.
pub(crate) struct Pipeline {
    pub pipeline: wgpu::ComputePipeline,
    pub layout: wgpu::BindGroupLayout,
}

/// Every kernel the device can run, compiled.
pub(crate) struct Pipelines {
    /// By [`Kernel`], with its inputs read-only; `None` for a kernel needing more
    /// workgroup memory than the device has (the wide GEMM needs 16,384 bytes, the
    /// WebGPU downlevel limit is 16,352): callers fall back to another kernel.
    pipelines: Vec<Option<Pipeline>>,
    /// Variants with some inputs declared `read_write`, by kernel and writable
    /// bindings, compiled on first use.
    variants: HashMap<(Kernel, u32), Pipeline>,
    /// By [`Kernel`], the bindings it writes ([`Kernel::outputs`]).
    outputs: Vec<u32>,
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
            let modules: Vec<wgpu::ShaderModule> = Module::ALL
                .iter()
                .map(|&m| shader_module(ctx, m, m.source()))
                .collect();
            let room = ctx.limits.max_compute_workgroup_storage_size;
            let pipelines = Kernel::ALL
                .iter()
                .map(|&kernel| {
                    let (module, _) = kernel.source();
                    let writable = kernel.outputs();
                    (kernel.workgroup_bytes() <= room)
                        .then(|| build_one(ctx, kernel, writable, &modules[module as usize]))
                })
                .collect();
            Pipelines {
                pipelines,
                variants: HashMap::new(),
                outputs: Kernel::ALL.iter().map(|k| k.outputs()).collect(),
            }
        })
    }

    /// Compiles the variant of `kernel` with the bindings in `writable` declared
    /// `read_write`, unless it exists (or the device cannot run the kernel at all).
    pub fn prepare(&mut self, ctx: &Context, kernel: Kernel, writable: u32) -> Result<()> {
        let outputs = self.outputs(kernel);
        self.require(kernel, outputs)?;
        if writable == outputs || self.variants.contains_key(&(kernel, writable)) {
            return Ok(());
        }
        let pipeline = ctx.scoped(|| {
            let module = shader_module(
                ctx,
                kernel.source().0,
                kernel.source().0.source_with(writable),
            );
            build_one(ctx, kernel, writable, &module)
        })?;
        self.variants.insert((kernel, writable), pipeline);
        Ok(())
    }

    /// The pipeline of `kernel` with the bindings in `writable` declared `read_write`,
    /// or why there is none.
    pub fn require(&self, kernel: Kernel, writable: u32) -> Result<&Pipeline> {
        let base = self.pipelines[kernel.index()].as_ref().ok_or_else(|| {
            Error::Unsupported(format!(
                "{kernel:?} needs {} bytes of workgroup memory, more than this device has",
                kernel.workgroup_bytes()
            ))
        })?;
        if writable == self.outputs(kernel) {
            return Ok(base);
        }
        self.variants.get(&(kernel, writable)).ok_or_else(|| {
            Error::Backend(format!(
                "{kernel:?} with writable bindings {writable:#b} was never prepared"
            ))
        })
    }

    /// The bindings `kernel` writes: bit `i` for binding `i + 1`.
    pub fn outputs(&self, kernel: Kernel) -> u32 {
        self.outputs[kernel.index()]
    }

    /// Whether the device can run `kernel`.
    pub fn has(&self, kernel: Kernel) -> bool {
        self.pipelines[kernel.index()].is_some()
    }
}

fn shader_module(ctx: &Context, module: Module, source: String) -> wgpu::ShaderModule {
    ctx.device
        .create_shader_module(wgpu::ShaderModuleDescriptor {
            label: Some(module.name()),
            source: wgpu::ShaderSource::Wgsl(source.into()),
        })
}

fn build_one(
    ctx: &Context,
    kernel: Kernel,
    writable: u32,
    module: &wgpu::ShaderModule,
) -> Pipeline {
    let entry = kernel.source().1;
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
                ty: wgpu::BufferBindingType::Storage {
                    read_only: writable & (1 << (binding - 1)) == 0,
                },
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
            // Every kernel writes its workgroup memory before reading it (each tile is
            // loaded, each reduction slot set, before a barrier), so zero-filling it
            // first is wasted work.
            compilation_options: wgpu::PipelineCompilationOptions {
                zero_initialize_workgroup_memory: false,
                ..Default::default()
            },
            cache: None,
        });
    Pipeline { pipeline, layout }
}

#[cfg(test)]
mod tests {
    use super::*;
    use naga::valid::{Capabilities, ModuleInfo, ValidationFlags, Validator};

    /// `m` parsed and validated with WebGPU's base capabilities.
    fn parsed(m: Module) -> (naga::Module, ModuleInfo) {
        let source = m.source();
        let module = naga::front::wgsl::parse_str(&source)
            .unwrap_or_else(|e| panic!("{}: {}", m.name(), e.emit_to_string(&source)));
        let info = Validator::new(ValidationFlags::all(), Capabilities::empty())
            .validate(&module)
            .unwrap_or_else(|e| panic!("{}: {}", m.name(), e.emit_to_string(&source)));
        (module, info)
    }

    #[test]
    fn modules_are_listed_in_the_order_pipelines_index_them() {
        for (i, m) in Module::ALL.into_iter().enumerate() {
            assert_eq!(m as usize, i, "{m:?}");
        }
    }

    #[test]
    fn every_shader_translates_for_every_backend() {
        for m in Module::ALL {
            let (name, (module, info)) = (m.name(), parsed(m));
            naga::back::spv::write_vec(&module, &info, &Default::default(), None)
                .unwrap_or_else(|e| panic!("{name} as SPIR-V: {e}"));
            naga::back::msl::write_string(&module, &info, &Default::default(), &Default::default())
                .unwrap_or_else(|e| panic!("{name} as MSL: {e}"));
            let mut hlsl = String::new();
            naga::back::hlsl::Writer::new(&mut hlsl, &Default::default(), &Default::default())
                .write(&module, &info, None)
                .unwrap_or_else(|e| panic!("{name} as HLSL: {e}"));
            for ep in &module.entry_points {
                let pipeline = naga::back::glsl::PipelineOptions {
                    shader_stage: naga::ShaderStage::Compute,
                    entry_point: ep.name.clone(),
                    multiview: None,
                };
                let mut glsl = String::new();
                naga::back::glsl::Writer::new(
                    &mut glsl,
                    &module,
                    &info,
                    &Default::default(),
                    &pipeline,
                    Default::default(),
                )
                .and_then(|mut w| w.write())
                .unwrap_or_else(|e| panic!("{name}::{} as GLSL ES: {e}", ep.name));
            }
        }
    }

    #[test]
    fn each_kernel_takes_exactly_one_parameter_block() {
        for kernel in Kernel::ALL {
            let takes = [
                kernel.reads::<GemmParams>(),
                kernel.reads::<LayerEntry>(),
                kernel.reads::<ElementwiseParams>(),
                kernel.reads::<LossParams>(),
                kernel.reads::<OptimizerParams>(),
                kernel.reads::<FeedbackParams>(),
                kernel.reads::<ClipParams>(),
                kernel.reads::<SpatialParams>(),
                kernel.reads::<ColumnsParams>(),
                kernel.reads::<DataParams>(),
            ];
            assert_eq!(takes.iter().filter(|&&t| t).count(), 1, "{kernel:?}");
        }
        assert!(Kernel::Gemm(GemmKernel::Tile32).reads::<GemmParams>());
        assert!(!Kernel::Fill.reads::<GemmParams>());
    }

    #[test]
    fn every_binding_is_declared_once_and_every_variant_validates() {
        for kernel in Kernel::ALL {
            let module = kernel.source().0;
            let source = module.source();
            for b in 1..=kernel.storage_bindings() {
                let found = ["read", "read_write"]
                    .map(|access| source.matches(&declaration(b, access)).count());
                assert_eq!(found.iter().sum::<usize>(), 1, "{kernel:?} binding {b}");
            }
            assert_ne!(kernel.outputs(), 0, "{kernel:?} writes something");
        }
        // With every input writable (an input sharing the output's buffer), each
        // module still parses and validates.
        for m in Module::ALL {
            let source = m.source_with(u32::MAX);
            assert!(!source.contains("var<storage, read>"), "{}", m.name());
            let module = naga::front::wgsl::parse_str(&source)
                .unwrap_or_else(|e| panic!("{}: {}", m.name(), e.emit_to_string(&source)));
            Validator::new(ValidationFlags::all(), Capabilities::empty())
                .validate(&module)
                .unwrap_or_else(|e| panic!("{}: {}", m.name(), e.emit_to_string(&source)));
        }
    }

    #[test]
    fn no_shader_holds_an_infinite_or_nan_constant() {
        // WGSL forbids them (Tint rejects a constant expression that makes one), even
        // where naga folds it silently.
        for m in Module::ALL {
            let (name, (module, _)) = (m.name(), parsed(m));
            let functions = module.functions.iter().map(|(_, f)| f);
            let entries = module.entry_points.iter().map(|e| &e.function);
            let arenas = std::iter::once(&module.global_expressions)
                .chain(functions.chain(entries).map(|f| &f.expressions));
            for arena in arenas {
                for (_, e) in arena.iter() {
                    let value = match *e {
                        naga::Expression::Literal(naga::Literal::F32(v)) => v,
                        // A bitcast of an integer constant to a float.
                        naga::Expression::As {
                            expr,
                            kind: naga::ScalarKind::Float,
                            convert: None,
                        } => match arena[expr] {
                            naga::Expression::Literal(naga::Literal::U32(bits)) => {
                                f32::from_bits(bits)
                            }
                            naga::Expression::Literal(naga::Literal::I32(bits)) => {
                                f32::from_bits(bits as u32)
                            }
                            _ => continue,
                        },
                        _ => continue,
                    };
                    assert!(value.is_finite(), "{name} holds the constant {value}");
                }
            }
        }
    }

    #[test]
    fn workgroup_memory_is_as_declared_and_within_the_downlevel_limit_but_for_the_wide_gemm() {
        let downlevel = wgpu::Limits::downlevel_defaults().max_compute_workgroup_storage_size;
        for kernel in Kernel::ALL {
            let (which, entry) = kernel.source();
            let (module, info) = parsed(which);
            let ep = module
                .entry_points
                .iter()
                .position(|e| e.name == entry)
                .unwrap_or_else(|| panic!("{kernel:?}: no entry point {entry}"));
            let uses = info.get_entry_point(ep);
            let bytes: u32 = module
                .global_variables
                .iter()
                .filter(|(h, v)| v.space == naga::AddressSpace::WorkGroup && !uses[*h].is_empty())
                .map(|(_, v)| module.types[v.ty].inner.size(module.to_ctx()))
                .sum();
            assert_eq!(bytes, kernel.workgroup_bytes(), "{kernel:?}");
            // Above the limit only a kernel the backend can do without (see
            // `Pipelines::get` and the GEMM fallback in `kernels.rs`).
            assert!(
                bytes <= downlevel || kernel == Kernel::Gemm(GemmKernel::Tile128),
                "{kernel:?}: {bytes} bytes"
            );
        }
    }
}
