// Element-by-element passes: fill, bias + activation, activation derivative, scaled
// sums (axpby) and counter-based Gaussian and uniform noise.
// Prefixed with activation.wgsl. Each invocation strides over the region, so any
// length fits a bounded grid.

// `struct Params` comes from src/backend/gpu/blocks.rs.

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read_write> buf0: array<f32>;
@group(0) @binding(2) var<storage, read> buf1: array<f32>;

fn stride(groups: vec3<u32>) -> u32 {
    return groups.x * GROUP;
}

@compute @workgroup_size(GROUP)
fn fill(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
    for (var i = gid.x; i < p.len; i += stride(groups)) {
        buf0[p.off0 + i] = p.value;
    }
}

// z = f(z + bias[row]); buf0 holds z, buf1 the bias.
@compute @workgroup_size(GROUP)
fn bias_activation(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
    for (var i = gid.x; i < p.len; i += stride(groups)) {
        let at = p.off0 + i;
        buf0[at] = activate(p.act, buf0[at] + buf1[p.off1 + i / p.cols]);
    }
}

// delta *= f'(h); buf0 holds delta, buf1 h.
@compute @workgroup_size(GROUP)
fn activation_grad(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
    for (var i = gid.x; i < p.len; i += stride(groups)) {
        let at = p.off0 + i;
        buf0[at] *= derivative(p.act, buf1[p.off1 + i]);
    }
}

// y = alpha * x + beta * y; buf0 holds y, buf1 x.
@compute @workgroup_size(GROUP)
fn axpby(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
    for (var i = gid.x; i < p.len; i += stride(groups)) {
        let at = p.off0 + i;
        let scaled = p.value * buf1[p.off1 + i];
        if (p.beta == 0.0) {
            buf0[at] = scaled;
        } else {
            buf0[at] = scaled + p.beta * buf0[at];
        }
    }
}

// The PCG output hash (as `backend::elementwise::host::pcg`).
fn pcg(v: u32) -> u32 {
    let state = v * 747796405u + 2891336453u;
    let word = ((state >> ((state >> 28u) + 4u)) ^ state) * 277803737u;
    return (word >> 22u) ^ word;
}

// A uniform value in (0, 1] from 24 random bits.
fn unit(bits: u32) -> f32 {
    return f32((bits >> 8u) + 1u) * (1.0 / 16777216.0);
}

// std * N(0, 1) into (or added to) buf0; element i depends only on (seed, i).
@compute @workgroup_size(GROUP)
fn noise(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
    let key = pcg(p.seed);
    for (var i = gid.x; i < p.len; i += stride(groups)) {
        let u1 = unit(pcg(key ^ pcg(i * 2u)));
        let u2 = unit(pcg(key ^ pcg(i * 2u + 1u)));
        let n = p.value * (sqrt(-2.0 * log(u1)) * cos(6.2831855 * u2));
        let at = p.off0 + i;
        if (p.accumulate != 0u) {
            buf0[at] += n;
        } else {
            buf0[at] = n;
        }
    }
}

// lo + (hi - lo) * U(0, 1] into (or added to) buf0 (lo = p.value, hi = p.beta); element
// i depends only on (seed, i), as `backend::elementwise::host::uniform`.
@compute @workgroup_size(GROUP)
fn uniform_noise(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
    let key = pcg(p.seed);
    for (var i = gid.x; i < p.len; i += stride(groups)) {
        let u = p.value + (p.beta - p.value) * unit(pcg(key ^ pcg(i)));
        let at = p.off0 + i;
        if (p.accumulate != 0u) {
            buf0[at] += u;
        } else {
            buf0[at] = u;
        }
    }
}
