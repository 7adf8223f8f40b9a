"""The PyTorch networks the reference scripts train on MNIST, shared by torch_lenet.py
and torch_mnist_epoch.py. torch is imported inside the functions, so a script can
import this before it sets up torch's environment."""

CLASSES = 10
LENET_PARAMETERS = 61_706  # 156 + 2,416 + 48,120 + 10,164 + 850


def lenet5():
    """BioTorch's LeNetMNIST on 28x28 input: padding 2 on the first convolution gives the
    shapes of its 32x32 input (28 -> 14 -> 10 -> 5 -> 1)."""
    import torch.nn as nn
    return nn.Sequential(
        nn.Conv2d(1, 6, kernel_size=5, padding=2), nn.ReLU(), nn.MaxPool2d(2),  # 6x14x14
        nn.Conv2d(6, 16, kernel_size=5), nn.ReLU(), nn.MaxPool2d(2),            # 16x5x5
        nn.Conv2d(16, 120, kernel_size=5), nn.ReLU(),                           # 120x1x1
        nn.Flatten(),
        nn.Linear(120, 84), nn.ReLU(),
        nn.Linear(84, CLASSES),
    )


def mlp(hidden=(800, 800), inputs=784):
    """inputs-hidden...-10 with tanh after every hidden layer, PyTorch's default init."""
    import torch.nn as nn
    layers, fan_in = [], inputs
    for width in hidden:
        layers += [nn.Linear(fan_in, width), nn.Tanh()]
        fan_in = width
    layers.append(nn.Linear(fan_in, CLASSES))
    return nn.Sequential(*layers)
