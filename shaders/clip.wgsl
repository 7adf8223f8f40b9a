// Gradient-norm clipping without a host round trip: `grad_norm` writes the global L2
// norm of the update direction into a device buffer, `grad_scale` then multiplies every
// element by min(1, max_norm / norm) reading that norm on the device.
// A non-finite norm leaves the gradients alone so divergence is still detected.

// `struct Params` comes from src/backend/gpu/blocks.rs.

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read_write> grads: array<f32>;
@group(0) @binding(2) var<storage, read_write> norm: array<f32>;

var<workgroup> partial: array<f32, GROUP>;

// One workgroup: a fixed summation order, so the norm is deterministic.
@compute @workgroup_size(GROUP)
fn grad_norm(@builtin(local_invocation_index) lid: u32) {
    var acc = 0.0;
    for (var i = lid; i < p.len; i += GROUP) {
        let g = grads[p.grad_off + i];
        acc = fma(g, g, acc);
    }
    partial[lid] = acc;
    workgroupBarrier();
    for (var s = GROUP / 2u; s > 0u; s = s / 2u) {
        if (lid < s) {
            partial[lid] += partial[lid + s];
        }
        workgroupBarrier();
    }
    if (lid == 0u) {
        norm[p.norm_off] = sqrt(partial[0]);
    }
}

@compute @workgroup_size(GROUP)
fn grad_scale(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
    let n = norm[p.norm_off];
    // `n == n` and the bound reject NaN and infinity (WGSL has no isinf).
    if (!(n == n && n <= 3.4e38 && n > p.max_norm)) {
        return;
    }
    let scale = p.max_norm / n;
    for (var i = gid.x; i < p.len; i += groups.x * GROUP) {
        grads[p.grad_off + i] *= scale;
    }
}
