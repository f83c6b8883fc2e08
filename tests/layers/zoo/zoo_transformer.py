"""The transformer stacks: TransformerEncoder as it is; the decoder layer, TransformerDecoder and
Transformer wrapped to take one input (memory or source: a fixed transform of the input)."""

import nnx

# compiling a decoder's training step costs ~30 s of CPU: the compiled steps run under -m slow
SAMPLE_JIT = False


@nnx.register_module
class ZooDecoderOnInput(nnx.Module):
    """``decoder(x, tanh(x))``: a decoder (layer or stack) whose memory is ``tanh`` of its own
    target; ``dL/dx = d_tgt + d_memory * (1 - tanh(x)^2)``."""

    def __init__(self, decoder):
        self.decoder = decoder

    def forward(self, x):
        self._memory = nnx.namespace(x).tanh(x)
        return self.decoder(x, self._memory, tgt_is_causal=True)

    def backward(self, grad_out):
        d_tgt, d_memory = self.decoder.backward(grad_out)
        return d_tgt + d_memory * (1.0 - self._memory**2)


@nnx.register_module
class ZooTransformerOnInput(nnx.Module):
    """``transformer(tanh(x), x)``: source ``tanh(x)``, target ``x`` with the causal mask."""

    def __init__(self, transformer):
        self.transformer = transformer

    def forward(self, x):
        self._src = nnx.namespace(x).tanh(x)
        return self.transformer(self._src, x, tgt_is_causal=True)

    def backward(self, grad_out):
        d_src, d_tgt = self.transformer.backward(grad_out)
        return d_tgt + d_src * (1.0 - self._src**2)


def _encoder():
    layer = nnx.TransformerEncoderLayer(
        4, 2, 6, dropout=0.1, batch_first=True, norm_first=True, rng=0
    )
    return nnx.TransformerEncoder(layer, 2, nnx.LayerNorm(4))


def _decoder():
    layer = nnx.TransformerDecoderLayer(
        4, 2, 6, dropout=0.1, activation="gelu", batch_first=True, rng=0
    )
    return ZooDecoderOnInput(nnx.TransformerDecoder(layer, 2, nnx.LayerNorm(4)))


EXAMPLES = {
    # the first runs by default: one decoder layer (through JAX eagerly every operation compiles
    # at its first call, then the jitted step: ~50 s on a loaded 2-core machine, a one-layer
    # encoder stack ~40 s); the stacks and the Transformer run under the slow marker
    "decoder-layer": (
        lambda: ZooDecoderOnInput(nnx.TransformerDecoderLayer(4, 2, 6, batch_first=False, rng=1)),
        (3, 2, 4),
    ),
    "decoder": (_decoder, (2, 3, 4)),
    "encoder": (_encoder, (2, 3, 4)),
    "transformer": (
        lambda: ZooTransformerOnInput(
            nnx.Transformer(4, 2, 1, 1, 6, dropout=0.1, batch_first=True, rng=2)
        ),
        (2, 3, 4),
    ),
}
