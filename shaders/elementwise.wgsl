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

// ln(x) for positive normal x, step for step as `backend::polynomial::ln` (the Cephes
// logf polynomial on a mantissa folded into [sqrt(1/2), sqrt(2))), so the GPU draws the
// CPU's values rather than its own `log`'s.
fn ln_poly(x: f32) -> f32 {
    let bits = bitcast<u32>(x);
    let exponent = i32(bits >> 23u) - 127;
    let m0 = bitcast<f32>((bits & 0x007fffffu) | 0x3f800000u);
    let high = m0 > 1.4142135;
    let m = select(m0, 0.5 * m0, high);
    let e = f32(exponent + select(0, 1, high));
    let f = m - 1.0;
    let z = f * f;
    var p = 0.070376836;
    p = p * f - 0.1151461;
    p = p * f + 0.116769984;
    p = p * f - 0.12420141;
    p = p * f + 0.14249323;
    p = p * f - 0.16668057;
    p = p * f + 0.20000714;
    p = p * f - 0.24999994;
    p = p * f + 0.3333333;
    let y = p * f * z + e * -0.00021219444 - 0.5 * z;
    return f + y + e * 0.6933594;
}

// cos(2 pi t) for t in [0, 1], as `backend::polynomial::cos_turns` (Taylor to x^12 on
// [0, pi/2] after folding the phase).
fn cos_turns(t: f32) -> f32 {
    let a = abs(t - 0.5);
    let far = a > 0.25;
    let x = 6.2831855 * select(a, 0.5 - a, far);
    let z = x * x;
    var c = 1.0 / 479001600.0;
    c = c * z - 1.0 / 3628800.0;
    c = c * z + 1.0 / 40320.0;
    c = c * z - 1.0 / 720.0;
    c = c * z + 1.0 / 24.0;
    c = c * z - 0.5;
    c = c * z + 1.0;
    return select(-c, c, far);
}

// std * N(0, 1) into (or added to) buf0; element i depends only on (seed, i).
@compute @workgroup_size(GROUP)
fn noise(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
    let key = pcg(p.seed);
    for (var i = gid.x; i < p.len; i += stride(groups)) {
        let u1 = unit(pcg(key ^ pcg(i * 2u)));
        let u2 = unit(pcg(key ^ pcg(i * 2u + 1u)));
        let n = p.value * (sqrt(-2.0 * ln_poly(u1)) * cos_turns(u2));
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
