"""Holders: ``ModuleList``, ``ModuleDict``, ``ParameterList`` and ``ParameterDict``, as in PyTorch.

A holder keeps modules (or parameters) as attributes of itself, named ``"0"``, ``"1"``, ... or by
their keys, so everything that walks a module's attributes finds them: ``parameters()``,
``named_parameters()`` (``"layers.0.weight"``), ``state_dict()``, ``to()``, ``summary``,
``save_model``, checkpoints, ``Graph``. A holder has no forward of its own: the module holding it
calls its members (and their ``backward`` in reverse). For the architecture record a holder
describes its members as they are when saved (``get_config``), so a list filled after it was
created saves and loads.
"""

from __future__ import annotations

import numbers
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

import numpy as np

from ..backend import backend_of, get_backend, namespace
from .checks import dtype_name
from .init import reserve
from .module import Buffer, Module, Parameter


class _Holder(Module):
    """No forward or backward: a holder is called through the module that owns it."""

    def _no_forward(self) -> NotImplementedError:
        name = type(self).__name__
        return NotImplementedError(
            f"{name} has no forward of its own: it holds members for a module whose forward "
            f"calls them (for layer in self.layers: x = layer(x)); for a chain use nnx.Sequential"
        )

    def __call__(self, *inputs: Any, **kwargs: Any) -> Any:
        raise self._no_forward()

    def forward(self, *inputs: Any, **kwargs: Any) -> Any:
        raise self._no_forward()

    def backward(self, *grads: Any, **kwargs: Any) -> Any:
        raise self._no_forward()

    def _member(self, value: Any, key: str) -> Any:
        """``value`` checked (and for parameter holders wrapped) as the member named ``key``."""
        raise NotImplementedError


class _ModuleMember(_Holder):
    def _member(self, value: Any, key: str) -> Module:
        if not isinstance(value, Module):
            raise TypeError(
                f"{type(self).__name__}: member {key!r} must be an nnx.Module, got "
                f"{type(value).__name__}"
            )
        return value


class _ParameterMember(_Holder):
    def _member(self, value: Any, key: str) -> Parameter:
        """A Parameter as it is; an array wrapped into a new Parameter (as PyTorch does)."""
        if isinstance(value, Parameter):
            return value
        if not isinstance(value, Buffer):
            try:
                namespace(value)
                return Parameter(value, key)
            except TypeError:
                pass
        raise TypeError(
            f"{type(self).__name__}: member {key!r} must be an nnx.Parameter or an array, got "
            f"{type(value).__name__}"
        )

    def __repr__(self) -> str:
        rows = [
            f"  ({k}): Parameter(shape={p.shape}, dtype={dtype_name(p.dtype)})"
            for k, p in self._pairs()
        ]
        return f"{type(self).__name__}(" + ("\n" + "\n".join(rows) + "\n" if rows else "") + ")"

    def get_config(self) -> dict[str, Any]:
        """Shapes and dtypes of the members (the saved weights fill them) and their device."""
        pairs = self._pairs()
        return {
            "keys": [k for k, _ in pairs],
            "shapes": [list(p.shape) for _, p in pairs],
            "dtypes": [dtype_name(p.dtype) for _, p in pairs],
            "device": backend_of(pairs[0][1].value) if pairs else "cpu",
        }

    @classmethod
    def _placeholders(cls, config: dict[str, Any]) -> list[tuple[str, Parameter]]:
        backend = get_backend(config.get("device", "cpu"))
        out = []
        for key, shape, dtype in zip(
            config["keys"], config["shapes"], config["dtypes"], strict=True
        ):
            shape = tuple(int(d) for d in shape)
            reserve(shape, f"{cls.__name__} entry {key!r}")
            value = backend.asarray(np.zeros(shape), dtype=dtype)
            out.append((key, Parameter(value, key)))
        return out

    def _pairs(self) -> list[tuple[str, Parameter]]:
        raise NotImplementedError


# ---------------------------------------------------------------------------- lists


class _Listing(_Holder):
    """The list behaviour shared by ModuleList and ParameterList: members are the attributes
    ``"0"`` ... ``"n-1"`` (renumbered when one is inserted or deleted, as in PyTorch)."""

    def __init__(self, values: Iterable[Any] | None = None):
        self._size = 0
        if values is not None:
            self.extend(values)

    def _items(self) -> list[Any]:
        d = self.__dict__
        return [d[str(i)] for i in range(self._size)]

    def _pairs(self) -> list[tuple[str, Any]]:
        return [(str(i), v) for i, v in enumerate(self._items())]

    def _set_all(self, items: list[Any]) -> None:
        d = self.__dict__
        for i in range(self._size):
            del d[str(i)]
        for i, item in enumerate(items):
            d[str(i)] = item
        self._size = len(items)

    def _index(self, index: Any) -> int:
        if isinstance(index, bool) or not isinstance(index, numbers.Integral):
            raise TypeError(
                f"{type(self).__name__} indices must be integers or slices, got "
                f"{type(index).__name__}"
            )
        n = self._size
        if not -n <= int(index) < n:
            raise IndexError(
                f"{type(self).__name__}: index {index} is out of range for {n} members"
            )
        return int(index) % n

    def __len__(self) -> int:
        return self._size

    def __iter__(self) -> Iterator[Any]:
        return iter(self._items())

    def __getitem__(self, index: int | slice) -> Any:
        if isinstance(index, slice):
            return type(self)(self._items()[index])
        return self.__dict__[str(self._index(index))]

    def __setitem__(self, index: int, value: Any) -> None:
        i = self._index(index)
        self.__dict__[str(i)] = self._member(value, str(i))

    def __delitem__(self, index: int | slice) -> None:
        items = self._items()
        del items[index if isinstance(index, slice) else self._index(index)]
        self._set_all(items)

    def __iadd__(self, values: Iterable[Any]) -> Any:
        return self.extend(values)

    def __add__(self, other: Iterable[Any]) -> Any:
        return type(self)([*self._items(), *other])

    def append(self, value: Any) -> Any:
        """Add ``value`` at the end; returns the list."""
        self.__dict__[str(self._size)] = self._member(value, str(self._size))
        self._size += 1
        return self

    def extend(self, values: Iterable[Any]) -> Any:
        """Add every member of ``values`` at the end (all checked first); returns the list."""
        if isinstance(values, (str, bytes, Mapping)) or not isinstance(values, Iterable):
            raise TypeError(
                f"{type(self).__name__}.extend takes an iterable of members, got "
                f"{type(values).__name__}"
            )
        new = [self._member(v, str(self._size + i)) for i, v in enumerate(values)]
        for value in new:
            self.__dict__[str(self._size)] = value
            self._size += 1
        return self

    def insert(self, index: int, value: Any) -> None:
        """Insert ``value`` before position ``index`` (list semantics); later members move up."""
        items = self._items()
        if isinstance(index, bool) or not isinstance(index, numbers.Integral):
            raise TypeError(
                f"{type(self).__name__}.insert: index must be an integer, got {index!r}"
            )
        items.insert(int(index), self._member(value, str(index)))
        self._set_all(items)

    def pop(self, index: int = -1) -> Any:
        """Remove and return the member at ``index`` (default the last)."""
        value = self[index]
        del self[index]
        return value


class ModuleList(_Listing, _ModuleMember):
    """Modules in a list, as ``torch.nn.ModuleList``: indexing, slicing (a new ``ModuleList`` of
    the same modules), ``len``, iteration, ``append``, ``extend``, ``insert``, ``pop``, ``del``
    and ``+=``. Members are named ``"0"``, ``"1"``, ... (``layers.0.weight``). It has no forward:
    the module that holds it calls its members.

    >>> import nnx
    >>> layers = nnx.ModuleList([nnx.Linear(4, 4, rng=i) for i in range(2)])
    >>> layers.append(nnx.ReLU())
    ModuleList(
      (0): Linear(in_features=4, out_features=4, bias=True)
      (1): Linear(in_features=4, out_features=4, bias=True)
      (2): ReLU()
    )
    >>> len(layers), [name for name, _ in layers.named_parameters()]
    (3, ['0.weight', '0.bias', '1.weight', '1.bias'])
    """

    def __init__(self, modules: Iterable[Module] | None = None):
        super().__init__(modules)

    def get_config(self) -> dict[str, Any]:
        """The members as they are now (a list filled after creation saves too)."""
        return {"modules": self._items()}

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> ModuleList:
        return cls(config.get("modules") or [])


class ParameterList(_Listing, _ParameterMember):
    """Parameters in a list, as ``torch.nn.ParameterList``: an array given to it is wrapped into
    a new :class:`~nnx.Parameter`; ``Parameter`` objects are kept as they are (shared). Same list
    operations as :class:`ModuleList`; ``named_parameters`` names them ``"0"``, ``"1"``, ....

    >>> import numpy as np, nnx
    >>> params = nnx.ParameterList([np.zeros((2, 3)), np.ones(3)])
    >>> [(name, p.shape) for name, p in params.named_parameters()]
    [('0', (2, 3)), ('1', (3,))]
    """

    def __init__(self, values: Iterable[Any] | None = None):
        super().__init__(values)

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> ParameterList:
        return cls([p for _, p in cls._placeholders(config)])


# ---------------------------------------------------------------------------- dicts


class _Mapping(_Holder):
    """The dict behaviour shared by ModuleDict and ParameterDict: each member is the attribute
    named by its key; keys keep their insertion order."""

    def __init__(self, values: Mapping[str, Any] | Iterable[tuple[str, Any]] | None = None):
        self._keys: list[str] = []
        if values is not None:
            self.update(values)

    def _pairs(self) -> list[tuple[str, Any]]:
        d = self.__dict__
        return [(k, d[k]) for k in self._keys]

    def _check_key(self, key: Any) -> str:
        who = type(self).__name__
        if not isinstance(key, str):
            raise TypeError(f"{who}: keys must be strings, got {type(key).__name__} {key!r}")
        if not key or "." in key:
            raise KeyError(f"{who}: key {key!r} must be a non-empty string without '.'")
        if key not in self._keys and hasattr(self, key):
            raise KeyError(f"{who}: key {key!r} is the name of an attribute of {who}; pick another")
        return key

    def __getitem__(self, key: str) -> Any:
        if key not in self._keys:
            raise KeyError(key)
        return self.__dict__[key]

    def __setitem__(self, key: str, value: Any) -> None:
        key = self._check_key(key)
        self.__dict__[key] = self._member(value, key)
        if key not in self._keys:
            self._keys.append(key)

    def __delitem__(self, key: str) -> None:
        if key not in self._keys:
            raise KeyError(key)
        self._keys.remove(key)
        del self.__dict__[key]

    def __contains__(self, key: object) -> bool:
        return key in self._keys

    def __len__(self) -> int:
        return len(self._keys)

    def __iter__(self) -> Iterator[str]:
        return iter(list(self._keys))

    def keys(self) -> list[str]:
        """The keys, in insertion order."""
        return list(self._keys)

    def values(self) -> list[Any]:
        """The members, in insertion order."""
        return [v for _, v in self._pairs()]

    def items(self) -> list[tuple[str, Any]]:
        """``(key, member)`` pairs, in insertion order."""
        return self._pairs()

    def get(self, key: str, default: Any = None) -> Any:
        return self.__dict__[key] if key in self._keys else default

    def pop(self, key: str) -> Any:
        """Remove ``key`` and return its member."""
        value = self[key]
        del self[key]
        return value

    def clear(self) -> None:
        """Remove every member."""
        for key in list(self._keys):
            del self[key]

    def update(self, values: Mapping[str, Any] | Iterable[tuple[str, Any]]) -> None:
        """Set every ``key -> member`` of a mapping (or of ``(key, member)`` pairs), in order;
        nothing changes unless every entry is valid."""
        who = type(self).__name__
        if isinstance(values, (Mapping, _Mapping)):
            pairs = list(values.items())
        elif isinstance(values, Iterable) and not isinstance(values, (str, bytes)):
            pairs = []
            for i, pair in enumerate(values):
                if not isinstance(pair, (tuple, list)) or len(pair) != 2:
                    raise ValueError(
                        f"{who}.update: element {i} must be a (key, value) pair, got {pair!r}"
                    )
                pairs.append(tuple(pair))
        else:
            raise TypeError(
                f"{who}.update takes a mapping or (key, value) pairs, got {type(values).__name__}"
            )
        checked = [(self._check_key(k), self._member(v, k)) for k, v in pairs]
        for key, value in checked:
            self[key] = value


class ModuleDict(_Mapping, _ModuleMember):
    """Modules by name, as ``torch.nn.ModuleDict``: ``d[key]``, ``d[key] = module``, ``del``,
    ``in``, ``len``, iteration over keys, ``keys()``, ``values()``, ``items()``, ``update()``,
    ``pop()``, ``clear()``; insertion order kept. Parameters are named ``"<key>.weight"``. Keys
    are strings without ``.`` that are not attribute names of the class (``"forward"``). It has
    no forward: the module that holds it calls its members.

    >>> import nnx
    >>> heads = nnx.ModuleDict({"cls": nnx.Linear(8, 3, rng=0), "box": nnx.Linear(8, 4, rng=1)})
    >>> list(heads), heads["box"].out_features
    (['cls', 'box'], 4)
    """

    def __init__(self, modules: Mapping[str, Module] | Iterable[tuple[str, Module]] | None = None):
        super().__init__(modules)

    def get_config(self) -> dict[str, Any]:
        """The members as they are now (a dict filled after creation saves too)."""
        return {"modules": dict(self._pairs())}

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> ModuleDict:
        return cls(config.get("modules") or {})


class ParameterDict(_Mapping, _ParameterMember):
    """Parameters by name, as ``torch.nn.ParameterDict``: an array is wrapped into a new
    :class:`~nnx.Parameter`, a ``Parameter`` kept as it is. Same dict operations as
    :class:`ModuleDict`; ``named_parameters`` names the members by their keys.

    >>> import numpy as np, nnx
    >>> scales = nnx.ParameterDict({"a": np.ones(2)})
    >>> scales["b"] = np.zeros(3)
    >>> [(k, p.shape) for k, p in scales.items()]
    [('a', (2,)), ('b', (3,))]
    """

    def __init__(self, values: Mapping[str, Any] | Iterable[tuple[str, Any]] | None = None):
        super().__init__(values)

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> ParameterDict:
        return cls(cls._placeholders(config))
