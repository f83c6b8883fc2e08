"""One run of the training command: settings -> data, model, optimizer, callbacks -> Trainer ->
outputs. :func:`run` trains a classifier or regressor on a data set; the steps it shares with
:func:`nnx.cli.language_model.run_language_model` (the run folder, resuming, callbacks,
config.json, summary.json) live here too.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import nnx

from ..data import ArrayDataset, train_val_split
from ..data.gather import is_lazy
from ..data.statistics import fit_standardize
from ..data.subset import Subset
from ..datasets import files, load_dataset
from ..datasets.files import is_data_file, load_file
from ..metrics import REGRESSION_METRICS, ConfusionMatrix
from ..training import callbacks as cbs
from ..training.plots import save_confusion
from .config_files import stored_config
from .factories import (
    check_model_fits,
    loss_name,
    make_augment,
    make_loss,
    make_model,
    make_optimizer,
    make_schedule,
    optimizer_steps,
    schedule_interval,
)
from .lr_range import run_lr_find
from .resume import (
    apply_resume_changes,
    check_resume,
    input_fingerprints,
    refuse_older_checkpoint,
    resumed_model,
    standardized,
)
from .resume import resume_changes as _resume_changes
from .runfolder import lock_out, out_folder, prepare_out, refuse_used_out, write_json
from .settings import ConfigError
from .threads import set_threads

Say = Callable[[str], None]


def run(
    settings: dict[str, Any],
    resume: Path | None,
    say: Say,
    context: dict[str, Any] | None = None,
) -> int:
    """Train a classifier or regressor as ``settings`` say; ``context["out"]`` is set to the
    output folder once known, ``context["lock"]`` to its lock (the caller releases it)."""
    context = {} if context is None else context
    changes, previous_resumes = resume_changes(settings, resume, context)
    world, device = start_distributed(settings, context)
    rank0 = world is None or world.rank == 0
    backend = nnx.get_backend(device)  # a missing GPU fails here, before any work
    set_threads(settings["threads"])  # after the backend: torch is imported by then
    if world is not None and not rank0:
        world.barrier()  # rank 0 downloads the data set first, the others then read its copy
        say = _silent
    data = load_data(settings)
    settings["loss"] = loss_name(settings, data.task)  # config.json records the one used
    metrics = run_metrics(settings, data.task == "classification")
    check_model_fits(settings, math.prod(data.train[0].shape[1:]), data.num_outputs)
    augment = make_augment(settings, tuple(data.train[0].shape[1:]), data.name)
    if world is not None and rank0:
        world.barrier()
    out = claim_out(settings, resume, context, rank0)
    train, val, test = prepare_splits(data, settings, backend)
    model = classifier_model(settings, data, train, resume, context, backend, say)
    optimizer = make_optimizer(settings, model.parameters())
    if settings["find_lr"]:
        return run_lr_find(settings, model, make_loss(settings["loss"]), optimizer, train, out, say)
    split = "val_" if val is not None else "train_"
    batches = optimizer_steps(-(-len(train) // settings["batch_size"]), settings)
    schedule = make_schedule(settings, optimizer, batches, split + "loss")
    classification = data.task == "classification"
    monitor = ("val_" if val is not None else "train_") + ("accuracy" if classification else "loss")
    trainer = nnx.Trainer(
        model,
        make_loss(settings["loss"]),
        optimizer,
        device=backend,
        metrics=metrics,
        callbacks=run_callbacks(settings, out, monitor),
        seed=settings["seed"],
        schedule=schedule,
        schedule_interval=schedule_interval(settings),
        clip_norm=settings["clip_norm"],
        accumulate=settings["accumulate"],
        progress=False,
        jit=settings["jit"],
        precision=settings["precision"],
        distributed=world is not None,
        augment=augment,
    )
    resume_trainer(trainer, resume, changes, say)
    if rank0:
        splits = {"train": len(train), "val": 0 if val is None else len(val), "test": len(test)}
        config = run_config(settings, trainer, resume, changes, previous_resumes)
        config["dataset"] = {"name": data.name, "task": data.task, **splits}
        config["dataset"].update(prediction_record(data))
        config["ranks"] = trainer.world_size
        write_json(out / "config.json", _ordered(config))
    started = time.perf_counter()
    history = trainer.fit(train, val, epochs=settings["epochs"], batch_size=settings["batch_size"])
    summary = run_summary(settings, trainer, history, time.perf_counter() - started, data.name)
    extra = [ConfusionMatrix()] if classification else []
    tested = trainer.evaluate(test, metrics=[*trainer.metrics, *extra])
    confusion = tested.pop("confusion_matrix", None)
    for key, value in tested.items():
        summary[f"test_{key}"] = value
    for logger in trainer.callbacks:
        if rank0 and isinstance(logger, cbs.TensorBoardLogger):
            logger.log_test(trainer, tested)
    summary["outputs"] = str(out)
    if rank0:
        write_json(out / "summary.json", summary)
        curves = save_run_curves(settings, history, out, monitor)
        pictures = [curves] if curves else []
        if confusion is not None:
            title = f"{out.name}: test set, {len(test)} samples"
            names = data.class_names  # a .csv's own labels (setosa...), else the indices
            pictures.append(
                save_confusion(confusion, out / "confusion.png", names and list(names), title)
            )
        _print_summary(summary, out, [p for p in pictures if p], say)
    return 0


# ---------------------------------------------------------------------------- shared steps


def resume_changes(
    settings: dict[str, Any], resume: Path | None, context: dict[str, Any] | None = None
) -> tuple[dict[str, Any], list]:
    """The settings changed on ``resume`` (checked: see :func:`nnx.cli.resume.check_resume`)
    and the run's earlier resumes."""
    if resume is None:
        return {}, []
    stored = stored_config(resume)
    previous = stored["resumes"] if isinstance(stored.get("resumes"), list) else []
    changes = _resume_changes(settings, stored["settings"])
    check_resume(settings, resume, stored, bool((context or {}).get("allow_changed_data")))
    return changes, previous


def start_distributed(settings: dict[str, Any], context: dict[str, Any]) -> tuple[Any, str]:
    """``(world or None, device spec)``: MPI is started for ``--distributed``, one GPU per rank."""
    if not settings["distributed"]:
        return None, settings["device"]
    from .. import distributed

    world = distributed.init()  # without mpi4py: a one-line error naming the install command
    context["world"] = world
    return world, distributed.device_spec(settings["device"])


def claim_out(
    settings: dict[str, Any], resume: Path | None, context: dict[str, Any], owner: bool = True
) -> Path:
    """The output folder, created and locked by its ``owner`` (rank 0) for every rank; a resume
    from an older checkpoint must not overwrite newer results there."""
    if owner:
        out = prepare_out(settings, resume)
        context["lock"] = lock_out(out)
        refuse_used_out(out, settings, resume)
        if resume is not None:
            refuse_older_checkpoint(out, resume, settings["overwrite"])
    else:
        out = out_folder(settings, resume)
    context["out"] = out
    return out


def run_metrics(settings: dict[str, Any], classification: bool) -> tuple[str, ...]:
    """The --metrics names (default accuracy, or mae for regression), checked against the task.
    Classifiers always measure accuracy (first), which best.npz follows, also on a resume that
    changes --metrics."""
    names = settings["metrics"] or (["accuracy"] if classification else ["mae"])
    if classification and "accuracy" not in names:
        names = ["accuracy", *names]
    regression = [n for n in names if n in REGRESSION_METRICS]
    wrong = [n for n in names if n not in REGRESSION_METRICS] if not classification else regression
    if wrong:
        task = "classification" if classification else "regression"
        fit = "any but mae, mse" if classification else "mae, mse"
        raise ConfigError(
            f"--metrics {','.join(wrong)} does not fit the {task} data set {settings['dataset']!r}; "
            f"choose {fit}"
        )
    return tuple(names)


def save_run_curves(settings: dict[str, Any], history: Any, out: Path, monitor: str) -> Any:
    """curves.png of a run: titled with its folder's name, the best epoch by ``monitor``
    marked, the loss on a log axis with --log-loss."""
    return nnx.save_curves(
        history,
        out / "curves.png",
        monitor=monitor,
        log_loss=settings.get("log_loss", False),
        title=out.name,
    )


def run_callbacks(settings: dict[str, Any], out: Path, monitor: str) -> list[Any]:
    """Checkpoints (last.npz, best.npz by ``monitor``), history.csv, early stopping,
    tensorboard/ (``--tensorboard``), progress."""
    callbacks: list[Any] = [
        cbs.ModelCheckpoint(out, monitor=monitor, every_n_steps=settings.get("checkpoint_every")),
        cbs.CSVLogger(out / "history.csv"),
    ]
    if settings["early_stopping"] is not None:
        callbacks.append(cbs.EarlyStopping("val_loss", patience=settings["early_stopping"]))
    if settings.get("tensorboard"):
        callbacks.append(cbs.TensorBoardLogger(out / "tensorboard"))
    # one plain line per epoch on stdout (screen and log), also under --quiet
    callbacks.append(
        cbs.ProgressBar(quiet=settings["quiet"], lines=True, epochs=settings["epochs"])
    )
    return callbacks


def resume_trainer(trainer: Any, resume: Path | None, changes: dict[str, Any], say: Say) -> None:
    """Load checkpoint ``resume`` into ``trainer`` and apply the optimizer settings changed."""
    if resume is None:
        return
    trainer.load_checkpoint(resume)
    apply_resume_changes(changes, trainer.optimizer, trainer.schedule)
    batch = "" if trainer._resume_at is None else f", batch {trainer._resume_at['batch']}"
    say(f"resuming {resume} after epoch {trainer.epoch}{batch}")
    for name, change in changes.items():
        say(f"  {name.replace('_', ' ')}: {change['from']} -> {change['to']}")


def run_config(
    settings: dict[str, Any],
    trainer: Any,
    resume: Path | None,
    changes: dict[str, Any],
    previous_resumes: list[Any],
) -> dict[str, Any]:
    """The config.json record: settings, device, model, and every resume of the run (after which
    epoch, and the settings it changed from then on)."""
    this = (
        []
        if resume is None
        else [{"checkpoint": str(resume), "after_epoch": trainer.epoch, "changed": changes}]
    )
    return {
        "settings": settings,
        "backend": trainer.backend.name,
        "device": str(trainer.backend.device),
        "model": repr(trainer.model),
        "resumed_from": None if resume is None else str(resume),
        "resumes": previous_resumes + this,
        "inputs": input_fingerprints(settings),
        "nnx_version": nnx.__version__,
    }


def run_summary(
    settings: dict[str, Any], trainer: Any, history: Any, seconds: float, dataset: str
) -> dict[str, Any]:
    """summary.json's common part: where and how long it ran, the last epoch's values."""
    summary: dict[str, Any] = {
        "backend": trainer.backend.name,
        "device": str(trainer.backend.device),
        "dataset": dataset,
        "epochs": trainer.epoch,
        "stopped_early": trainer.epoch < settings["epochs"],
        "seconds": seconds,
        "ranks": trainer.world_size,
    }
    if len(history):
        last = history.last
        summary.update({k: v for k, v in last.items() if k.startswith(("train_", "val_"))})
        summary.update(throughput(history.records, compile_seconds(trainer)))
    return summary


def compile_seconds(trainer: Any) -> float | None:
    """Seconds the ``--jit`` step spent in its compiling first calls (None without jit)."""
    step = getattr(trainer, "train_step", None)
    while step is not None:
        if hasattr(step, "compile_seconds"):
            return float(step.compile_seconds)
        step = getattr(step, "inner", None)
    return None


def throughput(records: list[dict[str, Any]], compiling: float | None) -> dict[str, Any]:
    """The training time and rate of the run's epochs, in agreement: ``samples_per_s`` is the
    samples trained divided by ``train_seconds``, their training time (validation excluded)
    less the ``compile_seconds`` of ``--jit``'s first calls, reported apart;
    ``seconds_per_epoch`` is ``train_seconds`` over the epochs."""
    seconds = sum(float(r["seconds"]) for r in records)
    samples = sum(float(r["seconds"]) * float(r["samples_per_s"]) for r in records)
    out: dict[str, Any] = {}
    if compiling is not None:
        out["compile_seconds"] = compiling
        seconds = max(seconds - compiling, 0.0)
    out["train_seconds"] = seconds
    out["seconds_per_epoch"] = seconds / len(records)
    out["samples_per_s"] = samples / seconds if seconds > 0 else math.inf
    return out


# ---------------------------------------------------------------------------- data sets


def prediction_record(data: Any) -> dict[str, Any]:
    """What nnx-predict reads back from config.json's ``dataset``: the class count, and for a
    .csv the feature columns, the label column and the original class names."""
    record: dict[str, Any] = {"outputs": data.num_outputs}
    if data.feature_names is not None:
        record["features"] = list(data.feature_names)
        record["label_column"] = data.label_name
    if data.class_names is not None:
        record["classes"] = list(data.class_names)
    if data.label_column is not None:  # a .npy: its label column, dropped from a .npy to predict
        record.update(label_column=data.label_column, columns=data.num_features + 1)
    return record


def load_data(settings: dict[str, Any]) -> Any:
    """The data set: the user's .npz/.csv/.npy (checked; one over ``files.STREAM_BYTES``
    memory-mapped) or a built-in one, image-shaped samples ``(C, H, W)`` for image sets (the mlp
    preset flattens them)."""
    if is_data_file(settings["dataset"]):
        return load_file(
            settings["dataset"],
            settings["label_column"],
            seed=settings["seed"],
            stream_bytes=files.STREAM_BYTES,
        )
    return load_dataset(settings["dataset"], settings["data_dir"], seed=settings["seed"]).images()


def prepare_splits(data: Any, settings: dict[str, Any], backend: Any) -> tuple[Any, Any, Any]:
    """``(train, val or None, test)`` on the backend, raw: the model standardizes its inputs
    (:func:`nnx.cli.resume.standardized`), so its files carry the statistics. Memory-mapped
    data stays in its file: the splits are views of it (:class:`~nnx.data.subset.Subset`),
    read a batch at a time."""
    if is_lazy(data.train[0]):
        full = ArrayDataset(*data.train)
        if data.rows is None:
            return (
                *train_val_split(full, settings["val_fraction"], seed=settings["seed"]),
                ArrayDataset(*data.test),
            )
        train, val = train_val_split(
            Subset(full, data.rows[0]), settings["val_fraction"], seed=settings["seed"]
        )
        return train, val, Subset(full, data.rows[1])
    full = ArrayDataset(*data.train).to(backend, dtype=settings["dtype"])
    train, val = train_val_split(full, settings["val_fraction"], seed=settings["seed"])
    test = ArrayDataset(*data.test).to(backend, dtype=settings["dtype"])
    return train, val, test


def classifier_model(
    settings: dict[str, Any],
    data: Any,
    train: Any,
    resume: Path | None,
    context: dict[str, Any],
    backend: Any,
    say: Say,
) -> Any:
    """The model on the backend behind an :class:`nnx.Standardize` fitted on the training
    split ``train`` (in one streaming pass when it is read from a file per batch): on a resume rebuilt from the checkpoint (statistics included, checked
    against the settings), else built from the settings; BatchNorms synchronised for
    --sync-batchnorm."""
    shape = tuple(data.train[0].shape[1:])
    if resume is not None:
        model = resumed_model(
            settings,
            shape,
            data.num_outputs,
            resume,
            context.get("model_flags", []),
            bool(context.get("model_given")),
        ).to(backend, dtype=settings["dtype"])
    else:
        model = standardized(make_model(settings, shape, data.num_outputs), shape)
        model = model.to(backend, dtype=settings["dtype"])
        if isinstance(train, ArrayDataset) and not is_lazy(train.x):
            model[0].fit(train.x)  # the training split's statistics, saved with the model
        else:
            fit_standardize(model[0], train)
    if settings["sync_batchnorm"]:
        norms = (nnx.BatchNorm1d, nnx.BatchNorm2d, nnx.SyncBatchNorm)
        if not any(isinstance(m, norms) for m in model.modules()):
            raise ConfigError(
                f"--sync-batchnorm: the {settings['model']} model has no BatchNorm layer "
                "(the cnn preset has)"
            )
        nnx.SyncBatchNorm.convert_sync_batchnorm(model)
    if not settings["quiet"]:
        nnx.summary(model, shape, print_fn=say)
    return model


def _ordered(config: dict[str, Any]) -> dict[str, Any]:
    """config.json's keys in the order a reader expects them."""
    first = ("settings", "backend", "device", "dataset", "model", "resumed_from", "ranks")
    return {k: config[k] for k in (*first, *config) if k in config}


def _silent(line: str) -> None:
    """``say`` of ranks other than 0."""


def _fit(items: list[str], first: str, indent: str, sep: str, width: int = 80) -> str:
    """``items`` joined by ``sep`` after ``first``, broken between items onto lines that start
    with ``indent`` so that each fits ``width`` columns (an item wider than that alone)."""
    lines = [first + items[0]]
    for item in items[1:]:
        if len(lines[-1]) + len(sep) + len(item) <= width:
            lines[-1] += sep + item
        else:
            lines.append(indent + item)
    return "\n".join(lines)


def _print_summary(summary: dict[str, Any], out: Path, pictures: list[Path], say: Say) -> None:
    metric = "accuracy" if "test_accuracy" in summary else "mae"
    # every --metrics name too (f1, auroc...), not only the first: those with a val_/test_ value
    names = [metric] + [
        k.partition("_")[2]
        for k in summary
        if k.startswith(("val_", "test_")) and k.partition("_")[2] not in ("loss", metric)
    ]
    names = list(dict.fromkeys(names))

    def row(split: str) -> str:
        loss = summary.get(f"{split}_loss")
        if loss is None:
            return f"  {split:<5}  -"
        items = [f"loss {loss:.4f}"] + [
            f"{n} {summary[f'{split}_{n}']:.4f}" for n in names if f"{split}_{n}" in summary
        ]
        return _fit(items, f"  {split:<5}  ", " " * 9, "   ")

    say(
        f"nnx: trained on {summary['backend']} ({summary['device']}), dataset {summary['dataset']}, "
        f"{summary['epochs']} epochs" + (" (stopped early)" if summary["stopped_early"] else "")
    )
    for split in ("train", "val", "test"):
        say(row(split))
    if "seconds_per_epoch" in summary:
        say(
            f"  training {summary['train_seconds']:.2f} s ({summary['seconds_per_epoch']:.3f} s "
            f"per epoch, {summary['samples_per_s']:,.0f} samples/s)"
            + (
                f"; jit compiling {summary['compile_seconds']:.2f} s apart"
                if "compile_seconds" in summary
                else ""
            )
        )
    files = ", ".join(
        ["config.json", "history.csv", "summary.json", "last.npz", "best.npz"]
        + [p.name for p in pictures]
    )
    say(f"  outputs in {out}:")  # the files on a line of their own: 80 columns
    say(_fit(files.split(" "), "    ", "    ", " "))
