"""ONNX converters of the Transformer decoder (``TransformerDecoderLayer``,
``TransformerDecoder``) and the whole encoder-decoder ``Transformer``, composed from the
attention of :mod:`nnx.onnx.sequence`.

Masks come as further positional inputs of the layer's ``Graph`` call, in the order of the
layer's ``forward``: ``(tgt, memory, tgt_mask, memory_mask, tgt_key_padding_mask,
memory_key_padding_mask)`` for the decoder, ``(src, tgt, src_mask, tgt_mask, memory_mask,
src_key_padding_mask, tgt_key_padding_mask, memory_key_padding_mask)`` for the Transformer.
"""

from __future__ import annotations

from typing import Any

from ..layers.transformer_decoder import TransformerDecoderLayer
from ..layers.transformer_stack import Transformer, TransformerDecoder
from .export import Exporter, Tensor, refuse, register_converter
from .layers import linear
from .sequence import _sub, attention, attention_mask, layer_stack


def _given(items: list[Any]) -> list[Any]:
    """The leading items up to the first None (a Graph passes inputs positionally)."""
    out = []
    for item in items:
        if item is None:
            break
        out.append(item)
    return out


def decoder_layer(ctx: Exporter, m: TransformerDecoderLayer, x: str, mem: str, path: str,
                  like: Tensor, sa_mask: str | None, ca_mask: str | None) -> str:  # fmt: skip
    """Batch-first target ``(N, T, E)`` and memory ``(N, S, E)`` -> ``(N, T, E)``."""

    def sa(t: str) -> str:
        return attention(ctx, m.self_attn, t, t, t, f"{path}.self_attn", like, mask=sa_mask)

    def ca(t: str) -> str:
        attn = m.multihead_attn
        return attention(ctx, attn, t, mem, mem, f"{path}.multihead_attn", like, mask=ca_mask)

    def ff(t: str) -> str:
        a = _sub(ctx, m.activation, linear(ctx, m.linear1, t, f"{path}.linear1"),
                 f"{path}.activation")  # fmt: skip
        return linear(ctx, m.linear2, a, f"{path}.linear2")

    norms = [(getattr(m, f"norm{i}"), f"{path}.norm{i}") for i in (1, 2, 3)]
    for (norm, where), block in zip(norms, (sa, ca, ff), strict=True):
        if m.norm_first:  # x + block(norm(x))
            x = ctx.op("Add", [x, block(_sub(ctx, norm, x, where))])
        else:  # norm(x + block(x))
            x = _sub(ctx, norm, ctx.op("Add", [x, block(x)]), where)
    return x


@register_converter(TransformerDecoderLayer)
def _decoder_layer(ctx, m, inputs, path):
    """``(tgt, memory[, tgt_mask[, memory_mask[, tgt_key_padding_mask[,
    memory_key_padding_mask]]]])``, batched or unbatched ``(T, E)``, ``(S, E)``."""
    if not 2 <= len(inputs) <= 6:
        raise refuse(m, path, "it takes tgt, memory and at most four masks")
    tgt, mem = inputs[:2]
    tgt_mask, mem_mask, tgt_pad, mem_pad = (list(inputs[2:]) + [None] * 4)[:4]
    sa_mask = attention_mask(ctx, m.self_attn, tgt_mask, tgt_pad, tgt)
    ca_mask = attention_mask(ctx, m.multihead_attn, mem_mask, mem_pad, tgt)
    unbatched = tgt.ndim == 2
    if unbatched:
        axes = ctx.ints([0], "axes")
        x, y = (ctx.op("Unsqueeze", [t, axes]) for t in (tgt, mem))
    elif m.batch_first:
        x, y = tgt.name, mem.name
    else:
        x, y = (ctx.op("Transpose", [t], perm=[1, 0, 2]) for t in (tgt, mem))
    out = decoder_layer(ctx, m, x, y, path, tgt, sa_mask, ca_mask)
    if unbatched:
        return ctx.op("Squeeze", [out, axes])
    return out if m.batch_first else ctx.op("Transpose", [out], perm=[1, 0, 2])


@register_converter(TransformerDecoder)
def _decoder(ctx, m, inputs, path):
    """Every layer with the same memory and masks, then ``norm``."""
    if len(inputs) < 2:
        raise refuse(m, path, "it takes tgt, memory and at most four masks")
    return layer_stack(ctx, m, inputs, path, 5, "tgt, memory and at most four masks")


@register_converter(Transformer)
def _transformer(ctx, m, inputs, path):
    """``memory = encoder(src, src_mask, src_key_padding_mask)``, then
    ``decoder(tgt, memory, tgt_mask, memory_mask, tgt_key_padding_mask,
    memory_key_padding_mask)``."""
    if not 2 <= len(inputs) <= 8:
        raise refuse(m, path, "it takes src, tgt and at most six masks")
    src, tgt = inputs[:2]
    src_mask, tgt_mask, mem_mask, src_pad, tgt_pad, mem_pad = (list(inputs[2:]) + [None] * 6)[:6]
    where = f"{path}.encoder" if path else "encoder"
    memory = ctx.convert(m.encoder, [src, *_given([src_mask, src_pad])], where)
    where = f"{path}.decoder" if path else "decoder"
    masks = _given([tgt_mask, mem_mask, tgt_pad, mem_pad])
    return ctx.op("Identity", [ctx.convert(m.decoder, [tgt, memory, *masks], where)])
