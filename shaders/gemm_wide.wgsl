// The GEMM for large products: one workgroup of 16x16 invocations per 128x128 tile of
// C, each invocation owning 8x8 outputs. Prefixed with activation.wgsl and
// gemm_common.wgsl (parameters, bindings, alpha/beta and the fused epilogue, shared
// with gemm.wgsl, so all three kernels have the same semantics). The host picks this
// kernel when its grid of 128x128 tiles fills the device (`HARDWARE_FILL`,
// `gemm_dispatch`). Like gemm_tile.wgsl it fetches each K step's global loads into
// registers during the previous step's arithmetic (8 floats per factor per invocation
// beside the 64 accumulators: about 16 more registers, which on a GPU with 64K
// registers per SM still leaves room for two 256-invocation workgroups; to confirm on
// hardware with `bench_rules --device gpu --gemm 4096`).
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
// B) and sixteen vector FMAs. One buffer of workgroup memory: two barriers per K step. (WIDE_K =
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

// This invocation's share of the next K step's slices, fetched from global memory
// before the current step's arithmetic and written to workgroup memory after it, as in
// gemm_tile.wgsl: WIDE_VECS vec4s per factor, or on the scalar path WIDE_SCALARS floats
// packed four to a vec4.
var<private> wide_next_a: array<vec4<f32>, WIDE_VECS>;
var<private> wide_next_b: array<vec4<f32>, WIDE_VECS>;

// Where scalar load `e` of the A slice goes: (row i, k-row kk). Walks the stored
// matrix along its rows so consecutive invocations read consecutive addresses.
fn wide_a_slot(e: u32) -> vec2<u32> {
    if (p.trans_a != 0u) {
        return vec2<u32>(e % WIDE_M, e / WIDE_M);
    }
    return vec2<u32>(e / WIDE_K, e % WIDE_K);
}

// Where scalar load `e` of the B slice goes: (column j, k-row kk).
fn wide_b_slot(e: u32) -> vec2<u32> {
    if (p.trans_b != 0u) {
        return vec2<u32>(e / WIDE_K, e % WIDE_K);
    }
    return vec2<u32>(e % WIDE_N, e / WIDE_N);
}

// Scalar path of the A slice.
fn wide_fetch_a(row0: u32, k0: u32, flat: u32) {
    for (var r = 0u; r < WIDE_SCALARS; r++) {
        let slot = wide_a_slot(flat + r * WIDE_THREADS);
        let gi = row0 + slot.x;
        let gk = k0 + slot.y;
        var v = 0.0;
        if (gi < p.m && gk < p.k) {
            if (p.trans_a == 0u) {
                v = a_at(p.a_off + gi * p.lda + gk);
            } else {
                v = a_at(p.a_off + gk * p.lda + gi);
            }
        }
        wide_next_a[r / 4u][r % 4u] = v;
    }
}

fn wide_commit_a(flat: u32) {
    for (var r = 0u; r < WIDE_SCALARS; r++) {
        let slot = wide_a_slot(flat + r * WIDE_THREADS);
        wide_a[slot.y * WIDE_Q + slot.x / 4u][slot.x % 4u] = wide_next_a[r / 4u][r % 4u];
    }
}

// Scalar path of the B slice.
fn wide_fetch_b(col0: u32, k0: u32, flat: u32) {
    for (var r = 0u; r < WIDE_SCALARS; r++) {
        let slot = wide_b_slot(flat + r * WIDE_THREADS);
        let gj = col0 + slot.x;
        let gk = k0 + slot.y;
        var v = 0.0;
        if (gk < p.k && gj < p.n) {
            if (p.trans_b == 0u) {
                v = b_at(p.b_off + gk * p.ldb + gj);
            } else {
                v = b_at(p.b_off + gj * p.ldb + gk);
            }
        }
        wide_next_b[r / 4u][r % 4u] = v;
    }
}

fn wide_commit_b(flat: u32) {
    for (var r = 0u; r < WIDE_SCALARS; r++) {
        let slot = wide_b_slot(flat + r * WIDE_THREADS);
        wide_b[slot.y * WIDE_Q + slot.x / 4u][slot.x % 4u] = wide_next_b[r / 4u][r % 4u];
    }
}

// Where vec4 load `e` of a run of 4 consecutive k goes in its slice: the vec4 `x` of
// the first of the four k-rows it spreads over (WIDE_Q apart) and the lane `y` there.
fn wide_k_run_slot(e: u32) -> vec2<u32> {
    let row = e / WIDE_KQ;
    return vec2<u32>(4u * (e % WIDE_KQ) * WIDE_Q + row / 4u, row % 4u);
}

// Vector path of the A slice: two aligned vec4s per invocation.
fn wide_fetch_a_vec(row0: u32, k0: u32, flat: u32) {
    for (var r = 0u; r < WIDE_VECS; r++) {
        let e = flat + r * WIDE_THREADS;
        var v = vec4<f32>(0.0);
        if (p.trans_a == 0u) {
            // A is m x k: runs go along k, 4 per slice row; consecutive invocations
            // read consecutive runs of a row.
            let gi = row0 + e / WIDE_KQ;
            let gk = k0 + 4u * (e % WIDE_KQ);
            if (gi < p.m && gk < p.k) {
                let at = (p.a_off + gi * p.lda + gk) / 4u;
                v = select(vec4<f32>(0.0), a_vec[at], wide_lanes(gk, p.k));
            }
        } else {
            // A is stored k x m: runs go along m, already the layout of the slice.
            let gi = row0 + 4u * (e % WIDE_Q);
            let gk = k0 + e / WIDE_Q;
            if (gk < p.k && gi < p.m) {
                let at = (p.a_off + gk * p.lda + gi) / 4u;
                v = select(vec4<f32>(0.0), a_vec[at], wide_lanes(gi, p.m));
            }
        }
        wide_next_a[r] = v;
    }
}

fn wide_commit_a_vec(flat: u32) {
    for (var r = 0u; r < WIDE_VECS; r++) {
        let e = flat + r * WIDE_THREADS;
        let v = wide_next_a[r];
        if (p.trans_a == 0u) {
            // The 4 k of the run go to four k-rows of the slice.
            let at = wide_k_run_slot(e);
            wide_a[at.x][at.y] = v.x;
            wide_a[at.x + WIDE_Q][at.y] = v.y;
            wide_a[at.x + 2u * WIDE_Q][at.y] = v.z;
            wide_a[at.x + 3u * WIDE_Q][at.y] = v.w;
        } else {
            // A run along m is already a vec4 of workgroup memory: load e is slot e.
            wide_a[e] = v;
        }
    }
}

// Vector path of the B slice: two aligned vec4s per invocation.
fn wide_fetch_b_vec(col0: u32, k0: u32, flat: u32) {
    for (var r = 0u; r < WIDE_VECS; r++) {
        let e = flat + r * WIDE_THREADS;
        var v = vec4<f32>(0.0);
        if (p.trans_b == 0u) {
            // B is k x n: runs go along n, already the layout of the slice.
            let gj = col0 + 4u * (e % WIDE_Q);
            let gk = k0 + e / WIDE_Q;
            if (gk < p.k && gj < p.n) {
                let at = (p.b_off + gk * p.ldb + gj) / 4u;
                v = select(vec4<f32>(0.0), b_vec[at], wide_lanes(gj, p.n));
            }
        } else {
            // B is stored n x k: runs go along k, 4 per slice column.
            let gj = col0 + e / WIDE_KQ;
            let gk = k0 + 4u * (e % WIDE_KQ);
            if (gk < p.k && gj < p.n) {
                let at = (p.b_off + gj * p.ldb + gk) / 4u;
                v = select(vec4<f32>(0.0), b_vec[at], wide_lanes(gk, p.k));
            }
        }
        wide_next_b[r] = v;
    }
}

fn wide_commit_b_vec(flat: u32) {
    for (var r = 0u; r < WIDE_VECS; r++) {
        let e = flat + r * WIDE_THREADS;
        let v = wide_next_b[r];
        if (p.trans_b == 0u) {
            wide_b[e] = v;
        } else {
            let at = wide_k_run_slot(e);
            wide_b[at.x][at.y] = v.x;
            wide_b[at.x + WIDE_Q][at.y] = v.y;
            wide_b[at.x + 2u * WIDE_Q][at.y] = v.z;
            wide_b[at.x + 3u * WIDE_Q][at.y] = v.w;
        }
    }
}

// Fetches this invocation's share of both factors' K step at `k0` into registers.
fn wide_fetch(row0: u32, col0: u32, k0: u32, flat: u32) {
    if (p.vec_a != 0u) {
        wide_fetch_a_vec(row0, k0, flat);
    } else {
        wide_fetch_a(row0, k0, flat);
    }
    if (p.vec_b != 0u) {
        wide_fetch_b_vec(col0, k0, flat);
    } else {
        wide_fetch_b(col0, k0, flat);
    }
}

// Writes the fetched share to workgroup memory.
fn wide_commit(flat: u32) {
    if (p.vec_a != 0u) {
        wide_commit_a_vec(flat);
    } else {
        wide_commit_a(flat);
    }
    if (p.vec_b != 0u) {
        wide_commit_b_vec(flat);
    } else {
        wide_commit_b(flat);
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
    wide_fetch(row0, col0, 0u, flat);
    for (var k0 = 0u; k0 < p.k; k0 += WIDE_K) {
        wide_commit(flat);
        workgroupBarrier();
        // The next step's global loads, issued before this step's arithmetic so their
        // latency overlaps it; the values and the FMA order are as if loaded just in
        // time.
        if (k0 + WIDE_K < p.k) {
            wide_fetch(row0, col0, k0 + WIDE_K, flat);
        }
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
