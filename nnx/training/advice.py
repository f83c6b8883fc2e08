"""What to tell a user whose training turned NaN or infinite: advice that fits the case.

A lower learning rate is advised only where it can help: not when the learning rate is already
tiny, not when the weights were NaN before the first step, and not for float16 mixed precision
whose forward pass overflows float16 at the smallest loss scale (bfloat16 or float32 help).
"""

from __future__ import annotations

from typing import Any

TINY_LR = 1e-6  # at or below this, a lower learning rate is no advice


def divergence_advice(trainer: Any) -> str:
    """The advice after a NaN/inf loss or state, for the Trainer's optimizer and precision."""
    lr = trainer.optimizer.lr
    lower = lr > TINY_LR
    mixed = getattr(trainer, "mixed_precision", None)
    if mixed is not None and mixed.name == "float16":
        scale = mixed.scaler.scale if mixed.scaler is not None else 1.0
        text = (
            f"in float16 mixed precision values passed float16's largest (65504) at loss scale "
            f"{scale:g}: use precision='bfloat16' (PyTorch, JAX) or 'float32'"
        )
        return text + (", or try a lower learning rate" if lower else "")
    if lower:
        return "try a lower learning rate or gradient clipping"
    return (
        f"the learning rate is already {lr:g}: check the scale of the data and the model's "
        f"initialisation, or clip the gradients"
    )


def non_finite_state_advice(trainer: Any, message: str) -> str:
    """The line for weights or optimizer state found NaN/inf (by a checkpoint's check)."""
    if trainer.step == 0:  # before any update: the model was given so
        return (
            f"the model's weights or optimizer state hold NaN or infinity before training "
            f"({message}); check how the model is initialised"
        )
    return (
        f"the model or optimizer state became non-finite in epoch {trainer.epoch} ({message}); "
        f"{divergence_advice(trainer)}"
    )
