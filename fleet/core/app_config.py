"""The app config document (`GET/PATCH /config`): its sections, their defaults, how a
PATCH is checked and merged, and the typed settings the rest of the code reads.

The document is stored as JSON (`store/app_config.py`) and shown with every default filled
in, in Fleet's shape. A PATCH names sections and fields; each field has a kind that its
value must match exactly (no coercion: `"true"` is not a boolean), and a key this server does
not know is refused with the key's dotted name instead of being kept or ignored, so a typo in
a GitOps file cannot silently leave a setting unchanged. Objects merge field by field; a
field whose value is a map of the user's own keys (`features.additional_queries`) is
replaced whole. Sections are a registry: a feature that brings settings adds a `Section`.
Pure data and functions.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from enum import Enum
from typing import Any
from urllib.parse import urlsplit

from fleet.core.errors import BadRequest, ValidationFailed


class Kind(Enum):
    BOOL = "a boolean"
    INT = "an integer"
    STR = "a string"
    QUERIES = "an object of query names to SQL (or null)"  # replaced whole
    OVERRIDES = "an object of detail query names to SQL or null"  # replaced whole


@dataclass(frozen=True)
class Section:
    name: str
    fields: Mapping[str, tuple[Kind, Any]]  # field: (kind, default)
    check: Callable[[Mapping[str, Any]], None] = lambda _merged: None  # after the merge
    aliases: tuple[str, ...] = ()  # older names a PATCH may still use


def _check_server_settings(values: Mapping[str, Any]) -> None:
    url = values["server_url"]
    parts = urlsplit(url)
    if url and (parts.scheme not in ("http", "https") or not parts.netloc):
        raise ValidationFailed("server_url must be an http(s) URL",
                               name="server_settings.server_url")
    if values["query_report_cap"] < 0:
        raise ValidationFailed("query_report_cap must not be negative",
                               name="server_settings.query_report_cap")


def _check_host_expiry(values: Mapping[str, Any]) -> None:
    if values["host_expiry_enabled"] and values["host_expiry_window"] <= 0:
        raise ValidationFailed("host expiry window must be a positive number of days",
                               name="host_expiry_settings.host_expiry_window")


SECTIONS: tuple[Section, ...] = (
    Section("org_info", {
        "org_name": (Kind.STR, ""), "org_logo_url": (Kind.STR, ""),
        "org_logo_url_light_background": (Kind.STR, ""), "contact_url": (Kind.STR, ""),
    }),
    Section("server_settings", {
        "server_url": (Kind.STR, ""), "enable_analytics": (Kind.BOOL, False),
        "live_query_disabled": (Kind.BOOL, False), "query_reports_disabled": (Kind.BOOL, False),
        "scripts_disabled": (Kind.BOOL, False), "ai_features_disabled": (Kind.BOOL, False),
        "deferred_save_host": (Kind.BOOL, False), "query_report_cap": (Kind.INT, 1000),
    }, _check_server_settings),
    Section("host_expiry_settings", {
        "host_expiry_enabled": (Kind.BOOL, False), "host_expiry_window": (Kind.INT, 0),
    }, _check_host_expiry),
    Section("features", {
        "enable_host_users": (Kind.BOOL, True), "enable_software_inventory": (Kind.BOOL, True),
        "additional_queries": (Kind.QUERIES, None), "detail_query_overrides": (Kind.OVERRIDES, {}),
    }, aliases=("host_settings",)),
)
BY_NAME = {s.name: s for s in SECTIONS}
ALIASES = {alias: s.name for s in SECTIONS for alias in s.aliases}
INT_MAX = 2**31 - 1  # what Fleet's int fields hold


def full(stored: Mapping[str, Any]) -> dict[str, Any]:
    """Every section with every field: the stored values over the defaults (a stored key
    no section knows, written by an older version, is kept as it is)."""
    out = {k: copy.deepcopy(v) for k, v in stored.items() if k not in BY_NAME}
    for section in SECTIONS:
        saved = stored.get(section.name)
        saved = saved if isinstance(saved, Mapping) else {}
        out[section.name] = {name: copy.deepcopy(saved.get(name, default))
                             for name, (_kind, default) in section.fields.items()}
    return out


def _text(value: Any) -> bool:
    """A string the database can store (a lone surrogate, valid in JSON, is not)."""
    if not isinstance(value, str):
        return False
    try:
        value.encode()
    except UnicodeEncodeError:
        return False
    return True


def _check_kind(where: str, kind: Kind, value: Any) -> None:
    ok: bool
    if kind is Kind.BOOL:
        ok = isinstance(value, bool)
    elif kind is Kind.INT:
        ok = isinstance(value, int) and not isinstance(value, bool) \
            and -INT_MAX <= value <= INT_MAX
    elif kind is Kind.STR:
        ok = _text(value)
    elif kind is Kind.QUERIES:
        ok = value is None or (isinstance(value, dict) and all(
            _text(k) and k and _text(v) and v.strip() for k, v in value.items()))
    else:
        ok = isinstance(value, dict) and all(
            _text(k) and (v is None or _text(v)) for k, v in value.items())
    if not ok:
        raise ValidationFailed(f"{where} must be {kind.value}", name=where)


def merged(stored: Mapping[str, Any], patch: Any) -> dict[str, Any]:
    """The document after `patch` (raises BadRequest for an unknown key, ValidationFailed
    for a value of the wrong kind or a rule a section checks); `stored` is not changed."""
    if not isinstance(patch, dict):
        raise BadRequest("the body must be a JSON object")
    doc = full(stored)
    for key, values in patch.items():
        key = str(key)
        section = BY_NAME.get(ALIASES.get(key) or key)
        if section is None:
            raise BadRequest(f"unsupported key provided: {key!r}", name=key)
        name = section.name
        if values is None:
            continue  # as Fleet: a null section leaves it unchanged
        if not isinstance(values, dict):
            raise ValidationFailed(f"{key} must be an object", name=key)
        for field_name, value in values.items():
            spec = section.fields.get(field_name)
            if spec is None:
                raise BadRequest(f"unsupported key provided: '{key}.{field_name}'",
                                 name=f"{key}.{field_name}")
            _check_kind(f"{name}.{field_name}", spec[0], value)
            doc[name][field_name] = copy.deepcopy(value)
    for section in SECTIONS:
        section.check(doc[section.name])
    return doc


@dataclass(frozen=True, slots=True)
class Features:
    """`features`, as the agent path reads them."""

    enable_host_users: bool = True
    enable_software_inventory: bool = True
    additional_queries: Mapping[str, str] = field(default_factory=dict)
    detail_query_overrides: Mapping[str, str | None] = field(default_factory=dict)

    def enabled(self, flag: str) -> bool:
        """Whether the `features.*` flag a detail query names is on ("" = always)."""
        return not flag or bool(getattr(self, flag))


@dataclass(frozen=True, slots=True)
class HostExpiry:
    enabled: bool = False
    window_days: int = 0


@dataclass(frozen=True, slots=True)
class Settings:
    """The parts of the document the server acts on (built once per load, cached)."""

    features: Features = Features()
    host_expiry: HostExpiry = HostExpiry()


def settings(stored: Mapping[str, Any]) -> Settings:
    doc = full(stored)
    f, h = doc["features"], doc["host_expiry_settings"]
    return Settings(
        Features(bool(f["enable_host_users"]), bool(f["enable_software_inventory"]),
                 dict(f["additional_queries"] or {}), dict(f["detail_query_overrides"] or {})),
        HostExpiry(bool(h["host_expiry_enabled"]), int(h["host_expiry_window"])))
