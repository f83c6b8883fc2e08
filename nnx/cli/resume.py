"""Resuming a run: which settings a resume keeps, which it may change (and how those changes
reach the optimizer), and the checks that keep a resume from overwriting newer results."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .settings import SETTINGS, ConfigError

# A resumed run keeps these: they decide the data (split, scaling, dtype) or the model and
# optimizer that the checkpoint holds. Changing one silently would train on other data.
FIXED_ON_RESUME = (
    "dataset",
    "label_column",
    "model",
    "seed",
    "val_fraction",
    "dtype",
    "hidden",
    "activation",
    "loss",
    "optimizer",
    "schedule",
    "plateau_patience",
    "plateau_factor",
    "min_lr",
    "restart_epochs",
    "restart_mult",
    "sync_batchnorm",
    "random_crop",
    "hflip",
    "text",
    "seq_len",
)
# These take effect from the resumed epoch on (the optimizer's saved values are replaced).
OPTIMIZER_ON_RESUME = ("lr", "momentum", "weight_decay")


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
        if name in ("out", "overwrite", "quiet", "distributed", "threads") or name not in stored:
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
        if name == "epochs" and settings["schedule"] == "onecycle":
            raise ConfigError(
                f"--epochs cannot change when resuming a --schedule onecycle run: its cycle was "
                f"planned over {before} epochs; resume with --epochs {before}"
            )
        changes[name] = {"from": before, "to": after}
    return changes


def input_files(settings: dict[str, Any]) -> dict[str, str]:
    """The user's files a run reads its data from, by flag: ``--dataset`` (.npz/.csv), ``--text``."""
    from ..datasets.files import is_data_file

    files = {}
    if is_data_file(settings["dataset"]):
        files["dataset"] = settings["dataset"]
    if settings.get("text") is not None:
        files["text"] = settings["text"]
    return files


def fingerprint(path: str) -> dict[str, Any]:
    """``{"path", "size", "sha256"}`` of a data file, recorded in config.json."""
    import hashlib

    digest = hashlib.sha256()
    size = 0
    try:
        with open(path, "rb") as f:
            while chunk := f.read(1 << 20):
                digest.update(chunk)
                size += len(chunk)
    except OSError as err:
        raise ConfigError(f"cannot read {path}: {err.strerror or err}") from None
    return {"path": str(path), "size": size, "sha256": digest.hexdigest()}


def input_fingerprints(settings: dict[str, Any]) -> dict[str, Any]:
    """config.json's ``inputs``: the fingerprint of every input file, by setting."""
    return {name: fingerprint(path) for name, path in input_files(settings).items()}


def check_resume(
    settings: dict[str, Any], resume: Path, stored: dict[str, Any], allow_changed_data: bool
) -> None:
    """Refuse a resume that would not continue the run config.json describes: an input file
    that differs from the one the run read (unless ``--allow-changed-data``), a checkpoint whose
    seed is not the run's, a mid-epoch checkpoint (``--checkpoint-every``) resumed with another
    ``--batch-size``, or ``--epochs`` the checkpoint has already reached. (The Trainer refuses
    what else would keep a mid-epoch checkpoint from continuing exactly.)"""
    from ..io.checkpoint import CheckpointError, read_record

    recorded = stored.get("inputs") if isinstance(stored.get("inputs"), dict) else {}
    if not allow_changed_data:
        for name, path in input_files(settings).items():
            before = recorded.get(name)
            if not isinstance(before, dict):
                continue  # a run folder written before fingerprints were recorded
            now = fingerprint(path)
            if (now["size"], now["sha256"]) != (before.get("size"), before.get("sha256")):
                raise ConfigError(
                    f"--{name} {path} has changed since the run read it (size {before.get('size')} "
                    f"-> {now['size']}, another SHA-256); resuming would train on other data: "
                    f"resume with the same {'text' if name == 'text' else 'data file'}, start "
                    f"a new run, or pass --allow-changed-data to resume anyway"
                )
    try:
        record = read_record(resume)
    except CheckpointError:
        return  # loading will say what is wrong with it
    seed, epoch = record.get("seed"), record.get("epoch")
    if isinstance(seed, int) and seed != settings["seed"]:
        raise ConfigError(
            f"--resume {resume}: the checkpoint was trained with seed {seed}, but the run's "
            f"config.json says {settings['seed']}; was the checkpoint copied from another run?"
        )
    position = record.get("position")
    loader = position.get("loader") if isinstance(position, dict) else None
    if isinstance(loader, dict) and loader.get("batch_size") != settings["batch_size"]:
        raise ConfigError(
            f"--batch-size {settings['batch_size']}: the checkpoint {resume} stopped in the "
            f"middle of epoch {position.get('epoch', 0) + 1} (after batch {position.get('batch')}) "
            f"with batch size "
            f"{loader.get('batch_size')}; resume it with --batch-size {loader.get('batch_size')}, "
            f"or from a checkpoint taken at an epoch's end"
        )
    if isinstance(epoch, int) and settings["epochs"] <= epoch:
        raise ConfigError(
            f"--epochs {settings['epochs']}: the checkpoint {resume} has already completed epoch "
            f"{epoch}; give --epochs above {epoch} to train further"
        )


def apply_resume_changes(changes: dict[str, Any], optimizer: Any, schedule: Any) -> None:
    """Make the optimizer settings given with --resume win over the checkpoint's."""
    if "lr" in changes:
        lr = changes["lr"]["to"]
        if schedule is not None:  # the schedule scales its base rate from the resumed step on
            schedule.rebase(lr)
        else:
            optimizer.lr = lr
    for name in ("momentum", "weight_decay"):
        if name in changes:
            setattr(optimizer, name, changes[name]["to"])


def checkpoint_epoch(path: Path) -> int | None:
    """The epoch a checkpoint holds (0: untrained), None when it cannot be read."""
    from ..io.checkpoint import CheckpointError, read_record

    try:
        epoch = read_record(path).get("epoch")
    except CheckpointError:
        return None
    return epoch if isinstance(epoch, int) else None


def checkpoint_batch(path: Path) -> int | None:
    """The batches a mid-epoch checkpoint (``--checkpoint-every``) completed of its epoch, None
    for one taken at an epoch's end or one that cannot be read."""
    from ..io.checkpoint import CheckpointError, read_record

    try:
        position = read_record(path).get("position")
    except CheckpointError:
        return None
    return position.get("batch") if isinstance(position, dict) else None


def refuse_older_checkpoint(out: Path, resume: Path, overwrite: bool) -> None:
    """Resuming from an older checkpoint must not overwrite a newer last.npz / history.csv."""
    if overwrite:
        return
    resumed = checkpoint_epoch(resume)
    if resumed is None:
        return  # loading will say what is wrong with it
    newest, where = 0, None
    last = out / "last.npz"
    if last.is_file() and not (resume.exists() and last.samefile(resume)):
        epoch = checkpoint_epoch(last)
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


MODEL_SETTINGS = ("model", "hidden", "activation", "dropout")


def standardized(model: Any, shape: tuple[int, ...]) -> Any:
    """``model`` behind an :class:`nnx.Standardize` of the samples' ``shape`` (its statistics are
    fitted on the training split, or loaded from the checkpoint on a resume), so every
    checkpoint and model file of a run standardizes raw inputs itself."""
    import nnx

    return nnx.Sequential(nnx.Standardize(shape), model)


def _layout(model: Any) -> tuple[list[str], dict[str, tuple[int, ...]]]:
    """The module types in order and the state's names and shapes: what an architecture is."""
    types = [type(m).__name__ for m in model.modules()]
    return types, {k: tuple(v.shape) for k, v in model.state_dict().items()}


def resumed_model(
    settings: dict[str, Any],
    shape: tuple[int, ...],
    n_out: int,
    resume: Path,
    model_flags: list[str],
    model_given: bool,
) -> Any:
    """The model a resume continues (fresh weights; the checkpoint's are loaded with the rest).

    Without model flags it is rebuilt from the architecture the checkpoint embeds, which must
    agree with the run's settings (config.json). Code named by ``--model package.module:function``
    is imported only when the user gives ``--model`` now (``model_given``), never because the
    resumed run's config.json names it. A checkpoint whose model does not standardize its inputs
    (written before the command put :class:`nnx.Standardize` in front of every model) is refused.
    """
    from .factories import make_model

    from_checkpoint = None if model_flags else model_from_checkpoint(resume)
    custom = ":" in str(settings["model"])
    if custom and from_checkpoint is None and not model_given:
        raise ConfigError(
            f"--resume {resume}: the checkpoint holds no architecture nnx can rebuild, and its "
            f"run used --model {settings['model']}; nnx never imports code named by a run "
            f"folder: give --model {settings['model']} again to import it"
        )
    built = None
    if not (custom and from_checkpoint is not None):  # a user's code is imported only if given
        built = standardized(make_model(settings, shape, n_out), shape)
    model = from_checkpoint if from_checkpoint is not None else built
    stored = _checkpoint_shapes(resume)
    if "0.mean" not in stored or "0.std" not in stored:
        raise ConfigError(
            f"--resume {resume}: the checkpoint's model does not standardize its inputs (it was "
            f"written by an older nnx, which standardized the data outside the model); start a "
            f"new run (another --out)"
        )
    if from_checkpoint is not None and built is not None and _layout(built) != _layout(model):
        raise ConfigError(
            f"--resume {resume}: the checkpoint's model is not the one the run's settings build "
            f"(--model {settings['model']}, --hidden "
            f"{','.join(map(str, settings['hidden']))}, --activation {settings['activation']}); "
            f"was the checkpoint copied from another run?"
        )
    return model


def _checkpoint_shapes(path: Path) -> dict[str, tuple[int, ...]]:
    """The names and shapes of the model state a checkpoint stores."""
    from nnx.io.checkpoint import read_checkpoint

    _, arrays = read_checkpoint(path)
    return {k[len("model/") :]: tuple(a.shape) for k, a in arrays.items() if k.startswith("model/")}


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
