"""The capacity search and the verdict, against scripted pass/fail curves (no server)."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import pytest

from llmtraces.bench.search import Load, Search
from llmtraces.bench.verdict import FAIL, INVALID, PASS, UNSURE, Attainment, judge, wilson


@dataclass(frozen=True)
class Out:
    verdict: str
    uncertain: bool = False
    throughput_rps: float | None = None


def curve(capacity: float, sat: float = 10.0, *, invalid_above: float | None = None,
          dip: tuple[float, float] | None = None, unsure_near: float = 0.0,
          idle: str = PASS) -> Callable[[Load], Out]:
    """A server that passes every load <= capacity (except inside ``dip``)."""

    def measure(load: Load) -> Out:
        if load.kind == "idle":
            return Out(idle)
        if load.kind == "saturation":
            return Out(FAIL, throughput_rps=sat)
        if invalid_above is not None and load.x > invalid_above:
            return Out(INVALID)
        if unsure_near and abs(load.x / capacity - 1) < unsure_near and not load.longer:
            return Out(UNSURE)
        passing = load.x <= capacity
        if dip is not None and dip[0] <= load.x <= dip[1]:
            passing = False
        return Out(PASS if passing else FAIL)

    return measure


def test_wilson_matches_the_closed_form() -> None:
    lo, hi = wilson(90, 100)
    # Wilson (1927) at z = 1.645, by hand: centre 0.91353 / 1.02706, half-width 0.049823
    assert lo == pytest.approx(0.83964, abs=1e-4) and hi == pytest.approx(0.93928, abs=1e-4)
    assert wilson(0, 0) == (0.0, 1.0)
    assert wilson(10, 10)[1] == 1.0 and wilson(0, 10)[0] == 0.0
    with pytest.raises(ValueError):
        wilson(3, 2)


def test_verdicts() -> None:
    assert judge(Attainment.of(300, 300), 0.9) == (PASS, False)
    assert judge(Attainment.of(200, 300), 0.9) == (FAIL, False)
    assert judge(Attainment.of(27, 30), 0.9) == (UNSURE, False)
    assert judge(Attainment.of(27, 30), 0.9, final=True) == (PASS, True)
    assert judge(Attainment.of(26, 30), 0.9, final=True) == (FAIL, True)
    assert judge(Attainment.of(300, 300), 0.9, kept_up=False) == (INVALID, False)
    assert judge(Attainment.of(27, 30), 0.9, kept_up=False) == (INVALID, False)
    # a late client sent a gentler load than scheduled: a FAIL under it still stands
    assert judge(Attainment.of(10, 300), 0.9, kept_up=False) == (FAIL, False)
    assert judge(Attainment.of(0, 0), 0.9, final=True) == (FAIL, True)


def test_monotonic_curve_converges_within_precision() -> None:
    res = Search(curve(7.3), precision=0.05).run()
    assert res.status == "converged" and res.converged and res.confirmed and res.monotonic
    assert res.capacity is not None and res.first_failing is not None
    assert res.capacity <= 7.3 < res.first_failing
    assert res.first_failing / res.capacity <= 1.05
    assert res.x_sat == 10.0
    kinds = [s.load.kind for s in res.history]
    assert kinds[:3] == ["idle", "saturation", "bracket"] and kinds[-1] == "confirm"
    assert len([k for k in kinds if k not in ("idle", "saturation")]) <= 12
    # the same outcomes give the same history (resume replays it)
    again = Search(curve(7.3), precision=0.05).run()
    assert [s.load for s in again.history] == [s.load for s in res.history]


def test_quick_precision_takes_fewer_points() -> None:
    fine = Search(curve(3.1), precision=0.05).run()
    quick = Search(curve(3.1), precision=0.10).run()
    assert quick.first_failing is not None and quick.capacity is not None
    assert quick.first_failing / quick.capacity <= 1.10
    assert len(quick.history) < len(fine.history)


def test_concurrency_search_is_exact() -> None:
    res = Search(curve(6), variable="concurrency").run()
    assert (res.capacity, res.first_failing, res.status) == (6, 7, "converged")
    assert all(float(s.load.x).is_integer() for s in res.history)


def test_a_dip_below_capacity_is_flagged_non_monotonic() -> None:
    # passes up to 9 except in [4, 6]: 5 (the bracket start) fails, 2.5 passes; the bisection
    # then stays below 4, and the confirmation of a load inside the dip is not needed; but a
    # confirmation that fails where a point passed before shows the curve is not a clean step
    calls: list[float] = []

    def dip(load: Load) -> Out:
        out = curve(9.0, dip=(4.0, 6.0))(load)
        if load.kind == "confirm":
            calls.append(load.x)
            if len(calls) == 1:
                return Out(FAIL)
        return out

    res = Search(dip, precision=0.05).run()
    assert not res.monotonic
    assert res.capacity is not None and res.capacity < 4.0
    assert Search(curve(9.0, dip=(4.0, 6.0))).run().monotonic   # nothing seen above a FAIL


def test_unsure_points_are_measured_longer() -> None:
    res = Search(curve(5.0, unsure_near=0.2), precision=0.05).run()
    longer = [s for s in res.history if s.load.longer]
    assert longer, "an unsure point was not re-measured"
    for s in longer:
        before = res.history[res.history.index(s) - 1]
        assert before.outcome.verdict == UNSURE and before.load.x == s.load.x
    assert res.capacity is not None and res.capacity <= 5.0


def test_all_fail_is_unattainable_at_idle() -> None:
    res = Search(curve(5.0, idle=FAIL)).run()
    assert res.status == "unattainable_at_idle" and res.capacity == 0.0
    assert len(res.history) == 1


def test_everything_below_the_floor_fails() -> None:
    res = Search(curve(0.01, sat=10.0)).run()   # X_sat / 64 = 0.156 still fails
    assert res.status == "below_floor" and res.capacity == 0.0
    assert res.first_failing == pytest.approx(10 / 64)


def test_a_probe_that_underestimated_does_not_cap_the_capacity() -> None:
    """A pass at 1.5 X_sat means the probe was low: the bracket goes on doubling."""
    res = Search(curve(40.0, sat=10.0), precision=0.10).run()
    assert res.status == "converged" and 40 / 1.1 <= res.capacity <= 40 < res.first_failing


def test_all_pass_reports_a_lower_bound() -> None:
    res = Search(curve(1e9, sat=10.0)).run()
    assert res.status == "at_least" and res.capacity == pytest.approx(80.0)
    assert res.first_failing is None and not res.converged


def test_saturation_probe_concurrency_follows_the_servers_slots() -> None:
    """4 x the slots the server says it has; 256 when it says nothing; the user's wins."""
    def probe_x(search: Search) -> float:
        search.run()
        return next(s.load.x for s in search.result.history if s.load.kind == "saturation")

    assert probe_x(Search(curve(8.0), slots=lambda: 3)) == 12
    assert probe_x(Search(curve(8.0), slots=lambda: None)) == 256
    assert probe_x(Search(curve(8.0))) == 256
    assert probe_x(Search(curve(8.0), slots=lambda: 3, sat_concurrency=5)) == 5


def test_an_unsure_saturation_probe_is_not_measured_again() -> None:
    """Only the probe's throughput is used, never its verdict: no longer re-measure."""
    inner = curve(8.0)
    seen: list[Load] = []

    def measure(load: Load) -> Out:
        seen.append(load)
        out = inner(load)
        return Out(UNSURE, throughput_rps=10.0) if load.kind == "saturation" else out

    Search(measure).run()
    assert [ld.longer for ld in seen if ld.kind == "saturation"] == [False]


def test_invalid_point_stops_the_search() -> None:
    res = Search(curve(50.0, sat=10.0, invalid_above=6.0)).run()
    assert res.status == "invalid" and "could not keep up" in (res.reason or "")
    assert res.history[-1].outcome.verdict == INVALID


def test_budget_is_respected() -> None:
    res = Search(curve(7.3), precision=0.001, max_points=5).run()
    assert res.status == "budget" and not res.converged
    assert len([s for s in res.history if s.load.kind not in ("idle", "saturation")]) == 5


def test_time_budget_stops_before_a_point_that_would_end_past_it() -> None:
    now = [0.0]

    def timed(length: float, base: Callable[[Load], Out]) -> Callable[[Load], Out]:
        def measure(load: Load) -> Out:
            now[0] += length * (2 if load.longer else 1)   # each point takes `length` s
            return base(load)
        return measure

    # 10 s points, 45 s budget: idle, saturation, 2 bracket points (40 s); a fifth would end at 50
    res = Search(timed(10.0, curve(7.3)), precision=0.001, time_budget_s=45.0,
                 clock=lambda: now[0]).run()
    assert res.status == "time" and not res.converged and len(res.history) == 4
    assert now[0] == 40.0 and "45 s" in (res.reason or "")
    assert res.capacity is not None and res.first_failing is not None   # the bracket is kept
    # an UNSURE point's longer re-measure counts twice: 3 points (30 s) fit in 45, its 20 s not
    now[0] = 0.0
    res = Search(timed(10.0, curve(5.0, unsure_near=0.5)), time_budget_s=45.0,
                 clock=lambda: now[0]).run()
    assert res.status == "time" and res.history[-1].outcome.verdict == UNSURE
    assert now[0] <= 45.0
    # a budget that fits the whole search changes nothing
    now[0] = 0.0
    res = Search(timed(1.0, curve(7.3)), time_budget_s=1000.0, clock=lambda: now[0]).run()
    assert res.status == "converged"
    with pytest.raises(ValueError, match="time_budget_s"):
        Search(curve(1.0), time_budget_s=0.0)


def test_failed_confirmation_moves_down() -> None:
    confirms_seen: list[float] = []

    def flaky(load: Load) -> Out:
        base = curve(4.0)(load)
        if load.kind == "confirm":
            confirms_seen.append(load.x)
            if len(confirms_seen) == 1:
                return Out(FAIL)   # the first confirmation fails
        return base

    res = Search(flaky, precision=0.05).run()
    confirms = [s for s in res.history if s.load.kind == "confirm"]
    assert len(confirms) == 2 and confirms[0].outcome.verdict == FAIL
    assert res.capacity is not None and res.capacity < confirms[0].load.x
    assert res.status == "converged" and not res.monotonic


def test_load_keys_name_folders() -> None:
    assert Load("rps", math.sqrt(10), "refine").key == "rps=3.16228-r0"
    assert Load("concurrency", 12, "confirm", repeat=1).key == "conc=12-r1"
    assert Load("rps", 256, "saturation", longer=True).key == "probe-saturation-r0-long"
    assert Load("rps", 1, "idle").closed and not Load("rps", 3, "refine").closed
