"""The prediction command: ``nnx-predict``, ``python scripts/predict.py``.

``nnx-predict RUN_OR_MODEL --input FILE [--output preds.csv]`` loads a trained model (a run
folder of ``nnx-train``: its ``best.npz``, else ``last.npz``; or a model file or checkpoint) with
its preprocessing (the :class:`nnx.Standardize` layer the command puts first), predicts on the
samples of a ``.csv``, ``.npy`` or ``.npz`` file in batches, and writes one CSV row per sample:
for a classifier ``label`` (the class index), ``label_name`` (the original label when the model
was trained on a .csv with named labels) and ``prob_<class>`` (softmax probabilities); for a
regressor ``prediction`` (or ``prediction_<j>`` per target). The run's ``config.json`` (beside
the model file) says the task, the class names and the training .csv's columns; without it the
outputs are taken as class scores and the classes are numbered.

Every problem ends with one line on stderr and exit status 2.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import math
import sys
from pathlib import Path
from typing import Any

import numpy as np

import nnx

from .threads import set_threads

EXIT_USAGE = 2
INPUT_SUFFIXES = (".csv", ".npy", ".npz")
MODEL_FILES = ("best.npz", "last.npz")  # in a run folder, in this order


class PredictError(ValueError):
    """A problem with the command's arguments, model or output; the message is one line."""


def build_parser(prog: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=prog,
        description="Predict with a model trained by nnx-train: class labels and probabilities "
        "(or regression values) for every sample of a .csv, .npy or .npz file.",
    )
    parser.add_argument(
        "model",
        metavar="RUN_OR_MODEL_FILE",
        help="a run folder of nnx-train (its best.npz, else last.npz) or a model file / checkpoint",
    )
    parser.add_argument(
        "--input",
        required=True,
        metavar="FILE",
        help="samples to predict: a .csv with the training file's columns (the label column may "
        "be present and is ignored), a .npy array, or a .npz (array x, or its only array)",
    )
    parser.add_argument(
        "--output", metavar="FILE", help="write the predictions to this .csv (default: stdout)"
    )
    parser.add_argument(
        "--batch-size", type=int, default=256, metavar="N", help="samples per batch (default 256)"
    )
    parser.add_argument(
        "--device", default="cpu", help="where to predict: cpu (default), gpu, torch, jax, ..."
    )
    parser.add_argument(
        "--threads",
        type=int,
        metavar="N",
        help="threads for NumPy's BLAS and PyTorch (default: their own, every core)",
    )
    parser.add_argument("--version", action="version", version=f"nnx {nnx.__version__}")
    return parser


def main(argv: list[str] | None = None, prog: str = "predict.py") -> int:
    """Run the command; returns the exit status."""
    args = build_parser(prog).parse_args(argv)
    from nnx.backend import BackendUnavailableError
    from nnx.datasets import DatasetError
    from nnx.io.errors import NnxFileError

    try:
        if args.batch_size <= 0:
            raise PredictError(f"--batch-size must be > 0, got {args.batch_size}")
        if args.threads is not None and args.threads <= 0:
            raise PredictError(f"--threads must be > 0, got {args.threads}")
        if args.output is not None and not args.output.lower().endswith(".csv"):
            raise PredictError(f"--output {args.output} must end in .csv")
        model_path, config = find_model(Path(args.model))
        backend = nnx.get_backend(args.device)
        set_threads(args.threads)
        model = nnx.load_model(model_path, device=backend)
        _refuse_language_model(model, model_path)
        x = read_inputs(Path(args.input), config)
        x = fit_to_model(x, model, Path(args.input))
        outputs = predict(model, x, backend, args.batch_size)
        text = predictions_csv(outputs, config)
        if args.output is None:
            sys.stdout.write(text)
        else:
            from .runfolder import write_text

            try:
                write_text(Path(args.output), text)
            except OSError as err:  # named by the atomic write's temporary file otherwise
                raise PredictError(
                    f"--output {args.output}: cannot write it ({err.strerror or err})"
                ) from None
    except BackendUnavailableError as err:  # the API names backends; here they are --device
        return _fail(prog, str(err).replace("use backend ", "use --device "))
    except (PredictError, NnxFileError, DatasetError) as err:
        return _fail(prog, str(err))
    except OSError as err:
        where = f" ({err.filename})" if getattr(err, "filename", None) else ""
        return _fail(prog, f"{err.strerror or err}{where}")
    except (ValueError, TypeError) as err:  # a library refusal, still one line
        return _fail(prog, str(err).strip().splitlines()[0] if str(err).strip() else repr(err))
    return 0


def cli() -> None:
    """The ``nnx-predict`` console script installed with the package."""
    sys.exit(main(prog="nnx-predict"))


def _fail(prog: str, message: str) -> int:
    print(f"{prog}: error: {message}", file=sys.stderr, flush=True)
    return EXIT_USAGE


# ---------------------------------------------------------------------------- the model


def find_model(path: Path) -> tuple[Path, dict[str, Any]]:
    """The model file to load and config.json's ``dataset`` record (empty when there is none)."""
    if path.is_dir():
        found = [path / name for name in MODEL_FILES if (path / name).is_file()]
        if not found:
            raise PredictError(
                f"{path} is a folder without {' or '.join(MODEL_FILES)}; give a run folder of "
                "nnx-train or a model file"
            )
        path = found[0]
    elif not path.exists():
        raise PredictError(f"model {path} does not exist")
    elif not path.is_file():
        raise PredictError(f"model {path} is not a regular file")
    return path, _dataset_record(path.parent / "config.json")


def _refuse_language_model(model: Any, path: Path) -> None:
    """The ``transformer``/``lstm`` presets map ids ``(N, T)`` to logits ``(N, V, T)``: read as
    a classifier, their CSV was probabilities over V * T columns for ids cast from any number."""
    from nnx.models.lstm import LSTMLanguageModel
    from nnx.models.transformer import CausalTransformerLM

    if isinstance(model, (LSTMLanguageModel, CausalTransformerLM)):
        raise PredictError(
            f"{path} is a character language model ({type(model).__name__}); nnx-predict is for "
            "classifiers and regressors: generate text with nnx.models.generate "
            "(docs/cli.md, language-model presets)"
        )


def _dataset_record(config: Path) -> dict[str, Any]:
    if not config.is_file():
        return {}
    try:
        record = json.loads(config.read_text(encoding="utf-8")).get("dataset")
    except (ValueError, AttributeError, OSError):
        raise PredictError(f"{config} is not a config.json written by nnx-train") from None
    return record if isinstance(record, dict) else {}


# ---------------------------------------------------------------------------- the inputs


def read_inputs(path: Path, config: dict[str, Any]) -> np.ndarray:
    """The samples of ``path`` (.csv, .npy, .npz) as a host array, one sample per row."""
    from nnx.datasets.errors import DataFileError
    from nnx.datasets.files import read_csv_features
    from nnx.io.npz import NpzReader, open_regular

    suffix = path.suffix.lower()
    if suffix not in INPUT_SUFFIXES:
        open_regular(path, "input file", DataFileError).close()  # a missing file says so first
        raise PredictError(
            f"--input {path} must end in {', '.join(INPUT_SUFFIXES)}, not {path.suffix or 'nothing'}"
        )
    if suffix == ".csv":
        features = config.get("features")
        label = config.get("label_column")
        return read_csv_features(path, features if isinstance(features, list) else None, label)
    if suffix == ".npz":
        with NpzReader(path, "input file", DataFileError) as reader:
            keys = reader.keys()
            if "x" in keys:
                key = "x"
            elif len(keys) == 1:
                key = keys[0]
            else:
                raise PredictError(
                    f"{path} holds {len(keys)} arrays ({', '.join(keys[:5])}); name the samples x"
                )
            x = reader.read(key, kinds="biuf")
    else:
        open_regular(path, "input file", DataFileError).close()
        try:
            x = np.load(path, mmap_mode="r", allow_pickle=False)
        except (ValueError, OSError) as err:
            raise PredictError(f"{path} is not a readable .npy array ({err})") from None
        if not isinstance(x, np.ndarray) or x.dtype.kind not in "biuf":
            raise PredictError(f"{path} must hold numbers, got dtype {getattr(x, 'dtype', '?')}")
        x = _without_label(x, config)
    if x.ndim < 1 or x.shape[0] == 0:
        raise PredictError(f"{path} holds no samples (shape {x.shape})")
    return x


def _without_label(x: np.ndarray, config: dict[str, Any]) -> np.ndarray:
    """A ``.npy`` as wide as the training ``.npy`` without its label column, which is ignored
    as a ``.csv``'s is (a view when it is the first or the last column)."""
    column, columns = config.get("label_column"), config.get("columns")
    if not isinstance(column, int) or not isinstance(columns, int):
        return x
    if x.ndim != 2 or x.shape[1] != columns or not 0 <= column < columns:
        return x
    if column in (0, columns - 1):
        return x[:, 1:] if column == 0 else x[:, :-1]
    return np.delete(x, column, axis=1)


def _sample_shape(model: Any) -> tuple[int, ...] | None:
    """The sample shape of the model's first :class:`nnx.Standardize` layer, if it has one."""
    first = model
    while isinstance(first, nnx.Sequential) and len(first) > 0:
        first = first[0]
    return tuple(first.shape) if isinstance(first, nnx.Standardize) else None


def fit_to_model(x: np.ndarray, model: Any, path: Path) -> np.ndarray:
    """``x`` with samples of the model's input shape (flat rows of the right size are reshaped,
    as for a .csv of image pixels); a wrong size or a non-finite value is refused."""
    shape = _sample_shape(model)
    if x.ndim == 1:
        x = x.reshape(len(x), 1)
    if shape is not None and tuple(x.shape[1:]) != shape:
        have, need = math.prod(x.shape[1:]), math.prod(shape)
        if have != need:
            raise PredictError(
                f"{path}: samples have {have} features (shape {tuple(x.shape[1:])}), the model "
                f"takes {need} (shape {shape})"
            )
        x = np.reshape(x, (len(x), *shape))
    for start in range(0, len(x), 65536):  # chunks: a memory-mapped .npy is not read whole
        chunk = np.asarray(x[start : start + 65536])
        if chunk.dtype.kind == "f" and not np.isfinite(chunk).all():
            row = start + int(np.argwhere(~np.isfinite(chunk))[0][0])
            raise PredictError(f"{path}: sample {row} has NaN or infinite values")
    return x


# ---------------------------------------------------------------------------- predicting


def predict(model: Any, x: np.ndarray, backend: Any, batch_size: int) -> np.ndarray:
    """The model's outputs for every sample, computed in batches by :meth:`nnx.Trainer.predict`
    (evaluation mode), as a host array."""
    trainer = nnx.Trainer(
        model,
        nnx.MSELoss(),  # unused: Trainer wants a loss and an optimizer, predict uses neither
        nnx.optim.SGD(model.parameters(), lr=0.1),
        device=backend,
        metrics=(),
        progress=False,
    )
    out = trainer.predict(np.asarray(x), batch_size=batch_size)
    return nnx.to_numpy(out).astype(np.float64)


def predictions_csv(outputs: np.ndarray, config: dict[str, Any]) -> str:
    """The predictions as CSV text (see the module's docstring for the columns)."""
    outputs = outputs.reshape(len(outputs), -1)
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    if config.get("task") == "regression":
        k = outputs.shape[1]
        writer.writerow(["prediction"] if k == 1 else [f"prediction_{j}" for j in range(k)])
        writer.writerows([[f"{v:.7g}" for v in row] for row in outputs])
        return buffer.getvalue()
    shifted = outputs - outputs.max(axis=1, keepdims=True)
    probs = np.exp(shifted)
    probs /= probs.sum(axis=1, keepdims=True)
    labels = probs.argmax(axis=1)
    names = config.get("classes")
    if not (isinstance(names, list) and len(names) == probs.shape[1]):
        names = None
    classes = names if names is not None else [str(k) for k in range(probs.shape[1])]
    writer.writerow(["label", *(["label_name"] if names else []), *(f"prob_{c}" for c in classes)])
    for label, row in zip(labels, probs, strict=True):
        named = [names[label]] if names else []
        writer.writerow([int(label), *named, *(f"{p:.6f}" for p in row)])
    return buffer.getvalue()


if __name__ == "__main__":  # python -m nnx.cli.predict, as python -m nnx.cli trains
    sys.exit(main(prog="python -m nnx.cli.predict"))
