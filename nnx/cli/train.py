"""The training command: ``python scripts/train.py`` or ``python -m nnx.train``.

Trains an MLP on a built-in data set (default: scikit-learn's 8x8 digits), with a progress bar,
per-epoch history, checkpoints, curves and a summary. Settings come from, in increasing
priority: built-in defaults, the ``config.json`` of the run being resumed, ``--config FILE``
(TOML or JSON) and command-line flags. Every problem a user can cause ends with a one-line
message and a non-zero exit status, never a traceback.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import math
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

import nnx
from nnx.models import PRESETS

EXIT_USAGE = 2  # bad settings, missing data or GPU, unusable checkpoint
EXIT_FAILED = 1  # training itself failed (loss became NaN)
EXIT_INTERRUPTED = 130  # Ctrl-C; a checkpoint was saved first

DATASETS = ("digits", "spiral", "vertical", "sine", "mnist", "fashion-mnist", "cifar10")
ACTIVATIONS = ("relu", "leaky_relu", "tanh", "sigmoid", "gelu")
OPTIMIZERS = ("sgd", "adam", "adamw", "rmsprop", "adagrad")
SCHEDULES = ("none", "step", "exponential", "cosine", "warmup", "inverse-time")
DTYPES = ("float32", "float64")
PRECISIONS = ("float32", "float16", "bfloat16", "mixed16")  # nnx.training.precision.PRECISIONS
DEFAULT_LR = {"sgd": 0.05, "adam": 1e-3, "adamw": 1e-3, "rmsprop": 1e-3, "adagrad": 1e-2}


class ConfigError(ValueError):
    """A setting is wrong; the message names it."""


# ---------------------------------------------------------------------------- settings


def _hidden(value: Any) -> list[int]:
    if isinstance(value, str):
        parts = [p.strip() for p in value.split(",")] if value.strip() else []
        try:
            sizes = [int(p) for p in parts]
        except ValueError:
            raise ConfigError(
                f"--hidden must be comma-separated positive integers such as 128,64, got {value!r}"
            ) from None
    elif isinstance(value, list) and all(
        isinstance(v, int) and not isinstance(v, bool) for v in value
    ):
        sizes = list(value)
    else:
        raise ConfigError(f"--hidden must be a list of layer sizes such as 128,64, got {value!r}")
    if any(s <= 0 for s in sizes):
        raise ConfigError(f"--hidden sizes must be positive, got {value!r}")
    return sizes


def _number(kind: type, low: float | None = None, high: float | None = None, strict_low=False):
    def convert(value: Any, flag: str) -> Any:
        if isinstance(value, bool):
            raise ConfigError(f"{flag} must be a number, got {value!r}")
        try:
            number = kind(value)
        except (TypeError, ValueError, OverflowError):
            raise ConfigError(
                f"{flag} must be {'an integer' if kind is int else 'a number'}, got {value!r}"
            ) from None
        if kind is float and not math.isfinite(number):
            raise ConfigError(f"{flag} must be a finite number, got {value!r}")
        if kind is int and isinstance(value, float) and value != number:
            raise ConfigError(f"{flag} must be an integer, got {value!r}")
        if low is not None and (number <= low if strict_low else number < low):
            bound = f"> {low}" if strict_low else f">= {low}"
            raise ConfigError(f"{flag} must be {bound}, got {value!r}")
        if high is not None and number >= high:
            raise ConfigError(f"{flag} must be < {high}, got {value!r}")
        return number

    return convert


def _choice(options: tuple[str, ...]):
    """Match case-insensitively, with ``_`` and ``-`` interchangeable; return the listed spelling."""
    canonical = {o.replace("_", "-"): o for o in options}

    def convert(value: Any, flag: str) -> str:
        found = canonical.get(str(value).strip().lower().replace("_", "-"))
        if found is None:
            raise ConfigError(f"unknown {flag[2:]} {value!r}; choose one of {', '.join(options)}")
        return found

    return convert


def _dataset(value: Any, flag: str) -> str:
    """A built-in data set's name, or the absolute path of the user's .npz/.csv file (absolute,
    so that config.json still finds it from another folder on --resume)."""
    from nnx.datasets.files import is_data_file

    if isinstance(value, str) and is_data_file(value.strip()):
        return str(Path(value.strip()).expanduser().resolve())
    return _choice(DATASETS)(value, flag)


def _text(value: Any, flag: str) -> str:
    if not isinstance(value, str) or not value:
        raise ConfigError(f"{flag} must be a non-empty string, got {value!r}")
    return value


def _optional(convert: Callable[[Any, str], Any]) -> Callable[[Any, str], Any]:
    return lambda value, flag: None if value is None else convert(value, flag)


def _flag(value: Any, flag: str) -> bool:
    if isinstance(value, bool):
        return value
    raise ConfigError(f"{flag} must be true or false, got {value!r}")


# name -> (default, converter, help)
SETTINGS: dict[str, tuple[Any, Callable[[Any, str], Any], str]] = {
    "device": (
        "auto",
        _text,
        "where to train: auto (a CUDA GPU when usable, else the CPU), cpu, "
        "gpu, cuda:N, torch, torch:cuda, strict, jax, jax:gpu",
    ),
    "dataset": (
        "digits",
        _dataset,
        "data set: " + ", ".join(DATASETS) + ", or the path of your own .npz (x_train, y_train, "
        "optional x_test, y_test) or .csv (with --label-column)",
    ),
    "label_column": (
        None,
        _optional(_text),
        "the label column of a .csv --dataset: a name from its header or a 0-based index",
    ),
    "data_dir": (
        None,
        _optional(_text),
        "folder holding the MNIST/Fashion-MNIST files "
        "(default: download into $NNX_DATA or ~/.cache/nnx)",
    ),
    "model": (
        "mlp",
        _text,
        "the model: a preset (" + ", ".join(PRESETS) + ") or package.module:function, a function "
        "that receives the input shape and class count and returns an nnx.Module",
    ),
    "text": (
        None,
        _optional(_text),
        "text file for the language-model presets (transformer, lstm; default: Python "
        "standard library sources)",
    ),
    "seq_len": (64, _number(int, 0, strict_low=True), "characters per window (transformer, lstm)"),
    "steps_per_epoch": (
        100,
        _number(int, 0, strict_low=True),
        "optimizer steps per epoch, on random windows (transformer, lstm)",
    ),
    "hidden": ([128, 64], lambda v, f: _hidden(v), "hidden layer sizes, comma-separated (mlp)"),
    "activation": (
        "relu",
        _choice(ACTIVATIONS),
        "hidden activation (mlp): " + ", ".join(ACTIVATIONS),
    ),
    "dropout": (0.0, _number(float, 0.0, 1.0), "dropout probability after each hidden layer (mlp)"),
    "epochs": (30, _number(int, 0, strict_low=True), "total number of epochs"),
    "batch_size": (32, _number(int, 0, strict_low=True), "samples per optimizer step"),
    "optimizer": ("adam", _choice(OPTIMIZERS), "optimizer: " + ", ".join(OPTIMIZERS)),
    "lr": (
        None,
        _optional(_number(float, 0.0, strict_low=True)),
        "learning rate (default: sgd 0.05, adam/adamw/rmsprop 0.001, adagrad 0.01)",
    ),
    "momentum": (None, _optional(_number(float, 0.0, 1.0)), "momentum (sgd, rmsprop; default 0)"),
    "weight_decay": (
        None,
        _optional(_number(float, 0.0)),
        "L2 weight decay (decoupled for adamw; default 0, adamw 0.01)",
    ),
    "schedule": (
        "none",
        _choice(SCHEDULES),
        "learning-rate schedule per epoch: "
        "step (x0.1 every third of the run), exponential (x0.95 per epoch), cosine "
        "(to 0 at the last epoch), warmup (linear over 5 epochs), inverse-time (1/(1+0.1 t)), none",
    ),
    "clip_norm": (
        None,
        _optional(_number(float, 0.0, strict_low=True)),
        "clip the global gradient norm",
    ),
    "accumulate": (
        1,
        _number(int, 0, strict_low=True),
        "take one optimizer step per K batches (gradient accumulation: the step of a K times "
        "larger batch)",
    ),
    "random_crop": (
        None,
        _optional(_number(int, 0)),
        "augment the training images: pad each by PADDING pixels of zeros (after "
        "standardization) and crop it back to its size at a random place, drawn per sample and "
        "epoch (image data only)",
    ),
    "hflip": (
        False,
        _flag,
        "augment the training images: flip each left-right with probability 0.5, drawn per "
        "sample and epoch (image data only)",
    ),
    "val_fraction": (
        0.2,
        _number(float, 0.0, 1.0),
        "fraction of the training data held out for validation",
    ),
    "early_stopping": (
        None,
        _optional(_number(int, 0, strict_low=True)),
        "stop after PATIENCE epochs without a better validation loss",
    ),
    "seed": (
        0,
        _number(int, 0),
        "seed for initialization, splits, shuffling, dropout and augmentation",
    ),
    "dtype": ("float32", _choice(DTYPES), "floating-point type: float32 or float64"),
    "precision": (
        "float32",
        _choice(PRECISIONS),
        "float32, or 16-bit compute with float32 master weights and loss scaling: "
        "float16, bfloat16 (torch, jax, cupy), mixed16 (bfloat16 where available, else float16)",
    ),
    "jit": (False, _flag, "compile each training step with jax.jit (--device jax only)"),
    "out": (None, _optional(_text), "output folder (default: runs/<timestamp>)"),
    "overwrite": (False, _flag, "allow writing into a non-empty --out folder"),
    "quiet": (False, _flag, "no progress bar and no summary (errors still print)"),
    "distributed": (
        False,
        _flag,
        "data-parallel training over MPI: mpiexec -n N python -m mpi4py scripts/train.py "
        "--distributed (on by itself under an MPI launcher); --batch-size is the global batch",
    ),
    "sync_batchnorm": (
        False,
        _flag,
        "BatchNorm layers normalize by the statistics of the whole global batch, summed over "
        "the ranks (SyncBatchNorm), instead of each rank's shard; the same as BatchNorm in "
        "one process",
    ),
}
METAVARS = {
    "model": "NAME",
    "hidden": "SIZES",
    "early_stopping": "PATIENCE",
    "out": "DIR",
    "data_dir": "DIR",
    "accumulate": "K",
    "random_crop": "PADDING",
}


def build_parser(prog: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=prog,
        description="Train a model with nnx and write history, checkpoints, curves and a summary.",
        epilog="Settings also come from --config FILE (TOML or JSON, keys as the flag names, "
        "e.g. batch_size = 64); flags on the command line override it.",
        argument_default=argparse.SUPPRESS,
    )
    for name, (default, _, help_text) in SETTINGS.items():
        flag = "--" + name.replace("_", "-")
        shown = ",".join(map(str, default)) if isinstance(default, list) else default
        if isinstance(default, bool):  # --quiet / --no-quiet: a stored setting can be undone
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, help=help_text)
        else:
            parser.add_argument(
                flag,
                metavar=METAVARS.get(name, name.upper().split("_")[0]),
                help=help_text
                if default is None or "default" in help_text
                else f"{help_text} (default: {shown})",
            )
    parser.add_argument(
        "--resume", metavar="CHECKPOINT", help="continue a run from its last.npz or best.npz"
    )
    parser.add_argument("--config", metavar="FILE", help="read settings from a TOML or JSON file")
    parser.add_argument("--version", action="version", version=f"nnx {nnx.__version__}")
    return parser


MAX_CONFIG_BYTES = 1 << 20  # settings fit in far less; a bigger file is a mistake


def _read_capped(path: Path, what: str) -> str:
    """The UTF-8 text of a regular file of at most MAX_CONFIG_BYTES, or a ConfigError."""
    try:
        if not path.is_file():
            kind = "a folder" if path.is_dir() else "not a regular file"
            if not path.exists():
                raise ConfigError(f"{what} {path} does not exist")
            raise ConfigError(f"{what} {path} is {kind}")
        with open(path, "rb") as f:
            data = f.read(MAX_CONFIG_BYTES + 1)
    except OSError as err:
        raise ConfigError(f"cannot read {what} {path}: {err.strerror or err}") from None
    if len(data) > MAX_CONFIG_BYTES:
        raise ConfigError(f"{what} {path} is larger than {MAX_CONFIG_BYTES // 1024} KiB")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as err:
        raise ConfigError(
            f"{what} {path} is not UTF-8 text (byte {err.start}: {data[err.start]:#04x})"
        ) from None


def read_config_file(path: str) -> dict[str, Any]:
    p = Path(path)
    text = _read_capped(p, "config file")
    try:
        if p.suffix.lower() == ".toml":
            try:
                import tomllib
            except ImportError:  # Python 3.10
                import tomli as tomllib
            data = tomllib.loads(text)
        else:
            data = json.loads(text)
    except (ValueError, RecursionError) as err:
        raise ConfigError(
            f"config file {path} is not valid {'TOML' if p.suffix == '.toml' else 'JSON'}: {err}"
        ) from None
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path} must hold a table/object of settings")
    return _normalise_keys(data, f"config file {path}")


def _normalise_keys(data: dict[str, Any], where: str) -> dict[str, Any]:
    out = {}
    for key, value in data.items():
        name = str(key).replace("-", "_")
        if name not in SETTINGS:
            raise ConfigError(f"{where}: unknown setting {key!r}; known: {', '.join(SETTINGS)}")
        out[name] = value
    return out


def resolve_settings(args: argparse.Namespace) -> tuple[dict[str, Any], Path | None]:
    """Defaults < resumed run's config.json < --config file < command-line flags."""
    given = vars(args)
    resume = Path(given.pop("resume")) if "resume" in given else None
    layers: list[dict[str, Any]] = []
    if resume is not None:
        if not resume.is_file():
            raise ConfigError(f"--resume: checkpoint {resume} does not exist")
        stored = dict(_stored_config(resume)["settings"])
        stored.pop("out", None)
        stored.pop("overwrite", None)
        stored.pop("distributed", None)  # the new launch decides, with any number of ranks
        layers.append(_normalise_keys(stored, str(resume.parent / "config.json")))
    if "config" in given:
        layers.append(read_config_file(given.pop("config")))
    layers.append(given)
    settings = {name: default for name, (default, _, _) in SETTINGS.items()}
    for layer in layers:
        settings.update(layer)
    for name, (_, convert, _) in SETTINGS.items():
        settings[name] = convert(settings[name], "--" + name.replace("_", "-"))
    if settings["data_dir"] is not None and settings["dataset"] not in (
        "mnist",
        "fashion-mnist",
        "cifar10",
    ):
        raise ConfigError("--data-dir applies to --dataset mnist, fashion-mnist or cifar10")
    if settings["label_column"] is not None and not settings["dataset"].lower().endswith(".csv"):
        raise ConfigError("--label-column applies to a .csv --dataset")
    if settings["momentum"] is not None and settings["optimizer"] not in ("sgd", "rmsprop"):
        raise ConfigError(f"--momentum applies to sgd and rmsprop, not {settings['optimizer']}")
    if settings["lr"] is None:
        settings["lr"] = DEFAULT_LR[settings["optimizer"]]
    if settings["early_stopping"] is not None and settings["val_fraction"] == 0:
        raise ConfigError("--early-stopping needs a validation split (--val-fraction > 0)")
    if settings["precision"] != "float32" and settings["dtype"] != "float32":
        raise ConfigError(
            f"--precision {settings['precision']} keeps float32 master weights; it needs "
            f"--dtype float32, not {settings['dtype']}"
        )
    if settings["jit"] and settings["precision"] != "float32":
        raise ConfigError("--jit and --precision cannot be combined yet")
    if not settings["distributed"]:
        from ..distributed import launched_by_mpi

        settings["distributed"] = launched_by_mpi()
    return settings, resume


# Settings of the classifier path that the language-model presets (--model transformer/lstm)
# do not use: giving one is an error rather than silently ignored.
CLASSIFIER_ONLY = (
    "dataset",
    "label_column",
    "data_dir",
    "val_fraction",
    "early_stopping",
    "schedule",
    "accumulate",
    "precision",
    "jit",
    "distributed",
    "sync_batchnorm",
)

# ---------------------------------------------------------------------------- resuming

# A resumed run keeps these: they decide the data (split, scaling, dtype) or the model and
# optimizer that the checkpoint holds. Changing one silently would train on other data.
FIXED_ON_RESUME = (
    "dataset",
    "model",
    "seed",
    "val_fraction",
    "dtype",
    "hidden",
    "activation",
    "optimizer",
    "schedule",
    "sync_batchnorm",
    "random_crop",
    "hflip",
)
# These take effect from the resumed epoch on (the optimizer's saved values are replaced).
OPTIMIZER_ON_RESUME = ("lr", "momentum", "weight_decay")


def _stored_config(resume: Path) -> dict[str, Any]:
    saved = resume.parent / "config.json"
    if not saved.is_file():
        raise ConfigError(
            f"--resume: no config.json beside {resume}, so the run's data settings are unknown; "
            f"resume from the run folder the checkpoint was written in"
        )
    try:
        config = json.loads(_read_capped(saved, "config.json"))
        if not isinstance(config, dict) or not isinstance(config.get("settings"), dict):
            raise ValueError
    except ValueError:
        raise ConfigError(
            f"--resume: {saved} is not a config.json written by this command"
        ) from None
    return config


def _effective(name: str, value: Any, settings: dict[str, Any]) -> Any:
    """What an optimizer setting means when left unset (None)."""
    if value is not None:
        return value
    if name == "weight_decay":
        return 0.01 if settings["optimizer"] == "adamw" else 0.0
    return 0.0 if name == "momentum" else value


def resume_changes(settings: dict[str, Any], stored: dict[str, Any]) -> dict[str, Any]:
    """The settings that differ from the resumed run's; refuse those a resume cannot honour."""
    changes = {}
    for name in SETTINGS:
        if name in ("out", "overwrite", "quiet", "distributed") or name not in stored:
            continue
        try:
            before = SETTINGS[name][1](stored[name], "--" + name.replace("_", "-"))
        except ConfigError:
            before = stored[name]
        after = settings[name]
        if name in OPTIMIZER_ON_RESUME:
            before, after = _effective(name, before, settings), _effective(name, after, settings)
        if before == after:
            continue
        flag = "--" + name.replace("_", "-")
        if name in FIXED_ON_RESUME:
            shown = ",".join(map(str, before)) if isinstance(before, list) else before
            raise ConfigError(
                f"{flag} cannot change when resuming (the run used {shown}); "
                f"start a new run (another --out) to change it"
            )
        changes[name] = {"from": before, "to": after}
    return changes


def apply_resume_changes(changes: dict[str, Any], optimizer: Any, schedule: Any) -> None:
    """Make the optimizer settings given with --resume win over the checkpoint's."""
    if "lr" in changes:
        lr = changes["lr"]["to"]
        if schedule is not None:  # the schedule scales its base rate from the resumed step on
            schedule.base_lr = lr
            optimizer.lr = schedule.lr_at(schedule.last_step)
        else:
            optimizer.lr = lr
    for name in ("momentum", "weight_decay"):
        if name in changes:
            setattr(optimizer, name, changes[name]["to"])


def _checkpoint_epoch(path: Path) -> int | None:
    from ..io.checkpoint import CheckpointError, read_record

    try:
        epoch = read_record(path).get("epoch")
    except CheckpointError:
        return None
    return epoch if isinstance(epoch, int) else None


def refuse_older_checkpoint(out: Path, resume: Path, overwrite: bool) -> None:
    """Resuming from an older checkpoint must not overwrite a newer last.npz / history.csv."""
    if overwrite:
        return
    resumed = _checkpoint_epoch(resume)
    if resumed is None:
        return  # loading will say what is wrong with it
    newest, where = 0, None
    last = out / "last.npz"
    if last.is_file() and not (resume.exists() and last.samefile(resume)):
        epoch = _checkpoint_epoch(last)
        if epoch is not None and epoch > newest:
            newest, where = epoch, last
    history = out / "history.csv"
    if history.is_file():
        with open(history, "rb") as f:
            rows = max(0, sum(1 for line in f if line.strip()) - 1)
        if rows > newest:
            newest, where = rows, history
    if newest > resumed:
        raise ConfigError(
            f"--resume {resume} is from epoch {resumed}, but {where} already holds epoch "
            f"{newest}: resuming into {out} would overwrite newer results; pass another --out, "
            f"or --overwrite to replace them"
        )


# ---------------------------------------------------------------------------- the run


# Settings passed to the model builder, when it takes them (the mlp preset takes all four).
MODEL_OPTIONS = ("hidden", "activation", "dropout", "seed")


def make_model(settings: dict[str, Any], input_shape: tuple[int, ...], n_out: int, nnx: Any) -> Any:
    """Build ``settings["model"]`` (a preset or ``package.module:function``) for samples of
    ``input_shape`` and ``n_out`` outputs, passing the :data:`MODEL_OPTIONS` it accepts.

    A model option changed from its default that the builder does not take is an error rather
    than silently ignored.
    """
    from nnx.models import ModelSpecError, accepted_options, build_model, resolve_builder

    try:
        builder = resolve_builder(settings["model"])
    except ModelSpecError as err:
        raise ConfigError(str(err)) from None
    options = {name: settings[name] for name in MODEL_OPTIONS}
    accepted = accepted_options(builder, options)
    for name in MODEL_OPTIONS:
        if name not in accepted and name != "seed" and options[name] != SETTINGS[name][0]:
            raise ConfigError(
                f"--{name} does not apply to --model {settings['model']} "
                "(its builder takes no such option)"
            )
    try:
        return build_model(settings["model"], input_shape, n_out, **accepted)
    except ModelSpecError as err:
        raise ConfigError(str(err)) from None


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


MODEL_SETTINGS = ("model", "hidden", "activation", "dropout")


def model_from_checkpoint(path: Path) -> Any:
    """The model described by the architecture a checkpoint embeds (fresh weights: the
    checkpoint's are loaded with the optimizer state), or None when it embeds none or names a
    class not registered in this process."""
    from nnx.io.checkpoint import read_checkpoint
    from nnx.io.model_file import model_from_record
    from nnx.io.registry import ModelFileError

    meta, arrays = read_checkpoint(path)
    record = meta.get("model")
    if not isinstance(record, dict):
        return None
    stored = sum(a.size for key, a in arrays.items() if key.startswith("model/"))
    try:
        return model_from_record(record, where=str(path), stored_numbers=stored)
    except ModelFileError:
        return None


def make_augment(settings: dict[str, Any], sample_shape: tuple[int, ...], dataset: str) -> Any:
    """The training-batch augmentation that --random-crop and --hflip ask for, or None."""
    from nnx.data.augment import Compose, RandomCrop, RandomHorizontalFlip

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
        transforms.append(RandomCrop(sample_shape[-2:], padding=padding))
    if flip:
        transforms.append(RandomHorizontalFlip(0.5))
    return transforms[0] if len(transforms) == 1 else Compose(transforms)


def make_optimizer(settings: dict[str, Any], params: Any, optim: Any) -> Any:
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


def make_schedule(settings: dict[str, Any], optimizer: Any, optim: Any) -> Any:
    epochs, kind = settings["epochs"], settings["schedule"]
    if kind == "none":
        return None
    if kind == "step":
        return optim.StepLR(optimizer, step_size=max(1, epochs // 3), gamma=0.1)
    if kind == "exponential":
        return optim.ExponentialLR(optimizer, gamma=0.95)
    if kind == "cosine":
        return optim.CosineAnnealingLR(optimizer, t_max=epochs)
    if kind == "warmup":
        return optim.LinearWarmup(optimizer, warmup_steps=min(5, epochs))
    return optim.InverseTimeDecay(optimizer, decay=0.1)


def prepare_out(settings: dict[str, Any], resume: Path | None) -> Path:
    if settings["out"] is not None:
        out = Path(settings["out"])
    elif resume is not None:
        out = resume.parent
    else:
        out = Path("runs") / _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    from .runfolder import LOCK_NAME

    try:
        if out.exists() and not out.is_dir():
            raise ConfigError(f"--out {out} exists and is not a folder")
        same_run = resume is not None and out.resolve() == resume.parent.resolve()
        ours = (LOCK_NAME,)  # a lock file left by a killed run does not make a folder "used"
        used = out.is_dir() and any(
            p.name not in ours and not (p.name.startswith(".") and p.name.endswith(".tmp"))
            for p in out.iterdir()
        )
        if used and not settings["overwrite"] and not same_run:
            raise ConfigError(
                f"--out folder {out} exists and is not empty; pass --overwrite or choose another --out"
            )
        out.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise ConfigError(f"--out {out}: cannot create the folder: {err.strerror or err}") from None
    return out


def lock_out(out: Path) -> Any:
    """Lock the run folder for this process and remove temp files left by a killed run."""
    from .runfolder import RunFolderBusy, lock_run_folder, remove_stale_temp_files

    try:
        lock = lock_run_folder(out)
    except RunFolderBusy as err:
        raise ConfigError(
            f"--out folder {out} is in use by another run (pid {err.pid}); wait for it to "
            f"finish or choose another --out"
        ) from None
    except OSError as err:
        raise ConfigError(f"--out {out} is not writable: {err.strerror or err}") from None
    remove_stale_temp_files(out)
    return lock


def _write_json(path: Path, data: dict[str, Any]) -> None:
    from ..io.atomic import atomic_write

    with atomic_write(path, "w", encoding="utf-8") as f:
        f.write(json.dumps(data, indent=2, default=str) + "\n")


def run(
    settings: dict[str, Any],
    resume: Path | None,
    say: Callable[[str], None],
    context: dict[str, Any] | None = None,
) -> int:
    """Train as ``settings`` say; ``context["out"]`` is set to the output folder once known."""
    context = {} if context is None else context
    import nnx
    from nnx import callbacks as cbs
    from nnx import optim
    from nnx.data import ArrayDataset, Standardizer, train_val_split
    from nnx.datasets import load_dataset
    from nnx.datasets.files import is_data_file, load_file
    from nnx.models.charlm import LM_PRESETS, run_language_model

    if settings["model"] in LM_PRESETS:  # character-level language model on --text
        if settings["random_crop"] is not None or settings["hflip"]:
            raise ConfigError(
                f"--random-crop and --hflip augment images; --model {settings['model']} "
                f"trains on text"
            )
        unused = [name for name in CLASSIFIER_ONLY if settings[name] != SETTINGS[name][0]]
        if resume is not None or unused:
            flag = "--resume" if resume is not None else "--" + unused[0].replace("_", "-")
            raise ConfigError(
                f"{flag} does not apply to --model {settings['model']}, a character-level "
                f"language model on --text (its flags are listed in docs/cli.md)"
            )
        out = prepare_out(settings, resume)
        context["out"] = out
        run_language_model(settings, say, out)
        return 0
    changes: dict[str, Any] = {}
    previous_resumes: list[Any] = []
    if resume is not None:
        stored = _stored_config(resume)
        changes = resume_changes(settings, stored["settings"])
        if isinstance(stored.get("resumes"), list):
            previous_resumes = stored["resumes"]
    world = None
    device = settings["device"]
    if settings["distributed"]:
        from nnx import distributed

        world = distributed.init()  # without mpi4py: a one-line error naming the install command
        context["world"] = world
        device = distributed.device_spec(device)  # one GPU per rank of a machine
    rank0 = world is None or world.rank == 0
    backend = nnx.get_backend(device)  # a missing GPU fails here, before any work
    if world is not None and not rank0:
        world.barrier()  # rank 0 downloads the data set first, the others then read its copy
        say = _silent
    # image data sets give image-shaped samples (C, H, W); the mlp preset flattens them
    if is_data_file(settings["dataset"]):  # the user's own .npz or .csv, checked
        data = load_file(settings["dataset"], settings["label_column"], seed=settings["seed"])
    else:
        data = load_dataset(settings["dataset"], settings["data_dir"], seed=settings["seed"])
        data = data.images()
    check_model_fits(settings, math.prod(data.train[0].shape[1:]), data.num_outputs)
    augment = make_augment(settings, tuple(data.train[0].shape[1:]), data.name)
    if world is not None and rank0:
        world.barrier()
    if rank0:  # rank 0 owns the run folder (and its lock) for every rank
        out = prepare_out(settings, resume)
        context["lock"] = lock_out(out)
        if resume is not None:
            refuse_older_checkpoint(out, resume, settings["overwrite"])
    else:
        out = _out_folder(settings, resume)
    context["out"] = out
    classification = data.task == "classification"

    full = ArrayDataset(*data.train).to(backend, dtype=settings["dtype"])
    train, val = train_val_split(full, settings["val_fraction"], seed=settings["seed"])
    test = ArrayDataset(*data.test).to(backend, dtype=settings["dtype"])
    scaler = Standardizer().fit(train.x)  # fitted on the training split only
    train, test = (ArrayDataset(scaler.transform(d.x), d.y) for d in (train, test))
    if val is not None:
        val = ArrayDataset(scaler.transform(val.x), val.y)

    model = None
    if resume is not None and not context.get("model_flags"):
        model = model_from_checkpoint(resume)  # no --hidden/--model needed to rebuild
    if model is None:
        model = make_model(settings, tuple(data.train[0].shape[1:]), data.num_outputs, nnx)
    model = model.to(backend, dtype=settings["dtype"])
    if settings["sync_batchnorm"]:
        norms = (nnx.BatchNorm1d, nnx.BatchNorm2d, nnx.SyncBatchNorm)
        if not any(isinstance(m, norms) for m in model.modules()):
            raise ConfigError(
                f"--sync-batchnorm: the {settings['model']} model has no BatchNorm layer "
                "(the cnn preset has)"
            )
        nnx.SyncBatchNorm.convert_sync_batchnorm(model)
    if not settings["quiet"]:
        nnx.summary(model, tuple(data.train[0].shape[1:]), print_fn=say)
    optimizer = make_optimizer(settings, model.parameters(), optim)
    schedule = make_schedule(settings, optimizer, optim)
    monitor = ("val_" if val is not None else "train_") + ("accuracy" if classification else "loss")
    callbacks: list[Any] = [
        cbs.ModelCheckpoint(out, monitor=monitor),
        cbs.CSVLogger(out / "history.csv"),
    ]
    if settings["early_stopping"] is not None:
        callbacks.append(cbs.EarlyStopping("val_loss", patience=settings["early_stopping"]))
    callbacks.append(cbs.ProgressBar(quiet=settings["quiet"]))
    trainer = nnx.Trainer(
        model,
        nnx.CrossEntropyLoss() if classification else nnx.MSELoss(),
        optimizer,
        device=backend,
        metrics=("accuracy",) if classification else ("mae",),
        callbacks=callbacks,
        seed=settings["seed"],
        schedule=schedule,
        clip_norm=settings["clip_norm"],
        accumulate=settings["accumulate"],
        progress=False,
        jit=settings["jit"],
        precision=settings["precision"],
        distributed=world is not None,
        augment=augment,
    )
    if resume is not None:
        trainer.load_checkpoint(resume)
        apply_resume_changes(changes, optimizer, schedule)
        say(f"resuming {resume} after epoch {trainer.epoch}")
        for name, change in changes.items():
            say(f"  {name.replace('_', ' ')}: {change['from']} -> {change['to']}")
    config = {
        "settings": settings,
        "backend": backend.name,
        "device": str(backend.device),
        "dataset": {
            "name": data.name,
            "task": data.task,
            "train": len(train),
            "val": 0 if val is None else len(val),
            "test": len(test),
        },
        "model": repr(model),
        "resumed_from": None if resume is None else str(resume),
        "ranks": 1 if world is None else world.size,
        # every resume of this run: after which epoch, and the settings it changed from then on
        "resumes": previous_resumes
        + (
            []
            if resume is None
            else [{"checkpoint": str(resume), "after_epoch": trainer.epoch, "changed": changes}]
        ),
        "nnx_version": nnx.__version__,
    }
    if rank0:
        _write_json(out / "config.json", config)

    started = time.perf_counter()
    history = trainer.fit(train, val, epochs=settings["epochs"], batch_size=settings["batch_size"])
    wall = time.perf_counter() - started
    summary: dict[str, Any] = {
        "backend": backend.name,
        "device": str(backend.device),
        "dataset": data.name,
        "epochs": trainer.epoch,
        "stopped_early": trainer.epoch < settings["epochs"],
        "seconds": wall,
        "ranks": 1 if world is None else world.size,
    }
    if len(history):
        last = history.last
        summary.update({k: v for k, v in last.items() if k.startswith(("train_", "val_"))})
        seconds = [r["seconds"] for r in history.records]
        summary["seconds_per_epoch"] = float(np.mean(seconds))
        summary["samples_per_s"] = float(np.mean([r["samples_per_s"] for r in history.records]))
    for key, value in trainer.evaluate(test).items():
        summary[f"test_{key}"] = value
    summary["outputs"] = str(out)
    if rank0:
        _write_json(out / "summary.json", summary)
        curves = nnx.save_curves(history, out / "curves.png")
        _print_summary(summary, out, curves, say)
    return 0


def _silent(line: str) -> None:
    """``say`` of ranks other than 0."""


def _out_folder(settings: dict[str, Any], resume: Path | None) -> Path:
    """The output folder a rank other than 0 reports (rank 0 creates and writes it)."""
    if settings["out"] is not None:
        return Path(settings["out"])
    return resume.parent if resume is not None else Path("runs")


def _print_summary(
    summary: dict[str, Any], out: Path, curves: Path | None, say: Callable[[str], None]
) -> None:
    metric = "accuracy" if "test_accuracy" in summary else "mae"

    def row(split: str) -> str:
        loss, value = summary.get(f"{split}_loss"), summary.get(f"{split}_{metric}")
        if loss is None:
            return f"  {split:<5}  -"
        return f"  {split:<5}  loss {loss:.4f}   {metric} {value:.4f}"

    say(
        f"nnx: trained on {summary['backend']} ({summary['device']}), dataset {summary['dataset']}, "
        f"{summary['epochs']} epochs" + (" (stopped early)" if summary["stopped_early"] else "")
    )
    for split in ("train", "val", "test"):
        say(row(split))
    if "seconds_per_epoch" in summary:
        say(
            f"  {summary['seconds_per_epoch']:.3f} s per epoch, {summary['samples_per_s']:,.0f} samples/s"
        )
    files = "config.json, history.csv, summary.json, last.npz, best.npz" + (
        ", curves.png" if curves else ""
    )
    say(f"  outputs in {out}: {files}")


class Terminated(KeyboardInterrupt):
    """SIGTERM or SIGHUP: stops training like Ctrl-C (the last completed epoch is kept)."""

    def __init__(self, signum: int):
        super().__init__(signum)
        self.signum = signum


def _raise_terminated(signum: int, frame: Any) -> None:
    raise Terminated(signum)


def _install_signal_handlers() -> dict[int, Any]:
    """SIGTERM and SIGHUP raise :class:`Terminated`; returns the handlers they replace."""
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        return {}
    previous = {}
    for name in ("SIGTERM", "SIGHUP"):
        signum = getattr(signal, name, None)
        if signum is not None:
            previous[signum] = signal.signal(signum, _raise_terminated)
    return previous


def main(argv: list[str] | None = None, prog: str = "train.py") -> int:
    """Run the command; returns the exit status."""
    import signal

    try:
        previous = _install_signal_handlers()
    except KeyboardInterrupt:  # Ctrl-C before anything started
        return _interrupted(prog, signal.SIGINT, None)
    try:
        return _main(argv, prog)
    except KeyboardInterrupt as err:  # Ctrl-C or a signal during start-up or the final report
        return _interrupted(prog, getattr(err, "signum", signal.SIGINT), None)
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def _interrupted(prog: str, signum: int, out: Path | None) -> int:
    import signal

    last = out / "last.npz" if out is not None else None
    if last is not None and last.is_file():
        where = f"the last completed epoch is saved in {last}; continue with --resume {last}"
    else:
        where = "no epoch had completed, so there is nothing to resume"
    name = "" if signum == signal.SIGINT else f" by {signal.Signals(signum).name}"
    print(f"{prog}: interrupted{name}: {where}", file=sys.stderr)
    return 128 + int(signum)  # 130 for Ctrl-C, 143 for SIGTERM, 129 for SIGHUP


def _main(argv: list[str] | None, prog: str) -> int:
    import signal

    parser = build_parser(prog)
    args = parser.parse_args(argv)
    quiet = getattr(args, "quiet", False)

    def fail(message: str, status: int = EXIT_USAGE) -> int:
        print(f"{prog}: error: {message}", file=sys.stderr, flush=True)
        world = context.get("world")
        if world is not None and world.size > 1:  # the other ranks may wait in a collective
            world.comm.Abort(status)
        return status

    def say(line: str) -> None:
        if not quiet:
            print(line, flush=True)

    context: dict[str, Any] = {}

    from nnx.backend import BackendUnavailableError
    from nnx.datasets import DatasetError
    from nnx.distributed import DistributedUnavailableError
    from nnx.io.checkpoint import CheckpointError
    from nnx.training.trainer import NonFiniteLossError

    try:
        # Model settings given now (flags or --config) build the model from them on --resume;
        # otherwise it is rebuilt from the architecture the checkpoint embeds.
        given = set(vars(args))
        if "config" in given:
            given |= set(read_config_file(args.config))
        context["model_flags"] = sorted(given & set(MODEL_SETTINGS))
        settings, resume = resolve_settings(args)
        quiet = settings["quiet"]
        return run(settings, resume, say, context)
    except BackendUnavailableError as err:  # the API names backends; here they are --device
        message = str(err).replace("backend 'cpu' or 'auto'", "--device cpu or --device auto")
        return fail(message.replace("backend 'cpu' or 'gpu'", "--device cpu or --device gpu"))
    except (ConfigError, DatasetError, CheckpointError, DistributedUnavailableError) as err:
        return fail(str(err))
    except NonFiniteLossError as err:
        return fail(str(err), EXIT_FAILED)
    except KeyboardInterrupt as err:
        return _interrupted(prog, getattr(err, "signum", signal.SIGINT), context.get("out"))
    except MemoryError:
        return fail("out of memory; try a smaller --hidden or --batch-size")
    except OSError as err:  # disk full, permissions changed under us, ...
        where = f" ({err.filename})" if getattr(err, "filename", None) else ""
        return fail(f"{err.strerror or err}{where}")
    except ValueError as err:  # a bad value that got past the checks above, still one line
        return fail(str(err))
    finally:
        lock = context.get("lock")
        if lock is not None:
            lock.release()


def cli() -> None:
    """The ``nnx-train`` console script installed with the package."""
    sys.exit(main(prog="nnx-train"))


if __name__ == "__main__":
    sys.exit(main(prog="python -m nnx.train"))
