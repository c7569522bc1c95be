"""Scheduling decisions for batch runs, free of I/O and of any clock.

Three small pieces, each driven by plain numbers so they are unit-tested without a network:

* ``Estimator`` (module ``estimate``, re-exported here) learns per-``reuseKey`` figures
  (durations, costs) from what a run observes: cold (first) and warm runs of a key,
  the cold/warm ratio, and the mean over keys for keys never seen.
* ``Scheduler`` decides which item to submit next. The service runs runs of one reuseKey
  one at a time and a workspace runs at most 10 tasks, so items sharing a key form a
  *chain*; the scheduler keeps at most ``cap`` items in flight, never two of one key, and
  starts the chain with the longest estimated remaining work first, so the sweep's
  makespan approaches ``max(total work / cap, longest chain)``. A ``workspace-rate-limited``
  outcome halves the effective concurrency (once per "round trip", like TCP); every
  success adds some back (AIMD).
* ``PollPlan`` says when to poll a running task: first near its predicted finish, then
  in steps sized by the prediction's uncertainty, backing off between the client's
  ``poll.min_s`` and ``poll.max_s``. ``TaskSchedule`` anchors it at the task's start
  for the polling loop (``_wire.polling``).

Times are seconds on any monotonic clock the caller chooses (``now`` arguments).
"""

from __future__ import annotations

import heapq
import math
import random
from collections import deque
from collections.abc import Callable, Hashable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

from .._wire.models import Pending, TaskStatus
from .._wire.policies import PollPolicy
from .estimate import Estimate, Estimator

__all__ = ["Estimate", "Estimator", "PollPlan", "Scheduler", "TaskSchedule"]

# A chain is identified by its reuseKey; items without a key each form their own chain,
# identified by ("item", index) so they never collide with a real key.
ChainId = Hashable


@dataclass
class _Chain:
    key: str | None
    pending: deque[int]
    not_before: float = 0.0  # the head may not start earlier (rate-limit backoff)
    running: int | None = None
    # Further items of this key re-attached after a crash: their tasks may all be live at
    # once (the server queues them), so the key stays busy until every one is terminal.
    extra: set[int] = field(default_factory=set)
    warm: bool = False
    stamp: int = 0  # bumped at every change: older heap entries for the chain are stale

    @property
    def busy(self) -> bool:
        return self.running is not None or bool(self.extra)


class Scheduler:
    """Which item to submit next, under a concurrency cap and one-run-per-key.

    ``keys[i]`` is item ``i``'s reuseKey (``None``: no key, a chain of its own). Items
    of a chain keep grid order. ``warm_keys`` are keys known to have saved code already
    (from a ledger's history), so their next run is predicted warm.

    A decision costs O(keys with observations + log chains), not O(items): a chain's
    remaining work is ``first + (n - 1) * warm`` from memoised estimates, chains whose
    key has figures of its own are compared one by one, and every other chain (keyless,
    or a key not seen yet) shares the same estimates, so those sit in two heaps (cold,
    warm) ordered by length then grid order, updated when a chain changes.

    Example:
        >>> s = Scheduler(["a", "a", "a", "b"], max_concurrency=2)
        >>> s.next_ready(0.0)                       # the longest chain first
        0
        >>> s.on_started(0, 0.0)
        >>> s.next_ready(0.0)                       # "a" is busy: its next item waits
        3
        >>> s.on_started(3, 0.0)
        >>> s.next_ready(0.0) is None               # the cap is reached
        True
        >>> s.on_finished(0, 5.0, duration=5.0, cold=True, succeeded=True)
        >>> s.next_ready(5.0)
        1
    """

    def __init__(
        self,
        keys: Sequence[str | None],
        *,
        max_concurrency: int,
        durations: Estimator | None = None,
        warm_keys: Iterable[str] = (),
        items: Iterable[int] | None = None,
        increase_per_success: float = 0.5,
    ) -> None:
        if max_concurrency < 1:
            raise ValueError("max_concurrency must be >= 1")
        self.keys = list(keys)
        self.max_concurrency = max_concurrency
        self.durations = durations if durations is not None else Estimator()
        self.increase_per_success = increase_per_success
        self._cap = float(max_concurrency)
        self._chains: dict[ChainId, _Chain] = {}
        self._chain_of: dict[int, ChainId] = {}
        self._started_at: dict[int, float] = {}
        self._seq: dict[int, int] = {}
        self._next_seq = 0
        self._last_decrease_seq = -1
        self._n_pending = 0
        self._stamp = 0
        # Chains with pending items whose key has figures of its own (compared one by one).
        self._own: set[ChainId] = set()
        # Every other idle chain with pending items: (-len, head, stamp, id), per warmth.
        self._heaps: dict[bool, list[tuple[int, int, int, ChainId]]] = {False: [], True: []}
        self._backoff: list[tuple[float, int, ChainId]] = []  # (not_before, stamp, id)
        self._seen_version = -1
        warm = set(warm_keys)
        for index in range(len(self.keys)) if items is None else items:
            key = self.keys[index]
            cid: ChainId = key if key is not None else ("item", index)
            chain = self._chains.get(cid)
            if chain is None:
                chain = self._chains[cid] = _Chain(key, deque(), warm=key in warm)
            chain.pending.append(index)
            self._chain_of[index] = cid
            self._n_pending += 1
        for cid in self._chains:
            self._refresh(cid)
        self._seen_version = self.durations.version

    # -- bookkeeping ------------------------------------------------------------------

    def _refresh(self, cid: ChainId) -> None:
        """File the chain where ``next_ready`` will look for it, after any change."""
        chain = self._chains[cid]
        self._stamp += 1
        chain.stamp = self._stamp
        if not chain.pending:
            self._own.discard(cid)
        elif self.durations.knows(chain.key):
            self._own.add(cid)
        else:
            self._own.discard(cid)
            if not chain.busy:
                entry = (-len(chain.pending), chain.pending[0], chain.stamp, cid)
                heapq.heappush(self._heaps[chain.warm], entry)

    def _sync(self) -> None:
        """Keys that gained figures of their own (observed outside ``on_finished``)."""
        if self._seen_version == self.durations.version:
            return
        self._seen_version = self.durations.version
        for key in self.durations.known_keys():
            if key not in self._own and key in self._chains and self._chains[key].pending:
                self._refresh(key)

    def _top(self, warm: bool, now: float) -> ChainId | None:
        """The longest ready chain among those sharing the common estimates."""
        heap = self._heaps[warm]
        waiting = []
        found: ChainId | None = None
        while heap:
            _, _, stamp, cid = heap[0]
            chain = self._chains[cid]
            if stamp != chain.stamp or chain.busy or not chain.pending:
                heapq.heappop(heap)  # stale: the chain changed since this entry
            elif chain.not_before > now:
                waiting.append(heapq.heappop(heap))
            else:
                found = cid
                break
        for entry in waiting:
            heapq.heappush(heap, entry)
        return found

    # -- state ------------------------------------------------------------------------

    @property
    def effective_concurrency(self) -> int:
        """The current cap: ``max_concurrency`` lowered after rate-limited outcomes."""
        return max(1, min(self.max_concurrency, math.floor(self._cap + 1e-9)))

    @property
    def running(self) -> frozenset[int]:
        return frozenset(self._started_at)

    @property
    def n_running(self) -> int:
        return len(self._started_at)

    def pending(self) -> list[int]:
        """Items not started, in chain order (chains in insertion order)."""
        return [i for c in self._chains.values() for i in c.pending]

    @property
    def n_pending(self) -> int:
        """Items not started yet (counted, not rescanned)."""
        return self._n_pending

    @property
    def done(self) -> bool:
        """Nothing running and nothing left to start."""
        return not self._started_at and not self._n_pending

    def is_cold(self, item: int) -> bool:
        """Whether ``item``'s run is predicted to build its key's automation."""
        chain = self._chains[self._chain_of[item]]
        return chain.key is None or not chain.warm

    def predict(self, item: int) -> Estimate | None:
        """The predicted duration of ``item``'s next run."""
        chain = self._chains[self._chain_of[item]]
        return self.durations.estimate(chain.key, cold=self.is_cold(item))

    def remaining_work(self, chain_id: ChainId, now: float = 0.0) -> float:
        """Estimated seconds of the chain's pending items, plus what its running one has left."""
        chain = self._chains[chain_id]
        total = 0.0
        warm = chain.warm
        value = self.durations.value
        if chain.running is not None:
            est = value(chain.key, cold=not warm)
            total += max(0.0, est - (now - self._started_at[chain.running]))
            warm = True  # assume the running one succeeds and saves code
        n = len(chain.pending)
        if n:
            total += value(chain.key, cold=not warm) + (n - 1) * value(chain.key, cold=False)
        return total

    # -- decisions --------------------------------------------------------------------

    def next_ready(self, now: float) -> int | None:
        """The item to submit now, or None (cap reached, or every chain busy or backing off).

        Picks, among chains with no running item and a head whose backoff has passed,
        the one with the most estimated remaining work (ties: more items, then grid order).
        Does not change state: call ``on_started`` when the item is actually submitted.
        """
        if self.n_running >= self.effective_concurrency:
            return None
        self._sync()
        candidates = [
            cid
            for cid in self._own
            if not (chain := self._chains[cid]).busy and chain.not_before <= now
        ]
        candidates += [c for warm in (False, True) if (c := self._top(warm, now)) is not None]
        best: tuple[float, int, int] | None = None
        best_item: int | None = None
        for cid in candidates:
            chain = self._chains[cid]
            head = chain.pending[0]
            rank = (self.remaining_work(cid, now), len(chain.pending), -head)
            if best is None or rank > best:
                best, best_item = rank, head
        return best_item

    def next_wakeup(self, now: float) -> float | None:
        """When a chain that is only waiting out a backoff becomes ready (None if none).

        ``now`` never goes back between calls (backoffs already over are forgotten).
        """
        heap = self._backoff
        while heap and (heap[0][0] <= now or heap[0][0] != self._chains[heap[0][2]].not_before):
            heapq.heappop(heap)
        times = [
            nb
            for nb, _, cid in heap
            if not (c := self._chains[cid]).busy and c.pending and c.not_before == nb
        ]
        return min(times) if times else None

    def on_started(self, item: int, now: float, *, reattach: bool = False) -> None:
        """``item`` was submitted (or re-attached) and now occupies a slot and its key.

        ``reattach``: the item's task already exists (found in a ledger); several items of
        one key may be re-attached at once, since their tasks may all still be live.
        """
        cid = self._chain_of[item]
        chain = self._chains[cid]
        if chain.busy and not reattach:
            raise RuntimeError(f"item {item}: key {chain.key!r} already has a running item")
        if chain.pending and chain.pending[0] == item:
            chain.pending.popleft()
            self._n_pending -= 1
        elif item in chain.pending:
            chain.pending.remove(item)
            self._n_pending -= 1
        if chain.running is not None:
            chain.extra.add(item)
        else:
            chain.running = item
        self._started_at[item] = now
        self._seq[item] = self._next_seq
        self._next_seq += 1
        self._refresh(cid)

    def on_finished(
        self,
        item: int,
        now: float,
        *,
        duration: float | None = None,
        cold: bool | None = None,
        succeeded: bool = False,
    ) -> None:
        """``item``'s task is terminal (or abandoned): free its slot and key.

        ``duration`` (server-measured run time when known) feeds the estimator as a cold
        or warm run; a success marks the key warm and counts towards the AIMD increase.
        """
        cid = self._chain_of[item]
        chain = self._chains[cid]
        if chain.running == item:
            chain.running = chain.extra.pop() if chain.extra else None
        chain.extra.discard(item)
        self._started_at.pop(item, None)
        if duration is not None:
            self.durations.observe(
                chain.key, duration, cold=self.is_cold(item) if cold is None else cold
            )
        if succeeded:
            chain.warm = True
            self._cap = min(float(self.max_concurrency), self._cap + self.increase_per_success)
        self._refresh(cid)

    def requeue(self, item: int, *, not_before: float = 0.0) -> None:
        """Put ``item`` back at the head of its chain, startable from ``not_before``."""
        cid = self._chain_of[item]
        chain = self._chains[cid]
        if item not in chain.pending:
            chain.pending.appendleft(item)
            self._n_pending += 1
        chain.not_before = max(chain.not_before, not_before)
        self._refresh(cid)
        if chain.not_before > 0:
            heapq.heappush(self._backoff, (chain.not_before, chain.stamp, cid))

    def on_rate_limited(self, item: int) -> None:
        """Multiplicative decrease, once per round: only items submitted after the last
        decrease can trigger another, so a burst of simultaneous rejections halves once."""
        seq = self._seq.get(item, self._next_seq)
        if seq > self._last_decrease_seq:
            self._cap = max(1.0, self._cap / 2)
            self._last_decrease_seq = self._next_seq - 1

    def drain(self) -> list[int]:
        """Remove and return every item not yet started (e.g. to mark them skipped)."""
        out = self.pending()
        for chain in self._chains.values():
            chain.pending.clear()
        self._n_pending = 0
        self._own.clear()
        for heap in self._heaps.values():
            heap.clear()
        return sorted(out)

    def plan_order(self) -> list[int]:
        """The order items would start if all estimates held: a dry run of the schedule."""
        return self.simulate()[0]

    def simulate(self) -> tuple[list[int], float]:
        """``(start order, makespan)`` of the pending items if every estimate held
        (durations in the estimator's unit; unknown durations count as 1)."""
        clone = Scheduler(
            self.keys,
            max_concurrency=self.max_concurrency,
            durations=self.durations,
            items=sorted(self.pending()),
            warm_keys=[c.key for c in self._chains.values() if c.warm and c.key is not None],
        )
        order: list[int] = []
        now = 0.0
        finishing: list[tuple[float, int]] = []
        while True:
            while (item := clone.next_ready(now)) is not None:
                clone.on_started(item, now)
                order.append(item)
                length = clone.durations.value(clone.keys[item], cold=clone.is_cold(item))
                heapq.heappush(finishing, (now + length, item))
            if not finishing:
                return order, now
            now, item = heapq.heappop(finishing)
            clone.on_finished(item, now, succeeded=True)


class PollPlan:
    """When to poll one task: across its predicted finish window, then backing off.

    ``estimate`` is the predicted run time (None: nothing known, so poll like
    ``client.wait``: ``min_s`` growing by ``factor`` up to ``max_s``). The first poll is
    aimed at the earliest plausible finish (``mean - spread``); inside the window
    ``mean +- spread`` polls come at even steps (``window_polls`` of them cover it, each
    at least ``min_s``), so a finish is noticed about ``spread / window_polls`` late on
    average; past the window the steps grow by the policy's factor up to ``max_s``. While
    a task is pending (queued server-side) polls back off from ``min_s``; the plan is
    re-anchored at the task's start once it starts.

    Example:
        >>> plan = PollPlan(PollPolicy(min_s=1, max_s=15, jitter=0), Estimate(100, 10, "key"))
        >>> plan.delay(0.0)            # sleep until the earliest plausible finish
        90.0
        >>> plan.delay(90.0)           # missed: even steps across the window
        5.0
        >>> plan.delay(111.0)          # past the window: back off
        7.5
    """

    def __init__(
        self,
        policy: PollPolicy,
        estimate: Estimate | None,
        rng: random.Random | None = None,
        *,
        window_polls: int = 4,
    ) -> None:
        self.policy = policy
        self.estimate = estimate
        self.rng = rng
        self.window_polls = window_polls
        self._step: float | None = None

    def _grow(self, step: float | None, base: float) -> float:
        if step is None:
            return min(self.policy.max_s, max(self.policy.min_s, base))
        return self.policy.next_interval(step, self.rng)

    def delay(self, since_start: float | None) -> float:
        """Seconds to sleep before the next poll.

        ``since_start`` is how long the task has been running by our clock (None while
        it is queued or its start is unknown). Estimates are in the server's seconds,
        which are real seconds (a faster-than-real simulator reports real ones too).
        """
        if since_start is None or self.estimate is None:
            self._step = self._grow(self._step, self.policy.min_s)
            return self._step
        earliest = self.estimate.low
        if since_start < earliest - 1e-9:
            self._step = None
            return earliest - since_start
        spread = self.estimate.spread
        even = min(self.policy.max_s, max(self.policy.min_s, 2 * spread / self.window_polls))
        if since_start < self.estimate.mean + spread - 1e-9:
            self._step = even
            return even
        self._step = self._grow(self._step if self._step is not None else even, even)
        return self._step

    def reset(self) -> None:
        """Forget the step (e.g. when the task went from pending to started)."""
        self._step = None


def _utc_now() -> datetime:
    return datetime.now(UTC)


class TaskSchedule:
    """A ``PollPlan`` anchored at the task's start: the engine's ``PollSchedule``.

    ``sent`` is the local time the task was created (None when re-attaching: poll at
    once). The first poll is aimed at the predicted finish counted from ``sent``; once a
    status says the task started, the plan is re-anchored at that start (creation plus
    the server's queue wait), so queueing server-side is accounted for. A re-attached
    task's start comes from ``startedAt`` against ``wall_now`` (the UTC wall clock).

    Example:
        >>> plan = PollPlan(PollPolicy(min_s=1, max_s=15, jitter=0), Estimate(100, 10, "key"))
        >>> TaskSchedule(plan, sent=5.0).first()
        90.0
    """

    def __init__(
        self,
        plan: PollPlan,
        sent: float | None,
        *,
        wall_now: Callable[[], datetime] = _utc_now,
    ) -> None:
        self.plan = plan
        self.sent = sent
        self.wall_now = wall_now
        self._start: float | None = None  # local time the task started running

    def first(self) -> float:
        return 0.0 if self.sent is None else self.plan.delay(0.0)

    def after(self, status: TaskStatus | None, now: float) -> float:
        if status is None:  # the poll failed: back off
            return self.plan.delay(None)
        if isinstance(status, Pending):  # queued (again): re-anchor when it starts
            self._start = None
            return self.plan.delay(None)
        if self._start is None:
            self._start = self._anchor(status, now)
            self.plan.reset()
        return self.plan.delay(now - self._start)

    def _anchor(self, status: TaskStatus, now: float) -> float:
        started_at: datetime | None = getattr(status, "started_at", None)
        if self.sent is not None and started_at is not None and status.created_at is not None:
            queued = (started_at - status.created_at).total_seconds()
            return self.sent + max(0.0, queued)
        if started_at is not None:  # re-attached: trust the wall clock roughly
            return now - max(0.0, (self.wall_now() - started_at).total_seconds())
        return self.sent if self.sent is not None else now
