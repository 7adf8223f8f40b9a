//! Wall-clock time of one CPU training step (`Trainer::train_batch`) for each rule,
//! to compare with the NumPy reference in `benches/reference/numpy_step.py`.
//!
//! ```text
//! cargo run --release --example step_time -- --hidden 1024,1024,1024 --batch 128 \
//!     --repeats 50 --warmup 5 --rule all
//! ```
//!
//! The network is `784 - hidden... - 10` (tanh hidden, identity output, softmax
//! cross-entropy; `--inputs N` for another input width, as the grid's rows have),
//! trained with plain SGD on random data. `--breakdown` also times the step's matrix
//! products alone as the CPU backend runs them (and each shape with untransposed
//! operands) and its elementwise passes, to show where a step's time goes, and prints each rule's floor: its products each at
//! their best, summed, with the step's time against it. `--paired R` measures that
//! ratio again in R rounds, each timing a rule's step and then its floor's products
//! right after, so a machine whose speed drifts over minutes (shared or throttled)
//! still gives a ratio to trust: the median over rounds, with its range. `--unfused`
//! runs the gradient products apart from the optimizer pass instead of fused with it
//! (`CpuBackend::with_fused_updates`), to measure what the fusion saves. `--ops` times
//! every operation inside the step (`plasticity::bench::time_step_ops`), to set beside
//! the same products alone: what a product loses inside a step, what the elementwise
//! work costs, and the host's time between operations.

use std::time::Duration;

use faer::linalg::matmul::matmul;
use faer::{Accum, MatMut, MatRef, Par};
use plasticity::backend::{Backend, CpuBackend, TracingBackend};
use plasticity::bench::{cpu_product, time_repeated, time_step_ops, Timing};
use plasticity::data::Dataset;
use plasticity::{Activation, Error, Network, Optimizer, Result, Rule, TrainConfig, Trainer};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;

const USAGE: &str =
    "usage: step_time [--inputs 784] [--hidden 1024,1024,1024] [--batch 128] [--repeats 50] \
                     [--warmup 5] [--rule bp|fa|dfa|all] [--threads N] [--breakdown] \
                     [--paired ROUNDS] [--unfused] [--ops]";

const CLASSES: usize = 10;
/// Distinct batches of random data the timed steps cycle through.
const DATA_BATCHES: usize = 4;

#[derive(Debug)]
struct Args {
    /// Input features.
    inputs: usize,
    hidden: Vec<usize>,
    batch: usize,
    repeats: usize,
    warmup: usize,
    rules: Vec<Rule>,
    threads: Option<usize>,
    breakdown: bool,
    /// Rounds of step-then-floor timings (0: none).
    paired: usize,
    /// Gradient products run apart from the optimizer pass (`CpuBackend::with_fused_updates`).
    unfused: bool,
    /// Every operation timed inside the step.
    ops: bool,
}

fn bad(msg: impl Into<String>) -> Error {
    let msg = msg.into();
    eprintln!("step_time: {msg}\n{USAGE}");
    Error::InvalidConfig(msg)
}

fn parse_count(flag: &str, value: &str) -> Result<usize> {
    match value.parse::<usize>() {
        Ok(n) if n > 0 => Ok(n),
        _ => Err(bad(format!(
            "{flag} wants a positive integer, got {value:?}"
        ))),
    }
}

fn parse_args() -> Result<Args> {
    let mut args = Args {
        inputs: 784,
        hidden: vec![1024, 1024, 1024],
        batch: 128,
        repeats: 50,
        warmup: 5,
        rules: Rule::ALL.to_vec(),
        threads: None,
        breakdown: false,
        paired: 0,
        unfused: false,
        ops: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        if flag == "-h" || flag == "--help" {
            println!("{USAGE}");
            std::process::exit(0);
        }
        // The switches, which take no value.
        let switch = match flag.as_str() {
            "--breakdown" => Some(&mut args.breakdown),
            "--unfused" => Some(&mut args.unfused),
            "--ops" => Some(&mut args.ops),
            _ => None,
        };
        if let Some(on) = switch {
            *on = true;
            continue;
        }
        let value = it
            .next()
            .ok_or_else(|| bad(format!("{flag} needs a value")))?;
        match flag.as_str() {
            "--hidden" => {
                args.hidden = value
                    .split(',')
                    .map(|w| parse_count("--hidden", w.trim()))
                    .collect::<Result<_>>()?;
            }
            "--inputs" => args.inputs = parse_count(&flag, &value)?,
            "--batch" => args.batch = parse_count(&flag, &value)?,
            "--repeats" => args.repeats = parse_count(&flag, &value)?,
            "--warmup" => {
                args.warmup = value
                    .parse()
                    .map_err(|_| bad(format!("--warmup wants an integer, got {value:?}")))?;
            }
            "--threads" => args.threads = Some(parse_count(&flag, &value)?),
            "--paired" => args.paired = parse_count(&flag, &value)?,
            "--rule" => {
                args.rules = if value == "all" {
                    Rule::ALL.to_vec()
                } else {
                    value
                        .split(',')
                        .map(|r| {
                            Rule::from_name(r.trim())
                                .ok_or_else(|| bad(format!("unknown rule {r:?}")))
                        })
                        .collect::<Result<_>>()?
                };
            }
            _ => return Err(bad(format!("unknown argument {flag:?}"))),
        }
    }
    Ok(args)
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn random_data(inputs: usize, batch: usize, rng: &mut ChaCha8Rng) -> Result<Dataset> {
    let n = batch * DATA_BATCHES;
    let features: Vec<f32> = (0..n * inputs).map(|_| rng.random::<f32>()).collect();
    let labels: Vec<u32> = (0..n)
        .map(|_| rng.random_range(0..CLASSES as u32))
        .collect();
    Dataset::new(features, labels, inputs, CLASSES)
}

/// The CPU backend the steps are timed on.
fn backend(args: &Args) -> CpuBackend {
    CpuBackend::new().with_fused_updates(!args.unfused)
}

/// A trainer for `rule` on the timed network.
fn trainer(args: &Args, rule: Rule) -> Result<Trainer> {
    trainer_on(args, rule, Box::new(backend(args)))
}

/// A trainer for `rule` on the timed network, on `backend`.
fn trainer_on(args: &Args, rule: Rule, backend: Box<dyn Backend>) -> Result<Trainer> {
    let net = Network::builder(args.inputs)
        .hidden(&args.hidden, Activation::Tanh)
        .dense(CLASSES, Activation::Identity)
        .seed(0)
        .build()?;
    let config = TrainConfig {
        rule,
        optimizer: Optimizer::sgd(0.01),
        batch_size: args.batch,
        ..TrainConfig::default()
    };
    Trainer::with_backend(net, config, backend)
}

/// The sample indices of each of the data's batches.
fn batches(args: &Args) -> Vec<Vec<usize>> {
    (0..DATA_BATCHES)
        .map(|b| (b * args.batch..(b + 1) * args.batch).collect())
        .collect()
}

/// `repeats` steps of `trainer` (after `warmup`), cycling through the data's batches.
fn time_steps(
    trainer: &mut Trainer,
    data: &Dataset,
    batches: &[Vec<usize>],
    (warmup, repeats): (usize, usize),
) -> Result<Timing> {
    let mut step = 0;
    time_repeated(warmup, repeats, || {
        step += 1;
        trainer.train_batch(data, &batches[step % DATA_BATCHES])
    })
}

fn time_rule(args: &Args, rule: Rule, data: &Dataset) -> Result<Timing> {
    let mut trainer = trainer(args, rule)?;
    time_steps(
        &mut trainer,
        data,
        &batches(args),
        (args.warmup, args.repeats),
    )
}

fn main() -> Result<()> {
    let args = parse_args()?;
    if let Some(n) = args.threads {
        rayon::ThreadPoolBuilder::new()
            .num_threads(n)
            .build_global()
            .map_err(|e| Error::Backend(format!("cannot start {n} rayon threads: {e}")))?;
    }
    let mut rng = ChaCha8Rng::seed_from_u64(0);
    let data = random_data(args.inputs, args.batch, &mut rng)?;
    let widths: Vec<String> = std::iter::once(args.inputs)
        .chain(args.hidden.iter().copied())
        .chain(std::iter::once(CLASSES))
        .map(|w| w.to_string())
        .collect();
    println!(
        "plasticity {} | net {} (tanh, softmax CE) | batch {} | sgd {} | {} rayon threads | \
         {} repeats after {} warmup",
        env!("CARGO_PKG_VERSION"),
        widths.join("-"),
        args.batch,
        if args.unfused {
            "apart from the gradient products"
        } else {
            "fused with the gradient products"
        },
        rayon::current_num_threads(),
        args.repeats,
        args.warmup
    );
    println!();
    println!(
        "| rule | median ms | min ms | samples/s (median) |\n|------|----------:|-------:|-------------------:|"
    );
    let mut steps = Vec::new();
    for &rule in &args.rules {
        let t = time_rule(&args, rule, &data)?;
        steps.push((rule, ms(t.median)));
        println!(
            "| {:<4} | {:>9.2} | {:>6.2} | {:>18.0} |",
            rule.name(),
            ms(t.median),
            ms(t.min),
            args.batch as f64 / t.median.as_secs_f64()
        );
    }
    if args.breakdown {
        breakdown(&args, &steps)?;
    }
    if args.paired > 0 {
        paired(&args, &data)?;
    }
    if args.ops {
        for &rule in &args.rules {
            operations(&args, rule, &data)?;
        }
    }
    Ok(())
}

/// Every operation of `rule`'s step timed inside the step, in issue order.
fn operations(args: &Args, rule: Rule, data: &Dataset) -> Result<()> {
    let tracer = TracingBackend::new(Box::new(backend(args)));
    let trace = tracer.trace();
    let mut trainer = trainer_on(args, rule, Box::new(tracer))?;
    let timed = time_step_ops(&mut trainer, &trace, data, args.warmup, args.repeats)?;
    println!();
    println!(
        "Operations of a {} step, each timed inside the step (median of {} steps; the \
         gradient products run inside the optimizer pass after them)",
        rule.name(),
        args.repeats
    );
    println!();
    println!(
        "| {:>2} | {:<24} | {:<12} | GFLOP | median ms | min ms | GFLOP/s |\n\
         |---:|{}|{}|------:|----------:|-------:|--------:|",
        "#",
        "operation",
        "writes",
        "-".repeat(26),
        "-".repeat(14)
    );
    for (i, op) in timed.ops.iter().enumerate() {
        let written = op
            .op
            .writes
            .first()
            .map_or(String::new(), |w| format!("{}x{}", w.rows, w.cols));
        let rate = op.gflops().map_or(String::new(), |g| format!("{g:.1}"));
        println!(
            "| {:>2} | {:<24} | {:<12} | {:>5.3} | {:>9.3} | {:>6.3} | {:>7} |",
            i + 1,
            format!("{:?}", op.op.kind),
            written,
            op.op.gemm_flops as f64 * 1e-9,
            ms(op.timing.median),
            ms(op.timing.min),
            rate
        );
    }
    println!();
    println!(
        "Operations' medians summed: {:.2} ms; the step's median {:.2} ms, of which \
         {:.2} ms (median over steps) outside every operation (gathering the batch, \
         bookkeeping)",
        ms(timed.ops_total()),
        ms(timed.step.median),
        ms(timed.between.median)
    );
    Ok(())
}

/// One product `C (m x n) = op(A) op(B)` on row-major buffers, as the CPU backend runs it.
struct Product {
    what: String,
    m: usize,
    k: usize,
    n: usize,
    /// `A` stored as `k x m` (used transposed).
    trans_a: bool,
    /// `B` stored as `n x k` (used transposed).
    trans_b: bool,
}

impl Product {
    fn new(what: String, (m, k, n): (usize, usize, usize), trans_a: bool, trans_b: bool) -> Self {
        Product {
            what,
            m,
            k,
            n,
            trans_a,
            trans_b,
        }
    }

    fn macs(&self) -> usize {
        self.m * self.k * self.n
    }

    /// The same shape with both operands stored untransposed.
    fn untransposed(&self) -> Product {
        Product {
            what: self.what.clone(),
            trans_a: false,
            trans_b: false,
            ..*self
        }
    }

    /// Runs the product as the CPU backend's `gemm` does (`par: None`: its threading
    /// and layout choices), or as one faer call on `par`'s threads.
    fn run(
        &self,
        c: &mut [f32],
        a: &[f32],
        b: &[f32],
        par: Option<Par>,
        scratch: &mut Vec<f32>,
    ) -> Result<()> {
        let Some(par) = par else {
            let shape = (self.m, self.k, self.n);
            return cpu_product(c, a, b, shape, self.trans_a, self.trans_b, scratch);
        };
        let a = if self.trans_a {
            MatRef::from_row_major_slice(a, self.k, self.m).transpose()
        } else {
            MatRef::from_row_major_slice(a, self.m, self.k)
        };
        let b = if self.trans_b {
            MatRef::from_row_major_slice(b, self.n, self.k).transpose()
        } else {
            MatRef::from_row_major_slice(b, self.k, self.n)
        };
        let c = MatMut::from_row_major_slice_mut(c, self.m, self.n);
        matmul(c, Accum::Replace, a, b, 1.0, par);
        Ok(())
    }
}

struct Operands {
    c: Vec<f32>,
    a: Vec<f32>,
    b: Vec<f32>,
}

impl Operands {
    fn new(p: &Product, rng: &mut ChaCha8Rng) -> Self {
        let mut random =
            |len: usize| -> Vec<f32> { (0..len).map(|_| rng.random_range(-1.0f32..1.0)).collect() };
        Operands {
            c: vec![0.0; p.m * p.n],
            a: random(p.m * p.k),
            b: random(p.k * p.n),
        }
    }
}

fn row(what: &str, t: &Timing, gflops: Option<f64>, best_ms: Option<f64>) {
    let rate = gflops.map_or(String::from("-"), |g| {
        format!("{:.1}", g / t.median.as_secs_f64())
    });
    let best = best_ms.map_or(String::from("-"), |b| format!("{b:.3}"));
    println!(
        "| {what:<44} | {:>9.3} | {:>6.3} | {rate:>8} | {best:>7} |",
        ms(t.median),
        ms(t.min)
    );
}

/// The matrix products of one step of each rule, by role.
struct StepProducts {
    forward: Vec<Product>,
    /// BP/FA: `δ_l = W_{l+1}^T δ_{l+1}`, in sequence.
    chain: Vec<Product>,
    /// DFA/DRTP: every hidden delta from the output error, one product.
    dfa: Product,
    /// IFA: `B_1 e`, then up through the hidden layers' own weights.
    ifa: Vec<Product>,
    /// `ΔW_l = δ_l h_{l-1}^T`.
    grads: Vec<Product>,
    hidden_total: usize,
    /// Layer widths, input first.
    dims: Vec<usize>,
}

/// How a rule forms its hidden deltas, which decides the products besides the forward
/// pass and the weight gradients.
#[derive(Clone, Copy)]
enum Deltas {
    /// BP, FA and the sign-symmetric rules: [`StepProducts::chain`].
    Chain,
    /// DFA and DRTP: [`StepProducts::dfa`].
    Direct,
    /// IFA: [`StepProducts::ifa`].
    Indirect,
    /// Last layer only: no hidden deltas, and only the last layer's gradient.
    None,
}

impl Deltas {
    fn of(rule: Rule) -> Deltas {
        match rule {
            Rule::DirectFeedbackAlignment | Rule::DirectRandomTargetProjection => Deltas::Direct,
            Rule::IndirectFeedbackAlignment => Deltas::Indirect,
            Rule::LastLayerOnly => Deltas::None,
            _ => Deltas::Chain,
        }
    }
}

impl StepProducts {
    fn new(args: &Args) -> StepProducts {
        let batch = args.batch;
        let mut dims = vec![args.inputs];
        dims.extend(&args.hidden);
        dims.push(CLASSES);
        let layers = dims.len() - 1;

        // Activations are feature-major (`features x batch`), weights `outputs x inputs`.
        let forward: Vec<Product> = (0..layers)
            .map(|l| {
                let what = format!(
                    "fwd  W{l} x  ({}x{} . {}x{})",
                    dims[l + 1],
                    dims[l],
                    dims[l],
                    batch
                );
                Product::new(what, (dims[l + 1], dims[l], batch), false, false)
            })
            .collect();
        // BP/FA: δ_l = W_{l+1}^T δ_{l+1} for each hidden layer, in sequence.
        let chain: Vec<Product> = (0..layers - 1)
            .rev()
            .map(|l| {
                let (out, inp) = (dims[l + 2], dims[l + 1]);
                let what = format!("bp   W{}^T δ ({inp}x{out} . {out}x{batch})", l + 1);
                Product::new(what, (inp, out, batch), true, false)
            })
            .collect();
        let hidden_total: usize = args.hidden.iter().sum();
        let dfa = Product::new(
            format!("dfa  B e    ({hidden_total}x{CLASSES} . {CLASSES}x{batch})"),
            (hidden_total, CLASSES, batch),
            false,
            false,
        );
        // ΔW_l = δ_l h_{l-1}^T.
        let grads: Vec<Product> = (0..layers)
            .map(|l| {
                let what = format!(
                    "grad δ{l} h^T ({}x{batch} . {batch}x{})",
                    dims[l + 1],
                    dims[l]
                );
                Product::new(what, (dims[l + 1], batch, dims[l]), false, true)
            })
            .collect();

        // IFA: B_1 e into the first hidden layer, then up through the hidden layers' own
        // weights (forward-shaped products).
        let ifa: Vec<Product> = std::iter::once(Product::new(
            format!("ifa  B1 e   ({}x{CLASSES} . {CLASSES}x{batch})", dims[1]),
            (dims[1], CLASSES, batch),
            false,
            false,
        ))
        .chain((1..layers - 1).map(|l| {
            let what = format!(
                "ifa  W{l} δ  ({}x{} . {}x{batch})",
                dims[l + 1],
                dims[l],
                dims[l]
            );
            Product::new(what, (dims[l + 1], dims[l], batch), false, false)
        }))
        .collect();
        StepProducts {
            forward,
            chain,
            dfa,
            ifa,
            grads,
            hidden_total,
            dims,
        }
    }
}

/// Times the pieces of a step in isolation.
fn breakdown(args: &Args, steps: &[(Rule, f64)]) -> Result<()> {
    let (warmup, repeats) = (args.warmup.max(3), args.repeats.max(20));
    let batch = args.batch;
    let mut rng = ChaCha8Rng::seed_from_u64(1);
    let StepProducts {
        forward,
        chain,
        dfa,
        ifa,
        grads,
        hidden_total,
        dims,
    } = StepProducts::new(args);
    let layers = dims.len() - 1;
    println!();
    println!("Breakdown: the step's products as the CPU backend runs them (\"best\": the lower of that and the same shape with untransposed operands) and its elementwise passes");
    println!();
    println!(
        "| piece {:<38} | median ms | min ms | GFLOP/s | best ms |\n|{}|----------:|-------:|--------:|--------:|",
        "",
        "-".repeat(46)
    );
    // Each product's median as the backend runs it, and its best: the lower of that and
    // the same shape with both operands untransposed (what a transposed product could
    // reach laid out in faer's favour).
    let mut scratch = Vec::new();
    let mut time = |p: &Product, par: Option<Par>| -> Result<(f64, f64)> {
        let mut measure = |p: &Product| -> Result<Timing> {
            let mut o = Operands::new(p, &mut rng);
            time_repeated(warmup, repeats, || {
                p.run(&mut o.c, &o.a, &o.b, par, &mut scratch)
            })
        };
        let t = measure(p)?;
        let best = if p.trans_a || p.trans_b {
            ms(t.median).min(ms(measure(&p.untransposed())?.median))
        } else {
            ms(t.median)
        };
        row(&p.what, &t, Some(2.0 * p.macs() as f64 * 1e-9), Some(best));
        Ok((ms(t.median), best))
    };
    // Per product: (median as the backend runs it, best).
    let mut each = |products: &[Product], par: Option<Par>| -> Result<Vec<(f64, f64)>> {
        products.iter().map(|p| time(p, par)).collect()
    };
    let sums = |times: &[(f64, f64)]| -> (f64, f64) {
        times
            .iter()
            .fold((0.0, 0.0), |(s, b), &(t, best)| (s + t, b + best))
    };
    let (fwd_ms, fwd_best) = sums(&each(&forward, None)?);
    let (chain_ms, chain_best) = sums(&each(&chain, None)?);
    let (dfa_ms, dfa_best) = sums(&each(std::slice::from_ref(&dfa), None)?);
    let (_, ifa_best) = sums(&each(&ifa, None)?);
    let grad_times = each(&grads, Some(Par::rayon(rayon::current_num_threads())))?;
    let (grads_ms, _) = sums(&grad_times);
    let last_grad_ms = grad_times[layers - 1].1;

    // The backend's default (`LayerParallelism::Auto`) runs the gradient products one per
    // thread when there are at least as many layers as threads.
    let mut ops: Vec<Operands> = grads.iter().map(|p| Operands::new(p, &mut rng)).collect();
    let across = time_repeated(warmup, repeats, || {
        ops.par_iter_mut()
            .zip(&grads)
            .try_for_each(|(o, p)| p.run(&mut o.c, &o.a, &o.b, Some(Par::Seq), &mut Vec::new()))
    })?;
    let grad_flops: f64 = grads.iter().map(|p| 2.0 * p.macs() as f64 * 1e-9).sum();
    row(
        "grad, all layers across threads (Par::Seq)",
        &across,
        Some(grad_flops),
        None,
    );

    // Elementwise: bias + tanh over every hidden output, the tanh derivative, SGD update.
    let hidden_len = hidden_total * batch;
    // Like the backend: z = tanh(product + bias), read from one buffer, written to another
    // (and not iterated in place, which would drift the values).
    let h: Vec<f32> = (0..hidden_len)
        .map(|_| rng.random_range(-2.0f32..2.0))
        .collect();
    let mut z = vec![0.0f32; hidden_len];
    let tanh = time_repeated(warmup, repeats, || {
        z.par_chunks_mut(1 << 14)
            .zip(h.par_chunks(1 << 14))
            .for_each(|(z, h)| {
                z.iter_mut()
                    .zip(h)
                    .for_each(|(z, h)| *z = Activation::Tanh.apply(*h + 0.1));
            });
        Ok(())
    })?;
    row(
        &format!("tanh over {hidden_len} hidden outputs"),
        &tanh,
        None,
        None,
    );
    let hz = z.clone();
    let dtanh = time_repeated(warmup, repeats, || {
        z.par_iter_mut()
            .zip(hz.par_iter())
            .for_each(|(d, h)| *d = 0.5 * Activation::Tanh.derivative_from_output(*h));
        Ok(())
    })?;
    row(
        &format!("tanh' over {hidden_len} hidden deltas"),
        &dtanh,
        None,
        None,
    );
    let params: usize = (0..layers).map(|l| dims[l + 1] * (dims[l] + 1)).sum();
    let mut w: Vec<f32> = vec![0.5; params];
    let g: Vec<f32> = vec![1e-3; params];
    let sgd = time_repeated(warmup, repeats, || {
        w.par_chunks_mut(1 << 14)
            .zip(g.par_chunks(1 << 14))
            .for_each(|(w, g)| w.iter_mut().zip(g).for_each(|(w, g)| *w -= 0.01 * g));
        Ok(())
    })?;
    row(
        &format!("sgd w -= lr g over {params} params"),
        &sgd,
        None,
        None,
    );

    // The CPU backend's optimizer pass: `UpdateStep::apply_slice` per chunk over params,
    // the two state buffers and the gradient, with a finiteness check folded in.
    let step = Optimizer::sgd(0.01).step_params(1);
    let (mut s0, mut s1) = (vec![0.0f32; params], vec![0.0f32; params]);
    let backend_sgd = time_repeated(warmup, repeats, || {
        const CHUNK: usize = 1 << 14;
        let finite = w
            .par_chunks_mut(CHUNK)
            .zip(s0.par_chunks_mut(CHUNK))
            .zip(s1.par_chunks_mut(CHUNK))
            .zip(g.par_chunks(CHUNK))
            .map(|(((p, a), b), g)| step.apply_slice(p, g, a, b))
            .reduce(|| true, |x, y| x && y);
        if finite {
            Ok(())
        } else {
            Err(Error::Backend("non-finite parameters".into()))
        }
    })?;
    row(
        "sgd as the backend's optimizer pass",
        &backend_sgd,
        None,
        None,
    );

    let elementwise = ms(tanh.median) + ms(dtanh.median) + ms(backend_sgd.median);
    println!();
    println!("Sums of medians (ms): forward GEMMs {fwd_ms:.2}, BP/FA delta chain {chain_ms:.2}, \
              DFA delta {dfa_ms:.2}, gradient GEMMs {grads_ms:.2} sequential / {:.2} across layers, \
              elementwise {elementwise:.2}",
             ms(across.median));

    // The floor: every product of the step at its best, summed (no elementwise work).
    let grads_best = grads_ms.min(ms(across.median));
    let floor = |rule: Rule| -> f64 {
        fwd_best
            + match Deltas::of(rule) {
                Deltas::Direct => dfa_best + grads_best,
                Deltas::Indirect => ifa_best + grads_best,
                Deltas::None => last_grad_ms,
                Deltas::Chain => chain_best + grads_best,
            }
    };
    println!();
    println!("Floor: the step's products each at its best, summed; the step against it");
    println!();
    println!("| rule | step ms | floor ms | step / floor |\n|------|--------:|---------:|-------------:|");
    for &(rule, step_ms) in steps {
        let f = floor(rule);
        println!(
            "| {:<4} | {step_ms:>7.2} | {f:>8.2} | {:>11.2}x |",
            rule.name(),
            step_ms / f
        );
    }
    Ok(())
}

/// Per round and rule: the median of 5 steps, then the rule's floor (each product the
/// median of 3 runs at its best, the weight gradients the lower of their sum and all
/// layers across threads), so both see the machine at the same speed.
fn paired(args: &Args, data: &Dataset) -> Result<()> {
    const STEPS: usize = 5;
    const RUNS: usize = 3;
    let products = StepProducts::new(args);
    let batches = batches(args);
    let mut rng = ChaCha8Rng::seed_from_u64(2);
    let mut trainers = Vec::new();
    for &rule in &args.rules {
        trainers.push((rule, trainer(args, rule)?));
    }
    // Operands sized for each shape (an untransposed run of a shape needs the same).
    let mut operands = |list: &[Product]| -> Vec<Operands> {
        list.iter().map(|p| Operands::new(p, &mut rng)).collect()
    };
    let mut fwd_ops = operands(&products.forward);
    let mut chain_ops = operands(&products.chain);
    let mut dfa_ops = operands(std::slice::from_ref(&products.dfa));
    let mut ifa_ops = operands(&products.ifa);
    let mut grad_ops = operands(&products.grads);
    let mut scratch = Vec::new();
    // A product's time at its best: as the backend runs it, or untransposed if faster.
    let mut best = |p: &Product, o: &mut Operands, par: Option<Par>| -> Result<f64> {
        let mut median = |p: &Product| -> Result<f64> {
            let t = time_repeated(1, RUNS, || p.run(&mut o.c, &o.a, &o.b, par, &mut scratch))?;
            Ok(ms(t.median))
        };
        let t = median(p)?;
        if p.trans_a || p.trans_b {
            Ok(t.min(median(&p.untransposed())?))
        } else {
            Ok(t)
        }
    };
    let threads = Some(Par::rayon(rayon::current_num_threads()));
    let mut rows: Vec<Vec<(f64, f64)>> = vec![Vec::new(); trainers.len()];
    for _ in 0..args.paired {
        for ((rule, trainer), row) in trainers.iter_mut().zip(&mut rows) {
            let step = time_steps(trainer, data, &batches, (1, STEPS))?;
            let mut floor = 0.0;
            for (p, o) in products.forward.iter().zip(&mut fwd_ops) {
                floor += best(p, o, None)?;
            }
            let deltas = Deltas::of(*rule);
            let (middle, ops) = match deltas {
                Deltas::Direct => (std::slice::from_ref(&products.dfa), &mut dfa_ops),
                Deltas::Indirect => (&products.ifa[..], &mut ifa_ops),
                Deltas::None => (&[][..], &mut dfa_ops),
                Deltas::Chain => (&products.chain[..], &mut chain_ops),
            };
            for (p, o) in middle.iter().zip(ops.iter_mut()) {
                floor += best(p, o, None)?;
            }
            let last = products.grads.len() - 1;
            floor += if matches!(deltas, Deltas::None) {
                best(&products.grads[last], &mut grad_ops[last], threads)?
            } else {
                let mut one_by_one = 0.0;
                for (p, o) in products.grads.iter().zip(&mut grad_ops) {
                    one_by_one += best(p, o, threads)?;
                }
                let across = time_repeated(1, RUNS, || {
                    grad_ops
                        .par_iter_mut()
                        .zip(&products.grads)
                        .try_for_each(|(o, p)| {
                            p.run(&mut o.c, &o.a, &o.b, Some(Par::Seq), &mut Vec::new())
                        })
                })?;
                one_by_one.min(ms(across.median))
            };
            row.push((ms(step.median), floor));
        }
    }
    println!();
    println!(
        "Paired: {} rounds, each a rule's step (median of {STEPS}) then its floor right after",
        args.paired
    );
    println!();
    println!(
        "| rule | step ms | floor ms | step / floor (median) | lowest | highest |\n\
         |------|--------:|---------:|----------------------:|-------:|--------:|"
    );
    let median = |mut v: Vec<f64>| -> f64 {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    for ((rule, _), row) in trainers.iter().zip(rows) {
        let ratios: Vec<f64> = row.iter().map(|(s, f)| s / f).collect();
        let (lo, hi) = ratios
            .iter()
            .fold((f64::MAX, 0.0f64), |(lo, hi), &r| (lo.min(r), hi.max(r)));
        println!(
            "| {:<4} | {:>7.2} | {:>8.2} | {:>20.2}x | {lo:>5.2}x | {hi:>6.2}x |",
            rule.name(),
            median(row.iter().map(|r| r.0).collect()),
            median(row.iter().map(|r| r.1).collect()),
            median(ratios),
        );
    }
    Ok(())
}
