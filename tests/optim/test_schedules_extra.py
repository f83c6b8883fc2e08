"""ReduceLROnPlateau, OneCycleLR and CosineAnnealingWarmRestarts: PyTorch's schedulers step for
step, and exact continuation from a saved state."""

import math

import numpy as np
import pytest

import nnx
from nnx.optim import (
    SGD,
    Adagrad,
    Adam,
    CosineAnnealingWarmRestarts,
    OneCycleLR,
    ReduceLROnPlateau,
)

# a metric that improves, stalls, wobbles, improves a little (below threshold) and jumps
METRIC = [5, 4, 4, 4.5, 4, 3.9996, 4, 4, 4, 4, 3, 3, 3.5, 3, 3, 3, 3, 2, 2, 2, 2, 2, 2, 1.5, 1.5]
METRIC += METRIC[::-1]


def _params():
    return nnx.Linear(2, 2, rng=0).parameters()


def _ours(schedule, steps, metric=None):
    opt = schedule.optimizer
    rates, moms = [opt.lr], [_momentum(opt)]
    for i in range(steps):
        schedule.step() if metric is None else schedule.step(metric[i])
        rates.append(opt.lr)
        moms.append(_momentum(opt))
    return rates, moms


def _momentum(opt):
    return opt.betas[0] if hasattr(opt, "betas") else getattr(opt, "momentum", None)


def _theirs(torch, t_opt, sched, steps, metric=None):
    group = t_opt.param_groups[0]

    def mom():
        return group["betas"][0] if "betas" in group else group.get("momentum")

    rates, moms = [group["lr"]], [mom()]
    for i in range(steps):
        t_opt.step()
        sched.step() if metric is None else sched.step(metric[i])
        rates.append(group["lr"])
        moms.append(mom())
    return rates, moms


def _torch_opt(torch, kind, lr):
    p = [torch.zeros(1, requires_grad=True)]
    if kind == "adam":
        return torch.optim.Adam(p, lr=lr)
    if kind == "adagrad":
        return torch.optim.Adagrad(p, lr=lr)
    return torch.optim.SGD(p, lr=lr, momentum=0.9)


def _our_opt(kind, lr):
    if kind == "adam":
        return Adam(_params(), lr=lr)
    if kind == "adagrad":
        return Adagrad(_params(), lr=lr)
    return SGD(_params(), lr=lr, momentum=0.9)


PLATEAU = [
    {},
    {"patience": 2},
    {"patience": 1, "cooldown": 2, "factor": 0.5, "min_lr": 0.004},
    {"patience": 0, "threshold_mode": "abs", "threshold": 0.1},
    {"mode": "max", "patience": 1, "factor": 0.3},
    {"mode": "max", "patience": 2, "threshold_mode": "abs", "threshold": 0.2, "cooldown": 1},
    {"patience": 0, "factor": 0.5, "min_lr": 0.0999, "eps": 1e-3},  # a change under eps: kept
]
ONECYCLE = [
    ({"total_steps": 40}, "sgd"),
    ({"total_steps": 37, "anneal_strategy": "linear", "pct_start": 0.25}, "adam"),
    ({"epochs": 4, "steps_per_epoch": 9, "three_phase": True, "div_factor": 10.0}, "sgd"),
    ({"total_steps": 50, "final_div_factor": 100.0, "base_momentum": 0.8}, "adam"),
    ({"total_steps": 30, "cycle_momentum": False, "three_phase": True}, "adagrad"),
    ({"total_steps": 10, "pct_start": 0.05}, "sgd"),  # a first phase shorter than one step
]
RESTARTS = [{"t_0": 5}, {"t_0": 3, "t_mult": 2, "eta_min": 0.01}, {"t_0": 1, "t_mult": 3}]


@pytest.mark.torch
@pytest.mark.parametrize("options", PLATEAU)
def test_plateau_matches_torch(options):
    torch = pytest.importorskip("torch")
    ours = _ours(ReduceLROnPlateau(SGD(_params(), lr=0.1), **options), len(METRIC), METRIC)
    t_opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.1)
    sched = torch.optim.lr_scheduler.ReduceLROnPlateau(t_opt, **options)
    assert ours[0] == _theirs(torch, t_opt, sched, len(METRIC), METRIC)[0]


@pytest.mark.torch
@pytest.mark.parametrize("options, kind", ONECYCLE)
def test_one_cycle_matches_torch(options, kind):
    torch = pytest.importorskip("torch")
    total = options.get("total_steps") or options["epochs"] * options["steps_per_epoch"]
    schedule = OneCycleLR(_our_opt(kind, 0.5), max_lr=0.4, **options)
    ours = _ours(schedule, total - 1)
    t_opt = _torch_opt(torch, kind, 0.5)
    sched = torch.optim.lr_scheduler.OneCycleLR(t_opt, max_lr=0.4, **options)
    assert ours == _theirs(torch, t_opt, sched, total - 1)  # learning rates and momenta, exactly
    last = schedule.optimizer.lr
    schedule.step()  # the step after the last batch: the final rate stays (torch extrapolates)
    assert schedule.optimizer.lr == last


@pytest.mark.torch
@pytest.mark.parametrize("options", RESTARTS)
def test_warm_restarts_match_torch(options):
    torch = pytest.importorskip("torch")
    ours = _ours(CosineAnnealingWarmRestarts(SGD(_params(), lr=0.1), **options), 40)
    t_opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.1)
    torch_options = {{"t_0": "T_0", "t_mult": "T_mult"}.get(k, k): v for k, v in options.items()}
    sched = torch.optim.lr_scheduler.CosineAnnealingWarmRestarts(t_opt, **torch_options)
    assert ours[0] == _theirs(torch, t_opt, sched, 40)[0]


def test_warm_restarts_by_hand():
    rates, _ = _ours(CosineAnnealingWarmRestarts(SGD(_params(), lr=1.0), t_0=2, t_mult=2), 8)
    half = (1 + math.cos(math.pi / 2)) / 2
    quarter = [(1 + math.cos(math.pi * k / 4)) / 2 for k in range(4)]
    assert rates == pytest.approx(
        [1.0, half, *quarter, 1.0, (1 + math.cos(math.pi / 8)) / 2, rates[-1]]
    )


@pytest.mark.parametrize(
    "make, metric",
    [
        (lambda o: ReduceLROnPlateau(o, patience=1, cooldown=1, factor=0.5), METRIC),
        (lambda o: ReduceLROnPlateau(o, mode="max", patience=2), METRIC),
        (lambda o: OneCycleLR(o, total_steps=len(METRIC), three_phase=True), None),
        (lambda o: CosineAnnealingWarmRestarts(o, t_0=3, t_mult=2), None),
    ],
)
@pytest.mark.parametrize("at", [0, 7, 20])
def test_saved_mid_schedule_continues_exactly(tmp_path, make, metric, at):
    straight = _ours(make(SGD(_params(), lr=0.1, momentum=0.9)), len(METRIC), metric)
    first = make(SGD(_params(), lr=0.1, momentum=0.9))
    _ours(first, at, metric)
    model = nnx.Linear(2, 2, rng=0)
    path = nnx.save_checkpoint(tmp_path / "c.npz", model, first.optimizer, first)
    fresh = make(SGD(model.parameters(), lr=0.3))  # another rate and no momentum: all restored
    nnx.load_checkpoint(path, model, fresh.optimizer, fresh)
    rest = _ours(fresh, len(METRIC) - at, None if metric is None else metric[at:])
    assert rest[0] == straight[0][at:] and rest[1] == straight[1][at:]


def test_plateau_state_is_checked():
    first = ReduceLROnPlateau(SGD(_params(), lr=0.1))
    first.step(1.0)
    state = first.state_dict()
    assert state["best"] == 1.0 and state["num_bad_epochs"] == 0
    with pytest.raises(ValueError, match="mode 'min', not 'max'"):
        ReduceLROnPlateau(SGD(_params(), lr=0.1), mode="max").load_state_dict(state)
    for key, bad in [("best", "x"), ("num_bad_epochs", -1), ("cooldown_counter", 1.5)]:
        with pytest.raises(ValueError, match=key):
            first.load_state_dict({**state, key: bad})
    with pytest.raises(ValueError, match="lr must be a finite number"):
        first.load_state_dict({**state, "lr": -1.0})
    assert ReduceLROnPlateau(SGD(_params(), lr=0.1)).state_dict()["best"] is None


def test_bad_arguments_and_steps():
    opt = SGD(_params(), lr=0.1)
    with pytest.raises(ValueError, match="give total_steps, or epochs and steps_per_epoch"):
        OneCycleLR(opt, epochs=3)
    with pytest.raises(ValueError, match="anneal_strategy must be 'cos' or 'linear'"):
        OneCycleLR(opt, total_steps=10, anneal_strategy="exp")
    with pytest.raises(ValueError, match="cycle_momentum=True needs an optimizer with momentum"):
        OneCycleLR(Adagrad(_params(), lr=0.1), total_steps=10)
    with pytest.raises(ValueError, match="leaves a phase of no steps"):
        OneCycleLR(opt, total_steps=10, pct_start=0.1)
    cycle = OneCycleLR(SGD(_params(), lr=0.1), total_steps=3)
    _ours(cycle, 3)
    with pytest.raises(ValueError, match="stepped 4 times, past total_steps=3"):
        cycle.step()
    assert cycle.last_step == 3
    with pytest.raises(ValueError, match="a cycle of 3 steps, this schedule's has 4"):
        OneCycleLR(SGD(_params(), lr=0.1), total_steps=4).load_state_dict(cycle.state_dict())
    with pytest.raises(ValueError, match="t_mult must be a positive integer"):
        CosineAnnealingWarmRestarts(opt, t_0=2, t_mult=0)
    with pytest.raises(ValueError, match="factor must be a finite number in"):
        ReduceLROnPlateau(opt, factor=1.0)
    with pytest.raises(ValueError, match="mode must be 'min' or 'max'"):
        ReduceLROnPlateau(opt, mode="up")
    plateau = ReduceLROnPlateau(opt)
    with pytest.raises(TypeError, match="needs the value of the monitored metric 'val_loss'"):
        plateau.step()
    with pytest.raises(ValueError, match="val_loss is nan, not a finite number"):
        plateau.step(float("nan"))


def test_rebase_moves_the_plateau_rate_and_scales_others():
    plateau = ReduceLROnPlateau(SGD(_params(), lr=0.1), patience=0)
    plateau.step(1.0)
    plateau.step(2.0)
    assert plateau.optimizer.lr == pytest.approx(0.01)
    plateau.rebase(0.5)
    assert plateau.optimizer.lr == 0.5
    restarts = CosineAnnealingWarmRestarts(SGD(_params(), lr=0.1), t_0=4)
    _ours(restarts, 2)
    restarts.rebase(0.2)
    assert restarts.optimizer.lr == pytest.approx(0.1)  # half way down from the new base
    np.testing.assert_equal(restarts.base_lr, 0.2)
