"""Secrets out of the data: string values scrubbed before a table lands anywhere.

A server that echoes the API key inside result data (a field, a struct member, a list
item) would otherwise land it in Parquet and DuckDB. ``scrub_table`` masks every
registered secret (``_redact.secrets()``) in every string value, nested ones included,
with Arrow's vectorised ``replace_substring``: no Python loop over rows, and nothing at
all to do (the table returned as is) while no secret is registered.
"""

from __future__ import annotations

import pyarrow as pa
import pyarrow.compute as pc

from .._redact import REDACTED, secrets

__all__ = ["scrub_table"]


def _has_strings(kind: pa.DataType) -> bool:
    if pa.types.is_string(kind) or pa.types.is_large_string(kind):
        return True
    if pa.types.is_dictionary(kind):
        return _has_strings(kind.value_type)
    if pa.types.is_struct(kind):
        return any(_has_strings(kind.field(i).type) for i in range(kind.num_fields))
    if pa.types.is_list(kind) or pa.types.is_large_list(kind):
        return _has_strings(kind.value_type)
    return False


def _scrub_array(array: pa.Array, masks: tuple[str, ...]) -> pa.Array:
    kind = array.type
    if not _has_strings(kind):
        return array
    if array.offset:  # children of a sliced nested array are not sliced: compact first
        array = pa.concat_arrays([array])
    if pa.types.is_string(kind) or pa.types.is_large_string(kind):
        for secret in masks:
            array = pc.replace_substring(array, secret, REDACTED)
        return array
    if pa.types.is_dictionary(kind):
        values = _scrub_array(array.dictionary, masks)
        return pa.DictionaryArray.from_arrays(array.indices, values)
    mask = array.is_null() if array.null_count else None
    if pa.types.is_struct(kind):
        children = [_scrub_array(array.field(i), masks) for i in range(kind.num_fields)]
        return pa.StructArray.from_arrays(children, fields=list(kind), mask=mask)
    values = _scrub_array(array.values, masks)
    return type(array).from_arrays(array.offsets, values, type=kind, mask=mask)


def scrub_table(table: pa.Table) -> pa.Table:
    """``table`` with every registered secret masked in its string values, nested ones
    included (struct fields, list items); the schema (and its metadata) is kept.

    Example:
        >>> from webtask_frames._redact import register_secret
        >>> register_secret("sk_canary_0123456789")
        >>> scrub_table(pa.table({"a": [["x sk_canary_0123456789"]]})).column("a").to_pylist()
        [['x ****']]
    """
    masks = secrets()
    if not masks or not any(_has_strings(f.type) for f in table.schema):
        return table
    columns = [
        pa.chunked_array([_scrub_array(c, masks) for c in column.chunks], type=column.type)
        for column in table.columns
    ]
    return pa.Table.from_arrays(columns, schema=table.schema)
