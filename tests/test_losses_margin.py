"""The margin and embedding losses: PyTorch parity (every reduction, a spread of options and
PyTorch's own common_nn configurations) on NumPy, array-api-strict and JAX, gradcheck on every
backend, PyTorch's subgradients exactly at the hinges' corners, stability at |x| = 1e4, 16-bit
inputs, one-line errors, and the command's --loss."""

from __future__ import annotations

import copy
import json
import math

import numpy as np
import pytest

import nnx
from nnx.backend import backend_available
from tests.layers.torch_oracle import ORACLE_BACKENDS, check_torch_loss_configs, compare_loss

REDUCTIONS = ("none", "mean", "sum")
RNG = np.random.default_rng(3)
N, C, D = 3, 4, 5
X = RNG.standard_normal((N, C))
LABELS = np.array([2, 0, 3])
WEIGHT = np.array([0.5, 2.0, 1.0, 1.5])
SIGNS = np.array([[1.0, -1.0, 1.0, 1.0], [-1.0, -1.0, 1.0, -1.0], [1.0, 1.0, -1.0, 1.0]])
MULTI = np.array([[3, 0, -1, 1], [1, 1, 2, -1], [-1, 2, 0, 0]])  # duplicates, -1 ends the list
A, P, M = (RNG.standard_normal((N, D)) for _ in range(3))


def _cosine_distance_torch(a, b):
    import torch.nn.functional as F

    return 1.0 - F.cosine_similarity(a, b, dim=-1)


class CosineDistance(nnx.Module):
    """``1 - x.y / (|x| |y|)`` over the last axis, a module of two inputs (test-local: the
    similarity family has its own module); backward returns ``(d_x, d_y)``."""

    def forward(self, x, y):
        xp = nnx.backend.namespace(x)
        nx = xp.sqrt(xp.sum(x * x, axis=-1, keepdims=True))
        ny = xp.sqrt(xp.sum(y * y, axis=-1, keepdims=True))
        self._cache = (x, y, nx, ny)
        return 1.0 - xp.sum(x * y, axis=-1) / (nx[..., 0] * ny[..., 0])

    def backward(self, g):
        xp = nnx.backend.namespace(g)
        x, y, nx, ny = self._cache
        cos = xp.sum(x * y, axis=-1, keepdims=True) / (nx * ny)
        g = -xp.expand_dims(g, axis=-1)
        return g * (y / (nx * ny) - cos * x / (nx * nx)), g * (x / (nx * ny) - cos * y / (ny * ny))


class ScaledDistance(nnx.Module):
    """``s * |x - y|^2`` with a learned scale ``s``: a distance with a parameter."""

    def __init__(self):
        self.scale = nnx.Parameter(np.array([1.5]))

    def forward(self, x, y):
        xp = nnx.backend.namespace(x)
        self._diff = x - y
        return self.scale.value * xp.sum(self._diff * self._diff, axis=-1)

    def backward(self, g):
        xp = nnx.backend.namespace(g)
        self.scale.accumulate(xp.reshape(xp.sum(g * xp.sum(self._diff**2, axis=-1)), (1,)))
        gx = 2.0 * self.scale.value * xp.expand_dims(g, axis=-1) * self._diff
        return gx, -gx


def _cases():
    """id -> (make nnx loss(reduction), make torch loss(reduction), inputs, differentiable)."""
    import torch
    import torch.nn as tnn

    w = torch.tensor(WEIGHT)

    return {
        "multimargin": (
            lambda r: nnx.MultiMarginLoss(reduction=r),
            lambda r: tnn.MultiMarginLoss(reduction=r),
            [X, LABELS],
            (0,),
        ),
        "multimargin-p2-margin-weight": (
            lambda r: nnx.MultiMarginLoss(p=2, margin=0.7, weight=WEIGHT, reduction=r),
            lambda r: tnn.MultiMarginLoss(p=2, margin=0.7, weight=w, reduction=r),
            [X, LABELS],
            (0,),
        ),
        "multimargin-1d": (
            lambda r: nnx.MultiMarginLoss(weight=WEIGHT, reduction=r),
            lambda r: tnn.MultiMarginLoss(weight=w, reduction=r),
            [X[0], np.array(1)],
            (0,),
        ),
        "multilabel-margin": (
            lambda r: nnx.MultiLabelMarginLoss(reduction=r),
            lambda r: tnn.MultiLabelMarginLoss(reduction=r),
            [X, MULTI],
            (0,),
        ),
        "multilabel-margin-1d": (
            lambda r: nnx.MultiLabelMarginLoss(reduction=r),
            lambda r: tnn.MultiLabelMarginLoss(reduction=r),
            [X[1], MULTI[1]],
            (0,),
        ),
        "multilabel-softmargin": (
            lambda r: nnx.MultiLabelSoftMarginLoss(reduction=r),
            lambda r: tnn.MultiLabelSoftMarginLoss(reduction=r),
            [3.0 * X, (SIGNS > 0).astype(np.float64)],
            (0,),
        ),
        "multilabel-softmargin-weight-3d-int": (
            lambda r: nnx.MultiLabelSoftMarginLoss(weight=WEIGHT, reduction=r),
            lambda r: tnn.MultiLabelSoftMarginLoss(weight=w, reduction=r),
            [RNG.standard_normal((2, N, C)), RNG.integers(0, 2, (2, N, C))],
            (0,),
        ),
        "softmargin": (
            lambda r: nnx.SoftMarginLoss(reduction=r),
            lambda r: tnn.SoftMarginLoss(reduction=r),
            [5.0 * X, SIGNS],
            (0,),
        ),
        "softmargin-int": (
            lambda r: nnx.SoftMarginLoss(reduction=r),
            lambda r: tnn.SoftMarginLoss(reduction=r),
            [X, SIGNS.astype(np.int64)],
            (0,),
        ),
        "hinge": (
            lambda r: nnx.HingeEmbeddingLoss(reduction=r),
            lambda r: tnn.HingeEmbeddingLoss(reduction=r),
            [np.abs(X), SIGNS],
            (0,),
        ),
        "hinge-margin-other-labels": (
            lambda r: nnx.HingeEmbeddingLoss(margin=0.5, reduction=r),
            lambda r: tnn.HingeEmbeddingLoss(margin=0.5, reduction=r),
            [X, np.array([[1, -1, 0, 2]] * N)],
            (0,),
        ),
        "ranking": (
            lambda r: nnx.MarginRankingLoss(reduction=r),
            lambda r: tnn.MarginRankingLoss(reduction=r),
            [X[:, 0], X[:, 1], SIGNS[:, 0]],
            (0, 1),
        ),
        "ranking-margin-2d-int": (
            lambda r: nnx.MarginRankingLoss(margin=0.3, reduction=r),
            lambda r: tnn.MarginRankingLoss(margin=0.3, reduction=r),
            [X, P[:, :C], SIGNS.astype(np.int64)],
            (0, 1),
        ),
        "cosine": (
            lambda r: nnx.CosineEmbeddingLoss(reduction=r),
            lambda r: tnn.CosineEmbeddingLoss(reduction=r),
            [A, P, np.array([1.0, -1.0, -1.0])],
            (0, 1),
        ),
        "cosine-margin-int-other": (
            lambda r: nnx.CosineEmbeddingLoss(margin=-0.4, reduction=r),
            lambda r: tnn.CosineEmbeddingLoss(margin=-0.4, reduction=r),
            [A, M, np.array([-1, 0, 1])],
            (0, 1),
        ),
        "cosine-1d": (
            lambda r: nnx.CosineEmbeddingLoss(reduction=r),
            lambda r: tnn.CosineEmbeddingLoss(reduction=r),
            [A[0], P[0], np.array(-1.0)],
            (0, 1),
        ),
        "triplet": (
            lambda r: nnx.TripletMarginLoss(margin=2.0, reduction=r),
            lambda r: tnn.TripletMarginLoss(margin=2.0, reduction=r),
            [A, P, M],
            (0, 1, 2),
        ),
        "triplet-p1-swap": (
            lambda r: nnx.TripletMarginLoss(margin=3.0, p=1, swap=True, reduction=r),
            lambda r: tnn.TripletMarginLoss(margin=3.0, p=1, swap=True, reduction=r),
            [A, P, M],
            (0, 1, 2),
        ),
        "triplet-p3-eps-3d": (
            lambda r: nnx.TripletMarginLoss(margin=1.5, p=3, eps=0.1, reduction=r),
            lambda r: tnn.TripletMarginLoss(margin=1.5, p=3, eps=0.1, reduction=r),
            [RNG.standard_normal((2, N, D)) for _ in range(3)],
            (0, 1, 2),
        ),
        "triplet-p-half-inf": (
            lambda r: nnx.TripletMarginLoss(margin=4.0, p=0.5, reduction=r),
            lambda r: tnn.TripletMarginLoss(margin=4.0, p=0.5, reduction=r),
            [A, P, M],
            (0, 1, 2),
        ),
        "triplet-inf-1d": (
            lambda r: nnx.TripletMarginLoss(margin=2.0, p=math.inf, swap=True, reduction=r),
            lambda r: tnn.TripletMarginLoss(margin=2.0, p=math.inf, swap=True, reduction=r),
            [A[0], P[0], M[0]],
            (0, 1, 2),
        ),
        "triplet-distance-default-swap": (
            lambda r: nnx.TripletMarginWithDistanceLoss(swap=True, margin=2.0, reduction=r),
            lambda r: tnn.TripletMarginWithDistanceLoss(swap=True, margin=2.0, reduction=r),
            [A, P, M],
            (0, 1, 2),
        ),
        "triplet-distance-cosine": (
            lambda r: nnx.TripletMarginWithDistanceLoss(
                distance_function=CosineDistance(), margin=0.8, reduction=r
            ),
            lambda r: tnn.TripletMarginWithDistanceLoss(
                distance_function=_cosine_distance_torch, margin=0.8, reduction=r
            ),
            [A, P, M],
            (0, 1, 2),
        ),
        "triplet-distance-cosine-swap": (
            lambda r: nnx.TripletMarginWithDistanceLoss(
                distance_function=CosineDistance(), margin=1.5, swap=True, reduction=r
            ),
            lambda r: tnn.TripletMarginWithDistanceLoss(
                distance_function=_cosine_distance_torch, margin=1.5, swap=True, reduction=r
            ),
            [A, P, M],
            (0, 1, 2),
        ),
    }


CASE_IDS = [
    "multimargin",
    "multimargin-p2-margin-weight",
    "multimargin-1d",
    "multilabel-margin",
    "multilabel-margin-1d",
    "multilabel-softmargin",
    "multilabel-softmargin-weight-3d-int",
    "softmargin",
    "softmargin-int",
    "hinge",
    "hinge-margin-other-labels",
    "ranking",
    "ranking-margin-2d-int",
    "cosine",
    "cosine-margin-int-other",
    "cosine-1d",
    "triplet",
    "triplet-p1-swap",
    "triplet-p3-eps-3d",
    "triplet-p-half-inf",
    "triplet-inf-1d",
    "triplet-distance-default-swap",
    "triplet-distance-cosine",
    "triplet-distance-cosine-swap",
]


# by default every case on NumPy and a sample on array-api-strict (device1) and JAX (whose
# first call of each operation compiles it: seconds per case); every case everywhere under slow
SAMPLE = {
    "strict:device1": ("multimargin-p2-margin-weight", "multilabel-margin", "cosine", "triplet"),
    "jax": ("ranking",),
}


def _oracle_params(ids, sample):
    return [
        pytest.param(
            case,
            backend,
            marks=[]
            if backend == "numpy" or case in sample.get(backend, ())
            else [pytest.mark.slow],
            id=f"{case}-{backend.replace(':', '-')}",
        )
        for case in ids
        for backend in ORACLE_BACKENDS
    ]


@pytest.mark.torch
@pytest.mark.parametrize("case, backend", _oracle_params(CASE_IDS, SAMPLE))
def test_equals_pytorch(case, backend):
    make, tmake, inputs, differentiable = _cases()[case]
    for reduction in REDUCTIONS:
        compare_loss(
            make(reduction),
            tmake(reduction),
            inputs,
            differentiable=differentiable,
            backend=backend,
        )


# PyTorch's own configurations (common_nn): name -> differentiable inputs
TORCH_CONFIGS = {
    "MultiMarginLoss": (0,),
    "MultiLabelMarginLoss": (0,),
    "MultiLabelSoftMarginLoss": (0,),
    "SoftMarginLoss": (0,),
    "HingeEmbeddingLoss": (0,),
    "MarginRankingLoss": (0, 1),
    "CosineEmbeddingLoss": (0, 1),
    "TripletMarginLoss": (0, 1, 2),
}


@pytest.mark.torch
@pytest.mark.parametrize("name", sorted(TORCH_CONFIGS))
def test_pytorch_module_configurations(name):
    """Every configuration, every reduction, on NumPy (the three backends under slow)."""
    ran = check_torch_loss_configs(name, differentiable=TORCH_CONFIGS[name], backends=("numpy",))
    assert ran >= 3


@pytest.mark.slow
@pytest.mark.torch
@pytest.mark.parametrize("name", sorted(TORCH_CONFIGS))
def test_pytorch_module_configurations_on_every_backend(name):
    assert check_torch_loss_configs(name, differentiable=TORCH_CONFIGS[name], minimum=3) >= 3


MODULE_DB = (
    "CosineEmbeddingLoss",
    "HingeEmbeddingLoss",
    "MarginRankingLoss",
    "MultiLabelMarginLoss",
    "MultiLabelSoftMarginLoss",
    "MultiMarginLoss",
    "SoftMarginLoss",
)


@pytest.mark.slow
@pytest.mark.torch
@pytest.mark.parametrize("name", MODULE_DB)
def test_pytorch_module_db_inputs(name):
    """The inputs of PyTorch's newer module tests (common_modules.module_db; slow to import)
    through compare_loss on the three backends: the differentiable inputs are those PyTorch
    marks requires_grad."""
    import warnings

    import torch

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from torch.testing._internal.common_modules import module_db

    info = next(i for i in module_db if i.module_cls.__name__ == name)
    items = list(
        info.module_inputs_func(
            info, device="cpu", dtype=torch.float64, requires_grad=True, training=True
        )
    )
    assert len(items) >= 4
    for item in items:
        args = item.forward_input.args
        differentiable = tuple(i for i, a in enumerate(args) if a.requires_grad)
        host = [a.detach().numpy() for a in args]
        kwargs = dict(item.constructor_input.kwargs)
        nkw = {k: v.numpy() if isinstance(v, torch.Tensor) else v for k, v in kwargs.items()}
        for backend in ORACLE_BACKENDS:
            compare_loss(
                getattr(nnx, name)(**nkw),
                info.module_cls(**kwargs),
                host,
                differentiable=differentiable,
                backend=backend,
            )


@pytest.mark.torch
def test_case_list_is_complete():
    assert sorted(_cases()) == sorted(CASE_IDS)


# ---------------------------------------------------------------------------- gradcheck


class Bound(nnx.Module):
    """A loss of several inputs with its label fixed, as a module of the differentiable inputs
    (so gradcheck perturbs each of them; ``reduction="none"`` is weighted by gradcheck)."""

    def __init__(self, loss, *fixed):
        self.loss, self.fixed = loss, fixed

    def forward(self, *xs):
        return self.loss(*xs, *self.fixed)

    def backward(self, g):
        return self.loss.backward(g)


def _gradcheck_cases(be):
    """id -> (module, inputs): each loss with target-free differentiable inputs, off the
    corners of its hinges (central differences need a smooth neighbourhood)."""
    lab = be.asarray(LABELS)
    return {
        "multimargin": (nnx.MultiMarginLoss(p=2, weight=WEIGHT, reduction="sum"), (X, lab)),
        "multilabel-margin": (nnx.MultiLabelMarginLoss(), (X, be.asarray(MULTI))),
        "multilabel-softmargin": (
            nnx.MultiLabelSoftMarginLoss(weight=WEIGHT),
            (X, (SIGNS > 0).astype(np.float64)),
        ),
        "softmargin": (nnx.SoftMarginLoss(reduction="sum"), (X, SIGNS)),
        "hinge": (nnx.HingeEmbeddingLoss(margin=0.5), (np.abs(X) + 0.1, SIGNS)),
        "ranking-none": (
            Bound(nnx.MarginRankingLoss(margin=0.1, reduction="none"), be.asarray(SIGNS[:, 0])),
            (X[:, 0], X[:, 2]),
        ),
        "cosine": (
            Bound(nnx.CosineEmbeddingLoss(margin=-0.5), be.asarray(np.array([1.0, -1.0, -1.0]))),
            (A, P),
        ),
        "triplet-swap-p3": (
            Bound(nnx.TripletMarginLoss(margin=3.0, p=3, swap=True, reduction="none")),
            (A[:2, :3], P[:2, :3], M[:2, :3]),
        ),
        "triplet-distance-param": (
            Bound(
                nnx.TripletMarginWithDistanceLoss(
                    distance_function=ScaledDistance(), margin=20.0, swap=True
                )
            ),
            (A[:2, :3], P[:2, :3], M[:2, :3]),
        ),
    }


GRADCHECK_CASES = (
    "multimargin",
    "multilabel-margin",
    "multilabel-softmargin",
    "softmargin",
    "hinge",
    "ranking-none",
    "cosine",
    "triplet-swap-p3",
    "triplet-distance-param",
)


def _gradcheck_params():
    """Every case on NumPy and array-api-strict (device1) by default, one on JAX; every case on
    array-api-strict's default device, JAX and PyTorch under slow."""
    params = []
    for case in GRADCHECK_CASES:
        for spec in ("numpy", "strict:device1", "strict", "jax", "torch"):
            ok, why = backend_available(spec)
            marks = [] if ok else [pytest.mark.skip(reason=f"backend {spec!r} unavailable: {why}")]
            if spec == "torch":
                marks.append(pytest.mark.torch)
            if spec in ("strict", "torch") or (spec == "jax" and case != "softmargin"):
                marks.append(pytest.mark.slow)
            params.append(pytest.param(case, spec, marks=marks, id=f"{case}-{spec}"))
    return params


@pytest.mark.parametrize("case, spec", _gradcheck_params())
def test_gradcheck(case, spec):
    backend = nnx.get_backend(spec)
    module, inputs = _gradcheck_cases(backend)[case]
    if isinstance(module, Bound):
        xs = tuple(backend.asarray(x) for x in inputs)
        result = nnx.gradcheck(module, xs)
    else:
        x, target = inputs
        result = nnx.gradcheck(module, backend.asarray(x), backend.asarray(target))
    assert result.ok, str(result)
    if case == "triplet-distance-param":
        assert "loss.distance_function.scale" in result.errors


# ---------------------------------------------------------------------------- corners


CORNERS = {
    # z = margin - x_y + x_1 = 0 exactly: PyTorch counts only z > 0 (gradient 0 there)
    "multimargin": (
        lambda tnn: (nnx.MultiMarginLoss(), tnn.MultiMarginLoss()),
        [np.array([[1.0, 0.0, 2.0], [0.5, -0.5, 0.5]]), np.array([0, 0])],
        (0,),
    ),
    "multimargin-p2": (
        lambda tnn: (nnx.MultiMarginLoss(p=2), tnn.MultiMarginLoss(p=2)),
        [np.array([[1.0, 0.0, 2.0]]), np.array([0])],
        (0,),
    ),
    "multilabel-margin": (
        lambda tnn: (nnx.MultiLabelMarginLoss(), tnn.MultiLabelMarginLoss()),
        [np.array([[1.0, 0.0, 0.5]]), np.array([[0, -1, 2]])],
        (0,),
    ),
    # x = margin exactly with y = -1: clamp_min passes the gradient (-1)
    "hinge": (
        lambda tnn: (nnx.HingeEmbeddingLoss(margin=0.5), tnn.HingeEmbeddingLoss(margin=0.5)),
        [np.array([0.5, 0.5, 0.0]), np.array([-1.0, 1.0, -1.0])],
        (0,),
    ),
    "ranking": (
        lambda tnn: (nnx.MarginRankingLoss(), tnn.MarginRankingLoss()),
        [np.array([1.0, 2.0]), np.array([1.0, 2.0]), np.array([1.0, -1.0])],
        (0, 1),
    ),
    # cos = margin = 0 exactly for y = -1
    "cosine": (
        lambda tnn: (nnx.CosineEmbeddingLoss(), tnn.CosineEmbeddingLoss()),
        [np.array([[1.0, 0.0]]), np.array([[0.0, 2.0]]), np.array([-1.0])],
        (0, 1),
    ),
    # margin + d(a, p) - d(a, n) = 1 + 1 - 2 = 0 exactly; d(a, a) = 0 (the norm's gradient is 0)
    "triplet": (
        lambda tnn: (
            nnx.TripletMarginLoss(eps=0.0, reduction="sum"),
            tnn.TripletMarginLoss(eps=0.0, reduction="sum"),
        ),
        [
            np.array([[0.0, 0.0], [1.0, 1.0]]),
            np.array([[1.0, 0.0], [1.0, 1.0]]),
            np.array([[2.0, 0.0], [3.0, 1.0]]),
        ],
        (0, 1, 2),
    ),
    # swap: d(a, n) = d(p, n) exactly (a tie shares the gradient); p = inf ties within a row
    "triplet-swap-tie-inf": (
        lambda tnn: (
            nnx.TripletMarginLoss(margin=2.0, p=math.inf, eps=0.0, swap=True),
            tnn.TripletMarginLoss(margin=2.0, p=math.inf, eps=0.0, swap=True),
        ),
        [np.array([[1.0, 0.0]]), np.array([[-1.0, 0.0]]), np.array([[0.0, 1.0]])],
        (0, 1, 2),
    ),
    "triplet-swap-tie-l2": (
        lambda tnn: (
            nnx.TripletMarginWithDistanceLoss(margin=2.0, swap=True),
            tnn.TripletMarginWithDistanceLoss(margin=2.0, swap=True),
        ),
        [np.array([[1.0, 0.0]]), np.array([[-1.0, 0.0]]), np.array([[0.0, 3.0]])],
        (0, 1, 2),
    ),
}


@pytest.mark.torch
@pytest.mark.parametrize("case", sorted(CORNERS))
def test_subgradient_at_the_corner_is_pytorchs(case):
    import torch.nn as tnn

    make, inputs, differentiable = CORNERS[case]
    loss, tloss = make(tnn)
    compare_loss(loss, tloss, inputs, differentiable=differentiable)


@pytest.mark.slow
@pytest.mark.torch
@pytest.mark.parametrize("backend", ("strict:device1", "jax"))
def test_subgradient_at_the_corner_on_other_backends(backend):
    import torch.nn as tnn

    for make, inputs, differentiable in CORNERS.values():
        loss, tloss = make(tnn)
        compare_loss(loss, tloss, inputs, differentiable=differentiable, backend=backend)


def test_corner_values_by_hand():
    """The same corners without PyTorch: the gradients PyTorch returns, written out."""
    loss = nnx.MultiMarginLoss(reduction="sum")
    loss(np.array([[1.0, 0.0, 2.0]]), np.array([0]))
    np.testing.assert_allclose(loss.backward(), [[-1 / 3, 0.0, 1 / 3]])
    hinge = nnx.HingeEmbeddingLoss(reduction="sum")
    hinge(np.array([1.0, 1.0, 0.5]), np.array([-1.0, 1.0, 0.0]))
    np.testing.assert_allclose(hinge.backward(), [-1.0, 1.0, 0.0])
    ranking = nnx.MarginRankingLoss(reduction="sum")
    ranking(np.array([1.0, 2.0]), np.array([1.0, 1.0]), np.array([1.0, 1.0]))
    d1, d2 = ranking.backward()
    np.testing.assert_allclose(d1, [-1.0, 0.0])
    np.testing.assert_allclose(d2, [1.0, 0.0])


# ---------------------------------------------------------------------------- stability, 16-bit


@pytest.mark.parametrize("loss", [nnx.SoftMarginLoss(), nnx.MultiLabelSoftMarginLoss()])
def test_finite_at_1e4_in_float32(loss):
    x = np.array([[1e4, -1e4, 1e4, -1e4]], dtype=np.float32)
    signs = np.array([[1.0, 1.0, -1.0, -1.0]], dtype=np.float32)
    target = signs if isinstance(loss, nnx.SoftMarginLoss) else (signs > 0).astype(np.float32)
    value, grad = loss(x, target), loss.backward()
    assert value.dtype == np.float32 and grad.dtype == np.float32
    assert np.isfinite(value) and np.all(np.isfinite(grad))
    # two of the four are right by 1e4, two wrong by 1e4: the mean loss is 2e4 / 4
    per = 4 if isinstance(loss, nnx.SoftMarginLoss) else 4  # elements, classes
    np.testing.assert_allclose(float(value), 2e4 / per, rtol=1e-6)
    np.testing.assert_allclose(np.abs(grad), [[0.0, 0.25, 0.25, 0.0]], atol=1e-7)


def _sixteen_bit_cases():
    """id -> (loss, inputs): 70,000 terms of about 1 each, whose float16 sum would overflow
    (65,504); the last input of the two-argument losses is the (integer or sign) target."""
    big = np.random.default_rng(0).standard_normal((700, 100))
    return {
        "multimargin": (nnx.MultiMarginLoss(), [big, np.arange(700) % 100]),
        "multilabel-softmargin": (nnx.MultiLabelSoftMarginLoss(), [big, (big > 0) * 1.0]),
        "softmargin": (nnx.SoftMarginLoss(), [big, np.sign(big)]),
        "hinge": (nnx.HingeEmbeddingLoss(), [np.abs(big), np.sign(big)]),
        "ranking": (nnx.MarginRankingLoss(margin=1.0), [big, big[::-1], np.sign(big)]),
        "triplet": (nnx.TripletMarginLoss(margin=5.0), [big, big[::-1], big[:, ::-1]]),
        "triplet-distance": (
            nnx.TripletMarginWithDistanceLoss(margin=5.0),
            [big, big[::-1], big[:, ::-1]],
        ),
        "cosine": (nnx.CosineEmbeddingLoss(margin=0.1), [big, big[::-1], np.sign(big[:, 0])]),
    }


@pytest.mark.parametrize("case", sorted(_sixteen_bit_cases()))
def test_float16_accumulates_in_float32(case):
    loss, inputs = _sixteen_bit_cases()[case]
    half = [x.astype(np.float16) if x.dtype.kind == "f" else x for x in inputs]
    exact = float(
        copy.deepcopy(loss)(*[x.astype(np.float64) if x.dtype.kind == "f" else x for x in half])
    )
    value = loss(*half)
    grads = loss.backward()
    grads = grads if isinstance(grads, tuple) else (grads,)
    assert value.dtype == np.float16 and all(g.dtype == np.float16 for g in grads)
    assert np.isfinite(float(value)) and all(np.all(np.isfinite(g)) for g in grads)
    np.testing.assert_allclose(float(value), exact, rtol=2e-3)


# ---------------------------------------------------------------------------- errors


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda: nnx.MultiMarginLoss(p=3), "MultiMarginLoss: p must be 1 or 2, got 3"),
        (
            lambda: nnx.MultiMarginLoss(margin=float("nan")),
            "MultiMarginLoss: margin must be a finite number, got nan",
        ),
        (
            lambda: nnx.MultiMarginLoss(weight=np.ones((2, 2))),
            "MultiMarginLoss: weight must be a 1-D array",
        ),
        (
            lambda: nnx.SoftMarginLoss(reduction="avg"),
            "SoftMarginLoss: reduction must be one of",
        ),
        (
            lambda: nnx.TripletMarginLoss(p=0),
            "TripletMarginLoss: p must be a number > 0 (or math.inf), got 0",
        ),
        (
            lambda: nnx.TripletMarginWithDistanceLoss(margin=0.0),
            "TripletMarginWithDistanceLoss: margin must be > 0, got 0.0",
        ),
        (
            lambda: nnx.TripletMarginWithDistanceLoss(distance_function=lambda a, b: a),
            "TripletMarginWithDistanceLoss: distance_function must be None or an nnx Module",
        ),
    ],
)
def test_bad_options_are_one_line_errors(make, message):
    with pytest.raises((ValueError, TypeError)) as err:
        make()
    assert message in str(err.value) and "\n" not in str(err.value)


@pytest.mark.parametrize(
    "call, message",
    [
        (
            lambda: nnx.MultiMarginLoss()(X, np.array([0, 1, 4])),
            "MultiMarginLoss: class labels must lie in [0, 3] for 4 classes, got labels from 0 to 4",
        ),
        (
            lambda: nnx.MultiMarginLoss()(X, LABELS * 1.0),
            "MultiMarginLoss: target must hold integer class labels, got dtype float64",
        ),
        (
            lambda: nnx.MultiMarginLoss()(X, LABELS[:2]),
            "MultiMarginLoss: target must have shape (3,) for input of shape (3, 4), got (2,)",
        ),
        (
            lambda: nnx.MultiMarginLoss(weight=WEIGHT[:3])(X, LABELS),
            "MultiMarginLoss: weight has 3 entries but the input has 4 classes",
        ),
        (
            lambda: nnx.MultiLabelMarginLoss()(X, MULTI - 1),
            "MultiLabelMarginLoss: class labels must lie in [-1, 3] for 4 classes, got labels "
            "from -2 to 2",
        ),
        (
            lambda: nnx.SoftMarginLoss()(X, SIGNS[:2]),
            "SoftMarginLoss: target shape (2, 4) does not match prediction shape (3, 4)",
        ),
        (
            lambda: nnx.MultiLabelSoftMarginLoss()(X, SIGNS.astype(np.float32)),
            "MultiLabelSoftMarginLoss: target dtype float32 does not match",
        ),
        (
            lambda: nnx.MarginRankingLoss()(X[:, 0], X[:2, 1], SIGNS[:, 0]),
            "MarginRankingLoss: x2 shape (2,) does not match x1 shape (3,)",
        ),
        (
            lambda: nnx.CosineEmbeddingLoss()(A, P, np.ones(2)),
            "CosineEmbeddingLoss: target must have shape (3,) for inputs of shape (3, 5), got (2,)",
        ),
        (
            lambda: nnx.TripletMarginLoss()(A, P, M[:, :2]),
            "TripletMarginLoss: negative shape (3, 2) does not match anchor shape (3, 5)",
        ),
        (
            lambda: nnx.TripletMarginWithDistanceLoss(distance_function=nnx.Add())(A, P, M),
            "TripletMarginWithDistanceLoss: distance_function must return one distance per "
            "triplet, shape (3,), got (3, 5)",
        ),
    ],
)
def test_bad_inputs_are_one_line_errors(call, message):
    with pytest.raises((ValueError, TypeError)) as err:
        call()
    assert message in str(err.value), str(err.value)
    assert "\n" not in str(err.value)


def test_backward_returns_one_gradient_per_differentiable_input():
    loss = nnx.TripletMarginLoss(reduction="none")
    out = loss(A, P, M)
    grads = loss.backward(np.ones(out.shape))
    assert isinstance(grads, tuple) and [g.shape for g in grads] == [A.shape] * 3
    # the input gradients of a translation-invariant loss sum to 0
    np.testing.assert_allclose(sum(grads), 0.0, atol=1e-12)


@pytest.mark.slow
def test_trains_a_linear_svm_in_a_compiled_jax_step():
    """MultiMarginLoss inside jax.jit: its label check (a host read) is switched off there."""
    pytest.importorskip("jax")
    be = nnx.get_backend("jax")
    x = be.asarray(RNG.standard_normal((16, 4)), dtype="float32")
    y = be.asarray(RNG.integers(0, 3, 16))
    eager_model = nnx.Linear(4, 3, rng=0).to(be)
    model = nnx.Linear(4, 3, rng=0).to(be)
    step = nnx.compile(model, nnx.MultiMarginLoss(), nnx.optim.SGD(model.parameters(), lr=0.1))
    loss, _ = step(x, y)
    eager = nnx.MultiMarginLoss()
    expected = eager(eager_model(x), y)
    np.testing.assert_allclose(float(loss), float(expected), rtol=1e-5)


# ---------------------------------------------------------------------------- the command


def _one_line_error(capsys, message):
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1, err


def test_cli_loss_flag(tmp_path, capsys):
    """--loss names the loss the Trainer gets; unknown names and a loss of the other task are
    one-line errors (a run with --loss and its resume: the slow test below)."""
    from nnx.cli.factories import make_loss
    from nnx.cli.main import main
    from nnx.cli.settings import LOSSES

    made = {name: make_loss(name) for name in LOSSES}
    assert isinstance(made["multimargin"], nnx.MultiMarginLoss) and made["multimargin"].p == 1
    assert made["multimargin_squared"].p == 2
    assert isinstance(made["cross_entropy"], nnx.CrossEntropyLoss)
    assert isinstance(made["smooth_l1"], nnx.SmoothL1Loss)

    common = ["--device", "cpu", "--quiet", "--hidden", "8", "--dataset", "vertical"]
    assert main([*common, "--loss", "hinge", "--out", str(tmp_path / "x")]) == 2
    _one_line_error(capsys, "unknown loss 'hinge'; choose one of cross_entropy, multimargin")
    assert main([*common, "--loss", "mse", "--out", str(tmp_path / "y")]) == 2
    _one_line_error(
        capsys, "--loss mse is a regression loss, but dataset vertical is a classification task"
    )
    sine = ["--dataset", "sine", "--device", "cpu", "--hidden", "8", "--quiet"]
    assert main([*sine, "--loss", "multimargin", "--out", str(tmp_path / "z")]) == 2
    _one_line_error(capsys, "--loss multimargin is a classification loss, but dataset sine")


@pytest.mark.slow
def test_cli_loss_run_and_resume(tmp_path, capsys):
    """config.json records the loss used (the task's default when unset); a resume keeps it
    and refuses another."""
    from nnx.cli.main import main

    out = tmp_path / "svm"
    common = ["--device", "cpu", "--quiet", "--hidden", "8", "--dataset", "vertical"]
    assert main([*common, "--epochs", "1", "--loss", "multimargin", "--out", str(out)]) == 0
    assert json.loads((out / "config.json").read_text())["settings"]["loss"] == "multimargin"
    status = main(["--resume", str(out / "last.npz"), "--epochs", "3", "--loss", "cross-entropy"])
    assert status == 2
    _one_line_error(capsys, "--loss cannot change when resuming (the run used multimargin)")
    assert main([*common, "--epochs", "1", "--out", str(tmp_path / "ce")]) == 0
    config = json.loads((tmp_path / "ce" / "config.json").read_text())
    assert config["settings"]["loss"] == "cross_entropy"
    assert main(["--resume", str(tmp_path / "ce" / "last.npz"), "--epochs", "2", "--quiet"]) == 0
    config = json.loads((tmp_path / "ce" / "config.json").read_text())
    assert config["settings"]["loss"] == "cross_entropy" and len(config["resumes"]) == 1
    sine = ["--dataset", "sine", "--device", "cpu", "--hidden", "8", "--quiet", "--epochs", "1"]
    assert main([*sine, "--loss", "huber", "--out", str(tmp_path / "h")]) == 0
    assert json.loads((tmp_path / "h" / "config.json").read_text())["settings"]["loss"] == "huber"
