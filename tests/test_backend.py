import logging
import sys
import types

import numpy as np
import pytest

import nnx
from nnx.backend import VALID_SPECS, backend_available


def test_cpu_specs_give_numpy():
    for spec in ("cpu", "numpy", " CPU "):
        be = nnx.get_backend(spec)
        assert be.name == "numpy" and be.device == "cpu" and not be.is_gpu
    assert nnx.get_backend(nnx.get_backend("cpu")) == nnx.get_backend("numpy")


def test_unknown_spec_lists_valid_ones():
    with pytest.raises(ValueError, match="unknown backend spec 'tpu'") as err:
        nnx.get_backend("tpu")
    for spec in ("auto", "cpu", "gpu", "cuda:N", "torch", "strict"):
        assert spec in str(err.value)
    with pytest.raises(ValueError, match="bad device index"):
        nnx.get_backend("cuda:x")
    with pytest.raises(TypeError, match="string or Backend"):
        nnx.get_backend(3)


def test_auto_falls_back_to_numpy_and_says_so(caplog):
    if backend_available("gpu")[0]:
        pytest.skip("a GPU is usable here, auto picks it")
    with caplog.at_level(logging.INFO, logger="nnx"):
        be = nnx.get_backend("auto")
    assert be.name == "numpy"
    assert "NumPy" in caplog.text and "no usable GPU" in caplog.text


def test_gpu_without_cupy_is_a_clear_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "cupy", None)  # makes `import cupy` fail
    for spec in ("gpu", "cuda", "cuda:0", "cupy"):
        with pytest.raises(nnx.BackendUnavailableError, match="CuPy is not installed") as err:
            nnx.get_backend(spec)
        assert "nnx-trainer[gpu]" in str(err.value) and "backend 'cpu'" in str(err.value)
        assert "--" not in str(err.value)  # a Python API error names no command-line flag
    assert nnx.get_backend("auto").name == "numpy"


def _fake_cupy(count_error=None, count=1):
    class CUDARuntimeError(RuntimeError):
        pass

    def get_device_count():
        if count_error:
            raise CUDARuntimeError(count_error)
        return count

    cupy = types.ModuleType("cupy")
    cupy.cuda = types.SimpleNamespace(
        runtime=types.SimpleNamespace(getDeviceCount=get_device_count)
    )
    return cupy


def test_gpu_without_driver_is_a_clear_error(monkeypatch):
    monkeypatch.setitem(
        sys.modules, "cupy", _fake_cupy("cudaErrorInsufficientDriver: driver too old")
    )
    with pytest.raises(nnx.BackendUnavailableError, match="CUDA is not usable") as err:
        nnx.get_backend("gpu")
    assert "cudaErrorInsufficientDriver" in str(err.value)
    # CuPy is installed: the hint is the driver, not installing the GPU extra again
    assert "NVIDIA driver" in str(err.value) and "nnx-trainer[gpu]" not in str(err.value)
    assert nnx.get_backend("auto").name == "numpy"


def test_gpu_with_no_device_or_wrong_index(monkeypatch):
    monkeypatch.setitem(sys.modules, "cupy", _fake_cupy(count=0))
    with pytest.raises(nnx.BackendUnavailableError, match="no CUDA device"):
        nnx.get_backend("cuda")
    monkeypatch.setitem(sys.modules, "cupy", _fake_cupy(count=2))
    with pytest.raises(nnx.BackendUnavailableError, match=r"cuda:5 was requested .* 2 CUDA device"):
        nnx.get_backend("cuda:5")


def test_torch_missing_is_a_clear_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "torch", None)
    with pytest.raises(nnx.BackendUnavailableError, match="needs PyTorch.*pip install torch"):
        nnx.get_backend("torch")


def test_strict_missing_names_array_api_strict(monkeypatch):
    monkeypatch.setitem(sys.modules, "array_api_strict", None)
    with pytest.raises(nnx.BackendUnavailableError, match="pip install array-api-strict"):
        nnx.get_backend("strict")


def test_strict_devices():
    assert nnx.get_backend("strict").name == "array_api_strict"
    assert str(nnx.get_backend("strict:device1").device) == "array_api_strict.Device('device1')"
    with pytest.raises(ValueError, match="unknown array-api-strict device 'nope'"):
        nnx.get_backend("strict:nope")


def test_valid_specs_are_documented():
    assert "auto" in VALID_SPECS and "torch:cuda" in VALID_SPECS


def test_round_trip_host_and_between_backends(backend):
    host = np.arange(6, dtype=np.float32).reshape(2, 3)
    x = backend.asarray(host)
    assert backend.owns(x) and nnx.backend_of(x) == backend
    np.testing.assert_array_equal(backend.to_numpy(x), host)
    # another backend's array moves through the host
    other = nnx.get_backend("strict:device1")
    y = other.asarray(x, dtype="float64")
    assert other.owns(y) and str(y.dtype).endswith("float64")
    np.testing.assert_array_equal(nnx.to_numpy(y), host)


def test_dtype_names(backend):
    assert backend.dtype("float32") == backend.xp.float32
    assert backend.dtype(np.float64) == backend.xp.float64
    with pytest.raises(ValueError, match="unknown dtype 'float8'"):
        backend.dtype("float8")


def test_generator_is_seeded_and_on_device(backend):
    a = backend.generator(7).uniform((1000,), backend.xp.float32)
    b = backend.generator(7).uniform((1000,), backend.xp.float32)
    c = backend.generator(8).uniform((1000,), backend.xp.float32)
    assert backend.owns(a) and a.dtype == backend.xp.float32
    ha, hb, hc = nnx.to_numpy(a), nnx.to_numpy(b), nnx.to_numpy(c)
    np.testing.assert_array_equal(ha, hb)
    assert not np.array_equal(ha, hc)
    assert 0.0 <= ha.min() and ha.max() < 1.0 and abs(ha.mean() - 0.5) < 0.05


def test_namespace_rejects_non_arrays():
    with pytest.raises(TypeError, match="expected an array .* got list"):
        nnx.namespace([1.0, 2.0])


def test_a_dtype_the_backend_lacks_is_named_as_missing():
    with pytest.raises(ValueError, match="backend 'array_api_strict' has no float16; use another"):
        nnx.get_backend("strict").dtype("float16")


def test_numpy_namespace_shortcuts_match_numpy(tmp_path):
    """The NumPy namespace's direct calls (sum, max, min, reshape, take, astype) give NumPy's
    own results, bit for bit, on plain arrays, and hand anything else to NumPy's functions."""
    import array_api_compat

    rng = np.random.default_rng(0)
    x = rng.standard_normal((7, 5, 3)).astype(np.float32)
    xp = nnx.backend.namespace(x)
    assert xp is nnx.get_backend("cpu").xp and xp is nnx.backend.namespace(np.float32(1))
    assert array_api_compat.is_numpy_namespace(xp) and xp.sum is not np.sum
    path = tmp_path / "x.npy"
    np.save(path, x)
    mapped = np.load(path, mmap_mode="r")  # an ndarray subclass: NumPy's own functions
    for a in (x, mapped, np.float32(2.5)):
        for axis in (None, 0, -1, (0, 2)) if a.ndim else (None,):
            for keepdims in (False, True):
                for ours, theirs in ((xp.sum, np.sum), (xp.max, np.max), (xp.min, np.min)):
                    got = ours(a, axis=axis, keepdims=keepdims)
                    want = theirs(a, axis=axis, keepdims=keepdims)
                    assert type(got) is type(want) and np.array_equal(got, want)
                    assert np.asarray(got).dtype == np.asarray(want).dtype
    assert xp.sum(x, axis=1, dtype=xp.float64).dtype == np.float64
    assert xp.sum(x, where=x > 0) == np.sum(x, where=x > 0)  # extra keywords: np.sum
    assert xp.max(x, initial=10.0) == 10.0
    idx = np.array([4, 0, 4])
    np.testing.assert_array_equal(xp.take(x, idx, axis=0), np.take(x, idx, axis=0))
    assert xp.take(x, idx, axis=0).flags.c_contiguous
    np.testing.assert_array_equal(xp.take(x, idx), np.take(x, idx))  # flattened, as NumPy
    assert xp.reshape(x, (5, -1)).shape == (5, 21) and xp.reshape(x, -1).base is x
    np.testing.assert_array_equal(xp.reshape(x, (21, 5), copy=True), x.reshape(21, 5))
    y = xp.astype(x, xp.float64)
    assert y.dtype == np.float64 and np.array_equal(y, x)
    assert xp.astype(x, xp.float32, copy=False) is x and xp.astype(x, xp.float32) is not x
    assert xp.astype(x, xp.int32, device="cpu").dtype == np.int32
    with pytest.raises(ValueError, match="zero-size"):
        xp.max(np.zeros((0, 3), np.float32))
    with pytest.raises(ValueError, match="device"):
        xp.astype(x, xp.float64, device="gpu")


def test_numpy_max_and_min_of_many_short_rows_match_numpy():
    """Row maxima and minima of many short rows (taken down the columns of the transpose) are
    NumPy's values, NaN, infinities and zeros included, in every layout and integer dtype."""
    from nnx.backend import MANY_ROWS, SHORT_ROW

    rng = np.random.default_rng(1)
    xp = nnx.get_backend("cpu").xp
    specials = np.array([0.0, -0.0, np.nan, np.inf, -np.inf, 1.0])
    x = rng.standard_normal((MANY_ROWS + 5, 10))
    hit = rng.random(x.shape) < 0.3
    x[hit] = rng.choice(specials, hit.sum())
    x[3] = -np.inf  # a whole row of one value
    integers = (np.where(np.isfinite(x), x, 0) * 9).astype(np.int64)
    for a in (x.astype(np.float32), x, np.asfortranarray(x), integers):
        for axis in (1, -1):
            for keepdims in (False, True):
                for ours, theirs in ((xp.max, np.max), (xp.min, np.min)):
                    got = ours(a, axis=axis, keepdims=keepdims)
                    want = theirs(a, axis=axis, keepdims=keepdims)
                    assert got.shape == want.shape and got.dtype == want.dtype
                    np.testing.assert_array_equal(got, want)
    wide = rng.standard_normal((MANY_ROWS, SHORT_ROW + 1))  # beyond the limits: NumPy's call
    np.testing.assert_array_equal(xp.max(wide, axis=1), np.max(wide, axis=1))
    with pytest.raises(ValueError, match="zero-size"):
        xp.max(np.zeros((MANY_ROWS, 0), np.float32), axis=1)


@pytest.mark.torch
def test_torch_namespace_shortcuts_match_array_api_compat():
    """The PyTorch namespace's direct calls give array-api-compat's results, bit for bit, and
    leave the cases its wrappers exist for (axis=(), axis=None, mixed dtypes, scalars, copy and
    device keywords, tensor subclasses) to the wrappers."""
    torch = pytest.importorskip("torch")
    import array_api_compat
    import array_api_compat.torch as compat

    x = torch.asarray(np.random.default_rng(0).standard_normal((4, 3, 5)).astype(np.float32))
    xp = nnx.backend.namespace(x)
    assert xp is nnx.get_backend("torch").xp and xp.sum is not compat.sum
    assert array_api_compat.is_torch_namespace(xp)
    other = x.flip(0)
    half = torch.nn.Parameter(x.clone(), requires_grad=False)  # a subclass: the wrappers

    def same(got, want):
        assert type(got) is type(want) and got.dtype == want.dtype and got.shape == want.shape
        assert torch.equal(got.view(-1).view(torch.int8), want.view(-1).view(torch.int8))

    for a in (x, half):
        for axis in (None, 0, -1, (0, 2), ()):
            for keepdims in (False, True):
                for name in ("sum", "max", "min"):
                    same(
                        getattr(xp, name)(a, axis=axis, keepdims=keepdims),
                        getattr(compat, name)(a, axis=axis, keepdims=keepdims),
                    )
        same(xp.sum(a, axis=1, dtype=torch.float64), compat.sum(a, axis=1, dtype=torch.float64))
        same(xp.reshape(a, (5, -1)), compat.reshape(a, (5, -1)))
        assert xp.reshape(x, (-1,)).data_ptr() == x.data_ptr()
        assert xp.reshape(x, (-1,), copy=True).data_ptr() != x.data_ptr()
        same(xp.astype(a, torch.float64), compat.astype(a, torch.float64))
        for b in (other, other.double(), 2.0, 0, -1, torch.asarray(3.0)):
            for name in ("add", "subtract", "multiply", "divide", "maximum", "minimum"):
                same(getattr(xp, name)(a, b), getattr(compat, name)(a, b))
            same(xp.where(a > 0, a, b), compat.where(a > 0, a, b))
    for t in (x.half(), x.to(torch.bfloat16), x[0, 0, 0], x.to(torch.int32)):
        for b in (0, 2.5, -1, True):
            same(xp.maximum(t, b), compat.maximum(t, b))
            same(xp.minimum(t, b), compat.minimum(t, b))
    assert xp.astype(x, torch.float32, copy=False) is x and xp.astype(x, torch.float32) is not x
    assert xp.astype(x, torch.int32, device=x.device).dtype == torch.int32
    assert nnx.backend.device(x) == array_api_compat.device(x) == x.device
    assert nnx.backend.is_writeable(x) and nnx.backend.native_library(x) is torch
    with pytest.raises(RuntimeError):  # torch's own error, from the shortcut as from the wrapper
        xp.reshape(x, (7, -1))
