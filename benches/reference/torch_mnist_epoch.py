#!/usr/bin/env python3
"""MNIST training epochs in PyTorch eager, timed: the reference for the crate's
`mnist --device gpu --rule bp --model mlp|lenet --lr-decay 1` epochs.

The same training as the crate's defaults: backprop, Adam (lr 1e-3, torch's defaults
otherwise), batch 64, softmax cross-entropy, a seeded permutation of the training set per
epoch (the last batch partial), on
* `--model mlp`: 784-800-800-10, tanh after each hidden layer, PyTorch's default init;
* `--model lenet`: LeNet-5 (BioTorch's LeNetMNIST, torch_nets.lenet5, as torch_lenet.py).

The data is loaded once and moved to the device before the first epoch, so an epoch only
indexes batches out of device tensors: no host-to-device copy per batch. Each step is what
a training loop runs: zero_grad, forward, F.cross_entropy, loss.backward(),
optimizer.step(). The loss is summed on the device and read once per epoch.
torch.cuda.synchronize() runs before every clock read. TF32 is off (FP32 matmuls and
convolutions, like the crate's WGSL kernels) unless --tf32.

    python3 benches/reference/torch_mnist_epoch.py --model mlp --epochs 3 --json mlp.json
    python3 benches/reference/torch_mnist_epoch.py --model lenet --device cpu --epochs 1 \\
        --train-limit 6000

Printed per epoch: seconds (training only), samples/s, mean training loss, test accuracy
on all test images (not timed). Reported: the best epoch and the median of the epochs
after the first (the first pays for CUDA context, cuDNN/cuBLAS heuristics and caching
allocator growth; with one epoch the median is that epoch).
"""

import os
import statistics
import sys
import time

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import grid  # noqa: E402
from mnist_idx import BUNDLED_MNIST, load_mnist  # noqa: E402
import torch_nets  # noqa: E402


def parse_args():
    p = grid.parser(__doc__)
    p.add_argument("--model", choices=("mlp", "lenet"), default="mlp")
    p.add_argument("--device", default=None,
                   help="cuda, cuda:N or cpu (default: cuda if available)")
    p.add_argument("--epochs", type=int, default=3, help="epochs (default 3)")
    p.add_argument("--batch", type=int, default=64, help="batch size (default 64)")
    p.add_argument("--lr", type=float, default=1e-3, help="Adam learning rate (default 1e-3)")
    p.add_argument("--train-limit", type=int, default=None, metavar="N",
                   help="train on the first N training images only (default all)")
    p.add_argument("--mnist", default=BUNDLED_MNIST, metavar="DIR",
                   help="the IDX files' directory (default: the bundled data/mnist)")
    p.add_argument("--threads", type=int, default=None,
                   help="CPU only: torch.set_num_threads (default: torch's own)")
    p.add_argument("--tf32", action="store_true",
                   help="allow TF32 matmuls and convolutions (default off: FP32)")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--json", default=None, metavar="FILE", help="write the results to FILE")
    args = p.parse_args()
    if min(args.epochs, args.batch) < 1 or (args.train_limit is not None
                                            and args.train_limit < 1):
        p.error("--epochs, --batch and --train-limit must be positive")
    if args.threads is not None and args.threads < 1:
        p.error("--threads must be positive")
    if not os.path.isdir(args.mnist):
        p.error(f"--mnist {args.mnist}: no such directory")
    return args


ARGS = parse_args()

try:
    import torch
    import torch.nn.functional as F
except ImportError as err:
    sys.exit(f"torch_mnist_epoch.py needs PyTorch and NumPy ({err}): pip install torch numpy "
             "(see benches/reference/README.md)")


def pick_device(name):
    if name is None:
        name = "cuda" if torch.cuda.is_available() else "cpu"
    dev = torch.device(name)
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            sys.exit("--device cuda: torch sees no CUDA device")
        torch.cuda.set_device(dev)
    return dev


def sync(dev):
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)


def to_device(x, y, model, dev):
    x = torch.from_numpy(x)
    x = x.unsqueeze(1) if model == "lenet" else x.reshape(len(x), -1)
    return x.contiguous().to(dev), torch.from_numpy(y).to(dev)


@torch.no_grad()
def accuracy(model, x, y, batch=1000):
    model.eval()
    correct = torch.zeros((), dtype=torch.int64, device=x.device)
    for start in range(0, len(y), batch):
        correct += (model(x[start:start + batch]).argmax(1) == y[start:start + batch]).sum()
    model.train()
    return int(correct) / len(y)


def main():
    args = ARGS
    dev = pick_device(args.device)
    torch.backends.cuda.matmul.allow_tf32 = args.tf32
    torch.backends.cudnn.allow_tf32 = args.tf32
    torch.set_float32_matmul_precision("high" if args.tf32 else "highest")
    if dev.type == "cpu" and args.threads is not None:
        torch.set_num_threads(args.threads)
    name = torch.cuda.get_device_name(dev) if dev.type == "cuda" else grid.cpu_name()
    extra = (f"CUDA {torch.version.cuda}, cuDNN {torch.backends.cudnn.version()}"
             if dev.type == "cuda" else f"{torch.get_num_threads()} threads")

    data = load_mnist(args.mnist)
    (x, y), (tx, ty) = data["train"], data["test"]
    if args.train_limit is not None:
        x, y = x[:args.train_limit], y[:args.train_limit]
    x, y = to_device(x, y, args.model, dev)
    tx, ty = to_device(tx, ty, args.model, dev)
    n = len(y)

    torch.manual_seed(args.seed)
    model = (torch_nets.lenet5() if args.model == "lenet" else torch_nets.mlp()).to(dev)
    opt = torch.optim.Adam(model.parameters(), lr=args.lr)
    params = sum(p.numel() for p in model.parameters())
    net = "LeNet-5" if args.model == "lenet" else "784-800-800-10 tanh"
    print(f"torch {torch.__version__} | device {dev}: {name} ({extra}) | "
          f"TF32 {'on' if args.tf32 else 'off'}")
    print(f"{net} ({params} parameters) | BP, Adam lr {args.lr:g} | batch {args.batch} | "
          f"{n} train / {len(ty)} test images on the device")
    print()
    print("| epoch | seconds | samples/s | train loss | test accuracy |")
    print("|------:|--------:|----------:|-----------:|--------------:|")

    gen = torch.Generator().manual_seed(args.seed)
    model.train()
    epochs = []
    for epoch in range(1, args.epochs + 1):
        order = torch.randperm(n, generator=gen).to(dev)
        total = torch.zeros((), device=dev)
        steps = 0
        sync(dev)
        start = time.perf_counter()
        for first in range(0, n, args.batch):
            idx = order[first:first + args.batch]
            opt.zero_grad(set_to_none=True)
            loss = F.cross_entropy(model(x[idx]), y[idx])
            loss.backward()
            opt.step()
            total += loss.detach()
            steps += 1
        sync(dev)
        seconds = time.perf_counter() - start
        loss = float(total) / steps
        grid.check_loss(args.model, loss)
        acc = accuracy(model, tx, ty)
        row = {"epoch": epoch, "seconds": round(seconds, 4),
               "samples_per_s": round(n / seconds, 1), "train_loss": round(loss, 5),
               "test_accuracy": acc}
        epochs.append(row)
        print(f"| {epoch} | {seconds:.3f} | {row['samples_per_s']:.0f} | {loss:.4f} | "
              f"{100 * acc:.2f}% |", flush=True)

    times = [e["seconds"] for e in epochs]
    later = times[1:] or times
    best, median = min(times), statistics.median(later)
    print(f"\nepoch seconds: best {best:.3f}, median after the first {median:.3f} "
          f"({n / median:.0f} samples/s)")
    if args.json:
        grid.write_json(args.json, {
            "tool": "torch", "model": args.model, "device": name, "device_type": dev.type,
            "torch": torch.__version__, "tf32": args.tf32, "rule": "bp", "optimizer": "adam",
            "lr": args.lr, "batch": args.batch, "train_images": n, "test_images": len(ty),
            "parameters": params, "epochs": epochs, "best_seconds": best,
            "median_seconds": median})


if __name__ == "__main__":
    main()
