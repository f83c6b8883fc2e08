"""A NumPy loop's independent rows run on several threads at once (the recurrent time loops of
:mod:`nnx._fastrnn`).

Why: nnx runs a time loop's many small products on one BLAS thread
(:func:`nnx.backend.one_blas_thread`), since a multi-threaded BLAS waits for its threads at every
call, which on a busy machine can cost a scheduler time slice per product. With the default
threads on an idle machine that left the second core unused for the loop, where torch uses both.
The rows of a batch are independent through a time loop, so the loop runs on row chunks
instead, one per thread, each chunk's products on one BLAS thread: the threads meet once per loop
instead of once per product. NumPy releases the GIL inside its products and its element-wise
operations on arrays of more than a few hundred elements, so the chunks run in parallel; what
holds the GIL (the Python of each step) is a few percent of a step at the sizes that split.

How many threads: as many as NumPy's BLAS may use outside nnx's one-thread blocks
(:func:`nnx.backend.blas_threads`): the library's default (every core) unless the user limited
it (``--threads 1``, ``OPENBLAS_NUM_THREADS=1``, threadpoolctl), in which case nothing changes.
The results are those of one chunk up to the rounding of the products: every row's operations
are the same whatever rows run beside them, but OpenBLAS picks its kernels by the matrices'
size, and a product of fewer rows may round differently in the last bit (seen in float64 at
the tests' tiny sizes). A run is repeatable with the same thread count.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

_POOL: ThreadPoolExecutor | None = None
_POOL_KEY: tuple[int, int] = (0, 0)  # (process id, workers) the pool was made for
_LOCK = threading.Lock()


def chunks(n: int, threads: int, min_rows: int) -> list[tuple[int, int]]:
    """Row ranges ``(lo, hi)`` covering ``range(n)``: at most ``threads`` of them, each of at least
    ``min_rows`` rows (one range when ``n < 2 * min_rows`` or ``threads <= 1``)."""
    parts = max(1, min(threads, n // max(1, min_rows)))
    bounds = [n * i // parts for i in range(parts + 1)]
    return list(zip(bounds[:-1], bounds[1:], strict=True))


def _pool(workers: int) -> ThreadPoolExecutor:
    """The process's pool of at least ``workers`` threads, made on first use and again in a
    forked child (whose copy of the pool has no threads)."""
    global _POOL, _POOL_KEY
    key = (os.getpid(), workers)
    with _LOCK:
        if _POOL is None or _POOL_KEY[0] != key[0] or _POOL_KEY[1] < workers:
            if _POOL is not None and _POOL_KEY[0] == key[0]:
                _POOL.shutdown(wait=False)  # a smaller pool of this process: replaced
            _POOL = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="nnx-rows")
            _POOL_KEY = key
        return _POOL


def run(fn: Callable[[int, int], Any], parts: list[tuple[int, int]]) -> list[Any]:
    """``[fn(lo, hi) for lo, hi in parts]``, the first range on this thread and the others on
    the pool's threads at the same time. Every range has finished when this returns or raises
    (the ranges write into shared arrays); the first exception is raised."""
    if len(parts) == 1:
        return [fn(*parts[0])]
    pool = _pool(len(parts) - 1)
    futures: list[Future] = [pool.submit(fn, lo, hi) for lo, hi in parts[1:]]
    try:
        first = fn(*parts[0])
    finally:
        rest = [f.exception() for f in futures]  # waits for every range, even after an error
    for error in rest:
        if error is not None:
            raise error
    return [first] + [f.result() for f in futures]
