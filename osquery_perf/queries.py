"""Answering distributed and scheduled queries without SQLite.

Fleet's queries are recognised by name first (``fleet_detail_query_<name>``, labels,
policies), as Fleet's own osquery-perf does. Anything else goes through a deliberately loose
evaluator: it finds the first table after a top-level ``FROM``, projects plain columns and
aliases, honours ``count(*)``, ``LIMIT`` and simple ``WHERE`` conjunctions
(``col = 'x' AND col LIKE 'y%'``), and otherwise returns every row. Parsing is cached per SQL
string because thousands of agents receive the same queries.
"""

from __future__ import annotations

import re
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from typing import NamedTuple

from osquery_perf.tables import Ctx, table_rows, uptime_rows, visible
from osquery_perf.templates import Row


class Answer(NamedTuple):
    """One query's outcome as reported in a distributed write."""

    rows: list[Row]
    status: int = 0
    message: str = ""


ONE_ROW = [{"1": "1"}]

# --- parsing -----------------------------------------------------------------------------------
_WORD = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_IDENT = r'(?:[A-Za-z_]\w*\.)?"?([A-Za-z_]\w*)"?'
_LITERAL = r"'(?:[^']|'')*'|-?\d+(?:\.\d+)?|true|false"
_COND = re.compile(
    rf"^{_IDENT}\s*(=|==|!=|<>|>=|<=|>|<|not\s+like|like)\s*({_LITERAL})$", re.I | re.S)
_IN = re.compile(rf"^{_IDENT}\s+(not\s+)?in\s*\((.*)\)$", re.I | re.S)
_ALIAS = re.compile(r"^(.*?)\s+(?:as\s+)?\"?([A-Za-z_]\w*)\"?$", re.I | re.S)
_COUNT = re.compile(r"^count\s*\(\s*(?:\*|1|distinct\s+\w+|\w+)\s*\)$", re.I)
_CLAUSES = ("where", "group", "order", "limit", "having", "union")

Cond = Callable[[Row], bool]


@dataclass(frozen=True, slots=True)
class Item:
    """One SELECT list entry: ``kind`` is all | col | const | count | expr."""

    kind: str
    source: str
    out: str


@dataclass(frozen=True, slots=True)
class ParsedQuery:
    table: str | None
    items: tuple[Item, ...]
    where: tuple[Cond, ...] | None  # None: no WHERE, or one we cannot evaluate
    limit: int | None
    from_clause: bool


def _top_level(sql: str) -> list[tuple[int, str]]:
    """(offset, lower-cased word) of every word outside quotes and parentheses."""
    words: list[tuple[int, str]] = []
    depth, i, n = 0, 0, len(sql)
    while i < n:
        c = sql[i]
        if c in "'\"`":
            end = sql.find(c, i + 1)
            i = n if end < 0 else end + 1
            continue
        if c == "(":
            depth += 1
        elif c == ")":
            depth -= 1
        elif depth == 0 and (c.isalpha() or c == "_"):
            m = _WORD.match(sql, i)
            assert m is not None
            words.append((i, m.group().lower()))
            i = m.end()
            continue
        i += 1
    return words


def _split_commas(text: str) -> list[str]:
    parts, depth, quote, start = [], 0, "", 0
    for i, c in enumerate(text):
        if quote:
            quote = "" if c == quote else quote
        elif c in "'\"`":
            quote = c
        elif c == "(":
            depth += 1
        elif c == ")":
            depth -= 1
        elif c == "," and depth == 0:
            parts.append(text[start:i].strip())
            start = i + 1
    parts.append(text[start:].strip())
    return parts


def _literal(text: str) -> str:
    low = text.lower()
    if low in ("true", "false"):
        return "1" if low == "true" else "0"
    if text.startswith("'"):
        return text[1:-1].replace("''", "'")
    return text


def _item(text: str) -> Item:
    if text == "*" or text.endswith(".*"):
        return Item("all", "", "")
    expr, out = text, text
    m = _ALIAS.match(text)
    if m and not re.fullmatch(_LITERAL, text, re.I) and not re.fullmatch(_IDENT, text):
        expr, out = m.group(1).strip(), m.group(2)
    ident = re.fullmatch(_IDENT, expr)
    if ident:
        return Item("col", ident.group(1), out if out != expr else ident.group(1))
    if re.fullmatch(_LITERAL, expr, re.I):
        return Item("const", _literal(expr), out)
    if _COUNT.match(expr):
        return Item("count", "", out)
    return Item("expr", "", out)


def _number(value: str) -> float | None:
    try:
        return float(value)
    except ValueError:
        return None


def _condition(text: str) -> Cond | None:
    m = _IN.match(text)
    if m:
        column, negate = m.group(1), bool(m.group(2))
        values = {_literal(v.strip()) for v in _split_commas(m.group(3))}
        return lambda row: (row.get(column, "") in values) != negate
    m = _COND.match(text)
    if not m:
        return None
    column, op, want = m.group(1), " ".join(m.group(2).lower().split()), _literal(m.group(3))
    if op.endswith("like"):
        pattern = re.compile(
            "".join(".*" if c == "%" else "." if c == "_" else re.escape(c) for c in want),
            re.I | re.S)
        negate = op.startswith("not")
        return lambda row: bool(pattern.fullmatch(row.get(column, ""))) != negate
    if op in ("=", "=="):
        return lambda row: _compare(row.get(column, ""), want) == 0
    if op in ("!=", "<>"):
        return lambda row: _compare(row.get(column, ""), want) != 0
    sign = {">": (1,), "<": (-1,), ">=": (0, 1), "<=": (-1, 0)}[op]
    return lambda row: _compare(row.get(column, ""), want) in sign


def _compare(have: str, want: str) -> int:
    a, b = _number(have), _number(want)
    if a is not None and b is not None:
        return (a > b) - (a < b)
    return (have > want) - (have < want)


def _where(text: str) -> tuple[Cond, ...] | None:
    words = _top_level(text)
    if any(w == "or" for _, w in words):
        return None
    cuts = [off for off, w in words if w == "and"]
    bounds = [0, *cuts]
    parts = [text[a + (3 if a else 0):b].strip() for a, b in zip(bounds, [*cuts, len(text)],
                                                                   strict=True)]
    conds = [_condition(p) for p in parts]
    if any(c is None for c in conds):
        return None
    return tuple(c for c in conds if c is not None)


@lru_cache(maxsize=4096)
def parse(sql: str) -> ParsedQuery:
    """Loosely parse one SELECT statement."""
    text = re.sub(r"--[^\n]*", " ", sql).strip().rstrip(";").strip()
    words = _top_level(text)
    starts = [(off, w) for off, w in words if w in ("from", *_CLAUSES)]
    select_end = starts[0][0] if starts else len(text)
    head = re.match(r"\s*select\s+(?:distinct\s+)?", text, re.I)
    select = text[head.end() if head else 0:select_end]
    items = tuple(_item(p) for p in _split_commas(select) if p)

    def clause(name: str) -> str | None:
        for k, (off, w) in enumerate(starts):
            if w == name:
                end = starts[k + 1][0] if k + 1 < len(starts) else len(text)
                return text[off + len(name):end].strip()
        return None

    source = clause("from")
    table = None
    if source is not None:
        m = _WORD.match(source)
        table = m.group().lower() if m else None
    where_text = clause("where")
    limit_text = clause("limit")
    limit = int(limit_text) if limit_text and limit_text.isdigit() else None
    return ParsedQuery(table, items, _where(where_text) if where_text else None, limit,
                       source is not None)


# --- evaluation --------------------------------------------------------------------------------
def _filter(query: ParsedQuery, rows: list[Row]) -> list[Row]:
    if query.where:
        conds = query.where
        rows = [row for row in rows if all(c(row) for c in conds)]
    return rows


def _project(items: tuple[Item, ...], rows: list[Row]) -> list[Row]:
    if any(i.kind == "count" for i in items):
        first = rows[0] if rows else {}
        return [_row(items, first, str(len(rows)))]
    if len(items) == 1 and items[0].kind == "all":
        return rows
    return [_row(items, row, "") for row in rows]


def _row(items: tuple[Item, ...], row: Row, count: str) -> Row:
    out: Row = {}
    for item in items:
        if item.kind == "all":
            out.update(row)
        elif item.kind == "col":
            out[item.out] = row.get(item.source, "")
        elif item.kind == "const":
            out[item.out] = item.source
        elif item.kind == "count":
            out[item.out] = count
        else:
            out[item.out] = ""
    return out


def run_sql(sql: str, ctx: Ctx) -> Answer:
    """Evaluate ``sql`` against the host's fake tables."""
    query = parse(sql)
    if query.table is None:
        if query.from_clause:  # FROM a subquery or join we cannot follow
            return Answer([])
        return Answer([_row(query.items, {}, "1")])
    rows = table_rows(query.table, ctx)
    if rows is None:
        return Answer([], 1, f"no such table: {query.table}")
    rows = _project(query.items, _filter(query, rows))
    return Answer(rows[: query.limit] if query.limit is not None else rows)


def discovery_has_rows(sql: str, ctx: Ctx) -> bool:
    """Whether a discovery query returns rows; what we cannot evaluate counts as a row."""
    query = parse(sql)
    if query.table is None:
        return True
    rows = table_rows(query.table, ctx)
    if rows is None:
        return True
    return bool(_filter(query, rows))


# --- Fleet naming conventions ------------------------------------------------------------------
_IGNORED_SHELLS = ("/usr/bin/false", "/bin/false", "/usr/sbin/nologin", "/sbin/nologin",
                   "/sbin/shutdown", "/sbin/halt")


def _users(ctx: Ctx) -> list[Row]:
    return [
        {"uid": u["uid"], "username": u["username"], "type": u["type"],
         "groupname": u["groupname"], "shell": u["shell"]}
        for u in ctx.host.users
        if u["shell"] not in _IGNORED_SHELLS and u["type"] != "special"
        and not u["username"].startswith("_") and not u["username"].endswith("$")
    ]


def _disk_space(ctx: Ctx) -> list[Row]:
    host = ctx.host
    return [{
        "percent_disk_space_available": f"{host.disk_free_gb / host.disk_total_gb * 100:.2f}",
        "gigs_disk_space_available": f"{host.disk_free_gb:.2f}",
        "gigs_total_disk_space": f"{host.disk_total_gb:.2f}",
    }]


def _flags(ctx: Ctx) -> list[Row]:
    return [{"name": k, "value": v} for k, v in ctx.flags.items()]


def _network(ctx: Ctx) -> list[Row]:
    return [{"address": ctx.host.primary_ip, "mac": ctx.host.primary_mac}]


DETAIL_QUERIES: dict[str, Callable[[Ctx], list[Row]]] = {
    "os_version": lambda c: [visible(c.host.os_version)],
    "osquery_info": lambda c: [c.host.osquery_info],
    "system_info": lambda c: [c.host.system_info],
    "uptime": uptime_rows,
    "osquery_flags": _flags,
    "network_interface_unix": _network,
    "network_interface_windows": _network,
    "disk_space_unix": _disk_space,
    "disk_space_windows": _disk_space,
    "users": _users,
    "software_linux": lambda c: c.host.software_rows(),
    "software_macos": lambda c: c.host.software_rows(),
    "software_windows": lambda c: c.host.software_rows(),
}
DETAIL_PREFIX = "fleet_detail_query_"
LABEL_PREFIX = "fleet_label_query_"
POLICY_PREFIX = "fleet_policy_query_"
NO_POLICIES = "fleet_no_policies_wildcard"


def policy_passes(name: str, sql: str, host_uuid: str, pass_prob: float) -> bool:
    """Fleet osquery-perf convention: ``SELECT 1`` passes, ``SELECT 0`` fails, other SQL
    passes with ``pass_prob``, decided by a stable hash of host and policy."""
    norm = " ".join(sql.lower().rstrip().rstrip(";").split())
    if norm in ("select 1", "select 0"):
        return norm == "select 1"
    return zlib.crc32(f"{host_uuid}/{name}".encode()) / 0xFFFFFFFF < pass_prob


def answer(name: str, sql: str, ctx: Ctx, *, policy_pass_prob: float = 0.9) -> Answer:
    """Answer one distributed query the way the simulated host would."""
    if name.startswith(DETAIL_PREFIX):
        fn = DETAIL_QUERIES.get(name[len(DETAIL_PREFIX):])
        return Answer(fn(ctx) if fn else [])
    if name.startswith(LABEL_PREFIX) or name == NO_POLICIES:
        return Answer(ONE_ROW)
    if name.startswith(POLICY_PREFIX):
        ok = policy_passes(name, sql, ctx.host.uuid, policy_pass_prob)
        return Answer(ONE_ROW if ok else [])
    return run_sql(sql, ctx)
