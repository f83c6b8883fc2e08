"""Lazy shapes: ``Linear(None, 4)`` and the other opted-in layers infer their input size at the
first call, equal to the eager layer built with that size; before it, listing parameters fails
with one clear error; after it, files, state dicts, to(), summary and the Trainer work."""

import numpy as np
import pytest

import nnx
from tests.conftest import host_normal

# (lazy factory, eager factory, input shape)
LAYERS = {
    "linear": (
        lambda: nnx.Linear(None, 4, rng=0),
        lambda: nnx.Linear(3, 4, rng=0),
        (2, 5, 3),
    ),
    "linear-generator": (
        lambda: nnx.Linear(None, 4, rng=np.random.default_rng(7), bias_init="glorot_uniform"),
        lambda: nnx.Linear(3, 4, rng=np.random.default_rng(7), bias_init="glorot_uniform"),
        (2, 3),
    ),
    "conv1d": (
        lambda: nnx.Conv1d(None, 4, 3, padding=1, rng=1),
        lambda: nnx.Conv1d(2, 4, 3, padding=1, rng=1),
        (2, 2, 6),
    ),
    "conv2d-groups": (
        lambda: nnx.Conv2d(None, 4, 3, groups=2, rng=2),
        lambda: nnx.Conv2d(6, 4, 3, groups=2, rng=2),
        (1, 6, 5, 5),
    ),
    "conv-transpose2d": (
        lambda: nnx.ConvTranspose2d(None, 2, 2, stride=2, rng=3),
        lambda: nnx.ConvTranspose2d(3, 2, 2, stride=2, rng=3),
        (1, 3, 3, 3),
    ),
    "batchnorm1d": (lambda: nnx.BatchNorm1d(None), lambda: nnx.BatchNorm1d(3), (4, 3)),
    "batchnorm2d": (
        lambda: nnx.BatchNorm2d(None, momentum=0.3),
        lambda: nnx.BatchNorm2d(3, momentum=0.3),
        (2, 3, 2, 2),
    ),
    "groupnorm": (lambda: nnx.GroupNorm(2, None), lambda: nnx.GroupNorm(2, 4), (2, 4, 3)),
}


@pytest.mark.parametrize("name", list(LAYERS))
def test_lazy_layer_equals_the_eager_one(name):
    make_lazy, make_eager, shape = LAYERS[name]
    lazy, eager = make_lazy(), make_eager()
    x = host_normal(shape, seed=1).astype(np.float32)
    with pytest.raises(nnx.UnbuiltModuleError, match="call the model once"):
        list(lazy.parameters())
    np.testing.assert_array_equal(lazy(x), eager(x))
    assert repr(lazy) == repr(eager)
    assert nnx.module_config(lazy) == nnx.module_config(eager)
    for (n1, a), (n2, b) in zip(lazy.state_dict().items(), eager.state_dict().items(), strict=True):
        assert n1 == n2
        np.testing.assert_array_equal(a, b)
    g = host_normal(tuple(eager(x).shape), seed=2).astype(np.float32)
    np.testing.assert_array_equal(lazy.backward(g), eager.backward(g))


def test_the_inferred_size_is_recorded_for_files(tmp_path):
    model = nnx.Sequential(nnx.Linear(None, 4, rng=0), nnx.ReLU(), nnx.Linear(None, 2, rng=1))
    x = host_normal((5, 3), seed=0).astype(np.float32)
    assert model.build(x) is model
    assert nnx.module_config(model)["modules"][1]["args"]["in_features"] == 3
    again = nnx.load_model(nnx.save_model(tmp_path / "m.npz", model))
    assert again[0].in_features == 3 and again[2].in_features == 4
    np.testing.assert_array_equal(again(x), model(x))
    assert nnx.summary(model, (3,), print_fn=None).endswith("buffers): 0")
    nnx.save_checkpoint(tmp_path / "c.npz", model)
    twin = nnx.Sequential(nnx.Linear(None, 4, rng=5), nnx.ReLU(), nnx.Linear(None, 2, rng=6))
    nnx.load_checkpoint(tmp_path / "c.npz", twin.build(x))  # an unbuilt one is built first
    np.testing.assert_array_equal(twin(x), model(x))
    np.testing.assert_array_equal(nnx.load_model(tmp_path / "c.npz")(x), model(x))


def test_before_the_first_call_listing_fails_clearly(tmp_path):
    model = nnx.Sequential(nnx.Conv2d(None, 4, 3, rng=0), nnx.ReLU(), nnx.Flatten())
    expected = (
        r"Conv2d\(in_channels=None, out_channels=4, kernel_size=3\) \(at '0'\) infers "
        r"in_channels at its first call and has no parameters yet: call the model once"
    )
    for action in (
        lambda: list(model.parameters()),
        lambda: model.state_dict(),
        lambda: nnx.optim.SGD(model.parameters(), lr=0.1),
        lambda: nnx.save_model(tmp_path / "m.npz", model),
        lambda: nnx.save_checkpoint(tmp_path / "c.npz", model),
        lambda: nnx.summary(model, (2, 5, 5), print_fn=None),
    ):
        with pytest.raises(nnx.UnbuiltModuleError, match=expected):
            action()
    model.zero_grad()  # tolerated: nothing to clear
    model.eval()
    assert "in_channels=None" in repr(model)


def test_bad_arguments_fail_at_construction_and_wrong_inputs_leave_it_unbuilt():
    with pytest.raises(ValueError, match="Linear: out_features must be a positive integer"):
        nnx.Linear(None, 0)
    with pytest.raises(ValueError, match=r"divisible by groups \(2\) \(in_channels=None, checked"):
        nnx.Conv2d(None, 3, 3, groups=2)
    with pytest.raises(ValueError, match="GroupNorm: num_groups must be a positive integer"):
        nnx.GroupNorm(0, None)
    conv = nnx.Conv2d(None, 4, 3, rng=0)
    with pytest.raises(ValueError, match="expected input of shape"):
        conv(np.ones((2, 3), np.float32))  # would infer 3 channels from a wrong input
    with pytest.raises(nnx.UnbuiltModuleError):
        list(conv.parameters())
    with pytest.raises(ValueError, match="cannot infer in_features from axis -1"):
        nnx.Linear(None, 2)(np.float32(1.0))
    assert conv(np.ones((1, 2, 4, 4), np.float32)).shape == (1, 4, 2, 2)
    assert nnx.module_config(conv)["args"]["in_channels"] == 2


def test_to_and_modes_before_the_first_call_are_kept():
    bn = nnx.BatchNorm1d(None, dtype="float32")
    bn.to("strict:device1", dtype="float64").eval()
    backend = nnx.get_backend("strict:device1")
    x = backend.asarray(host_normal((4, 3)))
    bn(x)
    assert str(bn.weight.value.dtype).endswith("float64") and not bn.training
    assert bn.running_mean.value.device == x.device
    assert float(nnx.to_numpy(bn.num_batches_tracked.value)) == 0  # eval: no update


def test_a_lazy_first_layer_gets_its_gradient():
    model = nnx.Sequential(nnx.Linear(None, 3, rng=0), nnx.Tanh(), nnx.Linear(3, 2, rng=1))
    x = host_normal((4, 5))
    model.build(x.astype(np.float32))
    assert nnx.gradcheck(model, x).ok
    model.zero_grad()
    loss = nnx.MSELoss()
    loss(model(x.astype(np.float32)), np.zeros((4, 2), np.float32))
    model.backward(loss.backward())
    assert all(p.grad is not None for p in model.parameters())


def test_trainer_with_lazy_layers():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((32, 2, 4, 4)).astype(np.float32)
    y = (x.mean(axis=(1, 2, 3)) > 0).astype(np.int64)
    model = nnx.Sequential(
        nnx.Conv2d(None, 4, 3, padding=1, rng=0),
        nnx.BatchNorm2d(None),
        nnx.ReLU(),
        nnx.Flatten(),
        nnx.Linear(None, 2, rng=1),
    )
    model.build(x[:2])
    assert model[1].running_mean.value.tolist() == [0.0] * 4  # build ran in evaluation mode
    assert model.training
    optimizer = nnx.optim.Adam(model.parameters(), lr=0.01)
    trainer = nnx.Trainer(model, nnx.CrossEntropyLoss(), optimizer, device="cpu", progress=False)
    history = trainer.fit((x, y), epochs=3, batch_size=16)
    assert history.records[-1]["train_loss"] < history.records[0]["train_loss"]


def test_batchnorm3d_and_instance_norms_infer_their_channels():
    for make, shape in (
        (lambda c: nnx.BatchNorm3d(c), (2, 3, 2, 2, 2)),
        (lambda c: nnx.InstanceNorm1d(c, affine=True), (2, 3, 4)),
        (lambda c: nnx.InstanceNorm3d(c, track_running_stats=True), (2, 3, 2, 2, 2)),
    ):
        lazy, eager = make(None), make(3)
        x = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
        np.testing.assert_allclose(lazy(x), eager(x), rtol=1e-6)
        assert lazy.state_dict().keys() == eager.state_dict().keys()
