"""Recurrent layers with backpropagation through time written out: the sequence layers ``RNN``,
``LSTM``, ``GRU`` (``sequence.py`` on the shared base ``base.py``) and the single-step cells
``RNNCell``, ``LSTMCell``, ``GRUCell`` (``cells.py``), all on the step functions of ``steps.py``.
"""

from .cells import GRUCell, LSTMCell, RNNCell
from .sequence import GRU, LSTM, RNN

__all__ = ["GRU", "GRUCell", "LSTM", "LSTMCell", "RNN", "RNNCell"]
