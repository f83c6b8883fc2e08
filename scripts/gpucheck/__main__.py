"""Check nnx on a machine with an NVIDIA GPU and write OUTDIR/gpu_report.md and gpu_report.json.

    python scripts/gpu_check.py OUTDIR [--wheels DIR] [--dry-run] [--budget-s 450]

The parts run in order (parts.py), each in its own subprocess with a timeout carved from
``--budget-s``; a part that fails or times out is recorded and the next one runs. The exit status
is 0 when the report was written (failures are in it), 1 when it could not be, 130 when the
check was stopped by Ctrl-C or SIGTERM (the report then covers the parts run so far; one is
also rewritten after every part, so a check killed outright leaves the parts before).
"""

from __future__ import annotations

import argparse
import datetime
import os
import shutil
import signal
import sys
import tempfile
import time
from pathlib import Path

from .parts import ROOT, Context, Environment, Part, Skip, Wheels, all_parts
from .report import write_reports
from .runner import Budget, Result, quote, run_command, tail


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    names = [p.name for p in all_parts()]
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("outdir", type=Path, help="folder for the report (created)")
    p.add_argument("--wheels", type=Path, help="install these *.whl files first (no network)")
    p.add_argument("--dry-run", action="store_true", help="run nothing; report what would run")
    p.add_argument(
        "--cpu-smoke",
        action="store_true",
        help="run the parts on the CPU with small sizes (checks the check itself, no GPU result)",
    )
    p.add_argument(
        "--budget-s", type=float, default=450.0, help="total seconds for every part (default 450)"
    )
    p.add_argument(
        "--only",
        type=lambda s: [v.strip() for v in s.split(",") if v.strip()],
        help=f"run only these parts (comma-separated; the others are skipped): {','.join(names)}",
    )
    p.add_argument(
        "--pytest-maxfail",
        type=int,
        default=5,
        help="stop the test suite on each backend after this many failures (default 5; 1: -x)",
    )
    p.add_argument(
        "--pytest-slow",
        action="store_true",
        help="also run the tests marked slow (default: -m 'gpu and not slow')",
    )
    p.add_argument(
        "--pytest-workers",
        type=int,
        default=0,
        help="run the test suite in N pytest-xdist processes (default: one process)",
    )
    args = p.parse_args(argv)
    unknown = sorted(set(args.only or []) - set(names))
    if unknown:
        p.error(f"--only: unknown part(s) {', '.join(unknown)}; the parts: {', '.join(names)}")
    return args


def environment(ctx: Context, part: Part | None = None) -> dict[str, str]:
    """The environment of every part: the carried wheels, the repository and scripts/ on PYTHONPATH, JAX
    not grabbing 75% of the GPU, Open MPI allowed to run as root (the GPU machine's user)."""
    env = dict(os.environ)
    paths = [
        str(ROOT),
        str(ROOT / "scripts"),
    ]  # scripts/: the pytest plugin gpucheck.pytest_collect
    site = ctx.work / "site"
    if site.is_dir():
        paths.insert(0, str(site))
    if env.get("PYTHONPATH"):
        paths.append(env["PYTHONPATH"])
    env["PYTHONPATH"] = os.pathsep.join(paths)
    env.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")
    env.setdefault("OMPI_ALLOW_RUN_AS_ROOT", "1")
    env.setdefault("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1")
    env.setdefault("PYTHONUNBUFFERED", "1")
    env.pop("PYTEST_ADDOPTS", None)
    for key, value in (part.env_for(ctx) if part is not None else {}).items():
        if key == "LD_LIBRARY_PATH":  # a library folder to add, not a default
            env[key] = value
        else:
            env.setdefault(key, value)
    return env


def write_synthetic_digits(path: Path) -> None:
    """An 8x8, 10-class image set (one fixed pattern per class plus noise) for the training
    parts when scikit-learn, which carries the digits, is not installed."""
    import numpy as np

    rng = np.random.default_rng(0)
    patterns = rng.random((10, 1, 8, 8)).astype(np.float32)

    def draw(n: int) -> tuple[np.ndarray, np.ndarray]:
        y = rng.integers(0, 10, n).astype(np.int64)
        x = patterns[y] + 0.35 * rng.standard_normal((n, 1, 8, 8)).astype(np.float32)
        return x.astype(np.float32), y

    (x_train, y_train), (x_test, y_test) = draw(1440), draw(360)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, x_train=x_train, y_train=y_train, x_test=x_test, y_test=y_test)


def run_part(part: Part, ctx: Context, budget: Budget, weights_to_come: float, dry: bool) -> Result:
    result = Result(part.name, part.title, "skipped")
    try:
        argv = part.command(ctx)
    except Skip as why:
        result.reason = str(why)
        return result
    result.command = quote([*(f"{k}={v}" for k, v in part.env_for(ctx).items()), *argv])
    if dry:
        result.reason = f"dry run; would run: {result.command}"
        return result
    why = ctx.missing(part.needs)
    if why:
        result.reason = why
        return result
    timeout = budget.share(part.weight, weights_to_come)
    if timeout < Budget.MIN_S:
        result.reason = f"the time budget is spent ({budget.left():.0f} s left)"
        return result
    if "--dataset" in argv:
        data = Path(argv[argv.index("--dataset") + 1])
        if not data.exists():
            write_synthetic_digits(data)
            result.highlights.append(f"scikit-learn missing: trained on synthetic data {data}")
    log = ctx.outdir / "logs" / f"{part.name}.log"
    print(f"gpu_check: {part.name} (timeout {timeout:.0f} s): {result.command}", flush=True)
    code, output, seconds, timed_out = run_command(argv, timeout, log, environment(ctx, part), ROOT)
    result.returncode, result.seconds, result.timeout_s = code, round(seconds, 2), round(timeout, 1)
    result.tail = tail(output)
    if timed_out:
        result.status, result.reason = "failed", f"timed out after {timeout:.0f} s"
    elif code == 0:
        result.status = "ok"
    else:
        result.status = "failed"
        last = [line for line in output.strip().splitlines() if line.strip()]
        result.reason = f"exit status {code}" + (f": {last[-1].strip()[:300]}" if last else "")
    try:
        part.digest(ctx, result, output)
    except Exception as err:  # a digest must never lose the part's result
        result.highlights.append(f"(could not read the output: {type(err).__name__}: {err})")
    print(f"gpu_check: {part.name}: {result.status} {result.reason}".rstrip(), flush=True)
    return result


def main(argv: list[str] | None = None) -> int:
    """Run the check; the exit status of ``scripts/gpu_check.py``."""
    args = parse_args(argv)
    started = datetime.datetime.now(datetime.timezone.utc)
    budget = Budget(args.budget_s)
    outdir = args.outdir.resolve()
    try:
        outdir.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        print(f"gpu_check.py: error: cannot create {outdir}: {err}", file=sys.stderr)
        return 1
    work = Path(tempfile.mkdtemp(prefix="nnx-gpucheck-"))
    ctx = Context(
        outdir,
        work,
        wheels=args.wheels,
        pytest_maxfail=args.pytest_maxfail,
        pytest_workers=args.pytest_workers,
        pytest_slow=args.pytest_slow,
        smoke=args.cpu_smoke,
    )
    parts = all_parts()
    results: list[Result] = []
    command = [sys.executable, "scripts/gpu_check.py", *(sys.argv[1:] if argv is None else argv)]

    def meta(state: str) -> dict:
        return {
            "started": started.isoformat(timespec="seconds"),
            "seconds": round(time.monotonic() - budget.start, 1),
            "budget_s": args.budget_s,
            "state": state,  # "finished", "running" (a report written between parts), "stopped"
            "dry_run": args.dry_run,
            "cpu_smoke": args.cpu_smoke,
            "command": quote(command),
            "repository": str(ROOT),
        }

    def not_run(why: str) -> list[Result]:
        return [Result(p.name, p.title, "skipped", why) for p in parts[len(results) :]]

    state = "finished"
    previous = _stop_on_sigterm()
    try:
        for i, part in enumerate(parts):
            if args.only is not None and part.name not in args.only:
                results.append(Result(part.name, part.title, "skipped", "not in --only"))
                continue
            to_come = sum(p.weight for p in parts[i:] if args.only is None or p.name in args.only)
            try:
                result = run_part(part, ctx, budget, to_come, args.dry_run)
            except Exception as err:  # a bug of the check itself: recorded, the next part runs
                reason = f"the check itself failed: {type(err).__name__}: {err}"
                result = Result(part.name, part.title, "failed", reason)
            if isinstance(part, Wheels) and result.status == "failed":
                _unzip_wheels(ctx, result)
            if isinstance(part, Environment) and result.details:
                ctx.facts, ctx.probed = result.details, True
            results.append(result)
            if not args.dry_run:  # a report so far: the check may be killed before its end
                try:
                    write_reports(outdir, results + not_run("not run yet"), meta("running"),
                                  ctx.facts)  # fmt: skip
                except OSError:
                    pass
    except KeyboardInterrupt:  # Ctrl-C or SIGTERM: the parts run so far are still reported
        state = "stopped"
        print("gpu_check: stopped; writing the report of the parts run so far", file=sys.stderr)
        if len(results) < len(parts):
            running = parts[len(results)]
            log = f"logs/{running.name}.log"
            why = f"the check was stopped (Ctrl-C or SIGTERM) while this part ran; output: {log}"
            results.append(Result(running.name, running.title, "failed", why))
        results += not_run("not run: the check was stopped (Ctrl-C or SIGTERM)")
    finally:
        signal.signal(signal.SIGTERM, previous)
        shutil.rmtree(work, ignore_errors=True)
    try:
        md, js = write_reports(outdir, results, meta(state), ctx.facts)
    except OSError as err:
        print(f"gpu_check.py: error: cannot write the report in {outdir}: {err}", file=sys.stderr)
        return 1
    counts = {s: sum(r.status == s for r in results) for s in ("ok", "failed", "skipped")}
    print(f"gpu_check: {counts['ok']} ok, {counts['failed']} failed, {counts['skipped']} skipped")
    print(f"gpu_check: report in {md} and {js}")
    return 0 if state == "finished" else 130


def _stop_on_sigterm() -> object:
    """SIGTERM stops the check as Ctrl-C does (the running part is killed, the report written);
    returns the handler it replaces."""

    def stop(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    return signal.signal(signal.SIGTERM, stop)


def _unzip_wheels(ctx: Context, result: Result) -> None:
    """pip failed (or is missing): a pure-Python wheel is a zip file to unpack onto the path."""
    import zipfile

    site = ctx.work / "site"
    done = []
    for wheel in sorted(Path(ctx.wheels).glob("*.whl")):
        try:
            with zipfile.ZipFile(wheel) as z:
                z.extractall(site)
        except (OSError, zipfile.BadZipFile) as err:
            result.highlights.append(f"could not unzip {wheel.name}: {err}")
            return
        done.append(wheel.name)
    result.status = "ok"
    result.reason = f"pip failed ({result.reason}); unzipped instead: {', '.join(done)}"
