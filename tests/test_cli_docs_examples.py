"""The training command's documented examples work as documented: docs/cli.md's own-model
builder trains on the digits, whose samples are (1, 8, 8) images."""

import json
import re
import sys
from pathlib import Path

import pytest

from nnx.cli.main import main

ROOT = Path(__file__).resolve().parent.parent


def test_cli_md_own_model_builder_trains_on_digits(tmp_path, monkeypatch):
    pytest.importorskip("sklearn")
    text = (ROOT / "docs" / "cli.md").read_text()
    (code,) = [b for b in re.findall(r"```python\n(.*?)```", text, re.S) if "# mynets.py" in b]
    (tmp_path / "mynets.py").write_text(code)
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "mynets", raising=False)
    args = ["--model", "mynets:build", "--device", "cpu", "--epochs", "3", "--out", "r"]
    assert main([*args, "--quiet"], prog="nnx-train") == 0
    summary = json.loads((tmp_path / "r" / "summary.json").read_text())
    assert summary["dataset"] == "digits" and summary["test_accuracy"] > 0.8
