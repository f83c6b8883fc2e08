"""The training command's entry point: ``python -m nnx.cli``, ``python scripts/train.py`` and the
``nnx-train`` console script all call :func:`main`.

Trains a model on a built-in data set (default: scikit-learn's 8x8 digits), the user's .npz or
.csv, or, with the language-model presets, a text, with a progress bar, per-epoch history,
checkpoints, curves and a summary. Settings come from, in increasing priority: built-in
defaults, the ``config.json`` of the run being resumed, ``--config FILE`` (TOML or JSON) and
command-line flags (:mod:`nnx.cli.settings`). Every problem a user can cause ends with a one-line
message and a non-zero exit status, never a traceback: 2 for bad settings, data, checkpoints or
a missing GPU, 1 when training itself failed (a non-finite loss), 128 + the signal's number
when Ctrl-C, SIGTERM or SIGHUP stopped it (the last completed epoch is kept in last.npz, and
the message says which epoch that is).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import nnx

from .language_model import run_language_model
from .resume import MODEL_SETTINGS, checkpoint_batch, checkpoint_epoch
from .run import run
from .settings import (
    LM_PRESETS,
    METAVARS,
    SETTINGS,
    ConfigError,
    read_config_file,
    resolve_settings,
)

EXIT_USAGE = 2  # bad settings, missing data or GPU, unusable checkpoint
EXIT_FAILED = 1  # training itself failed (loss became NaN)
EXIT_INTERRUPTED = 130  # Ctrl-C; a checkpoint was saved first

# Library messages name arguments; the command's user knows them as these flags.
ARGUMENT_FLAGS = {"label_column": "--label-column", "seq_len": "--seq-len"}


def build_parser(prog: str) -> argparse.ArgumentParser:
    """The argument parser: one flag per entry of SETTINGS, plus --resume, --config, --version."""
    parser = argparse.ArgumentParser(
        prog=prog,
        description="Train a model with nnx and write history, checkpoints, curves and a summary.",
        epilog="Settings also come from --config FILE (TOML or JSON, keys as the flag names, "
        "e.g. batch_size = 64); flags on the command line override it.",
        argument_default=argparse.SUPPRESS,
    )
    for name, (default, _, help_text) in SETTINGS.items():
        flag = "--" + name.replace("_", "-")
        shown = ",".join(map(str, default)) if isinstance(default, list) else default
        if isinstance(default, bool):  # --quiet / --no-quiet: a stored setting can be undone
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, help=help_text)
        else:
            parser.add_argument(
                flag,
                metavar=METAVARS.get(name, name.upper().split("_")[0]),
                help=help_text
                if default is None or "default" in help_text
                else f"{help_text} (default: {shown})",
            )
    parser.add_argument(
        "--resume", metavar="CHECKPOINT", help="continue a run from its last.npz or best.npz"
    )
    parser.add_argument(
        "--allow-changed-data",
        action="store_true",
        help="with --resume: continue although a --dataset or --text file differs from the one "
        "the run read (its size and SHA-256 are in config.json)",
    )
    parser.add_argument("--config", metavar="FILE", help="read settings from a TOML or JSON file")
    parser.add_argument("--version", action="version", version=f"nnx {nnx.__version__}")
    return parser


class Terminated(KeyboardInterrupt):
    """SIGTERM or SIGHUP: stops training like Ctrl-C (the last completed epoch is kept)."""

    def __init__(self, signum: int):
        super().__init__(signum)
        self.signum = signum


def _raise_terminated(signum: int, frame: Any) -> None:
    raise Terminated(signum)


def _install_signal_handlers() -> dict[int, Any]:
    """SIGTERM and SIGHUP raise :class:`Terminated`; returns the handlers they replace."""
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        return {}
    previous = {}
    for name in ("SIGTERM", "SIGHUP"):
        signum = getattr(signal, name, None)
        if signum is not None:
            previous[signum] = signal.signal(signum, _raise_terminated)
    return previous


def main(argv: list[str] | None = None, prog: str = "train.py") -> int:
    """Run the command; returns the exit status."""
    import signal

    try:
        previous = _install_signal_handlers()
    except KeyboardInterrupt:  # Ctrl-C before anything started
        return _interrupted(prog, signal.SIGINT, None)
    try:
        return _main(argv, prog)
    except KeyboardInterrupt as err:  # Ctrl-C or a signal during start-up or the final report
        return _interrupted(prog, getattr(err, "signum", signal.SIGINT), None)
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def _interrupted(prog: str, signum: int, out: Path | None) -> int:
    import signal

    last = out / "last.npz" if out is not None else None
    epoch = checkpoint_epoch(last) if last is not None and last.is_file() else None
    batch = checkpoint_batch(last) if epoch is not None else None
    if epoch is not None and batch:  # --checkpoint-every: a checkpoint inside an epoch
        where = (
            f"the state after batch {batch} of epoch {epoch + 1} is saved in {last}; "
            f"continue with --resume {last}"
        )
    elif epoch:
        where = (
            f"the last completed epoch is saved in {last} (epoch {epoch}); "
            f"continue with --resume {last}"
        )
    elif epoch == 0:
        where = f"no epoch had completed ({last} holds the untrained epoch-0 state)"
    else:
        where = "no epoch had completed, so there is nothing to resume"
    name = "" if signum == signal.SIGINT else f" by {signal.Signals(signum).name}"
    print(f"{prog}: interrupted{name}: {where}", file=sys.stderr)
    return 128 + int(signum)  # 130 for Ctrl-C, 143 for SIGTERM, 129 for SIGHUP


def _main(argv: list[str] | None, prog: str) -> int:
    import signal

    parser = build_parser(prog)
    args = parser.parse_args(argv)
    quiet = getattr(args, "quiet", False)

    def fail(message: str, status: int = EXIT_USAGE) -> int:
        print(f"{prog}: error: {message}", file=sys.stderr, flush=True)
        world = context.get("world")
        if world is not None and world.size > 1:  # the other ranks may wait in a collective
            world.comm.Abort(status)
        return status

    def say(line: str) -> None:
        if not quiet:
            print(line, flush=True)

    context: dict[str, Any] = {}

    from nnx.backend import BackendUnavailableError
    from nnx.datasets import DatasetError
    from nnx.distributed import DistributedUnavailableError
    from nnx.io.checkpoint import CheckpointError
    from nnx.training.trainer import NonFiniteLossError

    try:
        # Model settings given now (flags or --config) build the model from them on --resume;
        # otherwise it is rebuilt from the architecture the checkpoint embeds.
        context["allow_changed_data"] = vars(args).pop("allow_changed_data", False)
        given = set(vars(args))
        if "config" in given:
            given |= set(read_config_file(args.config))
        context["model_flags"] = sorted(given & set(MODEL_SETTINGS))
        context["model_given"] = "model" in vars(args)  # on the command line, not a file
        settings, resume = resolve_settings(args)
        quiet = settings["quiet"]
        if settings["model"] in LM_PRESETS:  # a character-level language model on --text
            run_language_model(settings, resume, say, context)
            return 0
        return run(settings, resume, say, context)
    except BackendUnavailableError as err:  # the API names backends; here they are --device
        message = str(err).replace("backend 'cpu' or 'auto'", "--device cpu or --device auto")
        return fail(message.replace("backend 'cpu' or 'gpu'", "--device cpu or --device gpu"))
    except DatasetError as err:
        return fail(_with_flags(str(err)))
    except (ConfigError, CheckpointError, DistributedUnavailableError) as err:
        return fail(str(err))
    except NonFiniteLossError as err:
        return fail(str(err), EXIT_FAILED)
    except KeyboardInterrupt as err:
        return _interrupted(prog, getattr(err, "signum", signal.SIGINT), context.get("out"))
    except MemoryError:
        return fail("out of memory; try a smaller --hidden or --batch-size")
    except OSError as err:  # disk full, permissions changed under us, ...
        where = f" ({err.filename})" if getattr(err, "filename", None) else ""
        return fail(f"{err.strerror or err}{where}")
    except (ValueError, TypeError) as err:  # a library refusal (the Trainer's), still one line
        return fail(str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__)
    finally:
        lock = context.get("lock")
        if lock is not None:
            lock.release()


def cli() -> None:
    """The ``nnx-train`` console script installed with the package."""
    sys.exit(main(prog="nnx-train"))


def _with_flags(message: str) -> str:
    """``message`` with the argument names of :data:`ARGUMENT_FLAGS` as the command's flags."""
    for name, flag in ARGUMENT_FLAGS.items():
        message = message.replace(name, flag)
    return message
