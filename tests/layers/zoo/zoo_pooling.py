"""The pooling layers: 3-d, adaptive, power-average, fractional, and max pooling followed by
unpooling with its indices."""

import nnx


@nnx.register_module
class PoolUnpool(nnx.Module):
    """``MaxPool2d(return_indices=True)`` then ``MaxUnpool2d`` with those indices: one array in,
    one out, so the zoo's paths cover the tuple output and the two-input unpooling."""

    def __init__(self, kernel_size: int = 2):
        self.pool = nnx.MaxPool2d(kernel_size, return_indices=True)
        self.unpool = nnx.MaxUnpool2d(kernel_size)

    def forward(self, x):
        y, idx = self.pool(x)
        return self.unpool(y, idx)

    def backward(self, grad_out):
        return self.pool.backward(self.unpool.backward(grad_out))


# FractionalMaxPool draws new windows at every call, which the zoo's checks (the same output
# from the model, its Graph, its saved copy) cannot allow: the examples fix them with PyTorch's
# _random_samples; the seeded draws are tested in tests/layers/test_pool_parity.py.
_SAMPLES_2D = [[[0.25, 0.75], [0.5, 0.1]], [[0.9, 0.3], [0.0, 0.6]]]
_SAMPLES_3D = [[[0.25, 0.75, 0.4]], [[0.9, 0.3, 0.6]]]

EXAMPLES = {
    "maxpool3d": (lambda: nnx.MaxPool3d(2, stride=1, padding=1), (2, 2, 3, 4, 3)),
    "avgpool3d": (lambda: nnx.AvgPool3d(2, ceil_mode=True), (2, 2, 3, 4, 5)),
    "adaptive-avgpool3d": (lambda: nnx.AdaptiveAvgPool3d((2, None, 1)), (2, 2, 3, 4, 5)),
    "adaptive-maxpool1d": (lambda: nnx.AdaptiveMaxPool1d(3), (2, 2, 7)),
    "adaptive-maxpool2d": (lambda: nnx.AdaptiveMaxPool2d((2, 3)), (2, 2, 5, 5)),
    "adaptive-maxpool3d": (lambda: nnx.AdaptiveMaxPool3d(2), (2, 1, 3, 4, 5)),
    "lppool1d": (lambda: nnx.LPPool1d(2, 2), (2, 2, 6)),
    "lppool2d": (lambda: nnx.LPPool2d(2, 2, stride=1), (2, 2, 4, 5)),
    "lppool3d": (lambda: nnx.LPPool3d(float("inf"), 2), (2, 2, 2, 4, 4)),
    "fractional2d": (
        lambda: nnx.FractionalMaxPool2d(2, output_ratio=0.5, _random_samples=_SAMPLES_2D),
        (2, 2, 7, 8),
    ),
    "fractional3d": (
        lambda: nnx.FractionalMaxPool3d(2, output_size=2, _random_samples=_SAMPLES_3D),
        (2, 1, 4, 5, 4),
    ),
    "pool-unpool": (lambda: PoolUnpool(2), (2, 2, 4, 6)),
}
