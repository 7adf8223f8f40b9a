// The GEMM for large products: one workgroup of 16x16 invocations per 128x128 tile of
// C, each invocation owning 8x8 outputs. Prefixed with activation.wgsl and
// gemm_common.wgsl (parameters, bindings, alpha/beta and the fused epilogue, shared
// with gemm.wgsl, so all three kernels have the same semantics). The host picks this
// kernel when its grid of 128x128 tiles fills the device (`HARDWARE_FILL`,
// `gemm_dispatch`). Unlike gemm_tile.wgsl it loads each K step just in time: holding
// the next step's 8 floats per factor in registers as well would add to a kernel
// already heavy in them (64 accumulators per invocation); to measure on hardware.
//
// Why: with 4x4 outputs per invocation (gemm_tile.wgsl) each step of the inner loop
// reads 8 floats of workgroup memory for 16 FMAs, so on a GPU the loop is bound by
// shared-memory bandwidth. With 8x8 it reads 16 floats for 64 FMAs.
//
// Layout: invocation (tx, ty) owns rows {4 ty .. 4 ty + 3} and {64 + 4 ty .. 64 +
// 4 ty + 3} of the tile and likewise columns with tx: four 4x4 sub-blocks strided by
// 64, so that at each k the 16 invocations of a row of the workgroup read 16
// consecutive vec4s of each tile (conflict-free), where contiguous 8x8 blocks would
// read pairs of vec4s at a stride of two (bank conflicts).
// The accumulators are 16 vec4 registers, c{r}{h}: row r of the invocation's 8 (0-3
// from the first sub-block row, 4-7 from the second), column half h.
//
// K advances WIDE_K = 16 at a time through workgroup memory (two 128 x 16 tiles of
// f32, 16 KiB in all: the WebGPU default limit), stored k-major as vec4s as in
// gemm_tile.wgsl, so each k of the inner loop is four vector loads (two of A, two of
// B) and sixteen vector FMAs. No double buffering: two barriers per K step. (WIDE_K =
// 8 with WIDE_SCALARS 4, WIDE_VECS 1, WIDE_KQ 2 and 256-vec4 tiles also works and
// measured the same on lavapipe; 16 halves the barriers and pads K exactly as
// gemm.wgsl does, which the bitwise equality below relies on.)
//
// Global loads (one 128x16 slice of each factor per K step, 256 invocations) take one
// of two paths per factor, chosen by the host exactly as for gemm.wgsl:
// - vector (offset and leading dimension multiples of 4): each invocation loads two
//   aligned runs of 4 floats per factor as `vec4<f32>`, along whichever direction is
//   contiguous in memory (see gemm_tile.wgsl for the details, which are the same);
// - scalar: otherwise, eight bounds-checked scalar loads per invocation per factor.
// Out-of-range elements read as 0 on both paths, which fill workgroup memory
// identically. Every output is the same chain of FMAs over k = 0, 1, .. (zero-padded
// to a multiple of 16) as in gemm.wgsl, so both kernels and both load paths give the
// same result, bit for bit (and likewise gemm.wgsl's 32x32-tile build).

const WIDE_M: u32 = 128u;
const WIDE_N: u32 = 128u;
const WIDE_K: u32 = 16u;
const WIDE_THREADS: u32 = 256u;
// vec4s per k-row of a tile (128 / 4).
const WIDE_Q: u32 = 32u;
// Scalar loads per invocation per factor per K step (128 * 16 / 256).
const WIDE_SCALARS: u32 = 8u;
// vec4 loads per invocation per factor per K step (128 * 16 / 4 / 256).
const WIDE_VECS: u32 = 2u;
// Runs of 4 k per row of a tile, for factors stored k-contiguous.
const WIDE_KQ: u32 = 4u;

// Stored k-major: wide_a[kk * 32 + i / 4][i % 4] = op(A)[row0 + i, k0 + kk].
var<workgroup> wide_a: array<vec4<f32>, 512>;
// wide_b[kk * 32 + j / 4][j % 4] = op(B)[k0 + kk, col0 + j].
var<workgroup> wide_b: array<vec4<f32>, 512>;

// Which lanes of the run of 4 starting at index `g` of a dimension of extent `n` lie
// inside it.
fn wide_lanes(g: u32, n: u32) -> vec4<bool> {
    return vec4<u32>(g) + vec4<u32>(0u, 1u, 2u, 3u) < vec4<u32>(n);
}

// Scalar path of the A slice.
fn wide_load_a(row0: u32, k0: u32, flat: u32) {
    for (var r = 0u; r < WIDE_SCALARS; r++) {
        let e = flat + r * WIDE_THREADS;
        // Walk the stored matrix along its rows so consecutive invocations read
        // consecutive addresses.
        var i = e / WIDE_K;
        var kk = e % WIDE_K;
        if (p.trans_a != 0u) {
            i = e % WIDE_M;
            kk = e / WIDE_M;
        }
        let gi = row0 + i;
        let gk = k0 + kk;
        var v = 0.0;
        if (gi < p.m && gk < p.k) {
            if (p.trans_a == 0u) {
                v = a_at(p.a_off + gi * p.lda + gk);
            } else {
                v = a_at(p.a_off + gk * p.lda + gi);
            }
        }
        wide_a[kk * WIDE_Q + i / 4u][i % 4u] = v;
    }
}

// Scalar path of the B slice.
fn wide_load_b(col0: u32, k0: u32, flat: u32) {
    for (var r = 0u; r < WIDE_SCALARS; r++) {
        let e = flat + r * WIDE_THREADS;
        var j = e % WIDE_N;
        var kk = e / WIDE_N;
        if (p.trans_b != 0u) {
            j = e / WIDE_K;
            kk = e % WIDE_K;
        }
        let gj = col0 + j;
        let gk = k0 + kk;
        var v = 0.0;
        if (gk < p.k && gj < p.n) {
            if (p.trans_b == 0u) {
                v = b_at(p.b_off + gk * p.ldb + gj);
            } else {
                v = b_at(p.b_off + gj * p.ldb + gk);
            }
        }
        wide_b[kk * WIDE_Q + j / 4u][j % 4u] = v;
    }
}

// Vector path of the A slice: two aligned vec4s per invocation.
fn wide_load_a_vec(row0: u32, k0: u32, flat: u32) {
    for (var r = 0u; r < WIDE_VECS; r++) {
        let e = flat + r * WIDE_THREADS;
        if (p.trans_a == 0u) {
            // A is m x k: runs go along k, 4 per tile row; consecutive invocations
            // read consecutive runs of a row.
            let i = e / WIDE_KQ;
            let kq = e % WIDE_KQ;
            let gi = row0 + i;
            let gk = k0 + 4u * kq;
            var v = vec4<f32>(0.0);
            if (gi < p.m && gk < p.k) {
                let at = (p.a_off + gi * p.lda + gk) / 4u;
                v = select(vec4<f32>(0.0), a_vec[at], wide_lanes(gk, p.k));
            }
            // The 4 k of the run go to four k-rows of the tile.
            let s = 4u * kq * WIDE_Q + i / 4u;
            let c = i % 4u;
            wide_a[s][c] = v.x;
            wide_a[s + WIDE_Q][c] = v.y;
            wide_a[s + 2u * WIDE_Q][c] = v.z;
            wide_a[s + 3u * WIDE_Q][c] = v.w;
        } else {
            // A is stored k x m: runs go along m, already the layout of the tile.
            let kk = e / WIDE_Q;
            let iq = e % WIDE_Q;
            let gi = row0 + 4u * iq;
            let gk = k0 + kk;
            var v = vec4<f32>(0.0);
            if (gk < p.k && gi < p.m) {
                let at = (p.a_off + gk * p.lda + gi) / 4u;
                v = select(vec4<f32>(0.0), a_vec[at], wide_lanes(gi, p.m));
            }
            wide_a[kk * WIDE_Q + iq] = v;
        }
    }
}

// Vector path of the B slice: two aligned vec4s per invocation.
fn wide_load_b_vec(col0: u32, k0: u32, flat: u32) {
    for (var r = 0u; r < WIDE_VECS; r++) {
        let e = flat + r * WIDE_THREADS;
        if (p.trans_b == 0u) {
            // B is k x n: runs go along n, already the layout of the tile.
            let kk = e / WIDE_Q;
            let jq = e % WIDE_Q;
            let gj = col0 + 4u * jq;
            let gk = k0 + kk;
            var v = vec4<f32>(0.0);
            if (gk < p.k && gj < p.n) {
                let at = (p.b_off + gk * p.ldb + gj) / 4u;
                v = select(vec4<f32>(0.0), b_vec[at], wide_lanes(gj, p.n));
            }
            wide_b[kk * WIDE_Q + jq] = v;
        } else {
            // B is stored n x k: runs go along k, 4 per tile column.
            let j = e / WIDE_KQ;
            let kq = e % WIDE_KQ;
            let gj = col0 + j;
            let gk = k0 + 4u * kq;
            var v = vec4<f32>(0.0);
            if (gk < p.k && gj < p.n) {
                let at = (p.b_off + gj * p.ldb + gk) / 4u;
                v = select(vec4<f32>(0.0), b_vec[at], wide_lanes(gk, p.k));
            }
            let s = 4u * kq * WIDE_Q + j / 4u;
            let c = j % 4u;
            wide_b[s][c] = v.x;
            wide_b[s + WIDE_Q][c] = v.y;
            wide_b[s + 2u * WIDE_Q][c] = v.z;
            wide_b[s + 3u * WIDE_Q][c] = v.w;
        }
    }
}

@compute @workgroup_size(16, 16)
fn gemm_wide(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    c_base = p.c_off;
    let row0 = wg.y * WIDE_M;
    let col0 = wg.x * WIDE_N;
    let flat = lid.y * 16u + lid.x;
    var c00 = vec4<f32>(0.0);
    var c01 = vec4<f32>(0.0);
    var c10 = vec4<f32>(0.0);
    var c11 = vec4<f32>(0.0);
    var c20 = vec4<f32>(0.0);
    var c21 = vec4<f32>(0.0);
    var c30 = vec4<f32>(0.0);
    var c31 = vec4<f32>(0.0);
    var c40 = vec4<f32>(0.0);
    var c41 = vec4<f32>(0.0);
    var c50 = vec4<f32>(0.0);
    var c51 = vec4<f32>(0.0);
    var c60 = vec4<f32>(0.0);
    var c61 = vec4<f32>(0.0);
    var c70 = vec4<f32>(0.0);
    var c71 = vec4<f32>(0.0);
    for (var k0 = 0u; k0 < p.k; k0 += WIDE_K) {
        if (p.vec_a != 0u) {
            wide_load_a_vec(row0, k0, flat);
        } else {
            wide_load_a(row0, k0, flat);
        }
        if (p.vec_b != 0u) {
            wide_load_b_vec(col0, k0, flat);
        } else {
            wide_load_b(col0, k0, flat);
        }
        workgroupBarrier();
        for (var kk = 0u; kk < WIDE_K; kk++) {
            let s = kk * WIDE_Q;
            let a0 = wide_a[s + lid.y];
            let a1 = wide_a[s + 16u + lid.y];
            let b0 = wide_b[s + lid.x];
            let b1 = wide_b[s + 16u + lid.x];
            c00 = fma(vec4<f32>(a0.x), b0, c00);
            c01 = fma(vec4<f32>(a0.x), b1, c01);
            c10 = fma(vec4<f32>(a0.y), b0, c10);
            c11 = fma(vec4<f32>(a0.y), b1, c11);
            c20 = fma(vec4<f32>(a0.z), b0, c20);
            c21 = fma(vec4<f32>(a0.z), b1, c21);
            c30 = fma(vec4<f32>(a0.w), b0, c30);
            c31 = fma(vec4<f32>(a0.w), b1, c31);
            c40 = fma(vec4<f32>(a1.x), b0, c40);
            c41 = fma(vec4<f32>(a1.x), b1, c41);
            c50 = fma(vec4<f32>(a1.y), b0, c50);
            c51 = fma(vec4<f32>(a1.y), b1, c51);
            c60 = fma(vec4<f32>(a1.z), b0, c60);
            c61 = fma(vec4<f32>(a1.z), b1, c61);
            c70 = fma(vec4<f32>(a1.w), b0, c70);
            c71 = fma(vec4<f32>(a1.w), b1, c71);
        }
        workgroupBarrier();
    }
    let i0 = row0 + 4u * lid.y;
    let i1 = i0 + 64u;
    let j0 = col0 + 4u * lid.x;
    let j1 = j0 + 64u;
    store_c4(i0, j0, c00);
    store_c4(i0, j1, c01);
    store_c4(i0 + 1u, j0, c10);
    store_c4(i0 + 1u, j1, c11);
    store_c4(i0 + 2u, j0, c20);
    store_c4(i0 + 2u, j1, c21);
    store_c4(i0 + 3u, j0, c30);
    store_c4(i0 + 3u, j1, c31);
    store_c4(i1, j0, c40);
    store_c4(i1, j1, c41);
    store_c4(i1 + 1u, j0, c50);
    store_c4(i1 + 1u, j1, c51);
    store_c4(i1 + 2u, j0, c60);
    store_c4(i1 + 2u, j1, c61);
    store_c4(i1 + 3u, j0, c70);
    store_c4(i1 + 3u, j1, c71);
}
