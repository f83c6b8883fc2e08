"""Everything the Trainer accepts as data, turned into one kind of loader for its epoch loop.

``fit``, ``evaluate`` and ``predict`` take:

- arrays: an ``(x, y)`` pair or an :class:`~nnx.data.ArrayDataset` held in memory: moved to the
  backend once and cut there (the checks of the whole data, the label range and the SHA-256
  agreement of distributed runs apply);
- an :class:`~nnx.data.ArrayDataset` over memory-mapped arrays, or a map-style dataset
  (``__len__`` + ``__getitem__`` per sample): an :class:`~nnx.data.DataLoader` gathers each
  batch on the host (each rank only its rows) and copies it to the backend;
- an :class:`~nnx.data.DataLoader`: used with its own batch size, shuffle, drop_last, seed,
  collate and prefetch; the Trainer sets the rank, backend and dtype;
- any other iterable of ``(x, y)`` batches (a list, a generator, a PyTorch ``DataLoader``), or an
  iterable-style dataset of samples (PyTorch's ``IterableDataset``, batched by ``batch_size``):
  a :class:`~nnx.data.stream.BatchStream`.

Host-gathered data and streams are checked per batch as it arrives (complex or NaN/infinite
values refused on the host, class labels checked by the loss), since reading them whole first
would defeat their purpose.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..backend import overflow_allowed, to_numpy
from ..core.structure import leaves, map_structure
from ..data import ArrayDataset, DataLoader
from ..data.gather import is_lazy
from ..data.loader import is_map_style, shard_bounds
from ..data.stream import KINDS, BatchStream, is_sample_stream
from .agreement import agree_on_start
from .data_checks import check_real


def host_check(who: str, name: str, targets: bool = True) -> Any:
    """A per-batch check of host data: real values, finite floats, targets present."""

    def check(x: Any, y: Any) -> None:
        if targets and y is None:
            raise ValueError(f"{who}: the {name} batches need targets: (x, y) pairs")
        for part, value in (("inputs", x), ("targets", y)):
            if value is None:
                continue
            for _, a in leaves(value):
                host = np.asarray(to_numpy(a))
                if host.dtype.kind == "c":
                    raise TypeError(
                        f"{who}: the {name} {part} are complex ({host.dtype}); nnx trains on "
                        f"real numbers"
                    )
                if host.dtype.kind == "f" and not np.all(np.isfinite(host)):
                    raise ValueError(
                        f"{who}: a batch of the {name} {part} holds NaN or infinite values; "
                        f"remove or impute them before training"
                    )

    return check


def is_in_memory(data: Any) -> bool:
    """True for arrays held whole: an ``(x, y)`` pair, or an ArrayDataset without memory maps."""
    if isinstance(data, tuple) and len(data) == 2:
        return not is_lazy(data[0]) and not is_lazy(data[1])
    if isinstance(data, ArrayDataset):
        return not is_lazy(data.x) and (data.y is None or not is_lazy(data.y))
    if isinstance(data, DataLoader):
        return not data.on_host
    return False


def _moved(trainer: Any, data: ArrayDataset, targets: bool) -> ArrayDataset:
    if targets:
        return trainer.dataset(data)
    with overflow_allowed():
        return ArrayDataset(data.x).to(trainer.backend, dtype=trainer.dtype)


def make_loader(
    trainer: Any,
    data: Any,
    who: str,
    name: str,
    batch_size: int,
    shuffle: bool,
    drop_last: bool = False,
    shard: bool = True,
    targets: bool = True,
) -> tuple[Any, Any]:
    """``(loader, dataset)`` for ``data`` (see the module docstring): ``dataset`` is the data on
    the backend when it is held in memory, the host dataset (memory map or map-style) when it
    is gathered per batch, None for a stream."""
    world = trainer.world_size if shard else 1
    rank = trainer.rank if shard else 0
    check = host_check(who, name, targets)
    options = dict(backend=trainer.backend, dtype=trainer.dtype, check=check)
    if isinstance(data, tuple) and len(data) == 2:
        data = ArrayDataset(*data)
    if isinstance(data, DataLoader):
        if data.on_host:
            return data.with_options(rank=rank, world_size=world, **options), data.dataset
        moved = _moved(trainer, data.dataset, targets)
        return data.with_options(dataset=moved, rank=rank, world_size=world), moved
    if isinstance(data, ArrayDataset) and is_in_memory(data):
        moved = _moved(trainer, data, targets)
        return DataLoader(moved, batch_size, shuffle, drop_last, trainer.seed, rank, world), moved
    if isinstance(data, ArrayDataset) or is_map_style(data):
        if isinstance(data, ArrayDataset) and targets and data.y is None:
            raise ValueError(f"{who}: training and evaluation data need targets (y)")
        loader = DataLoader(
            data, batch_size, shuffle, drop_last, trainer.seed, rank, world, **options
        )
        return loader, data
    if not hasattr(data, "__iter__") or hasattr(data, "shape"):
        raise TypeError(f"{who}: data must be {KINDS}, got {type(data).__name__}")
    if trainer.world is not None and shard:
        raise ValueError(
            f"{who}: distributed training shards arrays and map-style datasets (__len__ and "
            f"__getitem__) by rank; an iterable of batches ({type(data).__name__}) cannot be "
            f"sharded: give each rank a dataset instead"
        )
    size = batch_size if is_sample_stream(data) else None
    return BatchStream(data, size, who=who, targets=targets, **options), None


def predict_loader(trainer: Any, x: Any, batch_size: int) -> Any:
    """Batches of inputs for ``Trainer.predict``: arrays (a tuple, list or dict of arrays are
    several inputs), an ArrayDataset (its ``x``), a DataLoader (without its shuffle), a dataset
    or an iterable of batches (``x`` or ``(x, y)``; the targets are ignored)."""
    who = "Trainer.predict"
    if isinstance(x, ArrayDataset):
        x = x.x
    if isinstance(x, DataLoader):
        x = x.with_options(shuffle=False)  # outputs in the data's order
    streamed = isinstance(x, DataLoader) or is_map_style(x) or is_lazy(x)
    if not streamed and not isinstance(x, (tuple, list, dict)) and not hasattr(x, "shape"):
        streamed = hasattr(x, "__iter__")
    if streamed:
        if is_lazy(x):
            x = ArrayDataset(x)
        loader, dataset = make_loader(
            trainer, x, who, "prediction", batch_size, False, False, False, False
        )
        if dataset is not None and len(dataset) == 0:
            raise ValueError(f"{who}: x has 0 rows")
        return loader
    for _, a in leaves(x):
        check_real(a, "inputs", who)
    with overflow_allowed():
        dataset = ArrayDataset(x).to(trainer.backend, dtype=trainer.dtype)
    if len(dataset) == 0:
        raise ValueError(f"{who}: x has 0 rows")
    return DataLoader(dataset, batch_size, False)


def evaluate_loader(trainer: Any, data: Any, batch_size: int) -> Any:
    """The loader of ``Trainer.evaluate``; the ranks of a distributed run agree on the data
    first. Arrays held whole: each rank takes its contiguous slice; host-gathered data: each
    rank its share of every batch."""
    who = "Trainer.evaluate"
    if isinstance(data, tuple) and len(data) == 2:
        data = ArrayDataset(*data)
    if not (isinstance(data, ArrayDataset) and is_in_memory(data)):
        loader, dataset = make_loader(trainer, data, who, "evaluation", batch_size, False)
        if dataset is not None and len(dataset) == 0:
            raise ValueError(f"{who}: the data has 0 rows")
        agree_on_start(trainer, who, {"evaluation": dataset}, batch_size=batch_size)
        return loader
    dataset = trainer.dataset(data)
    if len(dataset) == 0:
        raise ValueError(f"{who}: the data has 0 rows")
    agree_on_start(trainer, who, {"evaluation": dataset}, batch_size=batch_size)
    return slice_loader(trainer, dataset, batch_size)


def slice_loader(trainer: Any, dataset: ArrayDataset, batch_size: int) -> DataLoader:
    """Evaluation batches of arrays on the backend: each rank its own contiguous slice."""
    if trainer.world is not None:
        first, last = shard_bounds(len(dataset), trainer.rank, trainer.world_size)

        def rows(a: Any) -> Any:
            return a[first:last, ...]

        y = None if dataset.y is None else map_structure(rows, dataset.y)
        dataset = ArrayDataset(map_structure(rows, dataset.x), y)
    return DataLoader(dataset, batch_size, shuffle=False)
