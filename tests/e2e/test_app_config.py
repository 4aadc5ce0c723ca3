"""The app config against a real server with fleetctl: `get config` prints a `kind: config`
spec that `apply -f` takes back, `--dry-run` checks without saving, and a spec the server
does not fully understand is refused with its reason and changes nothing."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import Fleetctl
from tests.e2e.test_live_query import setup_fleet

pytestmark = pytest.mark.e2e

CHANGE = """\
apiVersion: v1
kind: config
spec:
  features:
    enable_software_inventory: false
  host_expiry_settings:
    host_expiry_enabled: true
    host_expiry_window: 14
"""


def current(fleetctl: Fleetctl) -> dict[str, Any]:
    r = fleetctl.run("get", "config", "--json")
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert doc["kind"] == "config"
    spec: dict[str, Any] = doc["spec"]
    return spec


def test_fleetctl_get_and_apply_config(server_overrides: dict[str, Any], start_server: Any,
                                      fleetctl: Fleetctl, tmp_path: Path) -> None:
    server = start_server(server_overrides, "--dev")
    setup_fleet(fleetctl, server)
    r = fleetctl.run("get", "config")
    assert r.returncode == 0, r.stderr
    assert "kind: config" in r.stdout and "org_name: Acme" in r.stdout
    before = current(fleetctl)
    assert before["features"]["enable_software_inventory"] is True

    change = tmp_path / "config.yml"
    change.write_text(CHANGE)
    r = fleetctl.run("apply", "-f", str(change), "--dry-run")
    assert (r.returncode, r.stdout) == (0, "[+] would've applied fleet config\n"), r.stderr
    assert current(fleetctl) == before
    r = fleetctl.run("apply", "-f", str(change))
    assert (r.returncode, r.stdout) == (0, "[+] applied fleet config\n"), r.stderr
    after = current(fleetctl)
    assert after["features"]["enable_software_inventory"] is False
    assert after["host_expiry_settings"] == {"host_expiry_enabled": True,
                                             "host_expiry_window": 14}
    assert after["org_info"] == before["org_info"]

    # What `get config` prints applies back unchanged (its read-only keys are left out).
    printed = tmp_path / "printed.yml"
    printed.write_text(fleetctl.run("get", "config").stdout)
    r = fleetctl.run("apply", "-f", str(printed))
    assert r.returncode == 0, r.stdout + r.stderr
    assert current(fleetctl) == after

    bad = tmp_path / "bad.yml"
    bad.write_text(CHANGE.replace("enable_software_inventory: false",
                                  "enable_software_inventory: false\n    enable_magic: true"))
    r = fleetctl.run("apply", "-f", str(bad))
    assert r.returncode != 0
    assert "features.enable_magic" in r.stdout + r.stderr
    assert current(fleetctl) == after
