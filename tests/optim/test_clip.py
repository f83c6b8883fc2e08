import numpy as np
import pytest

import nnx
from nnx.optim import clip_grad_norm, clip_grad_value


def _params(backend, grads):
    params = []
    for g in grads:
        p = nnx.Parameter(backend.asarray(np.zeros(len(g)), dtype="float32"))
        p.grad = backend.asarray(np.array(g), dtype="float32")
        params.append(p)
    return params


def test_clip_grad_norm_scales_globally(backend):
    params = _params(backend, [[3.0], [4.0, 0.0]])  # global norm 5
    total = clip_grad_norm(params, max_norm=1.0)
    assert float(nnx.to_numpy(total)) == pytest.approx(5.0)
    np.testing.assert_allclose(nnx.to_numpy(params[0].grad), [0.6], rtol=1e-5)
    np.testing.assert_allclose(nnx.to_numpy(params[1].grad), [0.8, 0.0], rtol=1e-5)
    assert params[0].grad.dtype == backend.xp.float32 and backend.owns(params[0].grad)


def test_clip_grad_norm_leaves_small_gradients(backend):
    params = _params(backend, [[0.3], [0.4]])
    clip_grad_norm(params, max_norm=1.0)
    np.testing.assert_allclose(nnx.to_numpy(params[1].grad), [0.4], rtol=1e-6)


@pytest.mark.torch
def test_clip_grad_norm_matches_torch():
    torch = pytest.importorskip("torch")
    grads = [np.random.default_rng(i).standard_normal(s) for i, s in enumerate([(3, 4), (4,)])]
    params = [nnx.Parameter(np.zeros_like(g)) for g in grads]
    for p, g in zip(params, grads, strict=True):
        p.grad = g.copy()
    total = clip_grad_norm(params, 0.5)
    tensors = [torch.zeros(g.shape, dtype=torch.float64, requires_grad=True) for g in grads]
    for t, g in zip(tensors, grads, strict=True):
        t.grad = torch.tensor(g)
    t_total = torch.nn.utils.clip_grad_norm_(tensors, 0.5)
    assert float(total) == pytest.approx(float(t_total), rel=1e-12)
    for p, t in zip(params, tensors, strict=True):
        np.testing.assert_allclose(p.grad, t.grad.numpy(), rtol=1e-12)


def test_clip_grad_value(backend):
    params = _params(backend, [[-3.0, 0.2, 5.0]])
    clip_grad_value(params, 1.0)
    np.testing.assert_allclose(nnx.to_numpy(params[0].grad), [-1.0, 0.2, 1.0], rtol=1e-6)


def test_no_gradients_and_bad_arguments():
    p = nnx.Parameter(np.zeros(2))
    assert clip_grad_norm([p], 1.0) is None
    clip_grad_value([p], 1.0)
    assert p.grad is None
    with pytest.raises(ValueError, match="max_norm must be a finite number"):
        clip_grad_norm([p], -1.0)
    with pytest.raises(ValueError, match="clip_value must be a finite number"):
        clip_grad_value([p], float("inf"))
