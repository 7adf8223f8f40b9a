#!/usr/bin/env python3
"""One training step of equilibrium propagation or predictive coding in PyTorch eager,
written the way the published PyTorch code loops, to time beside
`examples/energy_step.rs` on the same machine.

* EP follows Laborieux et al.'s `Equilibrium-Propagation` repository (`P_MLP`): the
  primitive function Phi = sum_l (W_l s_{l-1} + b_l) . s_l - beta * CE(s_L, y), every
  settling iteration one `torch.autograd.grad(Phi, neurons)` and s_l <- rho(dPhi/ds_l)
  (the output, with cross-entropy, takes dPhi/ds_L as it is); T free iterations from
  zero, K nudged ones at +beta (and at -beta with --symmetric), then the update from
  (Phi(s^beta) - Phi(s^0)) / beta (or the symmetric difference) by `.backward()` and
  one Adam step.
* PC: value nodes start at the feedforward pass; T inference steps, each one
  `torch.autograd.grad(F, values)` of F = sum_l 0.5 ||x_l - f(W_l x_{l-1} + b_l)||^2
  + beta * CE(out, y) and x <- x - rate * dF/dx; then (F / beta).backward() for the
  weights and one Adam step (the same update as `plasticity::learner::PredictiveCoding`).

    python3 benches/reference/torch_energy_step.py --rule ep --hidden 500 \\
        --activation sigmoid --batch 20 --free-steps 20 --nudged-steps 4 --beta 0.2 --symmetric
    python3 benches/reference/torch_energy_step.py --rule pc --hidden 256,256 --batch 64

Timing: --warmup untimed steps, then --repeats timed ones (synchronised on CUDA); the
median and minimum per step are printed with the thread count. Data: random, on the
device, a few batches cycled through.
"""

import argparse
import statistics
import sys
import time

import torch
import torch.nn.functional as F

ACTIVATIONS = {"sigmoid": torch.sigmoid, "tanh": torch.tanh, "relu": torch.relu}


def parse_args():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rule", choices=["ep", "pc"], default="ep")
    p.add_argument("--hidden", default="500", help="comma list of hidden widths")
    p.add_argument("--activation", choices=sorted(ACTIVATIONS), default=None,
                   help="hidden activation (default sigmoid for ep, tanh for pc)")
    p.add_argument("--batch", type=int, default=None, help="default 20 for ep, 64 for pc")
    p.add_argument("--free-steps", type=int, default=20)
    p.add_argument("--nudged-steps", type=int, default=4)
    p.add_argument("--beta", type=float, default=None, help="default 0.2 for ep, 0.1 for pc")
    p.add_argument("--symmetric", action="store_true", help="ep: nudge at +beta and -beta")
    p.add_argument("--steps", type=int, default=20, help="pc: inference steps")
    p.add_argument("--rate", type=float, default=0.1, help="pc: inference step size")
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--repeats", type=int, default=30)
    p.add_argument("--threads", type=int, default=None, help="torch.set_num_threads")
    p.add_argument("--device", default="cpu")
    a = p.parse_args()
    a.hidden = [int(w) for w in a.hidden.split(",") if w]
    a.activation = a.activation or ("sigmoid" if a.rule == "ep" else "tanh")
    a.batch = a.batch or (20 if a.rule == "ep" else 64)
    a.beta = a.beta if a.beta is not None else (0.2 if a.rule == "ep" else 0.1)
    return a


class Mlp(torch.nn.Module):
    def __init__(self, widths, act):
        super().__init__()
        self.synapses = torch.nn.ModuleList(
            torch.nn.Linear(a, b) for a, b in zip(widths[:-1], widths[1:]))
        self.act = act

    # --- equilibrium propagation (P_MLP's Phi and settling loop) ---
    def phi(self, x, y, neurons, beta):
        layers = [x] + neurons
        phi = sum((syn(layers[i]) * layers[i + 1]).sum(1) for i, syn in enumerate(self.synapses))
        if beta != 0.0:
            phi = phi - beta * F.cross_entropy(layers[-1], y, reduction="none")
        return phi

    def settle(self, x, y, neurons, steps, beta):
        ones = torch.ones(x.size(0), device=x.device)
        for _ in range(steps):
            grads = torch.autograd.grad(self.phi(x, y, neurons, beta), neurons, grad_outputs=ones)
            neurons = [self.act(g) for g in grads[:-1]] + [grads[-1]]
            for n in neurons:
                n.requires_grad_(True)
        return neurons

    # --- predictive coding ---
    def energy(self, x, y, values, beta):
        below, f = x, 0.0
        for syn, v in zip(self.synapses[:-1], values):
            f = f + 0.5 * ((v - self.act(syn(below))) ** 2).sum()
            below = v
        return f + beta * F.cross_entropy(self.synapses[-1](below), y, reduction="sum")


def ep_step(net, opt, x, y, a):
    zeros = [torch.zeros(x.size(0), s.out_features, device=x.device, requires_grad=True)
             for s in net.synapses]
    free = net.settle(x, y, zeros, a.free_steps, 0.0)
    free = [n.detach().requires_grad_(True) for n in free]
    pos = net.settle(x, y, [n.clone() for n in free], a.nudged_steps, a.beta)
    if a.symmetric:
        neg = net.settle(x, y, [n.clone() for n in free], a.nudged_steps, -a.beta)
        low, betas = neg, (-a.beta, a.beta)
    else:
        low, betas = free, (0.0, a.beta)
    opt.zero_grad()
    low = [n.detach() for n in low]
    pos = [n.detach() for n in pos]
    phi_low = net.phi(x, y, low, betas[0]).mean()
    phi_pos = net.phi(x, y, pos, betas[1]).mean()
    ((phi_pos - phi_low) / (betas[0] - betas[1])).backward()
    opt.step()


def pc_step(net, opt, x, y, a):
    with torch.no_grad():
        values, below = [], x
        for syn in net.synapses[:-1]:
            below = net.act(syn(below))
            values.append(below.clone())
    for v in values:
        v.requires_grad_(True)
    for _ in range(a.steps):
        grads = torch.autograd.grad(net.energy(x, y, values, a.beta), values)
        with torch.no_grad():
            for v, g in zip(values, grads):
                v -= a.rate * g
    opt.zero_grad()
    values = [v.detach() for v in values]
    (net.energy(x, y, values, a.beta) / (a.beta * x.size(0))).backward()
    opt.step()


def main():
    a = parse_args()
    if a.threads:
        torch.set_num_threads(a.threads)
    device = torch.device(a.device)
    torch.manual_seed(1)
    net = Mlp([784] + a.hidden + [10], ACTIVATIONS[a.activation]).to(device)
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    data = [(torch.rand(a.batch, 784, device=device), torch.randint(0, 10, (a.batch,), device=device))
            for _ in range(4)]
    step = ep_step if a.rule == "ep" else pc_step
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    times = []
    for i in range(a.warmup + a.repeats):
        x, y = data[i % len(data)]
        sync()
        start = time.perf_counter()
        step(net, opt, x, y, a)
        sync()
        if i >= a.warmup:
            times.append(time.perf_counter() - start)
    med, low = statistics.median(times) * 1e3, min(times) * 1e3
    settings = (f"free_steps={a.free_steps},nudged_steps={a.nudged_steps},beta={a.beta},symmetric={a.symmetric}"
                if a.rule == "ep" else f"steps={a.steps},rate={a.rate},beta={a.beta}")
    widths = "-".join(str(w) for w in [784] + a.hidden + [10])
    print(f"torch {torch.__version__} {a.rule} | {widths} {a.activation} | batch {a.batch} | {settings} | "
          f"{device} ({torch.get_num_threads()} threads) | median {med:.3f} ms/step | min {low:.3f} ms/step | "
          f"{a.batch / (med / 1e3):.0f} samples/s")


if __name__ == "__main__":
    sys.exit(main())
