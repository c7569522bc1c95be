"""Priors: what a web task is assumed to cost and take before any run has been seen.

A dry run with no ledger history (and the first submissions of a sweep) has nothing to
learn from, so estimates start from these per-model figures. They are deliberately
rough, order-of-magnitude assumptions, not measurements or prices: each is the AI cost
(USD) and duration (seconds) of one *reuse* run, a run that replays a reuseKey's saved
automation. A key's first run explores the site and builds the automation; it is assumed
to cost and take ``COLD_FACTOR`` times as much (the same factor the scheduler assumes
until it has measured one). Models differ about as their token prices do (haiku : sonnet
: opus = 1 : 3 : 15). As soon as real runs are recorded (in the ledger, or during the
sweep), their figures replace the prior.
"""

from __future__ import annotations

from dataclasses import dataclass

from .estimate import DEFAULT_COLD_FACTOR

__all__ = ["COLD_FACTOR", "DEFAULT_MODEL", "PRIORS", "ModelPrior", "prior_estimate", "prior_for"]

# A key's first run (building its automation) against a later reuse run.
COLD_FACTOR = DEFAULT_COLD_FACTOR
# The model the service uses when a start request names none.
DEFAULT_MODEL = "haiku"


@dataclass(frozen=True, slots=True)
class ModelPrior:
    """Assumed AI cost (USD) and duration (seconds) of one reuse run of a model."""

    model: str
    cost_usd: float
    duration_s: float

    def describe(self) -> str:
        """One line for summaries, e.g. ``prior for haiku: $0.04 and 60s a reuse run...``."""
        return (
            f"prior for {self.model}: ${self.cost_usd:.2f} and {self.duration_s:.0f}s a reuse "
            f"run, x{COLD_FACTOR:g} for a key's first run; no history yet"
        )


# Priors, not prices: see the module docstring.
HAIKU_PRIOR = ModelPrior("haiku", cost_usd=0.04, duration_s=60.0)
SONNET_PRIOR = ModelPrior("sonnet", cost_usd=0.12, duration_s=75.0)
OPUS_PRIOR = ModelPrior("opus", cost_usd=0.60, duration_s=90.0)
PRIORS = {p.model: p for p in (HAIKU_PRIOR, SONNET_PRIOR, OPUS_PRIOR)}


def prior_for(model: str | None) -> ModelPrior:
    """The prior of ``model`` (the service default, haiku, when None).

    Example:
        >>> prior_for(None).model, prior_for("opus").cost_usd
        ('haiku', 0.6)
    """
    return PRIORS.get(model or DEFAULT_MODEL, PRIORS[DEFAULT_MODEL])


def prior_estimate(model: str | None, *, cold: bool) -> tuple[float, float]:
    """``(cost_usd, duration_s)`` assumed for one run of ``model``; a key's first run
    (``cold``) at ``COLD_FACTOR`` times a reuse run.

    Example:
        >>> prior_estimate("haiku", cold=True)
        (0.08, 120.0)
    """
    prior, factor = prior_for(model), (COLD_FACTOR if cold else 1.0)
    return prior.cost_usd * factor, prior.duration_s * factor
