"""An in-process sandbox and clients on its ASGI transport, for tests above the protocol.

The sandbox and the clients share one ``StepClock``: a poll's sleep moves the sandbox's
time too, so tasks finish as soon as a client has waited long enough, without real
waiting. Each test scripts the result it needs with the sandbox's own behaviour fields
(``data``, ``file_body``, ``outcome``, ``duration_s``, ...), for every task or by task text.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from stepclock import StepClock

from webtask_frames import AsyncClient, Client
from webtask_frames.sandbox import Sandbox, TaskOverride
from webtask_frames.sandbox._state import Task

EPOCH = 1_779_192_000.0  # 2026-05-19T12:00:00Z: fixed timestamps


@dataclass
class Service:
    """One sandbox, its clock, and what it saw."""

    sb: Sandbox
    clock: StepClock = field(repr=False)

    def client(self) -> AsyncClient:
        """An ``AsyncClient`` on the sandbox, polling fast on the shared clock."""
        client = AsyncClient(
            api_key=self.sb.api_key,
            workspace_id=self.sb.workspace_id,
            base_url=self.sb.asgi_base_url,
            transport=self.sb.transport(),
            poll_min_s=0.01,
            poll_max_s=0.02,
        )
        client.clock = self.clock
        return client

    def sync_client(self) -> Client:
        """The sync facade on the same sandbox and clock."""
        client = Client(
            api_key=self.sb.api_key,
            workspace_id=self.sb.workspace_id,
            base_url=self.sb.asgi_base_url,
            transport=self.sb.transport(),
            poll_min_s=0.01,
            poll_max_s=0.02,
        )
        client.async_client.clock = self.clock
        return client

    def calls(self, endpoint: str) -> int:
        """Requests the sandbox received on ``start``, ``result`` or ``download``."""
        return int(self.sb.stats()[f"{endpoint}_calls"])

    @property
    def ids(self) -> list[str]:
        """The tasks the sandbox accepted, in order."""
        return self.sb.state.task_ids()

    def task(self, index: int = 0) -> Task:
        """The server's record of the ``index``-th task (request, cost, times)."""
        task = self.sb.state.get_task(self.ids[index])
        assert task is not None
        return task


MakeService = Callable[..., Service]


def service_factory() -> MakeService:
    """A ``make_service(*overrides, **behaviour)``: a sandbox whose tasks finish at once.

    ``behaviour`` (e.g. ``data=ROWS``) applies to every task; ``overrides`` (mappings or
    ``TaskOverride``) come first, e.g. ``{"task_contains": "slow", "duration_s": 3600}``.
    Sandbox options go in ``options``.
    """

    def factory(
        *overrides: Mapping[str, Any] | TaskOverride,
        options: Mapping[str, Any] | None = None,
        **behaviour: Any,
    ) -> Service:
        clock = StepClock()
        settings: dict[str, Any] = {
            "seed": 1,
            "epoch": EPOCH,
            "duration_s": 0.0,
            "start_latency_s": 0.0,
            "duration_jitter": 0.0,
            **(options or {}),
        }
        overrides_all = (*overrides, TaskOverride(**behaviour))
        sb = Sandbox(clock=clock, overrides=overrides_all, **settings)
        return Service(sb, clock)

    return factory
