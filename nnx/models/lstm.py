"""The ``lstm`` preset: a character-level language model
``Embedding -> LSTM -> Linear`` over ids ``(N, T)``, logits ``(N, V, T)``.

``vocab`` (the characters, one string, id ``i`` is ``vocab[i]``) is kept as a constructor
argument, so a saved model or checkpoint carries it and :func:`nnx.models.generate` can turn
ids back into text after :func:`nnx.load_model`.

>>> import numpy as np
>>> from nnx.models import get_preset
>>> model = get_preset("lstm")((16,), 30, hidden_size=32)
>>> model(np.zeros((2, 16), dtype=np.int64)).shape
(2, 30, 16)
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..backend import namespace
from ..core.module import Module
from ..layers import LSTM, Embedding, Linear
from .generation import as_ids, check_vocab


class LSTMLanguageModel(Module):
    """Token ids ``(N, T)`` -> logits ``(N, V, T)``; ``backward`` returns None.

    The ids may come as whole numbers in a floating dtype (the Trainer hands inputs over in
    the model's dtype); they are cast back to int64.
    """

    def __init__(
        self,
        vocab_size: int,
        embedding_dim: int = 64,
        hidden_size: int = 128,
        num_layers: int = 1,
        seed: int | None = 0,
        vocab: str | None = None,
        window: int | None = None,
    ):
        self.vocab = check_vocab(vocab, vocab_size, "LSTMLanguageModel")
        self.window = window  # the training window length: the context generate() keeps
        rng = np.random.default_rng(seed)
        self.embed = Embedding(vocab_size, embedding_dim, rng=rng)
        self.lstm = LSTM(
            embedding_dim, hidden_size, num_layers=num_layers, batch_first=True, rng=rng
        )
        self.head = Linear(hidden_size, vocab_size, rng=rng)

    def forward(self, ids: Any) -> Any:
        xp = namespace(ids)
        out, _ = self.lstm(self.embed(as_ids(ids)))
        return xp.permute_dims(self.head(out), (0, 2, 1))

    def backward(self, grad_out: Any) -> None:
        xp = namespace(grad_out)
        g = self.head.backward(xp.permute_dims(grad_out, (0, 2, 1)))
        self.embed.backward(self.lstm.backward(g))
        return None


def build(
    input_shape: tuple[int, ...],
    num_classes: int,
    *,
    embedding_dim: int = 64,
    hidden_size: int = 128,
    num_layers: int = 1,
    seed: int | None = 0,
    vocab: str | None = None,
) -> Module:
    """An LSTM LM for windows of ``input_shape = (T,)`` ids over ``num_classes`` symbols
    (``vocab``: those symbols as one string, kept in the model)."""
    if len(tuple(input_shape)) != 1:
        raise ValueError(f"lstm: input_shape must be (sequence_length,), got {input_shape!r}")
    return LSTMLanguageModel(
        num_classes,
        embedding_dim,
        hidden_size,
        num_layers,
        seed,
        vocab=vocab,
        window=int(input_shape[0]),
    )
