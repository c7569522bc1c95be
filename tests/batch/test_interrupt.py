"""An interrupted sweep lets go of its ledger before the call returns."""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from batch.fakeapi import API_KEY, BASE_URL, WORKSPACE, Behaviour, FakeAPI

from webtask_frames import AsyncClient, Client, run_batch, run_batch_async
from webtask_frames._batch.ledger import Ledger
from webtask_frames._batch.plan import build_plan

GRID = {"i": [0, 1, 2]}


def reopen(ledger: Path) -> None:
    """Open the ledger as a re-run would: raises LedgerLockedError while it is held."""
    with Ledger.open(ledger, build_plan("T", GRID, reuse_key="k")) as book:
        assert book.attempts()  # the interrupted run's submission is recorded


@pytest.mark.parametrize("clock", ["real"], indirect=True)
def test_ctrl_c_in_a_sync_sweep_releases_the_ledger_before_it_returns(
    fake: FakeAPI, tmp_path: Path
) -> None:
    fake.script = lambda body, occ: Behaviour(duration=60.0)

    def ctrl_c(body: dict[str, Any], n: int) -> None:
        if n == 1:
            os.kill(os.getpid(), signal.SIGINT)  # a real Ctrl-C: wakes the blocked main thread
        return None

    fake.start_fault = ctrl_c
    ledger = tmp_path / "sweep.db"
    with Client(
        api_key=API_KEY,
        workspace_id=WORKSPACE,
        base_url=BASE_URL,
        transport=fake.transport(),
        poll_min_s=0.01,
        poll_max_s=0.05,
    ) as client:
        with pytest.raises(KeyboardInterrupt):
            run_batch("T", GRID, reuse_key="k", ledger=ledger, client=client, progress=False)
        reopen(ledger)  # at once: no LedgerLockedError


def test_a_canceled_async_sweep_releases_the_ledger(
    fake: FakeAPI, make_client: Callable[..., AsyncClient], tmp_path: Path
) -> None:
    fake.script = lambda body, occ: Behaviour(duration=60.0)
    ledger = tmp_path / "sweep.db"

    async def go() -> None:
        started = asyncio.Event()
        fake.start_fault = lambda body, n: started.set()  # the handler runs on this loop
        async with make_client() as client:
            sweep = asyncio.ensure_future(
                run_batch_async(
                    "T", GRID, reuse_key="k", ledger=ledger, client=client, progress=False
                )
            )
            await started.wait()
            sweep.cancel()
            with pytest.raises(asyncio.CancelledError):
                await sweep
            reopen(ledger)

    asyncio.run(go())
