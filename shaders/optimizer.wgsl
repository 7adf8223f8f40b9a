// One optimizer update of every parameter: a transcription of
// `UpdateStep::apply` (src/optim.rs), element by element.

// `struct Params` comes from src/backend/gpu/blocks.rs.

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read_write> params: array<f32>;
@group(0) @binding(2) var<storage, read> grads: array<f32>;
@group(0) @binding(3) var<storage, read_write> s0: array<f32>;
@group(0) @binding(4) var<storage, read_write> s1: array<f32>;
// The divergence flags (src/backend/divergence.rs): first step with a non-finite
// loss, first step with a non-finite update, that element's index (u32 bit patterns,
// 0 = none).
@group(0) @binding(5) var<storage, read_write> flags: array<f32>;

fn is_finite(v: f32) -> bool {
    return (bitcast<u32>(v) & 0x7f800000u) != 0x7f800000u;
}

fn flag(word: u32) -> u32 {
    return bitcast<u32>(flags[p.flags_off + word]);
}

@compute @workgroup_size(GROUP)
fn optimizer_step(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
    if (p.guarded != 0u) {
        // Every invocation that sees a non-finite loss writes the same step.
        if (!is_finite(flags[p.loss_off]) && flag(0u) == 0u) {
            flags[p.flags_off] = bitcast<f32>(p.step);
        }
        // A flag set by an earlier step (or, in the diverging step, by another
        // invocation: that step's update may stop part way) leaves everything alone.
        if (flag(0u) != 0u || flag(1u) != 0u) {
            return;
        }
    }
    for (var i = gid.x; i < p.len; i += groups.x * GROUP) {
        var w = params[p.param_off + i];
        // Moments: SGD with momentum keeps one, Adam two, plain SGD none.
        let first = p.kind == 1u || p.momentum != 0.0;
        let second = p.kind == 1u;
        var m = 0.0;
        var v = 0.0;
        if (first) {
            m = s0[p.s0_off + i];
        }
        if (second) {
            v = s1[p.s1_off + i];
        }
        let g = grads[p.grad_off + i] + p.weight_decay * w;
        if (p.kind == 0u) {
            if (p.momentum == 0.0) {
                w -= p.lr * g;
            } else {
                m = p.momentum * m + g;
                var dir = m;
                if (p.nesterov != 0u) {
                    dir = g + p.momentum * m;
                }
                w -= p.lr * dir;
            }
        } else {
            m = p.momentum * m + (1.0 - p.momentum) * g;
            v = p.beta2 * v + (1.0 - p.beta2) * g * g;
            w -= p.lr * m / (sqrt(v) * p.inv_sqrt_correction2 + p.eps);
        }
        if (p.guarded != 0u && !is_finite(w)) {
            // Keep the old values; any such element's invocation may win the index.
            flags[p.flags_off + 1u] = bitcast<f32>(p.step);
            flags[p.flags_off + 2u] = bitcast<f32>(p.param_off + i);
            continue;
        }
        params[p.param_off + i] = w;
        if (first) {
            s0[p.s0_off + i] = m;
        }
        if (second) {
            s1[p.s1_off + i] = v;
        }
    }
}
