"""A small CNN trained with the Trainer on digit images: learns, and resumes exactly from a
checkpoint with its BatchNorm buffers and Dropout2d masks."""

import numpy as np
import pytest

import nnx
from nnx.datasets import load_dataset
from nnx.optim import SGD


def _images(n_train=300, n_test=100):
    data = load_dataset("digits")
    (xtr, ytr), (xte, yte) = data.train, data.test
    as_img = lambda x: x.reshape(-1, 1, 8, 8).astype(np.float32)  # noqa: E731
    return (as_img(xtr[:n_train]), ytr[:n_train]), (as_img(xte[:n_test]), yte[:n_test])


def _cnn():
    return nnx.Sequential(
        nnx.Conv2d(1, 4, 3, padding=1, rng=0),
        nnx.BatchNorm2d(4),
        nnx.ReLU(),
        nnx.MaxPool2d(2),
        nnx.Dropout2d(0.1),
        nnx.Conv2d(4, 6, 3, padding=1, groups=2, rng=1),
        nnx.BatchNorm2d(6, momentum=None),
        nnx.ReLU(),
        nnx.AdaptiveAvgPool2d(1),
        nnx.Flatten(),
        nnx.Linear(6, 10, rng=2),
    )


def _trainer(device):
    model = _cnn()
    opt = SGD(model.parameters(), lr=0.05, momentum=0.9)
    return nnx.Trainer(model, nnx.CrossEntropyLoss(), opt, device=device, seed=3, progress=False)


@pytest.mark.parametrize("device", ["numpy", "strict:device1"])
def test_cnn_resumes_exactly_with_its_buffers(tmp_path, device):
    train, test = _images()
    straight = _trainer(device)
    straight.fit(train, test, epochs=3, batch_size=64)
    first = _trainer(device)
    first.fit(train, test, epochs=2, batch_size=64)
    first.save_checkpoint(tmp_path / "half.npz")
    resumed = _trainer(device)
    resumed.load_checkpoint(tmp_path / "half.npz")
    for (name, a), (_, b) in zip(
        first.model.state_dict().items(), resumed.model.state_dict().items(), strict=True
    ):
        np.testing.assert_array_equal(a, b, err_msg=name)  # buffers round-trip exactly
    resumed.fit(train, test, epochs=3, batch_size=64)
    state = straight.model.state_dict()
    assert "1.running_var" in state and "6.num_batches_tracked" in state
    assert int(state["1.num_batches_tracked"]) == 3 * 5
    for (name, a), (_, b) in zip(state.items(), resumed.model.state_dict().items(), strict=True):
        np.testing.assert_array_equal(a, b, err_msg=name)


def test_cnn_learns_digit_images():
    train, test = _images(1000, 300)
    model = nnx.Sequential(
        nnx.Conv2d(1, 8, 3, padding=1, rng=0),
        nnx.BatchNorm2d(8),
        nnx.ReLU(),
        nnx.MaxPool2d(2),
        nnx.Conv2d(8, 16, 3, padding=1, rng=1),
        nnx.BatchNorm2d(16),
        nnx.ReLU(),
        nnx.AdaptiveAvgPool2d(1),
        nnx.Flatten(),
        nnx.Linear(16, 10, rng=2),
    )
    opt = nnx.optim.Adam(model.parameters(), lr=0.01)
    trainer = nnx.Trainer(model, nnx.CrossEntropyLoss(), opt, seed=0, progress=False)
    history = trainer.fit(train, test, epochs=5, batch_size=32)
    assert history["train_loss"][-1] < 0.5 * history["train_loss"][0]
    assert max(history["val_accuracy"]) > 0.85, history.records
