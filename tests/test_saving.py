"""Whole-model files: nnx.save_model / nnx.load_model, the module registry, captured arguments."""

import io
import json
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest

import nnx
from nnx.backend import to_numpy
from nnx.io.model_file import build_from_config
from nnx.io.registry import init_arguments

ROOT = Path(__file__).resolve().parent.parent


def _outputs(model, x):
    model.eval()
    return to_numpy(model(x))


def test_round_trip_on_every_backend(tmp_path, backend):
    model = nnx.models.build_model("mlp", (1, 4, 4), 3, hidden=[8, 5], dropout=0.2, seed=3)
    path = nnx.save_model(tmp_path / "m.npz", model)
    loaded = nnx.load_model(path, device=backend)
    assert repr(loaded) == repr(model)
    for (name, p), (name2, q) in zip(
        model.named_parameters(), loaded.named_parameters(), strict=True
    ):
        assert name == name2 and backend.owns(q.value) and str(q.value.dtype).endswith("float32")
        np.testing.assert_array_equal(to_numpy(q.value), to_numpy(p.value))
    x = np.random.default_rng(0).standard_normal((2, 1, 4, 4)).astype(np.float32)
    np.testing.assert_allclose(
        _outputs(loaded, backend.asarray(x)), _outputs(model, x), rtol=1e-6, atol=1e-6
    )


def test_dtype_and_buffers_are_kept(tmp_path):
    @nnx.register_module(name="test_saving.Counter")
    class Counter(nnx.Module):
        def __init__(self, features: int):
            self.scale = nnx.Parameter(np.ones(features))
            self.mean = nnx.Buffer(np.zeros(features))
            self.count = nnx.Buffer(np.zeros((), dtype=np.int64))

        def forward(self, x):
            return x * self.scale.value + self.mean.value

    model = nnx.Sequential(nnx.Linear(3, 2, rng=0), Counter(2)).to(dtype="float64")
    model[1].mean.value = np.array([0.5, -1.0])
    model[1].count.value = np.array(7, dtype=np.int64)
    loaded = nnx.load_model(nnx.save_model(tmp_path / "m.npz", model), device="strict")
    assert loaded[0].weight.value.dtype == nnx.get_backend("strict").dtype("float64")
    np.testing.assert_array_equal(to_numpy(loaded[1].mean.value), [0.5, -1.0])
    count = to_numpy(loaded[1].count.value)
    assert count.dtype == np.int64 and int(count) == 7


def test_tied_parameters_and_shared_modules_stay_tied(tmp_path):
    block = nnx.Linear(4, 4, rng=0)
    model = nnx.Sequential(block, nnx.Tanh(), block, nnx.Linear(4, 4, rng=1), nnx.Linear(4, 4))
    model[4].weight = model[3].weight  # tied after construction
    loaded = nnx.load_model(nnx.save_model(tmp_path / "m.npz", model))
    assert loaded[0] is loaded[2] and loaded[4].weight is loaded[3].weight
    assert loaded[4].bias is not loaded[3].bias
    assert [n for n, _ in loaded.named_parameters()] == [n for n, _ in model.named_parameters()]
    x = np.ones((2, 4), dtype=np.float32)
    np.testing.assert_array_equal(_outputs(loaded, x), _outputs(model, x))


def test_arguments_are_captured_without_layer_code():
    rng = np.random.default_rng(0)
    layer = nnx.Linear(3, 2, False, rng=rng, weight_l2=0.1)
    signature, args = init_arguments(layer)
    assert args["in_features"] == 3 and args["bias"] is False and args["rng"] is rng
    assert args["init"] == "glorot_uniform" and signature is not None
    config = nnx.module_config(layer)
    assert config["type"] == "Linear" and "rng" not in config["args"]  # a Generator: dropped
    assert config["args"]["weight_l2"] == 0.1 and config["args"]["device"] == {"__device__": "cpu"}

    # a subclass without __init__ records its parent's arguments, and must register itself
    class Wide(nnx.Linear):
        pass

    assert init_arguments(Wide(3, 4))[1]["out_features"] == 4
    with pytest.raises(nnx.ModelFileError, match=r"cannot save the model \(.*Wide\): its class"):
        nnx.module_config(Wide(3, 4))
    json.dumps(nnx.module_config(nnx.models.build_model("mlp", (4,), 2)))  # plain JSON


def test_nested_modules_lists_dicts_tuples_and_get_config():
    @nnx.register_module(name="test_saving.Pair")
    class Pair(nnx.Module):
        def __init__(self, parts, shape=(2, 3), named=None, *, scale=float("inf")):
            self.first, self.second = parts
            self.shape, self.named, self.scale = shape, named, scale

    @nnx.register_module(name="test_saving.Custom")
    class Custom(nnx.Module):
        def __init__(self, table):
            self.table = dict(table)

        def get_config(self):
            return {"pairs": sorted(self.table.items())}

        @classmethod
        def from_config(cls, config):
            return cls({k: v for k, v in config["pairs"]})

    inner = nnx.Tanh()
    model = Pair([inner, Custom({"a": 1})], named={"act": inner, "n": 2})
    config = nnx.module_config(model)
    rebuilt = build_from_config(json.loads(json.dumps(config)))
    assert isinstance(rebuilt.first, nnx.Tanh) and rebuilt.named["act"] is rebuilt.first
    assert rebuilt.second.table == {"a": 1} and rebuilt.shape == (2, 3)
    assert rebuilt.scale == float("inf") and rebuilt.named["n"] == 2


def test_unstorable_required_argument_is_refused():
    @nnx.register_module(name="test_saving.Fixed")
    class Fixed(nnx.Module):
        def __init__(self, table):
            self.table = table

    with pytest.raises(nnx.ModelFileError, match="argument 'table' is a ndarray, which cannot"):
        nnx.module_config(Fixed(np.ones(3)))


def test_unregistered_class_errors(tmp_path):
    class Local(nnx.Module):
        def forward(self, x):
            return x

    with pytest.raises(nnx.ModelFileError, match="not registered; decorate it"):
        nnx.save_model(tmp_path / "m.npz", nnx.Sequential(nnx.ReLU(), Local()))
    assert not (tmp_path / "m.npz").exists()
    config = {"type": "NoSuchLayer", "args": {}}
    with pytest.raises(
        nnx.ModelFileError, match=r"'NoSuchLayer' is not registered; registered: .*Linear"
    ):
        build_from_config(config)


def test_register_module_checks():
    with pytest.raises(TypeError, match="is not an nnx.Module subclass"):
        nnx.register_module(int)

    class Linear(nnx.Module):  # another class under a built-in's name
        pass

    with pytest.raises(ValueError, match="'Linear' is already taken by nnx.layers.linear.Linear"):
        nnx.register_module(Linear)
    assert nnx.registered_modules()["Linear"] is nnx.Linear


def _file(tmp_path, name, **arrays):
    path = tmp_path / name
    np.savez(path, **arrays)
    return path


def _record(meta):
    return np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)


def test_bad_files_are_refused_with_clear_errors(tmp_path):
    good = nnx.save_model(tmp_path / "good.npz", nnx.Sequential(nnx.Linear(2, 2, rng=0)))
    with pytest.raises(nnx.ModelFileError, match="does not exist"):
        nnx.load_model(tmp_path / "missing.npz")
    (tmp_path / "junk.npz").write_bytes(b"not a zip file at all")
    with pytest.raises(nnx.ModelFileError, match=r"is not an nnx .npz file \(not a zip archive\)"):
        nnx.load_model(tmp_path / "junk.npz")
    (tmp_path / "cut.npz").write_bytes(good.read_bytes()[:-40])
    with pytest.raises(nnx.ModelFileError, match="is truncated"):
        nnx.load_model(tmp_path / "cut.npz")
    with pytest.raises(nnx.ModelFileError, match="not an nnx model file"):
        nnx.load_model(_file(tmp_path, "plain.npz", w=np.ones(2)))
    with pytest.raises(nnx.ModelFileError, match="not a version-1 nnx model file"):
        nnx.load_model(
            _file(tmp_path, "v9.npz", __model__=_record({"format": "nnx-model", "version": 9}))
        )
    bad_json = np.frombuffer(b"{not json", dtype=np.uint8)
    with pytest.raises(nnx.ModelFileError, match="corrupted model record"):
        nnx.load_model(_file(tmp_path, "badjson.npz", __model__=bad_json))
    # an object array needs pickle: refused, never unpickled
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        with archive.open("x.npy", "w") as member:
            np.save(member, np.array([{"a": 1}], dtype=object), allow_pickle=True)
    (tmp_path / "pickle.npz").write_bytes(buffer.getvalue())
    with pytest.raises(nnx.ModelFileError, match="has dtype object, which needs pickle"):
        nnx.load_model(tmp_path / "pickle.npz")
    # weights that do not fit the architecture
    meta = {
        "format": "nnx-model",
        "version": 1,
        "architecture": {"type": "Linear", "args": {"in_features": 2, "out_features": 3}},
    }
    with pytest.raises(nnx.ModelFileError, match=r"missing \['bias', 'weight'\]"):
        nnx.load_model(_file(tmp_path, "empty.npz", __model__=_record(meta)))
    arrays = {"model/weight": np.ones((3, 3), np.float32), "model/bias": np.ones(3, np.float32)}
    with pytest.raises(nnx.ModelFileError, match=r"'weight' has shape \(3, 3\).*\(2, 3\)"):
        nnx.load_model(_file(tmp_path, "shape.npz", __model__=_record(meta), **arrays))
    meta["architecture"]["args"]["in_features"] = -1
    with pytest.raises(nnx.ModelFileError, match="rebuilding Linear failed"):
        nnx.load_model(_file(tmp_path, "neg.npz", __model__=_record(meta), **arrays))
    meta["architecture"] = {"type": "Linear", "args": {"in_features": {"__eval__": "1"}}}
    with pytest.raises(nnx.ModelFileError, match="unknown value"):
        nnx.load_model(_file(tmp_path, "tag.npz", __model__=_record(meta), **arrays))


LOADER = """
import sys, numpy as np, nnx
model = nnx.load_model(sys.argv[1], device=sys.argv[2])
model.eval()
x = nnx.get_backend(sys.argv[2]).asarray(np.load(sys.argv[3]))
np.save(sys.argv[4], nnx.to_numpy(model(x)))
print(type(model).__name__, len(list(model.parameters())))
"""

BUILDER = """
import numpy as np, nnx

@nnx.register_module
class Shift(nnx.Module):
    def __init__(self, features, amount=0.5):
        self.amount = nnx.Parameter(np.full(features, amount, dtype=np.float32))
    def forward(self, x):
        return x + self.amount.value

def build():
    return nnx.Sequential(nnx.Linear(4, 6, rng=0), nnx.GELU(), nnx.Dropout(0.3),
                          nnx.Linear(6, 3, rng=1))

def build_custom():
    return nnx.Sequential(nnx.Linear(4, 3, rng=0), Shift(3, amount=2.0))
"""


def test_loads_in_a_fresh_process_without_the_building_code(tmp_path):
    code = tmp_path / "builder"
    code.mkdir()
    (code / "mybuilder.py").write_text(BUILDER)
    (tmp_path / "loader.py").write_text(LOADER)
    sys.path.insert(0, str(code))
    try:
        import mybuilder
    finally:
        sys.path.remove(str(code))
    x = np.random.default_rng(1).standard_normal((5, 4)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    other = "torch" if nnx.backend.backend_available("torch")[0] else "strict:device1"
    for name, device in (("build", other), ("build_custom", "strict")):
        model = getattr(mybuilder, name)()
        nnx.save_model(tmp_path / f"{name}.npz", model)
        run = [sys.executable, str(tmp_path / "loader.py"), str(tmp_path / f"{name}.npz")]
        done = subprocess.run(
            [*run, device, str(tmp_path / "x.npy"), str(tmp_path / "y.npy")],
            capture_output=True,
            text=True,
            timeout=120,
            cwd=tmp_path,
        )
        if name == "build":
            assert done.returncode == 0, done.stderr
            assert done.stdout.split() == ["Sequential", "4"]
            np.testing.assert_allclose(
                np.load(tmp_path / "y.npy"), _outputs(model, x), rtol=1e-5, atol=1e-6
            )
        else:  # the class is not importable in that process: the error lists what is
            assert done.returncode != 0
            assert "module type 'Shift' is not registered; registered: " in done.stderr
            assert "Linear" in done.stderr
    del sys.modules["mybuilder"]


def test_layers_from_other_files_need_no_code(tmp_path):
    """Conv2d, BatchNorm2d, MaxPool2d: registered and described by their captured arguments."""
    if not hasattr(nnx, "Conv2d"):
        pytest.skip("no Conv2d in this tree")
    model = nnx.Sequential(
        nnx.Conv2d(1, 3, 3, padding=1, rng=0),
        nnx.BatchNorm2d(3),
        nnx.ReLU(),
        nnx.MaxPool2d(2),
        nnx.Flatten(),
        nnx.Linear(12, 2, rng=1),
    )
    x = np.random.default_rng(0).standard_normal((2, 1, 4, 4)).astype(np.float32)
    model(x)  # training mode: the running statistics move away from their initial values
    loaded = nnx.load_model(nnx.save_model(tmp_path / "cnn.npz", model), device="strict")
    for (name, b), (_, c) in zip(model.named_buffers(), loaded.named_buffers(), strict=True):
        np.testing.assert_array_equal(to_numpy(c.value), to_numpy(b.value), err_msg=name)
    strict = nnx.get_backend("strict")
    np.testing.assert_allclose(
        _outputs(loaded, strict.asarray(x)), _outputs(model, x), rtol=1e-6, atol=1e-6
    )
