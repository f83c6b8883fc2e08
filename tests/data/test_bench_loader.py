"""The loader benchmark's smoke mode runs and reports every contender."""

import json

from scripts.bench.loader import main_loader


def test_quick_loader_benchmark_runs(tmp_path, capsys):
    out = tmp_path / "loader.json"
    assert main_loader(["--loader", "--quick", "--loader-kind", "memmap", "--json", str(out)]) == 0
    results = json.loads(out.read_text())
    assert set(results["wall_s"]) == {"step", "gather", "prefetch=0", "prefetch=2"}
    assert "prefetch=2" in capsys.readouterr().out
