"""The Trainer: fit / evaluate / predict on any backend, with callbacks and exact resume."""

from __future__ import annotations

import copy
import logging
import math
import os
import time
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

from ..backend import Backend, get_backend, namespace, to_numpy
from ..core.checks import positive_int
from ..core.module import Module, _accepts_need_input_grad
from ..core.structure import call_with, first_leaf, leaves, map_structure
from ..data import ArrayDataset, DataLoader
from ..data.augment import Augmentation, batch_generator, take_rows
from ..data.loader import shard_bounds
from ..io.checkpoint import NonFiniteStateError, checkpoint_arrays, load_state, write_checkpoint
from ..layers import Dropout, SyncBatchNorm
from ..losses import Loss, not_a_loss_message
from ..metrics import Metric, get_metric
from ..optim import Optimizer, clip_grad_norm
from ..optim.schedules import Schedule
from .callbacks import Callback, LRScheduler, ProgressBar
from .compile import CompiledStep
from .history import History
from .precision import PRECISIONS, MixedPrecisionStep
from .state import Counters, check_components

logger = logging.getLogger("nnx")

Data = ArrayDataset | tuple[Any, Any]


def _label_range(*datasets: ArrayDataset | None) -> tuple[int, int] | None:
    """Smallest and largest integer label over the data sets (one host read), None for float targets."""
    ys = [d.y for d in datasets if d is not None]
    if any(isinstance(y, (tuple, list, dict)) for y in ys):
        return None  # several targets: the loss checks its own
    xp = namespace(ys[0])
    if not xp.isdtype(ys[0].dtype, "integral"):
        return None
    ends = xp.stack([xp.min(y) for y in ys] + [xp.max(y) for y in ys])
    host = to_numpy(ends)
    return int(host[: len(ys)].min()), int(host[len(ys) :].max())


def _accumulation_weights(
    loader: DataLoader, k: int, loss: Loss
) -> list[tuple[bool, float, int | None]] | None:
    """Per mini-batch: (first of its group, weight of its loss gradient, and at the last
    mini-batch of the group the number of mini-batches in it, else None); None when ``k == 1``.

    Gradients of a group are summed with weights ``m * n_i / N`` (mean reduction; ``m`` for sum)
    and divided by ``m`` before the step, ``m`` being the group's mini-batches, ``n_i`` a
    mini-batch's samples and ``N`` the group's: the data gradient is then that of the group's
    concatenated batch, and a penalty gradient, which each backward adds once, counts once.
    """
    if k == 1:
        return None
    n, b = len(loader.dataset), loader.batch_size
    count = len(loader)
    sizes = [min(b, n - i * b) for i in range(count)]
    mean = getattr(loss, "reduction", "mean") == "mean"
    weights = []
    for start in range(0, count, k):
        group = sizes[start : start + k]
        m, total = len(group), sum(group)
        for j, size in enumerate(group):
            weights.append(
                (j == 0, m * size / total if mean else float(m), m if j == m - 1 else None)
            )
    return weights


def _concat_outputs(xp: Any, outputs: list[Any]) -> Any:
    """Batched model outputs (arrays, tuples or dicts of arrays) joined along the sample axis."""
    first = outputs[0]
    if isinstance(first, dict):
        return {k: xp.concat([o[k] for o in outputs], axis=0) for k in first}
    if isinstance(first, (tuple, list)):
        return tuple(xp.concat(list(parts), axis=0) for parts in zip(*outputs, strict=True))
    return xp.concat(outputs, axis=0)


def _scale_grads(params: list[Any], factor: float) -> None:
    for p in params:
        if p.grad is not None:
            p.grad = p.grad * factor


def _whole(value: Any, name: str, who: str) -> int:
    """An integer >= 0 (not a bool, not 2.7), else ValueError naming the setting."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
        raise ValueError(f"{who}: {name} must be a whole number >= 0, got {value!r}")
    return int(value)


def _check_real(array: Any, part: str, who: str) -> None:
    """Refuse complex data: casting it to the model's dtype would drop the imaginary part."""
    dtype = getattr(array, "dtype", None)
    if dtype is not None and "complex" in str(dtype):
        raise TypeError(f"{who}: the {part} are complex ({dtype}); nnx trains on real numbers")


def _check_finite_data(*named: tuple[str, ArrayDataset | None]) -> None:
    """Refuse NaN or infinite inputs or floating targets (one host read for all of them)."""
    checks, names = [], []
    for name, data in named:
        if data is None:
            continue
        for part, value in (("inputs", data.x), ("targets", data.y)):
            floating = [  # every array of a tuple or dict of inputs/targets too
                a
                for _, a in leaves(value)
                if hasattr(a, "dtype") and namespace(a).isdtype(a.dtype, "real floating")
            ]
            if not floating:
                continue
            xp = namespace(floating[0])
            ok = [xp.all(xp.isfinite(a)) for a in floating]
            checks.append(ok[0] if len(ok) == 1 else xp.all(xp.stack(ok)))
            names.append(f"the {name} {part}")
    if not checks:
        return
    xp = namespace(checks[0])
    finite = np.asarray(to_numpy(xp.stack(checks)))
    bad = [n for n, ok in zip(names, finite, strict=True) if not ok]
    if bad:
        raise ValueError(
            f"Trainer: {' and '.join(bad)} hold NaN or infinite values; remove or impute them "
            f"before training"
        )


class NonFiniteLossError(FloatingPointError):
    """The training loss became NaN or infinite; the message names the epoch and step."""


class Trainer:
    """Train ``model`` with ``loss`` and ``optimizer`` on a backend (``device`` spec or Backend).

    Args:
        model: the network; moved to the backend at once (its dtype is kept).
        loss: an nnx loss such as ``CrossEntropyLoss()``.
        optimizer: an nnx optimizer built on ``model.parameters()``.
        device: backend spec (``"auto"``, ``"cpu"``, ``"gpu"``, ``"cuda:1"``, ``"torch"``, ...).
        metrics: names (``"accuracy"``, ``"top5_accuracy"``, ``"mae"``, ``"mse"``) or Metric objects.
        callbacks: extra :class:`~nnx.training.callbacks.Callback` objects.
        seed: drives the shuffling order, the dropout masks and the augmentation of every
            epoch, so a run (and a resumed run) repeats exactly.
        schedule: a learning-rate schedule on ``optimizer``, stepped per ``schedule_interval``
            (``"epoch"`` or ``"batch"``).
        clip_norm: clip the global gradient norm to this value before each step.
        accumulate: take one optimizer step per ``accumulate`` mini-batches (gradient
            accumulation). Each mini-batch's loss gradient is weighted by its share of the
            group's samples, so with ``reduction="mean"`` the step equals one step on the
            concatenated batch (L1/L2 penalties included); a last group with fewer batches
            is weighted by its own size. ``on_batch_end`` still runs after every mini-batch;
            ``trainer.step`` counts optimizer steps.
        progress: show a progress bar (it stays quiet when stderr is not a terminal).
        jit: run each training step compiled by XLA (:func:`nnx.compile`; JAX backends only).
        precision: ``"float32"`` (default), or ``"float16"``, ``"bfloat16"``, ``"mixed16"``:
            16-bit compute with float32 master weights and dynamic loss scaling
            (:mod:`nnx.precision`); the model must be float32.
        distributed: data-parallel training over MPI (:mod:`nnx.distributed`, started with
            ``mpiexec -n N python -m mpi4py ...``): rank 0's parameters are broadcast, every
            global batch of ``batch_size`` is split over the ranks, gradients, losses and metrics
            are summed weighted by sample counts, and callbacks marked ``rank_zero_only``
            (checkpoints, logs, progress bar) run on rank 0 only. ``fit`` and ``evaluate`` are
            then collective: every rank must call them. The results equal one process's.
        augment: an :mod:`nnx.augment` transform (``RandomCrop``, ``RandomHorizontalFlip``,
            ``Compose``) applied on the device to every training batch of images, with the
            choices of batch ``b`` of epoch ``e`` drawn from ``(seed, e, b)``: runs repeat and
            resume exactly. It must keep the sample shape; validation, :meth:`evaluate` and
            :meth:`predict` batches are never augmented.

    History losses are the data losses, without L1/L2 penalty terms.
    """

    def __init__(
        self,
        model: Module,
        loss: Loss,
        optimizer: Optimizer,
        device: str | Backend = "auto",
        metrics: Sequence[str | Metric] = ("accuracy",),
        callbacks: Iterable[Callback] = (),
        seed: int = 0,
        schedule: Schedule | None = None,
        schedule_interval: str = "epoch",
        clip_norm: float | None = None,
        progress: bool = True,
        jit: bool = False,
        precision: str = "float32",
        distributed: bool = False,
        accumulate: int = 1,
        augment: Augmentation | None = None,
    ):
        if not isinstance(model, Module):
            raise TypeError(f"Trainer: model must be an nnx.Module, got {type(model).__name__}")
        if not isinstance(loss, Loss):
            raise TypeError(not_a_loss_message("Trainer", loss))
        if not isinstance(optimizer, Optimizer):
            raise TypeError(
                f"Trainer: optimizer must be an nnx optimizer, got {type(optimizer).__name__}"
            )
        if augment is not None and not isinstance(augment, Augmentation):
            raise TypeError(
                f"Trainer: augment must be an nnx.augment transform (RandomCrop, "
                f"RandomHorizontalFlip, Compose), got {type(augment).__name__}"
            )
        self.augment = augment
        self.world = None
        self.accumulate = positive_int(accumulate, "accumulate", "Trainer")
        if self.accumulate > 1 and (jit or precision != "float32"):
            raise ValueError(
                "Trainer: accumulate > 1 cannot be combined with jit or 16-bit precision yet "
                "(their compiled step takes one optimizer step per batch)"
            )
        if distributed and self.accumulate > 1:
            raise ValueError(
                "Trainer: accumulate > 1 cannot be combined with distributed training yet (each "
                "rank's gradient weights would need the global group sizes); use a larger "
                "global batch_size instead"
            )
        if distributed:
            from .. import distributed as dist

            if getattr(loss, "reduction", "mean") != "mean":
                raise ValueError(
                    "Trainer: distributed training weights each rank's gradient by its sample "
                    f"count, which needs a loss with reduction='mean', got {loss.reduction!r}"
                )
            self.world = dist.init()
        self.backend = get_backend(device)
        self.model = model
        self.loss = loss
        self.optimizer = optimizer
        self._move_to_backend()
        if self.world is not None:
            dist.broadcast_parameters(model)  # every rank starts from rank 0's weights
        self.metrics = [get_metric(m) for m in metrics]
        self.seed = _whole(seed, "seed", "Trainer")
        self.schedule = schedule
        self.clip_norm = clip_norm
        self.stepped = False  # whether the last mini-batch ended with an optimizer step
        extra = list(callbacks)
        for cb in extra:
            if not isinstance(cb, Callback):
                raise TypeError(f"Trainer: callback {cb!r} is not an nnx Callback")
        if schedule is not None:
            extra.append(LRScheduler(schedule, schedule_interval))
        if progress:
            extra.append(ProgressBar())
        if self.rank != 0:  # files and the progress bar are rank 0's
            extra = [cb for cb in extra if not cb.rank_zero_only]
        self.callbacks = sorted(extra, key=lambda cb: cb.order)
        self.history = History()
        if distributed and (jit or precision != "float32"):
            raise ValueError(
                "Trainer: distributed training cannot be combined with jit=True or mixed "
                "precision yet (their steps do not all-reduce gradients)"
            )
        self._compiled = self._compile_step() if jit else None
        if precision not in PRECISIONS:
            raise ValueError(
                f"Trainer: precision must be one of {', '.join(PRECISIONS)}, got {precision!r}"
            )
        self.precision = precision
        self.mixed_precision = None
        if precision != "float32":
            if jit:
                raise ValueError("Trainer: jit=True and mixed precision cannot be combined yet")
            self.mixed_precision = MixedPrecisionStep(
                model, loss, optimizer, precision, clip_norm=clip_norm
            )
            self._compiled = self.mixed_precision  # the same step interface
        self.epoch = 0  # completed epochs
        self.step = 0  # completed optimizer steps
        self.stop_training = False
        self._resumed_from: tuple[str, int] | None = None
        self.target_epochs = 0
        self.batches_per_epoch = 0

    @property
    def rank(self) -> int:
        """This process's rank in distributed training (0 otherwise)."""
        return 0 if self.world is None else self.world.rank

    @property
    def world_size(self) -> int:
        """The number of ranks in distributed training (1 otherwise)."""
        return 1 if self.world is None else self.world.size

    # ------------------------------------------------------------------ placement
    def _move_to_backend(self) -> None:
        saved = self.optimizer.state_dict() if any(self.optimizer.state) else None
        self.model.to(self.backend)
        if saved is not None:  # optimizer buffers follow the parameters
            self.optimizer.load_state_dict(saved)
        first = next(iter(self.model.parameters()), None)
        if first is None:
            raise ValueError("Trainer: the model has no parameters to train")
        self.dtype = first.value.dtype

    def _compile_step(self) -> CompiledStep:
        if self.backend.name != "jax":
            raise ValueError(
                f"Trainer: jit=True compiles the step with jax.jit and needs a JAX backend "
                f"(device='jax'), got {self.backend.name!r}"
            )
        return CompiledStep(self.model, self.loss, self.optimizer, self.clip_norm)

    def dataset(self, data: Data) -> ArrayDataset:
        """``data`` (an ArrayDataset or an ``(x, y)`` pair) on this Trainer's backend and dtype."""
        if isinstance(data, tuple) and len(data) == 2:
            data = ArrayDataset(*data)
        if not isinstance(data, ArrayDataset):
            raise TypeError(
                f"Trainer: data must be an nnx.data.ArrayDataset or an (x, y) pair, got "
                f"{type(data).__name__}"
            )
        if data.y is None:
            raise ValueError("Trainer: training and evaluation data need targets (y)")
        _check_real(data.x, "inputs", "Trainer")
        _check_real(data.y, "targets", "Trainer")
        return data.to(self.backend, dtype=self.dtype)

    # ------------------------------------------------------------------ training
    def fit(
        self,
        train: Data,
        val: Data | None = None,
        epochs: int = 10,
        batch_size: int = 32,
        shuffle: bool = True,
        drop_last: bool = False,
        eval_batch_size: int | None = None,
    ) -> History:
        """Train until ``epochs`` epochs are complete in total (a resumed Trainer continues from
        its epoch counter) and return the :class:`History`."""
        train_set = self.dataset(train)
        val_set = None if val is None else self.dataset(val)
        _whole(epochs, "epochs", "Trainer.fit")
        if len(train_set) == 0:
            raise ValueError("Trainer.fit: the training data has 0 rows")
        if val_set is not None and len(val_set) == 0:
            raise ValueError("Trainer.fit: the validation data has 0 rows (pass val=None for none)")
        self._label_range = _label_range(train_set, val_set)
        _check_finite_data(("training", train_set), ("validation", val_set))
        if self.augment is not None:
            self._check_augment(train_set)
        loader = DataLoader(
            train_set,
            batch_size,
            shuffle,
            drop_last,
            seed=self.seed,
            rank=self.rank,
            world_size=self.world_size,
        )
        eval_batch_size = eval_batch_size or max(batch_size, 256)
        self.target_epochs = _whole(epochs, "epochs", "Trainer.fit")
        self.batches_per_epoch = len(loader)
        self.stop_training = False
        if self.epoch >= self.target_epochs:
            return self.history
        for cb in self.callbacks:
            cb.on_fit_begin(self)
        # Labels were range-checked once above; the loss need not read them back every batch.
        check_labels = getattr(self.loss, "check_labels", None)
        if check_labels is not None:
            self.loss.check_labels = False
        try:
            while self.epoch < self.target_epochs and not self.stop_training:
                logs = self._train_epoch(loader)
                if val_set is not None:
                    for key, value in self.evaluate(val_set, eval_batch_size).items():
                        logs[f"val_{key}"] = value
                    if not math.isfinite(logs["val_loss"]):
                        raise NonFiniteLossError(
                            f"validation loss became {logs['val_loss']} at epoch {self.epoch + 1}; "
                            f"try a lower learning rate or gradient clipping"
                        )
                self.history.append(logs)
                self.epoch += 1
                for cb in self.callbacks:
                    cb.on_epoch_end(self, self.epoch - 1, logs)
        except KeyboardInterrupt:
            for cb in self.callbacks:
                cb.on_interrupt(self)
            raise
        except FloatingPointError as err:  # a NaN loss, or NaN/inf weights refused by a checkpoint
            for cb in self.callbacks:
                if isinstance(cb, ProgressBar):
                    cb.close()
            if self.world is not None and not isinstance(err, NonFiniteLossError):
                self.world.notify_failure(err)  # rank 0's checkpoint check: the others stop too
            if not isinstance(err, (NonFiniteLossError, NonFiniteStateError)):
                raise
            message = str(err)
            if isinstance(err, NonFiniteStateError):
                message = (
                    f"the model or optimizer state became non-finite in epoch {self.epoch} "
                    f"({message}); try a lower learning rate or gradient clipping"
                )
            raise NonFiniteLossError(f"{message}. {self._last_good_checkpoint()}") from None
        except BaseException as err:
            for cb in self.callbacks:
                if isinstance(cb, ProgressBar):
                    cb.close()
            if self.world is not None:
                self.world.notify_failure(err)  # the others print it and stop instead of waiting
            raise
        finally:
            if check_labels is not None:
                self.loss.check_labels = check_labels
        for cb in self.callbacks:
            cb.on_fit_end(self)
        return self.history

    def _check_augment(self, data: ArrayDataset) -> None:
        """The augmentation must fit the training samples and keep their shape (the validation
        and test samples, never augmented, keep theirs)."""
        if isinstance(data.x, (tuple, list, dict)):
            raise ValueError(
                "Trainer: augment applies to one input array of images, not to several inputs"
            )
        shape = tuple(int(s) for s in data.x.shape[1:])
        try:
            out = self.augment.output_shape(shape)
        except ValueError as err:
            raise ValueError(f"Trainer: augment={self.augment!r} does not fit: {err}") from None
        if tuple(out) != shape:
            raise ValueError(
                f"Trainer: augment={self.augment!r} turns samples of shape {shape} into "
                f"{tuple(out)}; it must keep their shape, since validation and test samples are "
                f"not augmented (crop to the image size, with padding)"
            )

    def _augment_batch(self, loader: DataLoader, epoch: int, batch: int, xb: Any) -> Any:
        """Training batch ``batch`` of ``epoch``, augmented with choices drawn from
        ``(seed, epoch, batch)`` for the whole global batch (this rank takes its rows)."""
        start, stop, total = loader.batch_rows(batch)
        shape = tuple(int(s) for s in xb.shape[1:])
        params = self.augment.draw(batch_generator(self.seed, epoch, batch), total, shape)
        if (start, stop) != (0, total):
            params = take_rows(params, start, stop)
        if stop == start:
            return xb
        return self.augment.apply(xb, params)

    def _last_good_checkpoint(self) -> str:
        """Where the last checkpoint with finite state is, for a NaN/inf message."""
        for cb in self.callbacks:
            good = getattr(cb, "last_good", None)
            if good is not None:
                return f"The last good checkpoint is {good[0]} (epoch {good[1]})"
        if self._resumed_from is not None:
            return f"The last good checkpoint is {self._resumed_from[0]} (epoch {self._resumed_from[1]})"
        return "No checkpoint was written"

    def _check_label_range(self, pred: Any) -> None:
        """Integer labels must index the model's outputs (checked on the host, no sync)."""
        if self._label_range is None or not hasattr(pred, "ndim") or pred.ndim != 2:
            return
        lo, hi = self._label_range
        if lo < 0 or hi >= pred.shape[1]:
            raise ValueError(
                f"Trainer: class labels run from {lo} to {hi}, but the model has "
                f"{pred.shape[1]} outputs (labels must lie in [0, {pred.shape[1] - 1}])"
            )

    def _reseed_dropout(self, epoch: int) -> None:
        for i, m in enumerate(self.model.modules()):
            if isinstance(m, Dropout):
                m.reseed(int(np.random.SeedSequence([self.seed, epoch, i]).generate_state(1)[0]))

    def _train_epoch(self, loader: DataLoader) -> dict[str, Any]:
        epoch = self.epoch
        for cb in self.callbacks:
            cb.on_epoch_begin(self, epoch)
        lr = self.optimizer.lr
        self.model.train()
        self._reseed_dropout(epoch)
        loader.set_epoch(epoch)
        for m in self.metrics:
            m.reset()
        model, loss_fn, optimizer = self.model, self.loss, self.optimizer
        params = list(model.parameters())
        skip_input_grad = _accepts_need_input_grad(model)
        groups = _accumulation_weights(loader, self.accumulate, loss_fn)
        first_step = self.step
        dropouts = [m for m in model.modules() if isinstance(m, Dropout)]
        collective = self.world is not None and any(
            isinstance(m, SyncBatchNorm) for m in model.modules()
        )
        losses, sizes = [], []
        start = time.perf_counter()
        for batch, (xb, yb) in enumerate(loader):
            if self.augment is not None:
                xb = self._augment_batch(loader, epoch, batch, xb)
            if self._compiled is not None:  # the step below, compiled by XLA or in 16 bits
                loss_value, pred = self._compiled(xb, yb)
                if batch == 0:
                    self._check_label_range(pred)
                losses.append(loss_value)
                sizes.append(int(first_leaf(xb).shape[0]))
                for m in self.metrics:
                    m.update(pred, yb)
                self.step += 1
                for cb in self.callbacks:
                    cb.on_batch_end(self, batch)
                continue
            if groups is None or groups[batch][0]:
                optimizer.zero_grad()  # frees last step's gradients before the forward pass
            sizes.append(int(first_leaf(xb).shape[0]))
            if self.world is not None:  # masks of this rank's rows of the global batch
                rows = loader.batch_rows(batch)
                for m in dropouts:
                    m.rows = rows
            if sizes[-1] == 0:  # an empty shard of a short last batch: it only joins the sum
                losses.append(
                    self.backend.xp.zeros((), dtype=self.dtype, device=self.backend.device)
                )
                if collective:  # its SyncBatchNorms must still join their allreduces
                    pred = call_with(model, xb)
                    model.backward(map_structure(self.backend.xp.zeros_like, pred))
            else:
                pred = call_with(model, xb)
                if batch == 0:
                    self._check_label_range(pred)
                losses.append(loss_fn.forward(pred, yb))
                grad = loss_fn.backward() if groups is None else loss_fn.backward(groups[batch][1])
                if skip_input_grad:  # nobody uses dL/dx of the data: save the first layer's matmul
                    model.backward(grad, need_input_grad=False)
                else:
                    model.backward(grad)
                for m in self.metrics:
                    m.update(pred, yb)
            self.stepped = groups is None or groups[batch][2] is not None
            if self.stepped:
                if groups is not None and groups[batch][2] != 1:
                    _scale_grads(params, 1.0 / groups[batch][2])
                if self.world is not None:
                    from ..distributed import allreduce_gradients

                    allreduce_gradients(params, sizes[-1])
                if self.clip_norm is not None:
                    clip_grad_norm(params, self.clip_norm)
                optimizer.step()
                self.step += 1
            for cb in self.callbacks:
                cb.on_batch_end(self, batch)
        for m in dropouts:
            m.rows = None
        if self.world is not None:  # BatchNorm's statistics saw this rank's shards only
            from ..distributed import average_buffers

            average_buffers(model)
        if self.world is None:
            loss_values, metric_totals = self._to_host(losses, self.metrics)  # the epoch's one sync
        else:  # every batch's loss over the whole global batch, summed on the device
            loss_values, sizes, metric_totals = self._sum_over_ranks(
                [loss * float(n) for loss, n in zip(losses, sizes, strict=True)],
                sizes,
                self.metrics,
                "the epoch's loss and metric sums",
            )
        seconds = time.perf_counter() - start
        bad = np.flatnonzero(~np.isfinite(loss_values))
        if bad.size:
            first = int(bad[0])
            raise NonFiniteLossError(
                f"training loss became {loss_values[first]} at epoch {epoch + 1}, batch "
                f"{first + 1} of {len(losses)} (optimizer step "
                f"{first_step + first // self.accumulate + 1}); "
                f"try a lower learning rate or gradient clipping"
            )
        n = sum(sizes)
        logs: dict[str, Any] = {
            "epoch": epoch + 1,
            "train_loss": float(np.dot(loss_values, sizes) / n),
        }
        for m, total in zip(self.metrics, metric_totals, strict=True):
            logs[f"train_{m.name}"] = m.value(total)
        logs["lr"] = lr
        logs["seconds"] = seconds
        logs["samples_per_s"] = n / seconds if seconds > 0 else math.inf
        return logs

    def _sum_over_ranks(
        self, weighted: list[Any], sizes: list[int], metrics: list[Metric], what: str
    ) -> tuple[np.ndarray, list[int], list[float]]:
        """Sample-weighted losses (0-d device arrays, loss times samples), their sample counts
        and the metrics' totals and counts, summed over all ranks. Returns the mean losses, the
        summed counts and the metric totals (the metrics' counts are updated).

        The device values are stacked and summed where they live (NCCL on CuPy, MPI on host
        arrays) and copied to the host once; the integer counts, already on the host, travel in
        a second small allreduce. A rank with nothing to report sends zeros."""
        xp, k = self.backend.xp, len(sizes)
        zero = xp.zeros((), dtype=self.dtype, device=self.backend.device)
        values = [xp.astype(v, self.dtype) for v in weighted]
        values += [zero if m.total is None else xp.astype(m.total, self.dtype) for m in metrics]
        summed = np.zeros(0)
        if values:
            summed = self.world.allreduce_sum(xp.stack(values), what, scratch=True)
            summed = np.asarray(to_numpy(summed), dtype=np.float64)
        counts = self.world.allreduce_counts([*sizes, *(m.count for m in metrics)], what)
        with np.errstate(invalid="ignore", divide="ignore"):
            mean_losses = summed[:k] / np.asarray(counts[:k], dtype=np.float64)
        for m, count in zip(metrics, counts[k:], strict=True):
            m.count = count
        return mean_losses, counts[:k], [float(t) for t in summed[k:]]

    def _to_host(self, scalars: list[Any], metrics: list[Metric]) -> tuple[np.ndarray, list[float]]:
        """Per-batch 0-d arrays and metric totals, copied to the host in one transfer."""
        values = list(scalars) + [m.total for m in metrics if m.total is not None]
        if not values:
            return np.zeros(0), [0.0 for _ in metrics]
        xp = namespace(values[0])
        host = np.asarray(to_numpy(xp.stack([xp.astype(v, values[0].dtype) for v in values])))
        host = host.astype(np.float64)
        totals = list(host[len(scalars) :])
        metric_totals = [totals.pop(0) if m.total is not None else 0.0 for m in metrics]
        return host[: len(scalars)], metric_totals

    # ------------------------------------------------------------------ inference
    def evaluate(self, data: Data, batch_size: int = 256) -> dict[str, float]:
        """Mean loss and every metric over ``data``, in evaluation mode (dropout off)."""
        dataset = self.dataset(data)
        if len(dataset) == 0:
            raise ValueError("Trainer.evaluate: the data has 0 rows")
        was_training = self.model.training
        self.model.eval()
        metrics = [copy.copy(m) for m in self.metrics]  # the training metrics keep their sums
        for m in metrics:
            m.reset()
        losses, sizes = [], []
        if self.world is not None:  # each rank evaluates its own contiguous slice
            first, last = shard_bounds(len(dataset), self.rank, self.world_size)

            def rows(a: Any) -> Any:
                return a[first:last, ...]

            y = None if dataset.y is None else map_structure(rows, dataset.y)
            dataset = ArrayDataset(map_structure(rows, dataset.x), y)
        try:
            for xb, yb in DataLoader(dataset, batch_size, shuffle=False):
                pred = call_with(self.model, xb)
                losses.append(self.loss.forward(pred, yb))
                sizes.append(int(first_leaf(xb).shape[0]))
                for m in metrics:
                    m.update(pred, yb)
        finally:
            self.model.train(was_training)
        if self.world is None:
            loss_values, totals = self._to_host(losses, metrics)
        else:  # ranks ran different numbers of batches: sum whole slices, on the device
            xp = self.backend.xp
            local = xp.zeros((), dtype=self.dtype, device=self.backend.device)  # an empty slice
            for loss, n in zip(losses, sizes, strict=True):
                local = local + xp.astype(loss, self.dtype) * float(n)
            loss_values, sizes, totals = self._sum_over_ranks(
                [local], [sum(sizes)], metrics, "evaluate"
            )
        result = {"loss": float(np.dot(loss_values, sizes) / sum(sizes))}
        for m, total in zip(metrics, totals, strict=True):
            result[m.name] = m.value(total)
        return result

    def predict(self, x: Any, batch_size: int = 1024) -> Any:
        """Model outputs for ``x`` (host or backend array), batched, in evaluation mode.

        Returns a backend array; ``nnx.to_numpy`` copies it to the host.
        """
        _check_real(x, "inputs", "Trainer.predict")
        dataset = ArrayDataset(x).to(self.backend, dtype=self.dtype)
        if len(dataset) == 0:
            raise ValueError("Trainer.predict: x has 0 rows")
        was_training = self.model.training
        self.model.eval()
        try:
            outputs = [
                call_with(self.model, xb) for xb, _ in DataLoader(dataset, batch_size, False)
            ]
        finally:
            self.model.train(was_training)
        return _concat_outputs(self.backend.xp, outputs)

    # ------------------------------------------------------------------ checkpoints
    def _state_components(self) -> dict[str, Any]:
        """The checkpoint's named components (see :mod:`nnx.training.state`)."""
        components: dict[str, Any] = {
            "model": self.model,
            "optimizer": self.optimizer,
            "schedule": self.schedule,
            "loss_scaler": None if self.mixed_precision is None else self.mixed_precision.scaler,
            "counters": Counters(self),
            "history": self.history,
        }
        components.update(self._keyed_callbacks())
        return components

    def checkpoint_arrays(self) -> dict[str, np.ndarray]:
        """Everything needed to resume, as host arrays (see :mod:`nnx.io.checkpoint`)."""
        return checkpoint_arrays(self._state_components(), {"backend": self.backend.name})

    def save_checkpoint(self, path: str | os.PathLike) -> None:
        """Write a resumable checkpoint atomically."""
        write_checkpoint(path, self.checkpoint_arrays())

    def load_checkpoint(self, path: str | os.PathLike) -> dict[str, Any]:
        """Restore every component (model, optimizer, schedule, loss scaler, counters, history,
        callbacks) from ``path`` (saved by :meth:`save_checkpoint` or
        :class:`~nnx.training.callbacks.ModelCheckpoint`), all or nothing. Returns its record
        with the counters (epoch, step, seed) and the history (a list of records) merged in."""
        components = self._state_components()
        optional = set(components) - {"model", "optimizer", "schedule"}
        record = load_state(path, components, optional, check_components)
        self._resumed_from = (str(path), self.epoch)
        return {**record, **components["counters"].state_dict(), "history": self.history.records}

    def _keyed_callbacks(self) -> list[tuple[str, Callback]]:
        counts: dict[str, int] = {}
        keyed = []
        for cb in self.callbacks:
            name = type(cb).__name__
            counts[name] = counts.get(name, 0) + 1
            keyed.append((f"{name}.{counts[name]}", cb))
        return keyed
