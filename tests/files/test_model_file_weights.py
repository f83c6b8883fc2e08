"""``load_model`` refuses NaN, inf, integer and bool weights where the parameter is floating, in
one line naming the entry: the check ``load_checkpoint`` makes (one home, ``NpzReader.read_like``)."""

from __future__ import annotations

import numpy as np
import pytest

import nnx

from .crafted import _members, _npy, _zip, tiny_model


def _model_file(folder, bad=None):
    path = folder / "model.npz"
    nnx.save_model(path, tiny_model())
    if bad is None:
        return path
    members = _members(path)
    members["model/0.weight.npy"] = _npy(bad)
    return _zip(folder / "bad.npz", members)


@pytest.mark.parametrize(
    ("bad", "why"),
    [
        (np.full((3, 4), np.nan), "holds NaN or infinity"),
        (np.full((3, 4), np.inf, np.float32), "holds NaN or infinity"),
        (np.ones((3, 4), np.int64), "dtype"),
        (np.ones((3, 4), bool), "dtype"),
    ],
    ids=["nan", "inf", "int64", "bool"],
)
@pytest.mark.parametrize("loader", ["load_model", "load_checkpoint"])
def test_bad_weights_are_refused_in_one_line_naming_the_entry(tmp_path, bad, why, loader):
    if loader == "load_model":
        path = _model_file(tmp_path, bad)
        load = nnx.load_model
    else:
        from .crafted import good_checkpoint

        members = _members(good_checkpoint(tmp_path))
        key = next(k for k in members if k.endswith(".npy") and "0.weight" in k and "model" in k)
        members[key] = _npy(bad)
        path = _zip(tmp_path / "bad.npz", members)
        model = tiny_model()

        def load(p):
            return nnx.load_checkpoint(p, model)

    with pytest.raises(nnx.NnxFileError) as err:
        load(path)
    text = str(err.value)
    assert "\n" not in text and "0.weight" in text and why in text, text


def test_a_good_model_file_still_loads(tmp_path):
    model = nnx.load_model(_model_file(tmp_path))
    np.testing.assert_array_equal(model[0].weight.value, tiny_model()[0].weight.value)
