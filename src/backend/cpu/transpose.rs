//! Out-of-place matrix transposition, for the CPU backend's column-major products and
//! transposed weight copies.
//!
//! A plain element loop reads one matrix along its rows and the other down its columns,
//! a cache line per element, and on power-of-two widths those lines share L1 sets: it
//! ran a 1024x1024 transpose at 1.0-1.2 ms on the 2-core Xeon measured, against 0.2 ms
//! for a copy of the same bytes. Here each worker takes a band of output rows and moves
//! 8x8 blocks through AVX registers (eight row loads, 24 shuffles, eight row stores),
//! bit for bit the same values: 0.46-0.54 ms with the loads written element by element,
//! 1.3-1.5x faster since each is one checked 32-byte load. Other orders measured no
//! better: 16 input rows per step (whole output lines), square tiles, or software
//! prefetch of the rows ahead.

use rayon::prelude::*;

use super::PARALLEL_ELEMENTWISE_MIN;

/// Output rows per parallel piece: 32 rows of 1024 floats, 128 KB, are written while
/// the 8-row strips of the input they read stay in L1.
const BAND_ROWS: usize = 32;
/// Side of the register block.
const BLOCK: usize = 8;

/// `dst` (`cols x rows`, row-major) = `src` (`rows x cols`, row-major) transposed, in
/// parallel over bands of `dst`'s rows when large. Slices longer than `rows * cols`
/// are used up to that length.
pub(super) fn transpose(dst: &mut [f32], src: &[f32], rows: usize, cols: usize) {
    let len = rows * cols;
    if len == 0 {
        return;
    }
    let (dst, src) = (&mut dst[..len], &src[..len]);
    let band = |(b, dst): (usize, &mut [f32])| {
        let band = Band {
            dst,
            src,
            rows,
            cols,
            first: b * BAND_ROWS,
        };
        band.run();
    };
    if len >= PARALLEL_ELEMENTWISE_MIN {
        dst.par_chunks_mut(BAND_ROWS * rows)
            .enumerate()
            .for_each(band);
    } else {
        dst.chunks_mut(BAND_ROWS * rows).enumerate().for_each(band);
    }
}

/// `dst[f * stride + j] = rows[j][f]` for every row `j` and feature `f < dim`: rows
/// (each at least `dim` long, anywhere in memory) written as the columns of `dst`, whose
/// rows are `stride` long, on the calling thread. A batch's sample rows become a
/// feature-major batch this way, and a band of a column-major product (its columns are
/// the rows here) its rows of the row-major result. Full 8x8 blocks go through registers
/// where the CPU has AVX2, the rest element by element.
pub(crate) fn rows_into_columns(dst: &mut [f32], stride: usize, rows: &[&[f32]], dim: usize) {
    let mut gather = Gather {
        dst,
        stride,
        rows,
        dim,
    };
    #[cfg(target_arch = "x86_64")]
    if let Some(simd) = pulp::x86::V3::try_new() {
        return pulp::Simd::vectorize(simd, GatherBlocks { gather, simd });
    }
    gather.scalar(0, 0);
}

/// The operands of [`rows_into_columns`].
struct Gather<'a> {
    dst: &'a mut [f32],
    stride: usize,
    rows: &'a [&'a [f32]],
    dim: usize,
}

impl Gather<'_> {
    /// Element by element, what the register blocks left: the features from
    /// `features_done` on of the first `rows_done` rows, and every feature of the rest.
    #[inline(always)]
    fn scalar(&mut self, rows_done: usize, features_done: usize) {
        for (j, row) in self.rows.iter().enumerate() {
            let first = if j < rows_done { features_done } else { 0 };
            for (f, &v) in row[..self.dim].iter().enumerate().skip(first) {
                self.dst[f * self.stride + j] = v;
            }
        }
    }
}

/// [`rows_into_columns`] compiled for AVX2.
#[cfg(target_arch = "x86_64")]
struct GatherBlocks<'a> {
    gather: Gather<'a>,
    simd: pulp::x86::V3,
}

#[cfg(target_arch = "x86_64")]
impl pulp::WithSimd for GatherBlocks<'_> {
    type Output = ();

    #[inline(always)]
    fn with_simd<S: pulp::Simd>(self, _: S) {
        let (mut g, simd) = (self.gather, self.simd);
        let rows_done = g.rows.len() / BLOCK * BLOCK;
        let features_done = g.dim / BLOCK * BLOCK;
        for j0 in (0..rows_done).step_by(BLOCK) {
            let rows = &g.rows[j0..j0 + BLOCK];
            for f0 in (0..features_done).step_by(BLOCK) {
                let out = transpose8(simd, core::array::from_fn(|i| load8(&rows[i][f0..])));
                for (i, v) in out.into_iter().enumerate() {
                    store8(&mut g.dst[(f0 + i) * g.stride + j0..], v);
                }
            }
        }
        g.scalar(rows_done, features_done);
    }
}

/// Output rows `first..` (input columns), all of them in `dst`.
struct Band<'a> {
    dst: &'a mut [f32],
    src: &'a [f32],
    rows: usize,
    cols: usize,
    first: usize,
}

impl Band<'_> {
    /// Full 8x8 blocks in registers where the CPU has AVX2, the ragged edges (and every
    /// block elsewhere) element by element.
    fn run(self) {
        #[cfg(target_arch = "x86_64")]
        if let Some(simd) = pulp::x86::V3::try_new() {
            return pulp::Simd::vectorize(simd, Blocks { band: self, simd });
        }
        self.each(|band, r0, j0| band.scalar_block(r0, j0));
    }

    /// Calls `block(self, r0, j0)` for every block: input rows `r0..r0 + 8`, output
    /// rows `j0..j0 + 8` of the band, both clipped at the edges.
    #[inline(always)]
    fn each(mut self, mut block: impl FnMut(&mut Self, usize, usize)) {
        let out_rows = self.dst.len() / self.rows;
        // Eight output rows at a time, written front to back, while the input's 8-float
        // strips they read stay in cache.
        for j0 in (0..out_rows).step_by(BLOCK) {
            for r0 in (0..self.rows).step_by(BLOCK) {
                block(&mut self, r0, j0);
            }
        }
    }

    #[inline(always)]
    fn scalar_block(&mut self, r0: usize, j0: usize) {
        let out_rows = self.dst.len() / self.rows;
        for j in j0..(j0 + BLOCK).min(out_rows) {
            let c = self.first + j;
            for r in r0..(r0 + BLOCK).min(self.rows) {
                self.dst[j * self.rows + r] = self.src[r * self.cols + c];
            }
        }
    }
}

/// [`Band::run`] compiled for AVX2.
#[cfg(target_arch = "x86_64")]
struct Blocks<'a> {
    band: Band<'a>,
    simd: pulp::x86::V3,
}

#[cfg(target_arch = "x86_64")]
impl pulp::WithSimd for Blocks<'_> {
    type Output = ();

    #[inline(always)]
    fn with_simd<S: pulp::Simd>(self, _: S) {
        let simd = self.simd;
        self.band.each(|band, r0, j0| {
            let out_rows = band.dst.len() / band.rows;
            if r0 + BLOCK <= band.rows && j0 + BLOCK <= out_rows {
                register_block(simd, band, r0, j0);
            } else {
                band.scalar_block(r0, j0);
            }
        });
    }
}

/// One full 8x8 block: input rows `r0..r0 + 8` at columns `first + j0..`, transposed.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
fn register_block(simd: pulp::x86::V3, band: &mut Band, r0: usize, j0: usize) {
    let (rows, cols, c0) = (band.rows, band.cols, band.first + j0);
    let out = transpose8(
        simd,
        core::array::from_fn(|i| load8(&band.src[(r0 + i) * cols + c0..])),
    );
    for (i, v) in out.into_iter().enumerate() {
        let start = (j0 + i) * rows + r0;
        store8(&mut band.dst[start..], v);
    }
}

/// The first 8 floats of `values` as a vector: one bounds check and one 32-byte load;
/// indexing element by element left the eight loads apart and the whole transposition
/// 1.3-1.5x slower.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
fn load8(values: &[f32]) -> core::arch::x86_64::__m256 {
    let row: [f32; BLOCK] = values[..BLOCK].try_into().expect("a slice of BLOCK floats");
    pulp::cast(row)
}

/// `v` into the first 8 floats of `out`.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
fn store8(out: &mut [f32], v: core::arch::x86_64::__m256) {
    out[..BLOCK].copy_from_slice(&pulp::cast::<_, [f32; BLOCK]>(v));
}

/// The 8x8 block whose rows are `r`, transposed through the standard unpack / shuffle /
/// lane-permute sequence: pairs of rows interleaved, then pairs of pairs, then the
/// 128-bit halves swapped.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
fn transpose8(
    simd: pulp::x86::V3,
    r: [core::arch::x86_64::__m256; BLOCK],
) -> [core::arch::x86_64::__m256; BLOCK] {
    let avx = simd.avx;
    let t = [
        avx._mm256_unpacklo_ps(r[0], r[1]),
        avx._mm256_unpackhi_ps(r[0], r[1]),
        avx._mm256_unpacklo_ps(r[2], r[3]),
        avx._mm256_unpackhi_ps(r[2], r[3]),
        avx._mm256_unpacklo_ps(r[4], r[5]),
        avx._mm256_unpackhi_ps(r[4], r[5]),
        avx._mm256_unpacklo_ps(r[6], r[7]),
        avx._mm256_unpackhi_ps(r[6], r[7]),
    ];
    let u = [
        avx._mm256_shuffle_ps::<0x44>(t[0], t[2]),
        avx._mm256_shuffle_ps::<0xEE>(t[0], t[2]),
        avx._mm256_shuffle_ps::<0x44>(t[1], t[3]),
        avx._mm256_shuffle_ps::<0xEE>(t[1], t[3]),
        avx._mm256_shuffle_ps::<0x44>(t[4], t[6]),
        avx._mm256_shuffle_ps::<0xEE>(t[4], t[6]),
        avx._mm256_shuffle_ps::<0x44>(t[5], t[7]),
        avx._mm256_shuffle_ps::<0xEE>(t[5], t[7]),
    ];
    [
        avx._mm256_permute2f128_ps::<0x20>(u[0], u[4]),
        avx._mm256_permute2f128_ps::<0x20>(u[1], u[5]),
        avx._mm256_permute2f128_ps::<0x20>(u[2], u[6]),
        avx._mm256_permute2f128_ps::<0x20>(u[3], u[7]),
        avx._mm256_permute2f128_ps::<0x31>(u[0], u[4]),
        avx._mm256_permute2f128_ps::<0x31>(u[1], u[5]),
        avx._mm256_permute2f128_ps::<0x31>(u[2], u[6]),
        avx._mm256_permute2f128_ps::<0x31>(u[3], u[7]),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_shape_transposes_exactly() {
        // Partial blocks and bands on each side, one element, and a parallel size.
        for (rows, cols) in [(1, 1), (33, 7), (64, 65), (3, 100), (8, 8), (300, 257)] {
            let src: Vec<f32> = (0..rows * cols).map(|v| v as f32 + 0.5).collect();
            let mut dst = vec![f32::NAN; rows * cols];
            transpose(&mut dst, &src, rows, cols);
            for r in 0..rows {
                for c in 0..cols {
                    assert_eq!(
                        dst[c * rows + r],
                        src[r * cols + c],
                        "{rows}x{cols} ({r}, {c})"
                    );
                }
            }
        }
    }

    #[test]
    fn rows_land_in_columns_exactly() {
        // Full register blocks, ragged rows and features, rows longer than `dim`, and a
        // stride wider than the row count (a batch gathered a block at a time).
        for (count, dim, stride) in [(0, 5, 3), (1, 1, 1), (8, 8, 8), (16, 37, 53), (13, 24, 13)] {
            let rows: Vec<Vec<f32>> = (0..count)
                .map(|j| (0..dim + 3).map(|f| (j * 1000 + f) as f32).collect())
                .collect();
            let refs: Vec<&[f32]> = rows.iter().map(Vec::as_slice).collect();
            let mut dst = vec![f32::NAN; dim * stride];
            rows_into_columns(&mut dst, stride, &refs, dim);
            for f in 0..dim {
                for j in 0..stride {
                    let want = if j < count { rows[j][f] } else { f32::NAN };
                    let got = dst[f * stride + j];
                    assert!(got == want || (got.is_nan() && want.is_nan()), "{f}, {j}");
                }
            }
        }
    }
}
