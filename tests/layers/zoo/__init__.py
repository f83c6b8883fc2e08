"""Example constructions of every layer, for the integration test (tests/test_layer_integration.py).

Each module ``zoo_<family>.py`` in this folder defines ``EXAMPLES``: a dict from a short id to
``(factory, input_shape)`` or ``(factory, input_shape, options)``. ``factory()`` returns a fresh
module whose forward takes one float array of ``input_shape`` and returns one float array. The
options are ``jit=False`` (the layer cannot run inside ``jax.jit``, e.g. it draws host random
numbers), ``half=False`` (no float16 forward), ``flatten=False`` (the output is not an array a
``Flatten`` can follow). The integration test runs every example through ``Sequential``,
``Graph``, ``save_model``/``load_model``, ``state_dict`` round trips, ``to()`` between
backends, one compiled step on JAX and one mixed-precision step.

Those checks cost about a second per example (the JAX compilation most), so the default run
takes the first example of each zoo module and those marked ``sample=True``; the others run
under the ``slow`` marker (``pytest -m slow``). A zoo module whose compilation alone costs tens of
seconds sets ``SAMPLE_JIT = False``: its compiled steps then run under the slow marker only.
"""

from __future__ import annotations

import importlib
import pkgutil
from typing import Any


def all_examples() -> dict[str, tuple[Any, tuple[int, ...], dict[str, Any]]]:
    """Every example of every zoo module, keyed ``"<family>/<id>"``."""
    found: dict[str, tuple[Any, tuple[int, ...], dict[str, Any]]] = {}
    for info in pkgutil.iter_modules(__path__):
        if not info.name.startswith("zoo_"):
            continue
        module = importlib.import_module(f"{__name__}.{info.name}")
        for i, (key, entry) in enumerate(module.EXAMPLES.items()):
            factory, shape, *rest = entry
            options = dict(rest[0]) if rest else {}
            options.setdefault("sample", i == 0)
            # a module may keep its compiled step out of the default run (SAMPLE_JIT = False)
            options.setdefault(
                "sample_jit", options["sample"] and getattr(module, "SAMPLE_JIT", True)
            )
            found[f"{info.name[4:]}/{key}"] = (factory, tuple(shape), options)
    return found
