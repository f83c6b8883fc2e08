"""The objects a run is made of, built from its settings: the model, optimizer, learning-rate
schedule and image augmentation (each problem a one-line :class:`ConfigError`)."""

from __future__ import annotations

import os
from typing import Any

from .. import optim
from ..data.augment import Compose, RandomCrop, RandomHorizontalFlip
from ..models import ModelSpecError, accepted_options, build_model, resolve_builder
from .settings import CLASSIFICATION_LOSSES, REGRESSION_LOSSES, SETTINGS, ConfigError

# Settings passed to the model builder, when it takes them (the mlp preset takes all four).
MODEL_OPTIONS = ("hidden", "activation", "dropout", "seed")


def make_model(
    settings: dict[str, Any],
    input_shape: tuple[int, ...],
    n_out: int,
    extra: dict[str, Any] | None = None,
) -> Any:
    """Build ``settings["model"]`` (a preset or ``package.module:function``) for samples of
    ``input_shape`` and ``n_out`` outputs, passing the :data:`MODEL_OPTIONS` it accepts and the
    ``extra`` keyword arguments (the language models' ``vocab``).

    A model option changed from its default that the builder does not take is an error rather
    than silently ignored.
    """
    try:
        builder = resolve_builder(settings["model"])
    except ModelSpecError as err:
        raise ConfigError(_as_flag(err)) from None
    options = {name: settings[name] for name in MODEL_OPTIONS}
    accepted = accepted_options(builder, options)
    for name in MODEL_OPTIONS:
        if name not in accepted and name != "seed" and options[name] != SETTINGS[name][0]:
            raise ConfigError(
                f"--{name} does not apply to --model {settings['model']} "
                "(its builder takes no such option)"
            )
    try:
        return build_model(settings["model"], input_shape, n_out, **accepted, **(extra or {}))
    except ModelSpecError as err:
        raise ConfigError(_as_flag(err)) from None


def _as_flag(err: ModelSpecError) -> str:
    """The library's ``model='x': ...`` message as the command's ``--model x: ...``."""
    return str(err).replace(f"model={err.spec!r}", f"--model {err.spec}", 1)


def _available_memory() -> int | None:
    """Bytes of memory available to a new allocation (Linux's MemAvailable), None if unknown."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def check_model_fits(settings: dict[str, Any], n_in: int, n_out: int) -> None:
    """Refuse an MLP whose weights, gradients and optimizer state cannot fit in memory, before
    allocating any of it (an absurd --hidden would otherwise die with MemoryError, or swap)."""
    if settings.get("model", "mlp") != "mlp":
        return
    widths = [n_in, *settings["hidden"], n_out]
    count = sum((a + 1) * b for a, b in zip(widths, widths[1:], strict=False))
    itemsize = 4 if settings["dtype"] == "float32" else 8
    # weights, gradients, up to two optimizer buffers, and float64 host copies at creation
    needed = count * (itemsize * 4 + 8)
    available = _available_memory()
    if available is not None and needed > available:
        raise ConfigError(
            f"--hidden {','.join(map(str, settings['hidden']))} makes a model of {count:,} "
            f"parameters that needs about {needed / 2**30:.1f} GiB, but only "
            f"{available / 2**30:.1f} GiB of memory is available; use smaller layers"
        )


def make_augment(settings: dict[str, Any], sample_shape: tuple[int, ...], dataset: str) -> Any:
    """The training-batch augmentation that --random-crop and --hflip ask for, or None."""
    padding, flip = settings["random_crop"], settings["hflip"]
    if padding is None and not flip:
        return None
    if len(sample_shape) < 2:
        flag = "--random-crop" if padding is not None else "--hflip"
        raise ConfigError(
            f"{flag} needs image data (samples of shape (C, H, W)); dataset {dataset} has "
            f"samples of shape {sample_shape}"
        )
    transforms: list[Any] = []
    if padding is not None:
        if padding >= min(sample_shape[-2:]):
            raise ConfigError(
                f"--random-crop {padding} pads the {sample_shape[-2]}x{sample_shape[-1]} images "
                f"of {dataset} by at least their size, so crops could hold no image at all; give "
                f"a padding below {min(sample_shape[-2:])}"
            )
        transforms.append(RandomCrop(sample_shape[-2:], padding=padding))
    if flip:
        transforms.append(RandomHorizontalFlip(0.5))
    return transforms[0] if len(transforms) == 1 else Compose(transforms)


def make_optimizer(settings: dict[str, Any], params: Any) -> Any:
    """The ``--optimizer`` over ``params`` with ``--lr``, ``--momentum``, ``--weight-decay``."""
    name, lr = settings["optimizer"], settings["lr"]
    kw: dict[str, Any] = {}
    if settings["weight_decay"] is not None:
        kw["weight_decay"] = settings["weight_decay"]
    if settings["momentum"] is not None:
        kw["momentum"] = settings["momentum"]
    cls = {
        "sgd": optim.SGD,
        "adam": optim.Adam,
        "adamw": optim.AdamW,
        "rmsprop": optim.RMSprop,
        "adagrad": optim.Adagrad,
    }[name]
    return cls(params, lr=lr, **kw)


def make_schedule(
    settings: dict[str, Any],
    optimizer: Any,
    steps_per_epoch: int | None = None,
    monitor: str = "val_loss",
) -> Any:
    """The ``--schedule`` on ``optimizer``, or None. ``onecycle`` plans its cycle over
    ``--epochs`` of ``steps_per_epoch`` optimizer steps; ``plateau`` follows ``monitor``."""
    epochs, kind = settings["epochs"], settings["schedule"]
    if kind == "none":
        return None
    if kind == "plateau":
        return optim.ReduceLROnPlateau(
            optimizer,
            monitor=monitor,
            factor=settings["plateau_factor"],
            patience=settings["plateau_patience"],
            min_lr=settings["min_lr"],
        )
    if kind == "onecycle":
        if steps_per_epoch is None:
            raise ConfigError("--schedule onecycle needs the number of batches per epoch")
        try:
            return optim.OneCycleLR(
                optimizer,
                epochs=epochs,
                steps_per_epoch=steps_per_epoch,
                cycle_momentum=settings["optimizer"] != "adagrad",  # adagrad has no momentum
            )
        except ValueError as err:
            raise ConfigError(f"--schedule onecycle: {err}") from None
    if kind == "cosine-restarts":
        return optim.CosineAnnealingWarmRestarts(
            optimizer,
            t_0=settings["restart_epochs"],
            t_mult=settings["restart_mult"],
            eta_min=settings["min_lr"],
        )
    if kind == "step":
        return optim.StepLR(optimizer, step_size=max(1, epochs // 3), gamma=0.1)
    if kind == "exponential":
        return optim.ExponentialLR(optimizer, gamma=0.95)
    if kind == "cosine":
        return optim.CosineAnnealingLR(optimizer, t_max=epochs)
    if kind == "warmup":
        return optim.LinearWarmup(optimizer, warmup_steps=min(5, epochs))
    return optim.InverseTimeDecay(optimizer, decay=0.1)


def schedule_interval(settings: dict[str, Any]) -> str:
    """How often the ``--schedule`` steps: onecycle per optimizer step, the others per epoch."""
    return "batch" if settings["schedule"] == "onecycle" else "epoch"


def optimizer_steps(batches: int, settings: dict[str, Any]) -> int:
    """Optimizer steps in an epoch of ``batches`` mini-batches (one per --accumulate group)."""
    return -(-batches // settings["accumulate"])


def loss_name(settings: dict[str, Any], task: str) -> str:
    """The ``--loss`` of a run on a ``task`` (``"classification"`` or ``"regression"``): the
    task's default when unset; a loss made for the other task is refused."""
    name = settings["loss"]
    fits = CLASSIFICATION_LOSSES if task == "classification" else REGRESSION_LOSSES
    if name is None:
        return fits[0]
    if name not in fits:
        kind = "regression" if name in REGRESSION_LOSSES else "classification"
        raise ConfigError(
            f"--loss {name} is a {kind} loss, but dataset {settings['dataset']} is a {task} "
            f"task; choose one of {', '.join(fits)}"
        )
    return name


def make_loss(name: str) -> Any:
    """The loss called ``name`` (one of the ``--loss`` choices)."""
    from .. import losses

    return {
        "cross_entropy": lambda: losses.CrossEntropyLoss(),
        "multimargin": lambda: losses.MultiMarginLoss(),
        "multimargin_squared": lambda: losses.MultiMarginLoss(p=2),
        "mse": lambda: losses.MSELoss(),
        "l1": lambda: losses.L1Loss(),
        "huber": lambda: losses.HuberLoss(),
        "smooth_l1": lambda: losses.SmoothL1Loss(),
    }[name]()
