"""Per-key estimates of run durations and costs, learned from what a run observes.

A key's first ("cold") run builds its automation and takes about twice as long as the
later ("warm") runs that reuse it; the cold/warm ratio is learned once both are seen.
Keys never seen fall back to the mean over keys. Free of I/O and of any clock.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass, field

__all__ = ["DEFAULT_COLD_FACTOR", "Estimate", "Estimator"]

DEFAULT_COLD_FACTOR = 2.0


@dataclass(frozen=True, slots=True)
class Estimate:
    """A predicted value and the half-width of its plausible range.

    ``source`` says where it came from: ``key`` (this key's runs of the same kind),
    ``key-scaled`` (this key's runs of the other kind, scaled by the cold/warm ratio),
    ``global`` (other keys) or ``prior`` (nothing observed yet).
    """

    mean: float
    spread: float
    source: str

    @property
    def low(self) -> float:
        return max(0.0, self.mean - self.spread)


@dataclass
class _Stat:
    """Running count, sum, min and max of one key's runs of one kind (O(1) to update)."""

    n: int = 0
    total: float = 0.0
    lo: float = math.inf
    hi: float = -math.inf

    def add(self, value: float) -> None:
        self.n += 1
        self.total += value
        self.lo = min(self.lo, value)
        self.hi = max(self.hi, value)

    @property
    def mean(self) -> float:
        return self.total / self.n


@dataclass
class _Samples:
    cold: _Stat = field(default_factory=_Stat)
    warm: _Stat = field(default_factory=_Stat)

    def of(self, cold: bool) -> _Stat:
        return self.cold if cold else self.warm


class Estimator:
    """Per-key cold/warm estimates of a non-negative quantity (seconds, dollars).

    Each key keeps running figures (count, sum, min, max), so an observation costs O(1);
    derived figures (the cold factor, the mean over keys, each key's estimate) are
    memoised and invalidated by the next observation, so a scheduler asking for the same
    estimate at every decision pays for it once per observation, not once per question.

    Example:
        >>> est = Estimator()
        >>> est.observe("yc", 100.0, cold=True)
        >>> est.estimate("yc", cold=False).mean   # a warm run: about half a cold one
        50.0
        >>> est.observe("yc", 40.0, cold=False)
        >>> est.estimate("yc", cold=False).mean
        40.0
        >>> est.estimate("other", cold=True).mean  # unknown key: the mean over keys
        100.0
    """

    def __init__(
        self,
        *,
        cold_factor: float = DEFAULT_COLD_FACTOR,
        relative_spread: float = 0.1,
        prior: float | None = None,
    ) -> None:
        self.default_cold_factor = cold_factor
        self.relative_spread = relative_spread
        self.prior = prior
        self._by_key: dict[str | None, _Samples] = {}
        self._n = 0
        self.version = 0  # bumped by every observation: memoised figures are stale
        self._factor: float | None = None
        self._memo: dict[tuple[str | None, bool], Estimate | None] = {}

    # -- learning ---------------------------------------------------------------------

    def observe(self, key: str | None, value: float | None, *, cold: bool) -> None:
        """Record one observation; ``None``, negative and non-finite values are ignored."""
        if value is None or not math.isfinite(value) or value < 0:
            return
        self._by_key.setdefault(key, _Samples()).of(cold).add(float(value))
        self._n += 1
        self.version += 1
        self._factor = None
        self._memo.clear()

    def count(self, key: str | None = None) -> int:
        """Observations for ``key`` (all keys when None)."""
        if key is None:
            return self._n
        s = self._by_key.get(key)
        return 0 if s is None else s.cold.n + s.warm.n

    def knows(self, key: str | None) -> bool:
        """Whether ``key`` has observations of its own (None: never)."""
        return key is not None and key in self._by_key

    def known_keys(self) -> list[str]:
        """Keys with observations of their own."""
        return [k for k in self._by_key if k is not None]

    @property
    def empty(self) -> bool:
        return not self._by_key

    def cold_factor(self) -> float:
        """Cold/warm ratio: the median over keys that have both, else the default."""
        if self._factor is None:
            ratios = [
                s.cold.mean / s.warm.mean
                for k, s in self._by_key.items()
                if k is not None and s.cold.n and s.warm.n and s.warm.mean > 0
            ]
            self._factor = statistics.median(ratios) if ratios else self.default_cold_factor
        return self._factor

    # -- predicting -------------------------------------------------------------------

    def _own(self, stat: _Stat) -> Estimate:
        mean = stat.mean
        floor = self.relative_spread * mean
        if stat.n == 1:
            return Estimate(mean, 1.5 * floor, "key")
        half_range = (stat.hi - stat.lo) / 2
        return Estimate(mean, max(floor, half_range), "key")

    def _key_mean(self, samples: _Samples, cold: bool, factor: float) -> float | None:
        same = samples.of(cold)
        if same.n:
            return same.mean
        other = samples.of(not cold)
        if other.n:
            return other.mean * (factor if cold else 1 / factor)
        return None

    def estimate(self, key: str | None, *, cold: bool) -> Estimate | None:
        """The expected value for ``key``'s next run (cold or warm); None if nothing known."""
        memo_key = (key if key in self._by_key else None, cold)
        try:
            return self._memo[memo_key]
        except KeyError:
            found = self._memo[memo_key] = self._estimate(memo_key[0], cold)
            return found

    def _estimate(self, key: str | None, cold: bool) -> Estimate | None:
        factor = self.cold_factor()
        samples = self._by_key.get(key) if key is not None else None
        if samples is not None:
            if samples.of(cold).n:
                return self._own(samples.of(cold))
            mean = self._key_mean(samples, cold, factor)
            if mean is not None:
                return Estimate(mean, 2.5 * self.relative_spread * mean, "key-scaled")
        means = [
            m for s in self._by_key.values() if (m := self._key_mean(s, cold, factor)) is not None
        ]
        if means:
            mean = statistics.fmean(means)
            spread = max(max(means) - mean, mean - min(means), 2.5 * self.relative_spread * mean)
            return Estimate(mean, spread, "global")
        if self.prior is not None:
            mean = self.prior * (factor if cold else 1.0)
            return Estimate(mean, mean, "prior")
        return None

    def value(self, key: str | None, *, cold: bool, default: float = 1.0) -> float:
        """``estimate(...).mean`` or ``default`` (scaled by the cold factor) when unknown."""
        est = self.estimate(key, cold=cold)
        if est is not None:
            return est.mean
        return default * (self.cold_factor() if cold else 1.0)
