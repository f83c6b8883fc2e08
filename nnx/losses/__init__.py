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

from .adaptive import AdaptiveLogSoftmaxWithLoss, ASMOutput
from .base import REDUCTIONS, Loss, not_a_loss_message
from .classification import BCELoss, BCEWithLogitsLoss, CrossEntropyLoss, KLDivLoss, NLLLoss
from .ctc import CTCLoss
from .probabilistic import GaussianNLLLoss, PoissonNLLLoss
from .regression import HuberLoss, L1Loss, MSELoss, SmoothL1Loss

__all__ = [
    "REDUCTIONS",
    "ASMOutput",
    "AdaptiveLogSoftmaxWithLoss",
    "BCELoss",
    "BCEWithLogitsLoss",
    "CTCLoss",
    "CrossEntropyLoss",
    "GaussianNLLLoss",
    "HuberLoss",
    "KLDivLoss",
    "L1Loss",
    "Loss",
    "MSELoss",
    "NLLLoss",
    "PoissonNLLLoss",
    "SmoothL1Loss",
    "not_a_loss_message",
]
