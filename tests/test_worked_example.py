"""The 2x2 "diagonal flip" network worked by hand in shared/seeds/002 (loss 0.8963, 31 gradients).

Floating-point note: hidden neuron 0's pre-activation is exactly 0 in real arithmetic
(0.2 + 0.1 - 0.4 + 0.1), but float64 gives about +-3e-17 depending on summation order, which is
on the live or the dead side of the ReLU kink by chance. The book rounds ``z1`` to 10 decimals
so it is exactly 0, where nnx (like the book) takes ReLU'(0) = 0. ``test_matches_the_book``
does the same rounding between the layers, using each module's backward by hand;
``test_whole_model_differs_only_at_the_kink`` runs the model unrounded and checks that only the
gradients routed through neuron 0 can differ, and by no more than the book's dL/dh0 = -0.0975.
"""

import numpy as np
import pytest

import nnx

W1 = [[0.2, -0.5, 0.1], [-0.3, 0.4, -0.2], [0.1, 0.3, 0.5], [-0.4, 0.2, -0.1]]
B1 = [0.1, -0.1, 0.0]
W2 = [[0.3, -0.2, 0.4, 0.1], [-0.1, 0.5, -0.3, 0.2], [0.2, -0.4, 0.1, -0.5]]
B2 = [0.0, 0.1, -0.1, 0.0]
X = [[1.0, 0.0, 1.0, 1.0]]
TARGET = [[1.0, 1.0, 0.0, 1.0]]

# every gradient listed in the book
BOOK = {
    "loss": 0.8963,
    "dL/dy": [-0.45, -0.55, -0.025, -0.625],
    "2.weight": [[0, 0, 0, 0], [0, 0, 0, 0], [-0.225, -0.275, -0.0125, -0.3125]],
    "2.bias": [-0.45, -0.55, -0.025, -0.625],
    "dL/dh": [-0.0975, -0.3475, 0.44],
    "dL/dz1": [0.0, 0.0, 0.44],
    "0.weight": [[0, 0, 0.44], [0, 0, 0], [0, 0, 0.44], [0, 0, 0.44]],
    "0.bias": [0.0, 0.0, 0.44],
}


def _network(backend):
    model = nnx.Sequential(
        nnx.Linear(4, 3, dtype="float64", device=backend),
        nnx.ReLU(),
        nnx.Linear(3, 4, dtype="float64", device=backend),
    )
    model.load_state_dict(
        {
            "0.weight": np.array(W1),
            "0.bias": np.array(B1),
            "2.weight": np.array(W2),
            "2.bias": np.array(B2),
        }
    )
    return model


def _close(actual, expected, **kw):
    np.testing.assert_allclose(
        nnx.to_numpy(actual).reshape(np.shape(expected)), expected, atol=1e-12, **kw
    )


def test_matches_the_book(backend):
    model = _network(backend)
    hidden, relu, output = model
    xp = backend.xp
    loss_fn = nnx.MSELoss()
    x = backend.asarray(np.array(X), dtype="float64")
    z1 = xp.round(hidden(x) * 1e10) / 1e10  # the book's np.round(z1, 10): z1[0] becomes exactly 0
    _close(z1, [0.0, -0.1, 0.5])
    y = output(relu(z1))
    _close(y, [0.1, -0.1, -0.05, -0.25])
    loss = loss_fn(y, backend.asarray(np.array(TARGET), dtype="float64"))
    assert float(nnx.to_numpy(loss)) == pytest.approx(BOOK["loss"], abs=5e-5)
    assert float(nnx.to_numpy(loss)) == pytest.approx(3.585 / 4, abs=1e-12)

    dy = loss_fn.backward()
    _close(dy, BOOK["dL/dy"])
    dh = output.backward(dy)
    _close(dh, BOOK["dL/dh"])
    dz1 = relu.backward(dh)
    _close(dz1, BOOK["dL/dz1"])  # neurons 0 (z = 0) and 1 (z < 0) are dead
    hidden.backward(dz1)
    grads = {name: p.grad for name, p in model.named_parameters()}
    for name in ("0.weight", "0.bias", "2.weight", "2.bias"):
        _close(grads[name], BOOK[name], err_msg=name)


def test_whole_model_differs_only_at_the_kink(backend):
    model = _network(backend)
    x = backend.asarray(np.array(X), dtype="float64")
    z1 = nnx.to_numpy(model[0](x))
    assert abs(z1[0, 0]) < 1e-15  # exactly at the kink up to rounding noise
    loss_fn = nnx.MSELoss()
    loss = loss_fn(model(x), backend.asarray(np.array(TARGET), dtype="float64"))
    assert float(nnx.to_numpy(loss)) == pytest.approx(3.585 / 4, abs=1e-12)
    model.backward(loss_fn.backward())
    grads = {name: nnx.to_numpy(p.grad) for name, p in model.named_parameters()}
    _close(grads["2.bias"], BOOK["2.bias"])
    _close(grads["2.weight"], BOOK["2.weight"])  # h0 is 0 or ~3e-17: no visible difference
    live = np.array([False, True, True])  # columns not routed through neuron 0
    _close(grads["0.weight"][:, live], np.array(BOOK["0.weight"])[:, live])
    _close(grads["0.bias"][live], np.array(BOOK["0.bias"])[live])
    # through neuron 0 the gradient is either the book's 0 (z1[0] <= 0) or dL/dh0 * x (z1[0] > 0)
    expected_col0 = (-0.0975 * np.array(X[0])) if z1[0, 0] > 0 else np.zeros(4)
    _close(grads["0.weight"][:, 0], expected_col0)
