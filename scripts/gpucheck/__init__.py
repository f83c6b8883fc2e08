"""The GPU check (``scripts/gpu_check.py``): every part runs in its own subprocess with its own
timeout carved from one budget, and the results go into ``gpu_report.md`` and ``gpu_report.json``.

- ``parts.py``: the parts, in order: what each runs and what it needs;
- ``runner.py``: running one part (timeout, status, output tail) and the budget;
- ``report.py``: the Markdown and JSON reports;
- ``probe_*.py``: the Python programs some parts run (environment, host syncs, memory, NCCL),
  each printing one ``RESULT {json}`` line that the report reads.

Nothing here imports nnx or an array library: the parent process stays alive and writes the
report whatever a part does to its own process.
"""
