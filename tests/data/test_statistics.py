"""One-pass statistics equal the in-memory ones to float64 rounding, on any data source."""

import numpy as np
import pytest

import nnx
from nnx.data import ArrayDataset
from nnx.data.statistics import RunningStatistics, fit_standardize, streaming_statistics
from nnx.layers.standardize import feature_statistics


def test_streaming_statistics_match_the_in_memory_ones(tmp_path):
    rng = np.random.default_rng(1)
    x = (rng.normal(size=(1001, 4)) * [1.0, 1e3, 1e-3, 0.0] + [5.0, -2e4, 1e6, 7.0]).astype(
        np.float32
    )
    mean, std = (nnx.to_numpy(v) for v in feature_statistics(x))
    np.save(tmp_path / "x.npy", x)
    sources = {
        "memmap": np.load(tmp_path / "x.npy", mmap_mode="r"),
        "batches": [(x[i : i + 64], None) for i in range(0, len(x), 64)],
        "generator": (x[i : i + 100] for i in range(0, len(x), 100)),
    }
    for name, data in sources.items():
        got_mean, got_std = streaming_statistics(data, batch_size=128)
        np.testing.assert_allclose(got_mean, mean, rtol=1e-12, atol=1e-9, err_msg=name)
        np.testing.assert_allclose(got_std, std, rtol=1e-12, err_msg=name)
    assert std[3] == 1.0  # zero spread: centred, not scaled, as in memory
    layer = fit_standardize(nnx.Standardize(4, dtype="float64"), ArrayDataset(x))
    np.testing.assert_allclose(nnx.to_numpy(layer.std.value), std, rtol=1e-12)


def test_running_statistics_refuse_bad_batches():
    stats = RunningStatistics().update(np.zeros((2, 3)))
    with pytest.raises(ValueError, match="samples of shape"):
        stats.update(np.zeros((2, 4)))
    with pytest.raises(ValueError, match="NaN or infinite"):
        stats.update(np.full((1, 3), np.nan))
    with pytest.raises(ValueError, match="no samples"):
        RunningStatistics().result()
