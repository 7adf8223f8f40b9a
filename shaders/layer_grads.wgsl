// Every layer's parameter gradients in ONE dispatch: workgroup_id.z is the layer.
// Prefixed with gemm_tile.wgsl and factors.wgsl.
//
// grad_W = alpha delta input^T + beta grad_W (outputs x inputs) and grad_b = alpha
// (row sums of delta) + beta grad_b, the old values read only when beta != 0: the
// input is read as if it had one more row of ones, so the bias gradient is just
// column `inputs` of an outputs x (inputs + 1) product. All deltas share one buffer,
// all activations another, all gradients a third (weights and biases in one binding
// when they share a buffer); the table gives each layer's offsets, shape and scales.
// The grid is the largest layer's; workgroups outside a smaller layer's extent return
// at once. Each layer's `flags` pick the vec4 global-load path for its delta (bit 0)
// and its input (bit 1), set by the host when that region's offset and the batch
// (both factors' leading dimension) are multiples of 4; bit 2 is `BIAS_WITH_WEIGHTS`.

// `struct Layer` comes from src/backend/gpu/blocks.rs.

struct Table {
    count: u32,
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
    layers: array<Layer, 64>,
}

@group(0) @binding(0) var<uniform> table: Table;
// Weight gradients; with `BIAS_WITH_WEIGHTS` set in a layer's flags, its bias gradient
// too (the trainer's gradient arena holds both: one binding, so the two writable
// ranges cannot overlap).
@group(0) @binding(1) var<storage, read_write> grad_w: array<f32>;
// Deltas and inputs as vec4s, for both load paths (see `factors.wgsl`).
@group(0) @binding(2) var<storage, read> a_vec: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read> b_vec: array<vec4<f32>>;
// Bias gradients kept in another buffer than the weights'.
@group(0) @binding(4) var<storage, read_write> grad_b: array<f32>;

// `BIAS_WITH_WEIGHTS` (a flag bit) comes from src/backend/gpu/blocks.rs.

@compute @workgroup_size(16, 16)
fn layer_grads(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    if (wg.z >= table.count) {
        return;
    }
    let l = table.layers[wg.z];
    let row0 = wg.y * TILE_M;
    let col0 = wg.x * TILE_N;
    // Uniform across the workgroup, so returning before the barriers is allowed.
    if (row0 >= l.outputs || col0 > l.inputs) {
        return;
    }
    // delta (outputs x batch) times input^T (batch x inputs), plus the ones column.
    let t = Tile(
        l.outputs, l.inputs, l.batch,
        l.delta_off, l.batch, 0u,
        l.input_off, l.batch, 1u,
        l.inputs, l.flags & 1u, (l.flags >> 1u) & 1u,
    );
    tile_product(t, row0, col0, lid);
    for (var r = 0u; r < 4u; r++) {
        let i = row0 + 4u * lid.y + r;
        for (var c = 0u; c < 4u; c++) {
            let j = col0 + 4u * lid.x + c;
            if (i < l.outputs) {
                if (j < l.inputs) {
                    let at = l.grad_w_off + i * l.inputs + j;
                    // beta == 0 overwrites without reading (the old values may be NaN).
                    var v = l.alpha * acc_at(r, c);
                    if (l.beta != 0.0) {
                        v += l.beta * grad_w[at];
                    }
                    grad_w[at] = v;
                } else if (j == l.inputs) {
                    var v = l.alpha * acc_at(r, c);
                    if ((l.flags & BIAS_WITH_WEIGHTS) != 0u) {
                        if (l.beta != 0.0) {
                            v += l.beta * grad_w[l.grad_b_off + i];
                        }
                        grad_w[l.grad_b_off + i] = v;
                    } else {
                        if (l.beta != 0.0) {
                            v += l.beta * grad_b[l.grad_b_off + i];
                        }
                        grad_b[l.grad_b_off + i] = v;
                    }
                }
            }
        }
    }
}
