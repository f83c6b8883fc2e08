"""End to end: a 2-layer MLP trained with plain gradient descent, on every backend."""

import numpy as np

import nnx


def _synthetic(n=256, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.uniform(-1, 1, size=(n, 2))
    y = np.stack([np.sin(2 * x[:, 0]) + x[:, 1] ** 2, x[:, 0] * x[:, 1]], axis=1)
    return x.astype(np.float32), y.astype(np.float32)


def test_gradient_descent_drives_the_loss_down_tenfold(backend):
    x_host, y_host = _synthetic()
    x, y = backend.asarray(x_host), backend.asarray(y_host)
    model = nnx.Sequential(
        nnx.Linear(2, 32, rng=0, init="he_normal"), nnx.Tanh(), nnx.Linear(32, 2, rng=1)
    ).to(backend)
    loss_fn = nnx.MSELoss()
    losses = []
    for _ in range(400):
        losses.append(float(nnx.to_numpy(loss_fn(model(x), y))))
        model.zero_grad()  # backward adds into p.grad
        model.backward(loss_fn.backward())
        for p in model.parameters():
            p.value = p.value - 0.2 * p.grad  # rebinding works on every backend
    assert losses[-1] < losses[0] / 10, (losses[0], losses[-1])
    assert all(p.value.dtype == backend.xp.float32 for p in model.parameters())


def test_classifier_learns_with_cross_entropy(backend):
    rng = np.random.default_rng(1)
    centers = np.array([[2.0, 0.0], [-2.0, 0.0], [0.0, 2.5]])
    labels = rng.integers(0, 3, size=300)
    x_host = (centers[labels] + rng.standard_normal((300, 2))).astype(np.float32)
    x, t = backend.asarray(x_host), backend.asarray(labels)
    model = nnx.Sequential(nnx.Linear(2, 16, rng=0), nnx.ReLU(), nnx.Linear(16, 3, rng=1)).to(
        backend
    )
    loss_fn = nnx.CrossEntropyLoss()
    first = float(nnx.to_numpy(loss_fn(model(x), t)))
    for _ in range(200):
        loss_fn(model(x), t)
        model.zero_grad()
        model.backward(loss_fn.backward())
        for p in model.parameters():
            p.value = p.value - 0.5 * p.grad
    logits = nnx.to_numpy(model(x))
    assert float(nnx.to_numpy(loss_fn(model(x), t))) < first / 3
    assert (logits.argmax(axis=1) == labels).mean() > 0.9
