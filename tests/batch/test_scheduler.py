"""The I/O-free scheduling decisions: estimates, chain order, caps, AIMD, polling plans."""

from __future__ import annotations

import heapq
import random
from datetime import UTC, datetime, timedelta

import pytest

from webtask_frames import PollPolicy
from webtask_frames._batch.scheduler import (
    Estimate,
    Estimator,
    PollPlan,
    Scheduler,
    TaskSchedule,
)
from webtask_frames._wire.models import parse_status

# -- Estimator -------------------------------------------------------------------------


def test_estimator_knows_nothing_at_first() -> None:
    est = Estimator()
    assert est.estimate("k", cold=True) is None
    assert est.value("k", cold=False, default=3.0) == 3.0
    assert est.value("k", cold=True, default=3.0) == 6.0  # the default cold factor


def test_estimator_scales_a_cold_run_to_a_warm_prediction() -> None:
    est = Estimator()
    est.observe("a", 100.0, cold=True)
    warm = est.estimate("a", cold=False)
    assert warm is not None
    assert warm.mean == pytest.approx(50.0)
    assert warm.source == "key-scaled"
    assert warm.spread > 0.1 * warm.mean  # less certain than a measured warm run


def test_estimator_uses_own_samples_and_their_range() -> None:
    est = Estimator(relative_spread=0.05)
    for value in (40.0, 44.0, 36.0):
        est.observe("a", value, cold=False)
    e = est.estimate("a", cold=False)
    assert e == Estimate(40.0, 4.0, "key")


def test_estimator_learns_the_cold_factor_from_keys_with_both() -> None:
    est = Estimator()
    est.observe("a", 30.0, cold=True)
    est.observe("a", 10.0, cold=False)
    assert est.cold_factor() == pytest.approx(3.0)
    est.observe("b", 12.0, cold=False)
    b_cold = est.estimate("b", cold=True)
    assert b_cold is not None and b_cold.mean == pytest.approx(36.0)


def test_unknown_keys_get_the_mean_over_keys() -> None:
    est = Estimator()
    est.observe("a", 10.0, cold=False)
    est.observe("b", 30.0, cold=False)
    e = est.estimate("zzz", cold=False)
    assert e is not None and e.source == "global"
    assert e.mean == pytest.approx(20.0)
    assert e.spread >= 10.0


def test_estimator_ignores_garbage() -> None:
    est = Estimator()
    for bad in (None, -1.0, float("nan"), float("inf")):
        est.observe("a", bad, cold=False)
    assert est.empty and est.count() == 0


def test_keyless_observations_only_feed_the_global_mean() -> None:
    est = Estimator()
    est.observe(None, 8.0, cold=True)
    e = est.estimate("fresh", cold=True)
    assert e is not None and e.mean == pytest.approx(8.0) and e.source == "global"


# -- Scheduler -------------------------------------------------------------------------


def test_never_more_than_the_cap_and_never_two_of_one_key() -> None:
    keys = ["a"] * 5 + ["b"] * 3 + [None] * 4
    s = Scheduler(keys, max_concurrency=3)
    started = []
    while (item := s.next_ready(0.0)) is not None:
        s.on_started(item, 0.0)
        started.append(item)
    assert len(started) == 3
    started_keys = [keys[i] for i in started]
    assert started_keys.count("a") == 1 and started_keys.count("b") == 1


def test_the_longest_chain_starts_first() -> None:
    keys = ["short"] + ["long"] * 4 + ["mid"] * 2
    s = Scheduler(keys, max_concurrency=1)
    assert s.next_ready(0.0) == 1


def test_measured_durations_beat_item_counts() -> None:
    durations = Estimator()
    durations.observe("slow", 100.0, cold=False)
    durations.observe("fast", 1.0, cold=False)
    keys = ["fast"] * 5 + ["slow"] * 2
    s = Scheduler(keys, max_concurrency=1, durations=durations, warm_keys=["slow", "fast"])
    assert s.next_ready(0.0) == 5  # 2 x 100 s of work beats 5 x 1 s


def test_items_of_a_chain_keep_grid_order() -> None:
    s = Scheduler(["a", "a", "a"], max_concurrency=5)
    order = []
    for t in range(3):
        item = s.next_ready(float(t))
        assert item is not None
        s.on_started(item, float(t))
        assert s.next_ready(float(t)) is None
        s.on_finished(item, t + 1.0, duration=1.0, succeeded=True)
        order.append(item)
    assert order == [0, 1, 2]
    assert s.done


def test_first_run_of_a_key_is_cold_then_warm() -> None:
    s = Scheduler(["a", "a"], max_concurrency=1)
    assert s.is_cold(0)
    s.on_started(0, 0.0)
    s.on_finished(0, 10.0, duration=10.0, succeeded=True)
    assert not s.is_cold(1)
    predicted = s.predict(1)
    assert predicted is not None and predicted.mean == pytest.approx(5.0)


def test_a_failed_run_leaves_the_key_cold() -> None:
    s = Scheduler(["a", "a"], max_concurrency=1)
    s.on_started(0, 0.0)
    s.on_finished(0, 1.0)
    assert s.is_cold(1)


def test_requeue_with_backoff_blocks_only_that_chain() -> None:
    s = Scheduler(["a", "a", "b"], max_concurrency=2)
    s.on_started(0, 0.0)
    s.on_finished(0, 1.0)
    s.requeue(0, not_before=5.0)
    assert s.next_ready(1.0) == 2  # "a" waits out its backoff; "b" may go
    s.on_started(2, 1.0)
    assert s.next_ready(1.0) is None
    assert s.next_wakeup(1.0) == 5.0
    assert s.next_ready(5.0) == 0  # the requeued item is at the head of its chain


def test_rate_limits_halve_concurrency_once_per_round_and_successes_restore_it() -> None:
    s = Scheduler([f"k{i}" for i in range(20)], max_concurrency=8, increase_per_success=1.0)
    for item in range(8):
        s.on_started(item, 0.0)
    for item in range(4):  # a burst of rejections from one round halves once
        s.on_finished(item, 1.0)
        s.on_rate_limited(item)
    assert s.effective_concurrency == 4
    new = s.next_ready(1.0)
    assert new is None  # 4 still running, cap 4
    s.on_finished(4, 2.0, duration=1.0, succeeded=True)
    assert s.effective_concurrency == 5
    item = s.next_ready(2.0)
    assert item is not None
    s.on_started(item, 2.0)
    s.on_finished(item, 3.0)
    s.on_rate_limited(item)  # submitted after the decrease: halves again
    assert s.effective_concurrency == 2
    for _ in range(10):
        s.on_finished(5, 4.0, succeeded=True)
    assert s.effective_concurrency == 8


def test_drain_returns_everything_not_started() -> None:
    s = Scheduler(["a", "a", "b", None], max_concurrency=1)
    s.on_started(0, 0.0)
    assert s.drain() == [1, 2, 3]
    assert s.next_ready(0.0) is None
    s.on_finished(0, 1.0)
    assert s.done


def test_a_key_cannot_be_started_twice() -> None:
    s = Scheduler(["a", "a"], max_concurrency=2)
    s.on_started(0, 0.0)
    with pytest.raises(RuntimeError, match="already has a running item"):
        s.on_started(1, 0.0)


def test_plan_order_covers_every_item_once() -> None:
    keys = [f"k{i % 3}" for i in range(10)] + [None, None]
    order = Scheduler(keys, max_concurrency=2).plan_order()
    assert sorted(order) == list(range(12))


def _simulate(seed: int, *, cap: int = 10, n_keys: int = 20, per_key: int = 10) -> float:
    """Makespan / lower bound of a sweep run by the scheduler with exact completion times."""
    rng = random.Random(seed)
    base = {f"k{i}": rng.uniform(60, 300) for i in range(n_keys)}
    keys = [f"k{i % n_keys}" for i in range(n_keys * per_key)]
    rng.shuffle(keys)
    s = Scheduler(keys, max_concurrency=cap)
    warm: set[str] = set()
    now, events, ran = 0.0, [], []
    per_chain: dict[str, float] = {}
    while True:
        while (item := s.next_ready(now)) is not None:
            s.on_started(item, now)
            key = keys[item]
            cold = key not in warm
            d = base[key] * (1.0 if cold else 0.5) * rng.uniform(0.9, 1.1)
            ran.append(d)
            per_chain[key] = per_chain.get(key, 0.0) + d
            heapq.heappush(events, (now + d, item, d, cold))
        if not events:
            break
        now, item, d, cold = heapq.heappop(events)
        warm.add(keys[item])
        s.on_finished(item, now, duration=d, cold=cold, succeeded=True)
    return now / max(sum(ran) / cap, max(per_chain.values()))


@pytest.mark.parametrize("seed", range(5))
def test_makespan_is_close_to_the_lower_bound(seed: int) -> None:
    assert _simulate(seed) <= 1.05


def test_makespan_when_one_chain_dominates() -> None:
    # 1 long chain of 40 items and 40 singletons: the chain is the bound and goes first.
    keys = ["long"] * 40 + [f"s{i}" for i in range(40)]
    s = Scheduler(keys, max_concurrency=4)
    first = s.next_ready(0.0)
    assert first == 0


# -- PollPlan --------------------------------------------------------------------------


def test_poll_plan_without_an_estimate_backs_off_like_wait() -> None:
    plan = PollPlan(PollPolicy(min_s=1.0, max_s=4.0, jitter=0.0), None)
    delays = [plan.delay(None) for _ in range(6)]
    assert delays == [1.0, 1.5, 2.25, 3.375, 4.0, 4.0]


def test_poll_plan_aims_at_the_earliest_plausible_finish_then_steps_evenly() -> None:
    policy = PollPolicy(min_s=0.5, max_s=15.0, jitter=0.0)
    plan = PollPlan(policy, Estimate(100.0, 8.0, "key"))
    assert plan.delay(0.0) == pytest.approx(92.0)
    assert plan.delay(92.0) == pytest.approx(4.0)  # 4 even steps cover mean +- spread
    assert plan.delay(96.0) == pytest.approx(4.0)
    assert plan.delay(104.0) == pytest.approx(4.0)
    assert plan.delay(108.0) == pytest.approx(6.0)  # past the window: back off
    assert plan.delay(114.0) == pytest.approx(9.0)
    assert plan.delay(123.0) == pytest.approx(13.5)
    assert plan.delay(136.5) == pytest.approx(15.0)
    plan.reset()
    assert plan.delay(10.0) == pytest.approx(82.0)


def test_task_schedule_anchors_the_plan_at_the_tasks_start() -> None:
    """Queued 20 s server-side: the plan counts from the start, not from the submission."""
    plan = PollPlan(PollPolicy(min_s=1.0, max_s=15.0, jitter=0.0), Estimate(100.0, 10.0, "key"))
    schedule = TaskSchedule(plan, sent=0.0)
    assert schedule.first() == pytest.approx(90.0)
    created = datetime(2026, 1, 1, tzinfo=UTC)
    pending = parse_status({"webTaskId": "wt_1", "status": "pending", "createdAt": _iso(created)})
    assert schedule.after(pending, 5.0) == pytest.approx(1.0)  # queued: back off from min_s
    started = parse_status(
        {
            "webTaskId": "wt_1",
            "status": "started",
            "createdAt": _iso(created),
            "startedAt": _iso(created + timedelta(seconds=20)),
        }
    )
    assert schedule.after(started, 90.0) == pytest.approx(20.0)  # finish expected at 110
    assert schedule.after(None, 110.0) == pytest.approx(1.0)  # a failed poll: from min_s


def test_task_schedule_re_attached_trusts_the_wall_clock() -> None:
    plan = PollPlan(PollPolicy(min_s=1.0, max_s=15.0, jitter=0.0), Estimate(100.0, 10.0, "key"))
    started_at = datetime(2026, 1, 1, tzinfo=UTC)
    schedule = TaskSchedule(plan, sent=None, wall_now=lambda: started_at + timedelta(seconds=30))
    assert schedule.first() == 0.0
    status = parse_status(
        {
            "webTaskId": "wt_1",
            "status": "started",
            "createdAt": _iso(started_at),
            "startedAt": _iso(started_at),
        }
    )
    assert schedule.after(status, 1000.0) == pytest.approx(60.0)  # running 30 s of ~90


def _iso(t: datetime) -> str:
    return t.isoformat().replace("+00:00", "Z")


def test_poll_steps_never_go_below_min_or_above_max() -> None:
    plan = PollPlan(PollPolicy(min_s=2.0, max_s=5.0, jitter=0.0), Estimate(10.0, 0.3, "key"))
    assert plan.delay(9.8) == 2.0
    for _ in range(10):
        assert 2.0 <= plan.delay(30.0) <= 5.0
    wide = PollPlan(PollPolicy(min_s=0.1, max_s=5.0, jitter=0.0), Estimate(100.0, 50.0, "key"))
    assert wide.delay(60.0) == 5.0


def test_several_items_of_one_key_can_be_re_attached_and_hold_the_key() -> None:
    """After a crash a ledger may hold two live tasks of one key: both are re-attached, and
    the key stays busy until both are terminal."""
    keys = ["k", "k", "k"]
    s = Scheduler(keys, max_concurrency=10)
    s.on_started(0, 0.0, reattach=True)
    s.on_started(1, 0.0, reattach=True)
    assert s.n_running == 2
    assert s.next_ready(1.0) is None  # item 2 waits for both
    with pytest.raises(RuntimeError, match="already has a running item"):
        s.on_started(2, 1.0)  # a fresh submission never joins a busy key
    s.on_finished(0, 2.0)
    assert s.next_ready(2.0) is None
    s.on_finished(1, 3.0)
    assert s.next_ready(3.0) == 2
