"""Normalization and dropout layers."""

import nnx

EXAMPLES = {
    "instancenorm2d": (
        lambda: nnx.InstanceNorm2d(2, affine=True, track_running_stats=True),
        (2, 2, 3, 3),
    ),
    "batchnorm3d": (lambda: nnx.BatchNorm3d(2), (2, 2, 2, 2, 2)),
    "instancenorm1d": (lambda: nnx.InstanceNorm1d(3, affine=True, bias=False), (2, 3, 4)),
    "instancenorm3d": (nnx.InstanceNorm3d, (2, 2, 2, 2, 2)),
    "local-response": (lambda: nnx.LocalResponseNorm(2), (2, 3, 4)),
    "dropout1d": (lambda: nnx.Dropout1d(0.3, rng=0), (2, 3, 4)),
    "dropout3d": (lambda: nnx.Dropout3d(0.3, rng=0), (2, 3, 2, 2, 2)),
    "alpha-dropout": (lambda: nnx.AlphaDropout(0.2, rng=0), (3, 4)),
    "feature-alpha-dropout": (lambda: nnx.FeatureAlphaDropout(0.2, rng=0), (2, 3, 4)),
}
