//! The backend seam: the few operations a training step is made of.
//!
//! Training code (forward pass, learning rules, optimizer) is written once against
//! [`Backend`]; each backend decides how to run it. Buffers are owned by the backend
//! and named by [`BufId`]; every operation addresses row-major regions of them
//! ([`Mat`]). A backend may run each call at once (the CPU, which only holds gradient
//! products back for the optimizer pass that follows them) or record it and run the
//! recorded work at [`Backend::flush`] (a GPU, one submit per step); reading a buffer
//! always sees every earlier call.
//!
//! Activations and deltas are stored feature-major, `[features, batch]`, so that a
//! layer's weights `W` (`outputs x inputs`) act as `H_l = f(W_l H_{l-1} + b_l)` and the
//! hidden deltas of all layers stacked on top of each other form one contiguous matrix.

pub mod columns;
pub mod cpu;
pub mod divergence;
pub mod elementwise;
pub mod gather;
#[cfg(feature = "gpu")]
pub mod gpu;
mod polynomial;
mod regions;
mod simd_state;
pub mod spatial;
pub mod trace;

use crate::activation::Activation;
use crate::error::Result;
use crate::loss::Loss;
use crate::optim::UpdateStep;

pub use columns::{ColumnKind, ColumnOp};
pub use cpu::CpuBackend;
pub use divergence::{Flags, Guard};
pub use elementwise::{Axpby, Distribution, Noise};
pub use gather::{FeatureEncoding, Gather, StoredData};
#[cfg(feature = "gpu")]
pub use gpu::GpuBackend;
pub use spatial::{Im2Col, Pool, PoolMode, Window};
pub use trace::{OpKind, Trace, TraceSummary, TracedOp, TracingBackend};

/// Names a buffer of `f32` owned by a backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct BufId(pub(crate) usize);

/// A row-major `rows x cols` matrix stored contiguously in buffer `buf` from `offset`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Mat {
    /// The buffer holding it.
    pub buf: BufId,
    /// Index of its first element within the buffer.
    pub offset: usize,
    /// Number of rows.
    pub rows: usize,
    /// Number of columns.
    pub cols: usize,
}

impl Mat {
    /// A `rows x cols` matrix at `offset` in `buf`.
    pub fn new(buf: BufId, offset: usize, rows: usize, cols: usize) -> Self {
        Mat {
            buf,
            offset,
            rows,
            cols,
        }
    }

    /// Number of elements (saturating at `usize::MAX`: such a region fits no buffer,
    /// so every region check rejects it with a typed error).
    pub fn len(&self) -> usize {
        self.rows.saturating_mul(self.cols)
    }

    /// Whether it has no elements.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The element range it covers in its buffer.
    pub fn range(&self) -> std::ops::Range<usize> {
        self.offset..self.offset.saturating_add(self.len())
    }

    /// Rows `start..start + count` of this matrix.
    pub fn rows(&self, start: usize, count: usize) -> Mat {
        let start = self.offset.saturating_add(start.saturating_mul(self.cols));
        Mat::new(self.buf, start, count, self.cols)
    }

    /// Whether the two share at least one element (empty regions share none).
    pub fn overlaps(&self, other: &Mat) -> bool {
        let (a, b) = (self.range(), other.range());
        self.buf == other.buf && !self.is_empty() && !other.is_empty() && {
            a.start < b.end && b.start < a.end
        }
    }

    /// The same region viewed as `rows x cols` (which must hold as many elements;
    /// a mismatch is caught by the operation that uses the view).
    pub fn reshape(&self, rows: usize, cols: usize) -> Mat {
        Mat::new(self.buf, self.offset, rows, cols)
    }

    /// `(rows, cols)` after an optional transpose.
    pub fn shape(&self, transposed: bool) -> (usize, usize) {
        if transposed {
            (self.cols, self.rows)
        } else {
            (self.rows, self.cols)
        }
    }
}

/// `c = alpha * op(a) * op(b) + beta * c`, where `op` transposes when asked.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Gemm {
    /// Output (and input when `beta != 0`).
    pub c: Mat,
    /// Left factor.
    pub a: Mat,
    /// Whether `a` is used transposed.
    pub trans_a: bool,
    /// Right factor.
    pub b: Mat,
    /// Whether `b` is used transposed.
    pub trans_b: bool,
    /// Scale of the product.
    pub alpha: f32,
    /// Scale of the old `c` (0 overwrites it without reading).
    pub beta: f32,
}

impl Gemm {
    /// `c = op(a) op(b)`.
    pub fn new(c: Mat, a: Mat, trans_a: bool, b: Mat, trans_b: bool) -> Self {
        Gemm {
            c,
            a,
            trans_a,
            b,
            trans_b,
            alpha: 1.0,
            beta: 0.0,
        }
    }

    /// Checks the three shapes agree.
    pub fn check(&self) -> Result<()> {
        let (m, k) = self.a.shape(self.trans_a);
        let (k2, n) = self.b.shape(self.trans_b);
        if k != k2 || self.c.rows != m || self.c.cols != n {
            return Err(crate::Error::shape(
                "gemm",
                format!("op(a) {m}x{k}, op(b) {k}x{n}, c {m}x{n}"),
                format!(
                    "op(a) {m}x{k}, op(b) {k2}x{n}, c {}x{}",
                    self.c.rows, self.c.cols
                ),
            ));
        }
        Ok(())
    }

    /// Multiply-adds performed, times two (saturating at `u64::MAX`).
    pub fn flops(&self) -> u64 {
        let (m, k) = self.a.shape(self.trans_a);
        let u = |v: usize| u64::try_from(v).unwrap_or(u64::MAX);
        u(m).saturating_mul(u(k))
            .saturating_mul(u(self.c.cols))
            .saturating_mul(2)
    }
}

/// Elementwise work on a product's output that a backend may fuse into the product
/// ([`Backend::gemm_then`]): one GPU dispatch instead of two, and on the CPU no second
/// pass over the output.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Epilogue {
    /// A layer's forward pass: `c = f(c + bias)`, `bias` (`rows x 1`) broadcast along
    /// the batch (as [`Backend::bias_activation`]).
    BiasActivation {
        /// The layer's bias.
        bias: Mat,
        /// Its activation `f`.
        activation: Activation,
    },
    /// A hidden delta: `c *= f'(h)` with `h = f(z)` the layer's output, same shape as
    /// `c` (as [`Backend::activation_grad`]).
    ActivationGrad {
        /// The layer's output.
        h: Mat,
        /// Its activation `f`.
        activation: Activation,
    },
}

impl Epilogue {
    /// Checks the operand fits the product's output `c` and does not overlap it.
    pub fn check(&self, c: Mat) -> Result<()> {
        match *self {
            Epilogue::BiasActivation { bias, .. } => check_bias(c, bias)?,
            Epilogue::ActivationGrad { h, .. } => check_same_shape("activation_grad", c, h)?,
        }
        if self.operand().overlaps(&c) {
            return Err(crate::Error::Backend(format!(
                "epilogue operand {:?} overlaps the product's output {:?} in buffer {}",
                self.operand().range(),
                c.range(),
                c.buf.0
            )));
        }
        Ok(())
    }

    /// The region it reads besides `c`.
    pub fn operand(&self) -> Mat {
        match *self {
            Epilogue::BiasActivation { bias, .. } => bias,
            Epilogue::ActivationGrad { h, .. } => h,
        }
    }
}

/// One layer's parameter gradients: `grad_w = alpha delta input^T + beta grad_w` and
/// `grad_b = alpha Σ_batch delta + beta grad_b` (with `beta = 0` the old values are not
/// read, so they may be garbage). [`LayerGrad::new`] overwrites (`alpha = 1, beta = 0`);
/// a contrast of two phases, as equilibrium propagation takes, is two of them, the
/// second with `beta = 1`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LayerGrad {
    /// `outputs x batch` delta of the layer.
    pub delta: Mat,
    /// `inputs x batch` input activations of the layer.
    pub input: Mat,
    /// `outputs x inputs` weight gradient.
    pub grad_w: Mat,
    /// `outputs x 1` bias gradient.
    pub grad_b: Mat,
    /// Scale of the new product.
    pub alpha: f32,
    /// Scale of what the gradients held (0: overwritten).
    pub beta: f32,
}

impl LayerGrad {
    /// The gradients of the layer with `delta` and `input`, overwriting `grad_w` and
    /// `grad_b`.
    ///
    /// ```
    /// use plasticity::backend::{Backend, CpuBackend, LayerGrad, Mat};
    /// let mut cpu = CpuBackend::new();
    /// let (delta, input, grads) = (cpu.alloc(2)?, cpu.alloc(3)?, cpu.alloc(8)?);
    /// cpu.write(delta, 0, &[1.0, 2.0])?; // 2 outputs, batch 1
    /// cpu.write(input, 0, &[1.0, 0.0, -1.0])?; // 3 inputs
    /// let grad = LayerGrad::new(
    ///     Mat::new(delta, 0, 2, 1),
    ///     Mat::new(input, 0, 3, 1),
    ///     Mat::new(grads, 0, 2, 3),
    ///     Mat::new(grads, 6, 2, 1),
    /// );
    /// cpu.layer_grads(&[grad])?;
    /// assert_eq!(cpu.read(grads, 0, 8)?, [1.0, 0.0, -1.0, 2.0, 0.0, -2.0, 1.0, 2.0]);
    /// // The same again with the opposite sign, added: back to zero.
    /// cpu.layer_grads(&[LayerGrad { alpha: -1.0, beta: 1.0, ..grad }])?;
    /// assert!(cpu.read(grads, 0, 8)?.iter().all(|&g| g == 0.0));
    /// # Ok::<(), plasticity::Error>(())
    /// ```
    pub fn new(delta: Mat, input: Mat, grad_w: Mat, grad_b: Mat) -> LayerGrad {
        LayerGrad {
            delta,
            input,
            grad_w,
            grad_b,
            alpha: 1.0,
            beta: 0.0,
        }
    }

    /// Checks the product and bias shapes agree; returns the weight-gradient product.
    pub fn check(&self) -> Result<Gemm> {
        let product = Gemm {
            alpha: self.alpha,
            beta: self.beta,
            ..Gemm::new(self.grad_w, self.delta, false, self.input, true)
        };
        product.check()?;
        if self.grad_b.len() != self.delta.rows {
            return Err(crate::Error::shape(
                "layer_grads bias",
                self.delta.rows.to_string(),
                self.grad_b.len().to_string(),
            ));
        }
        Ok(product)
    }
}

/// Checks a `rows x 1` bias fits the rows of `z` (for [`Backend::bias_activation`]).
pub fn check_bias(z: Mat, bias: Mat) -> Result<()> {
    if bias.len() != z.rows {
        return Err(crate::Error::shape(
            "bias_activation",
            format!("bias of {} values", z.rows),
            bias.len().to_string(),
        ));
    }
    Ok(())
}

/// Checks two matrices have the same shape (for [`Backend::activation_grad`]).
pub fn check_same_shape(context: &str, a: Mat, b: Mat) -> Result<()> {
    if (a.rows, a.cols) != (b.rows, b.cols) {
        return Err(crate::Error::shape(
            context,
            format!("{}x{}", a.rows, a.cols),
            format!("{}x{}", b.rows, b.cols),
        ));
    }
    Ok(())
}

/// Checks the regions of [`Backend::sign_feedback`] share one shape; returns the
/// regions it reads (`w`, then `magnitude` when given).
pub fn check_sign_feedback(out: Mat, w: Mat, magnitude: Option<Mat>) -> Result<Vec<Mat>> {
    check_same_shape("sign_feedback", out, w)?;
    if let Some(m) = magnitude {
        check_same_shape("sign_feedback magnitude", out, m)?;
    }
    Ok(std::iter::once(w).chain(magnitude).collect())
}

/// The output error of a batch and its loss statistics.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LossGrad {
    /// The loss.
    pub loss: Loss,
    /// `classes x batch` network outputs.
    pub output: Mat,
    /// `classes x batch` targets (one-hot for classification).
    pub target: Mat,
    /// `classes x batch` error `∂L/∂output` of the batch mean (overwritten).
    pub grad: Mat,
    /// Three accumulators: `+= [Σ sample losses, Σ correct argmax, batch size]`.
    pub stats: Mat,
}

impl LossGrad {
    /// Checks target and error match the output's shape and stats hold three floats.
    pub fn check(&self) -> Result<()> {
        check_same_shape("loss target", self.output, self.target)?;
        check_same_shape("loss grad", self.output, self.grad)?;
        if self.stats.len() != 3 {
            return Err(crate::Error::shape(
                "loss stats",
                "3",
                self.stats.len().to_string(),
            ));
        }
        Ok(())
    }
}

/// An optimizer pass over the whole parameter arena.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct OptimizerPass {
    /// The parameters, updated in place.
    pub params: Mat,
    /// The update direction, same shape.
    pub grads: Mat,
    /// Optimizer state (momentum / Adam moments), same shape each.
    pub state: [Mat; 2],
    /// This step's scalars.
    pub step: UpdateStep,
    /// Skip the update once a divergence flag is set, and flag a non-finite one (see
    /// [`divergence`]).
    pub guard: Option<Guard>,
    /// Whether `grads` must still hold this step's gradients after the pass. `false`
    /// lets a backend that computes pending gradient products inside the pass (the
    /// CPU's, see [`CpuBackend::with_fused_updates`]) apply each tile without storing
    /// it, saving a write of every gradient; the region's contents are then unspecified
    /// until the next gradients are written. The trainer reads no gradient after its
    /// step, so it passes `false`.
    pub keep_grads: bool,
}

impl OptimizerPass {
    /// Checks gradients and state match the parameters' length.
    pub fn check(&self) -> Result<()> {
        if let Some(g) = self.guard {
            g.check()?;
        }
        let n = self.params.len();
        for m in [self.grads, self.state[0], self.state[1]] {
            if m.len() != n {
                return Err(crate::Error::shape(
                    "optimizer",
                    n.to_string(),
                    m.len().to_string(),
                ));
            }
        }
        Ok(())
    }
}

/// Totals of the work a device backend was given, since it was opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct WorkCounters {
    /// Command buffers submitted.
    pub submits: u64,
    /// Compute dispatches recorded.
    pub dispatches: u64,
    /// Bytes of data copied from the host to the device (buffer writes).
    pub bytes_uploaded: u64,
    /// Bytes of kernel parameter blocks written (a few hundred per dispatch).
    pub bytes_parameters: u64,
    /// Bytes copied from the device to the host.
    pub bytes_read_back: u64,
    /// Bytes copied on the device so an operand could be bound as a copy, where its
    /// range and a written one in the same buffer would overlap once aligned to the
    /// device's binding alignment (see the GPU backend's binding rules; a training
    /// step at the usual batch sizes copies none).
    pub bytes_aliased: u64,
}

impl std::ops::Sub for WorkCounters {
    type Output = WorkCounters;

    /// The work done between two snapshots.
    fn sub(self, earlier: WorkCounters) -> WorkCounters {
        WorkCounters {
            submits: self.submits.saturating_sub(earlier.submits),
            dispatches: self.dispatches.saturating_sub(earlier.dispatches),
            bytes_uploaded: self.bytes_uploaded.saturating_sub(earlier.bytes_uploaded),
            bytes_parameters: self
                .bytes_parameters
                .saturating_sub(earlier.bytes_parameters),
            bytes_read_back: self.bytes_read_back.saturating_sub(earlier.bytes_read_back),
            bytes_aliased: self.bytes_aliased.saturating_sub(earlier.bytes_aliased),
        }
    }
}

/// Scales `g` to L2 norm at most `max_norm` (summing squares in `f64`); returns the
/// norm before scaling. A non-finite norm leaves `g` unchanged.
pub fn clip_in_place(g: &mut [f32], max_norm: f32) -> f32 {
    let norm = g
        .iter()
        .map(|&v| (v as f64) * (v as f64))
        .sum::<f64>()
        .sqrt() as f32;
    if norm.is_finite() && norm > max_norm {
        let scale = max_norm / norm;
        g.iter_mut().for_each(|v| *v *= scale);
    }
    norm
}

/// The operations a training step is built from. See the [module docs](self).
///
/// Every method validates its regions (in range, shapes agreeing, no output
/// overlapping an input) and returns an error instead of panicking.
pub trait Backend: Send {
    /// Human-readable name of the device it runs on.
    fn name(&self) -> String;

    /// Whether reading a buffer back is free (host memory): then the trainer checks
    /// the loss for NaN after every step instead of only when statistics are read.
    fn host_resident(&self) -> bool;

    /// Allocates a zeroed buffer of `len` floats.
    fn alloc(&mut self, len: usize) -> Result<BufId>;

    /// Allocates a buffer of `len` floats that starts with `data` and is zero after
    /// it, taking `data` over, so that large initial values are never held twice: the
    /// CPU backend keeps the vector itself as the buffer; the default uploads it and
    /// drops it. `data` longer than `len` is an error.
    fn alloc_from(&mut self, data: Vec<f32>, len: usize) -> Result<BufId> {
        let buf = self.alloc(len)?;
        self.write(buf, 0, &data)?;
        Ok(buf)
    }

    /// Copies `data` into `buf` from `offset`.
    fn write(&mut self, buf: BufId, offset: usize, data: &[f32]) -> Result<()>;

    /// Writes `len` floats of `buf` from `offset` through `fill`, which is given a
    /// slice of that length and must set every value (it runs at most once; a region
    /// outside the buffer is refused as by [`write`](Self::write)). A backend in host
    /// memory hands `fill` the buffer's own elements, so nothing is staged: the trainer
    /// gathers each batch straight into its input this way. The default fills a host
    /// vector and writes it.
    fn write_with(
        &mut self,
        buf: BufId,
        offset: usize,
        len: usize,
        fill: &mut dyn FnMut(&mut [f32]),
    ) -> Result<()> {
        let mut data = vec![0.0; len];
        fill(&mut data);
        self.write(buf, offset, &data)
    }

    /// Reads `len` floats of `buf` from `offset`, after all earlier calls ran.
    fn read(&mut self, buf: BufId, offset: usize, len: usize) -> Result<Vec<f32>>;

    /// Sets every element of `m` to `value`.
    fn fill(&mut self, m: Mat, value: f32) -> Result<()>;

    /// One matrix product.
    fn gemm(&mut self, op: &Gemm) -> Result<()>;

    /// The product `op` followed by `then` on its output. The default runs them one
    /// after the other; the GPU backend fuses them into one dispatch, and the CPU
    /// backend applies `then` to each band of the output as soon as it is computed.
    fn gemm_then(&mut self, op: &Gemm, then: Epilogue) -> Result<()> {
        then.check(op.c)?;
        self.gemm(op)?;
        match then {
            Epilogue::BiasActivation { bias, activation } => {
                self.bias_activation(op.c, bias, activation)
            }
            Epilogue::ActivationGrad { h, activation } => self.activation_grad(op.c, h, activation),
        }
    }

    /// `z = f(z + bias)` with `bias` (`rows x 1`) broadcast along the batch.
    fn bias_activation(&mut self, z: Mat, bias: Mat, activation: Activation) -> Result<()>;

    /// `delta *= f'(h)` where `h = f(z)` is the layer's stored output.
    fn activation_grad(&mut self, delta: Mat, h: Mat, activation: Activation) -> Result<()>;

    /// `out = scale * |magnitude| * sign(w)` elementwise, with `sign(0) = 0` and
    /// `|magnitude|` taken as 1 when `magnitude` is `None` (sign-symmetric feedback).
    /// All three have the same shape.
    fn sign_feedback(&mut self, out: Mat, w: Mat, magnitude: Option<Mat>, scale: f32)
        -> Result<()>;

    /// Feedback with magnitudes drawn afresh (brSF): draws `magnitudes` into its region,
    /// then sets `out = |magnitudes| * sign(w)`. The values of [`Backend::noise`]
    /// followed by [`Backend::sign_feedback`] with those magnitudes and scale 1, which is
    /// what this default runs; the CPU backend does both in one pass, signing each piece
    /// of the draw while it is in cache.
    fn redrawn_sign_feedback(&mut self, out: Mat, w: Mat, magnitudes: &Noise) -> Result<()> {
        self.noise(magnitudes)?;
        self.sign_feedback(out, w, Some(magnitudes.out), 1.0)
    }

    /// Gradients of several layers that do not depend on each other: a backend may run
    /// them concurrently (threads, or one grouped GPU dispatch).
    fn layer_grads(&mut self, layers: &[LayerGrad]) -> Result<()>;

    /// Output error and loss statistics of a batch.
    fn loss_grad(&mut self, op: &LossGrad) -> Result<()>;

    /// One optimizer update of every parameter.
    fn optimizer_step(&mut self, op: &OptimizerPass) -> Result<()>;

    /// Gradient-norm clipping: `grads *= min(1, max_norm / ‖grads‖₂)` and `norm[0] =
    /// ‖grads‖₂`. A non-finite norm leaves `grads` alone so divergence is still caught.
    /// The default reads the gradients back; a GPU overrides it to stay on the device.
    fn clip_grad_norm(&mut self, grads: Mat, max_norm: f32, norm: Mat) -> Result<()> {
        if norm.len() != 1 {
            return Err(crate::Error::shape(
                "clip norm",
                "1",
                norm.len().to_string(),
            ));
        }
        let mut g = self.read(grads.buf, grads.offset, grads.len())?;
        let n = clip_in_place(&mut g, max_norm);
        self.write(grads.buf, grads.offset, &g)?;
        self.write(norm.buf, norm.offset, &[n])
    }

    /// Unfolds image patches into columns so a convolution is one GEMM (see
    /// [`spatial`]). The default runs the host reference on read-back data.
    fn im2col(&mut self, op: &Im2Col) -> Result<()> {
        op.check()?;
        let image = self.read(op.image.buf, op.image.offset, op.image.len())?;
        let mut patches = vec![0.0; op.patches.len()];
        spatial::host::im2col(&op.window, &image, &mut patches);
        self.write(op.patches.buf, op.patches.offset, &patches)
    }

    /// Folds patch columns back into images (overwriting them), summing overlaps: the
    /// adjoint of [`Backend::im2col`], a convolution's input gradient.
    fn col2im(&mut self, op: &Im2Col) -> Result<()> {
        op.check()?;
        let patches = self.read(op.patches.buf, op.patches.offset, op.patches.len())?;
        let mut image = vec![0.0; op.image.len()];
        spatial::host::col2im(&op.window, &patches, &mut image);
        self.write(op.image.buf, op.image.offset, &image)
    }

    /// Pools `op.input` into `op.output` (max pooling records its argmax).
    fn pool(&mut self, op: &Pool) -> Result<()> {
        op.check()?;
        let input = self.read(op.input.buf, op.input.offset, op.input.len())?;
        let mut output = vec![0.0; op.output.len()];
        let mut argmax = match op.mode {
            PoolMode::MaxAt => self.read(op.argmax.buf, op.argmax.offset, op.argmax.len())?,
            _ => vec![0.0; op.argmax.len()],
        };
        spatial::host::pool(&op.window, op.mode, &input, &mut output, &mut argmax);
        self.write(op.output.buf, op.output.offset, &output)?;
        if op.mode == PoolMode::Max {
            self.write(op.argmax.buf, op.argmax.offset, &argmax)?;
        }
        Ok(())
    }

    /// The input gradient of pooling: `op.input` (overwritten) from `op.output`.
    fn unpool(&mut self, op: &Pool) -> Result<()> {
        op.check()?;
        let d_out = self.read(op.output.buf, op.output.offset, op.output.len())?;
        let argmax = match op.mode {
            PoolMode::Avg => Vec::new(),
            _ => self.read(op.argmax.buf, op.argmax.offset, op.argmax.len())?,
        };
        let mut d_in = vec![0.0; op.input.len()];
        spatial::host::unpool(&op.window, op.mode, &d_out, &argmax, &mut d_in);
        self.write(op.input.buf, op.input.offset, &d_in)
    }

    /// `y = alpha * x + beta * y` elementwise (see [`Axpby`]). The default runs the
    /// host reference on read-back data.
    fn axpby(&mut self, op: &Axpby) -> Result<()> {
        op.check()?;
        let x = self.read(op.x.buf, op.x.offset, op.x.len())?;
        let mut y = match op.beta {
            0.0 => vec![0.0; op.y.len()],
            _ => self.read(op.y.buf, op.y.offset, op.y.len())?,
        };
        elementwise::host::axpby(op, &mut y, &x);
        self.write(op.y.buf, op.y.offset, &y)
    }

    /// Gaussian noise into (or added to) a region, the same values on every backend
    /// (see [`Noise`]). The default runs the host reference on read-back data.
    fn noise(&mut self, op: &Noise) -> Result<()> {
        op.check()?;
        let mut out = match op.accumulate {
            true => self.read(op.out.buf, op.out.offset, op.out.len())?,
            false => vec![0.0; op.out.len()],
        };
        elementwise::host::noise(op, &mut out);
        self.write(op.out.buf, op.out.offset, &out)
    }

    /// A per-sample (per-column) reduction or scaling (see [`ColumnOp`]). The default
    /// runs the host reference on read-back data.
    fn columns(&mut self, op: &ColumnOp) -> Result<()> {
        op.check()?;
        let x = self.read(op.x.buf, op.x.offset, op.x.len())?;
        let mut out = match op.reads_out() {
            true => self.read(op.out.buf, op.out.offset, op.out.len())?,
            false => vec![0.0; op.out.len()],
        };
        columns::host(op, &x, &mut out);
        self.write(op.out.buf, op.out.offset, &out)
    }

    /// Writes a batch gathered from a data set stored on the backend (see [`gather`]).
    /// The default runs the host reference on read-back data.
    fn gather(&mut self, op: &Gather) -> Result<()> {
        op.check()?;
        let data = self.read(op.data.buf, 0, op.data.words())?;
        let order = self.read(op.order.buf, op.order.offset, op.order.len())?;
        let mut x = vec![0.0; op.x.len()];
        let mut targets = vec![0.0; op.targets.len()];
        gather::host::gather(op, &data, &order, &mut x, &mut targets)?;
        self.write(op.x.buf, op.x.offset, &x)?;
        self.write(op.targets.buf, op.targets.offset, &targets)
    }

    /// Frees a buffer; its id must not be used again. Backends that do not reclaim
    /// memory may keep it.
    fn release(&mut self, buf: BufId) -> Result<()> {
        let _ = buf;
        Ok(())
    }

    /// Work sent to the device so far, for backends that count it (a GPU).
    fn counters(&self) -> Option<WorkCounters> {
        None
    }

    /// Runs everything recorded so far (a no-op for backends that run eagerly).
    fn flush(&mut self) -> Result<()>;

    /// Runs everything recorded and waits until the device has finished it, so a
    /// timer stopped afterwards measures the work itself. Eager backends are done
    /// when each call returns: the default only flushes.
    fn synchronize(&mut self) -> Result<()> {
        self.flush()
    }
}
