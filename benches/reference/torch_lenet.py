#!/usr/bin/env python3
"""One SGD training step of LeNet-5 on MNIST-sized input in PyTorch eager on the CPU.

A CPU timing reference for the crate's convolutional networks: BioTorch's LeNetMNIST
(conv 6@5x5 padding 2 on 1x28x28, the same shapes as BioTorch's 32x32 resized input;
relu; maxpool 2; conv 16@5x5; relu; maxpool 2; conv 120@5x5; relu; flatten; linear
120->84; relu; linear 84->10), 61,706 parameters, softmax cross-entropy, SGD with
momentum 0.9 and weight decay 1e-3 (torch.optim.SGD(foreach=True)), batch 64. The step
timed is what a training loop runs per batch: zero_grad, forward, F.cross_entropy,
loss.backward(), optimizer.step().

    python3 benches/reference/torch_lenet.py                      # step time, random data
    python3 benches/reference/torch_lenet.py --mnist              # + one epoch of data/mnist
    python3 benches/reference/torch_lenet.py --mnist DIR --epochs 3 --json lenet.json
    python3 benches/reference/torch_lenet.py --threads 1          # one thread

Timing: --warmup untimed steps, then --repeats samples of --inner steps each; step time =
sample time / inner; the median and the minimum are reported (as torch_step.py and
numpy_step.py do, through grid.py). The data is random (normal inputs, random labels, a
few distinct batches cycled through): only the time matters. The forward pass alone
(torch.no_grad, the network in eval mode) is timed the same way.

With --mnist [DIR] (default: the repository's bundled data/mnist), the four IDX files
(gzipped or not) are read with gzip and numpy, pixels scaled to [0, 1] like the crate's
loader, and whole epochs are timed: a seeded permutation per epoch, batches of --batch
taken from tensors already in memory (the last one partial), every step as above. Each
epoch's wall time, samples/s and mean training loss are printed, then the test accuracy
on all 10,000 test images (and the time that evaluation took).

PyTorch runs at its best by default: torch's own thread count (one per core), its
default CPU kernels. ATEN_CPU_CAPABILITY, which can force older kernels, is cleared for
this process if set (and said so); the torch version, the thread count
(torch.get_num_threads()), the CPU kernel level and the CPU model are printed.
"""

import os
import sys
import time

# grid.py (shared with the other reference scripts) sits beside this file.
sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import grid  # noqa: E402  (pure Python: imports neither numpy nor torch)
# The IDX reader and the network, shared with torch_mnist_epoch.py; both import numpy and
# torch only when called.
from mnist_idx import BUNDLED_MNIST, CLASSES, load_mnist  # noqa: E402
from torch_nets import LENET_PARAMETERS as PARAMETERS, lenet5  # noqa: E402


def parse_args():
    p = grid.parser(__doc__)
    p.add_argument("--batch", type=int, default=64, help="batch size (default 64)")
    p.add_argument("--warmup", type=int, default=10, help="untimed steps first (default 10)")
    p.add_argument("--repeats", type=int, default=50, help="timed samples (default 50)")
    p.add_argument("--inner", type=int, default=1, help="steps per timed sample (default 1)")
    p.add_argument("--lr", type=float, default=0.01,
                   help="SGD learning rate (default 0.01; BioTorch's LeNet test config "
                        "uses 1e-3 with batch 100)")
    p.add_argument("--threads", type=int, default=None,
                   help="torch.set_num_threads (default: torch's own, one per core)")
    p.add_argument("--mnist", nargs="?", const=BUNDLED_MNIST, default=None, metavar="DIR",
                   help="also time whole epochs on MNIST from DIR "
                        "(default when given without DIR: the bundled data/mnist)")
    p.add_argument("--epochs", type=int, default=1, help="epochs with --mnist (default 1)")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--json", default=None, metavar="FILE", help="write the results to FILE")
    args = p.parse_args()
    if args.batch < 1 or args.repeats < 1 or args.inner < 1 or args.epochs < 1:
        p.error("--batch, --repeats, --inner and --epochs must be positive")
    if args.warmup < 0:
        p.error("--warmup must not be negative")
    if args.threads is not None and args.threads < 1:
        p.error("--threads must be positive")
    if args.mnist is not None and not os.path.isdir(args.mnist):
        p.error(f"--mnist {args.mnist}: no such directory")
    return args


ARGS = parse_args()

# A reference must run at its best: an inherited ATEN_CPU_CAPABILITY (say "default" or
# "avx2" on an AVX-512 machine) would pin torch to older kernels. Clear it before import.
CLEARED = os.environ.pop("ATEN_CPU_CAPABILITY", None)

try:
    import numpy as np
    import torch
    import torch.nn.functional as F
except ImportError as err:
    sys.exit(f"torch_lenet.py needs PyTorch and NumPy ({err}): pip install torch numpy "
             "(see benches/reference/README.md)")


# --------------------------------------------------------------------------------------
# The network and the step


class Trainer:
    """The model, its optimizer and one training step."""

    def __init__(self, lr, seed):
        torch.manual_seed(seed)
        self.model = lenet5()
        count = sum(p.numel() for p in self.model.parameters())
        assert count == PARAMETERS, f"LeNet-5 has {count} parameters, expected {PARAMETERS}"
        self.opt = torch.optim.SGD(self.model.parameters(), lr=lr, momentum=0.9,
                                   weight_decay=1e-3, foreach=True)

    def step(self, x, y):
        """One training step on x [b, 1, 28, 28] and labels y [b]; returns the loss."""
        self.opt.zero_grad(set_to_none=True)
        loss = F.cross_entropy(self.model(x), y)
        loss.backward()
        self.opt.step()
        return loss.detach()

    @torch.no_grad()
    def predict(self, x):
        return self.model(x).argmax(1)


# --------------------------------------------------------------------------------------
# Random-data step timing


def random_batches(batch, seed, batches=4):
    gen = torch.Generator().manual_seed(seed)
    xs = [torch.randn(batch, 1, 28, 28, generator=gen) for _ in range(batches)]
    ys = [torch.randint(0, CLASSES, (batch,), generator=gen) for _ in range(batches)]
    return xs, ys


def timing(median, best, batch):
    return {"ms": round(median * 1e3, 5), "min_ms": round(best * 1e3, 5),
            "samples_per_s": round(batch / median, 1)}


def time_step(args):
    """Median and minimum of the training step, then of the forward pass alone."""
    xs, ys = random_batches(args.batch, args.seed)
    n = len(xs)
    trainer = Trainer(args.lr, args.seed)
    trainer.model.train()
    med, best, loss = grid.time_loop(lambda i: trainer.step(xs[i % n], ys[i % n]), args)
    grid.check_loss("lenet", loss)
    step = timing(med, best, args.batch)
    trainer.model.eval()
    with torch.no_grad():
        med, best, _ = grid.time_loop(lambda i: trainer.model(xs[i % n]), args)
    forward = timing(med, best, args.batch)
    return step, forward


# --------------------------------------------------------------------------------------
# MNIST epochs


def load_tensors(directory):
    """{"train": (x, y), "test": (x, y)}: x float32 [n, 1, 28, 28], y int64, as tensors."""
    return {split: (torch.from_numpy(x).unsqueeze(1).contiguous(), torch.from_numpy(y))
            for split, (x, y) in load_mnist(directory).items()}


def evaluate(trainer, x, y, batch=1000):
    trainer.model.eval()
    correct = 0
    for start in range(0, len(y), batch):
        correct += int((trainer.predict(x[start:start + batch]) == y[start:start + batch])
                       .sum())
    trainer.model.train()
    return correct / len(y)


def run_epochs(args):
    data = load_tensors(args.mnist)
    (x, y), (tx, ty) = data["train"], data["test"]
    print(f"MNIST from {args.mnist}: {len(y)} training, {len(ty)} test images "
          f"(pixels / 255); batch {args.batch}, lr {args.lr:g}, momentum 0.9, "
          f"weight decay 1e-3")
    trainer = Trainer(args.lr, args.seed)
    gen = torch.Generator().manual_seed(args.seed)
    epochs = []
    print()
    print("| epoch | seconds | samples/s | train loss | test accuracy | eval seconds |")
    print("|------:|--------:|----------:|-----------:|--------------:|-------------:|")
    for epoch in range(1, args.epochs + 1):
        start = time.perf_counter()
        order = torch.randperm(len(y), generator=gen)
        total, steps = torch.zeros(()), 0
        for first in range(0, len(y), args.batch):
            idx = order[first:first + args.batch]
            total += trainer.step(x[idx], y[idx])
            steps += 1
        loss = float(total) / steps
        seconds = time.perf_counter() - start
        grid.check_loss("lenet", loss)
        start = time.perf_counter()
        accuracy = evaluate(trainer, tx, ty)
        eval_seconds = time.perf_counter() - start
        row = {"epoch": epoch, "seconds": round(seconds, 4),
               "samples_per_s": round(len(y) / seconds, 1), "train_loss": round(loss, 5),
               "test_accuracy": accuracy, "eval_seconds": round(eval_seconds, 4)}
        epochs.append(row)
        print(f"| {epoch} | {seconds:.2f} | {row['samples_per_s']:.0f} | {loss:.4f} | "
              f"{100 * accuracy:.2f}% | {eval_seconds:.2f} |", flush=True)
    return epochs


# --------------------------------------------------------------------------------------


def main():
    args = ARGS
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    threads = torch.get_num_threads()
    cores = os.cpu_count()
    cpu = grid.cpu_name()
    capability = torch.backends.cpu.get_cpu_capability()
    print(f"torch {torch.__version__} | numpy {np.__version__} | python "
          f"{sys.version.split()[0]} | CPU: {cpu} ({cores} logical cores) | "
          f"torch threads {threads} | kernels {capability} | "
          f"mkldnn {'on' if torch.backends.mkldnn.is_available() else 'off'}")
    if CLEARED is not None:
        print(f"note: cleared ATEN_CPU_CAPABILITY={CLEARED} for this process")
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        if var in os.environ:
            print(f"note: {var}={os.environ[var]} is set")
    if args.threads is None and cores is not None and threads < cores:
        print(f"note: torch uses {threads} threads on {cores} logical cores "
              "(torch counts physical cores; an OMP_NUM_THREADS setting lowers it)")
    print(f"LeNet-5 (BioTorch LeNetMNIST), {PARAMETERS} parameters | batch {args.batch} | "
          f"SGD lr {args.lr:g} momentum 0.9 weight decay 1e-3 (foreach) | "
          f"{args.repeats} repeats x {args.inner} steps after {args.warmup} warmup")
    step, forward = time_step(args)
    print()
    print("| pass | median ms | min ms | samples/s (median) |")
    print("|------|----------:|-------:|-------------------:|")
    for name, t in (("train step", step), ("forward only", forward)):
        print(f"| {name} | {t['ms']:.3f} | {t['min_ms']:.3f} | {t['samples_per_s']:.0f} |")
    doc = {"tool": "torch", "model": "lenet5", "device": cpu, "threads": threads,
           "torch": torch.__version__, "cpu_capability": capability, "batch": args.batch,
           "step": step, "forward": forward}
    if args.mnist is not None:
        print()
        doc["mnist"] = {"dir": args.mnist, "epochs": run_epochs(args)}
    if args.json:
        grid.write_json(args.json, doc)


if __name__ == "__main__":
    main()
