"""Seeded data augmentation of image batches, done on the device: random crops and flips.

The transforms follow torchvision's ``RandomCrop`` and ``RandomHorizontalFlip``, applied to every
sample of a batch ``(N, ..., H, W)`` independently. Each one works in two steps:

* :meth:`~Augmentation.draw` takes the random choices for ``n`` samples on the host, with a NumPy
  ``Generator``, and turns them into small integer/boolean arrays (``n`` rows each): for a crop,
  the source row and column of every output row and column;
* :meth:`~Augmentation.apply` moves those small arrays to the batch's device and transforms the
  batch there with the array API only (``take``, ``reshape``, ``permute_dims``, ``flip``,
  ``where``): no Python loop over samples, no in-place writes (JAX-safe), and the image data
  never goes through the host.

Calling a transform does both: ``RandomCrop(32, padding=4)(x, rng)``. The
:class:`~nnx.Trainer` (``augment=``) draws the choices of batch ``b`` of epoch ``e`` from a
generator seeded with ``(seed, e, b)`` (:func:`batch_generator`), so a run repeats exactly with
the same seed and a resumed run equals an uninterrupted one. Validation and test batches are
never augmented.

>>> import numpy as np
>>> x = np.arange(2 * 1 * 3 * 3, dtype=np.float32).reshape(2, 1, 3, 3)
>>> RandomHorizontalFlip(p=1.0)(x, rng=0)[0, 0].tolist()
[[2.0, 1.0, 0.0], [5.0, 4.0, 3.0], [8.0, 7.0, 6.0]]
>>> RandomCrop(3, padding=1)(x, rng=0).shape
(2, 1, 3, 3)
"""

from __future__ import annotations

import numbers
from collections.abc import Sequence
from typing import Any

import numpy as np

from ..backend import backend_of, device, namespace

# A stream of its own: never the same entropy as the loader's (seed, epoch) permutation or the
# dropout masks' (seed, epoch, module) seeds.
_STREAM = 0x61756720  # "aug "

PADDING_MODES = ("constant", "edge", "reflect", "symmetric")


def batch_generator(seed: int, epoch: int, batch: int) -> np.random.Generator:
    """The host generator of the augmentation of batch ``batch`` of epoch ``epoch``.

    It depends on nothing else, so any batch's choices can be drawn again on resume.

    >>> a, b = batch_generator(0, 1, 2), batch_generator(0, 1, 2)
    >>> int(a.integers(1000)) == int(b.integers(1000))
    True
    """
    return np.random.default_rng([_STREAM, int(seed), int(epoch), int(batch)])


def _generator(rng: Any) -> np.random.Generator:
    if isinstance(rng, np.random.Generator):
        return rng
    if isinstance(rng, numbers.Integral) and not isinstance(rng, bool) and rng >= 0:
        return np.random.default_rng(int(rng))
    raise TypeError(
        f"augmentation: rng must be a numpy.random.Generator or a seed >= 0, got {rng!r}"
    )


def _image_shape(shape: tuple[int, ...], who: str) -> tuple[int, int]:
    """``(H, W)`` of a sample shape ``(..., H, W)``; images need at least two axes."""
    if len(shape) < 2:
        raise ValueError(
            f"{who}: needs image samples of shape (C, H, W) or (H, W), got samples of shape "
            f"{tuple(shape)}"
        )
    return int(shape[-2]), int(shape[-1])


def _check_batch(x: Any, who: str) -> None:
    namespace(x)  # a clear TypeError for lists and other non-arrays
    _image_shape(tuple(x.shape[1:]), who)


class Augmentation:
    """A random transform of image batches ``(N, ..., H, W)``; subclasses define the methods."""

    def output_shape(self, shape: tuple[int, ...]) -> tuple[int, ...]:
        """The sample shape this produces from samples of ``shape`` (ValueError when unfit)."""
        raise NotImplementedError

    def draw(self, rng: np.random.Generator, n: int, shape: tuple[int, ...]) -> Any:
        """The random choices for ``n`` samples of ``shape``: host arrays with ``n`` rows."""
        raise NotImplementedError

    def apply(self, x: Any, params: Any) -> Any:
        """Transform the batch ``x`` on its device with choices from :meth:`draw`."""
        raise NotImplementedError

    def __call__(self, x: Any, rng: Any = None) -> Any:
        """Draw the choices for ``x``'s samples from ``rng`` (a Generator or a seed), apply them."""
        _check_batch(x, type(self).__name__)
        params = self.draw(_generator(0 if rng is None else rng), int(x.shape[0]), x.shape[1:])
        return self.apply(x, params)


def take_rows(params: Any, start: int, stop: int) -> Any:
    """Rows ``[start, stop)`` of drawn choices (every array of a dict, list or tuple alike):
    one rank's share of a global batch in data-parallel training."""
    if isinstance(params, dict):
        return {k: take_rows(v, start, stop) for k, v in params.items()}
    if isinstance(params, (list, tuple)):
        return type(params)(take_rows(v, start, stop) for v in params)
    return params[start:stop]


def _pair(value: Any, name: str, who: str) -> tuple[int, int]:
    """An int or a sequence of one or two ints -> (h, w), each > 0."""
    items = list(value) if isinstance(value, Sequence) and not isinstance(value, str) else [value]
    if len(items) == 1:
        items = items * 2
    ok = len(items) == 2 and all(
        isinstance(v, numbers.Integral) and not isinstance(v, bool) and v > 0 for v in items
    )
    if not ok:
        raise ValueError(
            f"{who}: {name} must be a positive integer or a (height, width) pair, got {value!r}"
        )
    return int(items[0]), int(items[1])


def _padding(value: Any, who: str) -> tuple[int, int, int, int]:
    """torchvision's padding: an int, (left/right, top/bottom) or (left, top, right, bottom)."""
    if value is None:
        return 0, 0, 0, 0
    items = list(value) if isinstance(value, Sequence) and not isinstance(value, str) else [value]
    ok = len(items) in (1, 2, 4) and all(
        isinstance(v, numbers.Integral) and not isinstance(v, bool) and v >= 0 for v in items
    )
    if not ok:
        raise ValueError(
            f"{who}: padding must be an integer >= 0 or a sequence of 2 or 4 of them "
            f"((left/right, top/bottom) or (left, top, right, bottom)), got {value!r}"
        )
    if len(items) == 1:
        items = items * 4
    elif len(items) == 2:
        items = items * 2
    return tuple(int(v) for v in items)  # type: ignore[return-value]


def _source_index(pos: np.ndarray, size: int, before: int, mode: str) -> np.ndarray:
    """Index into an axis of ``size`` of padded position ``pos`` (``before`` pads in front);
    -1 where ``mode`` is ``"constant"`` and the position lies in the padding.

    ``reflect`` mirrors without repeating the edge value, ``symmetric`` repeats it, ``edge``
    repeats the edge value: ``numpy.pad``'s modes, folded again for paddings wider than the axis.
    """
    i = pos - before
    if mode == "constant":
        return np.where((i >= 0) & (i < size), i, -1)
    if mode == "edge":
        return np.clip(i, 0, size - 1)
    if mode == "symmetric":  # ... 1 0 | 0 1 2 ... n-1 | n-1 n-2 ...: period 2n
        i = np.mod(i, 2 * size)
        return np.where(i < size, i, 2 * size - 1 - i)
    if size == 1:  # reflect: ... 2 1 | 0 1 2 ... n-1 | n-2 ...: period 2(n-1)
        return np.zeros_like(i)
    i = np.mod(i, 2 * (size - 1))
    return np.where(i < size, i, 2 * (size - 1) - i)


class RandomCrop(Augmentation):
    """Crop every image of a batch at a random place, after padding it (torchvision's
    ``RandomCrop(size, padding=None, fill=0, padding_mode="constant")``).

    Args:
        size: the crop's ``(height, width)``, or one int for a square.
        padding: pixels added on each border first: an int for all four, ``(left/right,
            top/bottom)`` or ``(left, top, right, bottom)``. ``RandomCrop(32, padding=4)`` on
            32x32 images shifts each image by up to 4 pixels, filling with ``fill``.
        fill: the value of padded pixels in ``"constant"`` mode.
        padding_mode: ``"constant"``, ``"edge"``, ``"reflect"`` or ``"symmetric"`` (as
            ``numpy.pad``).

    The crop's top-left corner is uniform over the positions where it fits in the padded image,
    drawn per sample. Input ``(N, ..., H, W)``; output ``(N, ..., height, width)``. Unlike
    torchvision there is no ``pad_if_needed``: a crop larger than the padded image is an error.

    >>> import numpy as np
    >>> x = np.arange(9.0).reshape(1, 1, 3, 3)
    >>> crop = RandomCrop(2)
    >>> params = crop.draw(np.random.default_rng(0), 1, (1, 3, 3))
    >>> corner = int(params["rows"][0, 0]), int(params["cols"][0, 0])
    >>> bool((crop.apply(x, params)[0, 0] == x[0, 0, corner[0]:corner[0] + 2,
    ...                                         corner[1]:corner[1] + 2]).all())
    True
    """

    def __init__(
        self,
        size: int | Sequence[int],
        padding: int | Sequence[int] | None = None,
        fill: float = 0,
        padding_mode: str = "constant",
    ):
        self.size = _pair(size, "size", "RandomCrop")
        self.padding = _padding(padding, "RandomCrop")
        if (
            not isinstance(fill, numbers.Real)
            or isinstance(fill, bool)
            or not np.isfinite(float(fill))
        ):
            raise ValueError(f"RandomCrop: fill must be a finite number, got {fill!r}")
        self.fill = float(fill)
        if padding_mode not in PADDING_MODES:
            raise ValueError(
                f"RandomCrop: padding_mode must be one of {', '.join(PADDING_MODES)}, "
                f"got {padding_mode!r}"
            )
        self.padding_mode = padding_mode

    def __repr__(self) -> str:
        left, top, right, bottom = self.padding
        pad = left if self.padding == (left,) * 4 else self.padding
        extra = f", fill={self.fill:g}" if self.fill else ""
        if self.padding_mode != "constant":
            extra += f", padding_mode={self.padding_mode!r}"
        return f"RandomCrop(size={self.size}, padding={pad}{extra})"

    def _padded(self, shape: tuple[int, ...]) -> tuple[int, int, int, int]:
        h, w = _image_shape(shape, "RandomCrop")
        left, top, right, bottom = self.padding
        ph, pw = h + top + bottom, w + left + right
        if self.size[0] > ph or self.size[1] > pw:
            raise ValueError(
                f"RandomCrop: the crop {self.size[0]}x{self.size[1]} is larger than the padded "
                f"image {ph}x{pw} (samples of shape {tuple(shape)}, padding {self.padding})"
            )
        return h, w, ph, pw

    def output_shape(self, shape: tuple[int, ...]) -> tuple[int, ...]:
        self._padded(shape)
        return (*tuple(shape[:-2]), *self.size)

    def draw(self, rng: np.random.Generator, n: int, shape: tuple[int, ...]) -> dict[str, Any]:
        """``rows`` ``(n, height)`` and ``cols`` ``(n, width)``: the source row/column of every
        output row/column (-1 for a padded one in ``"constant"`` mode)."""
        h, w, ph, pw = self._padded(shape)
        th, tw = self.size
        top = rng.integers(0, ph - th + 1, size=n)  # torchvision's get_params, per sample
        left = rng.integers(0, pw - tw + 1, size=n)
        mode = self.padding_mode
        rows = _source_index(top[:, None] + np.arange(th), h, self.padding[1], mode)
        cols = _source_index(left[:, None] + np.arange(tw), w, self.padding[0], mode)
        return {"rows": rows, "cols": cols}

    def apply(self, x: Any, params: dict[str, Any]) -> Any:
        _check_batch(x, "RandomCrop")
        return gather_crop(x, params["rows"], params["cols"], self.fill)


def gather_crop(x: Any, rows: np.ndarray, cols: np.ndarray, fill: float = 0.0) -> Any:
    """``out[n, ..., i, j] = x[n, ..., rows[n, i], cols[n, j]]``, ``fill`` where an index is -1.

    ``rows`` ``(N, h)`` and ``cols`` ``(N, w)`` are host integer arrays. Two gathers of whole
    rows on the device, with index arrays of ``N * C * h`` and ``N * w`` entries: rows first, then,
    with the column axis moved to the front, columns.
    """
    xp, dev, be = namespace(x), device(x), backend_of(x)
    n, h, w = int(x.shape[0]), int(x.shape[-2]), int(x.shape[-1])
    lead = tuple(int(s) for s in x.shape[1:-2])
    if rows.shape[0] != n or cols.shape[0] != n:
        raise ValueError(
            f"gather_crop: {rows.shape[0]} rows and {cols.shape[0]} cols drawn for a batch of {n}"
        )
    th, tw = int(rows.shape[1]), int(cols.shape[1])
    c = int(np.prod(lead, dtype=np.int64))
    if n == 0:
        return xp.zeros((0, *lead, th, tw), dtype=x.dtype, device=dev)
    # host: flat row indices into (n * c * h, w), flat column indices into (n * w, c * th)
    row_idx = (np.arange(n * c).reshape(n, c, 1) * h + np.maximum(rows, 0)[:, None, :]).reshape(-1)
    col_idx = (np.arange(n).reshape(n, 1) * w + np.maximum(cols, 0)).reshape(-1)
    both = be.asarray(np.concatenate([row_idx, col_idx]), dtype="int64")  # one small copy
    row_idx, col_idx = both[: row_idx.shape[0]], both[row_idx.shape[0] :]
    picked = xp.take(xp.reshape(x, (n * c * h, w)), row_idx, axis=0)  # (n c th, w)
    picked = xp.permute_dims(xp.reshape(picked, (n, c * th, w)), (0, 2, 1))
    picked = xp.take(xp.reshape(picked, (n * w, c * th)), col_idx, axis=0)  # (n tw, c th)
    out = xp.permute_dims(xp.reshape(picked, (n, tw, c, th)), (0, 2, 3, 1))
    out = xp.reshape(out, (n, *lead, th, tw))
    invalid_rows, invalid_cols = rows < 0, cols < 0
    if invalid_rows.any() or invalid_cols.any():  # "constant" padding showed in some crop
        inside = np.logical_not(invalid_rows)[:, :, None] & np.logical_not(invalid_cols)[:, None, :]
        mask = be.asarray(inside.reshape(n, *(1,) * len(lead), th, tw))
        out = xp.where(mask, out, xp.asarray(fill, dtype=x.dtype, device=dev))
    return out


class RandomHorizontalFlip(Augmentation):
    """Flip each image left-right (along the last axis) with probability ``p`` (torchvision's
    ``RandomHorizontalFlip(p=0.5)``), drawn per sample. Input and output ``(N, ..., H, W)``.

    >>> import numpy as np
    >>> x = np.array([[[[1.0, 2.0]]], [[[3.0, 4.0]]]])
    >>> RandomHorizontalFlip(p=0.0)(x, rng=0).tolist() == x.tolist()
    True
    """

    def __init__(self, p: float = 0.5):
        if not isinstance(p, numbers.Real) or isinstance(p, bool) or not 0.0 <= p <= 1.0:
            raise ValueError(f"RandomHorizontalFlip: p must be a number in [0, 1], got {p!r}")
        self.p = float(p)

    def __repr__(self) -> str:
        return f"RandomHorizontalFlip(p={self.p:g})"

    def output_shape(self, shape: tuple[int, ...]) -> tuple[int, ...]:
        _image_shape(shape, "RandomHorizontalFlip")
        return tuple(shape)

    def draw(self, rng: np.random.Generator, n: int, shape: tuple[int, ...]) -> dict[str, Any]:
        """``flip`` ``(n,)``: which samples are flipped."""
        _image_shape(shape, "RandomHorizontalFlip")
        return {"flip": rng.random(n) < self.p}

    def apply(self, x: Any, params: dict[str, Any]) -> Any:
        _check_batch(x, "RandomHorizontalFlip")
        flip = params["flip"]
        if not flip.any():
            return x
        xp = namespace(x)
        if flip.all():
            return xp.flip(x, axis=-1)
        mask = backend_of(x).asarray(flip.reshape(-1, *(1,) * (x.ndim - 1)))
        return xp.where(mask, xp.flip(x, axis=-1), x)


class Compose(Augmentation):
    """Apply ``transforms`` in order (torchvision's ``Compose``), drawing their choices in order.

    >>> Compose([RandomCrop(32, padding=4), RandomHorizontalFlip()])
    Compose([RandomCrop(size=(32, 32), padding=4), RandomHorizontalFlip(p=0.5)])
    """

    def __init__(self, transforms: Sequence[Augmentation]):
        self.transforms = list(transforms)
        for t in self.transforms:
            if not isinstance(t, Augmentation):
                raise TypeError(f"Compose: expected nnx.augment transforms, got {type(t).__name__}")

    def __repr__(self) -> str:
        return f"Compose([{', '.join(map(repr, self.transforms))}])"

    def output_shape(self, shape: tuple[int, ...]) -> tuple[int, ...]:
        for t in self.transforms:
            shape = t.output_shape(shape)
        return tuple(shape)

    def draw(self, rng: np.random.Generator, n: int, shape: tuple[int, ...]) -> list[Any]:
        params = []
        for t in self.transforms:
            params.append(t.draw(rng, n, shape))
            shape = t.output_shape(shape)
        return params

    def apply(self, x: Any, params: list[Any]) -> Any:
        if len(params) != len(self.transforms):
            raise ValueError(
                f"Compose: {len(params)} sets of choices for {len(self.transforms)} transforms"
            )
        i = 0
        while i < len(self.transforms):
            t, p = self.transforms[i], params[i]
            then = self.transforms[i + 1] if i + 1 < len(self.transforms) else None
            if type(t) is RandomCrop and type(then) is RandomHorizontalFlip:
                # a flip after a crop is the crop with its columns reversed: one gather for both
                _check_batch(x, "RandomCrop")
                flip = params[i + 1]["flip"][:, None]
                cols = np.where(flip, p["cols"][:, ::-1], p["cols"])
                x = gather_crop(x, p["rows"], cols, t.fill)
                i += 2
                continue
            x = t.apply(x, p)
            i += 1
        return x


def augment_batch(
    augment: Augmentation, seed: int, loader: Any, epoch: int, batch: int, xb: Any
) -> Any:
    """Training batch ``batch`` of ``epoch`` (``xb``: this rank's rows of it, as ``loader``
    gives them) augmented with choices drawn from ``(seed, epoch, batch)`` for the whole global
    batch, of which this rank takes its rows: runs, resumes and rank counts agree exactly."""
    start, stop, total = loader.batch_rows(batch)
    shape = tuple(int(s) for s in xb.shape[1:])
    params = augment.draw(batch_generator(seed, epoch, batch), total, shape)
    if (start, stop) != (0, total):
        params = take_rows(params, start, stop)
    if stop == start:
        return xb
    return augment.apply(xb, params)
