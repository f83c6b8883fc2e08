"""Bilinear, CosineSimilarity and PairwiseDistance (nnx/layers/similarity.py) against PyTorch in
float64 on every oracle backend (broadcasting, eps placement, every p), PyTorch's own
PairwiseDistance configurations, finite differences on every backend, and their errors."""

import math

import numpy as np
import pytest

import nnx
from tests.conftest import _backend_param, host_normal
from tests.layers.torch_oracle import ORACLE_BACKENDS, check_torch_configs, compare

# name -> (nnx factory, torch factory (given torch.nn), list of input shapes)
CASES = {
    "bilinear": (
        lambda: nnx.Bilinear(3, 4, 2, rng=0),
        lambda nn: nn.Bilinear(3, 4, 2),
        [(5, 3), (5, 4)],
    ),
    "bilinear-nobias-3d": (
        lambda: nnx.Bilinear(2, 3, 4, bias=False, rng=1),
        lambda nn: nn.Bilinear(2, 3, 4, bias=False),
        [(2, 3, 2), (2, 3, 3)],
    ),
    "bilinear-1d": (
        lambda: nnx.Bilinear(2, 2, 3, rng=2),
        lambda nn: nn.Bilinear(2, 2, 3),
        [(2,), (2,)],
    ),
    "cosine": (nnx.CosineSimilarity, lambda nn: nn.CosineSimilarity(), [(4, 5), (4, 5)]),
    "cosine-dim0-broadcast": (
        lambda: nnx.CosineSimilarity(0, 1e-6),
        lambda nn: nn.CosineSimilarity(0, 1e-6),
        [(3, 1, 4), (3, 2, 1)],
    ),
    "cosine-last-broadcast": (
        lambda: nnx.CosineSimilarity(-1),
        lambda nn: nn.CosineSimilarity(-1),
        [(2, 3, 4), (4,)],
    ),
    "pairwise": (nnx.PairwiseDistance, lambda nn: nn.PairwiseDistance(), [(4, 5), (4, 5)]),
    "pairwise-p1-keepdim": (
        lambda: nnx.PairwiseDistance(1.0, keepdim=True),
        lambda nn: nn.PairwiseDistance(1.0, keepdim=True),
        [(4, 5), (4, 5)],
    ),
    "pairwise-p3-broadcast": (
        lambda: nnx.PairwiseDistance(3.0, 1e-3),
        lambda nn: nn.PairwiseDistance(3.0, 1e-3),
        [(4, 5), (5,)],
    ),
    "pairwise-p1.5": (
        lambda: nnx.PairwiseDistance(1.5),
        lambda nn: nn.PairwiseDistance(1.5),
        [(2, 3, 5), (3, 5)],
    ),
    "pairwise-p0.5": (
        lambda: nnx.PairwiseDistance(0.5),
        lambda nn: nn.PairwiseDistance(0.5),
        [(4, 5), (4, 5)],
    ),
    "pairwise-inf": (
        lambda: nnx.PairwiseDistance(math.inf),
        lambda nn: nn.PairwiseDistance(math.inf),
        [(4, 5), (4, 5)],
    ),
    "pairwise-p0": (
        lambda: nnx.PairwiseDistance(0.0),
        lambda nn: nn.PairwiseDistance(0.0),
        [(4, 5), (4, 5)],
    ),
    "pairwise-1d": (nnx.PairwiseDistance, lambda nn: nn.PairwiseDistance(), [(5,), (5,)]),
}
# every case runs on NumPy by default (test_every_case_matches_pytorch_on_numpy); these on
# array-api-strict's second device too; the rest, and JAX, under slow
DEFAULT = ("bilinear", "cosine-dim0-broadcast")
SLOW_BACKENDS = [
    pytest.param(b, marks=[] if b == "numpy" else [pytest.mark.slow]) for b in ORACLE_BACKENDS
]


def _torch_twin(make, tmake):
    import torch

    return make(), tmake(torch.nn)


def _params():
    for name in CASES:
        for backend in ORACLE_BACKENDS:
            default = backend == "strict:device1" and name in DEFAULT
            yield pytest.param(name, backend, marks=[] if default else [pytest.mark.slow])


@pytest.mark.torch
@pytest.mark.parametrize("name, backend", list(_params()))
def test_matches_pytorch(name, backend):
    make, tmake, shapes = CASES[name]
    compare(*_torch_twin(make, tmake), shapes, backend=backend, steps=2)


@pytest.mark.torch
def test_every_case_matches_pytorch_on_numpy():
    for name, (make, tmake, shapes) in CASES.items():
        try:
            compare(*_torch_twin(make, tmake), shapes, seed=3)
        except AssertionError as e:
            raise AssertionError(f"{name}: {e}") from None


@pytest.mark.torch
@pytest.mark.parametrize("backend", SLOW_BACKENDS)
def test_pairwise_distance_pytorch_configurations(backend):
    assert check_torch_configs("PairwiseDistance", backends=(backend,), minimum=5) >= 5


@pytest.mark.torch
@pytest.mark.parametrize("backend", SLOW_BACKENDS)
def test_degenerate_points_follow_pytorch(backend):
    """Equal inputs (the distance is eps-sized, PyTorch's eps placement), zero vectors in the
    cosine (the norm clamped at eps, its gradient not differentiated), ties of the inf norm."""
    x = np.array([[1.0, 2.0, 3.0], [0.0, 0.0, 0.0], [1.0, -1.0, 1.0]])
    z = np.array([[1.0, 2.0, 3.0], [0.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
    cases = [
        (lambda: nnx.PairwiseDistance(), lambda nn: nn.PairwiseDistance()),
        (lambda: nnx.PairwiseDistance(1.0, eps=0.0), lambda nn: nn.PairwiseDistance(1.0, eps=0.0)),
        (lambda: nnx.PairwiseDistance(3.0, eps=0.0), lambda nn: nn.PairwiseDistance(3.0, eps=0.0)),
        (lambda: nnx.PairwiseDistance(math.inf), lambda nn: nn.PairwiseDistance(math.inf)),
        (lambda: nnx.CosineSimilarity(), lambda nn: nn.CosineSimilarity()),
        (lambda: nnx.CosineSimilarity(eps=0.5), lambda nn: nn.CosineSimilarity(eps=0.5)),
    ]
    for make, tmake in cases:
        compare(*_torch_twin(make, tmake), [x.shape, z.shape], inputs=[x, z], backend=backend)


# JAX's first call of each operation compiles it: the one-check-per-backend tests below leave JAX
# to the slow run (the JAX comparisons with PyTorch above and the layer zoo cover it by default)
GRAD_BACKENDS = [
    _backend_param("numpy"),
    _backend_param("strict"),
    _backend_param("strict:device1"),
    _backend_param("torch", pytest.mark.torch),
    _backend_param("jax", pytest.mark.slow),
]

GRADCHECK = {
    "bilinear": (lambda: nnx.Bilinear(3, 2, 2, rng=0), [(2, 3), (2, 2)]),
    "cosine": (lambda: nnx.CosineSimilarity(1), [(2, 3, 2), (1, 3, 2)]),
    "pairwise": (lambda: nnx.PairwiseDistance(), [(3, 4), (3, 4)]),
    "pairwise-p3": (lambda: nnx.PairwiseDistance(3.0), [(3, 4), (4,)]),
    "pairwise-inf": (lambda: nnx.PairwiseDistance(math.inf), [(3, 4), (3, 4)]),
}


@pytest.mark.parametrize("spec", GRAD_BACKENDS)
def test_a_graph_of_all_three_matches_finite_differences(spec):
    """One gradient check per backend through the three modules (each alone under slow)."""
    backend = nnx.get_backend(spec)
    a, b = nnx.Input("a"), nnx.Input("b")
    h = nnx.Bilinear(3, 3, 3, rng=0)(a, b)
    cos = nnx.CosineSimilarity(1)(h, b)
    dist = nnx.PairwiseDistance(3.0)(h, a)
    graph = nnx.Graph([a, b], nnx.Add()(cos, dist)).to(dtype="float64")
    xs = (
        backend.asarray(host_normal((2, 3), seed=1)),
        backend.asarray(host_normal((2, 3), seed=2)),
    )
    result = nnx.gradcheck(graph, xs)
    assert result.ok, str(result)


@pytest.mark.slow
@pytest.mark.parametrize("name", GRADCHECK)
def test_gradients_match_finite_differences(backend, name):
    make, shapes = GRADCHECK[name]
    xs = tuple(backend.asarray(host_normal(s, seed=i)) for i, s in enumerate(shapes))
    result = nnx.gradcheck(make().to(dtype="float64"), xs)
    assert result.ok, str(result)


def test_float32_and_float16_stay_in_their_dtype():
    a, b = host_normal((4, 5), seed=1), host_normal((4, 5), seed=2)
    for dtype in (np.float32, np.float16):
        for layer in (nnx.CosineSimilarity(), nnx.PairwiseDistance()):
            y = layer(a.astype(dtype), b.astype(dtype))
            assert y.dtype == dtype and np.all(np.isfinite(y))
            want = type(layer)()(a, b)
            np.testing.assert_allclose(y.astype(np.float64), want, rtol=2e-2, atol=2e-3)


@pytest.mark.parametrize(
    "make, pattern",
    [
        (lambda: nnx.Bilinear(0, 2, 2), "Bilinear: in1_features"),
        (lambda: nnx.CosineSimilarity(1.5), "CosineSimilarity: dim"),
        (lambda: nnx.CosineSimilarity(eps=math.nan), "CosineSimilarity: eps"),
        (lambda: nnx.PairwiseDistance(-1.0), "PairwiseDistance: p"),
        (lambda: nnx.PairwiseDistance(eps="x"), "PairwiseDistance: eps"),
    ],
)
def test_bad_arguments_raise_one_line_naming_the_module(make, pattern):
    with pytest.raises(ValueError, match=pattern) as info:
        make()
    assert "\n" not in str(info.value)


@pytest.mark.parametrize(
    "layer, shapes, pattern",
    [
        (nnx.Bilinear(3, 4, 2, rng=0), [(5, 3), (4, 4)], "Bilinear: expected x1 of shape"),
        (nnx.Bilinear(3, 4, 2, rng=0), [(5, 4), (5, 4)], "Bilinear: expected x1 of shape"),
        (nnx.CosineSimilarity(), [(4, 5), (3, 5)], "CosineSimilarity: x1 of shape"),
        (nnx.CosineSimilarity(2), [(4, 5), (4, 5)], "CosineSimilarity: dim 2 is out of range"),
        (nnx.PairwiseDistance(), [(4, 5), (4, 6)], "PairwiseDistance: x1 of shape"),
    ],
)
def test_bad_inputs_raise_one_line_naming_the_module(layer, shapes, pattern):
    xs = [np.ones(s, np.float32) for s in shapes]
    with pytest.raises(ValueError, match=pattern) as info:
        layer(*xs)
    assert "\n" not in str(info.value)


def test_mixed_dtypes_are_refused():
    with pytest.raises(TypeError, match="CosineSimilarity"):
        nnx.CosineSimilarity()(np.ones((2, 3), np.float32), np.ones((2, 3)))
    with pytest.raises(TypeError, match="PairwiseDistance"):
        nnx.PairwiseDistance()(np.ones((2, 3), np.int64), np.ones((2, 3)))


@pytest.mark.slow
def test_bilinear_in_a_graph_with_two_inputs():
    a, b = nnx.Input("a"), nnx.Input("b")
    layer = nnx.Bilinear(3, 2, 4, rng=0).to(dtype="float64")
    graph = nnx.Graph([a, b], nnx.Tanh()(layer(a, b)))
    xs = (host_normal((2, 3), seed=1), host_normal((2, 2), seed=2))
    assert nnx.gradcheck(graph, xs).ok


def test_bilinear_and_embedding_bag_save_load_and_move(tmp_path):
    a, b = nnx.Input("a"), nnx.Input("b")
    graph = nnx.Graph([a, b], nnx.CosineSimilarity()(nnx.Bilinear(3, 2, 4, rng=0)(a, b), a))
    xs = tuple(host_normal(s, seed=i).astype(np.float32) for i, s in enumerate([(2, 3), (2, 2)]))
    with pytest.raises(ValueError, match="CosineSimilarity: x1 of shape"):
        graph(*xs)  # (2, 4) against (2, 3): the error names the module
    graph = nnx.Graph([a, b], nnx.PairwiseDistance()(nnx.Bilinear(3, 2, 3, rng=0)(a, b), a))
    want = graph(*xs)
    loaded = nnx.load_model(nnx.save_model(tmp_path / "g.npz", graph))
    np.testing.assert_array_equal(loaded(*xs), want)
    strict = nnx.get_backend("strict:device1")
    moved = loaded.to(strict)
    got = moved(*(strict.asarray(x) for x in xs))
    np.testing.assert_allclose(nnx.to_numpy(got), want, rtol=1e-6)

    bag = nnx.EmbeddingBag(6, 3, mode="max", padding_idx=0, rng=0)
    ids, offsets = np.array([1, 0, 2, 5, 4]), np.array([0, 2])
    loaded = nnx.load_model(nnx.save_model(tmp_path / "b.npz", bag))
    assert loaded.mode == "max" and loaded.padding_idx == 0
    np.testing.assert_array_equal(loaded(ids, offsets), bag(ids, offsets))
