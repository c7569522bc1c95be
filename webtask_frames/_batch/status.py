"""Item states of a batch run: the ``status`` column of the tasks table.

The engine sets them and ``BatchResult`` reports them; both import them from here.
``ItemStatus`` is a ``str`` enum, so the tasks table holds the plain values.

Example:
    >>> ItemStatus.IN_FLIGHT == "in-flight"
    True
"""

from __future__ import annotations

from enum import StrEnum

__all__ = ["ItemStatus"]


class ItemStatus(StrEnum):
    """Where one grid item stands.

    ``planned``: not submitted yet; ``running``: holds a slot (submitted or re-attached);
    ``succeeded``: rows collected; ``failed``: final failure; ``skipped``: never run (the
    batch stopped, or the run ended first); ``ambiguous``: a start request may have
    created a task whose id is unknown; ``in-flight``: given up on while it may still run
    server-side (re-run with the ledger to re-attach).
    """

    PLANNED = "planned"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    SKIPPED = "skipped"
    AMBIGUOUS = "ambiguous"
    IN_FLIGHT = "in-flight"
