"""What an agent sends, made safe to store and to forward.

osquery's results are rows of strings, but a request can hold any JSON: numbers, lists,
objects, integers beyond 64 bits, lone UTF-16 surrogates (valid JSON escapes that no UTF-8
encoder, database driver or orjson accepts). Agent data goes through these functions before
it reaches the store, the broker or a log destination, so that a malformed value is coerced
or dropped instead of failing the whole request (and the live-query answers that came with
it) with a 500. Pure functions; callers decide what to log.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

INT64_MIN, INT64_MAX = -2**63, 2**63 - 1


def clean_text(value: str) -> str:
    """`value` with lone surrogates replaced by U+FFFD (a no-op for ordinary text)."""
    if value.isascii():
        return value
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return value.encode("utf-16", "surrogatepass").decode("utf-16", "replace")
    return value


def as_column_text(value: Any) -> str | None:
    """A row value as osquery would send it (a string), or None when it cannot be one."""
    if isinstance(value, str):
        return clean_text(value)
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, int | float):
        return str(value)
    return None  # null, lists and objects are not column values


def clean_row(row: Mapping[Any, Any]) -> tuple[dict[str, str], int]:
    """A row of string columns, and how many values had to be dropped."""
    out: dict[str, str] = {}
    dropped = 0
    for key, value in row.items():
        text = as_column_text(value)
        if text is None or not isinstance(key, str):
            dropped += 1
            continue
        out[clean_text(key)] = text
    return out, dropped


def clean_rows(value: Any) -> tuple[list[dict[str, str]], int]:
    """Rows of an answer: osquery sends `""` or null for none, so anything but a list counts
    as no rows; items that are not objects are dropped and counted."""
    if not isinstance(value, list):
        return [], 0
    rows: list[dict[str, str]] = []
    dropped = 0
    for item in value:
        if not isinstance(item, Mapping):
            dropped += 1
            continue
        row, bad = clean_row(item)
        rows.append(row)
        dropped += bad
    return rows, dropped


def clean_json(value: Any) -> Any:
    """Any JSON value made encodable: text without lone surrogates, integers beyond 64 bits
    as their decimal string, non-finite floats as null."""
    if isinstance(value, str):
        return clean_text(value)
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, int):
        return value if INT64_MIN <= value <= INT64_MAX else str(value)
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Mapping):
        return {clean_text(str(k)): clean_json(v) for k, v in value.items()}
    if isinstance(value, list):
        return [clean_json(v) for v in value]
    return None
