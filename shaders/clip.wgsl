// Gradient-norm clipping without a host round trip: `grad_norm` writes the global L2
// norm of the update direction into a device buffer, `grad_scale` then multiplies every
// element by min(1, max_norm / norm) reading that norm on the device.
// A non-finite norm leaves the gradients alone so divergence is still detected.

struct Params {
    grad_off: u32,
    len: u32,
    norm_off: u32,
    max_norm: f32,
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
    _pad3: u32,
    _pad4: u32,
    _pad5: u32,
    _pad6: u32,
    _pad7: u32,
    _pad8: u32,
    _pad9: u32,
    _pad10: u32,
    _pad11: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read_write> grads: array<f32>;
@group(0) @binding(2) var<storage, read_write> norm: array<f32>;

const WG: u32 = 256u;
var<workgroup> partial: array<f32, 256>;

// One workgroup: a fixed summation order, so the norm is deterministic.
@compute @workgroup_size(256)
fn grad_norm(@builtin(local_invocation_index) lid: u32) {
    var acc = 0.0;
    for (var i = lid; i < p.len; i += WG) {
        let g = grads[p.grad_off + i];
        acc = fma(g, g, acc);
    }
    partial[lid] = acc;
    workgroupBarrier();
    for (var s = WG / 2u; s > 0u; s = s / 2u) {
        if (lid < s) {
            partial[lid] += partial[lid + s];
        }
        workgroupBarrier();
    }
    if (lid == 0u) {
        norm[p.norm_off] = sqrt(partial[0]);
    }
}

@compute @workgroup_size(256)
fn grad_scale(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
    let n = norm[p.norm_off];
    // `n == n` and the bound reject NaN and infinity (WGSL has no isinf).
    if (!(n == n && n <= 3.4e38 && n > p.max_norm)) {
        return;
    }
    let scale = p.max_norm / n;
    for (var i = gid.x; i < p.len; i += groups.x * WG) {
        grads[p.grad_off + i] *= scale;
    }
}
