// A batch gathered from a data set stored on the device (src/backend/gather.rs):
// feature-major inputs and one-hot targets of the samples `order` lists.
//
// The stored set is one buffer of words: a 256-entry table of feature values (byte
// codes only), one label per sample, then the features row-major, as byte codes packed
// four to a word (little-endian) or as f32 bit patterns.

// `struct Params` comes from src/backend/gpu/blocks.rs.

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> data: array<u32>;
@group(0) @binding(2) var<storage, read> order: array<u32>;
@group(0) @binding(3) var<storage, read_write> x: array<f32>;
@group(0) @binding(4) var<storage, read_write> targets: array<f32>;

fn feature(s: u32, f: u32) -> f32 {
    let k = s * p.dim + f;
    if (p.bytes == 0u) {
        return bitcast<f32>(data[p.features_off + k]);
    }
    let code = (data[p.features_off + k / 4u] >> (8u * (k % 4u))) & 0xffu;
    return bitcast<f32>(data[p.table_off + code]);
}

// Invocation i writes element i of the stacked [x; targets] (rows dim + classes, one
// column per sample). A listed index past the set gives a zero column, no target.
@compute @workgroup_size(GROUP)
fn gather(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
    let total = (p.dim + p.classes) * p.batch;
    for (var i = gid.x; i < total; i += groups.x * GROUP) {
        let row = i / p.batch;
        let j = i % p.batch;
        let s = order[p.order_off + j];
        let valid = s < p.samples;
        if (row < p.dim) {
            var v = 0.0;
            if (valid) {
                v = feature(s, row);
            }
            x[p.x_off + row * p.batch + j] = v;
        } else {
            let c = row - p.dim;
            let hit = valid && data[p.labels_off + s] == c;
            targets[p.targets_off + c * p.batch + j] = select(0.0, 1.0, hit);
        }
    }
}
