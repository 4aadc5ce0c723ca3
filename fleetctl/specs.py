"""`fleetctl apply -f FILE`: upload `kind: query` and `kind: enroll_secret` YAML specs.

The whole file is parsed and validated before anything is sent, so a typo in the last
document does not leave the server half-updated.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from fleetctl.client import APIError, FleetClient
from fleetctl.context import load_context
from fleetctl.errors import CLIError

# `report` is the name newer Fleet releases use for saved queries.
QUERY_KINDS = ("query", "report")
SUPPORTED_KINDS = (*QUERY_KINDS, "enroll_secret")
# The fields of a query spec Fleet accepts, with their YAML types.
QUERY_FIELDS: dict[str, type] = {
    "name": str, "query": str, "description": str, "team": str, "interval": int,
    "observer_can_run": bool, "automations_enabled": bool, "platform": str,
    "min_osquery_version": str, "logging": str, "discard_data": bool,
}
REQUIRED_QUERY_FIELDS = ("name", "query")


@dataclass
class SpecGroup:
    queries: list[dict[str, Any]] = field(default_factory=list)
    enroll_secret: dict[str, Any] | None = None


def parse_specs(path: str) -> SpecGroup:
    """Read a multi-document YAML file into specs grouped by kind."""
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

    group = SpecGroup()
    found = 0
    for number, doc in enumerate(documents, start=1):
        if doc is None:  # empty document, e.g. a leading or trailing `---`
            continue
        where = f"{path}: document {number}"
        if not isinstance(doc, dict):
            raise CLIError(f"{where}: expected a mapping with apiVersion, kind and spec")
        kind = doc.get("kind")
        if not kind:
            raise CLIError(f"{where}: missing 'kind'")
        if kind not in SUPPORTED_KINDS:
            raise CLIError(
                f"{where}: unknown kind {kind!r} (supported: {', '.join(SUPPORTED_KINDS)})"
            )
        spec = doc.get("spec")
        if not isinstance(spec, dict):
            raise CLIError(f"{where}: missing 'spec' for kind {kind!r}")
        name = spec.get("name")
        named = f", name {json.dumps(name, ensure_ascii=False)}" if isinstance(name, str) else ""
        where += f" (kind {kind}{named})"
        if kind in QUERY_KINDS:
            group.queries.append(_query_spec(spec, where))
        else:
            group.enroll_secret = _secrets_spec(spec, where)
        found += 1
    if not found:
        raise CLIError(f"no specs found in {path}")
    return group


def _type_name(kind: type) -> str:
    return {str: "a string", int: "an integer", bool: "true or false"}[kind]


def _query_spec(spec: dict[str, Any], where: str) -> dict[str, Any]:
    """Check each field's type here, where the file and document can still be named."""
    out: dict[str, Any] = {}
    for key, value in spec.items():
        if value is None and key not in REQUIRED_QUERY_FIELDS:
            continue  # `description:` with nothing after it means "not set"
        kind = QUERY_FIELDS.get(key)
        if kind is None:
            raise CLIError(f"{where}: unknown field spec.{key} (known: {', '.join(QUERY_FIELDS)})")
        # YAML booleans are ints to Python; an interval of `true` is still wrong.
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            raise CLIError(f"{where}: spec.{key} must be {_type_name(kind)}")
        out[key] = value
    for key in REQUIRED_QUERY_FIELDS:
        if not out.get(key):
            raise CLIError(f"{where}: spec.{key} is required")
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
    # Each enroll_secret spec replaces the whole global set, so the last one wins.
    return {"secrets": [{"secret": s["secret"]} for s in secrets]}


def apply(args: argparse.Namespace) -> int:
    group = parse_specs(args.file)
    if args.dry_run:
        # As in Go fleetctl, dry runs are only meaningful for config and team specs.
        if group.queries:
            print("[!] ignoring queries, dry run mode only supported for 'config' and 'team' specs")
        if group.enroll_secret is not None:
            print("[!] ignoring enroll secrets, dry run mode only supported for 'config' and "
                  "'team' specs")
        return 0

    with FleetClient(load_context(args.config, args.context), debug=args.debug) as client:
        if group.queries:
            try:
                client.call("POST", "/api/latest/fleet/spec/queries",
                            body={"specs": group.queries})
            except APIError as exc:
                raise CLIError(f"applying queries: {exc}") from None
            print(f"[+] applied {len(group.queries)} queries")
        if group.enroll_secret is not None:
            try:
                client.call("POST", "/api/latest/fleet/spec/enroll_secret",
                            body={"spec": group.enroll_secret})
            except APIError as exc:
                raise CLIError(f"applying enroll secrets: {exc}") from None
            print("[+] applied enroll secrets")
    return 0
