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

import os
import sys

# grid.py (shared with the other reference script) sits beside this file.
sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import grid  # noqa: E402  (pure Python: imports neither numpy nor torch)
from grid import CLASSES, GRID_BATCH, GRID_DEPTHS, GRID_WIDTHS  # noqa: E402

INPUTS = 784


def parse_args():
    p = grid.parser(__doc__)
    p.add_argument("--hidden", default=None,
                   help="fixed-net mode: comma-separated hidden widths, 784 inputs "
                        "(default 1024,1024,1024)")
    grid.add_grid_args(
        p,
        widths_help=f"grid mode: comma-separated widths (grid default {GRID_WIDTHS})",
        depths_help=f"grid mode: comma-separated hidden-layer counts "
                    f"(grid default {GRID_DEPTHS})",
        batch_help=f"comma-separated batch sizes (default 128 for --hidden, "
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
    grid.add_rule_arg(p)
    grid.add_lr_arg(p)
    p.add_argument("--json", default=None, metavar="FILE",
                   help="grid mode: also write the results as JSON to FILE")
    args = p.parse_args()

    args.grid = args.quick or args.widths is not None or args.depths is not None
    if args.grid and args.hidden is not None:
        p.error("--hidden (fixed net) and --widths/--depths/--quick (grid) exclude each other")
    if args.json and not args.grid:
        p.error("--json needs grid mode (--widths/--depths or --quick)")
    if args.grid:
        grid.set_grid(p, args)
    else:
        args.hidden = grid.int_list(p, "--hidden", args.hidden or "1024,1024,1024")
        args.batch = grid.int_list(p, "--batch", args.batch or "128")
        if args.repeats is None:
            args.repeats = 50
        if args.warmup is None:
            args.warmup = 5
    if args.repeats < 1 or args.warmup < 0 or args.inner < 1 or args.threads < 1:
        p.error("--repeats, --inner and --threads must be positive, --warmup not negative")
    grid.set_rules(p, args)
    return args


ARGS = parse_args()
# The BLAS reads its thread count when it is loaded: set it before importing numpy.
for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[var] = str(ARGS.threads)
# A reference must run on the machine's best kernel. OPENBLAS_CORETYPE (and the cache
# size OPENBLAS_L2_SIZE) set by the environment force an older, slower OpenBLAS kernel:
# clear them for this process, before OpenBLAS loads, and say so.
CLEARED = {var: os.environ.pop(var) for var in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")
           if var in os.environ}

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
    med, best, loss = grid.time_loop(
        lambda i: net.step(xs[i % batches], ys[i % batches], args.lr), args)
    net.check_dtypes()  # the step kept everything float32
    grid.check_loss(net.rule, loss)
    return med, best, loss


def make_data(rng, batch, width, batches=4, normal=True):
    if normal:
        xs = rng.standard_normal((batches, batch, width), dtype=np.float32)
    else:
        xs = rng.random((batches, batch, width), dtype=np.float32)
    ys = rng.integers(0, CLASSES, (batches, batch))
    return xs, ys


def blas_threads_text():
    """The BLAS's threads and kernel, as threadpoolctl reports them (the kernel only with
    threadpoolctl installed), and any kernel override cleared at start."""
    cleared = "".join(f"; cleared {var}={value}" for var, value in CLEARED.items())
    try:
        from threadpoolctl import threadpool_info  # optional
    except ImportError:
        return (os.environ["OPENBLAS_NUM_THREADS"] + " (requested; install threadpoolctl "
                "to see the BLAS kernel)" + cleared)
    pools = [i for i in threadpool_info() if i.get("user_api") == "blas"] or threadpool_info()
    return ", ".join(
        f"{i['num_threads']} ({i.get('internal_api', '?')} {i.get('version') or ''} "
        f"kernel {i.get('architecture') or '?'})"
        for i in pools) + cleared


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


def run_grid(args):
    device = grid.cpu_name()
    grid.print_intro(args, f" | BLAS threads {blas_threads_text()}", device=device)
    rows, skipped = [], []
    avail = grid.available_bytes()
    for width in args.widths:
        for depth in args.depths:
            dims = [width] * (depth + 1) + [CLASSES]
            for batch in args.batch:
                xs, ys = make_data(np.random.default_rng(0), batch, width)
                row = grid.new_row(width, depth, batch)
                for rule in args.rules:
                    need = step_bytes(dims, batch, rule) + xs.nbytes
                    note = grid.memory_note(row, rule, need, avail, 0.8, "available")
                    if note:
                        skipped.append(note)
                        continue
                    try:
                        net = Mlp(dims, rule, np.random.default_rng(1))
                        med, best, _ = time_steps(net, xs, ys, args)
                    except MemoryError:
                        skipped.append(grid.oom_note(row, rule))
                        continue
                    finally:
                        net = None
                    grid.record(row, rule, med, best)
                grid.finish_row(row, rows)
    grid.print_skipped(skipped)
    if args.json:
        grid.write_json(args.json, grid.report("numpy", device, args.threads, rows))


def main():
    args = ARGS
    print(f"numpy {np.__version__} | python {sys.version.split()[0]} | BLAS: {blas_summary()}")
    if args.grid:
        run_grid(args)
    else:
        run_fixed(args)


if __name__ == "__main__":
    main()
