"""nnx.backend.one_blas_thread: NumPy's BLAS on one thread inside, restored after; a no-op for
arrays of other libraries."""

import numpy as np
import pytest

from nnx.backend import one_blas_thread

threadpoolctl = pytest.importorskip("threadpoolctl")


def _blas_threads():
    """Thread counts of NumPy's own BLAS (a wheel's bundled OpenBLAS; SciPy may bring another
    copy, which one_blas_thread leaves alone when it was loaded after the first call)."""
    return [
        i["num_threads"]
        for i in threadpoolctl.threadpool_info()
        if i["user_api"] == "blas" and "numpy" in i["filepath"]
    ]


def test_numpy_blas_runs_on_one_thread_inside_and_is_restored():
    before = _blas_threads()
    if not before:
        pytest.skip("NumPy's BLAS is not a bundled library that threadpoolctl can find")
    with threadpoolctl.threadpool_limits(2, user_api="blas"):
        outer = _blas_threads()
        with one_blas_thread(np.ones(3)):
            assert _blas_threads() == [1] * len(outer)
        assert _blas_threads() == outer
    assert _blas_threads() == before


@pytest.mark.torch
def test_other_arrays_leave_the_threads_alone():
    torch = pytest.importorskip("torch")
    before = _blas_threads()
    with one_blas_thread(torch.ones(3)):
        assert _blas_threads() == before
