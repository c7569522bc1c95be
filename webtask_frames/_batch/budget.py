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

__all__ = ["Budget"]


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

    def reserve(self, item: int, estimate: float) -> None:
        self._held[item] = estimate

    def held(self, item: int) -> float:
        """The reservation ``item`` holds (0 when none)."""
        return self._held.get(item, 0.0)

    def release(self, item: int) -> None:
        self._held.pop(item, None)

    def charge(self, amount: float | None) -> None:
        self.spent += amount or 0.0
