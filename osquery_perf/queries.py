"""Answering distributed and scheduled queries without SQLite.

Fleet's queries are recognised by name first (``fleet_detail_query_<name>``, labels,
policies), as Fleet's own osquery-perf does; label queries other than ``SELECT 1`` and
``SELECT 0`` are evaluated against the host's tables, so label memberships are real.
Anything else goes through a deliberately loose evaluator: it reads the tables of a
top-level ``FROM`` (one table, or a join of tables with commas or
``[LEFT|INNER|CROSS] JOIN ... ON/USING``), projects plain and qualified columns and
aliases, honours ``count(*)``, ``LIMIT`` and simple ``WHERE``/``ON`` conjunctions
(``col = 'x' AND a.pid = b.pid AND col LIKE 'y%'``), and otherwise returns every row. SQL that
SQLite could not prepare fails with SQLite's message, as osqueryd reports it. Parsing is
cached per SQL string because thousands of agents receive the same queries.
"""

from __future__ import annotations

import re
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from typing import NamedTuple

from osquery_perf import software
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
_IDENT = r'(?:([A-Za-z_]\w*)\.)?"?([A-Za-z_]\w*)"?'  # groups: qualifier, column
_LITERAL = r"'(?:[^']|'')*'|-?\d+(?:\.\d+)?|true|false"
_COND = re.compile(
    rf"^{_IDENT}\s*(=|==|!=|<>|>=|<=|>|<|not\s+like|like)\s*({_LITERAL})$", re.I | re.S)
_SAME = re.compile(rf"^{_IDENT}\s*(=|==|!=|<>)\s*{_IDENT}$", re.I | re.S)
_IN = re.compile(rf"^{_IDENT}\s+(not\s+)?in\s*\((.*)\)$", re.I | re.S)
_ALIAS = re.compile(r"^(.*?)\s+(?:as\s+)?\"?([A-Za-z_]\w*)\"?$", re.I | re.S)
_COUNT = re.compile(r"^count\s*\(\s*(?:\*|1|distinct\s+\w+|\w+)\s*\)$", re.I)
_SOURCE = re.compile(
    r'^"?([A-Za-z_]\w*)"?(?:\s+(?:as\s+)?(?!(?:on|using)\b)"?([A-Za-z_]\w*)"?)?\s*(.*)$',
    re.I | re.S)
_CLAUSES = ("where", "group", "order", "limit", "having", "union")
_STATEMENTS = ("select", "with", "values", "pragma", "explain")
_JOIN_WORDS = ("natural", "left", "inner", "cross", "outer", "join")
MAX_JOIN_ROWS = 100_000  # a cross product of big tables stops growing here

Cond = Callable[[Row], bool]


@dataclass(frozen=True, slots=True)
class Item:
    """One SELECT list entry: ``kind`` is all | col | const | count | expr; an ``all`` with a
    ``source`` is ``alias.*``."""

    kind: str
    source: str
    out: str


@dataclass(frozen=True, slots=True)
class Source:
    """One table of the FROM clause, joined to the tables before it."""

    table: str
    alias: str
    outer: bool = False  # LEFT JOIN: keep left rows without a match
    on: tuple[Cond, ...] | None = None  # None: no ON, or one we cannot evaluate
    using: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class ParsedQuery:
    sources: tuple[Source, ...]  # empty: no FROM, or a FROM we cannot follow (subquery)
    items: tuple[Item, ...]
    where: tuple[Cond, ...] | None  # None: no WHERE, or one we cannot evaluate
    limit: int | None
    from_clause: bool
    error: str = ""  # SQLite's message for SQL it could not prepare

    @property
    def joined(self) -> bool:
        return len(self.sources) > 1


def _top_level(sql: str) -> list[tuple[int, str]]:
    """(offset, token) of every lower-cased word, comma and opening parenthesis outside
    quotes and parentheses."""
    words: list[tuple[int, str]] = []
    depth, i, n = 0, 0, len(sql)
    while i < n:
        c = sql[i]
        if c in "'\"`":
            end = sql.find(c, i + 1)
            i = n if end < 0 else end + 1
            continue
        if c == "(":
            if depth == 0:
                words.append((i, c))
            depth += 1
        elif c == ")":
            depth -= 1
        elif depth == 0 and c == ",":
            words.append((i, c))
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


def _near(text: str) -> str:
    """SQLite's error for an unexpected token at the start of ``text``."""
    text = text.lstrip()
    if not text:
        return "incomplete input"
    m = _WORD.match(text)
    return f'near "{m.group() if m else text[0]}": syntax error'


def _lexical_error(sql: str) -> str:
    """Unterminated quotes and unbalanced parentheses, as SQLite reports them."""
    depth, i, n = 0, 0, len(sql)
    while i < n:
        c = sql[i]
        if c in "'\"`":
            end = sql.find(c, i + 1)
            if end < 0:
                return f'unrecognized token: "{sql[i:]}"'
            i = end + 1
            continue
        if c == "(":
            depth += 1
        elif c == ")":
            depth -= 1
            if depth < 0:
                return 'near ")": syntax error'
        i += 1
    return "incomplete input" if depth else ""


def _literal(text: str) -> str:
    low = text.lower()
    if low in ("true", "false"):
        return "1" if low == "true" else "0"
    if text.startswith("'"):
        return text[1:-1].replace("''", "'")
    return text


def _key(qualifier: str | None, column: str, joined: bool) -> str:
    """How a column is looked up: ``alias.column`` in a join, else the plain name."""
    return f"{qualifier.lower()}.{column}" if qualifier and joined else column


def _item(text: str, joined: bool) -> Item:
    if text == "*":
        return Item("all", "", "")
    if text.endswith(".*"):
        return Item("all", text[:-2].strip().strip('"').lower() if joined else "", "")
    expr, out = text, text
    m = _ALIAS.match(text)
    if m and not re.fullmatch(_LITERAL, text, re.I) and not re.fullmatch(_IDENT, text):
        expr, out = m.group(1).strip(), m.group(2)
    ident = re.fullmatch(_IDENT, expr)
    if ident:
        column = ident.group(2)
        return Item("col", _key(ident.group(1), column, joined), out if out != expr else column)
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


def _condition(text: str, joined: bool) -> Cond | None:
    m = _IN.match(text)
    if m:
        column, negate = _key(m.group(1), m.group(2), joined), bool(m.group(3))
        values = {_literal(v.strip()) for v in _split_commas(m.group(4))}
        return lambda row: (row.get(column, "") in values) != negate
    m = _SAME.match(text)
    if m and not re.fullmatch(_LITERAL, m.group(5), re.I):  # column = column (a join key)
        left, right = _key(m.group(1), m.group(2), joined), _key(m.group(4), m.group(5), joined)
        equal = m.group(3) in ("=", "==")
        return lambda row: (_compare(row.get(left, ""), row.get(right, "")) == 0) == equal
    m = _COND.match(text)
    if not m:
        return None
    column = _key(m.group(1), m.group(2), joined)
    op, want = " ".join(m.group(3).lower().split()), _literal(m.group(4))
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


def _where(text: str, joined: bool) -> tuple[Cond, ...] | None:
    words = _top_level(text)
    if any(w == "or" for _, w in words):
        return None
    cuts = [off for off, w in words if w == "and"]
    bounds = [0, *cuts]
    parts = [text[a + (3 if a else 0):b].strip() for a, b in zip(bounds, [*cuts, len(text)],
                                                                   strict=True)]
    conds = [_condition(p, joined) for p in parts]
    if any(c is None for c in conds):
        return None
    return tuple(c for c in conds if c is not None)


def _from_pieces(text: str) -> list[tuple[str, bool]] | str:
    """Split a FROM clause at commas and JOINs: (table text, is a LEFT JOIN) each, or
    SQLite's error when a table is missing."""
    pieces: list[tuple[str, bool]] = []
    start, outer, in_join = 0, False, False
    for off, word in [*_top_level(text), (len(text), ",")]:
        if word == "," or (word in _JOIN_WORDS and not in_join):
            piece = text[start:off].strip()
            if not piece:
                return _near(text[off:])
            pieces.append((piece, outer))
            start, outer, in_join = off + len(word), word == "left", word not in (",", "join")
        elif in_join and word in _JOIN_WORDS:
            outer = outer or word == "left"
            start = off + len(word)
            in_join = word != "join"
        elif in_join:  # a table right after modifiers without JOIN, e.g. "left time"
            return _near(text[off:])
    return pieces


def _sources(text: str) -> tuple[Source, ...] | str | None:
    """The FROM clause's tables; None for one we cannot follow (a subquery or table
    function), a string for a syntax error."""
    pieces = _from_pieces(text)
    if isinstance(pieces, str):
        return pieces
    joined = len(pieces) > 1
    sources = []
    for piece, outer in pieces:
        if piece.startswith("("):
            return None
        m = _SOURCE.match(piece)
        if m is None:
            return _near(piece)
        table, alias, rest = m.group(1).lower(), (m.group(2) or m.group(1)).lower(), m.group(3)
        on: tuple[Cond, ...] | None = None
        using: tuple[str, ...] = ()
        low = rest.lower()
        if low.startswith("on") and not _WORD.match(low, 2):
            if not rest[2:].strip():
                return "incomplete input"
            on = _where(rest[2:].strip(), joined)
        elif low.startswith("using"):
            inner = rest[5:].strip()
            if not (inner.startswith("(") and inner.endswith(")")):
                return _near(inner)
            using = tuple(c.strip().strip('"') for c in inner[1:-1].split(","))
        elif rest.startswith("("):
            return None  # a table-valued function call
        elif rest:
            return _near(rest)
        sources.append(Source(table, alias, outer, on, using))
    return tuple(sources)


def _statement_error(text: str, select: str, items: list[str], starts: list[tuple[int, str]],
                     select_end: int) -> str:
    """What SQLite says about the statement's shape (keyword, select list, empty clauses)."""
    if not text:
        return ""
    first = _WORD.match(text)
    if first is None or first.group().lower() not in _STATEMENTS:
        return _near(text)
    if first.group().lower() != "select":
        return ""
    if not select.strip() or not items[-1]:
        return _near(text[select_end:])
    if any(not item for item in items):
        return 'near ",": syntax error'
    for k, (off, word) in enumerate(starts):
        end = starts[k + 1][0] if k + 1 < len(starts) else len(text)
        if word != "union" and not text[off + len(word):end].strip():
            return _near(text[end:])
    return ""


@lru_cache(maxsize=4096)
def parse(sql: str) -> ParsedQuery:
    """Loosely parse one SELECT statement; reject what SQLite could not prepare."""
    text = re.sub(r"--[^\n]*", " ", sql).strip().rstrip(";").strip()
    words = [(off, w) for off, w in _top_level(text) if w not in (",", "(")]
    starts = [(off, w) for off, w in words if w in ("from", *_CLAUSES)]
    select_end = starts[0][0] if starts else len(text)
    head = re.match(r"select\b\s*(?:distinct\s+)?", text, re.I)
    select = text[head.end():select_end] if head else text[:select_end]
    parts = _split_commas(select)
    error = _lexical_error(text) or _statement_error(text, select, parts, starts, select_end)
    if error:
        return ParsedQuery((), (), None, None, False, error)

    def clause(name: str) -> str | None:
        for k, (off, w) in enumerate(starts):
            if w == name:
                end = starts[k + 1][0] if k + 1 < len(starts) else len(text)
                return text[off + len(name):end].strip()
        return None

    source = clause("from")
    if text[:4].lower() == "with":  # common table expressions: beyond this evaluator
        return ParsedQuery((), (), None, None, True)
    sources = _sources(source) if source is not None else ()
    if isinstance(sources, str):
        return ParsedQuery((), (), None, None, False, sources)
    sources = sources or ()
    joined = len(sources) > 1
    items = tuple(_item(p, joined) for p in parts if p)
    where_text = clause("where")
    limit_text = clause("limit")
    limit = int(limit_text) if limit_text and limit_text.isdigit() else None
    return ParsedQuery(sources, items, _where(where_text, joined) if where_text else None,
                       limit, source is not None)


# --- evaluation --------------------------------------------------------------------------------
def _join(sources: tuple[Source, ...], ctx: Ctx) -> list[Row] | str:
    """Rows of the joined tables: plain column names (a later table's value wins, as in
    osquery's row maps) plus ``alias.column`` keys for qualified references; or the name of
    a table this platform does not have."""
    joined: list[Row] = [{}]
    for src in sources:
        rows = table_rows(src.table, ctx)
        if rows is None:
            return src.table
        blank = dict.fromkeys(rows[0], "") if rows else {}
        out: list[Row] = []
        for left in joined:
            matched = False
            for right in rows:
                if src.using and any(left.get(c, "") != right.get(c, "") for c in src.using):
                    continue
                row = {**left, **right}
                row.update({f"{src.alias}.{k}": v for k, v in right.items()})
                if src.on and not all(c(row) for c in src.on):
                    continue
                out.append(row)
                matched = True
            if src.outer and not matched:
                out.append({**blank, **left})
            if len(out) >= MAX_JOIN_ROWS:
                break
        joined = out
    return joined


def _filter(query: ParsedQuery, rows: list[Row]) -> list[Row]:
    if query.where:
        conds = query.where
        rows = [row for row in rows if all(c(row) for c in conds)]
    return rows


def _plain(row: Row) -> Row:
    return {k: v for k, v in row.items() if "." not in k}


def _project(items: tuple[Item, ...], rows: list[Row], joined: bool) -> list[Row]:
    if any(i.kind == "count" for i in items):
        first = rows[0] if rows else {}
        return [_row(items, first, str(len(rows)), joined)]
    if len(items) == 1 and items[0].kind == "all" and not joined:
        return rows
    return [_row(items, row, "", joined) for row in rows]


def _row(items: tuple[Item, ...], row: Row, count: str, joined: bool = False) -> Row:
    out: Row = {}
    for item in items:
        if item.kind == "all":
            if not joined:
                out.update(row)
            elif item.source:
                prefix = item.source + "."
                out.update({k[len(prefix):]: v for k, v in row.items() if k.startswith(prefix)})
            else:
                out.update(_plain(row))
        elif item.kind == "col":
            out[item.out] = row.get(item.source, "")
        elif item.kind == "const":
            out[item.out] = item.source
        elif item.kind == "count":
            out[item.out] = count
        else:
            out[item.out] = ""
    return out


def _rows(query: ParsedQuery, ctx: Ctx) -> list[Row] | str:
    """The rows the FROM clause yields, or the name of a table the platform lacks."""
    if not query.joined:
        rows = table_rows(query.sources[0].table, ctx)
        return query.sources[0].table if rows is None else rows
    return _join(query.sources, ctx)


def run_sql(sql: str, ctx: Ctx) -> Answer:
    """Evaluate ``sql`` against the host's fake tables."""
    query = parse(sql)
    if query.error:
        return Answer([], 1, query.error)
    if not query.sources:
        if query.from_clause:  # FROM a subquery we cannot follow
            return Answer([])
        return Answer([_row(query.items, {}, "1")])
    rows = _rows(query, ctx)
    if isinstance(rows, str):
        return Answer([], 1, f"no such table: {rows}")
    rows = _project(query.items, _filter(query, rows), query.joined)
    return Answer(rows[: query.limit] if query.limit is not None else rows)


def discovery_has_rows(sql: str, ctx: Ctx) -> bool:
    """Whether a discovery query returns rows; SQL that fails to prepare has none, what we
    cannot evaluate counts as a row."""
    query = parse(sql)
    if query.error:
        return False
    if not query.sources:
        return True
    rows = _rows(query, ctx)
    if isinstance(rows, str):
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
    "software_linux": software.detail_rows,
    "software_macos": software.detail_rows,
    "software_windows": software.detail_rows,
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


_WHERE = re.compile(r"\bwhere\b", re.I)
_OR = re.compile(r"\s+or\s+", re.I)


def label_answer(sql: str, ctx: Ctx) -> Answer:
    """A label query: Fleet's osquery-perf convention for `SELECT 1` (member) and `SELECT 0`
    (not), anything else evaluated against the host's own tables, so memberships follow the
    simulated hosts. A WHERE of plain conditions joined by OR (the built-in labels') is the
    union of its branches, which the loose evaluator alone would not narrow at all."""
    text = sql.strip().rstrip(";")
    norm = " ".join(text.lower().split())
    if norm in ("select 1", "select 0"):
        return Answer(ONE_ROW if norm == "select 1" else [])
    head, *where = _WHERE.split(text, maxsplit=1)
    branches = _OR.split(where[0]) if where and "(" not in where[0] else []
    if len(branches) < 2:
        return run_sql(sql, ctx)
    rows: list[Row] = []
    for branch in branches:
        found = run_sql(f"{head} WHERE {branch}", ctx)
        if found.status:
            return found
        rows = rows or found.rows
    return Answer(rows)


def answer(name: str, sql: str, ctx: Ctx, *, policy_pass_prob: float = 0.9) -> Answer:
    """Answer one distributed query the way the simulated host would."""
    if name.startswith(DETAIL_PREFIX):
        fn = DETAIL_QUERIES.get(name[len(DETAIL_PREFIX):])
        return Answer(fn(ctx) if fn else [])
    if name.startswith(LABEL_PREFIX):
        return label_answer(sql, ctx)
    if name == NO_POLICIES:
        return Answer(ONE_ROW)
    if name.startswith(POLICY_PREFIX):
        ok = policy_passes(name, sql, ctx.host.uuid, policy_pass_prob)
        return Answer(ONE_ROW if ok else [])
    return run_sql(sql, ctx)
