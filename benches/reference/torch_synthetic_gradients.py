#!/usr/bin/env python3
"""Synthetic gradients on MNIST, written independently in PyTorch: an accuracy reference
for the crate's `sg` and `csg` learners (src/learner/synthetic_gradients.rs).

The same method as the crate: 784-256-256-256-10 tanh, softmax cross-entropy, Adam 1e-3
decayed x0.8 per epoch, batch 64 (the `mnist` example's defaults). Every hidden layer l
has a predictor of the per-sample gradient dL/dh_l, linear (`A h + a`, plus `C y` on
the one-hot label with --conditioned), zero at the start, trained by Adam on
1/2 |g - target|^2 (batch mean) toward the gradient the layer above sends down: exact for
the top hidden layer, formed from the next predictor below it. Each hidden layer updates
from its own prediction; the output layer from the true error.

    python3 benches/reference/torch_synthetic_gradients.py                # sg
    python3 benches/reference/torch_synthetic_gradients.py --conditioned  # csg
    python3 benches/reference/torch_synthetic_gradients.py --frozen       # hidden layers fixed
    python3 benches/reference/torch_synthetic_gradients.py --predictor-hidden 256

--frozen keeps every hidden layer at its initial weights (only the output layer learns):
the floor an unconditioned predictor has to beat. --predictor-hidden N gives each
predictor one ReLU layer of N units (the DNI papers' larger synthesizers; last layer
zero-initialised). PyTorch's default initialisation, not the crate's: the figures agree
in kind, not to the digit. Prints the test accuracy (10,000 images) after every epoch.
"""

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from mnist_idx import BUNDLED_MNIST, load_mnist  # noqa: E402

WIDTH, HIDDEN_LAYERS, CLASSES = 256, 3, 10


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--mnist", default=BUNDLED_MNIST, help="directory of the IDX files")
    p.add_argument("--epochs", type=int, default=20)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--lr", type=float, default=1e-3, help="Adam, network and predictors")
    p.add_argument("--lr-decay", type=float, default=0.8, help="per epoch")
    p.add_argument("--conditioned", action="store_true", help="csg: predictors see y")
    p.add_argument("--frozen", action="store_true", help="hidden layers do not learn")
    p.add_argument("--predictor-hidden", type=int, default=0, help="0: linear predictors")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--threads", type=int, default=0, help="0: torch's default")
    a = p.parse_args()

    import torch
    import torch.nn as nn
    import torch.nn.functional as F

    torch.manual_seed(a.seed)
    if a.threads:
        torch.set_num_threads(a.threads)
    data = load_mnist(a.mnist)
    x_train = torch.tensor(data["train"][0].reshape(-1, 784))
    y_train = torch.tensor(data["train"][1])
    x_test = torch.tensor(data["test"][0].reshape(-1, 784))
    y_test = torch.tensor(data["test"][1])

    widths = [784] + [WIDTH] * HIDDEN_LAYERS + [CLASSES]
    layers = nn.ModuleList(nn.Linear(i, o) for i, o in zip(widths, widths[1:]))

    def predictor():
        inputs = WIDTH + (CLASSES if a.conditioned else 0)
        if a.predictor_hidden:
            last = nn.Linear(a.predictor_hidden, WIDTH)
            model = nn.Sequential(nn.Linear(inputs, a.predictor_hidden), nn.ReLU(), last)
        else:
            model = last = nn.Linear(inputs, WIDTH)
        nn.init.zeros_(last.weight)
        nn.init.zeros_(last.bias)
        return model

    predictors = nn.ModuleList(predictor() for _ in range(HIDDEN_LAYERS))
    optimizers = [torch.optim.Adam(m.parameters(), lr=a.lr) for m in (layers, predictors)]
    schedules = [torch.optim.lr_scheduler.ExponentialLR(o, a.lr_decay) for o in optimizers]

    def accuracy():
        with torch.no_grad():
            h = x_test
            for layer in layers[:-1]:
                h = torch.tanh(layer(h))
            return (layers[-1](h).argmax(1) == y_test).float().mean().item() * 100

    print(f"{'csg' if a.conditioned else 'sg'} | predictors: "
          f"{f'one ReLU layer of {a.predictor_hidden}' if a.predictor_hidden else 'linear'}"
          f"{' | hidden layers frozen' if a.frozen else ''} | batch {a.batch} | "
          f"Adam {a.lr} x{a.lr_decay}/epoch | seed {a.seed}")
    n = len(x_train)
    for epoch in range(1, a.epochs + 1):
        start, order, predictor_loss, steps = time.time(), torch.randperm(n), 0.0, 0
        for i in range(0, n, a.batch):
            idx = order[i:i + a.batch]
            x, y, batch = x_train[idx], y_train[idx], len(idx)
            context = F.one_hot(y, CLASSES).float() if a.conditioned else None
            for o in optimizers:
                o.zero_grad()
            # Each hidden layer's graph stops at its input: nothing flows between layers.
            io, h = [], x
            for layer in layers[:-1]:
                inp = h.detach().requires_grad_(True)
                h = torch.tanh(layer(inp))
                io.append((inp, h))
            top = h.detach().requires_grad_(True)
            F.cross_entropy(layers[-1](top), y).backward()
            guesses = [m(h.detach() if context is None else torch.cat([h.detach(), context], 1))
                       for m, (_, h) in zip(predictors, io)]
            # Per-sample targets: the top one exact, each lower one from the layer above.
            targets = [None] * HIDDEN_LAYERS
            targets[-1] = top.grad * batch
            for l, ((inp, h), g) in enumerate(zip(io, guesses)):
                h.backward(g.detach() / batch * (0.0 if a.frozen else 1.0))
                if l > 0:
                    targets[l - 1] = inp.grad * batch
            loss = sum(0.5 * ((g - t) ** 2).sum(1).mean() for g, t in zip(guesses, targets))
            loss.backward()
            predictor_loss, steps = predictor_loss + loss.item(), steps + 1
            for o in optimizers:
                o.step()
        for s in schedules:
            s.step()
        print(f"epoch {epoch:2} | test accuracy {accuracy():.2f}% | predictor loss "
              f"{predictor_loss / steps:.4f} | {time.time() - start:.1f} s", flush=True)


if __name__ == "__main__":
    main()
