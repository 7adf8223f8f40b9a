// Shared tile loop of the GEMM family (prepended to gemm.wgsl and layer_grads.wgsl).
//
// A workgroup of 16x16 invocations computes a 64x64 tile of C; each invocation owns a
// 4x4 block of it (rows 4 ty .. 4 ty + 3, columns 4 tx .. 4 tx + 3), kept in four
// vec4 registers. K advances 16 at a time through workgroup memory, where both tiles
// are stored k-major as vec4s so each step of the inner loop is two vector loads and
// four vector FMAs. Every global load is bounds-checked, so any M, N, K and any
// element offset works; out-of-range elements read as 0.
//
// The module that includes this declares `a_buf` and `b_buf`.

const TILE_M: u32 = 64u;
const TILE_N: u32 = 64u;
const TILE_K: u32 = 16u;
const THREADS: u32 = 256u;
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
}

// Stored k-major: tile_a[kk * 16 + i / 4][i % 4] = op(A)[row0 + i, k0 + kk].
var<workgroup> tile_a: array<vec4<f32>, 256>;
// tile_b[kk * 16 + j / 4][j % 4] = op(B)[k0 + kk, col0 + j].
var<workgroup> tile_b: array<vec4<f32>, 256>;
// This invocation's outputs: acc_r[c] = C[4 ty + r, 4 tx + c] (before alpha/beta).
var<private> acc0: vec4<f32>;
var<private> acc1: vec4<f32>;
var<private> acc2: vec4<f32>;
var<private> acc3: vec4<f32>;

fn load_a(t: Tile, row0: u32, k0: u32, flat: u32) {
    for (var r = 0u; r < 4u; r++) {
        let e = flat + r * THREADS;
        // Walk the stored matrix along its rows so consecutive invocations read
        // consecutive addresses.
        var i = e / TILE_K;
        var kk = e % TILE_K;
        if (t.trans_a != 0u) {
            i = e % TILE_M;
            kk = e / TILE_M;
        }
        let gi = row0 + i;
        let gk = k0 + kk;
        var v = 0.0;
        if (gi < t.m && gk < t.k) {
            if (t.trans_a == 0u) {
                v = a_buf[t.a_off + gi * t.lda + gk];
            } else {
                v = a_buf[t.a_off + gk * t.lda + gi];
            }
        }
        tile_a[kk * 16u + i / 4u][i % 4u] = v;
    }
}

fn load_b(t: Tile, col0: u32, k0: u32, flat: u32) {
    for (var r = 0u; r < 4u; r++) {
        let e = flat + r * THREADS;
        var j = e % TILE_N;
        var kk = e / TILE_N;
        if (t.trans_b != 0u) {
            j = e / TILE_K;
            kk = e % TILE_K;
        }
        let gj = col0 + j;
        let gk = k0 + kk;
        var v = 0.0;
        if (gk < t.k) {
            if (gj == t.ones_col) {
                v = 1.0;
            } else if (gj < t.n) {
                if (t.trans_b == 0u) {
                    v = b_buf[t.b_off + gk * t.ldb + gj];
                } else {
                    v = b_buf[t.b_off + gj * t.ldb + gk];
                }
            }
        }
        tile_b[kk * 16u + j / 4u][j % 4u] = v;
    }
}

// Accumulates this invocation's block of the tile at (row0, col0) into acc0..acc3.
// Must be called by the whole workgroup (it synchronises).
fn tile_product(t: Tile, row0: u32, col0: u32, lid: vec3<u32>) {
    acc0 = vec4<f32>(0.0);
    acc1 = vec4<f32>(0.0);
    acc2 = vec4<f32>(0.0);
    acc3 = vec4<f32>(0.0);
    let flat = lid.y * 16u + lid.x;
    for (var k0 = 0u; k0 < t.k; k0 += TILE_K) {
        load_a(t, row0, k0, flat);
        load_b(t, col0, k0, flat);
        workgroupBarrier();
        for (var kk = 0u; kk < TILE_K; kk++) {
            let a = tile_a[kk * 16u + lid.y];
            let b = tile_b[kk * 16u + lid.x];
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
