"""A batch run in its own process, for the kill -9 tests.

Usage: python sweep_runner.py BASE_URL API_KEY WORKSPACE LEDGER N_ITEMS N_KEYS [--resubmit]
Prints one JSON line with the outcome when it finishes (it may be killed before).
"""

from __future__ import annotations

import json
import sys

from webtask_frames import Client, run_batch


def grid(n_items: int, n_keys: int) -> list[dict[str, object]]:
    return [{"company": f"c{i:04d}", "source": f"s{i % n_keys:02d}"} for i in range(n_items)]


def main(argv: list[str]) -> int:
    base_url, api_key, workspace, ledger, n_items, n_keys = argv[:6]
    client = Client(
        api_key=api_key,
        workspace_id=workspace,
        base_url=base_url,
        poll_min_s=0.01,
        poll_max_s=0.1,
    )
    with client:
        result = run_batch(
            "List the companies of this source",
            grid(int(n_items), int(n_keys)),
            reuse_key="src_{source}",
            client=client,
            ledger=ledger,
            resubmit_ambiguous="--resubmit" in argv,
            progress=False,
        )
    tasks = result.tasks_arrow()
    print(
        json.dumps(
            {
                "ok": result.ok,
                "counts": result.counts(),
                "records": result.n_records,
                "ambiguous_attempts": sum(tasks["ambiguous_attempts"].to_pylist()),
                "attempts": sum(tasks["attempts"].to_pylist()),
                "webtask_ids": tasks["webtask_id"].to_pylist(),
                "requests": result.requests,
            }
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
