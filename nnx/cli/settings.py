"""The training command's settings: the SETTINGS table (every flag, its default, converter and
help; the converters are in :mod:`.converters`), config files, and :func:`resolve_settings`, which layers defaults < the
resumed run's ``config.json`` < ``--config FILE`` (TOML or JSON) < command-line flags and checks
the result. Every problem is a :class:`ConfigError` whose one-line message names the flag.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..models import PRESETS
from ..models.mlp import ACTIVATIONS as MLP_ACTIVATIONS
from .config_files import _read_capped, check_resume_file, stored_config
from .converters import (
    ConfigError,
    _choice,
    _flag,
    _hidden,
    _metrics,
    _number,
    _optional,
    _path,
    _text,
)

DATASETS = ("digits", "spiral", "vertical", "sine", "mnist", "fashion-mnist", "cifar10")
ACTIVATIONS = tuple(MLP_ACTIVATIONS)  # relu, leaky_relu, tanh, sigmoid, gelu, relu6, prelu, ...
OPTIMIZERS = ("sgd", "adam", "adamw", "rmsprop", "adagrad")
SCHEDULES = (
    "none",
    "step",
    "exponential",
    "cosine",
    "warmup",
    "inverse-time",
    "plateau",
    "onecycle",
    "cosine-restarts",
)
# The options of one schedule each: refused with any other --schedule (nnx.cli.factories).
SCHEDULE_OPTIONS = {
    "plateau_patience": ("plateau",),
    "plateau_factor": ("plateau",),
    "min_lr": ("plateau", "cosine-restarts"),
    "restart_epochs": ("cosine-restarts",),
    "restart_mult": ("cosine-restarts",),
}
DTYPES = ("float32", "float64")
PRECISIONS = ("float32", "float16", "bfloat16", "mixed16")  # nnx.training.precision.PRECISIONS
# --loss: the losses that fit the command's tasks (single-label classification on logits,
# regression); nnx.cli.factories.make_loss builds them and refuses one that does not fit the task.
CLASSIFICATION_LOSSES = ("cross_entropy", "multimargin", "multimargin_squared")
REGRESSION_LOSSES = ("mse", "l1", "huber", "smooth_l1")
LOSSES = CLASSIFICATION_LOSSES + REGRESSION_LOSSES
DEFAULT_LR = {"sgd": 0.05, "adam": 1e-3, "adamw": 1e-3, "rmsprop": 1e-3, "adagrad": 1e-2}


def _dataset(value: Any, flag: str) -> str:
    """A built-in data set's name, or the absolute path of the user's .npz/.csv/.npy file (absolute,
    so that config.json still finds it from another folder on --resume)."""
    from nnx.datasets.files import is_data_file

    if isinstance(value, str) and is_data_file(value.strip()):
        return str(Path(value.strip()).expanduser().resolve())
    return _choice(DATASETS)(value, flag)


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
        "optional x_test, y_test), .csv or .npy (both with --label-column)",
    ),
    "label_column": (
        None,
        _optional(_text),
        "the label column of a .csv --dataset (a name from its header or a 0-based index) or of "
        "a .npy (a 0-based index, -1 for the last column)",
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
        _optional(_path),
        "text file for the language-model presets (transformer, lstm; default: Python "
        "standard library sources; kept on resume)",
    ),
    "seq_len": (
        64,
        _number(int, 0, strict_low=True),
        "characters per window (transformer, lstm; kept on resume)",
    ),
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
    "loss": (
        None,
        _optional(_choice(LOSSES)),
        "training loss; classifiers: cross_entropy (the default), multimargin (the multi-class "
        "hinge loss of a linear SVM), multimargin_squared (its square); regression: mse (the "
        "default), l1, huber, smooth_l1 (kept on resume)",
    ),
    "metrics": (
        None,
        _optional(_metrics),
        "metrics, comma-separated: accuracy, topK_accuracy, precision, recall, f1 (+ _micro, "
        "_weighted, _macro), auroc; regression: mae, mse (default: accuracy, or mae)",
    ),
    "log_loss": (False, _flag, "curves.png: the loss on a logarithmic axis"),
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
        "(to 0 at the last epoch), warmup (linear over 5 epochs), inverse-time (1/(1+0.1 t)), "
        "plateau (x--plateau-factor after --plateau-patience epochs without a better validation "
        "loss), onecycle (1cycle per batch, --lr the peak, momentum/beta1 cycled), "
        "cosine-restarts (cosine to --min-lr over --restart-epochs, restarting), none",
    ),
    "plateau_patience": (
        5,
        _number(int, 0),
        "--schedule plateau: epochs without a better loss (validation, else training) before "
        "the rate is cut",
    ),
    "plateau_factor": (
        0.1,
        _number(float, 0.0, 1.0, strict_low=True),
        "--schedule plateau: the factor each cut multiplies the rate by",
    ),
    "min_lr": (
        0.0,
        _number(float, 0.0),
        "--schedule plateau: the rate is never cut below it; cosine-restarts: the rate at the "
        "end of each cycle",
    ),
    "restart_epochs": (
        10,
        _number(int, 0, strict_low=True),
        "--schedule cosine-restarts: epochs of the first cycle",
    ),
    "restart_mult": (
        1,
        _number(int, 0, strict_low=True),
        "--schedule cosine-restarts: each cycle is this many times longer than the one before",
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
        "augment the training images: pad each by PADDING pixels of zeros (raw data, before "
        "the model's standardization) and crop it back to its size at a random place, drawn per sample and "
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
    "checkpoint_every": (
        None,
        _optional(_number(int, 0, strict_low=True)),
        "also write last.npz after every STEPS optimizer steps inside an epoch (a mid-epoch "
        "checkpoint: --resume continues with the next batch, exactly)",
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
    "find_lr": (
        False,
        _flag,
        "run the learning-rate range test on the training split instead of training: write "
        "lr_find.png and lr_find.json to the output folder, print the suggested --lr, and exit",
    ),
    "threads": (
        None,
        _optional(_number(int, 0, 1024, strict_low=True)),
        "threads for NumPy's BLAS and PyTorch (default: their own, every core); fewer on a "
        "machine busy with other jobs (not kept on resume)",
    ),
    "out": (None, _optional(_text), "output folder (default: runs/<timestamp>)"),
    "overwrite": (False, _flag, "allow writing into a non-empty --out folder"),
    "quiet": (
        False,
        _flag,
        "print only one line per epoch: no progress bar, model table or summary (errors still "
        "print)",
    ),
    "tensorboard": (
        False,
        _flag,
        "write TensorBoard event files (each epoch's losses, metrics and learning rate) into "
        "the run folder's tensorboard/ (needs the tensorboard extra: tensorboardX)",
    ),
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
    "checkpoint_every": "STEPS",
    "out": "DIR",
    "data_dir": "DIR",
    "accumulate": "K",
    "random_crop": "PADDING",
    "threads": "N",
}


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
    layers: list[tuple[str | None, dict[str, Any]]] = []
    if resume is not None:
        check_resume_file(resume)
        stored = dict(stored_config(resume)["settings"])
        stored.pop("out", None)
        stored.pop("overwrite", None)
        stored.pop("distributed", None)  # the new launch decides, with any number of ranks
        stored.pop("threads", None)  # a setting of the machine it runs on, not of the run
        where = str(resume.parent / "config.json")
        layers.append((where, _normalise_keys(stored, where)))
    if "config" in given:
        path = given.pop("config")
        layers.append((f"config file {path}", read_config_file(path)))
    layers.append((None, given))
    settings = {name: default for name, (default, _, _) in SETTINGS.items()}
    origin: dict[str, str | None] = {}
    for where, layer in layers:
        settings.update(layer)
        origin.update(dict.fromkeys(layer, where))
    for name, (_, convert, _) in SETTINGS.items():
        try:
            settings[name] = convert(settings[name], "--" + name.replace("_", "-"))
        except ConfigError as err:
            if origin.get(name) is None:
                raise
            raise ConfigError(f"{origin[name]}: {err}") from None
    if settings["data_dir"] is not None and settings["dataset"] not in (
        "mnist",
        "fashion-mnist",
        "cifar10",
    ):
        raise ConfigError("--data-dir applies to --dataset mnist, fashion-mnist or cifar10")
    if settings["label_column"] is not None and not settings["dataset"].lower().endswith(
        (".csv", ".npy")
    ):
        raise ConfigError("--label-column applies to a .csv or .npy --dataset")
    if settings["momentum"] is not None and settings["optimizer"] not in ("sgd", "rmsprop"):
        raise ConfigError(f"--momentum applies to sgd and rmsprop, not {settings['optimizer']}")
    if settings["lr"] is None:
        settings["lr"] = DEFAULT_LR[settings["optimizer"]]
    if settings["schedule"] in SCHEDULE_OPTIONS["min_lr"] and settings["min_lr"] >= settings["lr"]:
        raise ConfigError(  # cosine-restarts annealed up to it, plateau never cut
            f"--min-lr {settings['min_lr']:g} must be below the learning rate "
            f"{settings['lr']:g} (--lr) for --schedule {settings['schedule']}"
        )
    if settings["early_stopping"] is not None and settings["val_fraction"] == 0:
        raise ConfigError("--early-stopping needs a validation split (--val-fraction > 0)")
    if settings["tensorboard"]:
        import importlib.util

        if importlib.util.find_spec("tensorboardX") is None:
            raise ConfigError(
                "--tensorboard needs the tensorboardX package: "
                "pip install 'nnx-trainer[tensorboard]' (or pip install tensorboardX)"
            )
    if settings["precision"] != "float32" and settings["dtype"] != "float32":
        raise ConfigError(
            f"--precision {settings['precision']} keeps float32 master weights; it needs "
            f"--dtype float32, not {settings['dtype']}"
        )
    if not settings["distributed"]:
        from ..distributed import launched_by_mpi

        settings["distributed"] = launched_by_mpi()
    if settings["model"] in LM_PRESETS:
        check_language_model(settings)
    check_schedule_options(settings)
    if settings["find_lr"] and resume is not None:
        raise ConfigError("--find-lr tests a fresh model; it does not apply with --resume")
    if settings["jit"] and settings["device"].split(":")[0] != "jax":
        raise ConfigError(
            f"--jit: jit=True compiles the step with jax.jit and needs a JAX backend "
            f"(--device jax or jax:gpu), not --device {settings['device']}"
        )
    return settings, resume


def check_schedule_options(settings: dict[str, Any]) -> None:
    """Refuse a schedule option given with a --schedule it does not belong to, and the
    combinations a schedule cannot honour."""
    kind = settings["schedule"]
    for name, kinds in SCHEDULE_OPTIONS.items():
        if kind not in kinds and settings[name] != SETTINGS[name][0]:
            raise ConfigError(
                f"--{name.replace('_', '-')} applies to --schedule {' or '.join(kinds)}, not {kind}"
            )
    if kind == "onecycle" and settings["momentum"] is not None:
        raise ConfigError(
            "--momentum does not apply with --schedule onecycle, which cycles the momentum "
            "between 0.95 and 0.85"
        )
    if kind == "onecycle" and settings["jit"]:
        raise ConfigError(
            "--schedule onecycle changes the momentum every step, which --jit fixes when it "
            "traces the step; use another schedule with --jit"
        )
    if settings["find_lr"] and settings["distributed"]:
        raise ConfigError("--find-lr runs in one process; launch it without MPI")
    for name in FIND_LR_IGNORES if settings["find_lr"] else ():
        if settings[name] != SETTINGS[name][0]:  # it was silently ignored
            raise ConfigError(
                f"--{name.replace('_', '-')} does not apply with --find-lr, which runs plain "
                "steps at a growing rate and does not train; give it when training"
            )


# Training settings that the range test (plain steps, no epochs) does not use.
FIND_LR_IGNORES = (
    "schedule", "metrics", "tensorboard", "early_stopping", "clip_norm", "accumulate",
    "precision", "log_loss",
)  # fmt: skip


# The character-level language models (--model transformer/lstm) train on --text through the
# same Trainer; these settings have no meaning for them and are refused rather than ignored:
# the data-set flags, --val-fraction (the last 10% of the text is held out), the image
# augmentations, --sync-batchnorm (no BatchNorm), and 16-bit precision, jit and distributed
# runs, which are not tested with token-id inputs.
LM_PRESETS = ("transformer", "lstm")
LM_REFUSED = (
    "dataset",
    "loss",
    "label_column",
    "data_dir",
    "val_fraction",
    "precision",
    "jit",
    "distributed",
    "sync_batchnorm",
    "find_lr",
)


def check_language_model(settings: dict[str, Any]) -> None:
    """Refuse, with one line naming the flag, a setting the language models do not use."""
    model = settings["model"]
    if settings["random_crop"] is not None or settings["hflip"]:
        raise ConfigError(
            f"--random-crop and --hflip augment images; --model {model} trains on text"
        )
    for name in LM_REFUSED:
        if settings[name] != SETTINGS[name][0]:
            raise ConfigError(
                f"--{name.replace('_', '-')} does not apply to --model {model}, a character-level "
                f"language model on --text (its flags are listed in docs/cli.md)"
            )


# Settings of the classifier path that the language-model presets (--model transformer/lstm)
