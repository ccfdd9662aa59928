"""serve-sim's engine model on its own, driven by a fake clock: slots, the FIFO queue, KV
reservations, refusals, iteration times, chunked prefill, prefix reuse, cancellation, fault
draws. No sockets and no real sleeps, so every time and count is exact."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from llmtraces.serve._simconfig import SimConfig
from llmtraces.serve.sim_engine import Engine, FaultDraw, Seq, make_seq


class FakeClock:
    """Virtual time: ``sleep`` lets the other tasks run at the current time, then moves the
    clock on at once."""

    def __init__(self) -> None:
        self.now = 0.0
        self.slept: list[float] = []

    def time(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(0)
        self.now += seconds
        self.slept.append(seconds)


def seq(cfg: SimConfig, rid: str, prompt: int, max_tokens: int,
        units: list[int] | None = None) -> Seq:
    """A sequence of ``prompt`` tokens (token ids 0.. by default) that decodes ``max_tokens``."""
    out, _ = make_seq(cfg, rid, list(range(prompt)) if units is None else units, prompt,
                      max_tokens, min_tokens=0, ignore_eos=True, chat=False, arrival=0.0)
    return out


def drain(engine: Engine) -> list[float]:
    """Run iterations until nothing is running; the duration of each."""
    times = []
    while (it := engine.plan()) is not None:
        times.append(it.seconds)
        engine.finish(it)
    return times


def test_slots_then_fifo_queue_then_refusal():
    cfg = SimConfig(batch_slots=2, max_queue=1, kv_tokens=1000).check()
    engine = Engine(cfg, FakeClock())
    a, b, c, d = (seq(cfg, r, 10, 4) for r in "abcd")
    assert [engine.offer(s) for s in (a, b, c, d)] == ["ok", "ok", "ok", "queue_full"]
    assert engine.running == [a, b] and list(engine.waiting) == [c]
    assert cfg.reject_status == 503  # what the HTTP layer answers to "queue_full"
    assert engine.stats["rejected_queue_full"] == 1
    assert engine.stats["prompt_tokens"] == 30
    assert engine.stats["peak_running"] == 2 and engine.stats["peak_waiting"] == 1
    drain(engine)
    assert a.finished and b.finished and c.finished and not d.finished
    assert engine.stats["completed"] == 3 and engine.kv_used == 0


def test_kv_reservation_holds_the_queue_head_of_line():
    cfg = SimConfig(batch_slots=8, kv_tokens=100, max_queue=4).check()
    engine = Engine(cfg, FakeClock())
    a, b = seq(cfg, "a", 40, 20), seq(cfg, "b", 40, 20)     # 60 KV tokens each
    small = seq(cfg, "s", 5, 5)                              # would fit, but may not overtake
    assert engine.offer(seq(cfg, "x", 90, 11)) == "too_long"
    assert engine.stats["rejected_too_long"] == 1
    for s in (a, b, small):
        assert engine.offer(s) == "ok"
    assert engine.running == [a] and list(engine.waiting) == [b, small]
    assert engine.kv_used == 60 and engine.stats["peak_kv_used"] == 60
    while not a.finished:
        it = engine.plan()
        assert it is not None and it.decoders + it.done_prefill == [a]
        engine.finish(it)
    assert engine.plan() is not None                         # a's KV freed: b and s admitted
    assert engine.running == [b, small] and not engine.waiting and engine.kv_used == 70


def test_iteration_times_follow_the_model():
    cfg = SimConfig(prefill_tps=1000.0, decode_tps=100.0, batch_penalty=0.5).check()
    engine = Engine(cfg, FakeClock())
    a, b = seq(cfg, "a", 100, 3), seq(cfg, "b", 100, 3)
    engine.offer(a)
    engine.offer(b)
    # one iteration prefills both prompts (first tokens), then two batched decode steps
    assert drain(engine) == pytest.approx([0.2, 0.015, 0.015])
    assert a.produced == b.produced == 3
    assert engine.stats["iterations"] == 3 and engine.stats["completion_tokens"] == 6
    assert engine.stats["completed"] == 2
    assert [a.tokens.get_nowait() for _ in range(4)] == [1, 1, 1, None] and a.done.is_set()


def test_chunked_prefill_is_fifo():
    cfg = SimConfig(prefill_tps=1000.0, decode_tps=100.0, prefill_chunk=150).check()
    engine = Engine(cfg, FakeClock())
    a, b = seq(cfg, "a", 100, 2), seq(cfg, "b", 100, 2)
    engine.offer(a)
    engine.offer(b)
    first = engine.plan()
    assert first is not None and first.prefilled == 150 and first.done_prefill == [a]
    assert b.prefill_left == 50
    engine.finish(first)
    second = engine.plan()
    assert second is not None and second.decoders == [a] and second.done_prefill == [b]
    assert second.seconds == pytest.approx(0.05 + 0.01)


@pytest.mark.parametrize(("prompt", "cached"), [(17, 16), (16, 12)])
def test_prefix_reuse_keeps_one_token_to_prefill(prompt, cached):
    cfg = SimConfig(block_tokens=4).check()
    engine = Engine(cfg, FakeClock())
    first = seq(cfg, "a", prompt, 1)
    engine.offer(first)
    drain(engine)
    again = seq(cfg, "b", prompt, 1)
    engine.offer(again)
    it = engine.plan()
    assert it is not None and it.prefilled == prompt - cached and again.cached == cached
    assert engine.stats["cached_tokens"] == cached
    other = seq(cfg, "c", prompt, 1, units=[u + 1 for u in range(prompt)])
    engine.finish(it)
    engine.offer(other)
    engine.plan()
    assert other.cached == 0


def test_no_prefix_cache():
    cfg = SimConfig(block_tokens=4, prefix_cache=False).check()
    engine = Engine(cfg, FakeClock())
    for rid in "ab":
        s = seq(cfg, rid, 17, 1)
        engine.offer(s)
        drain(engine)
        assert s.cached == 0
    assert not engine.cache


def test_cancel_leaves_the_queue_at_once_and_a_slot_at_the_boundary():
    cfg = SimConfig(batch_slots=1).check()
    engine = Engine(cfg, FakeClock())
    a, b = seq(cfg, "a", 10, 5), seq(cfg, "b", 10, 5)
    engine.offer(a)
    engine.offer(b)
    engine.cancel(b)
    assert not engine.waiting and engine.stats["cancelled"] == 1
    it = engine.plan()
    assert it is not None
    engine.cancel(a)                     # mid-iteration: no token at its end, slot freed next
    engine.finish(it)
    assert a.produced == 0 and engine.running == [a]
    assert engine.plan() is None and engine.kv_used == 0
    engine.cancel(a)
    assert engine.stats["cancelled"] == 2 and engine.stats["completed"] == 0


def test_run_loop_on_a_fake_clock():
    """The asynchronous loop paces iterations on the injected clock: hours of virtual time
    pass at once, and each request's end time is exact."""
    cfg = SimConfig(batch_slots=1, prefill_tps=10.0, decode_tps=0.001).check()
    clock = FakeClock()

    async def main() -> tuple[list[float], Engine]:
        engine = Engine(cfg, clock)
        engine.start()
        seqs = [seq(cfg, r, 10, 2) for r in "abc"]
        for s in seqs:
            assert engine.offer(s) == "ok"
        ends = []
        for s in seqs:
            await s.done.wait()
            ends.append(clock.time())
        left = seq(cfg, "d", 10, 5)
        engine.offer(left)
        await asyncio.sleep(0)
        await engine.close()
        assert left.aborted and left.done.is_set()
        return ends, engine

    started = time.monotonic()
    ends, engine = asyncio.run(asyncio.wait_for(main(), 5))
    assert time.monotonic() - started < 5
    per_request = 1.0 + 1000.0           # prefill 10 tokens at 10/s, then one decode step
    assert ends == pytest.approx([per_request, 2 * per_request, 3 * per_request])
    assert clock.slept[:2] == pytest.approx([1.0, 1000.0])
    assert engine.stats["completed"] == 3 and engine.stats["iterations"] >= 6


def test_output_length_is_seeded():
    cfg = SimConfig(seed=7).check()
    args = (list(range(20)), 20, 50, 3, False, True, 0.0)
    lengths = {make_seq(cfg, "a", *args)[0].output_len for _ in range(3)}
    assert len(lengths) == 1 and 3 <= lengths.pop() <= 50
    fixed, _ = make_seq(cfg, "a", list(range(20)), 20, 50, 3, True, True, 0.0)
    assert fixed.output_len == 50


def test_fault_draws_are_seeded():
    def draws(**kw: Any) -> list[str | None]:
        faults = FaultDraw(SimConfig(**kw).check())
        return [faults.draw() for _ in range(200)]

    assert draws() == [None] * 200
    assert draws(fail_rate=1.0, faults=("reset",)) == ["reset"] * 200
    some = draws(fail_rate=0.3, seed=3)
    assert some == draws(fail_rate=0.3, seed=3) != draws(fail_rate=0.3, seed=4)
    assert 20 < sum(f is not None for f in some) < 100
    assert {f for f in some if f} <= {"reset", "malformed", "error", "slow"}
