"""Running one part: a subprocess in its own session, killed (the whole process group) at its
timeout, its output kept in a log file, and the result as a :class:`Result`."""

from __future__ import annotations

import json
import os
import shlex
import signal
import subprocess
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

TAIL_LINES = 40
TAIL_CHARS = 4000
RESULT_PREFIX = "RESULT "  # a probe's last line: RESULT {json}


@dataclass
class Result:
    """What the report says about one part."""

    name: str
    title: str
    status: str  # "ok", "failed" or "skipped"
    reason: str = ""  # why it failed or was skipped
    command: str = ""  # the exact command line (shell-quoted)
    seconds: float = 0.0
    timeout_s: float = 0.0
    returncode: int | None = None
    tail: str = ""  # the last lines of its output
    highlights: list[str] = field(default_factory=list)  # lines worth reading (accuracy, ...)
    details: dict = field(default_factory=dict)  # a probe's RESULT, a benchmark's JSON

    def to_json(self) -> dict:
        return asdict(self)


def quote(argv: list[str]) -> str:
    return " ".join(shlex.quote(a) for a in argv)


def tail(text: str) -> str:
    lines = text.rstrip("\n").splitlines()[-TAIL_LINES:]
    out = "\n".join(lines)
    return out[-TAIL_CHARS:]


def probe_result(text: str) -> dict:
    """The last ``RESULT {json}`` line of a probe's output, or {} when there is none."""
    for line in reversed(text.splitlines()):
        if line.startswith(RESULT_PREFIX):
            try:
                value = json.loads(line[len(RESULT_PREFIX) :])
            except ValueError:
                return {}
            return value if isinstance(value, dict) else {"value": value}
    return {}


def run_command(
    argv: list[str], timeout: float, log: Path, env: dict[str, str], cwd: Path
) -> tuple[int | None, str, float, bool]:
    """Run ``argv``; ``(returncode, output, seconds, timed_out)``. The output (stdout and stderr
    together) is written to ``log`` as it comes. At the timeout the process group gets SIGINT
    (Python prints where it was; pytest prints its summary of the tests run so far), then
    SIGTERM 10 s later and SIGKILL 5 s after that; a process that outlives SIGKILL by 10 s (stuck
    in the GPU driver, say) is left behind and reported, so the check goes on. When the check
    itself is stopped (Ctrl-C, SIGTERM) the part's process group is killed first."""
    log.parent.mkdir(parents=True, exist_ok=True)
    start = time.monotonic()
    timed_out = False
    with open(log, "wb") as out:
        try:
            proc = subprocess.Popen(
                argv,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=env,
                cwd=cwd,
                start_new_session=True,
            )
        except OSError as err:
            out.write(f"could not start {argv[0]}: {err}\n".encode())
            return None, f"could not start {argv[0]}: {err}", time.monotonic() - start, False
        try:
            proc.wait(timeout=max(timeout, 0.1))
        except subprocess.TimeoutExpired:
            timed_out = True
            for sig, wait in ((signal.SIGINT, 10), (signal.SIGTERM, 5), (signal.SIGKILL, 10)):
                _kill_group(proc, sig)
                try:
                    proc.wait(timeout=wait)
                    break
                except subprocess.TimeoutExpired:
                    continue
        except BaseException:  # the check itself is stopped: leave no part running behind it
            _kill_group(proc, signal.SIGKILL)
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                pass
            raise
    seconds = time.monotonic() - start
    text = log.read_bytes().decode("utf-8", "replace")
    if proc.returncode is None:
        text += f"\n(gpu_check: process {proc.pid} survived SIGKILL; left running)\n"
    return proc.returncode, text, seconds, timed_out


def _kill_group(proc: subprocess.Popen, sig: int) -> None:
    try:
        os.killpg(proc.pid, sig)  # the group this part started (start_new_session), no other
    except ProcessLookupError:
        pass


class Budget:
    """The total budget, shared out: each part gets the time left times its weight over the
    weights of the parts still to run, so time a part does not use goes to the later ones."""

    RESERVE_S = 20.0  # kept for writing the report and a part's SIGINT-to-SIGKILL grace
    MIN_S = 3.0  # a part with less than this is skipped
    FLOOR_S = 10.0  # no part gets less while the budget lasts (the start of Python and imports)

    def __init__(self, total_s: float):
        self.total_s = total_s
        self.start = time.monotonic()

    def left(self) -> float:
        return self.total_s - (time.monotonic() - self.start) - self.RESERVE_S

    def share(self, weight: float, weights_to_come: float) -> float:
        """This part's timeout: its share of the time left, at least FLOOR_S while that is left."""
        left = self.left()
        return min(left, max(self.FLOOR_S, left * weight / max(weights_to_come, weight)))
