// One optimizer update of every parameter: a transcription of
// `UpdateStep::apply` (src/optim.rs), element by element.

struct Params {
    param_off: u32,
    grad_off: u32,
    s0_off: u32,
    s1_off: u32,
    len: u32,
    // 0 SGD (with momentum when momentum != 0), 1 Adam.
    kind: u32,
    nesterov: u32,
    _pad0: u32,
    // SGD: lr. Adam: step_size = lr / (1 - beta1^t).
    lr: f32,
    // SGD: momentum. Adam: beta1.
    momentum: f32,
    beta2: f32,
    eps: f32,
    weight_decay: f32,
    inv_sqrt_correction2: f32,
    _pad1: u32,
    _pad2: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read_write> params: array<f32>;
@group(0) @binding(2) var<storage, read_write> grads: array<f32>;
@group(0) @binding(3) var<storage, read_write> s0: array<f32>;
@group(0) @binding(4) var<storage, read_write> s1: array<f32>;

@compute @workgroup_size(256)
fn optimizer_step(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
    for (var i = gid.x; i < p.len; i += groups.x * 256u) {
        var w = params[p.param_off + i];
        let g = grads[p.grad_off + i] + p.weight_decay * w;
        if (p.kind == 0u) {
            if (p.momentum == 0.0) {
                w -= p.lr * g;
            } else {
                let v = p.momentum * s0[p.s0_off + i] + g;
                s0[p.s0_off + i] = v;
                var dir = v;
                if (p.nesterov != 0u) {
                    dir = g + p.momentum * v;
                }
                w -= p.lr * dir;
            }
        } else {
            let beta1 = p.momentum;
            let m = beta1 * s0[p.s0_off + i] + (1.0 - beta1) * g;
            let v = p.beta2 * s1[p.s1_off + i] + (1.0 - p.beta2) * g * g;
            s0[p.s0_off + i] = m;
            s1[p.s1_off + i] = v;
            w -= p.lr * m / (sqrt(v) * p.inv_sqrt_correction2 + p.eps);
        }
        params[p.param_off + i] = w;
    }
}
