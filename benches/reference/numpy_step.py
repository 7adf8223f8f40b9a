#!/usr/bin/env python3
"""One SGD training step of an MLP in plain NumPy (float32), for BP, FA and DFA.

A timing reference for `examples/step_time.rs`: the same network
(784 - hidden... - 10, tanh hidden, identity output, softmax cross-entropy), the same
batch, plain SGD, written the way one would naturally write it in NumPy: row-major,
batch-major (x: [B, in], W: [out, in], z = x @ W.T + b), every product a BLAS sgemm.

    python3 benches/reference/numpy_step.py --hidden 1024,1024,1024 --batch 128 \
        --repeats 50 --warmup 5 --threads 2

Random data, seeded: only the time matters.
"""

import argparse
import os
import sys

INPUTS = 784
CLASSES = 10


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--hidden", default="1024,1024,1024",
                   help="comma-separated hidden widths (default 1024,1024,1024)")
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--repeats", type=int, default=50)
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--threads", type=int, default=os.cpu_count(),
                   help="BLAS threads (default: all cores)")
    p.add_argument("--rule", default="all", help="bp, fa, dfa or all")
    p.add_argument("--lr", type=float, default=0.01)
    args = p.parse_args()
    try:
        args.hidden = [int(w) for w in args.hidden.split(",")]
    except ValueError:
        p.error(f"--hidden wants comma-separated integers, got {args.hidden!r}")
    if not args.hidden or min(args.hidden) < 1 or args.batch < 1 or args.repeats < 1:
        p.error("widths, --batch and --repeats must be positive")
    args.rules = ["bp", "fa", "dfa"] if args.rule == "all" else args.rule.split(",")
    for r in args.rules:
        if r not in ("bp", "fa", "dfa"):
            p.error(f"unknown rule {r!r}")
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


def main():
    args = ARGS
    rng = np.random.default_rng(0)
    dims = [INPUTS, *args.hidden, CLASSES]
    batches = 4
    xs = rng.random((batches, args.batch, INPUTS), dtype=np.float32)
    ys = rng.integers(0, CLASSES, (batches, args.batch))
    blas_threads = "?"
    try:
        from threadpoolctl import threadpool_info  # optional
        blas_threads = ",".join(str(i["num_threads"]) for i in threadpool_info())
    except ImportError:
        blas_threads = os.environ["OPENBLAS_NUM_THREADS"] + " (requested)"
    print(f"numpy {np.__version__} | python {sys.version.split()[0]} | BLAS: {blas_summary()}")
    print(f"net {'-'.join(map(str, dims))} (tanh, softmax CE) | batch {args.batch} | sgd | "
          f"BLAS threads {blas_threads} | {args.repeats} repeats after {args.warmup} warmup")
    print()
    print("| rule | median ms | min ms | samples/s (median) |")
    print("|------|----------:|-------:|-------------------:|")
    for rule in args.rules:
        net = Mlp(dims, rule, np.random.default_rng(1))
        times = []
        for i in range(args.warmup + args.repeats):
            x, y = xs[i % batches], ys[i % batches]
            start = time.perf_counter()
            loss = net.step(x, y, args.lr)
            elapsed = time.perf_counter() - start
            if i >= args.warmup:
                times.append(elapsed)
        net.check_dtypes()  # the step kept everything float32
        if not np.isfinite(loss):
            sys.exit(f"{rule}: loss diverged ({loss})")
        med, best = float(np.median(times)), min(times)
        print(f"| {rule:<4} | {med * 1e3:>9.2f} | {best * 1e3:>6.2f} | "
              f"{args.batch / med:>18.0f} |")


if __name__ == "__main__":
    main()
