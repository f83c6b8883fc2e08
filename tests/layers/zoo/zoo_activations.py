"""The activations of nnx/layers/activations_extra.py and activations_learned.py."""

import nnx

EXAMPLES = {
    "prelu-channels": (lambda: nnx.PReLU(3, 0.1), (2, 3, 4)),
    "rrelu": (lambda: nnx.RReLU(0.1, 0.4, rng=0), (3, 5)),
    "prelu": (nnx.PReLU, (3, 5)),
    "relu6": (nnx.ReLU6, (3, 5)),
    "celu": (lambda: nnx.CELU(0.5), (3, 5)),
    "glu": (lambda: nnx.GLU(1), (2, 6, 3)),
    "hardshrink": (nnx.Hardshrink, (3, 5)),
    "softshrink": (nnx.Softshrink, (3, 5)),
    "hardsigmoid": (nnx.Hardsigmoid, (3, 5)),
    "hardswish": (nnx.Hardswish, (3, 5)),
    "logsigmoid": (nnx.LogSigmoid, (3, 5)),
    "softmax2d": (nnx.Softmax2d, (2, 3, 2, 2)),
    "softmin": (lambda: nnx.Softmin(1), (3, 5)),
    "softsign": (nnx.Softsign, (3, 5)),
    "tanhshrink": (nnx.Tanhshrink, (3, 5)),
    "threshold": (lambda: nnx.Threshold(0.1, -0.5), (3, 5)),
}
