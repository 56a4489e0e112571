"""Tests for rela_hf.switch: the adaptive and static ReLA -> SSL switch rules, against an
independent transcription of the official rule."""

from __future__ import annotations

import io
import math

import pytest
import torch

from rela_hf.switch import AdaptiveSwitch, StaticSwitch, build_switch


def reference_switch_steps(losses: list[float]) -> int | None:
    """Independent transcription of the spec's adaptive rule; the 1-based switching step."""
    loss_fast, loss_slow = 1.0, 2.0
    for step, cur in enumerate(losses, start=1):
        rho = math.exp(-max(loss_slow - loss_fast, 0))  # values before this step's update
        loss_fast = 0.999 * loss_fast + 0.001 * cur
        loss_slow = 0.99 * loss_slow + 0.01 * loss_fast
        if rho >= 0.995:
            return step
    return None


def run_switch(switch, losses):
    """Feed losses one optimizer step at a time; the 1-based step where update returned True."""
    hits = [step for step, loss in enumerate(losses, start=1) if switch.update(loss)]
    assert len(hits) <= 1, "update() must return True at most once"
    return hits[0] if hits else None


def test_adaptive_switch_initial_state():
    switch = AdaptiveSwitch()
    assert (switch.fast, switch.slow, switch.rho) == (1.0, 2.0, 0.0)
    assert (switch.switched, switch.switch_step, switch.steps, switch.phase) == (
        False,
        None,
        0,
        "rela",
    )


def test_adaptive_switch_minimum_step_with_constant_loss():
    """With a constant loss 1.0 the fast average stays at 1 and slow - 1 = 0.99**n.

    The pre-update rho of step n is exp(-0.99**(n - 1)) >= 0.995 first at n = 528.
    """
    closed_form = 1 + math.ceil(math.log(-math.log(0.995)) / math.log(0.99))
    assert closed_form == 528
    assert reference_switch_steps([1.0] * 1000) == 528
    switch = AdaptiveSwitch()
    assert run_switch(switch, [1.0] * 1000) == 528
    assert switch.switch_step == 528 and switch.steps == 528 and switch.phase == "ssl"
    assert switch.rho >= 0.995


def test_adaptive_switch_528_is_the_minimum_only_for_losses_up_to_one():
    """A loss at or below 1 (predictions no worse than orthogonal) never switches before 528;
    a loss above 1 raises the fast average above the slow one and switches earlier."""
    for loss in (0.0, 0.25, 0.5, 0.75, 0.99, 1.0):
        assert run_switch(AdaptiveSwitch(), [loss] * 5000) >= 528, loss
    assert run_switch(AdaptiveSwitch(), [2.0] * 1000) == reference_switch_steps([2.0] * 1000) == 251


@pytest.mark.parametrize(
    "losses",
    [
        [1.0] * 1000,
        [2.0] * 1000,  # the largest possible ReLA loss
        [0.0] * 3500,
        [1.5 * math.exp(-k / 300) + 0.2 for k in range(4000)],  # a decaying training curve
        [0.8 + 0.1 * math.sin(k / 7) for k in range(4000)],  # a noisy plateau
    ],
    ids=["const1", "const2", "const0", "decay", "noisy"],
)
def test_adaptive_switch_matches_independent_transcription(losses):
    expected = reference_switch_steps(losses)
    assert expected is not None
    assert run_switch(AdaptiveSwitch(), losses) == expected


def test_adaptive_switch_tracks_the_averages_exactly():
    switch = AdaptiveSwitch()
    switch.update(0.5)
    assert switch.rho == pytest.approx(math.exp(-1.0))
    assert switch.fast == pytest.approx(0.999 + 0.0005)
    assert switch.slow == pytest.approx(0.99 * 2.0 + 0.01 * switch.fast)


def test_adaptive_switch_is_a_no_op_after_switching():
    switch = AdaptiveSwitch()
    run_switch(switch, [1.0] * 600)
    state = switch.state_dict()
    assert switch.update(0.1) is False
    assert switch.state_dict() == state


def test_adaptive_switch_state_dict_round_trip_mid_way():
    losses = [1.5 * math.exp(-k / 300) + 0.2 for k in range(4000)]
    uninterrupted = AdaptiveSwitch()
    expected = run_switch(uninterrupted, losses)

    first = AdaptiveSwitch()
    assert run_switch(first, losses[:400]) is None
    buffer = io.BytesIO()
    torch.save(first.state_dict(), buffer)  # as an Accelerate custom checkpoint would
    buffer.seek(0)
    resumed = AdaptiveSwitch()
    resumed.load_state_dict(torch.load(buffer, weights_only=True))
    assert resumed.state_dict() == first.state_dict()
    assert run_switch(resumed, losses[400:]) == expected - 400
    assert resumed.state_dict() == uninterrupted.state_dict()


def test_adaptive_switch_accepts_tensor_loss_and_rejects_non_finite():
    switch = AdaptiveSwitch()
    switch.update(torch.tensor(0.7))
    assert switch.steps == 1
    with pytest.raises(ValueError, match="step 2 is nan"):
        switch.update(float("nan"))
    assert switch.steps == 1  # nothing recorded


def test_switch_state_of_the_wrong_kind_is_refused():
    with pytest.raises(ValueError, match="same switch rule"):
        AdaptiveSwitch().load_state_dict(StaticSwitch(0.5, 10).state_dict())
    with pytest.raises(ValueError, match="missing"):
        AdaptiveSwitch().load_state_dict({"kind": "adaptive", "fast": 1.0})


@pytest.mark.parametrize(
    ("fraction", "total", "expected"),
    [(0.3, 10, 3), (0.29, 100, 29), (0.5, 7, 3), (1.0, 5, 5), (0.01, 50, None)],
)
def test_static_switch_step(fraction, total, expected):
    switch = StaticSwitch(fraction, total)
    hit = run_switch(switch, [1.0] * total)
    if expected is None:  # floor(0.5) = 0 ReLA steps: BYOL from the start
        assert hit is None and switch.phase == "ssl" and switch.switch_step == 0
    else:
        assert hit == expected and switch.switch_step == expected


def test_static_switch_zero_fraction_starts_in_byol():
    switch = StaticSwitch(0.0, 100)
    assert switch.phase == "ssl" and switch.update(1.0) is False


def test_static_switch_round_trip_and_budget_check():
    switch = StaticSwitch(0.5, 20)
    run_switch(switch, [1.0] * 4)
    resumed = StaticSwitch(0.5, 20)
    resumed.load_state_dict(switch.state_dict())
    assert run_switch(resumed, [1.0] * 20) == 6  # steps 5..10 remain; the 6th of them switches
    with pytest.raises(ValueError, match="same budget"):
        StaticSwitch(0.5, 40).load_state_dict(switch.state_dict())


@pytest.mark.parametrize(("fraction", "total"), [(-0.1, 10), (1.1, 10), (0.5, 0)])
def test_static_switch_rejects_bad_arguments(fraction, total):
    with pytest.raises(ValueError):
        StaticSwitch(fraction, total)


def test_build_switch():
    assert isinstance(build_switch("adaptive", fraction=None, total_steps=10), AdaptiveSwitch)
    static = build_switch("static", fraction=0.25, total_steps=100)
    assert isinstance(static, StaticSwitch) and static.rela_steps == 25
    with pytest.warns(UserWarning, match="ignored"):
        build_switch("adaptive", fraction=0.3, total_steps=10)
    with pytest.raises(ValueError, match="needs a fraction"):
        build_switch("static", fraction=None, total_steps=10)
    with pytest.raises(ValueError, match="'adaptive' or 'static'"):
        build_switch("lambda", fraction=None, total_steps=10)
