"""`fleetctl apply -f FILE`: upload `kind: query` and `kind: enroll_secret` YAML specs.

The whole file is parsed and validated before anything is sent, so a typo in the last
document does not leave the server half-updated.
"""

from __future__ import annotations

import argparse
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
        where = f"document {number} of {path}"
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
        if kind in QUERY_KINDS:
            if not spec.get("name") or not spec.get("query"):
                raise CLIError(f"{where}: a query spec needs both 'name' and 'query'")
            group.queries.append(spec)
        else:
            secrets = spec.get("secrets")
            if not isinstance(secrets, list) or not all(
                isinstance(s, dict) and s.get("secret") for s in secrets
            ):
                raise CLIError(f"{where}: enroll_secret spec needs 'secrets: [{{secret: ...}}]'")
            # Each enroll_secret spec replaces the whole global set, so the last one wins.
            group.enroll_secret = {"secrets": [{"secret": s["secret"]} for s in secrets]}
        found += 1
    if not found:
        raise CLIError(f"no specs found in {path}")
    return group


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
