// C = alpha * op(A) op(B) + beta * C on row-major regions at element offsets.
// Prefixed with gemm_tile.wgsl. One workgroup per 64x64 tile of C.
// `vec_a` / `vec_b` (set by the host when that factor's offset and leading dimension
// are multiples of 4) select the vec4 global-load path for that factor.

struct Params {
    m: u32,
    n: u32,
    k: u32,
    a_off: u32,
    lda: u32,
    trans_a: u32,
    b_off: u32,
    ldb: u32,
    trans_b: u32,
    c_off: u32,
    ldc: u32,
    alpha: f32,
    beta: f32,
    vec_a: u32,
    vec_b: u32,
    _pad: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
// Bound read_write even when only read: the same buffer may hold C and a factor
// (disjoint regions), and wgpu forbids read-only and read-write uses together.
@group(0) @binding(1) var<storage, read_write> c_buf: array<f32>;
@group(0) @binding(2) var<storage, read_write> a_buf: array<f32>;
@group(0) @binding(3) var<storage, read_write> b_buf: array<f32>;
// The buffers of bindings 2 and 3 again, as vec4s (for the vector load path).
@group(0) @binding(4) var<storage, read_write> a_vec: array<vec4<f32>>;
@group(0) @binding(5) var<storage, read_write> b_vec: array<vec4<f32>>;

@compute @workgroup_size(16, 16)
fn gemm(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let t = Tile(
        p.m, p.n, p.k,
        p.a_off, p.lda, p.trans_a,
        p.b_off, p.ldb, p.trans_b,
        NO_COL, p.vec_a, p.vec_b,
    );
    let row0 = wg.y * TILE_M;
    let col0 = wg.x * TILE_N;
    tile_product(t, row0, col0, lid);
    for (var r = 0u; r < 4u; r++) {
        let i = row0 + 4u * lid.y + r;
        for (var c = 0u; c < 4u; c++) {
            let j = col0 + 4u * lid.x + c;
            if (i < p.m && j < p.n) {
                let at = p.c_off + i * p.ldc + j;
                var v = p.alpha * acc_at(r, c);
                // beta == 0 overwrites without reading (C may hold garbage or NaN).
                if (p.beta != 0.0) {
                    v += p.beta * c_buf[at];
                }
                c_buf[at] = v;
            }
        }
    }
}
