"""MNIST from its four IDX files (gzipped or not), read with gzip and NumPy only.

Shared by torch_lenet.py, torch_mnist_epoch.py, torch_load_checkpoint.py and
torch_synthetic_gradients.py (each imports it from its own folder).
Pixels are scaled to [0, 1] like the crate's loader; labels are int64. NumPy is imported
only when a file is read, so a script can take BUNDLED_MNIST for its argument defaults
before it imports anything else.
"""

import gzip
import os
import sys

CLASSES = 10
BUNDLED_MNIST = os.path.normpath(
    os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "data", "mnist"))
MNIST_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}


def read_idx(path):
    """An IDX file of unsigned bytes (gzipped or not) as a numpy array, checked."""
    import numpy as np
    with open(path, "rb") as f:
        raw = f.read()
    if raw[:2] == b"\x1f\x8b":
        raw = gzip.decompress(raw)
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] != 8:
        sys.exit(f"{path}: not an unsigned-byte IDX file")
    ndim = raw[3]
    dims = [int.from_bytes(raw[4 + 4 * i:8 + 4 * i], "big") for i in range(ndim)]
    start = 4 + 4 * ndim
    if len(raw) - start != int(np.prod(dims)):
        sys.exit(f"{path}: header {dims} needs {int(np.prod(dims))} bytes, "
                 f"file has {len(raw) - start}")
    return np.frombuffer(raw, np.uint8, offset=start).reshape(dims)


def find_file(directory, name):
    """DIR/name.gz or DIR/name, whichever exists (exits if neither does)."""
    for candidate in (name + ".gz", name):
        path = os.path.join(directory, candidate)
        if os.path.isfile(path):
            return path
    sys.exit(f"MNIST {directory}: neither {name} nor {name}.gz exists")


def load_mnist(directory):
    """{"train": (x, y), "test": (x, y)}: x float32 [n, 28, 28] in [0, 1], y int64 [n]."""
    import numpy as np
    out = {}
    for split, (images, labels) in MNIST_FILES.items():
        x = read_idx(find_file(directory, images))
        y = read_idx(find_file(directory, labels))
        if x.ndim != 3 or x.shape[1:] != (28, 28) or y.shape != (x.shape[0],):
            sys.exit(f"MNIST {directory}: {split} images {x.shape}, labels {y.shape}; "
                     "expected [n, 28, 28] and [n]")
        if y.max() >= CLASSES:
            sys.exit(f"MNIST {directory}: {split} label {y.max()} >= {CLASSES}")
        out[split] = (x.astype(np.float32) / 255.0, y.astype(np.int64))
    return out
