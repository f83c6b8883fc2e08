"""nnx._rows: a loop's independent rows split over threads; nnx.backend.blas_threads: how many
threads that may be."""

import threading

import numpy as np
import pytest

from nnx import _rows
from nnx.backend import blas_threads, one_blas_thread


@pytest.mark.parametrize("n", [0, 1, 5, 7, 64])
@pytest.mark.parametrize("threads", [1, 2, 3])
@pytest.mark.parametrize("min_rows", [1, 4])
def test_chunks_cover_every_row_once(n, threads, min_rows):
    parts = _rows.chunks(n, threads, min_rows)
    assert parts[0][0] == 0 and parts[-1][1] == n
    assert all(a[1] == b[0] for a, b in zip(parts, parts[1:], strict=False))
    assert 1 <= len(parts) <= threads
    if len(parts) > 1:
        assert min(hi - lo for lo, hi in parts) >= min_rows


def test_run_uses_other_threads_and_returns_in_order():
    seen = []
    barrier = threading.Barrier(3, timeout=10)  # passes only with three chunks at once

    def fn(lo, hi):
        seen.append(threading.get_ident())
        barrier.wait()
        return lo, hi

    parts = _rows.chunks(9, 3, 1)
    assert _rows.run(fn, parts) == parts
    assert threading.get_ident() in seen and len(set(seen)) == 3  # this thread and two others


def test_run_waits_for_every_chunk_before_raising():
    done = []

    def fn(lo, hi):
        if lo == 0:
            raise ValueError("first chunk failed")
        threading.Event().wait(0.05)
        done.append(lo)

    with pytest.raises(ValueError, match="first chunk failed"):
        _rows.run(fn, [(0, 1), (1, 2), (2, 3)])
    assert sorted(done) == [1, 2]  # the others finished, not left writing shared arrays


def test_an_error_in_another_chunk_is_raised():
    def fn(lo, hi):
        if lo == 1:
            raise RuntimeError("chunk 1")

    with pytest.raises(RuntimeError, match="chunk 1"):
        _rows.run(fn, [(0, 1), (1, 2)])


def test_blas_threads_follows_the_users_limit():
    threadpoolctl = pytest.importorskip("threadpoolctl")
    x = np.ones(3)
    with threadpoolctl.threadpool_limits(1, user_api="blas"):
        assert blas_threads(x) == 1
    with one_blas_thread(x):
        assert blas_threads(x) == 1
    assert 1 <= blas_threads(x)


def test_blas_threads_is_one_for_other_arrays():
    assert blas_threads([1.0]) == 1
