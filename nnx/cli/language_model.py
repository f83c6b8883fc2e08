"""The language-model presets (``--model transformer`` / ``--model lstm``) through the Trainer.

The text (``--text``, default: Python standard library sources) is split into characters
(:class:`nnx.datasets.text.CharacterText`); its last 10% is held out. Each epoch trains on
``--steps-per-epoch`` batches of random windows of ``--seq-len`` characters, drawn from
``(seed, epoch)``, and evaluates every non-overlapping held-out window: the logs hold the loss
(mean cross-entropy in nats) and ``bits_per_char`` (the same in bits) for both. One ``fit`` call
per epoch gives each epoch its own windows while the Trainer keeps its guarantees: the
run-folder lock, atomic checkpoints (``last.npz``, ``best.npz`` by held-out bits per
character), history.csv, early stopping and an exact ``--resume``.

The model keeps the vocabulary (its ``vocab`` argument, saved in every checkpoint), so
``nnx.load_model("run/best.npz")`` and :func:`nnx.models.generate` write text without the
training text. The run ends with the held-out bits per character beside the bigram baseline
and ``sample.txt``: 400 characters generated after the first window of the held-out text.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import nnx

from ..datasets import DatasetError
from ..datasets.text import CharacterText, read_text
from ..metrics import BitsPerCharacter
from ..models import generate
from ..training.trainer import NonFiniteLossError
from .factories import (
    make_model,
    make_optimizer,
    make_schedule,
    optimizer_steps,
    schedule_interval,
)
from .resume import model_from_checkpoint
from .run import (
    Say,
    claim_out,
    resume_changes,
    resume_trainer,
    run_callbacks,
    run_config,
    run_summary,
    save_run_curves,
)
from .runfolder import write_json, write_text
from .settings import ConfigError
from .threads import set_threads

SAMPLE_CHARS = 400


def run_language_model(
    settings: dict[str, Any], resume: Path | None, say: Say, context: dict[str, Any]
) -> dict[str, Any]:
    """Train ``settings["model"]`` on the text and write config.json, checkpoints, history.csv,
    curves.png, sample.txt and summary.json into the run folder; returns the summary."""
    if settings.get("metrics") is not None:
        raise ConfigError(
            f"--metrics applies to the data-set runs; the {settings['model']} language model "
            f"measures bits_per_char"
        )
    changes, previous_resumes = resume_changes(settings, resume, context)
    backend = nnx.get_backend(settings["device"])
    set_threads(settings["threads"])  # after the backend: torch is imported by then
    try:
        text, source = read_text(settings["text"])
    except DatasetError as err:
        raise ConfigError(f"--text: {err}") from None
    corpus = CharacterText(text, source=source)
    length = settings["seq_len"]
    corpus.check_length(length)
    out = claim_out(settings, resume, context)
    model = make_model(settings, (length,), len(corpus.vocab), extra={"vocab": corpus.vocab})
    if resume is not None:
        _check_vocabulary(resume, corpus.vocab)
    model = model.to(backend, dtype=settings["dtype"])
    optimizer = make_optimizer(settings, model.parameters())
    trainer = nnx.Trainer(
        model,
        nnx.CrossEntropyLoss(),
        optimizer,
        device=backend,
        metrics=(BitsPerCharacter(),),
        callbacks=run_callbacks(settings, out, "val_bits_per_char"),
        seed=settings["seed"],
        schedule=make_schedule(
            settings, optimizer, optimizer_steps(settings["steps_per_epoch"], settings)
        ),
        schedule_interval=schedule_interval(settings),
        clip_norm=settings["clip_norm"],
        accumulate=settings["accumulate"],
        progress=False,
    )
    resume_trainer(trainer, resume, changes, say)
    baseline = corpus.bigram_bits()
    config = run_config(settings, trainer, resume, changes, previous_resumes)
    config.update(
        text=source,
        characters=len(corpus),
        vocabulary=len(corpus.vocab),
        train_chars=len(corpus.train),
        held_out_chars=len(corpus.held),
    )
    write_json(out / "config.json", config)
    say(
        f"nnx: {settings['model']} language model on {source}: {len(corpus)} characters, "
        f"vocabulary {len(corpus.vocab)}, bigram baseline {baseline:.3f} bits/char on the "
        f"held-out 10%"
    )
    started = time.perf_counter()
    held = corpus.held_windows(length)
    train_epochs(trainer, corpus, held, settings, say, started)
    summary = run_summary(settings, trainer, trainer.history, time.perf_counter() - started, "text")
    held_bits = trainer.evaluate(held)["bits_per_char"]  # the best epoch's after early stopping
    prompt = corpus.decode(corpus.held[:length])
    try:
        sample = generate(model, corpus.vocab, prompt, SAMPLE_CHARS, seed=settings["seed"])
    except FloatingPointError:  # finite losses, but outputs that overflow: the run diverged
        raise NonFiniteLossError(
            f"the model's outputs became NaN or infinite by epoch {trainer.epoch} (training "
            f"loss {summary.get('train_loss')}); try a lower --lr or --clip-norm"
        ) from None
    write_text(out / "sample.txt", sample)
    summary.update(
        model=settings["model"],
        held_out_bits_per_char=held_bits,
        bigram_bits_per_char=baseline,
        steps=trainer.step,
        history=trainer.history.records,
        outputs=str(out),
    )
    write_json(out / "summary.json", summary)
    save_run_curves(settings, trainer.history, out, "val_bits_per_char")
    say(
        f"nnx: held-out {held_bits:.3f} bits/char, bigram baseline {baseline:.3f} bits/char "
        f"({summary['seconds']:.0f} s, {trainer.epoch} epochs"
        + (", stopped early" if summary["stopped_early"] else "")
        + f"); sample in {out / 'sample.txt'}"
    )
    return summary


def train_epochs(
    trainer: Any,
    corpus: CharacterText,
    held: tuple[Any, Any],
    settings: dict[str, Any],
    say: Say,
    started: float,
) -> None:
    """Fit one epoch at a time, each on its own windows drawn from ``(seed, epoch)``, until
    ``--epochs`` are complete or early stopping ends the run."""
    count = settings["steps_per_epoch"] * settings["batch_size"]
    while trainer.epoch < settings["epochs"]:
        epoch = trainer.epoch
        windows = corpus.train_windows(epoch, count, settings["seq_len"], trainer.seed)
        # the progress callback prints the epoch's line (train loss, val loss and bpc, time)
        trainer.fit(windows, held, epochs=epoch + 1, batch_size=settings["batch_size"])
        if trainer.stop_training:
            break


def _check_vocabulary(resume: Path, vocab: str) -> None:
    """The text must still have the characters the checkpoint's model was built for."""
    saved = model_from_checkpoint(resume)
    kept = getattr(saved, "vocab", None)
    if saved is not None and kept is not None and kept != vocab:
        raise ConfigError(
            f"--resume {resume}: the model was trained on a text with {len(kept)} distinct "
            f"characters, but --text now has {len(vocab)} (or others); resume with the same text"
        )
