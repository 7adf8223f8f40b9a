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
    let t = Tile(
        p.m, p.n, p.k,
        p.a_off, p.lda, p.trans_a,
        p.b_off, p.ldb, p.trans_b,
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
