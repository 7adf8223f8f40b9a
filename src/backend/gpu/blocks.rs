//! Every kernel's parameter block, declared once: the `kernel_params!` macro below makes
//! the Rust struct the host fills and the WGSL `struct` the shader reads from the same
//! field list, so the two cannot drift (a reordered or retyped field changes both). The
//! pipelines prepend each module's declaration to its source (see
//! [`pipelines`](super::pipelines)), and a dispatch refuses a block of another
//! kernel's type.
//!
//! Shared WGSL constants (the workgroup size of the elementwise kernels, the
//! activation codes) are generated here from the Rust values too.

use crate::activation::Activation;

/// A kernel's parameter block: plain 32-bit fields, laid out as WGSL lays out a
/// uniform struct of `u32`/`f32` fields (4-byte aligned, no padding).
pub(crate) trait KernelParams: bytemuck::Pod {
    /// The WGSL declaration, as `struct <name> { ... }`.
    const WGSL: &'static str;

    /// Makes every element offset relative to the start of the binding it indexes:
    /// `bases[i]` is where binding `i + 1` starts in its buffer (a dispatch binds
    /// each operand's range, not the whole buffer; see [`bindings`](super::bindings)).
    fn rebase(&mut self, bases: &[u32]);
}

/// Declares a parameter block:
/// `kernel_params!(RustName as WgslName { field: u32, offset: u32 @ 2, ... })`, where
/// `@ n` marks an element offset into storage binding `n`.
macro_rules! kernel_params {
    ($(#[$doc:meta])* $name:ident as $wgsl:ident {
        $($(#[$fdoc:meta])* $field:ident: $ty:ident $(@ $binding:literal)?),* $(,)?
    }) => {
        $(#[$doc])*
        #[repr(C)]
        #[derive(Debug, Clone, Copy, Default, bytemuck::Pod, bytemuck::Zeroable)]
        pub(crate) struct $name {
            $($(#[$fdoc])* pub $field: $ty,)*
        }

        impl KernelParams for $name {
            const WGSL: &'static str = concat!(
                "struct ", stringify!($wgsl), " {\n",
                $("    ", stringify!($field), ": ", stringify!($ty), ",\n",)*
                "}\n"
            );

            fn rebase(&mut self, bases: &[u32]) {
                // Wrapping: an offset into a binding the call leaves unused is never
                // read, whatever it becomes (and kernels sharing a block may bind
                // fewer buffers than it names).
                $($(if let Some(base) = bases.get($binding - 1) {
                    self.$field = self.$field.wrapping_sub(*base);
                })?)*
            }
        }
    };
}

kernel_params!(
    /// `C = alpha op(A) op(B) + beta C` with an optional fused epilogue
    /// (`shaders/gemm_common.wgsl`).
    GemmParams as Params {
        m: u32,
        n: u32,
        k: u32,
        a_off: u32 @ 2,
        lda: u32,
        trans_a: u32,
        b_off: u32 @ 3,
        ldb: u32,
        trans_b: u32,
        c_off: u32 @ 1,
        ldc: u32,
        alpha: f32,
        beta: f32,
        /// Nonzero: load A (B) as aligned vec4s; store C's aligned runs of 4 as vec4s.
        vec_a: u32,
        vec_b: u32,
        vec_c: u32,
        /// 0 none, 1 bias + activation, 2 activation derivative, in the low byte; the
        /// activation code above it.
        epilogue: u32,
        /// Offset of the epilogue's operand (bias or stored output).
        e_off: u32 @ 4,
        /// Split-K: the k of each slice (0: not split), how many slices, and where
        /// their partial blocks start (for `gemm_reduce`).
        split: u32,
        slices: u32,
        s_off: u32 @ 2,
    }
);

kernel_params!(
    /// One layer of the grouped layer-gradient table (`shaders/layer_grads.wgsl`).
    LayerEntry as Layer {
        delta_off: u32 @ 2,
        input_off: u32 @ 3,
        grad_w_off: u32 @ 1,
        /// Into binding 1 with `BIAS_WITH_WEIGHTS` in `flags` (the host rebases it).
        grad_b_off: u32,
        outputs: u32,
        inputs: u32,
        batch: u32,
        /// Bit 0: the delta loads as vec4s; bit 1: the input does; bit 2
        /// ([`BIAS_WITH_WEIGHTS`]): the bias gradient goes to binding 1.
        flags: u32,
        /// `grad = alpha product + beta grad` (0: not read).
        alpha: f32,
        beta: f32,
        /// Entries of a uniform array are 16-byte aligned.
        _pad0: u32,
        _pad1: u32,
    }
);

kernel_params!(
    /// Fill, bias + activation, activation derivative, axpby and noise
    /// (`shaders/elementwise.wgsl`).
    ElementwiseParams as Params {
        /// The written region: offset and length.
        off0: u32 @ 1,
        len: u32,
        /// The region read.
        off1: u32 @ 2,
        /// Columns of the written region (bias_activation: one bias per row).
        cols: u32,
        /// Activation code.
        act: u32,
        /// fill: the value; axpby: alpha; noise: the standard deviation; uniform noise:
        /// the lower end.
        value: f32,
        /// axpby: beta (0 overwrites without reading); uniform noise: the upper end.
        beta: f32,
        /// noise: the draw's seed, and whether to add to the region.
        seed: u32,
        accumulate: u32,
    }
);

kernel_params!(
    /// Output error and loss statistics (`shaders/loss.wgsl`).
    LossParams as Params {
        out_off: u32 @ 1,
        target_off: u32 @ 2,
        grad_off: u32 @ 3,
        stats_off: u32 @ 4,
        classes: u32,
        batch: u32,
        /// 0 softmax cross-entropy, 1 mean squared error.
        kind: u32,
        /// -inf (WGSL has no infinite constants).
        lowest: f32,
    }
);

kernel_params!(
    /// One optimizer update, guarded or not (`shaders/optimizer.wgsl`).
    OptimizerParams as Params {
        param_off: u32 @ 1,
        grad_off: u32 @ 2,
        s0_off: u32 @ 3,
        s1_off: u32 @ 4,
        len: u32,
        /// 0 SGD (with momentum when momentum != 0), 1 Adam.
        kind: u32,
        nesterov: u32,
        /// 1: watch the divergence flags (see `backend::divergence`).
        guarded: u32,
        /// SGD: lr. Adam: step_size = lr / (1 - beta1^t).
        lr: f32,
        /// SGD: momentum. Adam: beta1.
        momentum: f32,
        beta2: f32,
        eps: f32,
        weight_decay: f32,
        inv_sqrt_correction2: f32,
        flags_off: u32 @ 5,
        step: u32,
        /// The running loss sum the guard watches.
        loss_off: u32 @ 5,
    }
);

kernel_params!(
    /// Sign-symmetric feedback (`shaders/feedback.wgsl`).
    FeedbackParams as Params {
        off_out: u32 @ 1,
        len: u32,
        off_w: u32 @ 2,
        off_mag: u32 @ 3,
        has_mag: u32,
        scale: f32,
    }
);

kernel_params!(
    /// Gradient-norm clipping (`shaders/clip.wgsl`).
    ClipParams as Params {
        grad_off: u32 @ 1,
        len: u32,
        norm_off: u32 @ 2,
        max_norm: f32,
    }
);

kernel_params!(
    /// im2col, col2im, pooling and its gradient (`shaders/spatial.wgsl`).
    SpatialParams as Params {
        channels: u32,
        height: u32,
        width: u32,
        kernel: u32,
        stride: u32,
        padding: u32,
        batch: u32,
        out_h: u32,
        out_w: u32,
        /// Elements written (the grid's extent).
        len: u32,
        /// Offsets of the written region, the input and the argmax.
        off0: u32 @ 1,
        off1: u32 @ 2,
        off2: u32 @ 3,
        /// Pooling: 0 max, 1 max at the recorded argmax, 2 average.
        mode: u32,
        /// 1 / k², computed on the host.
        scale: f32,
    }
);

kernel_params!(
    /// Per-column reductions and scalings (`shaders/columns.wgsl`).
    ColumnsParams as Params {
        off_x: u32 @ 2,
        off_out: u32 @ 1,
        /// Rows and columns of the region reduced (column_scale: of `out`).
        rows: u32,
        cols: u32,
        /// column_mean_squares: add to out (1) or overwrite it (0).
        accumulate: u32,
        /// column_normalize: added to each norm, and the length each column gets.
        eps: f32,
        length: f32,
    }
);

kernel_params!(
    /// A batch gathered from a stored data set (`shaders/data.wgsl`).
    DataParams as Params {
        table_off: u32 @ 1,
        labels_off: u32 @ 1,
        features_off: u32 @ 1,
        samples: u32,
        dim: u32,
        classes: u32,
        batch: u32,
        /// 1: byte codes through the table, 0: f32 values.
        bytes: u32,
        order_off: u32 @ 2,
        x_off: u32 @ 3,
        targets_off: u32 @ 4,
    }
);

/// [`LayerEntry::flags`] bit: the layer's bias gradient lies in the weight gradients'
/// buffer and is written through their binding (`shaders/layer_grads.wgsl`).
pub(crate) const BIAS_WITH_WEIGHTS: u32 = 4;

/// Invocations per workgroup of the elementwise kernels (and of the loss kernel's one
/// workgroup); WGSL's `GROUP`.
pub(crate) const GROUP: u32 = 256;

/// The WGSL activation code of `a` (`ACT_*` in [`constants`]).
pub(crate) fn activation_code(a: Activation) -> u32 {
    match a {
        Activation::Identity => 0,
        Activation::Relu => 1,
        Activation::LeakyRelu => 2,
        Activation::Tanh => 3,
        Activation::Sigmoid => 4,
    }
}

/// The constants every module may use, as WGSL.
pub(crate) fn constants() -> String {
    let act =
        |name: &str, a: Activation| format!("const ACT_{name}: u32 = {}u;\n", activation_code(a));
    [
        format!("const GROUP: u32 = {GROUP}u;\n"),
        format!("const BIAS_WITH_WEIGHTS: u32 = {BIAS_WITH_WEIGHTS}u;\n"),
        act("IDENTITY", Activation::Identity),
        act("RELU", Activation::Relu),
        act("LEAKY_RELU", Activation::LeakyRelu),
        act("TANH", Activation::Tanh),
        act("SIGMOID", Activation::Sigmoid),
    ]
    .concat()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The size WGSL gives the declaration of `P`.
    fn wgsl_size<P: KernelParams>() -> u32 {
        let module = naga::front::wgsl::parse_str(P::WGSL).expect("the generated WGSL parses");
        let (_, ty) = module
            .types
            .iter()
            .find(|(_, t)| matches!(t.inner, naga::TypeInner::Struct { .. }))
            .expect("one struct");
        ty.inner.size(module.to_ctx())
    }

    #[test]
    fn every_block_is_laid_out_alike_in_rust_and_wgsl() {
        fn check<P: KernelParams>() {
            assert_eq!(
                wgsl_size::<P>() as usize,
                std::mem::size_of::<P>(),
                "{}",
                P::WGSL
            );
            // Within the binding each slot offers.
            assert!(std::mem::size_of::<P>() <= super::super::params::BLOCK_BYTES as usize);
        }
        check::<GemmParams>();
        check::<ElementwiseParams>();
        check::<LossParams>();
        check::<OptimizerParams>();
        check::<FeedbackParams>();
        check::<ClipParams>();
        check::<SpatialParams>();
        check::<ColumnsParams>();
        check::<DataParams>();
        // The layer-gradient table holds 48-byte entries (a multiple of 16, the stride
        // of an array in a uniform buffer).
        assert_eq!(wgsl_size::<LayerEntry>(), 48);
        assert_eq!(std::mem::size_of::<LayerEntry>(), 48);
    }
}
