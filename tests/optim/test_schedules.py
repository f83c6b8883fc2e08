import numpy as np
import pytest

import nnx
from nnx.optim import SGD, CosineAnnealingLR, ExponentialLR, InverseTimeDecay, LinearWarmup, StepLR


def _opt(lr=0.1):
    return SGD(nnx.Linear(2, 2, rng=0).parameters(), lr=lr)


def _rates(schedule, steps=25):
    rates = [schedule.optimizer.lr]
    for _ in range(steps):
        schedule.optimizer.step()
        schedule.step()
        rates.append(schedule.optimizer.lr)
    return rates


@pytest.mark.torch
@pytest.mark.parametrize(
    "make, torch_make",
    [
        (
            lambda o: StepLR(o, step_size=4, gamma=0.5),
            lambda t, o: t.optim.lr_scheduler.StepLR(o, 4, gamma=0.5),
        ),
        (
            lambda o: ExponentialLR(o, gamma=0.9),
            lambda t, o: t.optim.lr_scheduler.ExponentialLR(o, 0.9),
        ),
        (
            lambda o: CosineAnnealingLR(o, t_max=10, eta_min=0.01),
            lambda t, o: t.optim.lr_scheduler.CosineAnnealingLR(o, T_max=10, eta_min=0.01),
        ),
        (
            lambda o: LinearWarmup(o, warmup_steps=5, start_factor=0.2),
            lambda t, o: t.optim.lr_scheduler.LinearLR(o, start_factor=0.2, total_iters=5),
        ),
    ],
)
def test_matches_torch_schedulers(make, torch_make):
    torch = pytest.importorskip("torch")
    ours = _rates(make(_opt()))
    t_opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.1)
    sched = torch_make(torch, t_opt)
    theirs = [t_opt.param_groups[0]["lr"]]
    for _ in range(25):
        t_opt.step()
        sched.step()
        theirs.append(t_opt.param_groups[0]["lr"])
    np.testing.assert_allclose(ours, theirs, rtol=1e-10, atol=1e-12)


def test_closed_forms_by_hand():
    assert _rates(StepLR(_opt(), 2, 0.5), 5) == pytest.approx([0.1, 0.1, 0.05, 0.05, 0.025, 0.025])
    assert _rates(InverseTimeDecay(_opt(1.0), decay=0.5), 3) == pytest.approx(
        [1.0, 1 / 1.5, 1 / 2.0, 1 / 2.5]
    )
    assert _rates(LinearWarmup(_opt(1.0), 4, start_factor=0.0), 6) == pytest.approx(
        [0, 0.25, 0.5, 0.75, 1, 1, 1]
    )
    cosine = _rates(CosineAnnealingLR(_opt(1.0), t_max=4), 4)
    assert cosine == pytest.approx(
        [1.0, (1 + np.cos(np.pi / 4)) / 2, 0.5, (1 + np.cos(3 * np.pi / 4)) / 2, 0.0]
    )


def test_state_round_trip_continues_the_schedule():
    straight = _rates(CosineAnnealingLR(_opt(), t_max=20), 12)
    first = CosineAnnealingLR(_opt(), t_max=20)
    _rates(first, 6)
    second = CosineAnnealingLR(_opt(lr=0.7), t_max=20)  # a different base: the state restores it
    second.load_state_dict(first.state_dict())
    assert second.optimizer.lr == pytest.approx(straight[6])
    assert _rates(second, 6)[1:] == pytest.approx(straight[7:])
    with pytest.raises(ValueError, match="belongs to a 'CosineAnnealingLR'"):
        StepLR(_opt(), 2).load_state_dict(first.state_dict())


def test_bad_arguments():
    with pytest.raises(ValueError, match="StepLR: step_size must be a positive integer, got 0"):
        StepLR(_opt(), 0)
    with pytest.raises(ValueError, match="gamma must be a finite number"):
        ExponentialLR(_opt(), gamma=float("nan"))
    with pytest.raises(ValueError, match="start_factor must be"):
        LinearWarmup(_opt(), 3, start_factor=2.0)
    with pytest.raises(ValueError, match="decay must be"):
        InverseTimeDecay(_opt(), decay=-1)
    with pytest.raises(TypeError, match="expected an nnx optimizer"):
        StepLR(object(), 2)
