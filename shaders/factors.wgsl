// Scalar loads of the GEMM family's factors, which are bound once each as
// `array<vec4<f32>>` (`a_vec`, `b_vec`) for the vec4 load path: element `i` is lane
// `i % 4` of vec4 `i / 4`. Bindings start at 16-byte multiples, so this is the same
// float the scalar array would hold.

fn a_at(i: u32) -> f32 {
    return a_vec[i >> 2u][i & 3u];
}

fn b_at(i: u32) -> f32 {
    return b_vec[i >> 2u][i & 3u];
}
