#!/usr/bin/env python3
"""Loads a plasticity checkpoint into the PyTorch network it describes and evaluates it.

The checkpoint's metadata names the architecture (`inputs`, `layers`); this builds the
same network as an `nn.Sequential` held as `self.layers` (each non-identity activation
a module of its own after its layer, the indexing the checkpoint's tensor names use),
loads the weights with `load_state_dict(strict=True)`, and prints the test accuracy on
MNIST's 10,000 test images. The crate's own evaluation of the same file must agree:
that checks the layout (NCHW, `[out, in, kh, kw]` kernels, channel-major flatten) and
the convolution, pooling and activation semantics against PyTorch's.

    cargo run --release --example mnist -- --model lenet --rule bp --epochs 1 --save run.safetensors
    python3 benches/reference/torch_load_checkpoint.py run.safetensors [--mnist DIR]

Needs torch and numpy; reads safetensors itself (no safetensors package).
"""

import argparse
import json
import os
import struct
import sys

import numpy as np
import torch
from torch import nn

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from mnist_idx import BUNDLED_MNIST, MNIST_FILES, find_file, read_idx  # noqa: E402

ACTIVATIONS = {
    "identity": None,
    "relu": nn.ReLU,
    "tanh": nn.Tanh,
    "sigmoid": nn.Sigmoid,
    "leaky_relu": lambda: nn.LeakyReLU(0.01),
}


def read_safetensors(path):
    with open(path, "rb") as f:
        data = f.read()
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8:8 + n])
    meta = header.pop("__metadata__", {})
    body = data[8 + n:]
    tensors = {}
    for name, info in header.items():
        if info["dtype"] != "F32":
            sys.exit(f"{name}: dtype {info['dtype']}, expected F32")
        start, end = info["data_offsets"]
        tensors[name] = torch.from_numpy(
            np.frombuffer(body[start:end], dtype="<f4").reshape(info["shape"]).copy())
    return tensors, meta


def build(meta):
    """The nn.Sequential of the checkpoint's `inputs` and `layers` metadata."""
    shape = [int(v) for v in meta["inputs"].split("x")]
    modules = []
    for part in meta["layers"].split(","):
        kind, activation = part.split(":")
        name, *nums = kind.split("/")
        nums = [int(v) for v in nums]
        if name == "dense":
            modules.append(nn.Linear(shape[0], nums[0]))
            shape = [nums[0]]
        elif name == "conv2d":
            out, k, s, p = nums
            modules.append(nn.Conv2d(shape[0], out, k, stride=s, padding=p))
            shape = [out, (shape[1] + 2 * p - k) // s + 1, (shape[2] + 2 * p - k) // s + 1]
        elif name in ("max_pool2d", "avg_pool2d"):
            k, s, p = nums
            pool = nn.MaxPool2d if name == "max_pool2d" else nn.AvgPool2d
            modules.append(pool(k, stride=s, padding=p))
            shape = [shape[0], (shape[1] + 2 * p - k) // s + 1, (shape[2] + 2 * p - k) // s + 1]
        elif name == "flatten":
            modules.append(nn.Flatten())
            shape = [int(np.prod(shape))]
        else:
            sys.exit(f"unknown layer {kind!r}")
        make = ACTIVATIONS[activation]
        if make is not None:
            modules.append(make())
    inputs = [int(v) for v in meta["inputs"].split("x")]
    return nn.Sequential(*modules), inputs


class Model(nn.Module):
    def __init__(self, layers):
        super().__init__()
        self.layers = layers

    def forward(self, x):
        return self.layers(x)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("checkpoint")
    p.add_argument("--mnist", default=BUNDLED_MNIST, metavar="DIR")
    args = p.parse_args()
    tensors, meta = read_safetensors(args.checkpoint)
    layers, inputs = build(meta)
    model = Model(layers)
    state = {k: v for k, v in tensors.items() if k.startswith("layers.")}
    model.load_state_dict(state, strict=True)
    model.eval()
    images, labels = MNIST_FILES["test"]
    x = read_idx(find_file(args.mnist, images)).astype(np.float32) / 255.0
    y = read_idx(find_file(args.mnist, labels)).astype(np.int64)
    x = torch.from_numpy(x).reshape([-1] + inputs)
    with torch.no_grad():
        logits = torch.cat([model(x[i:i + 1000]) for i in range(0, len(x), 1000)])
    accuracy = (logits.argmax(1).numpy() == y).mean()
    print(f"torch {torch.__version__}: {model}")
    print(f"loaded {len(state)} tensors strictly; test accuracy: {100 * accuracy:.2f}%")


if __name__ == "__main__":
    main()
