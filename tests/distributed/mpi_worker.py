"""Run under ``mpiexec -n N python -m mpi4py tests/distributed/mpi_worker.py SCENARIO OUT``.

Scenarios (what tests/distributed/test_distributed.py checks afterwards):
  train  distributed Trainer run of :func:`problem`; rank 0 writes OUT/params.npz and history.json
  batchnorm  a model with BatchNorm1d; every rank writes OUT/rank<r>.npz
  loop   a hand-written loop with the public API; rank 0 writes OUT/params.npz
  syncbn a Conv2d-SyncBatchNorm model (converted from BatchNorm2d); rank 0 writes OUT/params.npz
         and history.json
  tuple  two inputs (a tuple) through Parallel/Concat; rank 0 writes OUT/params.npz, history.json
  augment  image batches with seeded random crops and flips; rank 0 writes OUT/params.npz and
         history.json
  accumulate  :func:`problem` with gradient accumulation over 3 batches (a short last group of
         one batch of 1 sample); rank 0 writes OUT/params.npz and history.json
  metrics  :func:`problem` with the confusion-matrix metrics (summed) and AUROC (gathered);
         rank 0 writes OUT/params.npz, history.json and evaluate.json (the metrics of
         ``evaluate`` on 2 rows)
  mixed  :func:`problem` in float32 trained in float16 mixed precision; rank 0 writes
         OUT/params.npz and history.json
  mismatch-data / mismatch-lr / mismatch-count  rank 1 holds other data of the same shape, another
         learning rate, or one sample fewer; every rank stops in ``fit`` with RankMismatchError,
         rank 0 prints its one line and every rank exits 2
  raise / kill / hang  rank 1 raises, is killed with SIGKILL, or hangs in epoch 2, after rank 0
         wrote OUT/last.npz at the end of epoch 1
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from pathlib import Path

import numpy as np

N_SAMPLES, BATCH, EPOCHS = 41, 8, 3  # the last batch holds 1 sample: other ranks' shards are empty


def problem(seed: int = 0):
    """Data, model, loss and optimizer shared by the workers and the one-process reference."""
    import nnx

    rng = np.random.default_rng(123)
    x = rng.standard_normal((N_SAMPLES, 5))
    y = (x[:, 0] + x[:, 1] * x[:, 2] > 0).astype(np.int64) + (x[:, 3] > 1)
    init = np.random.default_rng(seed)
    model = nnx.Sequential(
        nnx.Linear(5, 12, rng=init), nnx.ReLU(), nnx.Dropout(0.3), nnx.Linear(12, 3, rng=init)
    ).to("cpu", dtype="float64")
    optimizer = nnx.optim.Adam(model.parameters(), lr=0.05)
    return (x, y), model, nnx.CrossEntropyLoss(), optimizer


def image_problem(seed: int = 0):
    """:func:`problem`'s labels with (N, 2, 4, 4) images, through a BatchNorm2d model."""
    import nnx

    (x, y), *_ = problem()
    images = np.random.default_rng(5).standard_normal((N_SAMPLES, 2, 4, 4))
    images[:, 0, :2, :2] += x[:, :1, None]  # make the labels learnable from the images
    init = np.random.default_rng(seed)
    model = nnx.Sequential(
        nnx.Conv2d(2, 3, 3, rng=init),
        nnx.BatchNorm2d(3),
        nnx.ReLU(),
        nnx.Flatten(),
        nnx.Linear(12, 3, rng=init),
    ).to("cpu", dtype="float64")
    return (images, y), model, nnx.CrossEntropyLoss(), nnx.optim.Adam(model.parameters(), lr=0.05)


def tuple_problem(seed: int = 0):
    """:func:`problem` with its 5 features split into two inputs, (x[:, :2], x[:, 2:])."""
    import nnx

    (x, y), *_ = problem()
    init = np.random.default_rng(seed)
    model = nnx.Sequential(
        nnx.Parallel(nnx.Linear(2, 6, rng=init), nnx.Linear(3, 6, rng=init)),
        nnx.Concat(),
        nnx.ReLU(),
        nnx.Dropout(0.3),
        nnx.Linear(12, 3, rng=init),
    ).to("cpu", dtype="float64")
    inputs = (x[:, :2], x[:, 2:])
    return (inputs, y), model, nnx.CrossEntropyLoss(), nnx.optim.Adam(model.parameters(), lr=0.05)


def augment_problem(seed: int = 0):
    """:func:`image_problem`'s images through a model without BatchNorm (local statistics would
    differ from one process's), trained with seeded random crops and flips."""
    import nnx

    (images, y), *_ = image_problem()
    init = np.random.default_rng(seed)
    model = nnx.Sequential(
        nnx.Conv2d(2, 3, 3, padding=1, rng=init),
        nnx.ReLU(),
        nnx.Flatten(),
        nnx.Linear(48, 3, rng=init),
    ).to("cpu", dtype="float64")
    return (images, y), model, nnx.CrossEntropyLoss(), nnx.optim.Adam(model.parameters(), lr=0.05)


def augmentation():
    """The augmentation of the ``augment`` scenario (and of its one-process reference)."""
    import nnx

    return nnx.augment.Compose(
        [nnx.augment.RandomCrop(4, padding=1), nnx.augment.RandomHorizontalFlip()]
    )


def mixed_problem(seed: int = 0):
    """:func:`problem` with float32 weights (the masters of mixed precision)."""
    import nnx

    (x, y), _, loss, _ = problem()
    init = np.random.default_rng(seed)
    model = nnx.Sequential(
        nnx.Linear(5, 12, rng=init),
        nnx.ReLU(),
        nnx.Dropout(0.3),
        nnx.Linear(12, 3, rng=init),
    ).to("cpu", dtype="float32")
    return (x, y), model, loss, nnx.optim.Adam(model.parameters(), lr=0.05)


PROBLEMS = {
    "syncbn": image_problem,
    "tuple": tuple_problem,
    "augment": augment_problem,
    "mixed": mixed_problem,
}
# Trainer options of a scenario (its one-process reference takes the same)
OPTIONS = {
    "accumulate": {"accumulate": 3},
    "mixed": {"precision": "float16"},
    "metrics": {"metrics": ("accuracy", "f1", "f1_micro", "precision_weighted", "auroc")},
}


def first_rows(data, n):
    """The first ``n`` samples of an array or a tuple of arrays."""
    return tuple(a[:n] for a in data) if isinstance(data, tuple) else data[:n]


class Fault:
    """A callback that makes rank 1 fail in epoch 2 (after rank 0 saved epoch 1)."""

    def __init__(self, how: str):
        import nnx

        base = nnx.Callback

        class _Fault(base):
            def on_batch_end(self, trainer, batch):
                if trainer.rank != 1 or trainer.epoch < 1 or batch < 2:
                    return
                if how == "raise":
                    raise RuntimeError("injected fault on rank 1")
                if how == "kill":
                    os.kill(os.getpid(), signal.SIGKILL)
                time.sleep(3600)  # hang

        self.callback = _Fault()


def main(scenario: str, out: Path) -> None:
    import nnx
    import nnx.distributed as dist

    world = dist.init()
    if scenario == "loop":
        (x, y), model, loss, optimizer = problem(seed=world.rank)  # different weights per rank
        dist.broadcast_parameters(model)
        loader = nnx.data.DataLoader(
            nnx.data.ArrayDataset(x, y),
            BATCH,
            seed=0,
            rank=dist.rank(),
            world_size=dist.world_size(),
        )
        for epoch in range(EPOCHS):
            loader.set_epoch(epoch)
            model.eval()  # dropout off: this loop does not split the masks
            for xb, yb in loader:
                model.zero_grad()
                if xb.shape[0]:
                    loss.forward(model(xb), yb)
                    model.backward(loss.backward())
                dist.allreduce_gradients(model, xb.shape[0])
                optimizer.step()
        # uneven counts and missing gradients: rank 0 has 2 samples, rank 1 has 1 and no grad
        p, q = nnx.Parameter(np.zeros(3)), nnx.Parameter(np.zeros(2))
        p.grad = np.full(3, 2.0) if world.rank == 0 else None
        dist.allreduce_gradients([p, q], 2 if world.rank == 0 else 1)
        if world.rank == 0:
            np.savez(out / "params.npz", **model.state_dict())
            np.save(out / "uneven.npy", p.grad)
            assert q.grad is None  # no rank had one: it stays None
        return
    if scenario == "batchnorm":  # local batch statistics, averaged over the ranks each epoch
        (x, y), _, loss, _ = problem()
        init = np.random.default_rng(world.rank)
        model = nnx.Sequential(
            nnx.Linear(5, 6, rng=init), nnx.BatchNorm1d(6), nnx.ReLU(), nnx.Linear(6, 3, rng=init)
        ).to("cpu", dtype="float64")
        optimizer = nnx.optim.Adam(model.parameters(), lr=0.05)
        trainer = nnx.Trainer(
            model, loss, optimizer, device="cpu", progress=False, distributed=True
        )
        trainer.fit((x[:40], y[:40]), epochs=2, batch_size=BATCH)  # no batch of 1 sample
        np.savez(out / f"rank{world.rank}.npz", **model.state_dict())
        return
    (x, y), model, loss, optimizer = PROBLEMS.get(scenario, problem)(seed=world.rank)
    if scenario.startswith("mismatch-") and world.rank == 1:
        if scenario == "mismatch-data":
            x = x[::-1].copy()
        elif scenario == "mismatch-lr":
            optimizer.lr = 0.04
        else:
            x, y = x[:-1], y[:-1]
    if scenario == "syncbn":
        nnx.SyncBatchNorm.convert_sync_batchnorm(model)
    callbacks = [nnx.ModelCheckpoint(out, monitor="train_loss")]
    if scenario in ("raise", "kill", "hang"):
        callbacks.append(Fault(scenario).callback)
    trainer = nnx.Trainer(
        model,
        loss,
        optimizer,
        device="cpu",
        callbacks=callbacks,
        seed=7,
        progress=False,
        distributed=True,
        augment=augmentation() if scenario == "augment" else None,
        **{"metrics": ("accuracy",), **OPTIONS.get(scenario, {})},
    )
    try:
        trainer.fit((x, y), val=(first_rows(x, 13), y[:13]), epochs=EPOCHS, batch_size=BATCH)
    except dist.RankMismatchError as err:
        if world.rank == 0:
            print(f"error: {err}", file=sys.stderr, flush=True)
        sys.exit(2)
    if scenario == "metrics":  # 2 rows: with 3 ranks, one holds none and sends zeros
        few = trainer.evaluate((first_rows(x, 2), y[:2]))
        if world.rank == 0:
            (out / "evaluate.json").write_text(json.dumps(few))
    if world.rank == 0:
        np.savez(out / "params.npz", **model.state_dict())
        (out / "history.json").write_text(json.dumps(trainer.history.records))


if __name__ == "__main__":
    main(sys.argv[1], Path(sys.argv[2]))
