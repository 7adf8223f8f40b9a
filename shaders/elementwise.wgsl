// Element-by-element passes: fill, bias + activation, activation derivative.
// Prefixed with activation.wgsl. Each invocation strides over the region, so any
// length fits a bounded grid.

struct Params {
    // First region (written): element offset and length.
    off0: u32,
    len: u32,
    // Second region (read): element offset.
    off1: u32,
    // Columns of the written region (bias_activation: one bias per row).
    cols: u32,
    // Activation: 0 identity, 1 relu, 2 leaky relu, 3 tanh, 4 sigmoid.
    act: u32,
    value: f32,
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
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read_write> buf0: array<f32>;
@group(0) @binding(2) var<storage, read_write> buf1: array<f32>;

fn stride(groups: vec3<u32>) -> u32 {
    return groups.x * 256u;
}

@compute @workgroup_size(256)
fn fill(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
    for (var i = gid.x; i < p.len; i += stride(groups)) {
        buf0[p.off0 + i] = p.value;
    }
}

// z = f(z + bias[row]); buf0 holds z, buf1 the bias.
@compute @workgroup_size(256)
fn bias_activation(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
    for (var i = gid.x; i < p.len; i += stride(groups)) {
        let at = p.off0 + i;
        buf0[at] = activate(p.act, buf0[at] + buf1[p.off1 + i / p.cols]);
    }
}

// delta *= f'(h); buf0 holds delta, buf1 h.
@compute @workgroup_size(256)
fn activation_grad(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
    for (var i = gid.x; i < p.len; i += stride(groups)) {
        let at = p.off0 + i;
        buf0[at] *= derivative(p.act, buf1[p.off1 + i]);
    }
}
