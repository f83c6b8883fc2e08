"""The Trainer on every kind of data: arrays, DataLoaders, map-style and iterable-style
datasets, iterables of batches (generators, lists, PyTorch DataLoaders) and memory maps.

Each kind trains to exactly the weights of the same batches given as arrays.
"""

import threading

import numpy as np
import pytest

import nnx
from nnx.data import ArrayDataset, DataLoader
from nnx.data.stream import BatchStream

N, D, C = 20, 3, 3


def _arrays(n=N):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(n, D)).astype(np.float32)
    return x, (np.arange(n) % C).astype(np.int64)


def _trainer(device="cpu", **kw):
    model = nnx.Sequential(nnx.Linear(D, 4, rng=0), nnx.ReLU(), nnx.Linear(4, C, rng=1))
    opt = nnx.optim.SGD(model.parameters(), lr=0.1)
    return nnx.Trainer(model, nnx.CrossEntropyLoss(), opt, device=device, progress=False, **kw)


def _weights(trainer):
    return [nnx.to_numpy(p.value).copy() for p in trainer.model.parameters()]


def _batches(x, y, size=6):
    return [(x[i : i + size], y[i : i + size]) for i in range(0, len(x), size)]


class MapStyle:
    """A PyTorch-style map dataset: one sample per index."""

    def __init__(self, x, y):
        self.x, self.y = x, y

    def __len__(self):
        return len(self.x)

    def __getitem__(self, i):
        return self.x[i], self.y[i]


class IterableDataset:  # the name PyTorch's iterable-style datasets carry
    def __init__(self, x, y):
        self.x, self.y = x, y

    def __iter__(self):
        return iter(zip(self.x, self.y, strict=True))


def _reference(epochs=2, shuffle=False):
    x, y = _arrays()
    trainer = _trainer()
    history = trainer.fit((x, y), epochs=epochs, batch_size=6, shuffle=shuffle)
    return _weights(trainer), history


def test_batches_of_every_kind_train_as_arrays():
    x, y = _arrays()
    expected, history = _reference(shuffle=False)
    kinds = {
        "list": _batches(x, y),
        "re-iterable": type("Again", (), {"__iter__": lambda self: iter(_batches(x, y))})(),
        "iterable dataset": IterableDataset(x, y),
        "DataLoader": DataLoader(ArrayDataset(x, y), 6, shuffle=False),
        "map-style": MapStyle(x, y),
    }
    for name, data in kinds.items():
        trainer = _trainer()
        got = trainer.fit(data, epochs=2, batch_size=6, shuffle=False)
        for a, b in zip(_weights(trainer), expected, strict=True):
            np.testing.assert_array_equal(a, b, err_msg=name)
        assert got.records[-1]["train_loss"] == pytest.approx(history.records[-1]["train_loss"])
        assert trainer.evaluate(data)["loss"] == pytest.approx(trainer.evaluate((x, y))["loss"])


def test_shuffled_map_style_and_memmap_repeat_the_array_order(tmp_path):
    x, y = _arrays()
    expected, _ = _reference(shuffle=True)
    np.save(tmp_path / "x.npy", x)
    memmapped = ArrayDataset(np.load(tmp_path / "x.npy", mmap_mode="r"), y)
    for data in (MapStyle(x, y), memmapped, DataLoader(memmapped, 6, prefetch=2)):
        trainer = _trainer()
        trainer.fit(data, epochs=2, batch_size=6, shuffle=True)
        for a, b in zip(_weights(trainer), expected, strict=True):
            np.testing.assert_array_equal(a, b)


def test_predict_on_every_kind():
    x, y = _arrays()
    trainer = _trainer()
    expected = nnx.to_numpy(trainer.predict(x))
    kinds = (
        iter(_batches(x, y)),
        iter([x[:7], x[7:]]),
        MapStyle(x, y),
        DataLoader(ArrayDataset(x), 6),
    )
    for data in kinds:  # a list stays several inputs in predict, as before
        np.testing.assert_allclose(nnx.to_numpy(trainer.predict(data)), expected, rtol=1e-6)


def test_a_generator_serves_one_epoch():
    x, y = _arrays()
    trainer = _trainer()
    trainer.fit((b for b in _batches(x, y)), epochs=1)
    assert trainer.epoch == 1
    with pytest.raises(ValueError, match="one-shot iterator .* exhausted by an earlier epoch"):
        _trainer().fit((b for b in _batches(x, y)), epochs=2)
    with pytest.raises(ValueError, match="yielded no batches"):
        _trainer().fit([], epochs=1)


def test_streamed_batches_are_checked_as_they_arrive():
    x, y = _arrays()
    bad = x.copy()
    bad[8, 1] = np.nan
    with pytest.raises(ValueError, match="a batch of the training inputs holds NaN"):
        _trainer().fit(_batches(bad, y), epochs=1)
    with pytest.raises(ValueError, match="label"):  # the loss checks each batch's labels
        _trainer().fit(_batches(x, y + 5), epochs=1)
    with pytest.raises(TypeError, match="a batch is a ndarray, not an \\(x, y\\) pair"):
        _trainer().fit([x], epochs=1)
    with pytest.raises(ValueError, match="accumulate needs each epoch's batch sizes"):
        _trainer(accumulate=2).fit(_batches(x, y), epochs=1)


def test_prefetch_keeps_the_order_and_reraises():
    x, y = _arrays(23)
    plain = DataLoader(ArrayDataset(x, y), 5, seed=4)
    ahead = DataLoader(ArrayDataset(x, y), 5, seed=4, prefetch=2)
    for epoch in range(2):
        plain.set_epoch(epoch)
        ahead.set_epoch(epoch)
        for (a, b), (c, d) in zip(plain, ahead, strict=True):
            np.testing.assert_array_equal(a, c)
            np.testing.assert_array_equal(b, d)

    class Broken(MapStyle):
        def __getitem__(self, i):
            if i == 12:
                raise KeyError("sample 12 is missing")
            return super().__getitem__(i)

    with pytest.raises(KeyError, match="sample 12 is missing"):
        list(DataLoader(Broken(x, y), 5, shuffle=False, prefetch=2))


def test_an_abandoned_prefetching_epoch_stops_its_thread():
    x, y = _arrays(200)
    batches = iter(DataLoader(MapStyle(x, y), 2, prefetch=2))
    next(batches)
    assert any(t.name == "nnx-prefetch" for t in threading.enumerate())
    batches.close()
    assert not any(t.name == "nnx-prefetch" for t in threading.enumerate())


def test_a_stream_converts_per_batch_to_the_backend(backend):
    x, y = _arrays()
    stream = BatchStream(_batches(x, y), backend=backend, dtype="float32")
    for xb, yb in stream:
        assert backend.owns(xb) and backend.owns(yb)
    assert stream.batch_rows(3) == (0, 2, 2)


@pytest.mark.torch
def test_pytorch_dataloaders_and_datasets():
    torch = pytest.importorskip("torch")
    from torch.utils.data import DataLoader as TorchLoader
    from torch.utils.data import IterableDataset as TorchIterable
    from torch.utils.data import TensorDataset

    x, y = _arrays()
    expected, _ = _reference(shuffle=False)
    tensors = TensorDataset(torch.from_numpy(x), torch.from_numpy(y))

    class Samples(TorchIterable):
        def __iter__(self):
            return iter(zip(torch.from_numpy(x), torch.from_numpy(y), strict=True))

    for data in (TorchLoader(tensors, batch_size=6), tensors, Samples()):
        for device in ("cpu", "torch"):
            trainer = _trainer(device)
            trainer.fit(data, epochs=2, batch_size=6, shuffle=False)
            for a, b in zip(_weights(trainer), expected, strict=True):
                np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_resume_across_epochs_repeats_the_order_of_a_map_style_dataset(tmp_path):
    """The order of epoch e comes from (seed, e), and the checkpoint's counters hold both."""
    x, y = _arrays()
    straight = _trainer(seed=5)
    straight.fit(MapStyle(x, y), epochs=4, batch_size=6)
    first = _trainer(seed=5)
    first.fit(MapStyle(x, y), epochs=2, batch_size=6)
    first.save_checkpoint(tmp_path / "ck.npz")
    again = _trainer(seed=5)
    again.load_checkpoint(tmp_path / "ck.npz")
    again.fit(MapStyle(x, y), epochs=4, batch_size=6)
    for a, b in zip(_weights(again), _weights(straight), strict=True):
        np.testing.assert_array_equal(a, b)
    assert again.history.records[-1]["train_loss"] == straight.history.records[-1]["train_loss"]
