"""Run an nnx layer and its PyTorch twin on the same float64 data and compare everything."""

from __future__ import annotations

import numpy as np

import nnx


def copy_into_torch(module, tmodule):
    """Give the torch module the nnx module's parameter and buffer values (matched by name)."""
    import torch

    tparams = dict(tmodule.named_parameters())
    tbuffers = dict(tmodule.named_buffers())
    for name, p in module.named_parameters():
        tparams[name].data = torch.tensor(np.array(nnx.to_numpy(p.value)))
    for name, b in module.named_buffers():
        tbuffers[name].data = torch.tensor(np.array(nnx.to_numpy(b.value)))


def compare(module, tmodule, shape, *, steps=1, seed=0, tol=1e-9, train=True):
    """Forward, input gradient, every parameter gradient and every buffer, ``steps`` times
    (fresh data each step; parameters unchanged), within ``tol`` (absolute and relative)."""
    import torch

    module = module.to(dtype="float64")
    tmodule = tmodule.double()
    copy_into_torch(module, tmodule)
    module.train(train)
    tmodule.train(train)
    rng = np.random.default_rng(seed)
    for step in range(steps):
        x = rng.standard_normal(shape)
        xt = torch.tensor(x, requires_grad=True)
        module.zero_grad()
        y = module(x)
        yt = tmodule(xt)
        assert y.shape == tuple(yt.shape), (y.shape, tuple(yt.shape))
        np.testing.assert_allclose(
            y, yt.detach().numpy(), rtol=tol, atol=tol, err_msg=f"output, step {step}"
        )
        g = rng.standard_normal(y.shape)
        yt.backward(torch.tensor(g))
        dx = module.backward(g)
        np.testing.assert_allclose(
            dx, xt.grad.numpy(), rtol=tol, atol=tol, err_msg=f"input grad, step {step}"
        )
        tparams = dict(tmodule.named_parameters())
        for name, p in module.named_parameters():
            np.testing.assert_allclose(
                p.grad,
                tparams[name].grad.numpy(),
                rtol=tol,
                atol=tol,
                err_msg=f"{name} grad, step {step}",
            )
            tparams[name].grad = None
        tbuffers = dict(tmodule.named_buffers())
        for name, b in module.named_buffers():
            np.testing.assert_allclose(
                nnx.to_numpy(b.value),
                tbuffers[name].numpy(),
                rtol=tol,
                atol=tol,
                err_msg=f"{name}, step {step}",
            )
    return module
