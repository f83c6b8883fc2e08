"""docs/layers.md is the layer reference: every public layer, container and loss is in it.

A class exported by ``nnx.layers`` (or a Module subclass exported by ``nnx``) that the page
never names in backticks is a layer a user cannot look up; the test names the missing ones.
"""

import inspect
import re
from pathlib import Path

import nnx
import nnx.layers

LAYERS_MD = Path(__file__).resolve().parent.parent / "docs" / "layers.md"


def _mentioned(text: str) -> set[str]:
    """Identifiers that appear in inline code: `Conv2d`, `Conv2d(...)`, `nnx.Conv2d`, ..."""
    names: set[str] = set()
    for span in re.findall(r"`([^`\n]+)`", text):
        names.update(re.findall(r"[A-Za-z_][A-Za-z0-9_]*", span))
    return names


def _public_modules() -> set[str]:
    names = set(nnx.layers.__all__)
    for name in nnx.__all__:
        obj = getattr(nnx, name)
        if inspect.isclass(obj) and issubclass(obj, nnx.Module) and obj is not nnx.Module:
            names.add(name)
    names.add("Input")  # a Graph's symbolic input: not a Module, but documented with them
    return names


def test_every_layer_class_is_in_the_layer_reference():
    missing = sorted(_public_modules() - _mentioned(LAYERS_MD.read_text()))
    assert not missing, f"docs/layers.md does not mention: {', '.join(missing)}"


def test_every_layer_in_nnx_layers_is_a_class_the_coverage_test_sees():
    # guards the test itself: nnx.layers.__all__ lists classes, all re-exported from nnx
    for name in nnx.layers.__all__:
        assert inspect.isclass(getattr(nnx.layers, name)), name
        assert getattr(nnx, name) is getattr(nnx.layers, name), name


def test_the_layer_reference_has_no_issue_numbers_or_diary_words():
    text = LAYERS_MD.read_text()
    for pattern in (r"\bissue \d+", r"\bnow\b", r"\badded for\b", r"\bused before\b"):
        found = re.search(rf".{{0,40}}{pattern}.{{0,40}}", text, re.IGNORECASE)
        assert found is None, f"docs/layers.md reads like a diary: {found.group(0)!r}"


def _anchor(heading: str) -> str:
    """GitHub's anchor of a Markdown heading: lower case, punctuation but '-' dropped, spaces '-'."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def test_every_link_to_a_section_of_a_doc_finds_that_section():
    root = LAYERS_MD.parent.parent
    pages = [root / "README.md", *sorted((root / "docs").glob("*.md"))]
    broken = []
    for page in pages:
        for target, anchor in re.findall(r"\]\(([\w./-]*\.md)?#([\w-]+)\)", page.read_text()):
            linked = (page.parent / target) if target else page
            headings = re.findall(r"^#+ (.+)$", linked.read_text(), re.MULTILINE)
            if anchor not in {_anchor(h) for h in headings}:
                broken.append(f"{page.name} -> {target or page.name}#{anchor}")
    assert not broken, f"links to missing sections: {broken}"
