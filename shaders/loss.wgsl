// Output error and loss statistics of a batch, in one workgroup.
//
// Invocation t handles samples t, t + GROUP, ...: it writes their error columns and
// keeps its loss and correct-count sums; a fixed-order tree reduction then adds the
// workgroup's totals to the three stats accumulators. No atomics, so the result is
// deterministic.

// `struct Params` comes from src/backend/gpu/blocks.rs.

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> outputs: array<f32>;
@group(0) @binding(2) var<storage, read> targets: array<f32>;
@group(0) @binding(3) var<storage, read_write> grad: array<f32>;
@group(0) @binding(4) var<storage, read_write> stats: array<f32>;

var<workgroup> loss_part: array<f32, GROUP>;
var<workgroup> correct_part: array<f32, GROUP>;

// Feature-major: class k of sample j sits at k * batch + j.
fn y(k: u32, j: u32) -> f32 {
    return outputs[p.out_off + k * p.batch + j];
}

fn t(k: u32, j: u32) -> f32 {
    return targets[p.target_off + k * p.batch + j];
}

// Loss of sample j; writes its error column, scaled for the batch mean.
fn sample_loss(j: u32) -> f32 {
    let scale = 1.0 / f32(p.batch);
    var loss = 0.0;
    if (p.kind == 0u) {
        var m = y(0u, j);
        for (var k = 1u; k < p.classes; k++) {
            m = max(m, y(k, j));
        }
        var sum = 0.0;
        for (var k = 0u; k < p.classes; k++) {
            sum += exp(y(k, j) - m);
        }
        let log_sum = log(sum);
        for (var k = 0u; k < p.classes; k++) {
            let log_p = y(k, j) - m - log_sum;
            loss -= t(k, j) * log_p;
            grad[p.grad_off + k * p.batch + j] = scale * (exp(log_p) - t(k, j));
        }
    } else {
        let inv_k = 1.0 / f32(p.classes);
        for (var k = 0u; k < p.classes; k++) {
            let d = y(k, j) - t(k, j);
            loss += d * d * inv_k;
            grad[p.grad_off + k * p.batch + j] = scale * 2.0 * d * inv_k;
        }
    }
    return loss;
}

// Index of the first largest value of column j of `outputs` or `targets`.
fn argmax(of_targets: bool, j: u32) -> u32 {
    var best = 0u;
    // Start below everything, as the CPU does (NaN never wins).
    var best_v = p.lowest;
    for (var k = 0u; k < p.classes; k++) {
        var v = y(k, j);
        if (of_targets) {
            v = t(k, j);
        }
        if (v > best_v) {
            best = k;
            best_v = v;
        }
    }
    return best;
}

@compute @workgroup_size(GROUP)
fn loss_grad(@builtin(local_invocation_index) lid: u32) {
    var loss = 0.0;
    var correct = 0.0;
    for (var j = lid; j < p.batch; j += GROUP) {
        loss += sample_loss(j);
        correct += select(0.0, 1.0, argmax(false, j) == argmax(true, j));
    }
    loss_part[lid] = loss;
    correct_part[lid] = correct;
    workgroupBarrier();
    for (var half = GROUP / 2u; half > 0u; half /= 2u) {
        if (lid < half) {
            loss_part[lid] += loss_part[lid + half];
            correct_part[lid] += correct_part[lid + half];
        }
        workgroupBarrier();
    }
    if (lid == 0u) {
        stats[p.stats_off] += loss_part[0];
        stats[p.stats_off + 1u] += correct_part[0];
        stats[p.stats_off + 2u] += f32(p.batch);
    }
}
