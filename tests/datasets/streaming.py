"""Shared by the streamed-file tests: the training command on a data file read whole and on the
same file memory-mapped (streaming forced by a zero threshold) ends with the same results."""

import json

import numpy as np
import pytest

from nnx.datasets import files


def assert_streamed_run_matches_whole(tmp_path, monkeypatch, args):
    """Train with ``args`` twice, whole and streamed; check the second saw memory maps and both
    summaries agree to rounding (the statistics are summed in another order)."""
    import nnx.cli.run as run
    from nnx.cli.main import main

    assert main([*args, "--out", str(tmp_path / "whole")], prog="t") == 0
    loaded = []
    plain = run.prepare_splits

    def spy(data, settings, backend):
        loaded.append(isinstance(data.train[0], np.memmap))
        return plain(data, settings, backend)

    monkeypatch.setattr(files, "STREAM_BYTES", 0)
    monkeypatch.setattr(run, "prepare_splits", spy)
    assert main([*args, "--out", str(tmp_path / "mapped")], prog="t") == 0
    assert loaded == [True]
    whole, mapped = (
        json.loads((tmp_path / n / "summary.json").read_text()) for n in ("whole", "mapped")
    )
    for key in ("train_loss", "val_loss", "test_loss", "test_accuracy"):
        assert mapped[key] == pytest.approx(whole[key], rel=1e-5), key
