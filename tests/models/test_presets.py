"""Model presets and user builders (nnx.models)."""

import numpy as np
import pytest

import nnx
from nnx.models import PRESETS, ModelSpecError, accepted_options, build_model, get_preset


def test_mlp_preset_on_flat_and_image_inputs():
    flat = get_preset("mlp")((64,), 10, hidden=[16, 8], activation="tanh", dropout=0.1)
    assert [type(m).__name__ for m in flat] == [
        "Linear", "Tanh", "Dropout", "Linear", "Tanh", "Dropout", "Linear",
    ]  # fmt: skip
    image = get_preset("mlp")((1, 8, 8), 10, hidden=[16])
    assert type(image[0]) is nnx.Flatten and image[1].weight.shape == (64, 16)
    x = np.zeros((3, 1, 8, 8), dtype=np.float32)
    assert image(x).shape == (3, 10)
    linear = get_preset("mlp")((5,), 2, hidden=[])
    assert len(linear) == 1 and linear[0].weight.shape == (5, 2)


def test_mlp_preset_is_seeded():
    a, b = (get_preset("mlp")((4,), 3, hidden=[8], seed=7) for _ in range(2))
    c = get_preset("mlp")((4,), 3, hidden=[8], seed=8)
    np.testing.assert_array_equal(a[0].weight.value, b[0].weight.value)
    assert not np.array_equal(a[0].weight.value, c[0].weight.value)


@pytest.mark.parametrize(
    "args, message",
    [
        (((0, 4), 3), "mlp: input_shape must be positive integers"),
        (((), 3), "mlp: input_shape must be positive integers"),
        (((4,), 3, {"activation": "swish"}), "mlp: unknown activation 'swish'"),
    ],
)
def test_mlp_preset_rejects_bad_options(args, message):
    shape, classes, *options = args
    with pytest.raises(ValueError, match=message):
        get_preset("mlp")(shape, classes, **(options[0] if options else {}))


def test_registry_and_unknown_preset():
    assert "mlp" in PRESETS and PRESETS["mlp"] is get_preset("mlp")
    with pytest.raises(ModelSpecError, match="unknown model preset 'nope'; choose one of mlp"):
        get_preset("nope")


def test_build_model_from_a_user_function(tmp_path, monkeypatch):
    (tmp_path / "mynets.py").write_text(
        "import nnx\n"
        "def tiny(input_shape, num_classes):\n"
        "    return nnx.Sequential(nnx.Linear(input_shape[0], num_classes, rng=0))\n"
        "def bad(input_shape, num_classes):\n"
        "    return [1, 2]\n"
        "def broken(input_shape, num_classes):\n"
        "    raise RuntimeError('no good')\n"
        "NOT_CALLABLE = 3\n"
    )
    monkeypatch.chdir(tmp_path)
    monkeypatch.delitem(__import__("sys").modules, "mynets", raising=False)
    model = build_model("mynets:tiny", (4,), 3)
    assert model[0].weight.shape == (4, 3)
    # the library names the argument (model=...); the training command rewords it as its flag
    with pytest.raises(
        ModelSpecError, match=r"^model='mynets:bad' returned list, not an nnx\.Module"
    ) as caught:
        build_model("mynets:bad", (4,), 3)
    assert caught.value.spec == "mynets:bad"
    with pytest.raises(ModelSpecError, match=r"failed to build .* \(RuntimeError: no good\)"):
        build_model("mynets:broken", (4,), 3)
    with pytest.raises(ModelSpecError, match="NOT_CALLABLE is a int, not a function"):
        build_model("mynets:NOT_CALLABLE", (4,), 3)
    with pytest.raises(ModelSpecError, match="mynets has no attribute 'missing'"):
        build_model("mynets:missing", (4,), 3)
    with pytest.raises(ModelSpecError, match="cannot import no_such_module"):
        build_model("no_such_module:f", (4,), 3)
    with pytest.raises(ModelSpecError, match="expected package.module:function"):
        build_model("mynets:", (4,), 3)


def test_accepted_options():
    def plain(input_shape, num_classes):
        return None

    def some(input_shape, num_classes, *, hidden=(), seed=0):
        return None

    def anything(input_shape, num_classes, **options):
        return None

    options = {"hidden": [4], "seed": 1, "dropout": 0.5}
    assert accepted_options(plain, options) == {}
    assert accepted_options(some, options) == {"hidden": [4], "seed": 1}
    assert accepted_options(anything, options) == options
