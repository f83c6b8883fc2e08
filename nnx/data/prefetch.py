"""A background thread that produces the next items of an iterator while the caller works.

``prefetched(iterable, depth)`` runs ``iter(iterable)`` on a daemon thread that keeps at most
``depth`` finished items in a bounded queue; the caller receives them in the same order. An
exception in the thread is re-raised in the caller (the same exception object: same type and
message). Closing the generator (an abandoned epoch, ``KeyboardInterrupt``, garbage collection)
stops the thread: it is told to stop, the queue is drained and the thread joined.

The thread overlaps work that releases the GIL: ``pread`` of a memory map's rows, waits on a
slow file, the host-to-device copy of a GPU backend. It does not make per-sample Python work
free: that holds the GIL, which the training step also needs (``docs/benchmarks.md`` measures
both: on a NumPy CPU step prefetching did not help).

>>> list(prefetched(range(5), depth=2))
[0, 1, 2, 3, 4]
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterable, Iterator
from typing import Any

_ITEM, _END, _ERROR = 0, 1, 2


class _Worker:
    def __init__(self, iterable: Iterable[Any], depth: int):
        self.queue: queue.Queue[tuple[int, Any]] = queue.Queue(maxsize=depth)
        self.stop = threading.Event()
        self.thread = threading.Thread(
            target=self._run, args=(iterable,), name="nnx-prefetch", daemon=True
        )
        self.thread.start()

    def _put(self, item: tuple[int, Any]) -> bool:
        while not self.stop.is_set():
            try:
                self.queue.put(item, timeout=0.05)
                return True
            except queue.Full:
                continue
        return False

    def _run(self, iterable: Iterable[Any]) -> None:
        try:
            for item in iterable:
                if not self._put((_ITEM, item)):
                    return
            self._put((_END, None))
        except BaseException as err:  # handed to the caller's thread
            self._put((_ERROR, err))

    def close(self) -> None:
        self.stop.set()
        while self.thread.is_alive():
            try:
                self.queue.get(timeout=0.05)
            except queue.Empty:
                pass
        self.thread.join()


def prefetched(iterable: Iterable[Any], depth: int) -> Iterator[Any]:
    """The items of ``iterable`` in order, produced up to ``depth`` ahead on a background thread."""
    worker = _Worker(iterable, depth)
    try:
        while True:
            kind, value = worker.queue.get()
            if kind == _END:
                return
            if kind == _ERROR:
                raise value
            yield value
    finally:
        worker.close()
