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


def clean_row(row: Mapping[Any, Any]) -> tuple[dict[str, str], list[str]]:
    """A row of string columns, and the columns whose values had to be dropped."""
    if type(row) is dict and _plain_ascii(row):
        return row, []  # what osquery sends; software lists are hundreds of these
    out: dict[str, str] = {}
    dropped: list[str] = []
    for key, value in row.items():
        text = as_column_text(value)
        if text is None or not isinstance(key, str):
            dropped.append(short(str(key)))
            continue
        out[clean_text(key)] = text
    return out, dropped


def _plain_ascii(row: dict[Any, Any]) -> bool:
    """Whether every key and value is an ASCII string (two C-level joins, no loop)."""
    try:
        return "".join(row).isascii() and "".join(row.values()).isascii()
    except TypeError:  # a key or value that is not a string
        return False


def clean_rows(value: Any) -> tuple[list[dict[str, str]], list[str]]:
    """Rows of an answer, and the columns dropped from them: osquery sends `""` or null for
    none, so anything but a list counts as no rows; items that are not objects are dropped
    (reported as `<row>`)."""
    if not isinstance(value, list):
        return [], []
    rows: list[dict[str, str]] = []
    dropped: list[str] = []
    for item in value:
        if not isinstance(item, Mapping):
            dropped.append("<row>")
            continue
        row, bad = clean_row(item)
        rows.append(row)
        dropped.extend(bad)
    return rows, dropped


def short(text: str, limit: int = 64) -> str:
    """`text` fit for a log line: agent-chosen names can be megabytes long."""
    text = clean_text(text)
    return text if len(text) <= limit else text[:limit] + "..."


def describe_dropped(dropped: Mapping[str, list[str]]) -> str:
    """`query.column, ...` for one warning line about a request's dropped values."""
    names = sorted({f"{short(where)}.{column}" for where, columns in dropped.items()
                    for column in columns})
    more = f" and {len(names) - 8} more" if len(names) > 8 else ""
    return ", ".join(names[:8]) + more


# Deeper JSON is cut (to null) by clean_json: orjson encodes at most 255 levels, and walking
# the 1,024 levels it decodes would exhaust the interpreter's recursion limit.
MAX_DEPTH = 64


def clean_json(value: Any, depth: int = 0) -> Any:
    """Any JSON value made encodable: text without lone surrogates, integers beyond 64 bits
    as their decimal string, non-finite floats as null, nesting past MAX_DEPTH as null."""
    if isinstance(value, str):
        return clean_text(value)
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, int):
        return value if INT64_MIN <= value <= INT64_MAX else str(value)
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if depth >= MAX_DEPTH:
        return None
    if isinstance(value, Mapping):
        return {clean_text(str(k)): clean_json(v, depth + 1) for k, v in value.items()}
    if isinstance(value, list):
        return [clean_json(v, depth + 1) for v in value]
    return None
