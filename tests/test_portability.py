"""The core is written against the standard namespace only; backend names live in nnx/backend.py."""

import ast
from pathlib import Path

import numpy as np
import pytest

import nnx

PACKAGE = Path(nnx.__file__).parent
LIBRARIES = {"numpy", "cupy", "cupyx", "torch", "jax", "array_api_strict"}


def _imported_modules(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


@pytest.mark.parametrize(
    "path",
    sorted(
        [
            *PACKAGE.glob("layers/**/*.py"),
            *PACKAGE.glob("losses/*.py"),
            PACKAGE / "core" / "checks.py",
        ]
    ),
    ids=str,
)
def test_layer_and_loss_code_imports_no_array_library(path):
    assert path.is_file()
    assert not (_imported_modules(path) & LIBRARIES)


def test_only_backend_names_gpu_and_test_libraries():
    for path in PACKAGE.rglob("*.py"):
        if path.name != "backend.py":
            assert not (_imported_modules(path) & (LIBRARIES - {"numpy"})), path


def test_float32_end_to_end_no_promotion(backend):
    model = nnx.Sequential(
        nnx.Flatten(),
        nnx.Linear(6, 8, rng=0),
        nnx.LeakyReLU(),
        nnx.Dropout(0.2, rng=0),
        nnx.Linear(8, 8, rng=1),
        nnx.GELU(),
        nnx.Linear(8, 8, rng=2),
        nnx.Sigmoid(),
        nnx.Linear(8, 4, rng=3),
        nnx.Tanh(),
        nnx.Identity(),
    ).to(backend)
    x = backend.asarray(np.random.default_rng(0).standard_normal((5, 2, 3)), dtype="float32")
    f32 = backend.xp.float32
    out = model(x)
    for loss, target in [
        (nnx.CrossEntropyLoss(), backend.asarray(np.arange(5) % 4)),
        (nnx.MSELoss(), out),
        (nnx.L1Loss(), out),
        (nnx.BCEWithLogitsLoss(), backend.asarray(np.ones((5, 4)), dtype="float32")),
    ]:
        value = loss(model(x), target)
        grad_in = model.backward(loss.backward(), need_input_grad=True)
        assert value.dtype == f32 and grad_in.dtype == f32, type(loss).__name__
        assert all(p.grad.dtype == f32 for p in model.parameters())
    for layer in (nnx.Softmax(), nnx.ReLU()):
        y = layer(out)
        assert y.dtype == f32 and layer.backward(y).dtype == f32


@pytest.mark.parametrize(
    "make",
    [
        lambda ps: nnx.optim.SGD(ps, lr=0.1, momentum=0.9, nesterov=True, weight_decay=0.01),
        lambda ps: nnx.optim.Adam(ps, lr=0.1, amsgrad=True),
        lambda ps: nnx.optim.AdamW(ps, lr=0.1),
        lambda ps: nnx.optim.RMSprop(ps, lr=0.1, momentum=0.5, centered=True),
        lambda ps: nnx.optim.Adagrad(ps, lr=0.1, lr_decay=0.01),
    ],
    ids=["sgd", "adam", "adamw", "rmsprop", "adagrad"],
)
def test_float32_optimizer_steps_stay_float32(backend, make):
    model = nnx.Sequential(nnx.Linear(3, 4, rng=0), nnx.ReLU(), nnx.Linear(4, 2, rng=1)).to(backend)
    opt = make(list(model.parameters()))
    nnx.optim.ExponentialLR(opt, gamma=0.9)
    x = backend.asarray(np.ones((5, 3)), dtype="float32")
    loss = nnx.CrossEntropyLoss()
    f32 = backend.xp.float32
    for _ in range(3):
        loss(model(x), backend.asarray(np.arange(5) % 2))
        model.backward(loss.backward(), need_input_grad=False)
        opt.step()
    for p, state in zip(opt.params, opt.state, strict=True):
        assert p.value.dtype == f32
        assert all(v.dtype == f32 for k, v in state.items() if k != "step")
