"""`fleetctl apply -f FILE` / `delete -f FILE`: upload YAML specs, or delete what they name,
one `kind` per entry of `KINDS`.

The whole file is parsed and validated before anything is sent, so a typo in the last
document does not leave the server half-updated. Specs are then applied kind by kind in the
order of `KINDS`, which is their dependency order (as in Fleet: labels before packs, teams
before team queries). A new kind is one `SpecKind` entry: its parser, its apply call and its
place in that order (and its delete call, if the kind can be deleted by name).
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from fleetctl.client import APIError, FleetClient
from fleetctl.context import load_context
from fleetctl.errors import CLIError

Spec = dict[str, Any]  # one document's `spec`, as validated and sent

# The fields of a query spec Fleet accepts, with their YAML types.
QUERY_FIELDS: dict[str, type] = {
    "name": str, "query": str, "description": str, "team": str, "interval": int,
    "observer_can_run": bool, "automations_enabled": bool, "platform": str,
    "min_osquery_version": str, "logging": str, "discard_data": bool,
}
REQUIRED_QUERY_FIELDS = ("name", "query")


def _type_name(kind: type) -> str:
    return {str: "a string", int: "an integer", bool: "true or false",
            list: "a list"}[kind]


def _query_spec(spec: dict[str, Any], where: str) -> dict[str, Any]:
    return _checked_fields(spec, where, QUERY_FIELDS, REQUIRED_QUERY_FIELDS)


# The fields of a label spec, with their YAML types (`id` and `label_type` are what `get
# labels` prints: accepted so its output applies back).
LABEL_FIELDS: dict[str, type] = {
    "name": str, "description": str, "query": str, "platform": str,
    "label_membership_type": str, "hosts": list, "label_type": str, "id": int,
}


def _checked_fields(spec: dict[str, Any], where: str, known: dict[str, type],
                    required: tuple[str, ...]) -> dict[str, Any]:
    """Check each field's type here, where the file and document can still be named."""
    out: dict[str, Any] = {}
    for key, value in spec.items():
        if value is None and key not in required:
            continue  # `description:` with nothing after it means "not set"
        kind = known.get(key)
        if kind is None:
            raise CLIError(f"{where}: unknown field spec.{key} (known: {', '.join(known)})")
        # YAML booleans are ints to Python; an interval of `true` is still wrong.
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            raise CLIError(f"{where}: spec.{key} must be {_type_name(kind)}")
        out[key] = value
    for key in required:
        if not out.get(key):
            raise CLIError(f"{where}: spec.{key} is required")
    return out


def _label_spec(spec: dict[str, Any], where: str) -> dict[str, Any]:
    out = _checked_fields(spec, where, LABEL_FIELDS, ("name",))
    if not all(isinstance(h, str) for h in out.get("hosts", [])):
        raise CLIError(f"{where}: spec.hosts must be a list of hostnames")
    if out.get("label_membership_type") not in (None, "dynamic", "manual"):
        raise CLIError(f"{where}: spec.label_membership_type must be dynamic or manual")
    out.pop("id", None)
    return out


def _secrets_spec(spec: dict[str, Any], where: str) -> dict[str, Any]:
    secrets = spec.get("secrets")
    if not isinstance(secrets, list) or not secrets:
        raise CLIError(f"{where}: spec.secrets must be a list of {{secret: ...}}")
    for n, item in enumerate(secrets):
        if not isinstance(item, dict) or not item.get("secret"):
            raise CLIError(f"{where}: spec.secrets[{n}] must be a mapping with a 'secret'")
        if not isinstance(item["secret"], str):
            raise CLIError(f"{where}: spec.secrets[{n}].secret must be a string")
    return {"secrets": [{"secret": s["secret"]} for s in secrets]}


def _apply_queries(client: FleetClient, specs: list[Spec]) -> str:
    client.apply_query_specs(specs)
    return f"applied {len(specs)} queries"


def _apply_labels(client: FleetClient, specs: list[Spec]) -> str:
    client.apply_label_specs(specs)
    return f"applied {len(specs)} labels"


def _delete_queries(client: FleetClient, specs: list[Spec]) -> str:
    for spec in specs:
        client.delete_query(spec["name"])
    return f"deleted {len(specs)} queries"


def _delete_labels(client: FleetClient, specs: list[Spec]) -> str:
    for spec in specs:
        client.delete_label(spec["name"])
    return f"deleted {len(specs)} labels"


# The app config's read-only keys: `get config` prints them, so `apply` of that output
# leaves them out instead of sending what the server refuses.
READ_ONLY_CONFIG = ("license", "logging", "update_interval")


def _config_spec(spec: dict[str, Any], where: str) -> dict[str, Any]:
    for section, values in spec.items():
        if values is not None and not isinstance(values, dict):
            raise CLIError(f"{where}: spec.{section} must be a mapping")
    return {k: v for k, v in spec.items() if k not in READ_ONLY_CONFIG}


def _apply_config(client: FleetClient, specs: list[Spec], *, dry_run: bool = False) -> str:
    for spec in specs:  # in file order: a later document changes what an earlier set
        client.modify_app_config(spec, dry_run=dry_run)
    return "would've applied fleet config" if dry_run else "applied fleet config"


def _apply_enroll_secrets(client: FleetClient, specs: list[Spec]) -> str:
    # Each enroll_secret spec replaces the whole global set, so the last one wins.
    client.apply_enroll_secret_spec(specs[-1])
    return "applied enroll secrets"


@dataclass(frozen=True, slots=True)
class SpecKind:
    """One `kind:` that `apply` accepts."""

    names: tuple[str, ...]  # the `kind:` values that select it
    plural: str  # what the output calls a group of them ("enroll secrets")
    parse: Callable[[Spec, str], Spec]  # (spec, where in the file) -> the body to send
    apply: Callable[[FleetClient, list[Spec]], str]  # sends them; returns the `[+]` line
    delete: Callable[[FleetClient, list[Spec]], str] | None = None  # `delete -f`, by name


# In dependency order: `apply` sends each kind's specs after those of the kinds above it.
KINDS: tuple[SpecKind, ...] = (
    # `report` is the name newer Fleet releases use for saved queries.
    SpecKind(("config",), "config", _config_spec, _apply_config),
    SpecKind(("label",), "labels", _label_spec, _apply_labels, _delete_labels),
    SpecKind(("query", "report"), "queries", _query_spec, _apply_queries, _delete_queries),
    SpecKind(("enroll_secret",), "enroll secrets", _secrets_spec, _apply_enroll_secrets),
)
KINDS_BY_NAME: dict[str, SpecKind] = {name: kind for kind in KINDS for name in kind.names}

# The specs of one file by kind, in `KINDS` order.
SpecGroup = dict[SpecKind, list[Spec]]


def parse_specs(path: str) -> SpecGroup:
    """Read a multi-document YAML file into validated specs grouped by kind."""
    if Path(path).suffix.lower() not in (".yml", ".yaml"):
        raise CLIError(f"{path}: only .yml and .yaml files are supported")
    try:
        text = Path(path).read_text()
    except OSError as exc:
        raise CLIError(f"could not read {path}: {exc.strerror or exc}") from None
    try:
        documents = list(yaml.safe_load_all(text))
    except yaml.YAMLError as exc:
        raise CLIError(f"failed to parse {path}: {' '.join(str(exc).split())}") from None

    found: SpecGroup = {}
    for number, doc in enumerate(documents, start=1):
        if doc is None:  # empty document, e.g. a leading or trailing `---`
            continue
        where = f"{path}: document {number}"
        if not isinstance(doc, dict):
            raise CLIError(f"{where}: expected a mapping with apiVersion, kind and spec")
        name = doc.get("kind")
        if not name:
            raise CLIError(f"{where}: missing 'kind'")
        kind = KINDS_BY_NAME.get(name)
        if kind is None:
            raise CLIError(
                f"{where}: unknown kind {name!r} (supported: {', '.join(KINDS_BY_NAME)})"
            )
        spec = doc.get("spec")
        if not isinstance(spec, dict):
            raise CLIError(f"{where}: missing 'spec' for kind {name!r}")
        spec_name = spec.get("name")
        named = (f", name {json.dumps(spec_name, ensure_ascii=False)}"
                 if isinstance(spec_name, str) else "")
        found.setdefault(kind, []).append(kind.parse(spec, f"{where} (kind {name}{named})"))
    if not found:
        raise CLIError(f"no specs found in {path}")
    return {kind: found[kind] for kind in KINDS if kind in found}


def apply(args: argparse.Namespace) -> int:
    group = parse_specs(args.file)
    if args.dry_run:
        # As in Go fleetctl, dry runs are only meaningful for config and team specs: the
        # server checks a config without saving it.
        for kind in [k for k in group if k.apply is not _apply_config]:
            print(f"[!] ignoring {kind.plural}, dry run mode only supported for 'config' and "
                  "'team' specs")
            del group[kind]
        if not group:
            return 0

    with FleetClient(load_context(args.config, args.context), debug=args.debug) as client:
        for kind, specs in group.items():
            try:
                done = _apply_config(client, specs, dry_run=True) \
                    if args.dry_run else kind.apply(client, specs)
            except APIError as exc:
                raise CLIError(f"applying {kind.plural}: {exc}") from None
            print(f"[+] {done}")
    return 0


def delete(args: argparse.Namespace) -> int:
    """`fleetctl delete -f FILE`: delete what the file's specs name (labels, queries)."""
    group = parse_specs(args.file)
    unsupported = [kind.plural for kind in group if kind.delete is None]
    if unsupported:
        raise CLIError(f"delete is not supported for {', '.join(unsupported)}")
    with FleetClient(load_context(args.config, args.context), debug=args.debug) as client:
        # Reverse dependency order: what uses a label goes before the label.
        for kind, specs in reversed(group.items()):
            assert kind.delete is not None
            try:
                done = kind.delete(client, specs)
            except APIError as exc:
                raise CLIError(f"deleting {kind.plural}: {exc}") from None
            print(f"[-] {done}")
    return 0
