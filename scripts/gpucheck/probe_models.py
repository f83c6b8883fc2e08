"""What the sync and memory probes train: small nnx models and steps on a backend, and the
last nnx frame of a traceback. Run the probes with ``--device cpu`` to check them without a GPU
(the GPU-only measurements are then reported as not made)."""

from __future__ import annotations

import argparse
import json
import traceback
from pathlib import Path
from typing import Any

import numpy as np

import nnx
from nnx.training.precision import MixedPrecision
from nnx.training.step import EagerStep

NNX_DIR = str(Path(nnx.__file__).resolve().parent)


def parse_device(description: str) -> str:
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--device", default="gpu", help="backend spec (default gpu: CuPy)")
    return p.parse_args().device


def mlp() -> nnx.Module:
    return nnx.Sequential(
        nnx.Linear(64, 128, rng=0), nnx.ReLU(), nnx.Linear(128, 64, rng=1), nnx.ReLU(),
        nnx.Linear(64, 10, rng=2),
    )  # fmt: skip


def cnn() -> nnx.Module:
    return nnx.Sequential(
        nnx.Conv2d(1, 8, 3, rng=0), nnx.ReLU(), nnx.MaxPool2d(2), nnx.Flatten(),
        nnx.Linear(8 * 3 * 3, 10, rng=1),
    )  # fmt: skip


def make_step(config: str, backend: nnx.Backend, batch: int = 128) -> tuple[Any, Any, Any]:
    """``(step, x, y)`` for one named configuration, on ``backend``."""
    image = config.startswith("cnn")
    model = (cnn() if image else mlp()).to(backend)
    loss = nnx.CrossEntropyLoss(check_labels="labels-checked" in config)
    params = list(model.parameters())
    if "adam" in config:
        opt = nnx.optim.Adam(params, lr=1e-3)
    else:
        opt = nnx.optim.SGD(params, lr=0.05, momentum=0.9)
    step: Any = EagerStep(model, loss, opt, clip_norm=1.0 if "clip" in config else None)
    if "mixed16" in config:
        step = MixedPrecision(step, "mixed16")
    rng = np.random.default_rng(0)
    shape = (batch, 1, 8, 8) if image else (batch, 64)
    x = backend.asarray(rng.standard_normal(shape).astype(np.float32))
    y = backend.asarray(rng.integers(0, 10, batch).astype(np.int64))
    return step, x, y


CONFIGS = (
    "mlp-sgd",
    "mlp-adam-clip",
    "mlp-sgd-labels-checked",
    "cnn-adam",
    "mlp-sgd-mixed16",
)
# the host syncs a configuration has by design (the others should have none)
EXPECTED_SYNC = {
    "mlp-sgd-labels-checked": "CrossEntropyLoss(check_labels=True) reads the smallest and largest "
    "label back (Trainer.fit checks the labels once and turns this off)",
    "mlp-sgd-mixed16": "MixedPrecision.apply reads back whether every gradient is finite",
}


def last_nnx_frame(err: BaseException) -> str:
    """``file:line in function: code`` of the innermost traceback frame inside nnx/."""
    frames = [f for f in traceback.extract_tb(err.__traceback__) if f.filename.startswith(NNX_DIR)]
    if not frames:
        return "(no nnx frame)"
    f = frames[-1]
    where = f.filename[len(NNX_DIR) - len("nnx") :]
    return f"{where}:{f.lineno} in {f.name}: {(f.line or '').strip()}"


def report(result: dict) -> None:
    print("RESULT " + json.dumps(result, default=str))
