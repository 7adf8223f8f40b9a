// The GEMM for small, medium and skinny products: one workgroup of (TILE / 4) x
// (TILE / 4) invocations per TILE x TILE tile of C, each invocation owning a 4x4 block
// (see gemm_tile.wgsl, which layer_grads.wgsl shares). Compiled twice, as two kernels:
// with TILE = 64 (16x16 invocations) and with TILE = 32 (8x8 invocations, for products
// whose 64x64 grid would leave much of a GPU idle). Prefixed with that `TILE` constant,
// activation.wgsl, gemm_tile.wgsl and gemm_common.wgsl (parameters, bindings,
// alpha/beta and the fused epilogue). Large products go to gemm_wide.wgsl instead; the
// host picks (`gemm_dispatch`).

@compute @workgroup_size(TILE_Q, TILE_Q)
fn gemm(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    // Split over K (`split` > 0): workgroup layer z multiplies the z-th run of `split`
    // k (a multiple of 16, so vec4 alignment holds) and stores its partial product in
    // its own m x n block of C (the host makes C a scratch block and the store plain);
    // gemm_reduce then sums the blocks.
    var k = p.k;
    var a_off = p.a_off;
    var b_off = p.b_off;
    c_base = p.c_off;
    if (p.split != 0u) {
        let k0 = wg.z * p.split;
        k = min(p.split, p.k - k0);
        a_off += select(k0, k0 * p.lda, p.trans_a != 0u);
        b_off += select(k0 * p.ldb, k0, p.trans_b != 0u);
        c_base += wg.z * p.m * p.n;
    }
    let t = Tile(
        p.m, p.n, k,
        a_off, p.lda, p.trans_a,
        b_off, p.ldb, p.trans_b,
        NO_COL, p.vec_a, p.vec_b,
    );
    let row0 = wg.y * TILE_M;
    let col0 = wg.x * TILE_N;
    tile_product(t, row0, col0, lid);
    let i = row0 + 4u * lid.y;
    let j = col0 + 4u * lid.x;
    store_c4(i, j, acc0);
    store_c4(i + 1u, j, acc1);
    store_c4(i + 2u, j, acc2);
    store_c4(i + 3u, j, acc3);
}

// The second half of a split-K product: sums the `slices` partial blocks at `s_off` of
// binding 2 in slice order (so the result does not depend on scheduling), then stores C
// as the unsplit product would (alpha, beta, the epilogue).
@compute @workgroup_size(GROUP)
fn gemm_reduce(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
    c_base = p.c_off;
    let total = p.m * p.n;
    for (var e = gid.x; e < total; e += groups.x * GROUP) {
        var acc = 0.0;
        for (var z = 0u; z < p.slices; z++) {
            acc += a_at(p.s_off + z * total + e);
        }
        store_c(e / p.n, e % p.n, acc);
    }
}
