"""No module under ``nnx/`` is longer than ``LIMIT`` lines: one concept per file, readable whole.

A file that outgrows the limit is split along the concepts it holds (a package of files, as
``nnx/losses/`` and ``nnx/layers/norm/``), not trimmed by squeezing lines.
"""

from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "nnx"
LIMIT = 500

# The one exemption: nnx/backend.py is the only module that names the array libraries (NumPy,
# CuPy, PyTorch, JAX, array-api-strict; tests/test_portability.py enforces it), so everything
# that has to know one of them by name lives there. Splitting it would make a second module name
# them and break that guarantee.
EXEMPT = {"backend.py"}


def _length(path: Path) -> int:
    return len(path.read_text().splitlines())


MODULES = sorted(
    str(p.relative_to(PACKAGE)) for p in PACKAGE.rglob("*.py") if "__pycache__" not in p.parts
)


@pytest.mark.parametrize(
    "name",
    [n for n in MODULES if n not in EXEMPT],
)
def test_module_is_at_most_the_limit(name):
    lines = _length(PACKAGE / name)
    assert lines <= LIMIT, f"nnx/{name} has {lines} lines (limit {LIMIT}): split it by concept"


def test_exemptions_name_real_files():
    for name in EXEMPT:
        assert (PACKAGE / name).is_file(), f"nnx/{name} no longer exists: unlist it"
