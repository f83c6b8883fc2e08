"""Text from a character-level language model (the ``transformer`` and ``lstm`` presets, or any
model mapping ids ``(N, T)`` to logits ``(N, V, T)``).

:func:`generate` draws characters one at a time from the model's next-character distribution,
seeded, so the same model, prompt and seed give the same text. The vocabulary is the one the
model keeps (``model.vocab``, saved with it by :func:`nnx.save_model` and in Trainer
checkpoints), so a loaded model generates without the text it was trained on:

>>> import nnx
>>> from nnx.models import build_model
>>> model = build_model("lstm", (8,), 3, hidden_size=8, vocab="abc")
>>> text = generate(model, None, "abc", 5, seed=0)
>>> len(text), set(text) <= set("abc")
(5, True)
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..backend import backend_of, namespace, to_numpy


def check_vocab(vocab: str | None, size: int, who: str) -> str | None:
    """``vocab`` when it is None or a string of ``size`` distinct characters, else ValueError."""
    if vocab is None:
        return None
    if not isinstance(vocab, str) or len(vocab) != size or len(set(vocab)) != size:
        raise ValueError(
            f"{who}: vocab must be a string of {size} distinct characters (one per id), got "
            f"{vocab!r:.60}"
        )
    return vocab


def as_ids(ids: Any) -> Any:
    """Token ids as integers: ids handed over as whole floats are cast to int64."""
    xp = namespace(ids)
    if xp.isdtype(ids.dtype, "integral"):
        return ids
    return xp.astype(ids, xp.int64)


def generate(
    model: Any,
    vocab: str | None,
    prompt: str,
    n: int,
    seed: int = 0,
    temperature: float = 0.8,
    window: int | None = None,
) -> str:
    """``n`` characters drawn after ``prompt`` from ``model``'s next-character distribution.

    Args:
        model: ids ``(1, T)`` -> logits ``(1, V, T)``, on any backend (inputs follow its
            parameters).
        vocab: the characters of ids ``0 .. V-1`` as one string; None takes ``model.vocab``.
        prompt: the text to continue (at least one character, all in ``vocab``).
        n: how many characters to draw.
        seed: seeds the draws (a NumPy generator on the host).
        temperature: divides the logits before the softmax (lower: more conservative).
        window: how many of the last ids the model sees per step; None takes ``model.window``
            (the training window; the transformer cannot see more), else the whole context.

    The model runs in evaluation mode and is put back in the mode it was in.
    """
    vocab = getattr(model, "vocab", None) if vocab is None else vocab
    if not isinstance(vocab, str) or not vocab:
        raise ValueError(
            "generate: no vocabulary: pass vocab (the characters of ids 0..V-1 as one string) "
            "or use a model that keeps one (model.vocab)"
        )
    if not isinstance(prompt, str) or not prompt:
        raise ValueError("generate: prompt must be a non-empty string")
    if isinstance(n, bool) or not isinstance(n, int) or n < 0:
        raise ValueError(f"generate: n must be an integer >= 0, got {n!r}")
    if not temperature > 0:
        raise ValueError(f"generate: temperature must be > 0, got {temperature!r}")
    index = {c: i for i, c in enumerate(vocab)}
    missing = sorted(set(prompt) - set(index))
    if missing:
        raise ValueError(f"generate: prompt character {missing[0]!r} is not in the vocabulary")
    window = getattr(model, "window", None) if window is None else window
    first = next(iter(model.parameters()), None)
    backend = backend_of(first.value) if first is not None else None
    rng = np.random.default_rng(seed)
    ids = [index[c] for c in prompt]
    out = []
    was_training = model.training
    model.eval()
    try:
        for _ in range(n):
            context = ids if window is None else ids[-window:]
            batch = np.array(context, dtype=np.int64)[None, :]
            x = batch if backend is None else backend.asarray(batch)
            logits = to_numpy(model(x))[0, :, -1].astype(np.float64) / temperature
            if not np.isfinite(logits).all():
                raise FloatingPointError(
                    "generate: the model's logits are NaN or infinite (its weights diverged in "
                    "training; try a lower learning rate or gradient clipping)"
                )
            p = np.exp(logits - logits.max())
            p /= p.sum()
            nxt = int(rng.choice(len(vocab), p=p))
            ids.append(nxt)
            out.append(vocab[nxt])
    finally:
        model.train(was_training)
    return "".join(out)
