"""The recurrent layers. The zoo takes one array in and one out: ``RNN`` returns
``(output, h_n)``, so it runs inside :class:`RecurrentOutput`, which keeps the output sequence; a cell
called as ``cell(x)`` (zero initial state) returns its new state."""

import nnx


@nnx.register_module
class RecurrentOutput(nnx.Module):
    """The output sequence of a sequence layer (``h_n`` dropped); backward: ``dL/dx``."""

    def __init__(self, rnn):
        self.rnn = rnn

    def forward(self, x):
        return self.rnn(x)[0]

    def backward(self, grad_out):
        return self.rnn.backward(grad_out)


EXAMPLES = {
    "rnn": (
        lambda: RecurrentOutput(nnx.RNN(3, 4, num_layers=2, batch_first=True, rng=0)),
        (2, 5, 3),
    ),
    "rnn-relu-bidirectional": (
        lambda: RecurrentOutput(nnx.RNN(3, 4, nonlinearity="relu", bidirectional=True, rng=1)),
        (4, 2, 3),
    ),
    "rnncell": (lambda: nnx.RNNCell(3, 4, rng=0), (2, 3)),
    "grucell": (lambda: nnx.GRUCell(3, 4, rng=0), (2, 3)),
}
