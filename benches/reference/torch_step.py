#!/usr/bin/env python3
"""One SGD training step of an MLP in PyTorch eager (float32), for BP, FA and DFA.

A GPU (or CPU) timing reference for `examples/bench_rules.rs`. For every width w, depth d
and batch b of the grid: w inputs, d hidden layers of width w (tanh), 10 classes
(identity output, softmax cross-entropy averaged over the batch), d + 1 nn.Linear
layers, plain SGD (lr 1e-3, no momentum, no weight decay) through one
torch.optim.SGD(foreach=True).

* BP: the natural PyTorch way: nn.Sequential forward, F.cross_entropy,
  loss.backward(), optimizer.step().
* DFA: written the obvious way, no autograd: forward keeping the activations,
  e = (softmax - onehot) / b, every hidden delta from ONE product e @ B_all
  (B_all = [B_1 | ... | B_d], 10 x d*w), split per layer and multiplied by
  tanh' = 1 - h^2, weight gradients delta^T @ input, bias gradients delta.sum(0); the
  gradients are put in .grad and the same optimizer steps.
* FA: the same manual code with the BP chain delta_l = (delta_{l+1} @ B_{l+1}) * (1 - h^2),
  B_{l+1} a fixed random matrix shaped like W_{l+1}.

    python3 benches/reference/torch_step.py                       # full grid, CUDA
    python3 benches/reference/torch_step.py --quick --device cpu
    python3 benches/reference/torch_step.py --widths 1024 --depths 4,16 --batch 128 \\
        --json torch.json
    python3 benches/reference/torch_step.py --matmul 1024,2048,4096   # FP32 GEMM GFLOP/s
    python3 benches/reference/torch_step.py --matmul 1024x128x1024    # M x K times K x N
    python3 benches/reference/torch_step.py --check               # DFA/FA == BP where they must

Timing: --warmup untimed steps, then --repeats samples; each sample runs --inner steps and
then synchronizes (torch.cuda.synchronize() on CUDA); step time = sample time / inner;
the median and the minimum are reported. The data (normal inputs, random labels, a few
distinct batches cycled through) is made once and is already on the device. TF32 is off
unless --tf32: FP32 throughout.
"""

import math
import os
import sys

# grid.py (shared with the other reference script) sits beside this file.
sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import grid  # noqa: E402
from grid import CLASSES, GRID_BATCH, GRID_DEPTHS, GRID_WIDTHS  # noqa: E402


def parse_args():
    p = grid.parser(__doc__)
    p.add_argument("--device", default=None,
                   help="cuda, cuda:N or cpu (default: cuda if available)")
    grid.add_grid_args(
        p,
        widths_help=f"comma list (default {GRID_WIDTHS})",
        depths_help=f"comma list of hidden-layer counts (default {GRID_DEPTHS})",
        batch_help=f"comma list (default {GRID_BATCH})")
    grid.add_rule_arg(p)
    p.add_argument("--warmup", type=int, default=None,
                   help="untimed steps first (default 5, 3 with --quick)")
    p.add_argument("--repeats", type=int, default=None,
                   help="timed samples (default 20, 10 with --quick)")
    p.add_argument("--inner", type=int, default=1,
                   help="steps per timed sample, then one synchronize (default 1)")
    p.add_argument("--quick", action="store_true",
                   help="widths 256, depths 2,4, batch 32, few repeats")
    grid.add_lr_arg(p)
    p.add_argument("--threads", type=int, default=None,
                   help="CPU only: torch.set_num_threads (default: torch's own choice)")
    p.add_argument("--tf32", action="store_true",
                   help="allow TF32 matmuls (default off: FP32 throughout)")
    p.add_argument("--matmul", default=None, metavar="N,MxNxK,...",
                   help="instead of the grid, time torch.matmul FP32 on N x N matrices "
                        "(or M x K times K x N, as bench_rules --gemm) and print GFLOP/s")
    p.add_argument("--check", action="store_true",
                   help="instead of timing, check the manual gradients against autograd "
                        "(DFA with B = W_out on one hidden layer, FA with B = W) and exit")
    p.add_argument("--json", default=None, metavar="FILE", help="write the results to FILE")
    args = p.parse_args()
    grid.set_grid(p, args)
    args.matmul = matmul_shapes(p, args.matmul) if args.matmul else None
    if args.repeats < 1 or args.warmup < 0 or args.inner < 1:
        p.error("--repeats and --inner must be positive, --warmup not negative")
    if args.threads is not None and args.threads < 1:
        p.error("--threads must be positive")
    grid.set_rules(p, args)
    return args


def matmul_shapes(p, text):
    """--matmul N or MxNxK items (as bench_rules --gemm): (m, n, k) for an m x k times
    k x n product."""
    shapes = []
    for item in text.split(","):
        try:
            dims = [int(d) for d in item.strip().split("x")]
        except ValueError:
            dims = []
        if len(dims) == 1:
            dims = dims * 3
        if len(dims) != 3 or min(dims) < 1:
            p.error(f"--matmul wants N or MxNxK items, comma-separated, got {item!r}")
        shapes.append(tuple(dims))
    return shapes


ARGS = parse_args()

try:
    import torch
    import torch.nn as nn
    import torch.nn.functional as F
except ImportError:
    sys.exit("torch_step.py needs PyTorch: pip install torch "
             "(see benches/reference/README.md)")


# --------------------------------------------------------------------------------------
# The network and the three steps


class Net:
    """d + 1 nn.Linear layers in an nn.Sequential, the rule's feedback, one SGD."""

    def __init__(self, width, depth, rule, device, lr, seed=1, classes=CLASSES):
        gen = torch.Generator().manual_seed(seed)
        dims = [width] * (depth + 1) + [classes]
        layers = []
        for i, (fan_in, fan_out) in enumerate(zip(dims[:-1], dims[1:])):
            lin = nn.Linear(fan_in, fan_out)
            bound = 1.0 / math.sqrt(fan_in)  # nn.Linear's own range, but seeded
            with torch.no_grad():
                lin.weight.uniform_(-bound, bound, generator=gen)
                lin.bias.uniform_(-bound, bound, generator=gen)
            layers.append(lin)
            if i < depth:                    # tanh after every hidden layer only
                layers.append(nn.Tanh())
        self.model = nn.Sequential(*layers).to(device)
        self.linears = [m for m in self.model if isinstance(m, nn.Linear)]
        self.width, self.depth, self.rule = width, depth, rule
        self.opt = torch.optim.SGD(self.model.parameters(), lr=lr, momentum=0.0,
                                   weight_decay=0.0, foreach=True)
        self.B = None        # FA: B[l] for l >= 1 shaped like W[l] (B[0] unused)
        self.B_all = None    # DFA: [B_1 | ... | B_d], classes x d*w
        if rule == "fa":
            self.B = [None] + [
                ((torch.rand(lin.weight.shape, generator=gen) * 2 - 1)
                 / math.sqrt(lin.weight.shape[0])).to(device)
                for lin in self.linears[1:]
            ]
        elif rule == "dfa":
            self.B_all = ((torch.rand(classes, depth * width, generator=gen) * 2 - 1)
                          / math.sqrt(classes)).to(device)

    def step(self, x, y, onehot):
        """One training step on x [b, w], labels y [b] (onehot [b, classes]): the loss
        (a tensor, not synchronized)."""
        if self.rule == "bp":
            return self.step_bp(x, y)
        return self.step_manual(x, y, onehot)

    def step_bp(self, x, y):
        self.opt.zero_grad(set_to_none=True)
        loss = F.cross_entropy(self.model(x), y)
        loss.backward()
        self.opt.step()
        return loss.detach()

    @torch.no_grad()
    def manual_grads(self, x, y, onehot):
        """FA/DFA: forward keeping the activations, deltas without autograd, and the
        gradients put in each parameter's .grad. Returns the loss."""
        lins = self.linears
        hs = [x]                                  # hs[l] = input of layer l
        for lin in lins[:-1]:
            hs.append(torch.tanh(F.linear(hs[-1], lin.weight, lin.bias)))
        logits = F.linear(hs[-1], lins[-1].weight, lins[-1].bias)
        logp = torch.log_softmax(logits, dim=1)
        loss = F.nll_loss(logp, y)
        e = (logp.exp() - onehot) / x.shape[0]    # dL/dlogits, [b, classes]
        deltas = [None] * len(lins)               # deltas[l] = dL/dz of layer l
        deltas[-1] = e
        if self.rule == "dfa":
            proj = e @ self.B_all                 # one product for every hidden layer
            for l, part in enumerate(proj.split(self.width, dim=1)):
                h = hs[l + 1]
                deltas[l] = part * (1 - h * h)
        else:                                      # fa
            for l in range(len(lins) - 2, -1, -1):
                h = hs[l + 1]
                deltas[l] = (deltas[l + 1] @ self.B[l + 1]) * (1 - h * h)
        for lin, delta, inp in zip(lins, deltas, hs):
            lin.weight.grad = delta.t() @ inp     # [out, in]
            lin.bias.grad = delta.sum(0)
        return loss

    def step_manual(self, x, y, onehot):
        loss = self.manual_grads(x, y, onehot)
        self.opt.step()
        return loss


# --------------------------------------------------------------------------------------
# Devices, memory, timing


def pick_device(name):
    if name is None:
        name = "cuda" if torch.cuda.is_available() else "cpu"
    dev = torch.device(name)
    if dev.type == "cuda" and not torch.cuda.is_available():
        sys.exit("--device cuda: torch.cuda.is_available() is False")
    if dev.type == "cuda":
        if dev.index is None:  # "cuda": the current device, named by its index
            dev = torch.device("cuda", torch.cuda.current_device())
        torch.cuda.set_device(dev)
    return dev


def device_name(dev):
    if dev.type == "cuda":
        return torch.cuda.get_device_name(dev)
    return grid.cpu_name()


def set_precision(tf32):
    torch.backends.cuda.matmul.allow_tf32 = tf32
    torch.backends.cudnn.allow_tf32 = tf32
    torch.set_float32_matmul_precision("high" if tf32 else "highest")


def sync(dev):
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)


def free_bytes(dev):
    if dev.type == "cuda":
        return torch.cuda.mem_get_info(dev)[0]
    return grid.available_bytes()


def step_bytes(width, depth, batch, rule):
    """A generous estimate of the bytes one configuration holds at its peak: weights,
    gradients, feedback, the data batches, activations and their temporaries."""
    weights = depth * width * width + CLASSES * width + (depth + 1) * width + CLASSES
    feedback = {"bp": 0, "fa": (depth - 1) * width * width + CLASSES * width,
                "dfa": CLASSES * depth * width}[rule]
    data = 4 * batch * (width + CLASSES + 2)          # 4 batches: x, onehot, int64 y
    activations = 3 * batch * width * (depth + 2)     # activations, deltas, temporaries
    return 4 * (2 * weights + feedback + data + activations) + (64 << 20)


def is_oom(err):
    oom = getattr(torch.cuda, "OutOfMemoryError", None)
    if oom is not None and isinstance(err, oom):
        return True
    text = str(err).lower()
    return isinstance(err, (RuntimeError, MemoryError)) and (
        "out of memory" in text or "can't allocate memory" in text)


def make_data(width, batch, device, batches=4, seed=0):
    gen = torch.Generator().manual_seed(seed)
    xs = [torch.randn(batch, width, generator=gen).to(device) for _ in range(batches)]
    ys = [torch.randint(0, CLASSES, (batch,), generator=gen).to(device)
          for _ in range(batches)]
    onehots = [F.one_hot(y, CLASSES).float() for y in ys]
    return xs, ys, onehots


def time_steps(net, data, args, dev):
    """Median and minimum seconds per step."""
    xs, ys, onehots = data
    n = len(xs)
    med, best, loss = grid.time_loop(
        lambda i: net.step(xs[i % n], ys[i % n], onehots[i % n]), args,
        sync=lambda: sync(dev))
    grid.check_loss(net.rule, loss)
    return med, best


def release(dev):
    if dev.type == "cuda":
        torch.cuda.empty_cache()


# --------------------------------------------------------------------------------------
# Modes


def run_grid(args, dev, name, threads):
    grid.print_intro(args, " (foreach)")
    rows, skipped = [], []
    for width in args.widths:
        for depth in args.depths:
            for batch in args.batch:
                row = grid.new_row(width, depth, batch)
                data = None
                for rule in args.rules:
                    need = step_bytes(width, depth, batch, rule)
                    note = grid.memory_note(row, rule, need, free_bytes(dev), 0.9, "free")
                    if note:
                        skipped.append(note)
                        continue
                    net = None
                    try:
                        if data is None:
                            data = make_data(width, batch, dev)
                        net = Net(width, depth, rule, dev, args.lr)
                        med, best = time_steps(net, data, args, dev)
                    except Exception as err:  # noqa: BLE001 - only OOM is handled
                        if not is_oom(err):
                            raise
                        skipped.append(grid.oom_note(row, rule))
                        continue
                    finally:
                        del net
                        release(dev)
                    grid.record(row, rule, med, best)
                data = None
                release(dev)
                grid.finish_row(row, rows)
    grid.print_skipped(skipped)
    return grid.report("torch", name, threads, rows)


def run_matmul(args, dev, name, threads):
    print(f"torch.matmul FP32 (TF32 {'on' if args.tf32 else 'off'}), M x K times K x N | "
          f"{args.repeats} repeats x {args.inner} products after {args.warmup} warmup")
    print()
    print("| m x n x k | median ms (min) | GFLOP/s (median) | GFLOP/s (best) |")
    print("|----------:|----------------:|-----------------:|---------------:|")
    results = []
    gen = torch.Generator().manual_seed(0)
    for m, n, k in args.matmul:
        size = f"{m}x{n}x{k}"
        need = 4 * (m * k + k * n + m * n)
        free = free_bytes(dev)
        if free is not None and need > 0.9 * free:
            print(f"skipped (memory): {size} needs {need / 2**30:.1f} GiB, "
                  f"{free / 2**30:.1f} GiB free")
            continue
        try:
            a = torch.randn(m, k, generator=gen).to(dev)
            b = torch.randn(k, n, generator=gen).to(dev)
            c = torch.empty(m, n, device=dev)
            med, best, _ = grid.time_loop(lambda i: torch.matmul(a, b, out=c), args,
                                          sync=lambda: sync(dev))
        except Exception as err:  # noqa: BLE001
            if not is_oom(err):
                raise
            print(f"skipped (memory): {size}: out of memory")
            continue
        finally:
            a = b = c = None
            release(dev)
        flop = 2.0 * m * n * k
        row = {"m": m, "n": n, "k": k, "ms": round(med * 1e3, 5),
               "min_ms": round(best * 1e3, 5), "gflops": round(flop / med / 1e9, 2),
               "gflops_best": round(flop / best / 1e9, 2)}
        results.append(row)
        print(f"| {size} | {row['ms']:.3f} ({row['min_ms']:.3f}) | {row['gflops']:.1f} | "
              f"{row['gflops_best']:.1f} |", flush=True)
    return grid.report("torch", name, threads, [], matmul=results)


def run_check(dev):
    """The manual FA/DFA code path against autograd where they must agree."""
    torch.manual_seed(0)
    worst = 0.0

    def compare(what, manual, auto):
        nonlocal worst
        for (pname, gm), ga in zip(manual, auto):
            err = (gm - ga).abs().max().item() / max(ga.abs().max().item(), 1e-12)
            worst = max(worst, err)
            if not torch.allclose(gm, ga, rtol=1e-4, atol=1e-6):
                sys.exit(f"check FAILED: {what} {pname}: max rel err {err:.2e}")
        print(f"ok  {what}")

    for width, depth, batch in ((16, 1, 8), (64, 1, 32), (16, 3, 8), (48, 5, 16)):
        xs, ys, onehots = make_data(width, batch, dev, batches=1, seed=width + depth)
        x, y, oh = xs[0], ys[0], onehots[0]
        ref = Net(width, depth, "bp", dev, 1e-3, seed=7)
        ref.opt.zero_grad(set_to_none=True)
        loss_ref = F.cross_entropy(ref.model(x), y)
        loss_ref.backward()
        auto = [p.grad.clone() for p in ref.model.parameters()]

        # FA with B_{l+1} = W_{l+1} is BP at any depth.
        fa = Net(width, depth, "fa", dev, 1e-3, seed=7)
        fa.B = [None] + [lin.weight.detach().clone() for lin in fa.linears[1:]]
        loss_fa = fa.manual_grads(x, y, oh)
        assert torch.allclose(loss_fa, loss_ref.detach(), rtol=1e-5), "FA loss"
        compare(f"FA(B=W)  == autograd BP, w={width} d={depth} b={batch}",
                [(n, p.grad) for n, p in fa.model.named_parameters()], auto)

        if depth == 1:
            # DFA on one hidden layer with B_1 = W_out is BP.
            dfa = Net(width, depth, "dfa", dev, 1e-3, seed=7)
            dfa.B_all = dfa.linears[-1].weight.detach().clone()
            dfa.manual_grads(x, y, oh)
            compare(f"DFA(B=W_out) == autograd BP, w={width} d=1 b={batch}",
                    [(n, p.grad) for n, p in dfa.model.named_parameters()], auto)

            # And one full step: the same update.
            for net in (ref, dfa):
                net.opt.step()
            compare(f"DFA(B=W_out) SGD update == BP update, w={width} d=1",
                    [(n, p.detach()) for n, p in dfa.model.named_parameters()],
                    [p.detach() for p in ref.model.parameters()])
        else:
            # DFA at depth > 1: every hidden delta is the hand formula
            # (e @ B_l) * (1 - h_l^2) and dW_l = delta_l^T h_{l-1}.
            dfa = Net(width, depth, "dfa", dev, 1e-3, seed=7)
            dfa.manual_grads(x, y, oh)
            with torch.no_grad():
                hs = [x]
                for lin in dfa.linears[:-1]:
                    hs.append(torch.tanh(hs[-1] @ lin.weight.t() + lin.bias))
                logits = hs[-1] @ dfa.linears[-1].weight.t() + dfa.linears[-1].bias
                e = (torch.softmax(logits, 1) - oh) / batch
                hand = []
                for l in range(depth):
                    b_l = dfa.B_all[:, l * width:(l + 1) * width]
                    d_l = (e @ b_l) * (1 - hs[l + 1] ** 2)
                    hand += [d_l.t() @ hs[l], d_l.sum(0)]
                hand += [e.t() @ hs[-1], e.sum(0)]
            compare(f"DFA grads == hand formula, w={width} d={depth} b={batch}",
                    [(n, p.grad) for n, p in dfa.model.named_parameters()], hand)
    print(f"all checks passed (worst max relative error {worst:.2e})")


def main():
    args = ARGS
    dev = pick_device(args.device)
    set_precision(args.tf32)
    if dev.type == "cpu" and args.threads is not None:
        torch.set_num_threads(args.threads)
    threads = torch.get_num_threads() if dev.type == "cpu" else None
    name = device_name(dev)
    extra = f"{threads} threads" if threads is not None else \
        f"CUDA {torch.version.cuda}, cuBLAS"
    print(f"torch {torch.__version__} | python {sys.version.split()[0]} | device {dev}: "
          f"{name} ({extra}) | TF32 {'on' if args.tf32 else 'off'}")
    if args.check:
        run_check(dev)
        return
    if args.matmul:
        doc = run_matmul(args, dev, name, threads)
    else:
        doc = run_grid(args, dev, name, threads)
    if args.json:
        grid.write_json(args.json, doc)


if __name__ == "__main__":
    main()
