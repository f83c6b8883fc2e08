"""A few of the layers that predate the zoo, so the integration test covers each path."""

import nnx

EXAMPLES = {
    "conv2d": (lambda: nnx.Conv2d(2, 3, 3, padding=1, rng=0), (2, 2, 5, 5)),
    "batchnorm2d": (lambda: nnx.BatchNorm2d(2), (3, 2, 4, 4)),
    "layernorm": (lambda: nnx.LayerNorm(4), (3, 4)),
}
