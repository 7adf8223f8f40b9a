//! When plain SGD can ride inside the weight-gradient product itself.
//!
//! Plain SGD (no momentum, no weight decay) updates `w -= lr · g` with `g = δ hᵀ`. The
//! fused pass (`deferred`) computes each tile of `g` into a worker's buffer and then
//! reads and writes the same tile of `w`: the read of `w` misses cache and stalls,
//! about 8% of a 784-1024x3-10 BP step on the 2-core Xeon measured. faer can instead
//! add `-lr · δ hᵀ` into `w` from the product's own epilogue (`Accum::Add`), where the
//! loads of `w` overlap the kernel's arithmetic: within 2% of the plain product's time
//! against 14-19% more for compute-then-apply, in alternating runs of 1024x128x1024
//! products.
//!
//! That is only worth having if the values stay those of the update applied apart.
//! faer's x86 kernels (private-gemm-x86, AVX2 and AVX-512) scale the accumulated dot
//! products by `alpha` and then add the destination, two roundings, exactly as
//! `w - lr * g`; when the depth (the batch) fits one of their 512-deep blocks, the dot
//! product is the one `g` holds. Its other paths do not promise that: products of at
//! most 16³ multiply-adds (nano-gemm, which fuses the multiply and the add), matrix-
//! vector and rank-one products, and other architectures. [`rounds_like_apart`] says
//! which shapes take the promised path; the test below checks its promise on the
//! machine it runs on, so a faer update that changes it fails here first.

/// Multiply-adds up to which faer runs a product through nano-gemm (its
/// `NANO_GEMM_THRESHOLD`).
const NANO_PRODUCT: usize = 16 * 16 * 16;
/// Depth of one block of faer's x86 kernels: deeper products add partial sums into the
/// destination block by block.
const BLOCK_DEPTH: usize = 512;

/// Whether `matmul(c, Accum::Add, a, b, alpha, _)` for an `m x k` by `k x n` product
/// leaves in `c` exactly `c + alpha · p`, with `p` what `Accum::Replace` and `alpha = 1`
/// would have written (each operation rounded on its own).
pub(super) fn rounds_like_apart(m: usize, n: usize, k: usize) -> bool {
    m >= 2
        && n >= 2
        && (2..=BLOCK_DEPTH).contains(&k)
        && m.saturating_mul(n).saturating_mul(k) > NANO_PRODUCT
        && x86_kernels()
}

/// Whether faer runs its products through private-gemm-x86 here.
#[cfg(target_arch = "x86_64")]
fn x86_kernels() -> bool {
    std::arch::is_x86_feature_detected!("avx512f")
        || (std::arch::is_x86_feature_detected!("avx2")
            && std::arch::is_x86_feature_detected!("fma"))
}

/// faer has no such kernels elsewhere.
#[cfg(not(target_arch = "x86_64"))]
fn x86_kernels() -> bool {
    false
}

#[cfg(test)]
mod tests {
    use super::*;
    use faer::linalg::matmul::matmul;
    use faer::{Accum, MatMut, MatRef, Par};

    /// Values in [-0.5, 0.5) from a fixed linear congruential sequence.
    fn values(len: usize, seed: u64) -> Vec<f32> {
        let mut s = seed;
        (0..len)
            .map(|_| {
                s = s
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                (s >> 40) as f32 / (1u64 << 24) as f32 - 0.5
            })
            .collect()
    }

    #[test]
    fn accumulating_products_round_like_the_update_applied_apart() {
        // Row-major `δ` (m x k) times the transpose of row-major `h` (n x k), as the
        // weight gradients are laid out; tall, wide, ragged, and both block-depth ends.
        let shapes = [
            (1024, 128, 1024),
            (256, 64, 784),
            (33, 128, 65),
            (10, 512, 1024),
            (97, 511, 130),
            (200, 300, 13),
            (17, 2, 300),
        ];
        let mut checked = 0;
        for (m, k, n) in shapes {
            for par in [Par::Seq, Par::rayon(2)] {
                let (delta, input) = (values(m * k, 1), values(n * k, 2));
                let w = values(m * n, 3);
                let delta = MatRef::from_row_major_slice(&delta, m, k);
                let input = MatRef::from_row_major_slice(&input, n, k).transpose();
                let lr = 0.0137f32;
                let mut g = vec![0.0; m * n];
                let product = MatMut::from_row_major_slice_mut(&mut g, m, n);
                matmul(product, Accum::Replace, delta, input, 1.0, par);
                let apart: Vec<f32> = w.iter().zip(&g).map(|(w, g)| w - lr * g).collect();
                let mut inside = w.clone();
                let product = MatMut::from_row_major_slice_mut(&mut inside, m, n);
                matmul(product, Accum::Add, delta, input, -lr, par);
                let same = apart
                    .iter()
                    .zip(&inside)
                    .all(|(a, b)| a.to_bits() == b.to_bits());
                if rounds_like_apart(m, n, k) {
                    assert!(same, "{m}x{k}x{n}: promised, but the bits differ");
                    checked += 1;
                }
            }
        }
        // Where faer's x86 kernels run, every shape above is one they take.
        assert_eq!(checked, if x86_kernels() { 2 * shapes.len() } else { 0 });
    }

    #[test]
    fn shapes_off_the_promised_path_are_refused() {
        assert!(!rounds_like_apart(1, 1024, 128), "a matrix-vector product");
        assert!(!rounds_like_apart(1024, 1024, 1), "a rank-one update");
        assert!(!rounds_like_apart(16, 16, 16), "a nano-gemm product");
        assert!(!rounds_like_apart(1024, 1024, 513), "two blocks deep");
    }
}
