"""Data-parallel training over MPI (through ``mpi4py``), with NCCL for CuPy arrays.

Every rank (process) holds the whole model. Each global batch is cut into disjoint shards, one per
rank; every rank computes the gradients of its shard, and one packed allreduce per step sums them,
weighted by each rank's sample count, so every rank takes the same optimizer step as one process
would on the whole batch. Launch with::

    mpiexec -n 4 python -m mpi4py scripts/train.py --distributed

``python -m mpi4py`` makes an unhandled exception on one rank call ``MPI_Abort``, which stops every
rank, instead of leaving the others waiting forever in their next collective (docs/distributed.md).

This is the only nnx module that imports ``mpi4py``, and only inside :func:`init`; install it with
``pip install "nnx-trainer[mpi]"`` (mpi4py and the MPICH wheel).

A hand-written loop scales like this (``count`` is this rank's number of samples in the step)::

    import nnx.distributed as dist
    dist.init()
    dist.broadcast_parameters(model)            # every rank starts from rank 0's weights
    for xb, yb in DataLoader(data, 64, rank=dist.rank(), world_size=dist.world_size()):
        model.zero_grad()
        if xb.shape[0]:                         # a shard of the last batch can be empty
            loss.forward(model(xb), yb)
            model.backward(loss.backward())
        dist.allreduce_gradients(model, xb.shape[0])
        optimizer.step()
"""

from __future__ import annotations

import atexit
import os
import sys
import threading
import time
from collections.abc import Iterable
from typing import Any

import numpy as np

from .backend import backend_of, get_backend, gpu_count, namespace, to_numpy
from .core.module import Module

INSTALL_HINT = "pip install 'nnx-trainer[mpi]'  (or: pip install mpi4py mpich)"
TIMEOUT_ENV = "NNX_DIST_TIMEOUT"
DEFAULT_TIMEOUT = 300.0  # seconds a rank waits in one collective before it gives up on the others
_FAIL_TAG = 7301
_ACK_TAG = 7302  # a rank that printed another's failure says so before it stops
_ACK_WAIT = 5.0  # seconds a failing rank waits for those answers before it stops itself

# Variables that MPI launchers (MPICH/Hydra, Open MPI, PMIx under Slurm's srun --mpi=pmix, Intel
# MPI, MVAPICH) set in every process they start.
_LAUNCHER_VARS = (
    "PMI_RANK",
    "PMI_SIZE",
    "PMIX_RANK",
    "OMPI_COMM_WORLD_SIZE",
    "MV2_COMM_WORLD_SIZE",
)


class DistributedUnavailableError(RuntimeError):
    """mpi4py (or an MPI library) is missing; the message holds the install command."""


class DistributedTimeoutError(RuntimeError):
    """A collective waited longer than the timeout for the other ranks."""


class RankMismatchError(ValueError):
    """The ranks of one job were started with different settings or data; every rank raises
    it with the same one-line message naming the first fact that differs."""


def launched_by_mpi() -> bool:
    """True when an MPI launcher (``mpiexec``, ``srun --mpi=pmix``) started this process with
    more than one rank (read from the environment; MPI itself is not touched)."""
    for name in ("PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "MV2_COMM_WORLD_SIZE", "PMIX_SIZE"):
        value = os.environ.get(name)
        if value is not None and value.isdigit():
            return int(value) > 1
    return any(name in os.environ for name in ("PMI_RANK", "PMIX_RANK"))


class World:
    """The ranks of one job: ``comm`` (an ``mpi4py`` communicator), ``rank``, ``size``,
    ``local_rank`` (this rank's index among the ranks on its machine) and ``timeout``."""

    def __init__(self, comm: Any, timeout: float):
        from mpi4py import MPI

        self.MPI = MPI
        self.comm = comm
        self.rank = comm.Get_rank()
        self.size = comm.Get_size()
        node = comm.Split_type(MPI.COMM_TYPE_SHARED, key=self.rank)
        self.local_rank = node.Get_rank()
        self.local_size = node.Get_size()
        node.Free()
        self.timeout = float(timeout)
        self._notices = comm.Dup()  # failure notices travel apart from the collectives
        self._nccl: Any = None
        self._deadline: float | None = None
        self._waiting_in = ""
        self._stopping = False
        self._watchdog: threading.Thread | None = None
        if MPI.Query_thread() == MPI.THREAD_MULTIPLE:
            self._watchdog = threading.Thread(target=self._watch, name="nnx-dist-watchdog")
            self._watchdog.daemon = True
            self._watchdog.start()

    # ---------------------------------------------------------------- faults
    def _watch(self) -> None:
        """Stop this rank, with one line on stderr, when another rank reports a failure or a
        collective has waited longer than the timeout (a rank died or hangs)."""
        notice = bytearray(1024)
        request = self._notices.Irecv(notice, source=self.MPI.ANY_SOURCE, tag=_FAIL_TAG)
        status = self.MPI.Status()
        while not self._stopping:
            time.sleep(0.1)
            if request.Test(status):
                text = bytes(notice[: status.Get_count(self.MPI.BYTE)]).decode(errors="replace")
                source = status.Get_source()
                self._abort(f"rank {source} failed: {text}", wait=2.0, ack=source)
            deadline = self._deadline
            if deadline is not None and time.monotonic() > deadline:
                self._abort(
                    f"no answer from the other ranks for {self.timeout:g} s in {self._waiting_in}; "
                    f"a rank died or hangs (set {TIMEOUT_ENV} to wait longer)"
                )
        request.Cancel()  # MPI_Finalize wants no receive left pending
        request.Wait()

    def _abort(self, reason: str, wait: float = 0.0, ack: int | None = None) -> None:
        sys.stderr.write(f"nnx.distributed: rank {self.rank} stops: {reason}\n")
        sys.stderr.flush()
        if ack is not None:  # the failing rank waits for this before it aborts the job
            self._notices.Send(b"", dest=ack, tag=_ACK_TAG)
        time.sleep(wait)  # the failing rank prints its own error and aborts meanwhile
        self.comm.Abort(1)

    def notify_failure(self, error: BaseException) -> None:
        """Tell every other rank that this one fails with ``error`` (they print it and stop)."""
        first = (str(error).splitlines() or [""])[0]
        text = f"{type(error).__name__}: {first}".encode()[:1024]
        others = [r for r in range(self.size) if r != self.rank]
        self._sent = [  # kept: the buffers must outlive the sends
            self._notices.Isend(text, dest=other, tag=_FAIL_TAG) for other in others
        ]
        # Wait (boundedly) until every other rank has printed the notice: the launcher aborts
        # the whole job once this rank's error ends it, and on a busy machine the others'
        # watchdogs might not have run yet, leaving the user without their one-line message.
        if self._watchdog is None:
            return
        acks = [self._notices.Irecv(bytearray(1), source=r, tag=_ACK_TAG) for r in others]
        deadline = time.monotonic() + _ACK_WAIT
        while not self.MPI.Request.Testall(acks) and time.monotonic() < deadline:
            time.sleep(0.02)
        for request in acks:  # a rank that never answered: leave no receive pending
            if not request.Test():
                request.Cancel()
                request.Wait()

    def _guarded(self, what: str, call: Any, *args: Any) -> Any:
        self._waiting_in = what
        self._deadline = time.monotonic() + self.timeout
        try:
            return call(*args)
        finally:
            self._deadline = None

    # ---------------------------------------------------------------- collectives
    def allreduce_sum(self, array: Any, what: str = "allreduce", scratch: bool = False) -> Any:
        """The element-wise sum of ``array`` over all ranks (a new array on its backend, or
        ``array`` itself, summed in place, when ``scratch`` says the caller no longer needs it)."""
        backend = backend_of(array)
        if backend.name == "cupy" and self.size > 1:
            return self._nccl_allreduce(array, what)
        host = to_numpy(array)
        if not (scratch and backend.name == "numpy" and host.flags.c_contiguous):
            host = np.array(host, copy=True, order="C")  # never write into the caller's array
        if self.size > 1:
            self._guarded(what, self.comm.Allreduce, self.MPI.IN_PLACE, host)
        return host if backend.name == "numpy" else backend.asarray(host, dtype=array.dtype)

    def allreduce_counts(self, counts: list[int], what: str = "allreduce") -> list[int]:
        """The element-wise sum of a list of host integers over all ranks."""
        host = np.asarray(counts, dtype=np.int64)
        if self.size > 1:
            self._guarded(what, self.comm.Allreduce, self.MPI.IN_PLACE, host)
        return [int(c) for c in host]

    def allgather(self, array: np.ndarray, what: str = "allgather") -> list[np.ndarray]:
        """Every rank's host ``array``, in rank order (the arrays may differ in length)."""
        if self.size == 1:
            return [array]
        return list(self._guarded(what, self.comm.allgather, np.ascontiguousarray(array)))

    def agree(self, facts: dict[str, Any], what: str = "start-up check") -> None:
        """Check that every rank holds the same ``facts`` (name -> a small JSON-able value: a
        setting, a data shape, a hash); else raise :class:`RankMismatchError` on every rank,
        naming the first differing fact and the ranks' values. Ranks launched with different
        data or settings would otherwise train to silently different results, or die in a
        collective with the MPI library's stack."""
        import json

        mine = json.dumps(facts, sort_keys=True, default=str)
        everyone = self._guarded(what, self.comm.allgather, mine) if self.size > 1 else [mine]
        if all(text == everyone[0] for text in everyone):
            return
        tables = [json.loads(text) for text in everyone]
        for name in sorted({k for t in tables for k in t}):
            values = [t.get(name, "(missing)") for t in tables]
            odd = [r for r, v in enumerate(values) if v != values[0]]
            if odd:
                raise RankMismatchError(
                    f"the ranks disagree on {name}: rank 0 has {values[0]!r}, rank {odd[0]} has "
                    f"{values[odd[0]]!r}; start every rank with the same settings and data"
                )

    def _nccl_allreduce(self, array: Any, what: str) -> Any:
        # Written against cupy.cuda.nccl but not yet run: no GPU machine was available.
        from .backend import nccl_allreduce_sum, nccl_communicator

        if self._nccl is None:

            def share(uid: Any) -> Any:  # rank 0's NCCL id, carried by MPI
                return self._guarded("NCCL setup", self.comm.bcast, uid, 0)

            self._nccl = nccl_communicator(self.size, self.rank, share)
        return self._guarded(what, nccl_allreduce_sum, self._nccl, array)

    def barrier(self) -> None:
        self._guarded("barrier", self.comm.Barrier)

    def close(self) -> None:
        """Stop the watchdog (called at exit, before mpi4py finalizes MPI)."""
        self._stopping = True
        if self._watchdog is not None:
            self._watchdog.join(timeout=5.0)
            self._watchdog = None


_world: World | None = None


def init(comm: Any = None, timeout: float | None = None) -> World:
    """Join the MPI job (``MPI.COMM_WORLD`` unless ``comm`` is given); calling it again returns
    the same :class:`World`.

    ``timeout`` (default ``$NNX_DIST_TIMEOUT`` or 300 s) bounds how long a rank waits in one
    collective before it decides that another rank died or hangs and aborts the job.

    Raises DistributedUnavailableError with the install command when mpi4py is missing.
    """
    global _world
    if _world is not None:
        return _world
    try:
        from mpi4py import MPI
    except ImportError as err:
        raise DistributedUnavailableError(
            f"distributed training needs mpi4py and an MPI library ({err}); install them with "
            f"{INSTALL_HINT}"
        ) from None
    if timeout is None:
        text = os.environ.get(TIMEOUT_ENV, str(DEFAULT_TIMEOUT))
        try:
            timeout = float(text)
        except ValueError:
            raise ValueError(f"{TIMEOUT_ENV} must be a number of seconds, got {text!r}") from None
    if not timeout > 0:
        raise ValueError(f"nnx.distributed.init: timeout must be > 0 seconds, got {timeout!r}")
    _world = World(MPI.COMM_WORLD if comm is None else comm, timeout)
    atexit.register(_world.close)  # runs before mpi4py's own exit hook, registered earlier
    return _world


def is_initialized() -> bool:
    """True after :func:`init`."""
    return _world is not None


def world() -> World:
    """The :class:`World` made by :func:`init` (RuntimeError before it)."""
    if _world is None:
        raise RuntimeError("nnx.distributed: call nnx.distributed.init() first")
    return _world


def rank() -> int:
    """This process's rank, 0 to ``world_size() - 1``."""
    return world().rank


def world_size() -> int:
    """The number of ranks in the job."""
    return world().size


def local_rank() -> int:
    """This rank's index among the ranks on the same machine (picks its GPU)."""
    return world().local_rank


def barrier() -> None:
    """Wait until every rank has called it."""
    world().barrier()


def device_spec(spec: str) -> str:
    """The backend spec a rank should use: ``"gpu"``/``"cuda"`` (and ``"auto"`` when CuPy has a
    GPU) become ``"cuda:N"`` with N = local rank modulo the GPUs on the machine, so every rank of
    a machine drives its own GPU. Other specs are returned unchanged."""
    if spec not in ("auto", "gpu", "cuda"):
        return spec
    if get_backend(spec).name != "cupy":
        return spec
    return f"cuda:{local_rank() % gpu_count()}"


def _entries(model: Module) -> list[tuple[str, Any]]:
    return [*model.named_parameters(), *model.named_buffers()]


def broadcast_parameters(model: Module, root: int = 0) -> None:
    """Give every rank ``root``'s parameters and buffers (running statistics included).

    Raises ValueError on every rank when the models differ in names, shapes or dtypes.
    """
    w = world()
    entries = _entries(model)
    layout = [(name, tuple(e.value.shape), str(e.value.dtype)) for name, e in entries]
    root_layout = w._guarded("broadcast_parameters", w.comm.bcast, layout, root)
    if root_layout != layout:
        mine = {n: (s, d) for n, s, d in layout}
        theirs = {n: (s, d) for n, s, d in root_layout}
        diff = sorted(n for n in set(mine) | set(theirs) if mine.get(n) != theirs.get(n))
        raise ValueError(
            f"broadcast_parameters: rank {w.rank}'s model differs from rank {root}'s in "
            f"{', '.join(diff[:5])}" + (" ..." if len(diff) > 5 else "")
        )
    for _, entry in entries:
        host = np.ascontiguousarray(to_numpy(entry.value)).copy()
        w._guarded("broadcast_parameters", w.comm.Bcast, host, root)
        if w.rank != root:
            entry.value = backend_of(entry.value).asarray(host, dtype=entry.value.dtype)


def allreduce_gradients(model: Module | Iterable[Any], count: int) -> None:
    """Replace every gradient by the sample-weighted mean over the ranks, in one allreduce.

    ``count`` is the number of samples this rank's gradients were computed on (0 for an empty
    shard; its gradients are then ignored). With ``g_r`` the mean-loss gradient of rank ``r`` over
    ``n_r`` samples, every rank gets ``sum_r n_r g_r / sum_r n_r``: the gradient one process would
    get on the whole global batch, also when the shards are uneven. All gradients, the counts and
    which parameters have a gradient are packed into one contiguous buffer, so a step makes one
    allreduce call whatever the number of parameters. A parameter that has no gradient on any
    rank keeps ``grad = None``.
    """
    w = world()
    params = list(model.parameters() if isinstance(model, Module) else model)
    if not params or w.size == 1:  # one rank: its gradients are the whole batch's already
        return
    xp = namespace(params[0].value)
    be = backend_of(params[0].value)
    dtype = xp.result_type(*{p.value.dtype for p in params})
    count = int(count)
    pieces = []
    for p in params:
        if p.grad is None:
            pieces.append(xp.zeros(p.value.shape, dtype=dtype, device=be.device))
        else:
            pieces.append(xp.astype(p.grad, dtype) * float(count))
    has_grad = [float(count > 0 and p.grad is not None) for p in params]
    tail = be.asarray([float(count), *has_grad], dtype=dtype)
    flat = xp.concat([xp.reshape(g, (-1,)) for g in pieces] + [tail])
    summed = w.allreduce_sum(flat, "allreduce_gradients", scratch=True)
    total = summed[-len(params) - 1]  # stays on the device: no host sync per step
    flags = None
    if any(p.grad is None for p in params):  # rare: read which parameters got a gradient
        flags = to_numpy(summed[-len(params) :])
    start = 0
    for i, p in enumerate(params):
        size = int(np.prod(p.value.shape))
        if flags is not None and flags[i] == 0:
            p.grad = None
        else:
            g = xp.reshape(summed[start : start + size], p.value.shape) / total
            p.grad = xp.astype(g, p.value.dtype) if g.dtype != p.value.dtype else g
        start += size


def average_buffers(model: Module) -> None:
    """Replace every floating buffer (BatchNorm running statistics) by its mean over the ranks,
    in one allreduce, so that every rank holds the same model again. Integer buffers (counters)
    are left alone: they advance the same on every rank."""
    w = world()
    buffers = []
    for _, b in model.named_buffers():
        xp = namespace(b.value)
        if xp.isdtype(b.value.dtype, "real floating"):
            buffers.append(b)
    if not buffers or w.size == 1:
        return
    xp = namespace(buffers[0].value)
    dtype = xp.result_type(*{b.value.dtype for b in buffers})
    flat = xp.concat([xp.reshape(xp.astype(b.value, dtype), (-1,)) for b in buffers])
    mean = w.allreduce_sum(flat, "average_buffers") / w.size
    start = 0
    for b in buffers:
        size = int(np.prod(b.value.shape))
        b.value = xp.astype(xp.reshape(mean[start : start + size], b.value.shape), b.value.dtype)
        start += size


def allreduce_sum(array: Any) -> Any:
    """The element-wise sum of ``array`` (any backend) over all ranks, as a new array."""
    return world().allreduce_sum(array)


def notify_failure(error: BaseException) -> None:
    """Tell the other ranks that this one fails (no-op before :func:`init` or with one rank).

    The Trainer calls it when ``fit`` raises; every other rank then prints one line naming this
    rank and the error, and the job is aborted instead of waiting in the next collective."""
    if _world is not None and _world.size > 1:
        _world.notify_failure(error)
