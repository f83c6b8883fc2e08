import contextlib
import math

import numpy as np
import pytest

import nnx
from nnx.optim import SGD, Adagrad, Adam, AdamW, RMSprop

CONFIGS = [
    ("SGD", {"lr": 0.1}),
    ("SGD", {"lr": 0.05, "momentum": 0.9}),
    ("SGD", {"lr": 0.05, "momentum": 0.9, "nesterov": True}),
    ("SGD", {"lr": 0.05, "momentum": 0.8, "dampening": 0.3, "weight_decay": 0.01}),
    ("Adam", {}),
    ("Adam", {"lr": 0.01, "amsgrad": True}),
    ("Adam", {"lr": 0.02, "betas": (0.8, 0.95), "eps": 1e-6, "weight_decay": 0.1, "amsgrad": True}),
    ("AdamW", {}),
    ("AdamW", {"lr": 0.01, "weight_decay": 0.1, "amsgrad": True}),
    ("RMSprop", {}),
    ("RMSprop", {"lr": 0.005, "momentum": 0.9}),
    ("RMSprop", {"lr": 0.005, "centered": True}),
    (
        "RMSprop",
        {"lr": 0.005, "alpha": 0.9, "centered": True, "momentum": 0.5, "weight_decay": 0.01},
    ),
    ("Adagrad", {}),
    (
        "Adagrad",
        {"lr": 0.05, "lr_decay": 0.01, "initial_accumulator_value": 0.1, "weight_decay": 0.01},
    ),
]
OPTIMIZERS = {"SGD": SGD, "Adam": Adam, "AdamW": AdamW, "RMSprop": RMSprop, "Adagrad": Adagrad}
SHAPES = [(3, 4), (4,)]


def _gradient(value: np.ndarray, step: int) -> np.ndarray:
    """A deterministic, state-dependent gradient: a bumpy bowl plus a step-dependent push."""
    return (
        0.7 * value
        + np.sin(3.0 * value)
        + 0.3 * np.cos(step + np.arange(value.size).reshape(value.shape))
    )


def _initial(seed=0):
    rng = np.random.default_rng(seed)
    return [rng.standard_normal(shape) for shape in SHAPES]


def _run_nnx(name, kwargs, steps, backend, dtype="float64", start=None, optimizer_state=None):
    params = [
        nnx.Parameter(backend.asarray(v, dtype=dtype), f"p{i}")
        for i, v in enumerate(start or _initial())
    ]
    opt = OPTIMIZERS[name](params, **kwargs)
    if optimizer_state is not None:
        opt.load_state_dict(optimizer_state)
    for step in range(steps):
        for i, p in enumerate(params):
            skip = i == 1 and step % 5 == 3  # a parameter without a gradient is skipped
            host = nnx.to_numpy(p.value)
            p.grad = None if skip else backend.asarray(_gradient(host, step), dtype=dtype)
        opt.step()
    return params, opt


@pytest.mark.torch
@pytest.mark.parametrize("name, kwargs", CONFIGS, ids=lambda c: str(c))
def test_fifty_steps_agree_with_torch_optim(name, kwargs):
    torch = pytest.importorskip("torch")
    params, _ = _run_nnx(name, kwargs, 50, nnx.get_backend("numpy"))
    tensors = [torch.tensor(v, requires_grad=True) for v in _initial()]
    opt = getattr(torch.optim, name)(tensors, **kwargs)
    for step in range(50):
        for i, t in enumerate(tensors):
            skip = i == 1 and step % 5 == 3
            t.grad = None if skip else torch.tensor(_gradient(t.detach().numpy(), step))
        opt.step()
    for p, t in zip(params, tensors, strict=True):
        np.testing.assert_allclose(
            nnx.to_numpy(p.value), t.detach().numpy(), rtol=1e-10, atol=1e-10
        )


def _one(value):
    return nnx.Parameter(np.array([value]), "p")


@pytest.mark.parametrize(
    "make, expected",
    [
        # p = 1, g = 0.5, lr = 0.1: p - lr * g
        (lambda p: SGD(p, lr=0.1), [0.95, 0.90]),
        # buffer b = g = 0.5, then b = 0.9 * 0.5 + 0.5 = 0.95: p = 0.95 - 0.095
        (lambda p: SGD(p, lr=0.1, momentum=0.9), [0.95, 0.855]),
        # step 1: m_hat = g, v_hat = g^2, so p - lr * g / (|g| + eps) ~ p - lr
        (lambda p: Adam(p, lr=0.1), [1 - 0.1 * 0.5 / (0.5 + 1e-8)]),
        # decay first: 1 * (1 - 0.1 * 0.1) = 0.99, then the Adam step of 0.1
        (lambda p: AdamW(p, lr=0.1, weight_decay=0.1), [0.99 - 0.1 * 0.5 / (0.5 + 1e-8)]),
        # v = 0.01 * 0.25 = 0.0025, sqrt(v) = 0.05: p - 0.01 * 0.5 / 0.05 = p - 0.1
        (lambda p: RMSprop(p, lr=0.01), [1 - 0.01 * 0.5 / (0.05 + 1e-8)]),
        # s = 0.25: p - 0.01 * 0.5 / 0.5
        (lambda p: Adagrad(p, lr=0.01), [1 - 0.01 * 0.5 / (0.5 + 1e-10)]),
    ],
)
def test_first_steps_by_hand(make, expected):
    p = _one(1.0)
    opt = make([p])
    for want in expected:
        p.grad = np.array([0.5])
        opt.step()
        assert float(p.value[0]) == pytest.approx(want, abs=1e-12)


@pytest.mark.parametrize("name, kwargs", CONFIGS[::2], ids=lambda c: str(c))
def test_quadratic_bowl_converges_on_every_backend(backend, name, kwargs):
    curvature = np.array([1.0, 3.0, 0.5, 2.0])
    center = np.array([1.0, -2.0, 0.5, 3.0])
    kwargs = {**kwargs, "lr": {"SGD": 0.1, "Adagrad": 0.5}.get(name, 0.05)}
    if name in ("Adam", "AdamW", "RMSprop"):
        kwargs["weight_decay"] = 0.0
    p = nnx.Parameter(backend.asarray(np.zeros(4), dtype="float32"), "p")
    opt = OPTIMIZERS[name]([p], **kwargs)
    c, a = backend.asarray(center, dtype="float32"), backend.asarray(curvature, dtype="float32")
    for _ in range(600):
        p.grad = a * (p.value - c)  # gradient of 0.5 * sum(a * (p - c)^2)
        opt.step()
    assert p.value.dtype == backend.xp.float32 and backend.owns(p.value)
    wd = kwargs.get("weight_decay", 0.0)
    optimum = curvature * center / (curvature + wd)  # an L2 term moves the optimum slightly
    np.testing.assert_allclose(nnx.to_numpy(p.value), optimum, atol=0.05)


@pytest.mark.parametrize("name, kwargs", CONFIGS, ids=lambda c: str(c))
def test_state_dict_resumes_identically(backend, name, kwargs):
    straight, _ = _run_nnx(name, kwargs, 20, backend)
    half, opt = _run_nnx(name, kwargs, 10, backend)
    state = opt.state_dict()
    # plain data only: numbers, strings, lists and NumPy arrays
    for entry in state["state"]:
        assert all(isinstance(v, (int, np.ndarray)) for v in entry.values())
    resumed_start = [nnx.to_numpy(p.value) for p in half]
    # continue on a fresh optimizer (and on NumPy: state loads onto another backend)
    numpy = nnx.get_backend("numpy")
    params, _ = _run_nnx_from(name, kwargs, 10, numpy, resumed_start, state, first_step=10)
    for p, q in zip(straight, params, strict=True):
        np.testing.assert_allclose(
            nnx.to_numpy(q.value), nnx.to_numpy(p.value), rtol=1e-12, atol=1e-12
        )
    if backend.name == "numpy":
        for p, q in zip(straight, params, strict=True):
            np.testing.assert_array_equal(nnx.to_numpy(q.value), nnx.to_numpy(p.value))


def _run_nnx_from(name, kwargs, steps, backend, start, state, first_step):
    params = [
        nnx.Parameter(backend.asarray(v, dtype="float64"), f"p{i}") for i, v in enumerate(start)
    ]
    opt = OPTIMIZERS[name](params, lr=0.5)  # wrong lr on purpose: the state restores it
    opt.load_state_dict(state)
    assert opt.lr == kwargs.get("lr", opt.lr)
    for step in range(first_step, first_step + steps):
        for i, p in enumerate(params):
            skip = i == 1 and step % 5 == 3
            p.grad = (
                None
                if skip
                else backend.asarray(_gradient(nnx.to_numpy(p.value), step), dtype="float64")
            )
        opt.step()
    return params, opt


def test_parameter_without_gradient_is_skipped():
    a, b = _one(1.0), _one(2.0)
    opt = Adam([a, b], lr=0.1)
    a.grad = np.array([1.0])
    opt.step()
    assert float(b.value[0]) == 2.0 and opt.state[1] == {}
    assert opt.state[0]["step"] == 1


def test_read_only_arrays_are_rebound_not_written():
    frozen = np.array([1.0, 2.0])
    frozen.flags.writeable = False  # stands in for immutable arrays such as JAX's
    p = nnx.Parameter(frozen, "p")
    opt = SGD([p], lr=0.1, momentum=0.9)
    for _ in range(2):
        p.grad = np.array([1.0, 1.0])
        opt.step()
    np.testing.assert_allclose(p.value, [1.0 - 0.1 - 0.19, 2.0 - 0.1 - 0.19])
    np.testing.assert_array_equal(frozen, [1.0, 2.0])


def test_in_place_updates_keep_the_same_array():
    p = _one(1.0)
    original = p.value
    opt = Adam([p])
    p.grad = np.array([1.0])
    opt.step()
    assert p.value is original


def test_lr_is_readable_and_settable():
    opt = SGD(nnx.Linear(2, 2).parameters(), lr=0.1)
    assert opt.lr == 0.1
    opt.lr = 0.01
    assert opt.lr == 0.01
    with pytest.raises(ValueError, match="lr must be a finite number"):
        opt.lr = -1.0


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda ps: SGD(ps, lr=-0.1), r"SGD: lr must be a finite number in \[0.0, inf\], got -0.1"),
        (lambda ps: Adam(ps, lr=math.nan), "Adam: lr must be a finite number .* got nan"),
        (
            lambda ps: Adam(ps, betas=(0.9, 1.0)),
            r"beta2 must be a finite number in \[0.0, 1.0\), got 1.0",
        ),
        (lambda ps: AdamW(ps, betas=(-0.1, 0.9)), "beta1 must be"),
        (lambda ps: Adam(ps, betas=0.9), "betas must be a pair"),
        (lambda ps: SGD(ps, nesterov=True), "nesterov momentum needs momentum > 0"),
        (lambda ps: RMSprop(ps, alpha=1.5), "alpha must be"),
        (lambda ps: Adagrad(ps, eps=-1), "eps must be"),
        (lambda ps: SGD([], lr=0.1), "SGD: got an empty parameter list"),
        (lambda ps: SGD([np.zeros(2)], lr=0.1), "parameter 0 is a ndarray, not an nnx.Parameter"),
        (lambda ps: SGD(ps + ps, lr=0.1), "appears more than once"),
    ],
)
def test_bad_hyperparameters(make, message):
    params = list(nnx.Linear(2, 2).parameters())
    with pytest.raises((ValueError, TypeError), match=message):
        make(params)


def test_gradient_that_does_not_fit_is_an_error():
    p = nnx.Parameter(np.zeros(3, dtype=np.float32), "w")
    opt = SGD([p], lr=0.1)
    p.grad = np.zeros(3)  # float64
    with pytest.raises(
        ValueError,
        match="gradient of w has shape .3,. and dtype float64, but the parameter .* float32",
    ):
        opt.step()


def test_load_state_dict_checks():
    params = list(nnx.Linear(2, 2).parameters())
    with pytest.raises(ValueError, match="belongs to an SGD optimizer"):
        Adam(params).load_state_dict(SGD(params).state_dict())
    with pytest.raises(ValueError, match="state for 1 parameters, but this optimizer has 2"):
        SGD(params).load_state_dict(SGD(params[:1]).state_dict())


# ----------------------------------------------------------- NumPy fast path: updates in pieces
LARGE = [(300, 250), (250,), (97, 1001)]  # 600 KB, 2 KB and 777 KB in float64: 3, 1 and 4 pieces


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("name, kwargs", CONFIGS, ids=lambda c: str(c))
def test_updates_in_pieces_equal_whole_array_updates(monkeypatch, name, kwargs, dtype):
    from nnx.optim import base

    rng = np.random.default_rng(1)
    start = [rng.standard_normal(shape) for shape in LARGE]
    cpu = nnx.get_backend("cpu")
    # copies: asarray keeps a float64 array as it is, and the steps write into it
    pieces, opt_pieces = _run_nnx(name, kwargs, 7, cpu, dtype, start=[a.copy() for a in start])
    monkeypatch.setattr(base, "PIECE_BYTES", 1 << 40)  # nothing is large enough to split
    whole, opt_whole = _run_nnx(name, kwargs, 7, cpu, dtype, start=[a.copy() for a in start])
    for a, b, first in zip(pieces, whole, start, strict=True):
        assert a.value is not b.value and not np.array_equal(a.value, first)
        assert a.value.dtype == b.value.dtype == np.dtype(dtype)
        np.testing.assert_array_equal(a.value, b.value)
    for sa, sb in zip(opt_pieces.state, opt_whole.state, strict=True):
        assert sa.keys() == sb.keys()
        for key in sa:
            assert np.shape(sa[key]) == np.shape(sb[key])
            assert np.asarray(sa[key]).dtype == np.asarray(sb[key]).dtype
            np.testing.assert_array_equal(sa[key], sb[key], err_msg=key)


def _count_updates(monkeypatch, optimizer):
    calls = []
    original = type(optimizer)._update

    def spy(self, p, g, state, xp):
        calls.append(p.value.size)
        return original(self, p, g, state, xp)

    monkeypatch.setattr(type(optimizer), "_update", spy)
    return calls


def test_large_numpy_parameters_are_split_into_cache_sized_pieces(monkeypatch):
    from nnx.optim.base import PIECE_BYTES

    big = nnx.Parameter(np.zeros((300, 250)), "big")  # 600,000 bytes
    small = nnx.Parameter(np.zeros(10), "small")
    opt = SGD([big, small], lr=0.1, momentum=0.9)
    calls = _count_updates(monkeypatch, opt)
    big.grad, small.grad = np.ones((300, 250)), np.ones(10)
    opt.step()
    per_piece = PIECE_BYTES // 8
    assert calls == [per_piece, per_piece, 75_000 - 2 * per_piece, 10]
    assert opt.state[0]["momentum_buffer"].shape == (300, 250)  # assembled from the pieces
    np.testing.assert_array_equal(big.value, np.full((300, 250), -0.1))


def test_pieces_need_an_elementwise_rule_and_plain_writeable_arrays(monkeypatch):
    class Custom(SGD):  # a user's rule might look across elements (a norm, say): never split
        elementwise = False

    p = nnx.Parameter(np.zeros((300, 250)), "p")
    opt = Custom([p], lr=0.1)
    calls = _count_updates(monkeypatch, opt)
    p.grad = np.ones((300, 250))
    opt.step()
    assert calls == [75_000]

    frozen = np.zeros((300, 250))
    frozen.flags.writeable = False
    transposed = nnx.Parameter(np.zeros((250, 300)).T, "transposed")  # not C-contiguous
    read_only = nnx.Parameter(frozen, "read_only")
    opt = SGD([transposed, read_only], lr=0.1, momentum=0.9)
    calls = _count_updates(monkeypatch, opt)
    transposed.grad, read_only.grad = np.ones((300, 250)), np.ones((300, 250))
    opt.step()
    assert calls == [75_000, 75_000]  # whole arrays; the read-only one is rebound
    assert not np.shares_memory(read_only.value, frozen) and not frozen.any()
    opt.step()
    np.testing.assert_allclose(transposed.value, -0.29)
    np.testing.assert_allclose(read_only.value, -0.29)


def test_a_rule_that_rebinds_its_arrays_still_works_in_pieces(monkeypatch):
    class Rebinding(nnx.optim.Optimizer):
        elementwise = True

        def _update(self, p, g, state, xp):
            total = state.get("total")
            state["total"] = g if total is None else total + g  # a new array every step
            p.value = p.value - 0.5 * state["total"]  # rebinds instead of writing in place

    p = nnx.Parameter(np.zeros((300, 250)), "p")
    opt = Rebinding([p], lr=1.0)
    calls = _count_updates(monkeypatch, opt)
    original = p.value
    for _ in range(2):
        p.grad = np.ones((300, 250))
        opt.step()
    assert len(calls) == 6 and p.value is original
    np.testing.assert_array_equal(p.value, -1.5)
    np.testing.assert_array_equal(opt.state[0]["total"], 2.0)


@pytest.mark.torch
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_sgd_multi_tensor_step_on_torch_is_the_loop_bit_for_bit(dtype):
    """SGD with momentum on PyTorch tensors updates every parameter in multi-tensor kernels
    (nnx._native.sgd_momentum) once each has a momentum buffer: the per-parameter loop's bits;
    a step where a parameter has no gradient takes the loop (which skips it)."""
    pytest.importorskip("torch")
    from nnx import _fastconv, _native

    be = nnx.get_backend("torch")
    results, counts = [], []
    for native in (True, False):
        before = _native.calls["sgd_momentum"]
        with contextlib.nullcontext() if native else _fastconv.portable_only():
            params, opt = _run_nnx("SGD", {"lr": 0.05, "momentum": 0.9}, 12, be, dtype)
        counts.append(_native.calls["sgd_momentum"] - before)
        results.append([nnx.to_numpy(p.value) for p in params])
        results[-1] += [nnx.to_numpy(s["momentum_buffer"]) for s in opt.state]
        assert [s["step"] for s in opt.state] == [12, 10]  # p1 has no gradient at steps 3, 8
    assert counts == [9, 0]  # not the first step, nor the two with a missing gradient
    for a, b in zip(*results, strict=True):
        assert a.dtype == b.dtype == np.dtype(dtype)
        np.testing.assert_array_equal(a.view(f"u{a.itemsize}"), b.view(f"u{b.itemsize}"))
    for kwargs in ({"lr": 0.1, "momentum": 0.9, "nesterov": True}, {"lr": 0.1}):
        before = _native.calls["sgd_momentum"]
        _run_nnx("SGD", kwargs, 3, be, dtype)
        assert _native.calls["sgd_momentum"] == before  # rules it does not cover: the loop

    class Halved(SGD):  # a subclass's own rule is never bypassed
        def _update(self, p, g, state, xp):
            super()._update(p, g * 0.5, state, xp)

    params = [nnx.Parameter(be.asarray(np.ones(3), dtype=dtype))]
    opt = Halved(params, lr=0.1, momentum=0.9)
    for _ in range(2):
        params[0].grad = be.asarray(np.ones(3), dtype=dtype)
        opt.step()
    np.testing.assert_allclose(nnx.to_numpy(params[0].value), 1 - 0.1 * 0.5 - 0.1 * 0.95)
