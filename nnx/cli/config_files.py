"""Reading the files a training command is pointed at, before any is trusted: capped UTF-8 text
(config files, ``config.json``), a ``--resume`` checkpoint checked to be nnx's, and the
``config.json`` written beside it. Every problem is a :class:`ConfigError` naming the file.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from .converters import ConfigError

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


def check_resume_file(resume: Path) -> None:
    """Refuse, naming what is wrong, a --resume that is not an nnx checkpoint file: missing, a
    folder, a special file, another program's file (a PyTorch ``.pt``)."""
    from ..io.checkpoint import CheckpointError, read_record

    if not resume.is_file():
        if resume.is_dir():
            raise ConfigError(
                f"--resume {resume} is a folder; give its checkpoint, e.g. --resume "
                f"{resume / 'last.npz'}"
            )
        if resume.exists():
            raise ConfigError(f"--resume {resume} is not a regular file")
        raise ConfigError(f"--resume: checkpoint {resume} does not exist")
    try:
        read_record(resume)
    except CheckpointError as err:
        raise ConfigError(f"--resume {resume} is not an nnx checkpoint ({err})") from None


def stored_config(resume: Path) -> dict[str, Any]:
    """The ``config.json`` this command wrote beside checkpoint ``resume`` (ConfigError if none)."""
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
