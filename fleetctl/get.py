"""`fleetctl get <kind>`: list or show hosts, labels, software, saved queries and enroll
secrets."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

from fleetctl.client import APIError, FleetClient
from fleetctl.context import load_context
from fleetctl.errors import CLIError
from fleetctl.output import print_spec, render_table

HOSTS_PER_PAGE = 100


def _client(args: argparse.Namespace) -> FleetClient:
    return FleetClient(load_context(args.config, args.context), debug=args.debug)


def _check_format(args: argparse.Namespace) -> None:
    if args.json and args.yaml:
        raise CLIError("can't specify both --json and --yaml")


def get_hosts(args: argparse.Namespace) -> int:
    _check_format(args)
    with _client(args) as client:
        if args.identifier:
            try:
                host = client.get_host_by_identifier(args.identifier)
            except APIError as exc:
                raise CLIError(f"could not get host: {exc}") from None
            print_spec("host", host, as_json=args.json)
            return 0
        try:
            label_id = int(client.get_label_spec(args.label)["id"]) if args.label else None
        except APIError as exc:
            raise CLIError(f"could not get label {args.label!r}: {exc}") from None
        try:
            hosts = _all_hosts(client, label_id)
        except APIError as exc:
            raise CLIError(f"could not list hosts: {exc}") from None

    if args.json or args.yaml:
        for host in hosts:
            print_spec("host", host, as_json=args.json)
        return 0
    if not hosts:
        print("No hosts found")
        return 0
    rows = [
        [
            str(h.get("uuid") or ""),
            str(h.get("display_text") or h.get("display_name") or h.get("hostname") or ""),
            str(h.get("platform") or ""),
            str(h.get("osquery_version") or ""),
            str(h.get("status") or ""),
        ]
        for h in hosts
    ]
    print(render_table(["uuid", "hostname", "platform", "osquery_version", "status"], rows))
    return 0


def _all_hosts(client: FleetClient, label_id: int | None = None) -> list[dict[str, Any]]:
    """Page through `/hosts` (a label's hosts with `label_id`) until a short page, so large
    fleets are listed completely."""
    hosts: list[dict[str, Any]] = []
    page = 0
    while True:
        batch = client.list_hosts(page, HOSTS_PER_PAGE, label_id)
        hosts.extend(batch)
        if len(batch) < HOSTS_PER_PAGE:
            return hosts
        page += 1


def get_software(args: argparse.Namespace) -> int:
    """Software titles (or, with --versions, each version) with their host counts, most
    installed first."""
    _check_format(args)
    kind = "versions" if args.versions else "titles"
    items: list[Any] = []
    with _client(args) as client:
        try:
            page, more = 0, True
            while more:
                batch, more = client.list_software(kind, page, HOSTS_PER_PAGE)
                items.extend(batch)
                page += 1
        except APIError as exc:
            raise CLIError(f"could not list software: {exc}") from None
    if args.json or args.yaml:
        for item in items:
            print_spec("software", item, as_json=args.json)
        return 0
    if not items:
        print("No software found")
        return 0
    if args.versions:
        rows = [[str(s.get("name") or ""), str(s.get("version") or ""),
                 str(s.get("source") or ""), str(len(s.get("vulnerabilities") or [])),
                 str(s.get("hosts_count") or 0)] for s in items]
        print(render_table(["name", "version", "type", "vulnerabilities", "hosts"], rows))
        return 0
    rows = [[str(t.get("name") or ""),
             ", ".join(str(v.get("version") or "") for v in t.get("versions") or []),
             str(t.get("source") or ""), str(t.get("hosts_count") or 0)] for t in items]
    print(render_table(["name", "versions", "type", "hosts"], rows))
    return 0


def get_queries(args: argparse.Namespace) -> int:
    _check_format(args)
    with _client(args) as client:
        if args.name:
            spec = client.get_query_spec(args.name)
            print_spec("query", spec, as_json=args.json)
            return 0
        try:
            specs = client.get_query_specs()
        except APIError as exc:
            raise CLIError(f"could not list queries: {exc}") from None

    if args.json or args.yaml:
        for spec in specs:
            print_spec("query", spec, as_json=args.json)
        return 0
    if not specs:
        print("No queries found")
        return 0
    rows = [[str(s.get("name") or ""), str(s.get("description") or ""),
             str(s.get("query") or "")] for s in specs]
    print(render_table(["name", "description", "query"], rows))
    return 0


def get_labels(args: argparse.Namespace) -> int:
    _check_format(args)
    with _client(args) as client:
        try:
            specs = [client.get_label_spec(args.name)] if args.name else client.get_label_specs()
        except APIError as exc:
            raise CLIError(f"could not get labels: {exc}") from None

    if args.json or args.yaml or args.name:
        for spec in specs:
            print_spec("label", {k: v for k, v in spec.items() if v is not None},
                       as_json=args.json)
        return 0
    rows = [[str(s.get("id") or ""), str(s.get("name") or ""), str(s.get("description") or ""),
             str(s.get("query") or "")] for s in specs]
    print(render_table(["id", "name", "description", "query"], rows))
    return 0


def _get_spec(args: argparse.Namespace, kind: str,
              fetch: Callable[[FleetClient], Any]) -> int:
    """Print one spec document the server gives (`get config`, `get enroll_secret`)."""
    _check_format(args)
    with _client(args) as client:
        spec = fetch(client)
    print_spec(kind, spec, as_json=args.json)
    return 0


def get_config(args: argparse.Namespace) -> int:
    """The app config as a `kind: config` spec (`apply -f` takes it back)."""
    return _get_spec(args, "config", FleetClient.get_app_config)


def get_enroll_secret(args: argparse.Namespace) -> int:
    return _get_spec(args, "enroll_secret", FleetClient.get_enroll_secret_spec)
