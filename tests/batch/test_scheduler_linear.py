"""The incremental scheduler decides exactly as a full rescan of every chain would."""

from __future__ import annotations

import random

import pytest

from webtask_frames._batch.scheduler import Estimator, Scheduler


def _rescan(s: Scheduler, now: float) -> int | None:
    """The reference decision: rank every idle, ready chain by its remaining work."""
    if s.n_running >= s.effective_concurrency:
        return None
    best: tuple[float, int, int] | None = None
    best_item = None
    for cid, chain in s._chains.items():
        if chain.busy or not chain.pending or chain.not_before > now:
            continue
        head = chain.pending[0]
        rank = (s.remaining_work(cid, now), len(chain.pending), -head)
        if best is None or rank > best:
            best, best_item = rank, head
    return best_item


def _wakeup(s: Scheduler, now: float) -> float | None:
    times = [
        c.not_before for c in s._chains.values() if not c.busy and c.pending and c.not_before > now
    ]
    return min(times) if times else None


@pytest.mark.parametrize("seed", range(12))
def test_decisions_match_a_full_rescan(seed: int) -> None:
    rng = random.Random(seed)
    n = rng.randint(20, 120)
    n_keys = rng.randint(1, 15)
    keys: list[str | None] = [
        None if rng.random() < 0.3 else f"k{rng.randrange(n_keys)}" for _ in range(n)
    ]
    est = Estimator()
    if rng.random() < 0.5:  # some history from a ledger, including a keyless run
        est.observe("k0", 4.0, cold=True)
        est.observe(None, 2.0, cold=False)
    s = Scheduler(keys, max_concurrency=rng.randint(1, 6), durations=est, warm_keys=["k1"])
    now = 0.0
    running: list[int] = []
    for _ in range(4 * n):
        now += rng.random()
        assert s.next_wakeup(now) == _wakeup(s, now)
        expected = _rescan(s, now)
        item = s.next_ready(now)
        assert item == expected
        if item is not None and rng.random() < 0.8:
            s.on_started(item, now)
            running.append(item)
            continue
        if not running:
            if s.done:
                break
            continue
        done = running.pop(rng.randrange(len(running)))
        roll = rng.random()
        if roll < 0.15:  # rate-limited: back to the head of its chain after a backoff
            s.on_finished(done, now)
            s.on_rate_limited(done)
            s.requeue(done, not_before=now + rng.random() * 3)
        elif roll < 0.25:  # observed elsewhere (e.g. restored history), then failed
            est.observe(keys[done], rng.random() * 5, cold=False)
            s.on_finished(done, now)
        else:
            s.on_finished(done, now, duration=rng.random() * 10, succeeded=roll < 0.9)
    left = s.drain()
    assert (not set(left) & set(running) and s.next_ready(now + 100) is None) or running


def test_memoised_estimates_follow_new_observations() -> None:
    est = Estimator()
    est.observe("a", 10.0, cold=True)
    assert est.estimate("b", cold=True).mean == 10.0  # type: ignore[union-attr]
    est.observe("b", 30.0, cold=True)
    assert est.estimate("b", cold=True).mean == 30.0  # type: ignore[union-attr]
    assert est.estimate("c", cold=True).mean == 20.0  # type: ignore[union-attr]
    est.observe("a", 5.0, cold=False)
    assert est.cold_factor() == 2.0
    assert est.estimate("b", cold=False).mean == 15.0  # type: ignore[union-attr]


def test_a_decision_does_not_rescan_pending_items() -> None:
    """Counting estimator look-ups: one decision asks about a bounded number of chains,
    however many keyless items (each a chain of its own) are pending."""
    calls = 0

    class Counting(Estimator):
        def estimate(self, key: str | None, *, cold: bool):  # type: ignore[no-untyped-def]
            nonlocal calls
            calls += 1
            return super().estimate(key, cold=cold)

    for n in (100, 10_000):
        s = Scheduler([None] * n, max_concurrency=10, durations=Counting())
        calls = 0
        s.next_ready(0.0)
        assert calls <= 8
