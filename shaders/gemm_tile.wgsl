// Tile loop shared by the 64x64 and 32x32 GEMM kernels and the grouped weight
// gradients (prepended to gemm.wgsl and layer_grads.wgsl). Large products use
// gemm_wide.wgsl, which follows the same scheme with 128x128 tiles and 8x8 outputs per
// invocation.
//
// The tile size is the module's `TILE` (64 or 32), a constant the host prepends to the
// module source (`module_source` in src/backend/gpu/pipelines.rs); everything below
// derives from it. A workgroup of (TILE / 4) x (TILE / 4) invocations (16x16 at 64,
// 8x8 at 32) computes a TILE x TILE tile of C; each invocation owns a 4x4 block of it
// (rows 4 ty .. 4 ty + 3, columns 4 tx .. 4 tx + 3), kept in four vec4 registers. K
// advances TILE_K = 16 at a time through workgroup memory, where both tiles are
// stored k-major as vec4s so each step of the inner loop is two vector loads and four
// vector FMAs, whatever the tile size.
//
// Why a 32x32 tile: training-step products are often skinny (a 1024x1024 weight times
// a 1024x128 batch has a 1024x128 output: 32 tiles of 64x64), and a GPU with a hundred
// or more compute units needs at least as many workgroups to be busy. The 32x32 tile
// makes four times as many, at the price of twice the loads (global and workgroup
// memory) per FMA, for the host to pick when 64x64 tiles would be too few
// (`HARDWARE_FILL` in src/backend/gpu/kernels.rs). It keeps 4x4 outputs per
// invocation (8x8 invocations, two warps of 32) rather than 2x2 per invocation of
// 16x16: that keeps the inner loop, its vec4 reads of workgroup memory and its FMA
// order, and so the code and the bits, shared with the 64x64 kernel.
//
// Global loads (one TILE x 16 slice of each factor per K step) take one of two paths
// per factor, chosen by the host (`Tile::vec_a`, `Tile::vec_b`: per dispatch in gemm,
// per layer in layer_grads):
// - vector: when the factor's element offset and leading dimension are multiples of 4,
//   every run of 4 floats along the stored matrix's rows that starts at a multiple of 4
//   is 16-byte aligned, and each invocation loads TILE_VECS such runs per factor (1 at
//   64, 2 at 32) as `vec4<f32>` (each factor is bound as `array<vec4<f32>>`; the
//   scalar path reads lanes of it). Runs follow whichever direction is contiguous in memory: k for
//   op(A) = A and for op(B) = B^T, whose vec4s hold 4 consecutive k and are spread over
//   four k-rows of workgroup memory; m for op(A) = A^T and n for op(B) = B, whose
//   vec4s hold 4 consecutive rows (columns) at one k and are stored as they are. Runs
//   outside the matrix are skipped; a run that straddles the end of its dimension
//   (possible only if that dimension were not the leading one) is loaded whole (buffer
//   sizes are rounded up to a multiple of 4 floats, so it stays inside the binding)
//   and its lanes past the end are replaced by 0 with `select`.
// - scalar: otherwise, TILE_SCALARS (4 at 64, 8 at 32) bounds-checked scalar loads per
//   invocation per factor, so any M, N, K and any element offset works.
// Out-of-range elements read as 0 on both paths. Both put the same values in
// workgroup memory and share the inner loop, so results do not depend on the path,
// bit for bit; nor on the tile size (or gemm_wide.wgsl), since every output is the
// same chain of FMAs over k = 0, 1, .. (zero-padded to a multiple of 16).
// Each K step's loads are issued during the previous step's arithmetic (see
// `tile_product`).
//
// Besides `TILE` (prepended by the host), the module that includes this declares
// `a_vec` and `b_vec` (array<vec4<f32>>, read through `factors.wgsl` on the scalar
// path): gemm_common.wgsl for the GEMM, layer_grads.wgsl itself for the gradients
// (which is written for TILE = 64: 16x16 invocations).

const TILE_M: u32 = TILE;
const TILE_N: u32 = TILE;
const TILE_K: u32 = 16u;
// vec4s per k-row of a tile, and invocations per side of the workgroup.
const TILE_Q: u32 = TILE / 4u;
const THREADS: u32 = TILE_Q * TILE_Q;
// Scalar loads per invocation per factor per K step (TILE * TILE_K / THREADS).
const TILE_SCALARS: u32 = TILE * TILE_K / THREADS;
// vec4 loads per invocation per factor per K step.
const TILE_VECS: u32 = TILE_SCALARS / 4u;
// Runs of 4 k per row of a tile, for factors stored k-contiguous.
const TILE_KQ: u32 = TILE_K / 4u;
// `Tile::ones_col` value meaning "no column of ones".
const NO_COL: u32 = 0xffffffffu;

// One product op(A) (m x k) * op(B) (k x n), addressed in its buffers.
struct Tile {
    m: u32,
    n: u32,
    k: u32,
    a_off: u32,
    lda: u32,
    trans_a: u32,
    b_off: u32,
    ldb: u32,
    trans_b: u32,
    // Column of op(B) that reads as all ones: appending it to the input turns the
    // bias gradient (row sums of the delta) into one more output column.
    ones_col: u32,
    // Nonzero: load A (B) through `a_vec` (`b_vec`); the host guarantees that its
    // offset and leading dimension are multiples of 4.
    vec_a: u32,
    vec_b: u32,
}

// Stored k-major: tile_a[kk * TILE_Q + i / 4][i % 4] = op(A)[row0 + i, k0 + kk].
var<workgroup> tile_a: array<vec4<f32>, TILE_Q * TILE_K>;
// tile_b[kk * TILE_Q + j / 4][j % 4] = op(B)[k0 + kk, col0 + j].
var<workgroup> tile_b: array<vec4<f32>, TILE_Q * TILE_K>;
// This invocation's outputs: acc_r[c] = C[4 ty + r, 4 tx + c] (before alpha/beta).
var<private> acc0: vec4<f32>;
var<private> acc1: vec4<f32>;
var<private> acc2: vec4<f32>;
var<private> acc3: vec4<f32>;

// This invocation's share of the next K step's tiles, fetched from global memory
// before the current step's arithmetic and written to workgroup memory after it (see
// `tile_product`): TILE_VECS vec4s per factor, or on the scalar path TILE_SCALARS floats
// packed four to a vec4.
var<private> next_a: array<vec4<f32>, TILE_VECS>;
var<private> next_b: array<vec4<f32>, TILE_VECS>;

// Where scalar load `e` of A's tile goes: (row i, k-row kk). Walks the stored matrix
// along its rows so consecutive invocations read consecutive addresses.
fn a_slot(t: Tile, e: u32) -> vec2<u32> {
    if (t.trans_a != 0u) {
        return vec2<u32>(e % TILE_M, e / TILE_M);
    }
    return vec2<u32>(e / TILE_K, e % TILE_K);
}

// Where scalar load `e` of B's tile goes: (column j, k-row kk).
fn b_slot(t: Tile, e: u32) -> vec2<u32> {
    if (t.trans_b != 0u) {
        return vec2<u32>(e / TILE_K, e % TILE_K);
    }
    return vec2<u32>(e % TILE_N, e / TILE_N);
}

// Scalar path: TILE_SCALARS bounds-checked loads per invocation.
fn fetch_a(t: Tile, row0: u32, k0: u32, flat: u32) {
    for (var r = 0u; r < TILE_SCALARS; r++) {
        let slot = a_slot(t, flat + r * THREADS);
        let gi = row0 + slot.x;
        let gk = k0 + slot.y;
        var v = 0.0;
        if (gi < t.m && gk < t.k) {
            if (t.trans_a == 0u) {
                v = a_at(t.a_off + gi * t.lda + gk);
            } else {
                v = a_at(t.a_off + gk * t.lda + gi);
            }
        }
        next_a[r / 4u][r % 4u] = v;
    }
}

fn commit_a(t: Tile, flat: u32) {
    for (var r = 0u; r < TILE_SCALARS; r++) {
        let slot = a_slot(t, flat + r * THREADS);
        tile_a[slot.y * TILE_Q + slot.x / 4u][slot.x % 4u] = next_a[r / 4u][r % 4u];
    }
}

fn fetch_b(t: Tile, col0: u32, k0: u32, flat: u32) {
    for (var r = 0u; r < TILE_SCALARS; r++) {
        let slot = b_slot(t, flat + r * THREADS);
        let gj = col0 + slot.x;
        let gk = k0 + slot.y;
        var v = 0.0;
        if (gk < t.k) {
            if (gj == t.ones_col) {
                v = 1.0;
            } else if (gj < t.n) {
                if (t.trans_b == 0u) {
                    v = b_at(t.b_off + gk * t.ldb + gj);
                } else {
                    v = b_at(t.b_off + gj * t.ldb + gk);
                }
            }
        }
        next_b[r / 4u][r % 4u] = v;
    }
}

fn commit_b(t: Tile, flat: u32) {
    for (var r = 0u; r < TILE_SCALARS; r++) {
        let slot = b_slot(t, flat + r * THREADS);
        tile_b[slot.y * TILE_Q + slot.x / 4u][slot.x % 4u] = next_b[r / 4u][r % 4u];
    }
}

// Which lanes of the run of 4 starting at index `g` of a dimension of extent `n` lie
// inside it.
fn lanes(g: u32, n: u32) -> vec4<bool> {
    return vec4<u32>(g) + vec4<u32>(0u, 1u, 2u, 3u) < vec4<u32>(n);
}

// Vector path of `fetch_a`: TILE_VECS aligned vec4s per invocation.
fn fetch_a_vec(t: Tile, row0: u32, k0: u32, flat: u32) {
    for (var r = 0u; r < TILE_VECS; r++) {
        let e = flat + r * THREADS;
        var v = vec4<f32>(0.0);
        if (t.trans_a == 0u) {
            // A is m x k: runs go along k, TILE_KQ per tile row; consecutive
            // invocations read consecutive runs of a row.
            let gi = row0 + e / TILE_KQ;
            let gk = k0 + 4u * (e % TILE_KQ);
            if (gi < t.m && gk < t.k) {
                let at = (t.a_off + gi * t.lda + gk) / 4u;
                v = select(vec4<f32>(0.0), a_vec[at], lanes(gk, t.k));
            }
        } else {
            // A is stored k x m: runs go along m.
            let gi = row0 + 4u * (e % TILE_Q);
            let gk = k0 + e / TILE_Q;
            if (gk < t.k && gi < t.m) {
                let at = (t.a_off + gk * t.lda + gi) / 4u;
                v = select(vec4<f32>(0.0), a_vec[at], lanes(gi, t.m));
            }
        }
        next_a[r] = v;
    }
}

// Where vec4 load `e` of a run of 4 consecutive k goes in its tile: the vec4 `x` of
// the first of the four k-rows it spreads over (TILE_Q apart) and the lane `y` there.
fn k_run_slot(e: u32) -> vec2<u32> {
    let row = e / TILE_KQ;
    return vec2<u32>(4u * (e % TILE_KQ) * TILE_Q + row / 4u, row % 4u);
}

fn commit_a_vec(t: Tile, flat: u32) {
    for (var r = 0u; r < TILE_VECS; r++) {
        let e = flat + r * THREADS;
        let v = next_a[r];
        if (t.trans_a == 0u) {
            let at = k_run_slot(e);
            tile_a[at.x][at.y] = v.x;
            tile_a[at.x + TILE_Q][at.y] = v.y;
            tile_a[at.x + 2u * TILE_Q][at.y] = v.z;
            tile_a[at.x + 3u * TILE_Q][at.y] = v.w;
        } else {
            // A run along m is already a vec4 of workgroup memory: load e is slot e.
            tile_a[e] = v;
        }
    }
}

// Vector path of `fetch_b`: TILE_VECS aligned vec4s per invocation.
fn fetch_b_vec(t: Tile, col0: u32, k0: u32, flat: u32) {
    for (var r = 0u; r < TILE_VECS; r++) {
        let e = flat + r * THREADS;
        var v = vec4<f32>(0.0);
        if (t.trans_b == 0u) {
            // B is k x n: runs go along n.
            let gj = col0 + 4u * (e % TILE_Q);
            let gk = k0 + e / TILE_Q;
            if (gk < t.k) {
                if (gj < t.n) {
                    let at = (t.b_off + gk * t.ldb + gj) / 4u;
                    v = select(vec4<f32>(0.0), b_vec[at], lanes(gj, t.n));
                }
                let ones = vec4<u32>(gj) + vec4<u32>(0u, 1u, 2u, 3u) == vec4<u32>(t.ones_col);
                v = select(v, vec4<f32>(1.0), ones);
            }
        } else {
            // B is stored n x k: runs go along k, TILE_KQ per tile column.
            let gj = col0 + e / TILE_KQ;
            let gk = k0 + 4u * (e % TILE_KQ);
            if (gk < t.k) {
                if (gj == t.ones_col) {
                    v = select(vec4<f32>(0.0), vec4<f32>(1.0), lanes(gk, t.k));
                } else if (gj < t.n) {
                    let at = (t.b_off + gj * t.ldb + gk) / 4u;
                    v = select(vec4<f32>(0.0), b_vec[at], lanes(gk, t.k));
                }
            }
        }
        next_b[r] = v;
    }
}

fn commit_b_vec(t: Tile, flat: u32) {
    for (var r = 0u; r < TILE_VECS; r++) {
        let e = flat + r * THREADS;
        let v = next_b[r];
        if (t.trans_b == 0u) {
            // A run along n is already a vec4 of workgroup memory: load e is slot e.
            tile_b[e] = v;
        } else {
            let at = k_run_slot(e);
            tile_b[at.x][at.y] = v.x;
            tile_b[at.x + TILE_Q][at.y] = v.y;
            tile_b[at.x + 2u * TILE_Q][at.y] = v.z;
            tile_b[at.x + 3u * TILE_Q][at.y] = v.w;
        }
    }
}

// Fetches this invocation's share of both factors' K step at `k0` into registers.
fn fetch(t: Tile, row0: u32, col0: u32, k0: u32, flat: u32) {
    if (t.vec_a != 0u) {
        fetch_a_vec(t, row0, k0, flat);
    } else {
        fetch_a(t, row0, k0, flat);
    }
    if (t.vec_b != 0u) {
        fetch_b_vec(t, col0, k0, flat);
    } else {
        fetch_b(t, col0, k0, flat);
    }
}

// Writes the fetched share to workgroup memory.
fn commit(t: Tile, flat: u32) {
    if (t.vec_a != 0u) {
        commit_a_vec(t, flat);
    } else {
        commit_a(t, flat);
    }
    if (t.vec_b != 0u) {
        commit_b_vec(t, flat);
    } else {
        commit_b(t, flat);
    }
}

// Accumulates this invocation's block of the tile at (row0, col0) into acc0..acc3.
// Must be called by the whole workgroup (it synchronises). The next K step's global
// loads are issued before this step's arithmetic (prefetch into registers), so their
// latency overlaps it instead of stalling the workgroup after the barrier; the values
// and the order of the FMAs are the same as loading each step just in time.
fn tile_product(t: Tile, row0: u32, col0: u32, lid: vec3<u32>) {
    acc0 = vec4<f32>(0.0);
    acc1 = vec4<f32>(0.0);
    acc2 = vec4<f32>(0.0);
    acc3 = vec4<f32>(0.0);
    let flat = lid.y * TILE_Q + lid.x;
    fetch(t, row0, col0, 0u, flat);
    for (var k0 = 0u; k0 < t.k; k0 += TILE_K) {
        commit(t, flat);
        workgroupBarrier();
        if (k0 + TILE_K < t.k) {
            fetch(t, row0, col0, k0 + TILE_K, flat);
        }
        for (var kk = 0u; kk < TILE_K; kk++) {
            let a = tile_a[kk * TILE_Q + lid.y];
            let b = tile_b[kk * TILE_Q + lid.x];
            acc0 = fma(vec4<f32>(a.x), b, acc0);
            acc1 = fma(vec4<f32>(a.y), b, acc1);
            acc2 = fma(vec4<f32>(a.z), b, acc2);
            acc3 = fma(vec4<f32>(a.w), b, acc3);
        }
        workgroupBarrier();
    }
}

// Output (r, c) of this invocation's block.
fn acc_at(r: u32, c: u32) -> f32 {
    switch r {
        case 0u: { return acc0[c]; }
        case 1u: { return acc1[c]; }
        case 2u: { return acc2[c]; }
        default: { return acc3[c]; }
    }
}
