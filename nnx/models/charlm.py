"""Character-level language modelling for the ``transformer`` and ``lstm`` presets: the text,
its split, the bigram baseline, training, bits per character and a seeded sample.

The default text is a fixed list of Python standard library sources (every machine with Python
has them), read in that order and cut to ``MAX_CHARS``; the last 10% is held out.
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

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
HELD_OUT = 0.1
LM_PRESETS = ("transformer", "lstm")


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


def encode(text: str) -> tuple[np.ndarray, list[str]]:
    """Integer ids (int64) and the sorted vocabulary of the characters of ``text``."""
    vocab = sorted(set(text))
    index = {c: i for i, c in enumerate(vocab)}
    return np.array([index[c] for c in text], dtype=np.int64), vocab


def bigram_bits(train: np.ndarray, held: np.ndarray, vocab_size: int, alpha: float = 0.1) -> float:
    """Bits per character of ``held`` under add-``alpha`` smoothed bigram counts of ``train``."""
    counts = np.full((vocab_size, vocab_size), alpha)
    np.add.at(counts, (train[:-1], train[1:]), 1.0)
    logp = np.log2(counts / counts.sum(axis=1, keepdims=True))
    return float(-np.mean(logp[held[:-1], held[1:]]))


def _batch(data: np.ndarray, starts: np.ndarray, length: int) -> tuple[np.ndarray, np.ndarray]:
    idx = starts[:, None] + np.arange(length)[None, :]
    return data[idx], data[idx + 1]


def evaluate_bits(
    model: Any, loss_fn: Any, data: np.ndarray, length: int, backend: Any, batch: int = 64
) -> float:
    """Mean cross-entropy in bits per character over non-overlapping windows of ``data``."""
    from ..backend import to_numpy

    model.eval()
    starts = np.arange(0, len(data) - length - 1, length)
    total, count = 0.0, 0
    for i in range(0, len(starts), batch):
        x, y = _batch(data, starts[i : i + batch], length)
        logits = model(backend.asarray(x))
        total += float(to_numpy(loss_fn(logits, backend.asarray(y)))) * y.size
        count += y.size
    model.train()
    return total / count / math.log(2.0)


def sample(
    model: Any,
    vocab: list[str],
    prompt: np.ndarray,
    length: int,
    n: int,
    backend: Any,
    seed: int,
    temperature: float = 0.8,
) -> str:
    """``n`` characters drawn one at a time from the model's next-character distribution,
    conditioned on the last ``length`` characters (seeded)."""
    from ..backend import to_numpy

    rng = np.random.default_rng(seed)
    model.eval()
    ids = list(prompt[-length:])
    out = []
    for _ in range(n):
        window = np.array(ids[-length:], dtype=np.int64)[None, :]
        logits = to_numpy(model(backend.asarray(window)))[0, :, -1].astype(np.float64) / temperature
        p = np.exp(logits - logits.max())
        p /= p.sum()
        nxt = int(rng.choice(len(vocab), p=p))
        ids.append(nxt)
        out.append(vocab[nxt])
    model.train()
    return "".join(out)


def run_language_model(
    settings: dict[str, Any], say: Callable[[str], None], out: Path
) -> dict[str, Any]:
    """Train ``settings["model"]`` on the text, report held-out bits per character beside the
    bigram baseline and write ``sample.txt``, ``config.json`` and ``summary.json`` into ``out``."""
    import nnx
    from nnx import optim

    from ..cli.train import make_model, make_optimizer

    backend = nnx.get_backend(settings["device"])
    if settings["text"] is None:
        text, source = default_text()
    else:
        text = Path(settings["text"]).read_text(encoding="utf-8")
        source = str(settings["text"])
    length = settings["seq_len"]
    ids, vocab = encode(text)
    split = int(len(ids) * (1.0 - HELD_OUT))
    train, held = ids[:split], ids[split:]
    if len(train) < length + 2 or len(held) < length + 2:
        raise ValueError(f"--text: {len(ids)} characters are too few for --seq-len {length}")
    baseline = bigram_bits(train, held, len(vocab))
    model = make_model(settings, (length,), len(vocab), nnx).to(backend, dtype=settings["dtype"])
    optimizer = make_optimizer(settings, model.parameters(), optim)
    loss_fn = nnx.CrossEntropyLoss(check_labels=False)
    rng = np.random.default_rng(settings["seed"])
    config = {
        "settings": settings,
        "text": source,
        "characters": len(ids),
        "vocabulary": len(vocab),
        "train_chars": len(train),
        "held_out_chars": len(held),
        "model": repr(model),
    }
    (out / "config.json").write_text(json.dumps(config, indent=2, default=str) + "\n")
    say(
        f"nnx: {settings['model']} language model on {source}: {len(ids)} characters, "
        f"vocabulary {len(vocab)}, bigram baseline {baseline:.3f} bits/char on the held-out 10%"
    )
    started = time.perf_counter()
    history = []
    for epoch in range(1, settings["epochs"] + 1):
        losses = []
        for _ in range(settings["steps_per_epoch"]):
            x, y = _batch(
                train, rng.integers(0, len(train) - length - 1, settings["batch_size"]), length
            )
            optimizer.zero_grad()
            loss = loss_fn(model(backend.asarray(x)), backend.asarray(y))
            model.backward(loss_fn.backward())
            if settings["clip_norm"] is not None:
                optim.clip_grad_norm(model.parameters(), settings["clip_norm"])
            optimizer.step()
            losses.append(loss)
        train_bits = float(np.mean([float(nnx.to_numpy(v)) for v in losses])) / math.log(2.0)
        history.append(
            {
                "epoch": epoch,
                "train_bits_per_char": train_bits,
                "seconds": time.perf_counter() - started,
            }
        )
        if not settings["quiet"]:
            say(
                f"epoch {epoch}: train {train_bits:.3f} bits/char ({time.perf_counter() - started:.0f} s)"
            )
    held_bits = evaluate_bits(model, loss_fn, held, length, backend)
    text_sample = sample(model, vocab, held[:length], length, 400, backend, settings["seed"])
    (out / "sample.txt").write_text(text_sample, encoding="utf-8")
    nnx.save_checkpoint(out / "model.ckpt", model)
    summary = {
        "model": settings["model"],
        "held_out_bits_per_char": held_bits,
        "bigram_bits_per_char": baseline,
        "epochs": settings["epochs"],
        "steps": settings["epochs"] * settings["steps_per_epoch"],
        "seconds": time.perf_counter() - started,
        "history": history,
        "outputs": str(out),
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    say(
        f"nnx: held-out {held_bits:.3f} bits/char, bigram baseline {baseline:.3f} bits/char "
        f"({summary['seconds']:.0f} s); sample in {out / 'sample.txt'}"
    )
    return summary
