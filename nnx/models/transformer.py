"""The ``transformer`` preset: a causal character-level language model.

``Embedding -> learned positions -> num_layers x TransformerEncoderLayer (pre-norm, causal) ->
LayerNorm -> Linear`` (ReLU feed-forward) to ``num_classes`` (the vocabulary), for ids of shape ``(N, T)``; the
logits come out as ``(N, V, T)`` (classes on axis 1, as ``CrossEntropyLoss`` takes them).

``vocab`` (the characters, one string) is kept as a constructor argument, so a saved model or
checkpoint carries it for :func:`nnx.models.generate`.

>>> import numpy as np
>>> from nnx.models import get_preset
>>> model = get_preset("transformer")((16,), 30, d_model=32, num_layers=1)
>>> model(np.zeros((2, 16), dtype=np.int64)).shape
(2, 30, 16)
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..backend import namespace
from ..core.module import Module
from ..layers import Embedding, LayerNorm, Linear, PositionalEmbedding, TransformerEncoderLayer
from .generation import as_ids, check_vocab


class CausalTransformerLM(Module):
    """Decoder-only transformer over token ids ``(N, T)`` -> logits ``(N, V, T)``; position t
    only attends to positions <= t. ``backward`` returns None (ids have no gradient).
    The sizes are keyword arguments without defaults: :func:`build` holds them. Ids in a
    floating dtype (the Trainer hands inputs over in the model's dtype) are cast to int64."""

    def __init__(
        self,
        vocab_size: int,
        max_len: int,
        *,
        d_model: int,
        nhead: int,
        num_layers: int,
        dim_feedforward: int,
        dropout: float,
        seed: int | None,
        vocab: str | None = None,
    ):
        self.vocab = check_vocab(vocab, vocab_size, "CausalTransformerLM")
        self.window = int(max_len)  # the longest context: generate() keeps this many ids
        rng = np.random.default_rng(seed)
        self.embed = Embedding(vocab_size, d_model, rng=rng)
        self.embed.weight.value = self.embed.weight.value * np.float32(0.1)
        self.pos = PositionalEmbedding(max_len, d_model, rng=rng)
        self._blocks = []
        for i in range(num_layers):
            block = TransformerEncoderLayer(
                d_model,
                nhead,
                dim_feedforward,
                dropout=dropout,
                activation="relu",
                batch_first=True,
                norm_first=True,
                rng=rng,
            )
            setattr(self, f"block{i}", block)
            self._blocks.append(block)
        self.norm = LayerNorm(d_model)
        self.head = Linear(d_model, vocab_size, rng=rng)

    def forward(self, ids: Any) -> Any:
        xp = namespace(ids)
        h = self.pos(self.embed(as_ids(ids)))
        for block in self._blocks:
            h = block(h, is_causal=True)
        return xp.permute_dims(self.head(self.norm(h)), (0, 2, 1))

    def backward(self, grad_out: Any) -> None:
        xp = namespace(grad_out)
        g = self.norm.backward(self.head.backward(xp.permute_dims(grad_out, (0, 2, 1))))
        for block in reversed(self._blocks):
            g = block.backward(g)
        self.embed.backward(self.pos.backward(g))
        return None


def build(
    input_shape: tuple[int, ...],
    num_classes: int,
    *,
    d_model: int = 64,
    nhead: int = 4,
    num_layers: int = 2,
    dim_feedforward: int = 256,
    dropout: float = 0.0,
    seed: int | None = 0,
    vocab: str | None = None,
) -> Module:
    """A causal transformer LM for windows of ``input_shape = (T,)`` ids over a vocabulary of
    ``num_classes`` symbols (``vocab``: those symbols as one string, kept in the model)."""
    if len(tuple(input_shape)) != 1:
        raise ValueError(
            f"transformer: input_shape must be (sequence_length,), got {input_shape!r}"
        )
    return CausalTransformerLM(
        num_classes,
        int(input_shape[0]),
        d_model=d_model,
        nhead=nhead,
        num_layers=num_layers,
        dim_feedforward=dim_feedforward,
        dropout=dropout,
        seed=seed,
        vocab=vocab,
    )
