// Sign-symmetric feedback: out = scale * |magnitude| * sign(w), sign(0) = 0.
// buf0 holds out, buf1 w, buf2 the magnitudes (unread when has_mag is 0). Each invocation strides over the region, so any length fits.

// `struct Params` comes from src/backend/gpu/blocks.rs.

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read_write> buf0: array<f32>;
@group(0) @binding(2) var<storage, read> buf1: array<f32>;
@group(0) @binding(3) var<storage, read> buf2: array<f32>;

@compute @workgroup_size(GROUP)
fn sign_feedback(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
    for (var i = gid.x; i < p.len; i += groups.x * GROUP) {
        var m = 1.0;
        if p.has_mag != 0u {
            m = abs(buf2[p.off_mag + i]);
        }
        buf0[p.off_out + i] = p.scale * m * sign(buf1[p.off_w + i]);
    }
}
