"""The batch's spending: what was spent, what in-flight tasks may still cost, the limit.

Example:
    >>> b = Budget(limit=1.0)
    >>> b.reserve(0, 0.6)
    >>> b.allows(0.5)          # 0.6 in flight + 0.5 would pass $1
    False
    >>> b.release(0); b.charge(0.6)
    >>> b.allows(0.4), b.allows(0.5)
    (True, False)
"""

from __future__ import annotations

import math
from typing import Any

__all__ = ["Budget", "usable_cost"]


def usable_cost(value: Any) -> float | None:
    """``value`` as a cost if it is a finite, non-negative number; None (unknown) otherwise.

    Example:
        >>> usable_cost(0.5), usable_cost(float("nan")), usable_cost(-1e308), usable_cost("1")
        (0.5, None, None, None)
    """
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) and value >= 0 else None


class Budget:
    """``max_cost_usd`` bookkeeping: ``spent`` plus per-item in-flight estimates.

    ``reserve`` holds an item's estimated cost while its task may run; ``release`` drops
    the hold (terminal, or its slot freed); ``charge`` adds a cost to ``spent`` (a reported
    cost, or an estimate for a task whose submission is ambiguous). ``limit=None`` never
    refuses.
    """

    def __init__(self, limit: float | None, spent: float = 0.0) -> None:
        self.limit = limit
        self.spent = spent
        self._held: dict[int, float] = {}

    @property
    def in_flight(self) -> float:
        """Estimated cost of the tasks that hold a reservation."""
        return sum(self._held.values())

    def allows(self, estimate: float) -> bool:
        """Whether a task estimated at ``estimate`` fits beside spent and in-flight costs."""
        return self.limit is None or self.spent + self.in_flight + estimate <= self.limit

    @property
    def exhausted(self) -> bool:
        """True once ``spent`` reached the limit."""
        return self.limit is not None and self.spent >= self.limit

    def decide(
        self, estimate: float | None, running: int, prior: float = 0.0
    ) -> tuple[float | None, str | None]:
        """``(reservation, stop message)`` for submitting a task estimated at ``estimate``
        (None: no cost seen yet) while ``running`` tasks are in flight.

        The reservation is None to hold the task back; the message is set when the
        budget is exhausted and nothing in flight can free any (the batch stops). With
        no cost known, tasks are probed one at a time, each reserving ``prior`` (the
        model's assumed cost): once something is spent, a probe that the prior says
        would pass the limit stops the batch, so unknown costs cannot run forever.

        Example:
            >>> Budget(limit=1.0, spent=0.8).decide(0.5, running=0)[1]
            'max_cost_usd=$1.00 reached: spent $0.80, the next task is estimated at $0.50'
        """
        if self.limit is None:
            return 0.0, None
        if estimate is None:
            if running:
                return None, None  # no cost seen yet: probe with one task at a time
            if self.exhausted:
                return None, f"the budget of ${self.limit:.2f} is spent (${self.spent:.2f})"
            if self.spent > 0 and not self.allows(prior):
                return None, (
                    f"max_cost_usd=${self.limit:.2f} reached: spent ${self.spent:.2f}, the "
                    f"next task is estimated at ${prior:.2f} (a prior: no cost known yet)"
                )
            return prior, None
        if self.allows(estimate):
            return estimate, None
        if running:
            return None, None
        return None, (
            f"max_cost_usd=${self.limit:.2f} reached: spent ${self.spent:.2f}, the "
            f"next task is estimated at ${estimate:.2f}"
        )

    def reserve(self, item: int, estimate: float) -> None:
        self._held[item] = estimate

    def held(self, item: int) -> float:
        """The reservation ``item`` holds (0 when none)."""
        return self._held.get(item, 0.0)

    def release(self, item: int) -> None:
        self._held.pop(item, None)

    def charge(self, amount: float | None) -> None:
        """Add ``amount`` to ``spent``; an unusable amount (None, NaN, negative) adds 0."""
        self.spent += usable_cost(amount) or 0.0
