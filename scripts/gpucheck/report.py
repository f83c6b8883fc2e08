"""The reports: ``gpu_report.json`` (every field of every part) and ``gpu_report.md`` (a table of
the parts, then per part its command, reason, highlights and output tail)."""

from __future__ import annotations

import json
import os
from pathlib import Path

from .runner import Result

ICON = {"ok": "ok", "failed": "FAILED", "skipped": "skipped"}
FACTS = (
    ("gpu", "GPU"),
    ("driver", "driver"),
    ("python", "Python"),
    ("numpy", "NumPy"),
    ("cupy", "CuPy"),
    ("torch", "PyTorch"),
    ("torch_cuda", "torch.cuda.is_available()"),
    ("jax", "JAX"),
    ("jax_devices", "jax.devices()"),
    ("array_api_compat", "array-api-compat"),
    ("array_api_strict", "array-api-strict"),
    ("nnx", "nnx"),
    ("nnx_path", "nnx imported from"),
    ("tqdm", "tqdm"),
    ("threadpoolctl", "threadpoolctl"),
    ("mpi4py", "mpi4py"),
    ("nccl", "NCCL (cupy.cuda.nccl)"),
    ("pytest", "pytest"),
    ("xdist", "pytest-xdist"),
    ("sklearn", "scikit-learn"),
    ("cpu_count", "CPUs"),
)


def _atomic_write(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def _cell(text: object) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def markdown(results: list[Result], meta: dict, facts: dict) -> str:
    out = ["# nnx GPU check", ""]
    out.append(f"Started {meta['started']}, {meta['seconds']} s of a {meta['budget_s']:g} s budget"
               + (" (dry run: nothing was run)" if meta["dry_run"] else "") + ".")  # fmt: skip
    if meta.get("state") == "running":
        out += ["", "**Incomplete**: written between two parts while the check was running "
                "(the check did not reach its end, or is still running)."]  # fmt: skip
    elif meta.get("state") == "stopped":
        out += ["", "**Stopped** (Ctrl-C or SIGTERM): the parts after the one running then "
                "did not run."]  # fmt: skip
    if meta.get("cpu_smoke"):
        out += ["", "**CPU smoke run** (`--cpu-smoke`): the GPU parts ran on the CPU with small "
                "sizes to check the check itself; nothing here is a GPU result."]  # fmt: skip
    out += ["", f"Command: `{meta['command']}`", ""]
    if facts:
        out += ["## Machine", "", "| | |", "|---|---|"]
        for key, label in FACTS:
            if key in facts:
                value = facts[key]
                if value is False:  # a library that is missing or broken: say why
                    why = facts.get(f"{key}_error") or facts.get(f"{key}_reason")
                    value = f"no ({why})" if why else "no"
                out.append(f"| {label} | {_cell(value)} |")
                for said in facts.get(f"{key}_import_warnings") or []:
                    out.append(f"| {label}: warning at import | {_cell(said)} |")
        out.append("")
    out += ["## Parts", "", "| # | part | status | seconds | reason |", "|---|---|---|---|---|"]
    for i, r in enumerate(results, 1):
        reason = r.reason if len(r.reason) < 160 else r.reason[:157] + "..."
        out.append(
            f"| {i} | {r.name}: {_cell(r.title)} | {ICON[r.status]} | {r.seconds:g} | "
            f"{_cell(reason)} |"
        )
    out.append("")
    for i, r in enumerate(results, 1):
        out += [f"## {i}. {r.name}: {r.title}", "", f"Status: **{ICON[r.status]}**"]
        if r.reason:
            out.append(f"({r.reason})")
        if r.command:
            out += ["", "```bash", r.command, "```"]
        if r.status != "skipped":
            out += [
                "",
                f"{r.seconds:g} s of a {r.timeout_s:g} s timeout, exit status {r.returncode}",
            ]
        if r.highlights:
            out += ["", "```text", *r.highlights, "```"]
        if r.details:
            shown = json.dumps(r.details, indent=1, default=str)
            if len(shown) > 3000:
                shown = shown[:3000] + "\n... (the whole of it in gpu_report.json)"
            out += ["", "<details><summary>details</summary>", "", "```json", shown, "```", "",
                    "</details>"]  # fmt: skip
        if r.tail and r.status != "ok":
            out += ["", "Output (the last lines):", "", "```text", r.tail, "```"]
        elif r.tail:
            out += ["", "<details><summary>output (the last lines)</summary>", "", "```text",
                    r.tail, "```", "", "</details>"]  # fmt: skip
        out.append("")
    return "\n".join(out)


def write_reports(
    outdir: Path, results: list[Result], meta: dict, facts: dict
) -> tuple[Path, Path]:
    """Write both files (each atomically); their paths."""
    md, js = outdir / "gpu_report.md", outdir / "gpu_report.json"
    data = {**meta, "machine": facts, "parts": [r.to_json() for r in results]}
    _atomic_write(js, json.dumps(data, indent=1, default=str) + "\n")
    _atomic_write(md, markdown(results, meta, facts))
    return md, js
