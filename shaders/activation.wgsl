// The activation functions and their derivatives, shared by the elementwise kernels
// and the GEMM kernels' fused epilogue (prepended to the elementwise module and to
// both GEMM modules).
// Activation codes: the ACT_* constants (src/backend/gpu/blocks.rs).

const LEAKY_RELU_SLOPE: f32 = 0.01f;

// The crate's tanh (src/activation.rs): a clamped 13/6 rational approximation, same
// coefficients and evaluation order, so both backends agree to rounding.
fn tanh_approx(x: f32) -> f32 {
    let xc = clamp(x, -7.905311f, 7.905311f);
    let x2 = xc * xc;
    var p = -2.7607685e-16f;
    p = p * x2 + 2.000188e-13f;
    p = p * x2 + -8.604672e-11f;
    p = p * x2 + 5.122297e-8f;
    p = p * x2 + 1.4857224e-5f;
    p = p * x2 + 6.372619e-4f;
    p = p * x2 + 4.8935246e-3f;
    p = p * xc;
    var q = 1.1982584e-6f;
    q = q * x2 + 1.1853471e-4f;
    q = q * x2 + 2.2684347e-3f;
    q = q * x2 + 4.893525e-3f;
    // tanh(x) = x for tiny |x|, where the rational form loses relative accuracy.
    return select(p / q, x, abs(x) < 0.0004f);
}

fn activate(act: u32, z: f32) -> f32 {
    switch act {
        case ACT_RELU: { return max(z, 0.0); }
        case ACT_LEAKY_RELU: { return select(LEAKY_RELU_SLOPE * z, z, z > 0.0); }
        case ACT_TANH: { return tanh_approx(z); }
        case ACT_SIGMOID: { return 0.5 + 0.5 * tanh_approx(0.5 * z); }
        default: { return z; }
    }
}

// f'(z) written through the output h = f(z).
fn derivative(act: u32, h: f32) -> f32 {
    switch act {
        case ACT_RELU: { return select(0.0, 1.0, h > 0.0); }
        case ACT_LEAKY_RELU: { return select(LEAKY_RELU_SLOPE, 1.0, h > 0.0); }
        case ACT_TANH: { return 1.0 - h * h; }
        case ACT_SIGMOID: { return h * (1.0 - h); }
        default: { return 1.0; }
    }
}
