"""The training command (``nnx-train``, ``python -m nnx.cli``, ``scripts/train.py``).

- :mod:`nnx.cli.settings`: every flag, its default and converter, config files.
- :mod:`nnx.cli.resume`: what a resume keeps, may change, and must refuse.
- :mod:`nnx.cli.runfolder`: the run folder: creation, lock, atomic outputs.
- :mod:`nnx.cli.factories`: model, optimizer, schedule and augmentation from the settings.
- :mod:`nnx.cli.run` and :mod:`nnx.cli.language_model`: settings -> objects -> Trainer.
- :mod:`nnx.cli.main`: argument parsing, signals, one-line errors and exit codes.
- :mod:`nnx.cli.predict`: ``nnx-predict``, predictions of a trained run on new data.
- :mod:`nnx.cli.threads`: ``--threads``, the BLAS and PyTorch thread counts of a command.

The library (everything under ``nnx/`` outside this package) does not know this command: its
errors name arguments, and this package rewords them with flags where it helps.
"""
