"""The Trainer: fit / evaluate / predict on any backend, with callbacks and exact resume.

The Trainer owns the loop (epochs, batches, callbacks, history); each batch's computation is one
step object built from its options by :func:`~nnx.training.make_step.make_step`
(:mod:`nnx.training.step`), and the data checks and host totals live in
:mod:`~nnx.training.data_checks` and :mod:`~nnx.training.totals`.
"""

from __future__ import annotations

import copy
import math
import os
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

from ..backend import Backend, get_backend, overflow_allowed
from ..core.checks import positive_int, widened
from ..core.module import Module
from ..core.structure import call_with, first_leaf
from ..data import ArrayDataset, DataLoader
from ..data.augment import Augmentation, augment_batch
from ..data.stream import BatchStream
from ..io.checkpoint import NonFiniteStateError, checkpoint_arrays, load_state, write_checkpoint
from ..losses import Loss, not_a_loss_message
from ..metrics import Metric, get_metric
from ..optim import Optimizer
from ..optim.schedules import Schedule
from .advice import divergence_advice, non_finite_state_advice
from .agreement import agree_on_start
from .callbacks import Callback, standard_callbacks
from .data_checks import (
    check_augment,
    check_finite_data,
    check_label_range,
    check_optimizer_params,
    check_real,
    concat_outputs,
    label_range,
    whole,
)
from .data_parallel import DataParallel
from .history import History
from .make_step import make_step
from .position import EpochPosition, mid_epoch_refusal, reseed_modules, reseeders, start_epoch
from .precision import MixedPrecision
from .sources import evaluate_loader, is_in_memory, make_loader, predict_loader, slice_loader
from .state import Counters, check_components, keyed_callbacks
from .totals import sum_over_ranks, to_host

# arrays, an ArrayDataset, a DataLoader, a dataset or an iterable of batches (nnx.training.sources)
Data = ArrayDataset | DataLoader | tuple[Any, Any] | Iterable[Any]


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
            (:mod:`nnx.training.precision`); the model must be float32.
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

    ``accumulate``, ``precision``, ``jit`` and ``distributed`` combine (the step they build is
    ``trainer.train_step``), except ``jit`` with ``distributed``, refused with a one-line reason.
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
        check_optimizer_params(model, optimizer)
        self.augment = augment
        self.accumulate = positive_int(accumulate, "accumulate", "Trainer")
        self.backend = get_backend(device)
        self.model = model
        self.loss = loss
        self.optimizer = optimizer
        self._move_to_backend()
        self.precision = precision
        self.clip_norm = clip_norm
        # The one step object of every batch: eager or compiled, wrapped for mixed precision,
        # MPI data parallelism and accumulation as the options ask (make_step refuses what
        # cannot be combined).
        self.train_step = make_step(
            model,
            loss,
            optimizer,
            self.backend,
            clip_norm=clip_norm,
            accumulate=self.accumulate,
            precision=precision,
            jit=jit,
            distributed=distributed,
        )
        parallel = self.train_step.wrapper(DataParallel)
        self.world = None if parallel is None else parallel.world
        self.mixed_precision = self.train_step.wrapper(MixedPrecision)  # its LossScaler
        self.metrics = [get_metric(m) for m in metrics]
        self.seed = whole(seed, "seed", "Trainer")
        self.schedule = schedule
        self.stepped = False  # whether the last mini-batch ended with an optimizer step
        extra = list(callbacks)
        for cb in extra:
            if not isinstance(cb, Callback):
                raise TypeError(f"Trainer: callback {cb!r} is not an nnx Callback")
        extra += standard_callbacks(schedule, schedule_interval, progress)
        if self.rank != 0:  # files and the progress bar are rank 0's
            extra = [cb for cb in extra if not cb.rank_zero_only]
        self.callbacks = sorted(extra, key=lambda cb: cb.order)
        self.history = History()
        self.epoch = 0  # completed epochs
        self.step = 0  # completed optimizer steps
        self.stop_training = False
        self._resumed_from: tuple[str, int] | None = None
        self._progress: Any = None  # the epoch under way (nnx.training.position)
        self._resume_at: dict[str, Any] | None = None  # a mid-epoch position loaded, to continue
        self.mid_epoch_refusal: str | None = None  # why fit's checkpoints cannot stop mid-epoch
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
        check_real(data.x, "inputs", "Trainer")
        check_real(data.y, "targets", "Trainer")
        with overflow_allowed():  # values beyond the dtype: named by check_finite_data
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
        its epoch counter) and return the :class:`History`. ``train`` and ``val``: arrays, an
        ArrayDataset, DataLoader, dataset or iterable of batches (:mod:`nnx.training.sources`)."""
        whole(epochs, "epochs", "Trainer.fit")
        eval_batch_size = eval_batch_size or max(batch_size, 256)
        in_memory = is_in_memory(train) and (val is None or is_in_memory(val))
        loader, train_set = make_loader(
            self, train, "Trainer.fit", "training", batch_size, shuffle, drop_last
        )
        val_loader, val_set = (None, None)
        if val is not None:
            val_loader, val_set = make_loader(
                self, val, "Trainer.fit", "validation", eval_batch_size, False
            )
        if train_set is not None and len(train_set) == 0:
            raise ValueError("Trainer.fit: the training data has 0 rows")
        if val_set is not None and len(val_set) == 0:
            raise ValueError("Trainer.fit: the validation data has 0 rows (pass val=None for none)")
        if isinstance(val_loader, DataLoader) and not val_loader.on_host:  # arrays: as evaluate
            val_loader = slice_loader(self, val_set, eval_batch_size)
        if isinstance(loader, BatchStream) and self.accumulate > 1:
            raise ValueError(
                "Trainer.fit: accumulate needs each epoch's batch sizes ahead; an iterable of "
                "batches has none: give an ArrayDataset, a map-style dataset or a DataLoader"
            )
        # Arrays held whole are checked whole here; streamed data batch by batch as it arrives
        self._label_range = label_range(train_set, val_set) if in_memory else None
        if in_memory:
            check_finite_data(("training", train_set, train), ("validation", val_set, val))
        self._augment_checked = isinstance(train_set, ArrayDataset)
        if self.augment is not None and self._augment_checked:
            check_augment(self.augment, train_set)
        data = {"training": train_set, "validation": val_set}
        agree_on_start(self, "Trainer.fit", data, epochs=epochs, loader=loader)
        self.target_epochs = whole(epochs, "epochs", "Trainer.fit")
        known = loader.known_length() if isinstance(loader, BatchStream) else len(loader)
        self.batches_per_epoch = known or 0
        self.stop_training = False
        self.mid_epoch_refusal = mid_epoch_refusal(
            self, loader
        )  # None: checkpoints may stop mid-epoch
        if self.epoch >= self.target_epochs:
            return self.history
        # Labels were range-checked once above; the loss need not read them back every batch.
        check_labels = getattr(self.loss, "check_labels", None) if in_memory else None
        if check_labels is not None:
            self.loss.check_labels = False
        try:
            for cb in self.callbacks:  # ModelCheckpoint refuses NaN/inf weights from the start
                cb.on_fit_begin(self)
            while self.epoch < self.target_epochs and not self.stop_training:
                logs = self._train_epoch(loader)
                if val_loader is not None:
                    for key, value in self._evaluate(val_loader).items():
                        logs[f"val_{key}"] = value
                    if not math.isfinite(logs["val_loss"]):
                        raise NonFiniteLossError(
                            f"validation loss became {logs['val_loss']} at epoch {self.epoch + 1}; "
                            f"{divergence_advice(self)}"
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
                cb.on_error(self, err)
            if self.world is not None and not isinstance(err, NonFiniteLossError):
                self.world.notify_failure(err)  # rank 0's checkpoint check: the others stop too
            if not isinstance(err, (NonFiniteLossError, NonFiniteStateError)):
                raise
            message = str(err)
            if isinstance(err, NonFiniteStateError):
                message = non_finite_state_advice(self, message)
            raise NonFiniteLossError(f"{message}. {self._last_good_checkpoint()}") from None
        except BaseException as err:
            for cb in self.callbacks:
                cb.on_error(self, err)
            if self.world is not None:
                self.world.notify_failure(err)  # the others print it and stop instead of waiting
            raise
        finally:
            self._progress = None
            if check_labels is not None:
                self.loss.check_labels = check_labels
        for cb in self.callbacks:
            cb.on_fit_end(self)
        return self.history

    def _last_good_checkpoint(self) -> str:
        """Where the last checkpoint with finite state is, for a NaN/inf message."""
        for cb in self.callbacks:
            good = cb.last_good_checkpoint()
            if good is not None:
                return f"The last good checkpoint is {good[0]} (epoch {good[1]})"
        if self._resumed_from is not None:
            return f"The last good checkpoint is {self._resumed_from[0]} (epoch {self._resumed_from[1]})"
        return "No checkpoint was written"

    def _train_epoch(self, loader: DataLoader) -> dict[str, Any]:
        epoch, step = self.epoch, self.train_step
        for cb in self.callbacks:
            cb.on_epoch_begin(self, epoch)
        self.model.train()
        # metrics, loader and step at the epoch's start, or where a mid-epoch checkpoint stopped
        self._progress = progress = start_epoch(self, loader)
        losses, sizes = progress.losses, progress.sizes
        batches, reseeds = iter(loader), reseeders(self.model)  # the model's, once per epoch
        for batch, (xb, yb) in enumerate(batches, progress.batch):
            reseed_modules(reseeds, self.seed, epoch, batch)  # dropout: (seed, epoch, batch)
            if self.augment is not None and not self._augment_checked:
                check_augment(self.augment, ArrayDataset(xb))  # a stream: its first batch
                self._augment_checked = True
            if self.augment is not None:
                xb = augment_batch(self.augment, self.seed, loader, epoch, batch, xb)
            step.begin_batch(loader.batch_rows(batch))
            loss_value, pred = step(xb, yb)
            losses.append(loss_value)
            sizes.append(int(first_leaf(xb).shape[0]))
            if pred is not None:  # None: this rank's share of the batch was empty
                if batch == 0:
                    check_label_range(self._label_range, pred)
                for m in self.metrics:
                    m.update(pred, yb)
            self.stepped = step.stepped
            self.step += int(self.stepped)
            for cb in self.callbacks:
                cb.on_batch_end(self, batch)
        close = getattr(batches, "close", None)  # a prefetch thread stops with its epoch
        if close is not None:
            close()
        step.end_epoch()
        if self.world is None:
            loss_values, metric_totals = to_host(losses, self.metrics)  # the epoch's one sync
            loss_values = np.concatenate([progress.done, loss_values])  # + batches before a resume
        else:  # every batch's loss over the whole global batch, summed on the device
            loss_values, sizes, metric_totals = self._sum_over_ranks(
                [
                    widened(self.backend.xp, v) * float(n)
                    for v, n in zip(losses, sizes, strict=True)
                ],
                sizes,
                self.metrics,
                "the epoch's loss and metric sums",
            )
        seconds, self._progress = progress.elapsed(), None
        bad = np.flatnonzero(~np.isfinite(loss_values))
        if bad.size:
            first = int(bad[0])
            raise NonFiniteLossError(
                f"training loss became {loss_values[first]} at epoch {epoch + 1}, batch "
                f"{first + 1} of {len(sizes)} (optimizer step "
                f"{progress.first_step + first // self.accumulate + 1}); {divergence_advice(self)}"
            )
        n = sum(sizes)
        logs: dict[str, Any] = {
            "epoch": epoch + 1,
            "train_loss": float(np.dot(loss_values, sizes) / n),
        }
        for m, total in zip(self.metrics, metric_totals, strict=True):
            logs[f"train_{m.name}"] = m.value(total)
        logs["lr"] = progress.lr
        logs["seconds"] = seconds
        logs["samples_per_s"] = n / seconds if seconds > 0 else math.inf
        return logs

    def _sum_over_ranks(
        self, weighted: list[Any], sizes: list[int], metrics: list[Metric], what: str
    ) -> tuple[np.ndarray, list[int], list[float]]:
        """:func:`~nnx.training.totals.sum_over_ranks` on this Trainer's world and dtype."""
        return sum_over_ranks(self.world, self.backend, self.dtype, weighted, sizes, metrics, what)

    # ------------------------------------------------------------------ inference
    def evaluate(self, data: Data, batch_size: int = 256, metrics: Any = None) -> dict[str, Any]:
        """Mean loss and every metric over ``data``, in evaluation mode (dropout off); ``metrics``
        (names or Metric objects, e.g. a ConfusionMatrix) instead of the Trainer's when given."""
        return self._evaluate(evaluate_loader(self, data, batch_size), metrics)

    def _evaluate(self, loader: Any, chosen: Any = None) -> dict[str, Any]:
        """Mean loss and metrics over the batches of ``loader`` (this rank's, summed over ranks)."""
        was_training = self.model.training
        self.model.eval()
        metrics = [copy.copy(get_metric(m)) for m in (self.metrics if chosen is None else chosen)]
        for m in metrics:
            m.reset()
        losses, sizes = [], []
        try:
            for xb, yb in loader:
                pred = call_with(self.model, xb)
                losses.append(self.loss.forward(pred, yb))
                sizes.append(int(first_leaf(xb).shape[0]))
                for m in metrics:
                    m.update(pred, yb)
        finally:
            self.model.train(was_training)
        if self.world is None:
            loss_values, totals = to_host(losses, metrics)
        else:  # ranks ran different numbers of batches: sum whole slices, on the device
            xp = self.backend.xp
            local = widened(xp, xp.zeros((), dtype=self.dtype, device=self.backend.device))
            for loss, n in zip(losses, sizes, strict=True):  # an empty slice sends 0
                local = local + xp.astype(loss, local.dtype) * float(n)
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
        loader = predict_loader(self, x, batch_size)
        was_training = self.model.training
        self.model.eval()
        try:
            outputs = [call_with(self.model, xb) for xb, _ in loader]
        finally:
            self.model.train(was_training)
        return concat_outputs(self.backend.xp, outputs)

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
            "position": EpochPosition(self),
        }
        components.update(keyed_callbacks(self.callbacks))
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
        self._resume_at = components["position"].loaded  # None: at an epoch's end
        return {**record, **components["counters"].state_dict(), "history": self.history.records}
