// The spatial operations of conv nets (see src/backend/spatial.rs for the layout and
// the host reference every kernel mirrors): im2col, col2im, pool, unpool.
//
// Images are feature-major `[C·H·W, N]`: element (c, y, x, n) at ((c·H + y)·W + x)·N + n.
// Patches are `[C·k·k, OH·OW·N]`: row (c·k + ky)·k + kx, column (oy·OW + ox)·N + n.
// Pooled maps are `[C·OH·OW, N]`, like images of OH x OW.
//
// Every kernel is a GATHER: one invocation per element it writes, which it overwrites,
// so no two invocations touch the same element and nothing needs atomics. Where an
// element sums several terms it adds them in the host reference's order, so the sums
// round the same way. Each invocation strides over the elements, so any length fits a
// bounded grid (like elementwise.wgsl).
//
// Bindings: buf0 the written region, buf1 the main input, buf2 the argmax (pool: written
// by max, read by max-at; unpool: read by both max modes; otherwise unused). The input
// is declared `read`; the host redeclares it `read_write` for a dispatch whose output
// lies in the same buffer (a training step keeps a layer's input, output and saved
// argmax in one arena), with ranges that do not overlap.

// `struct Params` comes from src/backend/gpu/blocks.rs.

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read_write> buf0: array<f32>;
@group(0) @binding(2) var<storage, read> buf1: array<f32>;
@group(0) @binding(3) var<storage, read_write> buf2: array<f32>;

const MODE_MAX: u32 = 0u;
const MODE_MAX_AT: u32 = 1u;
const MODE_AVG: u32 = 2u;

fn stride(groups: vec3<u32>) -> u32 {
    return groups.x * GROUP;
}

// The image row (or column) window position `o` covers at offset `k`, or `size` when
// that falls in the padding (the host's `Window::source`).
fn source(o: u32, k: u32, size: u32) -> u32 {
    let i = o * p.stride + k;
    if (i < p.padding || i - p.padding >= size) {
        return size;
    }
    return i - p.padding;
}

// The window position whose offset `k` covers image row (or column) `i`, or `out`
// when none does (`i + padding - k` must be a multiple of the stride, inside the map).
fn covering(i: u32, k: u32, out: u32) -> u32 {
    let t = i + p.padding;
    if (t < k || (t - k) % p.stride != 0u || (t - k) / p.stride >= out) {
        return out;
    }
    return (t - k) / p.stride;
}

// Whether `v` is a NaN, from its bits: WGSL lets a compiler assume floats are never
// NaN, so a float comparison cannot be trusted to tell.
fn is_nan(v: f32) -> bool {
    return (bitcast<u32>(v) & 0x7fffffffu) > 0x7f800000u;
}

// Element (c, y, x, n) of the image bound at buf1.
fn image_at(c: u32, y: u32, x: u32, n: u32) -> f32 {
    return buf1[p.off1 + ((c * p.height + y) * p.width + x) * p.batch + n];
}

// buf0 (patches) from buf1 (image): one invocation per patch element, zero in the
// padding.
@compute @workgroup_size(GROUP)
fn im2col(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
    let k = p.kernel;
    let cols = p.out_h * p.out_w * p.batch;
    for (var i = gid.x; i < p.len; i += stride(groups)) {
        let row = i / cols;
        let col = i % cols;
        let n = col % p.batch;
        let pos = col / p.batch;
        let c = row / (k * k);
        let y = source(pos / p.out_w, row / k % k, p.height);
        let x = source(pos % p.out_w, row % k, p.width);
        var v = 0.0;
        if (y < p.height && x < p.width) {
            v = image_at(c, y, x, n);
        }
        buf0[p.off0 + i] = v;
    }
}

// buf0 (image, overwritten) from buf1 (patches): one invocation per image element,
// summing the patch entries that map to it in the host's order (ky, then kx).
@compute @workgroup_size(GROUP)
fn col2im(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
    let k = p.kernel;
    let cols = p.out_h * p.out_w * p.batch;
    for (var i = gid.x; i < p.len; i += stride(groups)) {
        let n = i % p.batch;
        let pixel = i / p.batch;
        let x = pixel % p.width;
        let y = pixel / p.width % p.height;
        let c = pixel / (p.width * p.height);
        var sum = 0.0;
        for (var ky = 0u; ky < k; ky++) {
            let oy = covering(y, ky, p.out_h);
            if (oy == p.out_h) {
                continue;
            }
            for (var kx = 0u; kx < k; kx++) {
                let ox = covering(x, kx, p.out_w);
                if (ox == p.out_w) {
                    continue;
                }
                let row = (c * k + ky) * k + kx;
                sum += buf1[p.off1 + row * cols + (oy * p.out_w + ox) * p.batch + n];
            }
        }
        buf0[p.off0 + i] = sum;
    }
}

// buf0 (pooled) from buf1 (image): one invocation per output element. Max writes the
// winning window offset ky·k + kx to buf2 (first maximum wins; a NaN wins over
// anything before it); max-at reads it there; average sums the window, padding
// counted as zeros, and scales by 1 / k².
@compute @workgroup_size(GROUP)
fn pool(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
    let k = p.kernel;
    for (var i = gid.x; i < p.len; i += stride(groups)) {
        let n = i % p.batch;
        let pos = i / p.batch;
        let ox = pos % p.out_w;
        let oy = pos / p.out_w % p.out_h;
        let c = pos / (p.out_w * p.out_h);
        if (p.mode == MODE_MAX_AT) {
            // The host's `argmax as usize` (saturating), then `at(off / k, off % k)`.
            let off = u32(max(buf2[p.off2 + i], 0.0));
            let y = source(oy, off / k, p.height);
            let x = source(ox, off % k, p.width);
            var v = 0.0;
            if (y < p.height && x < p.width) {
                v = image_at(c, y, x, n);
            }
            buf0[p.off0 + i] = v;
            continue;
        }
        var sum = 0.0;
        var best = 0.0;
        var best_off = 0u;
        var found = false;
        for (var ky = 0u; ky < k; ky++) {
            let y = source(oy, ky, p.height);
            for (var kx = 0u; kx < k; kx++) {
                let x = source(ox, kx, p.width);
                let inside = y < p.height && x < p.width;
                var v = 0.0;
                if (inside) {
                    v = image_at(c, y, x, n);
                }
                sum += v;
                // v > best is only asked of two numbers (a NaN best stays unless
                // another NaN comes), so no NaN comparison semantics are relied on.
                if (inside && (!found || is_nan(v) || (!is_nan(best) && v > best))) {
                    best = v;
                    best_off = ky * k + kx;
                    found = true;
                }
            }
        }
        if (p.mode == MODE_AVG) {
            buf0[p.off0 + i] = sum * p.scale;
        } else {
            buf0[p.off0 + i] = best;
            buf2[p.off2 + i] = f32(best_off);
        }
    }
}

// buf0 (input gradient, overwritten) from buf1 (output gradient): one invocation per
// input element, gathering over the windows that cover it in the host's order (oy,
// then ox): the window's whole gradient where its recorded maximum (buf2) is this
// element, or its gradient / k² for average pooling.
@compute @workgroup_size(GROUP)
fn unpool(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
    let k = p.kernel;
    for (var i = gid.x; i < p.len; i += stride(groups)) {
        let n = i % p.batch;
        let pixel = i / p.batch;
        let x = pixel % p.width;
        let y = pixel / p.width % p.height;
        let c = pixel / (p.width * p.height);
        var sum = 0.0;
        // Windows oy with oy·s ≤ y + padding < oy·s + k, ascending; ky = y + padding - oy·s.
        let ty = y + p.padding;
        let oy_end = min(ty / p.stride + 1u, p.out_h);
        var oy0 = 0u;
        if (ty >= k) {
            oy0 = (ty - k) / p.stride + 1u;
        }
        let tx = x + p.padding;
        let ox_end = min(tx / p.stride + 1u, p.out_w);
        var ox0 = 0u;
        if (tx >= k) {
            ox0 = (tx - k) / p.stride + 1u;
        }
        for (var oy = oy0; oy < oy_end; oy++) {
            let ky = ty - oy * p.stride;
            for (var ox = ox0; ox < ox_end; ox++) {
                let kx = tx - ox * p.stride;
                let o = ((c * p.out_h + oy) * p.out_w + ox) * p.batch + n;
                if (p.mode == MODE_AVG) {
                    sum += buf1[p.off1 + o] * p.scale;
                } else if (u32(max(buf2[p.off2 + o], 0.0)) == ky * k + kx) {
                    // The host also adds 0 for the windows whose maximum is elsewhere;
                    // a sum that starts at +0 is unchanged by that, so it is skipped.
                    sum += buf1[p.off1 + o];
                }
            }
        }
        buf0[p.off0 + i] = sum;
    }
}
