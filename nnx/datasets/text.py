"""Character-level text for language models: a vocabulary, encode/decode, a held-out split and
windows of token ids with next-character targets.

A window of length ``T`` starting at ``s`` is the input ids ``text[s : s + T]`` and the targets
``text[s + 1 : s + T + 1]`` (the next character at every position). Training windows are drawn
at random starts, ``count`` per epoch, from a generator seeded by ``(seed, epoch)``: epoch ``e``
gets the same windows in every run, so a run resumed at epoch ``e`` continues exactly.
Held-out windows are non-overlapping and fixed.

The default text is a fixed list of Python standard library sources (every machine with Python
has them), read in that order and cut to :data:`MAX_CHARS`.

>>> text = CharacterText("abcabcabcabcabcabcabcabcabcabc", held_out=0.2)
>>> text.vocab, text.encode("cab").tolist(), text.decode([2, 0, 1])
('abc', [2, 0, 1], 'cab')
>>> x, y = text.train_windows(epoch=0, count=2, length=4, seed=0)
>>> x.shape, y.shape, bool((x[:, 1:] == y[:, :-1]).all())
((2, 4), (2, 4), True)
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from .errors import DatasetError

# Fixed, sorted list: the same text on every machine with the same Python version.
STDLIB_FILES = (
    "argparse.py",
    "calendar.py",
    "dataclasses.py",
    "fractions.py",
    "functools.py",
    "heapq.py",
    "pprint.py",
    "shlex.py",
    "statistics.py",
    "string.py",
    "textwrap.py",
    "tokenize.py",
)
MAX_CHARS = 600_000
MAX_TEXT_BYTES = 64 << 20  # a text file larger than this is refused, not read into memory
HELD_OUT = 0.1


def default_text() -> tuple[str, str]:
    """The concatenated standard library sources and a description of where they came from."""
    root = Path(os.path.dirname(os.__file__))
    parts = [
        (root / name).read_text(encoding="utf-8")
        for name in STDLIB_FILES
        if (root / name).is_file()
    ]
    text = "\n".join(parts)[:MAX_CHARS]
    return (
        text,
        f"{len(parts)} Python {root.name} standard library files ({', '.join(STDLIB_FILES)})",
    )


def read_text(path: str | os.PathLike | None) -> tuple[str, str]:
    """``(text, source)``: the UTF-8 file at ``path``, or :func:`default_text` for None.

    Raises :class:`DatasetError` with one line for a missing, oversized or non-UTF-8 file.
    """
    if path is None:
        return default_text()
    p = Path(path)
    try:
        if not p.is_file():
            raise DatasetError(
                f"text file {p} does not exist" if not p.exists() else f"text {p} is not a file"
            )
        if p.stat().st_size > MAX_TEXT_BYTES:
            raise DatasetError(f"text file {p} is larger than {MAX_TEXT_BYTES >> 20} MiB")
        data = p.read_bytes()
    except OSError as err:
        raise DatasetError(f"cannot read text file {p}: {err.strerror or err}") from None
    try:
        return data.decode("utf-8"), str(p)
    except UnicodeDecodeError as err:
        raise DatasetError(f"text file {p} is not UTF-8 (byte {err.start})") from None


class CharacterText:
    """``text`` as int64 ids over its sorted characters, the last ``held_out`` part kept apart.

    Attributes: ``vocab`` (the characters, sorted, as one string; id ``i`` is ``vocab[i]``),
    ``ids`` (the whole text), ``train`` and ``held`` (the ids before and after the split).
    """

    def __init__(self, text: str, held_out: float = HELD_OUT, source: str = "text"):
        if not isinstance(text, str) or not text:
            raise DatasetError(f"{source}: the text is empty")
        if not 0.0 < held_out < 1.0:
            raise ValueError(f"CharacterText: held_out must lie in (0, 1), got {held_out!r}")
        self.source = source
        self.vocab = "".join(sorted(set(text)))
        self._index = {c: i for i, c in enumerate(self.vocab)}
        self.ids = self.encode(text)
        split = int(len(self.ids) * (1.0 - held_out))
        self.train, self.held = self.ids[:split], self.ids[split:]

    def __len__(self) -> int:
        return len(self.ids)

    def encode(self, text: str) -> np.ndarray:
        """int64 ids of ``text``; a character outside the vocabulary is a ValueError."""
        try:
            return np.array([self._index[c] for c in text], dtype=np.int64)
        except KeyError as err:
            raise ValueError(f"character {err.args[0]!r} is not in the vocabulary") from None

    def decode(self, ids: Iterable[int]) -> str:
        """The characters of ``ids``."""
        return "".join(self.vocab[int(i)] for i in ids)

    def check_length(self, length: int) -> None:
        """Both parts must hold a window of ``length`` plus its target (DatasetError if not)."""
        if len(self.train) < length + 2 or len(self.held) < length + 2:
            raise DatasetError(
                f"{self.source}: {len(self.ids)} characters are too few for windows of "
                f"seq_len {length} (each part, training and held out, needs {length + 2})"
            )

    def train_windows(
        self, epoch: int, count: int, length: int, seed: int
    ) -> tuple[np.ndarray, np.ndarray]:
        """``count`` random training windows for ``epoch``: ids and targets ``(count, length)``,
        the starts drawn from ``(seed, epoch)``."""
        self.check_length(length)
        rng = np.random.default_rng([int(seed), int(epoch)])
        return _windows(self.train, rng.integers(0, len(self.train) - length - 1, count), length)

    def held_windows(self, length: int) -> tuple[np.ndarray, np.ndarray]:
        """Every non-overlapping held-out window: ids and targets ``(n, length)``."""
        self.check_length(length)
        return _windows(self.held, np.arange(0, len(self.held) - length - 1, length), length)

    def bigram_bits(self, alpha: float = 0.1) -> float:
        """Bits per character of the held-out part under add-``alpha`` bigram counts of the
        training part: the baseline a language model should beat."""
        return bigram_bits(self.train, self.held, len(self.vocab), alpha)


def bigram_bits(train: np.ndarray, held: np.ndarray, vocab_size: int, alpha: float = 0.1) -> float:
    """Bits per character of ``held`` under add-``alpha`` smoothed bigram counts of ``train``."""
    counts = np.full((vocab_size, vocab_size), alpha)
    np.add.at(counts, (train[:-1], train[1:]), 1.0)
    logp = np.log2(counts / counts.sum(axis=1, keepdims=True))
    return float(-np.mean(logp[held[:-1], held[1:]]))


def _windows(ids: np.ndarray, starts: np.ndarray, length: int) -> tuple[np.ndarray, np.ndarray]:
    idx = starts[:, None] + np.arange(length)[None, :]
    return ids[idx], ids[idx + 1]
