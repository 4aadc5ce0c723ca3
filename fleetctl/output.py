"""Printing for `get`: bordered tables and `apiVersion/kind/spec` documents (YAML or JSON).

Layouts follow Go fleetctl so scripts and eyes used to it keep working: tables look like
tablewriter's with row lines (upper-case headers, cells wrapped at 30 columns), JSON is one
compact object per line, and YAML documents each start with `---`.
"""

from __future__ import annotations

import json
import re
import textwrap
from typing import Any

import yaml

API_VERSION = "v1"
_WRAP_WIDTH = 30
_NUMBER = re.compile(r"^-?\d+(\.\d+)?$")


def spec_document(kind: str, spec: Any) -> dict[str, Any]:
    return {"kind": kind, "apiVersion": API_VERSION, "spec": spec}


class _Dumper(yaml.SafeDumper):
    """Dumps multi-line strings (SQL) as readable `|` blocks instead of escaped one-liners."""


def _represent_str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _represent_str)


def to_yaml(document: Any) -> str:
    return yaml.dump(
        document, Dumper=_Dumper, sort_keys=True, default_flow_style=False, allow_unicode=True
    )


def print_spec(kind: str, spec: Any, *, as_json: bool) -> None:
    document = spec_document(kind, spec)
    if as_json:
        print(json.dumps(document, separators=(",", ":"), ensure_ascii=False))
    else:
        print("---\n" + to_yaml(document), end="")


def _header(name: str) -> str:
    return name.replace("_", " ").strip().upper()


def _cell_lines(value: str) -> list[str]:
    lines: list[str] = []
    for line in value.split("\n"):
        lines.extend(textwrap.wrap(line, _WRAP_WIDTH, break_long_words=False) or [""])
    return lines


def render_table(columns: list[str], rows: list[list[str]]) -> str:
    """A tablewriter-style table with a separator line after every row."""
    headers = [_header(c) for c in columns]
    cells = [[_cell_lines(str(v)) for v in row] for row in rows]
    widths = [len(h) for h in headers]
    for row in cells:
        for i, lines in enumerate(row):
            widths[i] = max(widths[i], *(len(line) for line in lines))
    border = "+" + "+".join("-" * (w + 2) for w in widths) + "+"

    def centered(text: str, width: int) -> str:
        gap = width - len(text)
        return " " * (gap // 2) + text + " " * (gap - gap // 2)

    header_line = " | ".join(centered(h, w) for h, w in zip(headers, widths, strict=True))
    out = [border, f"| {header_line} |", border]
    for row in cells:
        height = max(len(lines) for lines in row)
        for n in range(height):
            parts = []
            for lines, width in zip(row, widths, strict=True):
                text = lines[n] if n < len(lines) else ""
                parts.append(text.rjust(width) if _NUMBER.match(text) else text.ljust(width))
            out.append("| " + " | ".join(parts) + " |")
        out.append(border)
    return "\n".join(out)
