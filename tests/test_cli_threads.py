"""--threads: the commands set BLAS (and, once imported, PyTorch) thread counts; config.json
records it, a resume does not keep it; library code changes no thread count for good."""

import json
import re
import sys
from pathlib import Path

import pytest

from nnx.cli.main import main
from nnx.cli.threads import set_threads

threadpoolctl = pytest.importorskip("threadpoolctl")
ROOT = Path(__file__).resolve().parent.parent
FAST = ["--dataset", "vertical", "--device", "cpu", "--hidden", "8", "--quiet"]


@pytest.fixture
def restored_threads():
    """Put the process's BLAS and torch thread counts back after the test."""
    controller = threadpoolctl.ThreadpoolController()
    before = [(lib, lib.num_threads) for lib in controller.lib_controllers]
    torch = sys.modules.get("torch")
    torch_before = torch.get_num_threads() if torch is not None else None
    yield
    for lib, count in before:
        lib.set_num_threads(count)
    if torch_before is not None:
        torch.set_num_threads(torch_before)


def _blas_threads():
    return {i["num_threads"] for i in threadpoolctl.threadpool_info() if i["user_api"] == "blas"}


def test_set_threads_limits_blas_and_none_changes_nothing(restored_threads):
    if not _blas_threads():
        pytest.skip("threadpoolctl finds no BLAS here")
    before = _blas_threads()
    assert set_threads(None) == {} and _blas_threads() == before
    done = set_threads(1)
    assert done["blas"] == 1 and _blas_threads() == {1}
    assert ("torch" in done) == ("torch" in sys.modules)


def test_threads_flag_is_recorded_and_not_kept_on_resume(tmp_path, capsys, restored_threads):
    out = tmp_path / "run"
    assert main([*FAST, "--epochs", "1", "--threads", "1", "--out", str(out)]) == 0
    assert json.loads((out / "config.json").read_text())["settings"]["threads"] == 1
    if _blas_threads():
        assert _blas_threads() == {1}
    capsys.readouterr()
    assert main(["--resume", str(out / "last.npz"), "--epochs", "2", "--no-quiet"]) == 0
    assert "threads:" not in capsys.readouterr().out  # not reported as a changed setting
    assert json.loads((out / "config.json").read_text())["settings"]["threads"] is None
    assert main([*FAST, "--epochs", "1", "--threads", "0", "--out", str(tmp_path / "x")]) == 2
    assert "--threads must be > 0" in capsys.readouterr().err
    assert main([*FAST, "--epochs", "1", "--threads", "100000", "--out", str(tmp_path / "y")]) == 2
    assert "--threads must be < 1024" in capsys.readouterr().err


def test_library_code_sets_no_thread_count_for_good():
    """Only the commands (nnx/cli/threads.py) set thread counts; the library narrows BLAS only
    inside its scoped one_blas_thread."""
    setter = re.compile(r"threadpool_limits\(|set_num_threads\(|set_num_interop_threads\(|"
                        r"_NUM_THREADS\"\] *=|environ\[.*THREADS")  # fmt: skip
    found = [
        str(p.relative_to(ROOT))
        for p in (ROOT / "nnx").rglob("*.py")
        if p.name != "threads.py" and setter.search(p.read_text())
    ]
    assert found == []
