"""The training command's package: its entry points, atomic outputs and one-line errors."""

import subprocess
import sys
from pathlib import Path

import nnx
from nnx.cli import main as cli_main
from nnx.cli.runfolder import write_json, write_text

ROOT = Path(__file__).resolve().parent.parent


def test_python_dash_m_nnx_cli_and_the_script_are_the_same_command(tmp_path):
    for command in (
        [sys.executable, "-m", "nnx.cli"],
        [sys.executable, str(ROOT / "scripts" / "train.py")],
    ):
        done = subprocess.run([*command, "--version"], capture_output=True, text=True, timeout=120)
        assert done.returncode == 0 and done.stdout.strip() == f"nnx {nnx.__version__}"
    script = (ROOT / "scripts" / "train.py").read_text()
    assert "from nnx.cli.main import main" in script and "def " not in script  # a shim


def test_outputs_replace_symlinks_and_leave_their_targets_alone(tmp_path):
    outside = tmp_path / "outside.txt"
    outside.write_text("precious")
    for name, write in (("sample.txt", write_text), ("summary.json", write_json)):
        link = tmp_path / name
        link.symlink_to(outside)
        write(link, "new" if write is write_text else {"a": 1})
        assert not link.is_symlink() and outside.read_text() == "precious"
    assert (tmp_path / "sample.txt").read_text() == "new"
    assert (tmp_path / "summary.json").read_text() == '{\n  "a": 1\n}\n'


def test_a_library_value_or_type_error_reaches_the_user_as_one_line(monkeypatch, capsys):
    for error in (ValueError("Trainer: no good\nsecond line"), TypeError("Trainer: wrong type")):

        def refuse(*args, error=error, **kwargs):
            raise error

        monkeypatch.setattr(cli_main, "run", refuse)
        assert cli_main.main(["--device", "cpu"], prog="nnx-train") == 2
        err = capsys.readouterr().err
        assert err == f"nnx-train: error: {str(error).splitlines()[0]}\n"
