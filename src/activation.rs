//! Elementwise activation functions and their derivatives.
//!
//! Every derivative is written in terms of the activation's *output* `h = f(z)`, so a
//! layer only keeps `h` for the backward pass (one buffer per layer, not two).

/// Slope of [`Activation::LeakyRelu`] for negative inputs.
pub const LEAKY_RELU_SLOPE: f32 = 0.01;

/// The nonlinearity applied after a dense layer's affine map.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Activation {
    /// `f(z) = z`; use it for the output layer feeding a softmax cross-entropy loss.
    Identity,
    /// `f(z) = max(z, 0)`.
    Relu,
    /// `f(z) = z` for `z > 0`, else `0.01 z`.
    LeakyRelu,
    /// `f(z) = tanh(z)`.
    Tanh,
    /// `f(z) = 1 / (1 + e^-z)`.
    Sigmoid,
}

impl Activation {
    /// All activations, for tests and command-line parsing.
    pub const ALL: [Activation; 5] = [
        Activation::Identity,
        Activation::Relu,
        Activation::LeakyRelu,
        Activation::Tanh,
        Activation::Sigmoid,
    ];

    /// The short lowercase name used on command lines (`tanh`, `leaky_relu`, ...).
    pub fn name(self) -> &'static str {
        match self {
            Activation::Identity => "identity",
            Activation::Relu => "relu",
            Activation::LeakyRelu => "leaky_relu",
            Activation::Tanh => "tanh",
            Activation::Sigmoid => "sigmoid",
        }
    }

    /// Parses [`Activation::name`] (also accepts `linear` and `leaky-relu`).
    pub fn from_name(name: &str) -> Option<Activation> {
        match name.to_ascii_lowercase().as_str() {
            "identity" | "linear" | "none" => Some(Activation::Identity),
            "relu" => Some(Activation::Relu),
            "leaky_relu" | "leaky-relu" | "leakyrelu" => Some(Activation::LeakyRelu),
            "tanh" => Some(Activation::Tanh),
            "sigmoid" => Some(Activation::Sigmoid),
            _ => None,
        }
    }

    /// `f(z)`.
    #[inline(always)]
    pub fn apply(self, z: f32) -> f32 {
        match self {
            Activation::Identity => z,
            Activation::Relu => z.max(0.0),
            Activation::LeakyRelu => {
                if z > 0.0 {
                    z
                } else {
                    LEAKY_RELU_SLOPE * z
                }
            }
            Activation::Tanh => tanh(z),
            Activation::Sigmoid => 0.5 + 0.5 * tanh(0.5 * z),
        }
    }

    /// `f'(z)` expressed through the output `h = f(z)`.
    #[inline(always)]
    pub fn derivative_from_output(self, h: f32) -> f32 {
        match self {
            Activation::Identity => 1.0,
            Activation::Relu => {
                if h > 0.0 {
                    1.0
                } else {
                    0.0
                }
            }
            Activation::LeakyRelu => {
                if h > 0.0 {
                    1.0
                } else {
                    LEAKY_RELU_SLOPE
                }
            }
            Activation::Tanh => 1.0 - h * h,
            Activation::Sigmoid => h * (1.0 - h),
        }
    }
}

impl std::fmt::Display for Activation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// `tanh` as a clamped rational approximation (13th/6th order), accurate to a few ulp
/// of `f32` and branch-free so loops over it vectorise; `std`'s `tanh` calls libm per
/// element and costs several times more. The GPU shaders use the same formula, so both
/// backends agree to rounding.
#[inline(always)]
pub fn tanh(x: f32) -> f32 {
    // Beyond |x| = 7.9053 tanh rounds to ±1 in f32.
    const CLAMP: f32 = 7.905_311;
    // For tiny |x| the rational form loses relative accuracy; tanh(x) = x there.
    const TINY: f32 = 0.000_4;
    let x_c = x.clamp(-CLAMP, CLAMP);
    let x2 = x_c * x_c;
    // Plain `a * b + c`, not `mul_add`: without the `fma` target feature (the x86-64
    // default) `mul_add` is a libm call per element and the loop stops vectorising.
    let mut p = -2.760_768_5e-16_f32;
    p = p * x2 + 2.000_188e-13;
    p = p * x2 + -8.604_672e-11;
    p = p * x2 + 5.122_297e-8;
    p = p * x2 + 1.485_722_4e-5;
    p = p * x2 + 6.372_619e-4;
    p = p * x2 + 4.893_524_6e-3;
    p *= x_c;
    let mut q = 1.198_258_4e-6_f32;
    q = q * x2 + 1.185_347_1e-4;
    q = q * x2 + 2.268_434_7e-3;
    q = q * x2 + 4.893_525e-3;
    let r = p / q;
    if x.abs() < TINY {
        x
    } else {
        r
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fast_tanh_matches_std_to_float_precision() {
        let mut worst = 0.0f32;
        let mut x = -12.0f32;
        while x < 12.0 {
            worst = worst.max((tanh(x) - x.tanh()).abs());
            x += 0.000_37;
        }
        assert!(worst < 4e-7, "worst abs error {worst}");
        assert_eq!(tanh(0.0), 0.0);
        assert_eq!(tanh(1e-6), 1e-6);
        assert!(tanh(f32::NAN).is_nan());
        assert!((tanh(f32::INFINITY) - 1.0).abs() < 1e-6);
        assert!((tanh(-40.0) + 1.0).abs() < 1e-6);
    }

    #[test]
    fn derivatives_match_central_differences() {
        for act in Activation::ALL {
            for &z in &[-2.5f32, -0.7, 0.3, 1.9] {
                let h = 1e-3f32;
                let numeric = (act.apply(z + h) - act.apply(z - h)) / (2.0 * h);
                let analytic = act.derivative_from_output(act.apply(z));
                assert!(
                    (numeric - analytic).abs() < 2e-3,
                    "{act} at {z}: {numeric} vs {analytic}"
                );
            }
        }
    }

    #[test]
    fn names_round_trip() {
        for act in Activation::ALL {
            assert_eq!(Activation::from_name(act.name()), Some(act));
        }
        assert_eq!(Activation::from_name("softplus"), None);
    }
}
