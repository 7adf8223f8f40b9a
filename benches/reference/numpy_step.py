#!/usr/bin/env python3
"""One SGD training step of an MLP in plain NumPy (float32), for BP, FA and DFA.

A CPU timing reference for `examples/step_time.rs` and `examples/bench_rules.rs`, written
the way one would naturally write it in NumPy: row-major, batch-major (x: [B, in],
W: [out, in], z = x @ W.T + b), every product a BLAS sgemm, tanh hidden layers, identity
output, softmax cross-entropy averaged over the batch, plain SGD. DFA forms every hidden
delta from ONE product e @ B_all (B_all = [B_1 | ... | B_d]) and slices it; FA runs the
BP chain with fixed random B_{l+1} in place of W_{l+1}.

Two modes:

* fixed net (the `step_time` comparison): 784 inputs, the given hidden widths, 10 classes

      python3 benches/reference/numpy_step.py --hidden 1024,1024,1024 --batch 128 \\
          --repeats 50 --warmup 5 --threads 2

* grid (the `bench_rules` comparison), chosen by --widths/--depths or --quick: for every
  width w, depth d and batch b, a net with w inputs, d hidden layers of width w and 10
  classes (d + 1 weight layers)

      python3 benches/reference/numpy_step.py --widths 256,1024 --depths 2,4,8 \\
          --batch 32,128 --json numpy.json
      python3 benches/reference/numpy_step.py --quick

Timing: --warmup untimed steps, then --repeats samples of --inner steps each; the step
time is sample time / inner; the median and the minimum are reported. Random data,
seeded (a few distinct batches cycled through): only the time matters.
"""

import argparse
import json
import os
import sys

INPUTS = 784
CLASSES = 10
RULES = ("bp", "fa", "dfa")
# Grid defaults (the same as torch_step.py and bench_rules).
GRID_WIDTHS, GRID_DEPTHS, GRID_BATCH = "256,1024,4096", "2,4,8,16", "32,128,512"


def int_list(p, flag, text):
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        p.error(f"{flag} wants comma-separated integers, got {text!r}")
    if not values or min(values) < 1:
        p.error(f"{flag} wants positive integers, got {text!r}")
    return values


def parse_args():
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="\n\n".join(__doc__.split("\n\n")[1:]))
    p.add_argument("--hidden", default=None,
                   help="fixed-net mode: comma-separated hidden widths, 784 inputs "
                        "(default 1024,1024,1024)")
    p.add_argument("--widths", default=None,
                   help=f"grid mode: comma-separated widths (grid default {GRID_WIDTHS})")
    p.add_argument("--depths", default=None,
                   help=f"grid mode: comma-separated hidden-layer counts "
                        f"(grid default {GRID_DEPTHS})")
    p.add_argument("--batch", default=None,
                   help=f"comma-separated batch sizes (default 128 for --hidden, "
                        f"{GRID_BATCH} for the grid)")
    p.add_argument("--quick", action="store_true",
                   help="grid mode, small: widths 256, depths 2,4, batch 32, few repeats")
    p.add_argument("--repeats", type=int, default=None,
                   help="timed samples (default 50 for --hidden, 20 for the grid, "
                        "10 with --quick)")
    p.add_argument("--warmup", type=int, default=None,
                   help="untimed steps first (default 5, 3 with --quick)")
    p.add_argument("--inner", type=int, default=1, help="steps per timed sample (default 1)")
    p.add_argument("--threads", type=int, default=os.cpu_count(),
                   help="BLAS threads (default: all cores)")
    p.add_argument("--rule", default="all", help="bp, fa, dfa, a comma list of them, or all")
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--json", default=None, metavar="FILE",
                   help="grid mode: also write the results as JSON to FILE")
    args = p.parse_args()

    args.grid = args.quick or args.widths is not None or args.depths is not None
    if args.grid and args.hidden is not None:
        p.error("--hidden (fixed net) and --widths/--depths/--quick (grid) exclude each other")
    if args.json and not args.grid:
        p.error("--json needs grid mode (--widths/--depths or --quick)")
    if args.grid:
        quick = args.quick
        args.widths = int_list(p, "--widths", args.widths or ("256" if quick else GRID_WIDTHS))
        args.depths = int_list(p, "--depths", args.depths or ("2,4" if quick else GRID_DEPTHS))
        args.batch = int_list(p, "--batch", args.batch or ("32" if quick else GRID_BATCH))
        if args.repeats is None:
            args.repeats = 10 if quick else 20
        if args.warmup is None:
            args.warmup = 3 if quick else 5
    else:
        args.hidden = int_list(p, "--hidden", args.hidden or "1024,1024,1024")
        args.batch = int_list(p, "--batch", args.batch or "128")
        if args.repeats is None:
            args.repeats = 50
        if args.warmup is None:
            args.warmup = 5
    if args.repeats < 1 or args.warmup < 0 or args.inner < 1 or args.threads < 1:
        p.error("--repeats, --inner and --threads must be positive, --warmup not negative")
    args.rules = list(RULES) if args.rule == "all" else args.rule.split(",")
    for r in args.rules:
        if r not in RULES:
            p.error(f"unknown rule {r!r}")
    args.rules = [r for r in RULES if r in args.rules]  # fixed order, no duplicates
    return args


ARGS = parse_args()
# The BLAS reads its thread count when it is loaded: set it before importing numpy.
for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[var] = str(ARGS.threads)

import time  # noqa: E402

import numpy as np  # noqa: E402


class Mlp:
    def __init__(self, dims, rule, rng):
        self.rule = rule
        self.W, self.b = [], []
        for fan_in, fan_out in zip(dims[:-1], dims[1:]):
            bound = np.sqrt(6.0 / (fan_in + fan_out))  # Glorot uniform
            self.W.append(rng.uniform(-bound, bound, (fan_out, fan_in)).astype(np.float32))
            self.b.append(np.zeros(fan_out, np.float32))
        hidden = dims[1:-1]
        if rule == "fa":
            # B_l shaped like W_l (l >= 1), used where BP uses W_l.
            # (Scale before the cast: under NumPy 2 a float32 array divided by a
            # np.float64 scalar is float64, and float64 feedback would slow FA down.)
            self.B = [None] + [
                (rng.uniform(-1, 1, w.shape) / np.sqrt(w.shape[0])).astype(np.float32)
                for w in self.W[1:]
            ]
        elif rule == "dfa":
            # B_all = [B_1 | ... | B_{L-1}]: classes x sum(hidden).
            self.B_all = (rng.uniform(-1, 1, (dims[-1], sum(hidden)))
                          / np.sqrt(dims[-1])).astype(np.float32)
            self.splits = np.cumsum(hidden)[:-1]
        self.check_dtypes()

    def check_dtypes(self):
        arrays = self.W + self.b + [m for m in getattr(self, "B", []) if m is not None]
        arrays += [self.B_all] if hasattr(self, "B_all") else []
        assert all(a.dtype == np.float32 for a in arrays), "every parameter must be float32"

    def step(self, x, y, lr):
        """One SGD step on x [B, in] with integer labels y [B]; returns the loss."""
        W, b = self.W, self.b
        L = len(W)
        batch = x.shape[0]
        # Forward: h[0] = x, h[l+1] = tanh(h[l] @ W[l].T + b[l]); identity output.
        h = [x]
        for l in range(L - 1):
            h.append(np.tanh(h[-1] @ W[l].T + b[l]))
        logits = h[-1] @ W[-1].T + b[-1]
        # Softmax cross-entropy, mean over the batch.
        logits -= logits.max(axis=1, keepdims=True)
        p = np.exp(logits)
        p /= p.sum(axis=1, keepdims=True)
        rows = np.arange(batch)
        loss = -np.log(p[rows, y] + 1e-12).mean()
        e = p
        e[rows, y] -= 1.0
        e /= batch  # output error dL/dz_L, [B, classes]
        # Hidden deltas: delta[l] for the output of layer l (l = 0..L-1).
        delta = [None] * L
        delta[L - 1] = e
        if self.rule == "dfa":
            # One product for every hidden layer, then slice.
            proj = e @ self.B_all
            for l, part in enumerate(np.split(proj, self.splits, axis=1)):
                delta[l] = part * (1.0 - h[l + 1] ** 2)
        else:
            back = W if self.rule == "bp" else self.B
            for l in range(L - 2, -1, -1):
                delta[l] = (delta[l + 1] @ back[l + 1]) * (1.0 - h[l + 1] ** 2)
        # Gradients and plain SGD.
        for l in range(L):
            W[l] -= lr * (delta[l].T @ h[l])
            b[l] -= lr * delta[l].sum(axis=0)
        return float(loss)


def blas_summary():
    """One line naming the BLAS numpy is linked against."""
    try:
        cfg = np.show_config(mode="dicts")
        deps = cfg.get("Build Dependencies", {})
        blas = deps.get("blas", {})
        parts = [f"{blas.get('name', '?')} {blas.get('version', '')}".strip()]
        if blas.get("openblas configuration"):
            parts.append(blas["openblas configuration"])
        simd = cfg.get("SIMD Extensions", {})
        if simd.get("found"):
            parts.append("SIMD " + ",".join(simd["found"]))
        return "; ".join(parts)
    except TypeError:  # numpy < 1.26 has no mode="dicts"
        np.show_config()
        return "see above"


def cpu_name():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    import platform
    return platform.processor() or platform.machine() or "cpu"


def available_bytes():
    """MemAvailable from /proc/meminfo, or None where there is none."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError):
        pass
    return None


def step_bytes(dims, batch, rule):
    """A generous estimate of the bytes one step of `rule` holds at its peak."""
    weights = sum(a * b for a, b in zip(dims[:-1], dims[1:]))
    feedback = {"bp": 0, "fa": weights - dims[0] * dims[1],
                "dfa": CLASSES * sum(dims[1:-1])}[rule]
    activations = batch * sum(dims)
    largest = max(a * b for a, b in zip(dims[:-1], dims[1:]))
    # weights + feedback, activations and deltas (x3 for temporaries), a gradient and
    # its lr-scaled copy.
    return 4 * (weights + feedback + 3 * activations + 2 * largest)


def time_steps(net, xs, ys, args):
    """Median and minimum seconds per step, and the last loss."""
    batches = len(xs)
    i = 0
    loss = float("nan")
    for _ in range(args.warmup):
        loss = net.step(xs[i % batches], ys[i % batches], args.lr)
        i += 1
    times = []
    for _ in range(args.repeats):
        start = time.perf_counter()
        for _ in range(args.inner):
            loss = net.step(xs[i % batches], ys[i % batches], args.lr)
            i += 1
        times.append((time.perf_counter() - start) / args.inner)
    net.check_dtypes()  # the step kept everything float32
    if not np.isfinite(loss):
        sys.exit(f"{net.rule}: loss diverged ({loss})")
    return float(np.median(times)), float(min(times)), loss


def make_data(rng, batch, width, batches=4, normal=True):
    if normal:
        xs = rng.standard_normal((batches, batch, width), dtype=np.float32)
    else:
        xs = rng.random((batches, batch, width), dtype=np.float32)
    ys = rng.integers(0, CLASSES, (batches, batch))
    return xs, ys


def blas_threads_text():
    try:
        from threadpoolctl import threadpool_info  # optional
        return ",".join(str(i["num_threads"]) for i in threadpool_info())
    except ImportError:
        return os.environ["OPENBLAS_NUM_THREADS"] + " (requested)"


def run_fixed(args):
    """The fixed 784-hidden...-10 net of `step_time`, one table per batch size."""
    dims = [INPUTS, *args.hidden, CLASSES]
    print(f"net {'-'.join(map(str, dims))} (tanh, softmax CE) | sgd lr {args.lr:g} | "
          f"BLAS threads {blas_threads_text()} | {args.repeats} repeats x {args.inner} "
          f"steps after {args.warmup} warmup")
    for batch in args.batch:
        xs, ys = make_data(np.random.default_rng(0), batch, INPUTS, normal=False)
        print()
        print(f"batch {batch}")
        print()
        print("| rule | median ms | min ms | samples/s (median) |")
        print("|------|----------:|-------:|-------------------:|")
        for rule in args.rules:
            net = Mlp(dims, rule, np.random.default_rng(1))
            med, best, _ = time_steps(net, xs, ys, args)
            print(f"| {rule:<4} | {med * 1e3:>9.2f} | {best * 1e3:>6.2f} | "
                  f"{batch / med:>18.0f} |", flush=True)


def cell(row, rule):
    if rule not in row["ms"]:
        return "-"
    return f"{row['ms'][rule]:.3f} ({row['min_ms'][rule]:.3f})"


def table_header():
    print("| width | depth | batch | BP ms (min) | FA ms (min) | DFA ms (min) "
          "| DFA speedup | samples/s (DFA) |")
    print("|------:|------:|------:|------------:|------------:|-------------:"
          "|------------:|----------------:|")


def table_row(row):
    speedup = "-" if row["dfa_speedup"] is None else f"{row['dfa_speedup']:.2f}x"
    sps = row["samples_per_s"].get("dfa")
    sps = "-" if sps is None else f"{sps:.0f}"
    print(f"| {row['width']} | {row['depth']} | {row['batch']} | {cell(row, 'bp')} | "
          f"{cell(row, 'fa')} | {cell(row, 'dfa')} | {speedup} | {sps} |", flush=True)


def run_grid(args):
    device = cpu_name()
    print(f"grid: widths {args.widths} x depths {args.depths} x batch {args.batch} | "
          f"rules {','.join(args.rules)} | sgd lr {args.lr:g} | BLAS threads "
          f"{blas_threads_text()} | {args.repeats} repeats x {args.inner} steps after "
          f"{args.warmup} warmup")
    print(f"device: {device}")
    print("net: w inputs, d hidden layers of w (tanh), 10 classes (softmax CE); "
          "ms = median step time (min)")
    print()
    table_header()
    rows, skipped = [], []
    avail = available_bytes()
    for width in args.widths:
        for depth in args.depths:
            dims = [width] * (depth + 1) + [CLASSES]
            for batch in args.batch:
                xs, ys = make_data(np.random.default_rng(0), batch, width)
                row = {"width": width, "depth": depth, "batch": batch,
                       "ms": {}, "min_ms": {}, "dfa_speedup": None, "samples_per_s": {}}
                for rule in args.rules:
                    need = step_bytes(dims, batch, rule) + xs.nbytes
                    if avail is not None and need > 0.8 * avail:
                        skipped.append(f"w={width} d={depth} b={batch} {rule}: needs about "
                                       f"{need / 2**30:.1f} GiB, {avail / 2**30:.1f} GiB "
                                       "available")
                        continue
                    try:
                        net = Mlp(dims, rule, np.random.default_rng(1))
                        med, best, _ = time_steps(net, xs, ys, args)
                    except MemoryError:
                        skipped.append(f"w={width} d={depth} b={batch} {rule}: out of memory")
                        continue
                    finally:
                        net = None
                    row["ms"][rule] = round(med * 1e3, 5)
                    row["min_ms"][rule] = round(best * 1e3, 5)
                    row["samples_per_s"][rule] = round(batch / med, 1)
                if not row["ms"]:
                    continue
                if "bp" in row["ms"] and "dfa" in row["ms"]:
                    row["dfa_speedup"] = round(row["ms"]["bp"] / row["ms"]["dfa"], 4)
                rows.append(row)
                table_row(row)
    for note in skipped:
        print(f"skipped (memory): {note}")
    if args.json:
        doc = {"tool": "numpy", "device": device, "threads": args.threads, "rows": rows}
        with open(args.json, "w") as f:
            json.dump(doc, f, indent=2)
            f.write("\n")
        print(f"wrote {args.json}")


def main():
    args = ARGS
    print(f"numpy {np.__version__} | python {sys.version.split()[0]} | BLAS: {blas_summary()}")
    if args.grid:
        run_grid(args)
    else:
        run_fixed(args)


if __name__ == "__main__":
    main()
