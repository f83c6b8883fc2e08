"""No import cycles in ``nnx/`` or ``scripts/``: the import graph is built from source with ``ast``.

Every ``import`` and ``from ... import`` in a file is an edge, wherever it stands: at module
level, inside a function (a lazy import), or under ``if TYPE_CHECKING:``. A lazy or typing-only
import still ties two modules together: each needs the other to be read, tested or moved, and a
lazy import that hides a cycle is how the cycle survives. So none is exempt.

Edges point at the module that is imported: ``import a.b.c`` and ``from a.b import c`` (when
``c`` is a submodule) point at ``a.b.c``; ``from a.b import name`` points at ``a.b``, the
package's ``__init__``. Importing ``a.b.c`` from outside ``a.b`` first runs ``a.b``'s
``__init__`` (and ``a``'s), so those are edges too; the importer's own packages are not (Python
ran them before it). A package's ``__init__`` re-exporting its submodules is therefore an edge
package -> submodule and no cycle by itself; a cycle needs a submodule that imports back
something that imports it (its own package's ``__init__`` included). Imports of modules outside
the tree (numpy, the standard library, ``nnx`` seen from ``scripts/``) are not edges.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# ---------------------------------------------------------------------------- the graph


def modules_under(root: Path, top: str | None = None) -> dict[str, Path]:
    """Map dotted module names to files, for the tree ``root`` as a directory on ``sys.path``.

    Args:
        root: the directory that would be on ``sys.path`` (e.g. the repository root for ``nnx``,
            ``scripts/`` for the scripts).
        top: only files under ``root/top`` (a package or a subfolder); ``None`` for all of ``root``.

    A package's ``__init__.py`` is named by the package. A script ``x.py`` next to a package
    ``x/`` is shadowed by the package for ``import x`` (as Python does) and is named ``x.py``.
    """
    base = root / top if top else root
    found: dict[str, Path] = {}
    scripts: dict[str, Path] = {}
    for path in sorted(base.rglob("*.py")):
        parts = list(path.relative_to(root).with_suffix("").parts)
        if "__pycache__" in parts:
            continue
        if parts[-1] == "__init__":
            parts.pop()
        elif (path.parent / parts[-1] / "__init__.py").exists():
            scripts[".".join(parts) + ".py"] = path
            continue
        found[".".join(parts)] = path
    return {**found, **scripts}


def _imports(path: Path, name: str) -> list[tuple[str, list[str]]]:
    """``(module, names)`` for every import statement in the file, relative ones resolved."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            found += [(alias.name, []) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parts = package.split(".") if package else []
                if node.level - 1 > len(parts):
                    raise ValueError(f"{path}: relative import beyond the top package")
                parts = parts[: len(parts) - (node.level - 1)]
                module = ".".join([*parts, *([node.module] if node.module else [])])
            else:
                module = node.module or ""
            found.append((module, [alias.name for alias in node.names]))
    return found


def import_graph(modules: dict[str, Path]) -> dict[str, set[str]]:
    """The edges importer -> imported between the given modules (see the module docstring)."""
    graph: dict[str, set[str]] = {name: set() for name in modules}
    for name, path in modules.items():
        for module, names in _imports(path, name):
            targets = [f"{module}.{n}" for n in names if f"{module}.{n}" in modules]
            if len(targets) < len(names) or not names:  # some names are not submodules
                targets.append(module)
            for target in [t for t in targets if t in modules]:
                run = _packages_run_by(target, name, path.name == "__init__.py")
                graph[name] |= {p for p in run if p in modules and p != name}
    return graph


def _packages_run_by(target: str, importer: str, is_package: bool) -> list[str]:
    """``target`` and the packages that importing it runs first: its ancestors, less those the
    importer belongs to (Python ran them before the importer started)."""
    parts = target.split(".")
    ancestors = [".".join(parts[:i]) for i in range(1, len(parts))]
    own = importer.removesuffix(".py").split(".")
    own = own if is_package else own[:-1]
    ran = {".".join(own[:i]) for i in range(1, len(own) + 1)}
    return [p for p in ancestors if p not in ran] + [target]


def find_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One cycle ``[a, b, ..., a]`` per strongly connected component that has one (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []

    def connect(v: str) -> None:  # recursion depth is bounded by the number of modules
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                connect(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                components.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            connect(v)
    return [_cycle_through(graph, set(c), c[0]) for c in sorted(components)]


def _cycle_through(graph: dict[str, set[str]], component: set[str], start: str) -> list[str]:
    """The shortest chain start -> ... -> start inside one strongly connected component."""
    previous: dict[str, str] = {}
    frontier = [start]
    while frontier:
        following = []
        for v in frontier:
            for w in sorted(graph[v] & component):
                if w == start:
                    chain = [v]
                    while chain[-1] != start:
                        chain.append(previous[chain[-1]])
                    return [start, *reversed(chain[:-1]), start] if v != start else [start, start]
                if w not in previous:
                    previous[w] = v
                    following.append(w)
        frontier = following
    raise AssertionError(f"no cycle through {start}")  # a component always has one


def _describe(cycles: list[list[str]]) -> str:
    return "import cycles:\n" + "\n".join("  " + " -> ".join(c) for c in cycles)


# ---------------------------------------------------------------------------- the checks


def _tree_graph(root: Path, top: str | None) -> dict[str, set[str]]:
    return import_graph(modules_under(root, top))


def test_the_module_registry_imports_nothing_from_nnx_but_its_error_class():
    """The registry stores classes; the module classes import it (to register themselves), so
    it must not import them back: ``register_module`` checks for a Module in core/module.py.
    Its one import is the io error class, which imports nothing from nnx."""
    graph = _tree_graph(ROOT, "nnx")
    assert graph["nnx.io.registry"] <= {"nnx.io", "nnx.io.errors"}
    assert graph["nnx.io.errors"] <= {"nnx.io"}


def test_no_import_cycles_in_the_package():
    cycles = find_cycles(_tree_graph(ROOT, "nnx"))
    assert not cycles, _describe(cycles)


def test_no_import_cycles_in_the_scripts():
    graph = _tree_graph(ROOT / "scripts", None)
    assert {"bench.py", "bench.__main__", "bench.measure", "bench.mlp", "train"} <= set(graph)
    assert "bench.__main__" in graph["bench.py"]  # the script runs the package
    assert graph["bench.measure"] == set()  # the shared helpers import no workload
    cycles = find_cycles(graph)
    assert not cycles, _describe(cycles)


# ---------------------------------------------------------------------------- the checker itself


def _write(root: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


def test_checker_finds_a_cycle_through_a_lazy_import(tmp_path):
    _write(
        tmp_path,
        {
            "pkg/__init__.py": "",
            "pkg/a.py": "from pkg import b\n",
            "pkg/b.py": "def f():\n    import pkg.c\n",
            "pkg/c.py": "from pkg.a import thing\n",
        },
    )
    cycles = find_cycles(_tree_graph(tmp_path, "pkg"))
    assert cycles == [["pkg.a", "pkg.b", "pkg.c", "pkg.a"]]
    assert "pkg.a -> pkg.b -> pkg.c -> pkg.a" in _describe(cycles)


def test_checker_finds_a_cycle_through_a_typing_only_import(tmp_path):
    _write(
        tmp_path,
        {
            "pkg/__init__.py": "",
            "pkg/a.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n"
            "    from pkg.b import B\n",
            "pkg/b.py": "import pkg.a as a\n",
        },
    )
    assert find_cycles(_tree_graph(tmp_path, "pkg")) == [["pkg.a", "pkg.b", "pkg.a"]]


def test_checker_resolves_relative_imports(tmp_path):
    _write(
        tmp_path,
        {
            "pkg/__init__.py": "from .sub import f\n",
            "pkg/sub/__init__.py": "from .x import f\n",
            "pkg/sub/x.py": "def f():\n    from ..other import y\n",
            "pkg/other.py": "from . import sub\n",  # `sub` is a submodule: an edge to pkg.sub
        },
    )
    graph = _tree_graph(tmp_path, "pkg")
    assert graph["pkg"] == {"pkg.sub"} and graph["pkg.sub.x"] == {"pkg.other"}
    assert find_cycles(graph) == [["pkg.other", "pkg.sub", "pkg.sub.x", "pkg.other"]]


def test_checker_accepts_a_package_that_reexports_its_submodules(tmp_path):
    _write(
        tmp_path,
        {
            "pkg/__init__.py": "from .a import A\nfrom .b import B\nfrom . import c\n",
            "pkg/a.py": "class A: ...\n",
            "pkg/b.py": "from .a import A\nB = A\n",
            "pkg/c.py": "import numpy\nfrom pkg.a import A\n",
        },
    )
    graph = _tree_graph(tmp_path, "pkg")
    assert graph["pkg"] == {"pkg.a", "pkg.b", "pkg.c"} and find_cycles(graph) == []
    # ... but a submodule importing a name from its own package's __init__ closes a cycle.
    (tmp_path / "pkg" / "a.py").write_text("from pkg import B\n")
    assert find_cycles(_tree_graph(tmp_path, "pkg")) == [["pkg", "pkg.a", "pkg"]]


def test_checker_names_a_script_shadowed_by_a_package(tmp_path):
    _write(
        tmp_path,
        {
            "tool.py": "from tool.__main__ import main\n",
            "tool/__init__.py": "",
            "tool/__main__.py": "from .run import main\n",
            "tool/run.py": "def main(): ...\n",
        },
    )
    graph = _tree_graph(tmp_path, None)
    assert graph["tool.py"] == {"tool", "tool.__main__"} and find_cycles(graph) == []


def test_checker_counts_the_packages_an_import_runs_first(tmp_path):
    _write(
        tmp_path,
        {
            "pkg/__init__.py": "",
            "pkg/io/__init__.py": "from .files import save\n",
            "pkg/io/files.py": "from ..core.base import Base\nsave = None\n",
            "pkg/core/__init__.py": "",
            "pkg/core/base.py": "def f():\n    from pkg.io.helpers import g\n",  # runs pkg.io
            "pkg/io/helpers.py": "g = None\n",
        },
    )
    graph = _tree_graph(tmp_path, "pkg")
    assert graph["pkg.core.base"] == {"pkg.io", "pkg.io.helpers"}
    assert graph["pkg.io.files"] == {"pkg.core", "pkg.core.base"}
    assert find_cycles(graph) == [["pkg.core.base", "pkg.io", "pkg.io.files", "pkg.core.base"]]
