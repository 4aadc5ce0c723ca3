"""Bounds of request values, derived from the columns they are stored in.

A string longer than its VARCHAR (MySQL `Data too long`) or an integer beyond its column (or
beyond 64 bits, which neither driver can bind) is refused by validation, as a 400/422 naming
the field, instead of failing in the database as a 500. `fits(column)` reads the limit from
the table definition, so the API's limits cannot drift from the schema.
"""

from __future__ import annotations

from typing import Annotated, Any

import annotated_types
import sqlalchemy as sa
from fastapi import Path, Query

from fleet.store.schema import INT64_MAX, max_chars, max_int

# Largest page number or page size: what a signed 64-bit LIMIT/OFFSET can carry.
PAGE_MAX = INT64_MAX


def fits(column: sa.Column[Any]) -> annotated_types.MaxLen | annotated_types.Interval:
    """The constraint keeping a value within `column`: `Annotated[str, fits(users.c.name)]`
    (a maximum length) or `Annotated[int, fits(queries.c.schedule_interval)]` (a range)."""
    if isinstance(column.type, sa.String):
        return annotated_types.MaxLen(max_chars(column))
    top = max_int(column)
    return annotated_types.Interval(ge=-top - 1, le=top)


# An id in a body, a path or a query string (every id column is BIGINT).
Id = Annotated[int, annotated_types.Interval(ge=0, le=INT64_MAX)]
PathId = Annotated[int, Path(ge=0, le=INT64_MAX)]
IdParam = Annotated[int | None, Query(ge=0, le=INT64_MAX)]
