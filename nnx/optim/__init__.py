"""Optimizers (SGD in ``sgd``; Adagrad, RMSprop, Adam, AdamW in ``adaptive``; the base class in
``base``), learning-rate schedules and gradient clipping."""

from .adaptive import Adagrad, Adam, AdamW, RMSprop
from .base import Optimizer
from .clip import clip_grad_norm, clip_grad_value
from .schedules import (
    CosineAnnealingLR,
    CosineAnnealingWarmRestarts,
    ExponentialLR,
    InverseTimeDecay,
    LinearWarmup,
    OneCycleLR,
    ReduceLROnPlateau,
    Schedule,
    StepLR,
)
from .sgd import SGD

__all__ = [
    "SGD",
    "Adagrad",
    "Adam",
    "AdamW",
    "CosineAnnealingLR",
    "CosineAnnealingWarmRestarts",
    "ExponentialLR",
    "InverseTimeDecay",
    "LinearWarmup",
    "OneCycleLR",
    "Optimizer",
    "RMSprop",
    "ReduceLROnPlateau",
    "Schedule",
    "StepLR",
    "clip_grad_norm",
    "clip_grad_value",
]
