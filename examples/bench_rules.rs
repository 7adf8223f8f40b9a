//! What DFA's layer-parallel updates buy over sequential backprop: one training step
//! of BP, FA and DFA timed over a grid of network shapes, on the CPU or a GPU.
//!
//! ```text
//! cargo run --release --example bench_rules -- --device cpu --quick
//! cargo run --release --example bench_rules -- --device gpu --widths 256,1024,4096 \
//!     --depths 2,4,8,16 --batch 128 --json bench.json --plot speedup.svg
//! cargo run --release --example bench_rules -- --device gpu --gemm 1024,2048,4096,1024x128x1024
//! ```
//!
//! A shape (see `plasticity::bench`) is `width` inputs, `depth` tanh hidden layers of
//! `width` units and 10 outputs under softmax cross-entropy, plain SGD, random data.
//! One row per shape: the median step time of each rule, DFA's speedup over BP,
//! samples/s, the step's GEMM throughput (GEMM FLOPs / median time), and the
//! operations on the step's critical path (dependent dispatches on a GPU; from a dry
//! run of the same step).
//!
//! The rules take turns, one timed step each per round after an untimed one of their
//! own (`plasticity::bench::time_in_turns`), and DFA's speedup is the median of the
//! rounds' BP/DFA ratios: a shared machine whose speed drifts over seconds slows both
//! alike. Timed one rule after the other, that ratio at width 256 depth 8 read 1.11x in
//! one run and 1.49x in the next on a 2-core VM; in turns, 1.45-1.48x over three runs.
//! Where the free memory cannot hold every rule's trainer at once, they run one after
//! another, and the output says so.
//! `--gemm N,MxNxK,...` times the bare GEMM (NN, TN, NT) at square sizes or given
//! shapes instead (on a GPU, each of its kernels too).
//! The reference scripts in `benches/reference/` time the same steps in NumPy and
//! PyTorch.

mod common;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use common::plot::{LineChart, Series};
use common::{bad, flag_pairs_with_switches, parse, AnyResult};
use plasticity::backend::gpu::GemmKernel;
use plasticity::backend::{Backend, Gemm, GpuBackend, Mat};
use plasticity::bench::{
    available_memory, median_ratio, time_in_turns, time_repeated, StepShape, Timing,
};
use plasticity::checkpoint::write_atomic;
use plasticity::{Device, Error, Result, Rule};
use serde::Serialize;

const USAGE: &str = "usage: bench_rules [--device auto|cpu|gpu|gpu:N] [--quick] \
[--widths 256,1024,4096] [--depths 2,4,8,16] [--batch 128] [--rules bp,fa,dfa] \
[--warmup 2] [--repeats 30] [--budget-ms 1500] [--inner 1] [--json FILE] \
[--plot FILE.svg|FILE.png] [--gemm N,MxNxK,...]";

struct Args {
    device: Device,
    widths: Vec<usize>,
    depths: Vec<usize>,
    batches: Vec<usize>,
    rules: Vec<Rule>,
    warmup: usize,
    /// Most timed samples per rule and shape.
    repeats: usize,
    /// Time to aim for per rule and shape: slow shapes take fewer samples (at least 3).
    budget: Duration,
    inner: usize,
    json: Option<PathBuf>,
    plot: Option<PathBuf>,
    /// `--gemm`: square sizes or `MxNxK` shapes.
    gemm: Vec<GemmShape>,
}

fn list<T: std::str::FromStr>(flag: &str, value: &str) -> Result<Vec<T>> {
    value
        .split(',')
        .map(|v| parse(USAGE, flag, v.trim()))
        .collect()
}

fn parse_args() -> Result<Args> {
    let mut args = Args {
        device: Device::Cpu,
        widths: vec![256, 1024, 4096],
        depths: vec![2, 4, 8, 16],
        batches: vec![128],
        rules: vec![
            Rule::Backprop,
            Rule::FeedbackAlignment,
            Rule::DirectFeedbackAlignment,
        ],
        warmup: 2,
        repeats: 30,
        budget: Duration::from_millis(1500),
        inner: 1,
        json: None,
        plot: None,
        gemm: Vec::new(),
    };
    let pairs = flag_pairs_with_switches(USAGE, &["--quick"])?;
    let named_device = pairs.iter().any(|(flag, _)| flag == "--device");
    // `--quick` sets defaults that the other flags may then override.
    if pairs.iter().any(|(flag, _)| flag == "--quick") {
        args.widths = vec![256];
        args.depths = vec![2, 4, 8];
        args.batches = vec![32];
        args.warmup = 1;
        args.repeats = 10;
        args.budget = Duration::from_millis(300);
    }
    for (flag, value) in pairs {
        match flag.as_str() {
            "--quick" => {}
            "--device" => args.device = Device::from_name(&value)?,
            "--widths" => args.widths = list(&flag, &value)?,
            "--depths" => args.depths = list(&flag, &value)?,
            "--batch" => args.batches = list(&flag, &value)?,
            "--rules" | "--rule" => {
                args.rules = value
                    .split(',')
                    .map(|r| {
                        Rule::from_name(r.trim()).ok_or_else(|| bad(USAGE, &format!("rule {r}?")))
                    })
                    .collect::<Result<_>>()?
            }
            "--warmup" => args.warmup = parse(USAGE, &flag, &value)?,
            "--repeats" => args.repeats = parse(USAGE, &flag, &value)?,
            "--budget-ms" => args.budget = Duration::from_millis(parse(USAGE, &flag, &value)?),
            "--inner" => args.inner = parse(USAGE, &flag, &value)?,
            "--json" => args.json = Some(value.into()),
            "--plot" => args.plot = Some(value.into()),
            "--gemm" => args.gemm = list(&flag, &value)?,
            _ => return Err(bad(USAGE, &format!("unknown option {flag}"))),
        }
    }
    let sizes = args.widths.iter().chain(&args.depths).chain(&args.batches);
    let empty_gemm = args.gemm.iter().any(GemmShape::is_empty);
    if sizes.copied().any(|n| n == 0) || empty_gemm || args.repeats == 0 || args.inner == 0 {
        return Err(bad(USAGE, "sizes, --repeats and --inner must be positive"));
    }
    if args.rules.is_empty() || args.widths.is_empty() || args.depths.is_empty() {
        return Err(bad(USAGE, "nothing to run"));
    }
    if let Some(p) = &args.plot {
        let ext = p.extension().and_then(|e| e.to_str()).unwrap_or("");
        if !matches!(ext.to_ascii_lowercase().as_str(), "svg" | "png") {
            return Err(bad(USAGE, "--plot wants a .svg or .png file"));
        }
    }
    // Outputs are written after the run: a missing folder should not cost it.
    for path in args.json.iter().chain(&args.plot) {
        let dir = path.parent().filter(|d| !d.as_os_str().is_empty());
        if dir.is_some_and(|d| !d.is_dir()) {
            return Err(bad(USAGE, &format!("{}: no such folder", path.display())));
        }
    }
    // Probing for adapters only once the command line is known good and names no device.
    if !named_device {
        args.device = Device::auto()?;
    }
    Ok(args)
}

/// One rule's measurement at one shape.
#[derive(Serialize)]
struct RuleResult {
    median_ms: f64,
    min_ms: f64,
    repeats: usize,
    samples_per_s: f64,
    gemm_gflops: f64,
    gflop_per_step: f64,
    dispatches: usize,
    critical_path: usize,
}

#[derive(Serialize)]
struct Row {
    width: usize,
    depth: usize,
    batch: usize,
    /// Whether the rules took turns (else one ran after another, for memory).
    in_turns: bool,
    /// Median ms per rule name, as the reference scripts write it.
    ms: BTreeMap<String, f64>,
    min_ms: BTreeMap<String, f64>,
    samples_per_s: BTreeMap<String, f64>,
    dfa_speedup: Option<f64>,
    rules: BTreeMap<String, RuleResult>,
}

#[derive(Serialize)]
struct Skipped {
    width: usize,
    depth: usize,
    batch: usize,
    reason: String,
}

#[derive(Serialize)]
struct GemmResult {
    m: usize,
    n: usize,
    k: usize,
    variant: &'static str,
    kernel: &'static str,
    median_ms: f64,
    gflops: f64,
}

#[derive(Serialize)]
struct Report {
    tool: &'static str,
    device: String,
    threads: Option<usize>,
    rows: Vec<Row>,
    skipped: Vec<Skipped>,
    gemm: Vec<GemmResult>,
}

/// Errors that mean "this shape does not fit this device", not "the run failed".
fn does_not_fit(e: &Error) -> bool {
    matches!(e, Error::BufferTooLarge { .. } | Error::OutOfMemory(_))
}

/// How a shape's rules are timed, by the memory their trainers need.
enum Fit {
    /// Every rule's trainer at once, the rules taking turns.
    InTurns,
    /// One trainer at a time (too little memory for all at once): a speedup between
    /// them then also carries the machine's drift from one rule to the next.
    OneAfterAnother,
}

/// Whether the rules' trainers fit at once, one at a time, or not at all (the reason).
/// `StepShape::device_bytes` is an upper bound (every arena of every rule), so all of
/// them within the free memory fit; one alone keeps the old margin of half of it.
fn fit(args: &Args, shape: StepShape) -> std::result::Result<Fit, String> {
    let free = match (args.device, available_memory()) {
        (Device::Cpu, Some(free)) => free,
        _ => return Ok(Fit::InTurns),
    };
    let one = shape.device_bytes();
    if one.saturating_mul(args.rules.len() as u64) <= free {
        Ok(Fit::InTurns)
    } else if one <= free / 2 {
        Ok(Fit::OneAfterAnother)
    } else {
        Err(format!(
            "needs {} MiB, over half the {} MiB available",
            one >> 20,
            free >> 20
        ))
    }
}

/// The steps of `rules` at one shape, taking turns (see `time_in_turns`): a first warm
/// step per rule sizes the run, so slow shapes take fewer rounds.
fn measure(
    args: &Args,
    shape: StepShape,
    rules: &[Rule],
) -> Result<Vec<(RuleResult, Vec<Duration>)>> {
    let mut profiles = Vec::with_capacity(rules.len());
    let mut trainers = Vec::with_capacity(rules.len());
    for &rule in rules {
        profiles.push(shape.profile(rule)?);
        trainers.push(shape.trainer(rule, args.device)?);
    }
    let data = shape.data(4, 7)?;
    let probe = time_in_turns(&mut trainers, &data, args.warmup, 1, 1)?;
    let slowest = probe.iter().flatten().max().copied().unwrap_or_default();
    // Each round costs the slowest rule one untimed step besides its `inner` timed ones.
    let per_round = slowest.max(Duration::from_micros(1)) * (args.inner as u32 + 1);
    let affordable = (args.budget.as_secs_f64() / per_round.as_secs_f64()) as usize;
    let rounds = affordable.clamp(3, args.repeats.max(3));
    let samples = time_in_turns(&mut trainers, &data, 0, rounds, args.inner)?;
    Ok(profiles
        .into_iter()
        .zip(samples)
        .map(|(profile, times)| {
            let t = Timing::from_samples(times.clone()).expect("at least 3 rounds");
            let seconds = t.median.as_secs_f64();
            let result = RuleResult {
                median_ms: t.median_ms(),
                min_ms: t.min_ms(),
                repeats: rounds,
                samples_per_s: shape.batch as f64 / seconds,
                gemm_gflops: profile.gemm_flops as f64 / seconds / 1e9,
                gflop_per_step: profile.gemm_flops as f64 / 1e9,
                dispatches: profile.ops,
                critical_path: profile.critical_path,
            };
            (result, times)
        })
        .collect())
}

fn run_shape(args: &Args, shape: StepShape) -> Result<std::result::Result<Row, String>> {
    let fit = match fit(args, shape) {
        Ok(fit) => fit,
        Err(reason) => return Ok(Err(reason)),
    };
    let results = match fit {
        Fit::InTurns => measure(args, shape, &args.rules),
        Fit::OneAfterAnother => {
            println!(
                "({}x{}: too little memory for every rule's trainer at once, so the rules \
                 run one after another)",
                shape.width, shape.depth
            );
            args.rules
                .iter()
                .map(|&rule| measure(args, shape, &[rule]).map(|mut r| r.remove(0)))
                .collect()
        }
    };
    let results = match results {
        Ok(r) => r,
        Err(e) if does_not_fit(&e) => return Ok(Err(e.to_string())),
        Err(e) => return Err(e),
    };
    let mut row = Row {
        width: shape.width,
        depth: shape.depth,
        batch: shape.batch,
        in_turns: matches!(fit, Fit::InTurns),
        ms: BTreeMap::new(),
        min_ms: BTreeMap::new(),
        samples_per_s: BTreeMap::new(),
        dfa_speedup: None,
        rules: BTreeMap::new(),
    };
    let mut rounds = BTreeMap::new();
    for (&rule, (r, times)) in args.rules.iter().zip(results) {
        let name = rule.name().to_string();
        row.ms.insert(name.clone(), r.median_ms);
        row.min_ms.insert(name.clone(), r.min_ms);
        row.samples_per_s.insert(name.clone(), r.samples_per_s);
        row.rules.insert(name, r);
        rounds.insert(rule.name(), times);
    }
    if let (Some(bp), Some(dfa)) = (
        rounds.get(Rule::Backprop.name()),
        rounds.get(Rule::DirectFeedbackAlignment.name()),
    ) {
        // Round by round when the two took turns; else their medians' ratio.
        row.dfa_speedup = if row.in_turns {
            median_ratio(bp, dfa)
        } else {
            let ms = |name: &str| row.ms.get(name).copied();
            ms(Rule::Backprop.name())
                .zip(ms(Rule::DirectFeedbackAlignment.name()))
                .map(|(b, d)| b / d)
        };
    }
    Ok(Ok(row))
}

/// `a/b/c` of each rule's value, in the order of `--rules`.
fn per_rule(args: &Args, row: &Row, f: impl Fn(&RuleResult) -> String) -> String {
    args.rules
        .iter()
        .filter_map(|r| row.rules.get(r.name()).map(&f))
        .collect::<Vec<_>>()
        .join(" / ")
}

fn print_header(args: &Args) {
    let names: Vec<String> = args.rules.iter().map(|r| r.name().to_uppercase()).collect();
    let cols: Vec<String> = names.iter().map(|n| format!("{n} ms")).collect();
    println!(
        "| width | depth | batch | {} | DFA speedup | samples/s ({}) | GEMM GFLOP/s ({}) | critical path ({}) |",
        cols.join(" | "),
        names.join(" / "),
        names.join(" / "),
        names.join(" / "),
    );
    let rule_cols = "|---:".repeat(args.rules.len());
    println!("|---:|---:|---:{rule_cols}|---:|---:|---:|---:|");
}

fn print_row(args: &Args, row: &Row) {
    let times: Vec<String> = args
        .rules
        .iter()
        .map(|r| {
            row.rules
                .get(r.name())
                .map_or("-".into(), |x| format!("{:.3}", x.median_ms))
        })
        .collect();
    let speedup = row.dfa_speedup.map_or("-".into(), |s| format!("{s:.2}x"));
    println!(
        "| {} | {} | {} | {} | {} | {} | {} | {} |",
        row.width,
        row.depth,
        row.batch,
        times.join(" | "),
        speedup,
        per_rule(args, row, |r| format!("{:.0}", r.samples_per_s)),
        per_rule(args, row, |r| format!("{:.1}", r.gemm_gflops)),
        per_rule(args, row, |r| r.critical_path.to_string()),
    );
}

/// A product's size: `op(A)` is `m x k`, `op(B)` `k x n`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct GemmShape {
    m: usize,
    n: usize,
    k: usize,
}

impl std::str::FromStr for GemmShape {
    type Err = ();

    /// `N` (square) or `MxNxK`.
    fn from_str(s: &str) -> std::result::Result<Self, ()> {
        let dims: Vec<usize> = s
            .split('x')
            .map(|d| d.trim().parse().map_err(|_| ()))
            .collect::<std::result::Result<_, ()>>()?;
        match dims[..] {
            [n] => Ok(GemmShape { m: n, n, k: n }),
            [m, n, k] => Ok(GemmShape { m, n, k }),
            _ => Err(()),
        }
    }
}

impl GemmShape {
    fn is_empty(&self) -> bool {
        self.m == 0 || self.n == 0 || self.k == 0
    }

    fn flops(&self) -> f64 {
        2.0 * self.m as f64 * self.n as f64 * self.k as f64
    }
}

/// Times `reps` products of one transpose variant of `shape`.
fn time_gemm(
    backend: &mut dyn Backend,
    shape: GemmShape,
    trans: (bool, bool),
    reps: usize,
) -> Result<f64> {
    let GemmShape { m, n, k } = shape;
    let (ar, ac) = if trans.0 { (k, m) } else { (m, k) };
    let (br, bc) = if trans.1 { (n, k) } else { (k, n) };
    let a = backend.alloc(m * k)?;
    let b = backend.alloc(k * n)?;
    let c = backend.alloc(m * n)?;
    let values = |len: usize| -> Vec<f32> {
        (0..len)
            .map(|i| ((i * 7919) % 1000) as f32 / 1000.0 - 0.5)
            .collect()
    };
    backend.write(a, 0, &values(m * k))?;
    backend.write(b, 0, &values(k * n))?;
    let op = Gemm::new(
        Mat::new(c, 0, m, n),
        Mat::new(a, 0, ar, ac),
        trans.0,
        Mat::new(b, 0, br, bc),
        trans.1,
    );
    let t = time_repeated(1, reps, || {
        backend.gemm(&op)?;
        backend.synchronize()
    })?;
    Ok(t.median_ms())
}

/// A fresh backend for `--gemm`: on a GPU, with its GEMM kernel forced (`Some`) or
/// picked by size (`None`), and split over K into up to `split` slices when given.
fn gemm_backend(
    device: Device,
    kernel: Option<GemmKernel>,
    split: Option<usize>,
) -> Result<Box<dyn Backend>> {
    let mut gpu = match device {
        Device::Cpu => return device.backend(),
        Device::Gpu => GpuBackend::new()?,
        Device::GpuAdapter(i) => GpuBackend::with_adapter(i)?,
    };
    gpu.force_gemm_kernel(kernel);
    gpu.force_split_k(split);
    Ok(Box::new(gpu))
}

fn run_gemm(args: &Args, report: &mut Report) -> Result<()> {
    // On a GPU, every kernel at every size, unsplit and split over K into 4 and 16
    // slices: the data behind the rules that pick a kernel and a split.
    type Variant = (Option<GemmKernel>, Option<usize>, &'static str);
    let kernels: &[Variant] = match args.device {
        Device::Cpu => &[(None, None, "faer")],
        _ => &[
            (None, None, "auto"),
            (Some(GemmKernel::Tile32), Some(1), "32x32"),
            (Some(GemmKernel::Tile32), Some(4), "32x32 split 4"),
            (Some(GemmKernel::Tile32), Some(16), "32x32 split 16"),
            (Some(GemmKernel::Tile64), Some(1), "64x64"),
            (Some(GemmKernel::Tile64), Some(4), "64x64 split 4"),
            (Some(GemmKernel::Tile128), None, "128x128"),
        ],
    };
    println!("| m x n x k | variant | kernel | median ms | GFLOP/s |\n|---|---|---|---:|---:|");
    for &shape in &args.gemm {
        let size = format!("{}x{}x{}", shape.m, shape.n, shape.k);
        for &(forced, split, kernel) in kernels {
            // A fresh backend per size and kernel keeps earlier buffers out of memory.
            let mut backend = gemm_backend(args.device, forced, split)?;
            for (variant, trans) in [
                ("NN", (false, false)),
                ("TN", (true, false)),
                ("NT", (false, true)),
            ] {
                let ms = match time_gemm(&mut *backend, shape, trans, args.repeats.min(20)) {
                    Ok(ms) => ms,
                    Err(e) if does_not_fit(&e) => {
                        println!("| {size} | {variant} | {kernel} | skipped: {e} | |");
                        continue;
                    }
                    Err(e) => return Err(e),
                };
                let gflops = shape.flops() / (ms * 1e-3) / 1e9;
                println!("| {size} | {variant} | {kernel} | {ms:.3} | {gflops:.1} |");
                report.gemm.push(GemmResult {
                    m: shape.m,
                    n: shape.n,
                    k: shape.k,
                    variant,
                    kernel,
                    median_ms: ms,
                    gflops,
                });
            }
        }
    }
    Ok(())
}

fn speedup_chart(report: &Report, device: &str) -> LineChart {
    let mut groups: BTreeMap<(usize, usize), Vec<(f64, f64)>> = BTreeMap::new();
    for row in &report.rows {
        if let Some(s) = row.dfa_speedup {
            groups
                .entry((row.width, row.batch))
                .or_default()
                .push((row.depth as f64, s));
        }
    }
    let batches: std::collections::BTreeSet<usize> = report.rows.iter().map(|r| r.batch).collect();
    let series = groups
        .into_iter()
        .map(|((width, batch), mut points)| {
            points.sort_by(|a, b| a.0.total_cmp(&b.0));
            let label = if batches.len() > 1 {
                format!("width {width}, batch {batch}")
            } else {
                format!("width {width}")
            };
            Series { label, points }
        })
        .collect();
    LineChart {
        title: format!("DFA step speedup over BP ({device})"),
        x_label: "hidden layers (depth)".into(),
        y_label: "BP time / DFA time".into(),
        series,
        reference_y: Some(1.0),
        log2_x: true,
    }
}

fn run(args: &Args) -> AnyResult<()> {
    let probe = args.device.backend()?;
    let device = probe.name();
    drop(probe);
    let threads = (args.device == Device::Cpu).then(rayon::current_num_threads);
    println!("device: {device}");
    let mut report = Report {
        tool: "plasticity",
        device: device.clone(),
        threads,
        rows: Vec::new(),
        skipped: Vec::new(),
        gemm: Vec::new(),
    };
    if !args.gemm.is_empty() {
        run_gemm(args, &mut report)?;
    } else {
        print_header(args);
        for &batch in &args.batches {
            for &width in &args.widths {
                for &depth in &args.depths {
                    let shape = StepShape {
                        width,
                        depth,
                        batch,
                    };
                    match run_shape(args, shape)? {
                        Ok(row) => {
                            print_row(args, &row);
                            report.rows.push(row);
                        }
                        Err(reason) => {
                            println!("| {width} | {depth} | {batch} | skipped: {reason} |");
                            report.skipped.push(Skipped {
                                width,
                                depth,
                                batch,
                                reason,
                            });
                        }
                    }
                }
            }
        }
    }
    if let Some(path) = &args.json {
        let text = serde_json::to_string_pretty(&report)?;
        write_atomic(path, text.as_bytes())?;
        println!("wrote {}", path.display());
    }
    if let Some(path) = &args.plot {
        speedup_chart(&report, &device).write(path)?;
        println!("wrote {}", path.display());
    }
    Ok(())
}

fn main() -> std::process::ExitCode {
    common::quiet_gpu_probe();
    let outcome = parse_args()
        .map_err(|e| -> Box<dyn std::error::Error> { e.into() })
        .and_then(|args| run(&args));
    match outcome {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            common::report_failure(&e);
            std::process::ExitCode::FAILURE
        }
    }
}
