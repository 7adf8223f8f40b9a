//! `ln` and `cos(2π·)` in plain `f32` arithmetic, for the Gaussian noise draw.
//!
//! libm's `logf` and `cosf` are calls the compiler cannot vectorise: with them the
//! Box-Muller draw cost 21 ns a value on a 2-core Xeon, and a weight-mirror epoch spent
//! a fifth of its time in them. Written as bit manipulation and polynomials, a loop of
//! draws vectorises. Every operation is a plain IEEE multiply, add or compare (no fused
//! multiply-add: Rust never contracts on its own), so a loop compiled for AVX2 gives the
//! bits of the scalar loop, and `shaders/elementwise.wgsl` follows the same steps.

use std::f32::consts::{SQRT_2, TAU};

/// `ln(x)` for positive, normal, finite `x`, to a relative 1e-7 (the Cephes `logf`
/// polynomial on a mantissa centred on 1; 8e-8 at worst over the noise's uniforms).
#[inline(always)]
pub(crate) fn ln(x: f32) -> f32 {
    let bits = x.to_bits();
    // x = m * 2^e with m in [1, 2), then folded into [√½, √2).
    let exponent = (bits >> 23) as i32 - 127;
    let m = f32::from_bits((bits & 0x007f_ffff) | 0x3f80_0000);
    let high = m > SQRT_2;
    let m = if high { 0.5 * m } else { m };
    let e = (exponent + high as i32) as f32;
    let f = m - 1.0;
    let z = f * f;
    let mut p = 0.070_376_836;
    for c in [
        -0.115_146_1,
        0.116_769_984,
        -0.124_201_41,
        0.142_493_23,
        -0.166_680_57,
        0.200_007_14,
        -0.249_999_94,
        0.333_333_3,
    ] {
        p = p * f + c;
    }
    // ln 2 split in two (0.693359375 is exact in 9 bits) so e·ln 2 keeps its precision.
    let y = p * f * z + e * -0.000_212_194_44 - 0.5 * z;
    f + y + e * 0.693_359_4
}

/// `cos(2π t)` for `t` in `[0, 1]` (a phase in turns), to an absolute 2e-7.
#[inline(always)]
pub(crate) fn cos_turns(t: f32) -> f32 {
    // cos(2πt) = -cos(2πa) with a = |t - ½| in [0, ½]; past ¼, cos(2πa) = -cos(2π(½ - a)).
    let a = (t - 0.5).abs();
    let far = a > 0.25;
    let x = TAU * if far { 0.5 - a } else { a };
    // Taylor to x¹² on [0, π/2]: the first term left out is below 7e-9 there.
    let z = x * x;
    let mut c = 1.0 / 479_001_600.0;
    for k in [
        -1.0 / 3_628_800.0,
        1.0 / 40_320.0,
        -1.0 / 720.0,
        1.0 / 24.0,
        -0.5,
        1.0,
    ] {
        c = c * z + k;
    }
    if far {
        c
    } else {
        -c
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every value the noise's 24-bit uniforms take, `(k + 1) / 2^24`.
    fn every_unit() -> impl Iterator<Item = f32> {
        (1..=1u32 << 24).map(|k| k as f32 * (1.0 / 16_777_216.0))
    }

    #[test]
    fn ln_is_within_1_5e7_relative_over_every_uniform_and_beyond() {
        let mut worst = 0.0f64;
        let wide = [
            1e-30f32, 1e-10, 0.3, 1.0, 1.5, SQRT_2, 2.0, 10.0, 1e10, 3e38,
        ];
        for x in every_unit().chain(wide) {
            let want = (x as f64).ln();
            let err = (ln(x) as f64 - want).abs() / want.abs().max(1.0);
            worst = worst.max(err);
        }
        assert!(worst < 1.5e-7, "worst relative error {worst:e}");
        assert_eq!(ln(1.0), 0.0);
    }

    #[test]
    fn cos_turns_is_within_3e7_over_every_uniform() {
        let mut worst = 0.0f64;
        for t in every_unit().chain([0.0]) {
            let want = (std::f64::consts::TAU * t as f64).cos();
            worst = worst.max((cos_turns(t) as f64 - want).abs());
        }
        assert!(worst < 3e-7, "worst absolute error {worst:e}");
        assert_eq!(
            [cos_turns(0.0), cos_turns(0.5), cos_turns(1.0)],
            [1.0, -1.0, 1.0]
        );
    }
}
