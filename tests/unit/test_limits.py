"""The API's limits without a server: the decode gate, and the body's size and arrival rate."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from lookalike.api.errors import ApiError
from lookalike.api.inputs import _capped
from lookalike.api.limits import DecodeGate, GateBusy, GateTimeout


def run(coroutine):
    return asyncio.run(coroutine)


def test_the_gate_bounds_calls_and_memory_in_flight():
    gate = DecodeGate(concurrency=3, memory=100, wait_s=5, timeout_s=5)
    peak = {"running": 0, "memory": 0}

    def work(cost: int) -> int:
        peak["running"] = max(peak["running"], gate.running)
        peak["memory"] = max(peak["memory"], gate.in_flight)
        time.sleep(0.02)
        return cost

    async def main():
        costs = [60, 30, 30, 10, 10, 10, 90, 5]
        return await asyncio.gather(*(gate.run(cost, lambda cost=cost: work(cost)) for cost in costs))

    assert run(main()) == [60, 30, 30, 10, 10, 10, 90, 5]
    assert peak["running"] <= 3 and peak["memory"] <= 100
    assert gate.running == 0 and gate.in_flight == 0


def test_a_call_over_the_budget_runs_alone():
    gate = DecodeGate(concurrency=4, memory=10, wait_s=5, timeout_s=5)
    seen = []

    async def main():
        await asyncio.gather(*(gate.run(50, lambda: seen.append(gate.running)) for _ in range(3)))

    run(main())
    assert seen == [1, 1, 1]


def test_a_small_call_passes_a_large_one_that_does_not_fit():
    gate = DecodeGate(concurrency=4, memory=100, wait_s=5, timeout_s=5)
    order = []
    release = threading.Event()

    async def main():
        first = asyncio.ensure_future(gate.run(60, lambda: (release.wait(5), order.append("first"))))
        await asyncio.sleep(0.05)
        large = asyncio.ensure_future(gate.run(60, lambda: order.append("large")))
        await asyncio.sleep(0.05)
        await gate.run(30, lambda: order.append("small"))  # fits beside the first; the large one does not
        release.set()
        await asyncio.gather(first, large)

    run(main())
    assert order == ["small", "first", "large"]


def test_waiting_too_long_is_busy_and_gives_its_place_up():
    gate = DecodeGate(concurrency=1, memory=100, wait_s=0.1, timeout_s=5)
    release = threading.Event()

    async def main():
        holder = asyncio.ensure_future(gate.run(1, lambda: release.wait(5)))
        await asyncio.sleep(0.02)
        with pytest.raises(GateBusy):
            await gate.run(1, lambda: None)
        assert not gate._waiting
        release.set()
        await holder
        assert await gate.run(1, lambda: "next") == "next"

    run(main())
    assert gate.running == 0 and gate.in_flight == 0


def test_a_decode_over_time_is_a_timeout_and_holds_its_room_until_its_thread_ends():
    gate = DecodeGate(concurrency=1, memory=100, wait_s=5, timeout_s=0.1)
    release = threading.Event()

    async def main():
        with pytest.raises(GateTimeout):
            await gate.run(40, lambda: release.wait(5))
        assert gate.running == 1 and gate.in_flight == 40  # the thread still decodes: its memory is still in use
        release.set()
        for _ in range(100):
            if gate.running == 0:
                break
            await asyncio.sleep(0.01)
        assert gate.running == 0 and gate.in_flight == 0

    run(main())


def test_errors_of_the_work_reach_the_caller():
    gate = DecodeGate()

    def broken():
        raise ValueError("bad bytes")

    async def main():
        with pytest.raises(ValueError, match="bad bytes"):
            await gate.run(1, broken)

    run(main())
    assert gate.running == 0


# --- the body -------------------------------------------------------------------------------------


def body(chunks: list[bytes], pause_s: float):
    """An ASGI `receive` that sends `chunks`, `pause_s` apart."""
    remaining = list(chunks)

    async def receive():
        await asyncio.sleep(pause_s)
        chunk = remaining.pop(0)
        return {"type": "http.request", "body": chunk, "more_body": bool(remaining)}

    return receive


async def read_all(receive) -> int:
    total = 0
    while True:
        message = await receive()
        total += len(message["body"])
        if not message["more_body"]:
            return total


def test_a_body_over_the_limit_is_refused_while_it_arrives():
    with pytest.raises(ApiError) as refused:
        run(read_all(_capped(body([b"x" * 600] * 10, 0), 1000)))
    assert refused.value.status == 413 and refused.value.headers["Connection"] == "close"


def test_a_trickled_body_is_cut_after_the_grace_period():
    trickle = body([b"x"] * 1000, 0.01)  # 100 bytes a second
    started = time.monotonic()
    with pytest.raises(ApiError) as refused:
        run(read_all(_capped(trickle, 10_000, grace_s=0.3, min_rate=1000)))
    assert refused.value.status == 408 and "too slowly" in refused.value.detail
    assert 0.25 < time.monotonic() - started < 1.0


def test_a_body_arriving_at_the_minimum_rate_is_read():
    steady = body([b"x" * 100] * 20, 0.01)  # 10 kB a second
    assert run(read_all(_capped(steady, 10_000, grace_s=0.05, min_rate=2000))) == 2000


def test_the_gate_and_the_body_bounds_follow_the_settings(monkeypatch):
    from lookalike.settings import Settings, get_settings

    settings = Settings(
        _env_file=None, decode_concurrency=2, decode_memory_mb=64, decode_wait_s=1.5, decode_timeout_s=2.5
    )
    gate = DecodeGate.from_settings(settings)
    assert (gate.concurrency, gate.memory, gate.wait_s, gate.timeout_s) == (2, 64 * 2**20, 1.5, 2.5)

    monkeypatch.setenv("LOOKALIKE_BODY_GRACE_S", "0.2")
    monkeypatch.setenv("LOOKALIKE_BODY_MIN_RATE", "1000")
    get_settings.cache_clear()
    try:
        from lookalike.api.inputs import _body_capped

        with pytest.raises(ApiError) as refused:
            run(read_all(_body_capped(body([b"x"] * 100, 0.05), 10_000)))  # 20 bytes a second
        assert refused.value.status == 408
        assert "after 0.2 s it must arrive at 1000 bytes a second" in refused.value.detail
    finally:
        get_settings.cache_clear()
