"""3-d and transposed convolutions, Fold/Unfold and one padding layer of each mode."""

import nnx

EXAMPLES = {
    "conv3d": (lambda: nnx.Conv3d(2, 3, 2, padding=1, rng=0), (2, 2, 3, 3, 3)),
    "conv3d-strided-replicate": (
        lambda: nnx.Conv3d(2, 2, (1, 2, 2), stride=2, padding=1, padding_mode="replicate", rng=1),
        (1, 2, 3, 4, 4),
    ),
    "convtranspose1d": (
        lambda: nnx.ConvTranspose1d(2, 3, 3, stride=2, output_padding=1, rng=2),
        (2, 2, 4),
    ),
    "convtranspose3d": (
        lambda: nnx.ConvTranspose3d(2, 2, 2, stride=2, groups=2, rng=3),
        (1, 2, 2, 2, 2),
    ),
    "unfold": (lambda: nnx.Unfold(2, padding=1), (2, 2, 3, 3)),
    "fold": (lambda: nnx.Fold((3, 3), 2), (2, 8, 4)),
    "zeropad2d": (lambda: nnx.ZeroPad2d((1, 0, 2, -1)), (2, 2, 3, 3)),
    "constantpad1d": (lambda: nnx.ConstantPad1d(2, 0.5), (2, 3, 4)),
    "reflectionpad2d": (lambda: nnx.ReflectionPad2d(1), (2, 2, 3, 3)),
    "replicationpad3d": (lambda: nnx.ReplicationPad3d((1, 0, 0, 1, 1, 1)), (1, 2, 2, 2, 2)),
    "circularpad1d": (lambda: nnx.CircularPad1d((1, 2)), (2, 2, 4)),
}
