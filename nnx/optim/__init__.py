"""Optimizers, learning-rate schedules and gradient clipping."""

from .clip import clip_grad_norm, clip_grad_value
from .optimizers import SGD, Adagrad, Adam, AdamW, Optimizer, RMSprop
from .schedules import (
    CosineAnnealingLR,
    ExponentialLR,
    InverseTimeDecay,
    LinearWarmup,
    Schedule,
    StepLR,
)

__all__ = [
    "SGD",
    "Adagrad",
    "Adam",
    "AdamW",
    "CosineAnnealingLR",
    "ExponentialLR",
    "InverseTimeDecay",
    "LinearWarmup",
    "Optimizer",
    "RMSprop",
    "Schedule",
    "StepLR",
    "clip_grad_norm",
    "clip_grad_value",
]
