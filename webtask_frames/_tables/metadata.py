"""The one key under which webtask-frames stores its JSON in Arrow schema metadata.

``read_webtask_arrow`` puts the task summary (id, cost, reuse, timings, counts) there and
``BatchResult.to_parquet`` its provenance (task, reuse keys, schema hash, library
version), so a table or a Parquet file says where it came from under one documented key.
Parquet files written before the key was unified used ``b"webtask_frames"``; readers
still accept it.

Example:
    >>> import json, pyarrow as pa
    >>> table = pa.table({"a": [1]}).replace_schema_metadata(
    ...     {METADATA_KEY: json.dumps({"webtask_id": "wt_1"}).encode()})
    >>> read_metadata(table.schema.metadata)
    {'webtask_id': 'wt_1'}
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

__all__ = ["LEGACY_METADATA_KEYS", "METADATA_KEY", "read_metadata"]

METADATA_KEY = b"webtask"
# Older releases wrote Parquet provenance under this key; read, never written.
LEGACY_METADATA_KEYS = (b"webtask_frames",)


def read_metadata(metadata: Mapping[bytes, bytes] | None) -> dict[str, Any]:
    """The JSON object stored under ``METADATA_KEY`` (or a legacy key); ``{}`` if none."""
    if not metadata:
        return {}
    for key in (METADATA_KEY, *LEGACY_METADATA_KEYS):
        raw = metadata.get(key)
        if raw:
            value = json.loads(raw)
            return dict(value) if isinstance(value, Mapping) else {}
    return {}
