// Parameters, bindings and output stage shared by the three GEMM kernels: gemm.wgsl
// compiled with 32x32 and with 64x64 tiles (via gemm_tile.wgsl), and gemm_wide.wgsl
// (128x128 tiles). Each is compiled as its own module: activation.wgsl, its tile loop,
// this file, its entry.
//
// All three compute C = epilogue(alpha * op(A) op(B) + beta * C) on row-major regions at
// element offsets. `vec_a` / `vec_b` (set by the host when that factor's offset and
// leading dimension are multiples of 4) select the vec4 global-load path for that
// factor, `vec_c` (likewise for C) vec4 stores of C.
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
// C as vec4s: a run of 4 outputs that starts on a 16-byte boundary is one vector store
// (see `store_c4`), any other output a store to one lane (a lane is its own memory
// location in WGSL, so neighbouring invocations' lanes are untouched).
@group(0) @binding(1) var<storage, read_write> c_vec: array<vec4<f32>>;
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

// Output (i, j)'s value at element `at` of C, given `acc` = (op(A) op(B))[i, j]: alpha,
// beta, the epilogue.
fn output(i: u32, j: u32, at: u32, acc: f32) -> f32 {
    let epilogue = p.epilogue & 0xffu;
    let act = p.epilogue >> 8u;
    var v = p.alpha * acc;
    // beta == 0 overwrites without reading (C may hold garbage or NaN).
    if (p.beta != 0.0) {
        v += p.beta * c_vec[at >> 2u][at & 3u];
    }
    if (epilogue == EPILOGUE_BIAS_ACTIVATION) {
        v = activate(act, v + e_buf[p.e_off + i]);
    } else if (epilogue == EPILOGUE_DERIVATIVE) {
        v *= derivative(act, e_buf[p.e_off + i * p.n + j]);
    }
    return v;
}

// Stores output (i, j), skipped outside the m x n product.
fn store_c(i: u32, j: u32, acc: f32) {
    if (i >= p.m || j >= p.n) {
        return;
    }
    let at = c_base + i * p.ldc + j;
    c_vec[at >> 2u][at & 3u] = output(i, j, at, acc);
}

// Stores the run of 4 outputs (i, j .. j + 3); `j` is a multiple of 4. With `vec_c` (the
// host sets it when C's offset and leading dimension are multiples of 4, so the run
// starts on a 16-byte boundary) and the whole run inside C, as one vector store of the
// same four values; otherwise one output at a time.
fn store_c4(i: u32, j: u32, acc: vec4<f32>) {
    let at = c_base + i * p.ldc + j;
    if (p.vec_c != 0u && i < p.m && j + 3u < p.n) {
        c_vec[at >> 2u] = vec4<f32>(
            output(i, j, at, acc.x),
            output(i, j + 1u, at + 1u, acc.y),
            output(i, j + 2u, at + 2u, acc.z),
            output(i, j + 3u, at + 3u, acc.w),
        );
        return;
    }
    store_c(i, j, acc.x);
    store_c(i, j + 1u, acc.y);
    store_c(i, j + 2u, acc.z);
    store_c(i, j + 3u, acc.w);
}
