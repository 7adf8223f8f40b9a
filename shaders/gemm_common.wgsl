// Parameters, bindings and output stage shared by the three GEMM kernels: gemm.wgsl
// compiled with 32x32 and with 64x64 tiles (via gemm_tile.wgsl), and gemm_wide.wgsl
// (128x128 tiles). Each is compiled as its own module: activation.wgsl, its tile loop,
// this file, its entry.
//
// All three compute C = epilogue(alpha * op(A) op(B) + beta * C) on row-major regions at
// element offsets. `vec_a` / `vec_b` (set by the host when that factor's offset and
// leading dimension are multiples of 4) select the vec4 global-load path for that
// factor.
//
// The epilogue fuses the elementwise pass that follows a product in a training step,
// saving a dispatch (and a round trip of C through memory):
// - 0: none;
// - 1: a layer's forward pass, C = f(C + bias[row]), bias at `e_off`;
// - 2: a hidden delta, C *= f'(H) with H = f(Z) the layer's output, same shape as C
//   and contiguous, at `e_off`.

// `struct Params` comes from src/backend/gpu/blocks.rs.

@group(0) @binding(0) var<uniform> p: Params;
// Inputs are declared `read`; the host redeclares one `read_write` for a dispatch whose
// output lies in the same buffer (WebGPU lets a buffer be either read-only in a
// dispatch or writable in all its bindings), with ranges that do not overlap.
@group(0) @binding(1) var<storage, read_write> c_buf: array<f32>;
// A and B as vec4s, for both load paths (the scalar path picks lanes: see
// `factors.wgsl`); each factor is bound once, so its range never overlaps itself.
@group(0) @binding(2) var<storage, read> a_vec: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read> b_vec: array<vec4<f32>>;
// The epilogue's operand: the bias or the layer output H (unused with epilogue 0).
@group(0) @binding(4) var<storage, read> e_buf: array<f32>;

// Where this invocation's C starts: `p.c_off`, or a split-K slice's own block.
var<private> c_base: u32;

const EPILOGUE_BIAS_ACTIVATION: u32 = 1u;
const EPILOGUE_DERIVATIVE: u32 = 2u;

// Stores output (i, j), given `acc` = (op(A) op(B))[i, j]: alpha, beta, the epilogue.
// Outputs outside the m x n product are skipped.
fn store_c(i: u32, j: u32, acc: f32) {
    if (i >= p.m || j >= p.n) {
        return;
    }
    let epilogue = p.epilogue & 0xffu;
    let act = p.epilogue >> 8u;
    let at = c_base + i * p.ldc + j;
    var v = p.alpha * acc;
    // beta == 0 overwrites without reading (C may hold garbage or NaN).
    if (p.beta != 0.0) {
        v += p.beta * c_buf[at];
    }
    if (epilogue == EPILOGUE_BIAS_ACTIVATION) {
        v = activate(act, v + e_buf[p.e_off + i]);
    } else if (epilogue == EPILOGUE_DERIVATIVE) {
        v *= derivative(act, e_buf[p.e_off + i * p.n + j]);
    }
    c_buf[at] = v;
}

// Stores the run of 4 outputs (i, j .. j + 3).
fn store_c4(i: u32, j: u32, acc: vec4<f32>) {
    store_c(i, j, acc.x);
    store_c(i, j + 1u, acc.y);
    store_c(i, j + 2u, acc.z);
    store_c(i, j + 3u, acc.w);
}
