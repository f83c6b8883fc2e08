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
