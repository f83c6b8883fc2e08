"""The converters of the training command's settings: each takes a value (from the command line,
a config file or a stored ``config.json``) and the flag's name, and returns the checked value or
raises :class:`ConfigError` with a one-line message naming the flag.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import Any


class ConfigError(ValueError):
    """A setting is wrong; the message names it."""


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


def _metrics(value: Any, flag: str) -> list[str]:
    from ..metrics import metric_names

    try:
        return metric_names(value)
    except ValueError as err:
        raise ConfigError(f"{flag}: {err}") from None


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


def _text(value: Any, flag: str) -> str:
    if not isinstance(value, str) or not value:
        raise ConfigError(f"{flag} must be a non-empty string, got {value!r}")
    return value


def _path(value: Any, flag: str) -> str:
    """An absolute path, so that config.json still finds the file from another folder."""
    return str(Path(_text(value, flag)).expanduser().resolve())


def _optional(convert: Callable[[Any, str], Any]) -> Callable[[Any, str], Any]:
    return lambda value, flag: None if value is None else convert(value, flag)


def _flag(value: Any, flag: str) -> bool:
    if isinstance(value, bool):
        return value
    raise ConfigError(f"{flag} must be true or false, got {value!r}")


# name -> (default, converter, help)
