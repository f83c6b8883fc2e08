"""The library does not know the command line: no error raised under nnx/ (outside nnx/cli/)
mentions a ``--flag``. Library errors name the argument (``model='x'``, ``label_column``); the
training command rewords them with its flags where it wants to."""

import ast
import re
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "nnx"
FLAG = re.compile(r"(?<![\w-])--[A-Za-z][\w-]*")


def _literals(node: ast.AST) -> list[str]:
    """Every string constant inside ``node`` (f-string parts included)."""
    return [
        n.value for n in ast.walk(node) if isinstance(n, ast.Constant) and isinstance(n.value, str)
    ]


def flag_messages(source: str, filename: str = "<source>") -> list[str]:
    """``line: flag`` for each ``--flag`` in a string literal of a ``raise`` statement."""
    found = []
    for node in ast.walk(ast.parse(source, filename)):
        if isinstance(node, ast.Raise) and node.exc is not None:
            for text in _literals(node.exc):
                for flag in FLAG.findall(text):
                    found.append(f"{filename}:{node.lineno}: {flag}")
    return found


def test_the_check_sees_flags_in_raise_messages():
    source = (
        "def f(x):\n"
        "    if x:\n"
        "        raise ValueError(f'--model {x}: cannot import')\n"
        "    raise KeyError('x must be -1 -- or an a-b value')\n"
    )
    assert flag_messages(source) == ["<source>:3: --model"]


def test_no_library_error_mentions_a_flag():
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        if (PACKAGE / "cli") in path.parents:
            continue
        found += flag_messages(path.read_text(encoding="utf-8"), str(path.relative_to(PACKAGE)))
    assert not found, "library errors that speak of command-line flags:\n" + "\n".join(found)
