"""ONNX converters of the sequence layers: multi-head attention and the Transformer encoder
(composed of ``MatMul``, ``Softmax``, ``LayerNormalization``...), and ``RNN``, ``LSTM``, ``GRU``
(ONNX's ``RNN``, ``LSTM``, ``GRU`` operators, one per stacked layer).

Gate orders differ: nnx (as PyTorch) stacks the LSTM gates ``i, f, g, o`` and the GRU gates
``r, z, n`` along the columns of ``(in, gates * H)`` weights; ONNX wants ``i, o, f, c`` and
``z, r, h`` along the rows of ``(gates * H, in)`` weights, so the blocks are reordered and
transposed. nnx's GRU applies ``r`` after the hidden product and its bias (PyTorch's form),
which is ONNX's ``linear_before_reset=1``.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from ..backend import to_numpy
from ..layers.attention import MultiheadAttention
from ..layers.recurrent.sequence import GRU, LSTM, RNN
from ..layers.transformer import TransformerEncoderLayer
from ..layers.transformer_stack import TransformerEncoder
from ..models.lstm import LSTMLanguageModel
from ..models.transformer import CausalTransformerLM
from .activations import const, dtype_of
from .export import Exporter, Tensor, _join, refuse, register_converter
from .layers import linear


def _ndim(x: Tensor, default: int = 3) -> int:
    return default if x.value is None else x.ndim


def attention_mask(ctx: Exporter, m: MultiheadAttention, attn_mask: Tensor | None,
                   key_padding: Tensor | None, like: Tensor) -> str | None:  # fmt: skip
    """The additive mask broadcastable to ``(N, H, L, S)``, as nnx builds it: a boolean mask
    (True = masked out) as ``-inf``/0, a floating one as it is; ``attn_mask`` ``(L, S)`` or
    ``(N * H, L, S)``, ``key_padding`` ``(N, S)`` (``(S,)`` for an unbatched input)."""
    dtype = dtype_of(like)

    def additive(t: Tensor) -> str:
        if dtype_of(t).kind == "b":
            return ctx.op(
                "Where", [t, ctx.scalar(-np.inf, dtype.name), ctx.scalar(0.0, dtype.name)]
            )
        return t.name if dtype_of(t) == dtype else ctx.op("Cast", [t], to=_onnx_type(ctx, dtype))

    total = None
    if attn_mask is not None:
        total = additive(attn_mask)
        if attn_mask.ndim == 3:
            shape = [-1, m.num_heads, *attn_mask.shape[1:]]
            total = ctx.op("Reshape", [total, ctx.ints(shape)])
    if key_padding is not None:
        kp = additive(key_padding)
        if key_padding.ndim == 1:
            kp = ctx.op("Unsqueeze", [kp, ctx.ints([0], "axes")])
        kp = ctx.op("Unsqueeze", [kp, ctx.ints([1, 2], "axes")])  # (N, 1, 1, S)
        total = kp if total is None else ctx.op("Add", [total, kp])
    return total


def _onnx_type(ctx: Exporter, dtype: Any) -> int:
    return ctx.helper.np_dtype_to_tensor_dtype(np.dtype(dtype))


def masked_softmax(ctx: Exporter, scores: str, like: Tensor) -> str:
    """Softmax over the last axis where a row that is entirely ``-inf`` gets all-zero weights
    instead of NaN (nnx's ``masked_softmax``)."""
    zero, one = const(ctx, like, 0.0), const(ctx, like, 1.0)
    top = ctx.reduce("ReduceMax", scores, [-1])
    top = ctx.op("Where", [ctx.op("Equal", [top, const(ctx, like, -np.inf)]), zero, top])
    e = ctx.op("Exp", [ctx.op("Sub", [scores, top])])
    total = ctx.reduce("ReduceSum", e, [-1])
    total = ctx.op("Where", [ctx.op("Equal", [total, zero]), one, total])
    return ctx.op("Div", [e, total])


def attention(ctx: Exporter, m: MultiheadAttention, q: Any, k: Any, v: Any, path: str,
              like: Tensor, causal_length: int = 0, mask: str | None = None) -> str:  # fmt: skip
    """Batch-first ``(N, L, E)`` query, key, value -> ``(N, L, E)``:
    ``out_proj(concat_h softmax(Q_h K_h^T / sqrt(d) + M) V_h)``; ``M`` is the additive
    ``mask`` (:func:`attention_mask`) and the causal mask (``-inf`` above the diagonal) of
    ``causal_length`` positions (none for 0)."""
    h, d = m.num_heads, m.head_dim

    def heads(t: Any, proj: Any, name: str, perm: list[int]) -> str:
        y = linear(ctx, proj, t, f"{path}.{name}")
        y = ctx.op("Reshape", [y, ctx.ints([0, 0, h, d])])  # 0: keep N and L as they come
        return ctx.op("Transpose", [y], perm=perm)

    qh = heads(q, m.q_proj, "q_proj", [0, 2, 1, 3])  # (N, H, L, d)
    qh = ctx.op("Mul", [qh, const(ctx, like, 1.0 / math.sqrt(d))])
    kt = heads(k, m.k_proj, "k_proj", [0, 2, 3, 1])  # (N, H, d, S)
    vh = heads(v, m.v_proj, "v_proj", [0, 2, 1, 3])  # (N, H, S, d)
    scores = ctx.op("MatMul", [qh, kt], hint="scores")
    if mask is not None:
        scores = ctx.op("Add", [scores, mask])
    if causal_length:
        i = np.arange(causal_length)
        causal = np.where(i[None, :] > i[:, None], -np.inf, 0.0).astype(dtype_of(like))
        scores = ctx.op(
            "Add", [scores, ctx.const(causal, "causal_mask", ("causal", causal_length))]
        )
    # a user's mask may mask out whole rows: nnx gives them zero weights, ONNX's Softmax NaN
    a = ctx.op("Softmax", [scores], axis=-1) if mask is None else masked_softmax(ctx, scores, like)
    o = ctx.op("Transpose", [ctx.op("MatMul", [a, vh])], perm=[0, 2, 1, 3])
    o = ctx.op("Reshape", [o, ctx.ints([0, 0, m.embed_dim])])
    return linear(ctx, m.out_proj, o, f"{path}.out_proj")


def _masks(inputs: list[Tensor], first: int) -> tuple[Tensor | None, Tensor | None]:
    """The optional mask inputs at positions ``first`` (attention mask) and ``first + 1``
    (key padding mask) of a Graph call."""
    rest = list(inputs[first:]) + [None, None]
    return rest[0], rest[1]


@register_converter(MultiheadAttention)
def _mha(ctx, m, inputs, path):
    """``(query, key, value[, attn_mask[, key_padding_mask]])`` (masks as nnx takes them)."""
    if not 3 <= len(inputs) <= 5:
        raise refuse(m, path, "it takes query, key, value and at most two masks")
    swapped: dict[str, str] = {}

    def batch_first(t: Tensor) -> str:
        if m.batch_first:
            return t.name
        if t.name not in swapped:  # self-attention: one transpose for the three uses
            swapped[t.name] = ctx.op("Transpose", [t], perm=[1, 0, 2])
        return swapped[t.name]

    q, k, v = (batch_first(t) for t in inputs[:3])
    mask = attention_mask(ctx, m, *_masks(inputs, 3), inputs[0])
    y = attention(ctx, m, q, k, v, path, inputs[0], mask=mask)
    return y if m.batch_first else ctx.op("Transpose", [y], perm=[1, 0, 2])


def _sub(ctx: Exporter, module: Any, x: str, path: str) -> str:
    return ctx.convert(module, [Tensor(x)], path).name


def encoder_layer(ctx: Exporter, m: TransformerEncoderLayer, x: str, path: str,
                  like: Tensor, causal_length: int = 0, mask: str | None = None) -> str:  # fmt: skip
    """Batch-first ``(N, L, E)`` -> the same; dropouts are the identity in evaluation."""

    def sa(t: str) -> str:
        return attention(ctx, m.self_attn, t, t, t, f"{path}.self_attn", like, causal_length, mask)

    def ff(t: str) -> str:
        a = _sub(ctx, m.activation, linear(ctx, m.linear1, t, f"{path}.linear1"),
                 f"{path}.activation")  # fmt: skip
        return linear(ctx, m.linear2, a, f"{path}.linear2")

    n1, n2 = f"{path}.norm1", f"{path}.norm2"
    if m.norm_first:
        h = ctx.op("Add", [x, sa(_sub(ctx, m.norm1, x, n1))])
        return ctx.op("Add", [h, ff(_sub(ctx, m.norm2, h, n2))])
    h = _sub(ctx, m.norm1, ctx.op("Add", [x, sa(x)]), n1)
    return _sub(ctx, m.norm2, ctx.op("Add", [h, ff(h)]), n2)


@register_converter(TransformerEncoderLayer)
def _encoder_layer(ctx, m, inputs, path):
    """``(src[, src_mask[, src_key_padding_mask]])``, batched or unbatched ``(L, E)``."""
    if not 1 <= len(inputs) <= 3:
        raise refuse(m, path, "it takes the source and at most two masks")
    x = inputs[0]
    mask = attention_mask(ctx, m.self_attn, *_masks(inputs, 1), x)
    if _ndim(x) == 2:  # unbatched (L, E): a batch of one
        x1 = ctx.op("Unsqueeze", [x, ctx.ints([0], "axes")])
        y = encoder_layer(ctx, m, x1, path, x, mask=mask)
        return ctx.op("Squeeze", [y, ctx.ints([0], "axes")])
    if m.batch_first:
        return encoder_layer(ctx, m, x.name, path, x, mask=mask)
    y = encoder_layer(ctx, m, ctx.op("Transpose", [x], perm=[1, 0, 2]), path, x, mask=mask)
    return ctx.op("Transpose", [y], perm=[1, 0, 2])


def layer_stack(ctx, m, inputs, path, most: int, takes: str):
    """A stack (``m.layers``, then ``m.norm``): every layer gets the running first input and
    the same other inputs (memory, masks); ``1 + most`` inputs at the most."""
    if not 1 <= len(inputs) <= 1 + most:
        raise refuse(m, path, f"it takes {takes}")
    x, rest = inputs[0], list(inputs[1:])
    for i, layer in enumerate(m.layers):
        x = ctx.convert(layer, [x, *rest], f"{path}.layers.{i}")
    if m.norm is not None:
        x = ctx.convert(m.norm, [x], f"{path}.norm")
    return ctx.op("Identity", [x])


@register_converter(TransformerEncoder)
def _encoder(ctx, m, inputs, path):
    """``(src[, mask[, src_key_padding_mask]])``: every layer with the same masks."""
    return layer_stack(ctx, m, inputs, path, 2, "the source and at most two masks")


def _ids(ctx: Exporter, x: Tensor) -> str:
    """Token ids as int64 (the presets accept whole numbers in a floating dtype, as nnx's
    ``as_ids``)."""
    return x.name if dtype_of(x).kind in "iu" else ctx.op("Cast", [x], to=7)  # 7: INT64


@register_converter(CausalTransformerLM)
def _causal_lm(ctx, m, inputs, path):
    """The ``transformer`` preset: ids ``(N, T)`` -> logits ``(N, V, T)``, every block causal
    (the mask is built for the example's ``T``)."""
    x = inputs[0]
    length = x.shape[-1]
    h = ctx.convert(m.embed, [Tensor(_ids(ctx, x))], _join(path, "embed")).name
    h = ctx.op("Add", [h, ctx.param(m.pos.weight, "pos", lambda w: w[:length], tag=str(length))])
    like = Tensor(h, m.embed.weight.value)  # the constants take the weights' dtype, not the ids'
    for i, block in enumerate(m._blocks):
        h = encoder_layer(ctx, block, h, _join(path, f"block{i}"), like, causal_length=length)
    h = ctx.convert(m.norm, [Tensor(h)], _join(path, "norm")).name
    return ctx.op("Transpose", [linear(ctx, m.head, h, _join(path, "head"))], perm=[0, 2, 1])


@register_converter(LSTMLanguageModel)
def _lstm_lm(ctx, m, inputs, path):
    """The ``lstm`` preset: ids ``(N, T)`` -> logits ``(N, V, T)``."""
    h = ctx.convert(m.embed, [Tensor(_ids(ctx, inputs[0]))], _join(path, "embed"))
    out = ctx.convert(m.lstm, [Tensor(h.name, None)], _join(path, "lstm"))[0].name
    return ctx.op("Transpose", [linear(ctx, m.head, out, _join(path, "head"))], perm=[0, 2, 1])


# ---------------------------------------------------------------------------- recurrent
_GATE_ORDER = {RNN: [0], LSTM: [0, 3, 1, 2], GRU: [1, 0, 2]}  # nnx blocks in ONNX's order
_OP = {RNN: "RNN", LSTM: "LSTM", GRU: "GRU"}


def _onnx_weight(w: np.ndarray, order: list[int], hidden: int) -> np.ndarray:
    """nnx ``(in, G*H)`` columns ``[gate blocks]`` -> ONNX ``(G*H, in)`` rows, reordered."""
    blocks = [w[..., g * hidden : (g + 1) * hidden] for g in order]
    return np.concatenate(blocks, axis=-1).T if w.ndim == 2 else np.concatenate(blocks, axis=-1)


def _stack(params: list[Any], which: int, order: list[int], hidden: int) -> np.ndarray:
    """Parameter ``which`` (weight_ih, weight_hh, bias_ih, bias_hh) of every direction in ONNX's
    layout, stacked along a leading direction axis."""
    return np.stack([_onnx_weight(to_numpy(p[which].value), order, hidden) for p in params])


@register_converter(RNN, LSTM, GRU)
def _recurrent(ctx, m, inputs, path):
    """One ONNX recurrent node per stacked layer (both directions in one node)."""
    if len(inputs) != 1:
        raise refuse(m, path, "initial states (hx) are not exported; they start at zero")
    cls = type(m)
    x = inputs[0]
    nd = _ndim(x)
    hid, dirs, order = m.hidden_size, m.num_directions, _GATE_ORDER[cls]
    if nd == 2:  # unbatched (T, in): a batch of one
        seq = ctx.op("Unsqueeze", [x, ctx.ints([1], "axes")])
    elif m.batch_first:
        seq = ctx.op("Transpose", [x], perm=[1, 0, 2])
    else:
        seq = x.name
    attrs: dict[str, Any] = {"hidden_size": hid}
    attrs["direction"] = "bidirectional" if dirs == 2 else "forward"
    if cls is GRU:
        attrs["linear_before_reset"] = 1
    if cls is RNN:
        attrs["activations"] = ["Relu" if m.nonlinearity == "relu" else "Tanh"] * dirs
    finals: list[list[str]] = [[] for _ in range(m.STATES)]
    for k in range(m.num_layers):
        params = [m._params(k, s) for s in m._suffixes()]
        key = f"{path}.l{k}"

        w = ctx.const(_stack(params, 0, order, hid), f"{key}.W", (id(params[0][0]), "W"))
        r = ctx.const(_stack(params, 1, order, hid), f"{key}.R", (id(params[0][0]), "R"))
        b = None
        if m.bias:
            bias = np.concatenate(
                [_stack(params, 2, order, hid), _stack(params, 3, order, hid)], -1
            )
            b = ctx.const(bias, f"{key}.B", (id(params[0][0]), "B"))
        n_out = 3 if cls is LSTM else 2
        outs = ctx.op(_OP[cls], [seq, w, r, b], outputs=n_out, hint=key, **attrs)
        # Y (T, D, N, H) -> (T, N, D*H): the directions side by side, as nnx concatenates them
        y = ctx.op("Transpose", [outs[0]], perm=[0, 2, 1, 3])
        seq = ctx.op("Reshape", [y, ctx.ints([0, 0, dirs * hid])])
        for f, state in zip(finals, outs[1:], strict=True):
            f.append(state)
    states = [f[0] if len(f) == 1 else ctx.op("Concat", f, axis=0) for f in finals]
    if nd == 2:
        one = ctx.ints([1], "axes")
        out = ctx.op("Squeeze", [seq, one])
        states = [ctx.op("Squeeze", [s, one]) for s in states]
    elif m.batch_first:
        out = ctx.op("Transpose", [seq], perm=[1, 0, 2])
    else:
        out = ctx.op("Identity", [seq])
    return (out, tuple(states)) if cls is LSTM else (out, states[0])
