"""Losses with fused, numerically stable backward passes.

``loss(pred, target)`` returns a 0-d array; ``loss.backward()`` returns ``dL/dpred``. Each loss
checks that the target fits (shape, dtype, device) before computing anything.

>>> import numpy as np, nnx
>>> loss = nnx.MSELoss()
>>> float(loss(np.array([1.0, 3.0]), np.array([0.0, 1.0])))
2.5
>>> loss.backward()
array([1., 2.])
"""

from .adaptive import AdaptiveLogSoftmaxWithLoss
from .adaptive import ASMOutput as ASMOutput  # the named tuple it returns, not in __all__
from .base import REDUCTIONS as REDUCTIONS  # helpers for writing losses, not in __all__
from .base import Loss
from .base import not_a_loss_message as not_a_loss_message
from .classification import BCELoss, BCEWithLogitsLoss, CrossEntropyLoss, KLDivLoss, NLLLoss
from .ctc import CTCLoss
from .embedding import (
    CosineEmbeddingLoss,
    MarginRankingLoss,
    TripletMarginLoss,
    TripletMarginWithDistanceLoss,
)
from .margin import (
    HingeEmbeddingLoss,
    MultiLabelMarginLoss,
    MultiLabelSoftMarginLoss,
    MultiMarginLoss,
    SoftMarginLoss,
)
from .probabilistic import GaussianNLLLoss, PoissonNLLLoss
from .regression import HuberLoss, L1Loss, MSELoss, SmoothL1Loss

__all__ = [
    "AdaptiveLogSoftmaxWithLoss",
    "CTCLoss",
    "GaussianNLLLoss",
    "PoissonNLLLoss",
    "BCELoss",
    "BCEWithLogitsLoss",
    "CosineEmbeddingLoss",
    "CrossEntropyLoss",
    "HingeEmbeddingLoss",
    "HuberLoss",
    "KLDivLoss",
    "L1Loss",
    "Loss",
    "MSELoss",
    "MarginRankingLoss",
    "MultiLabelMarginLoss",
    "MultiLabelSoftMarginLoss",
    "MultiMarginLoss",
    "NLLLoss",
    "SmoothL1Loss",
    "SoftMarginLoss",
    "TripletMarginLoss",
    "TripletMarginWithDistanceLoss",
]
