"""The training step and its wrappers: every compatible pair of accumulation, mixed precision and
jit trains like the plain step (MPI pairs: tests/distributed), and make_step refuses the one
combination that cannot work in one line."""

from __future__ import annotations

import ast
from pathlib import Path

import numpy as np
import pytest

import nnx
from nnx.optim import SGD
from nnx.training.accumulate import Accumulate
from nnx.training.compile import Compiled
from nnx.training.make_step import make_step
from nnx.training.precision import LossScaler, MixedPrecision
from nnx.training.step import EagerStep

N = 41  # batches of 4 (8): the last one holds 1 sample, a group of its own


def _data():
    rng = np.random.default_rng(3)
    x = rng.standard_normal((N, 5)).astype(np.float32)
    y = ((x[:, 0] + x[:, 1] * x[:, 2] > 0).astype(np.int64) + (x[:, 3] > 1)).astype(np.int32)
    return x, y


def _model(device="cpu", l2=0.01):
    init = np.random.default_rng(0)
    return nnx.Sequential(
        nnx.Linear(5, 12, rng=init, weight_l2=l2),  # its gradient must count once per step
        nnx.ReLU(),
        nnx.Linear(12, 3, rng=init),
    ).to(device, dtype="float32")


def _fit(device="cpu", batch_size=8, epochs=3, l2=None, **options):
    """Parameters and history of a short run with the Trainer's ``options``. Mixed-precision
    runs start at a loss scale whose float16 gradients do not overflow (a skipped step would
    make runs differ by far more than rounding), and without the L2 penalty, whose gradient the
    16-bit backward adds unscaled."""
    mixed = options.get("precision", "float32") != "float32"
    model = _model(device, l2=(0.0 if mixed else 0.01) if l2 is None else l2)
    trainer = nnx.Trainer(
        model,
        nnx.CrossEntropyLoss(),
        SGD(model.parameters(), lr=0.1, momentum=0.9),  # Adam would magnify rounding
        device=device,
        progress=False,
        seed=3,
        **options,
    )
    if mixed:
        trainer.mixed_precision.scaler.scale = 2.0**6
    trainer.fit(_data(), epochs=epochs, batch_size=batch_size)
    if mixed:
        assert trainer.mixed_precision.scaler.skipped_steps == 0
    return model.state_dict(), [r["train_loss"] for r in trainer.history], trainer


def _assert_same(got, want, atol):
    (params, losses, _), (ref_params, ref_losses, _) = got, want
    np.testing.assert_allclose(losses, ref_losses, rtol=0, atol=atol)
    for name, value in ref_params.items():
        np.testing.assert_allclose(params[name], value, rtol=0, atol=atol, err_msg=name)


def _jax():
    ok, why = nnx.backend.backend_available("jax")
    if not ok:
        pytest.skip(why)


def test_accumulation_x_mixed_precision_equals_the_larger_batch():
    # batch 4 accumulated over 2 groups the samples as batch 8 does; both in float16
    want = _fit(precision="float16")
    got = _fit(batch_size=4, accumulate=2, precision="float16")
    assert got[2].step == want[2].step == 3 * 6
    _assert_same(got, want, atol=2e-3)  # float16 rounding of the per-batch loss gradients
    plain = _fit(l2=0.0)  # and the float32 eager step, to float16 rounding
    _assert_same(got, plain, atol=2e-2)
    assert got[2].mixed_precision.scaler.state_dict() == want[2].mixed_precision.scaler.state_dict()


def test_accumulation_x_jit_equals_the_eager_larger_batch():
    _jax()
    want = _fit("jax")
    got = _fit("jax", batch_size=4, accumulate=2, jit=True)
    assert got[2].step == want[2].step
    _assert_same(got, want, atol=1e-5)
    compiled = got[2].train_step.wrapper(Compiled)
    # compute_grads: 4 rows without and with held gradients, 1 row; apply: 2 and 1 batches;
    # each once more when the optimizer's momentum buffers appear at the first step
    assert compiled.traces <= 8


def test_jit_x_mixed_precision_equals_the_eager_mixed_step():
    _jax()
    # bfloat16 keeps 8 bits of mantissa: XLA's fusion rounds differently from the eager ops,
    # and momentum carries that on, so its runs are compared over one epoch
    for precision, epochs, atol in (("float16", 3, 2e-3), ("bfloat16", 1, 1e-2)):
        want = _fit("jax", precision=precision, epochs=epochs)
        got = _fit("jax", precision=precision, jit=True, epochs=epochs)
        _assert_same(got, want, atol=atol)
        scalers = [r[2].mixed_precision.scaler.state_dict() for r in (got, want)]
        assert scalers[0] == scalers[1]
    triple = _fit("jax", batch_size=4, accumulate=2, precision="float16", jit=True)
    _assert_same(triple, _fit("jax", precision="float16"), atol=2e-3)


def test_a_compiled_mixed_step_skips_overflow_and_keeps_the_masters():
    _jax()
    x, y = (nnx.get_backend("jax").asarray(a) for a in _data())
    model = _model("jax")
    opt = SGD(model.parameters(), lr=0.1, momentum=0.9)
    scaler = LossScaler(init_scale=2.0**40)  # float16 gradients overflow at first
    step = MixedPrecision(Compiled(model, nnx.CrossEntropyLoss(), opt), "float16", scaler)
    before = model.state_dict()
    step(x, y)
    assert step.last_step_skipped and scaler.scale == 2.0**39
    for name, value in model.state_dict().items():
        np.testing.assert_array_equal(value, before[name], err_msg=name)
    while step.last_step_skipped:
        step(x, y)
    assert opt.state[0]["step"] == 1
    assert all(nnx.core.checks.dtype_name(p.value.dtype) == "float32" for p in model.parameters())


def test_wrappers_compose_by_hand_like_the_trainer_builds_them():
    x, y = _data()
    runs = []
    for k in (1, 2):
        model = _model()
        inner = MixedPrecision(
            EagerStep(model, nnx.CrossEntropyLoss(), SGD(model.parameters(), lr=0.1)), "float16"
        )
        step = Accumulate(inner, 2) if k == 2 else inner
        batches = [(x[:4], y[:4]), (x[4:8], y[4:8])] if k == 2 else [(x[:8], y[:8])]
        step.begin_epoch([len(b[0]) for b in batches])
        for xb, yb in batches:
            step(xb, yb)
        assert step.stepped
        runs.append(model.state_dict())
    for name, value in runs[0].items():
        np.testing.assert_allclose(runs[1][name], value, rtol=0, atol=1e-4, err_msg=name)


def test_make_step_composes_and_refuses_jit_with_mpi_in_one_line():
    model = _model()
    opt = SGD(model.parameters())
    cpu = nnx.get_backend("cpu")
    step = make_step(model, nnx.MSELoss(), opt, cpu, accumulate=3, precision="float16")
    assert isinstance(step, Accumulate) and isinstance(step.inner, MixedPrecision)
    assert isinstance(step.inner.inner, EagerStep) and step.wrapper(MixedPrecision) is step.inner
    with pytest.raises(ValueError, match="jit=True cannot be combined with distributed") as err:
        make_step(model, nnx.MSELoss(), opt, cpu, jit=True, distributed=True)
    assert "\n" not in str(err.value)
    with pytest.raises(ValueError, match="needs a JAX backend"):
        nnx.Trainer(model, nnx.MSELoss(), opt, device="cpu", jit=True, progress=False)


def test_batch_schedules_step_once_per_optimizer_step_under_mixed_precision():
    model = _model()
    opt = SGD(model.parameters(), lr=0.1)
    schedule = nnx.optim.schedules.ExponentialLR(opt, gamma=0.5)
    trainer = nnx.Trainer(
        model,
        nnx.CrossEntropyLoss(),
        opt,
        progress=False,
        precision="float16",
        accumulate=2,
        schedule=schedule,
        schedule_interval="batch",
    )
    trainer.fit(_data(), epochs=1, batch_size=8)  # 6 batches: 3 optimizer steps
    assert trainer.step == 3 and opt.lr == pytest.approx(0.1 * 0.5**3)


def test_the_trainer_names_no_concrete_callback_or_layer():
    tree = ast.parse(Path(nnx.training.trainer.__file__).read_text())
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.Name):
            names.add(node.id)
        elif isinstance(node, ast.Attribute):
            names.add(node.attr)
    concrete = {"Dropout", "SyncBatchNorm", "ProgressBar", "LRScheduler", "ModelCheckpoint"}
    assert not names & concrete
    assert not {"last_good", "set_rows", "reseed_dropout"} & names  # generic hooks instead


@pytest.mark.parametrize("precision", [None, "float16"])
def test_an_empty_batch_gives_a_zero_loss_in_the_parameters_dtype(precision):
    """A process's empty share of a short last batch: loss 0 in the parameters' dtype (the
    float32 masters under mixed precision), no prediction, no gradient."""
    model = _model()
    step = EagerStep(model, nnx.CrossEntropyLoss(), SGD(model.parameters(), lr=0.1))
    if precision is not None:
        step = MixedPrecision(step, precision)
    x, y = _data()
    loss, pred = step.compute_grads(x[:0], y[:0])
    assert pred is None and loss.shape == () and loss.dtype == np.float32 and float(loss) == 0
    assert all(p.grad is None for p in model.parameters())
    loss, pred = step.compute_grads(x[:4], y[:4])  # a batch with rows: the step itself
    assert pred.shape == (4, 3) and float(loss) > 0
