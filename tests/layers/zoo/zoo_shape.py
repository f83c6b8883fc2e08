"""Shape and resampling layers."""

import nnx

EXAMPLES = {
    "upsample-bicubic": (lambda: nnx.Upsample(scale_factor=2, mode="bicubic"), (2, 1, 3, 3)),
    "upsample-trilinear": (
        lambda: nnx.Upsample(size=(3, 2, 3), mode="trilinear", align_corners=True),
        (2, 1, 2, 2, 2),
    ),
    "upsampling-bilinear2d": (lambda: nnx.UpsamplingBilinear2d(scale_factor=2), (2, 1, 2, 3)),
    "unflatten": (lambda: nnx.Unflatten(1, (2, 3)), (2, 6)),
    "pixel-shuffle": (lambda: nnx.PixelShuffle(2), (2, 4, 2, 2)),
    "pixel-unshuffle": (lambda: nnx.PixelUnshuffle(2), (2, 1, 4, 2)),
    "channel-shuffle": (lambda: nnx.ChannelShuffle(2), (2, 4, 3)),
}
