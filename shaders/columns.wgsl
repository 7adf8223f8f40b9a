// Per-sample (per-column) passes over feature-major `rows x cols` regions: mean
// squares of each column, columns scaled to a length, columns scaled by factors, the
// one-hot of each column's largest entry.
// One invocation per column for the reductions (a batch is a few hundred columns);
// one per element for the scaling.

// `struct Params` comes from src/backend/gpu/blocks.rs.

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read_write> out: array<f32>;
@group(0) @binding(2) var<storage, read> x: array<f32>;

fn column_sum_squares(j: u32) -> f32 {
    var sum = 0.0;
    for (var i = 0u; i < p.rows; i++) {
        let v = x[p.off_x + i * p.cols + j];
        sum += v * v;
    }
    return sum;
}

@compute @workgroup_size(64)
fn column_mean_squares(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
    for (var j = gid.x; j < p.cols; j += groups.x * 64u) {
        let mean = column_sum_squares(j) / f32(max(p.rows, 1u));
        if (p.accumulate != 0u) {
            out[p.off_out + j] += mean;
        } else {
            out[p.off_out + j] = mean;
        }
    }
}

@compute @workgroup_size(64)
fn column_normalize(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
    for (var j = gid.x; j < p.cols; j += groups.x * 64u) {
        let inv = p.length / (sqrt(column_sum_squares(j)) + p.eps);
        for (var i = 0u; i < p.rows; i++) {
            let at = i * p.cols + j;
            out[p.off_out + at] = x[p.off_x + at] * inv;
        }
    }
}

// out[i, j] *= x[j]: one invocation per element of out.
@compute @workgroup_size(GROUP)
fn column_scale(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
    let len = p.rows * p.cols;
    for (var k = gid.x; k < len; k += groups.x * GROUP) {
        out[p.off_out + k] *= x[p.off_x + k % p.cols];
    }
}

// out[:, j] = one-hot of the first largest entry of x[:, j]: one invocation per column.
@compute @workgroup_size(64)
fn column_argmax_one_hot(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
    for (var j = gid.x; j < p.cols; j += groups.x * 64u) {
        var best = 0u;
        for (var i = 1u; i < p.rows; i++) {
            if (x[p.off_x + i * p.cols + j] > x[p.off_x + best * p.cols + j]) {
                best = i;
            }
        }
        for (var i = 0u; i < p.rows; i++) {
            out[p.off_out + i * p.cols + j] = select(0.0, 1.0, i == best);
        }
    }
}
