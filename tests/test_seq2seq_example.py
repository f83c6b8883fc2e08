"""The sequence-to-sequence example of docs/seq2seq.md learns: its code runs (tests/test_docs.py
runs it too) and here the training loss must fall below a threshold and greedy decoding must
copy held-out sequences."""

import re
from pathlib import Path

import numpy as np

DOC = Path(__file__).resolve().parent.parent / "docs" / "seq2seq.md"


def test_seq2seq_copy_task_learns():
    namespace: dict = {"__name__": "seq2seq_example"}
    for code in re.findall(r"```python\n(.*?)```", DOC.read_text(), re.DOTALL):
        exec(compile(code, str(DOC), "exec"), namespace)
    losses = namespace["losses"]
    assert losses[0] > 1.5  # about log(6) for a model that guesses among the 6 tokens
    assert losses[-1] < 0.3, losses[-10:]
    assert np.mean(namespace["copied"] == namespace["test_src"]) > 0.9
