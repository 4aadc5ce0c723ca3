"""The option table: names, precedence, validation and the redacted dump."""

from __future__ import annotations

import argparse
import dataclasses
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from fleet import cli, config


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    config.add_option_flags(parser)
    return parser.parse_args(argv)


def test_names_are_derived_from_the_key() -> None:
    opt = config.OPTIONS_BY_KEY["mysql.address"]
    assert (opt.flag, opt.env) == ("--mysql_address", "FLEET_MYSQL_ADDRESS")


def test_precedence_flag_env_file_default(tmp_path: Path) -> None:
    path = tmp_path / "fleet.yml"
    path.write_text(yaml.safe_dump({"mysql": {"address": "file:3306", "database": "filedb"},
                                    "redis": {"address": "file:6379"},
                                    "server": {"tls": False}}))
    cfg = config.load(parse(["--config", str(path), "--mysql_address", "flag:3306"]),
                      {"FLEET_MYSQL_ADDRESS": "env:3306", "FLEET_REDIS_ADDRESS": "env:6379"})
    assert cfg.mysql.address == "flag:3306"
    assert cfg.redis.address == "env:6379"
    assert cfg.mysql.database == "filedb"
    assert cfg.server.tls is False
    assert cfg.session.duration == 5 * 86400
    assert cfg.sources["mysql.address"] == "flag --mysql_address"


def test_bool_flags_accept_bare_and_explicit_values() -> None:
    assert config.load(parse(["--server_tls=false"]), {}).server.tls is False
    cfg = config.load(parse(["--upgrades_allow_missing_migrations"]), {})
    assert cfg.upgrades.allow_missing_migrations is True


@pytest.mark.parametrize(("argv", "env", "needle"), [
    (["--server_tls", "maybe"], {}, "server.tls"),
    ([], {"FLEET_OSQUERY_NODE_KEY_SIZE": "many"}, "osquery.node_key_size"),
    ([], {"FLEET_SESSION_DURATION": "forever"}, "session.duration"),
    (["--osquery_host_identifier", "mac"], {}, "osquery.host_identifier"),
    (["--server_address", "nowhere"], {}, "server.address"),
    (["--server_url_prefix", "/bad prefix"], {}, "server.url_prefix"),
])
def test_bad_values_name_the_option(argv: list[str], env: dict[str, str], needle: str) -> None:
    with pytest.raises(config.ConfigError, match=needle.replace(".", r"\.")):
        config.load(parse(argv), env)


def test_unknown_file_key_is_rejected(tmp_path: Path) -> None:
    path = tmp_path / "fleet.yml"
    path.write_text("mysql:\n  adress: x\n")
    with pytest.raises(config.ConfigError, match="mysql.adress"):
        config.load(parse(["--config", str(path)]), {})


def test_durations() -> None:
    assert config.parse_duration("1h30m") == 5400
    assert config.parse_duration("500ms") == 0.5
    assert config.parse_duration("120") == 120
    with pytest.raises(ValueError):
        config.parse_duration("1 hour")


def test_config_dump_redacts_secrets(capsys: pytest.CaptureFixture[str],
                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FLEET_MYSQL_PASSWORD", "hunter2")
    assert cli.main(["config_dump", "--redis_address", "r:6379"]) == 0
    out = capsys.readouterr().out
    dumped = yaml.safe_load(out)
    assert dumped["mysql"]["password"] == config.REDACTED
    assert "hunter2" not in out
    assert dumped["redis"]["address"] == "r:6379"
    assert dumped["server"]["address"] == "0.0.0.0:8080"


@pytest.mark.parametrize(("seconds", "text"), [
    (5 * 86400.0, "120h"), (5.0, "5s"), (3600.0, "1h"), (90.0, "1m30s"), (0.0, "0s"),
    (0.5, "500ms"), (5400.5, "1h30m0.5s"),
])
def test_durations_are_shown_go_style_and_read_back(seconds: float, text: str) -> None:
    assert config.format_duration(seconds) == text
    assert config.parse_duration(text) == seconds


@pytest.mark.parametrize("cost", ["3", "32", "100"])
def test_bcrypt_cost_is_range_checked(cost: str) -> None:
    with pytest.raises(config.ConfigError, match=r"auth\.bcrypt_cost .*allowed: 4 to 31"):
        config.load(parse(["--auth_bcrypt_cost", cost]), {})
    assert config.load(parse(["--auth_bcrypt_cost", "31"]), {}).auth.bcrypt_cost == 31


def test_help_shows_metavars_and_readable_defaults() -> None:
    parser = argparse.ArgumentParser()
    config.add_option_flags(parser)
    text = " ".join(parser.format_help().split())  # undo argparse's line wrapping
    for needle in ("--mysql_address HOST:PORT", "--server_address HOST:PORT",
                   "--session_duration DURATION", "session lifetime (e.g. 120h) (default 120h)",
                   "--redis_connect_timeout DURATION", "(default 5s)",
                   "--auth_bcrypt_cost INT", "--sqlite_path PATH", "--server_cert PATH",
                   "--server_tls [BOOL]", "(default true)", "-c PATH, --config PATH",
                   "--osquery_host_identifier {provided,instance,uuid,hostname}"):
        assert needle in text, needle
    assert "432000" not in text and "OPT__" not in text


def test_config_dump_shows_durations_go_style_and_reads_back(
        capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    assert cli.main(["config_dump", "--osquery_enroll_cooldown", "90s"]) == 0
    out = capsys.readouterr().out
    dumped = yaml.safe_load(out)
    assert dumped["session"]["duration"] == "120h"
    assert dumped["osquery"]["enroll_cooldown"] == "1m30s"
    assert dumped["server"]["shutdown_timeout"] == "5s"
    path = tmp_path / "dumped.yml"
    path.write_text(out)
    assert cli.main(["config_dump", "--config", str(path)]) == 0
    assert capsys.readouterr().out == out


_TYPES = {"str": str, "int": int, "bool": bool, "duration": float}


def test_typed_sections_are_generated_from_the_option_table() -> None:
    assert config.SECTIONS_MODULE.read_text() == config.sections_source(), (
        "fleet/config_sections.py is out of date with OPTIONS: run `python -m fleet.config`")


def test_every_option_is_a_typed_attribute_of_its_annotated_type() -> None:
    cfg = config.from_mapping({})
    for opt in config.OPTIONS:
        node: object = cfg
        for part in opt.key.split("."):
            node = getattr(node, part)
        assert type(node) is _TYPES[opt.kind], (opt.key, node)
        assert node == cfg.values[opt.key]


def test_config_is_frozen_and_overrides_make_a_validated_copy() -> None:
    cfg = config.from_mapping({})
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.server.tls = False  # type: ignore[misc]
    changed = cfg.with_overrides({"server.url_prefix": "fleet/", "osquery.enroll_cooldown": "1m"})
    assert (changed.server.url_prefix, changed.osquery.enroll_cooldown) == ("/fleet", 60.0)
    assert changed.values["server.url_prefix"] == "/fleet"
    assert changed.sources["osquery.enroll_cooldown"] == "override"
    assert (cfg.server.url_prefix, cfg.osquery.enroll_cooldown) == ("", 0.0)
    with pytest.raises(config.ConfigError, match=r"osquery\.host_identifier"):
        cfg.with_overrides({"osquery.host_identifier": "mac"})
    with pytest.raises(config.ConfigError, match="unknown option osquery.host_identifer"):
        cfg.with_overrides({"osquery.host_identifer": "uuid"})


def test_dev_certificate_paths_go_into_a_copy_of_the_config(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    served: list[config.Config] = []

    async def serve(cfg: config.Config, dev: bool) -> int:
        served.append(cfg)
        return 0

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(cli, "_serve_async", serve)
    cfg = config.from_mapping({})
    assert cli._serve(cfg, dev=True) == 0
    assert served[0].server.cert == str(tmp_path / cli.DEV_CERT_DIR / "fleet-dev.crt")
    assert served[0].server.key.startswith(str(tmp_path / cli.DEV_CERT_DIR))
    assert served[0].sources["server.cert"] == "--dev"
    assert (cfg.server.cert, cfg.server.key) == ("", "")


def test_a_misspelled_option_is_a_type_error() -> None:
    mypy = shutil.which("mypy", path=str(Path(sys.executable).parent))
    if mypy is None:
        pytest.skip("mypy is not installed (pip install -e '.[test]')")
    root = Path(__file__).resolve().parents[2]

    def check(attribute: str) -> subprocess.CompletedProcess[str]:
        code = f"from fleet.config import from_mapping\nfrom_mapping({{}}).osquery.{attribute}\n"
        return subprocess.run([mypy, "--no-incremental", "--cache-dir", os.devnull, "-c", code],
                              cwd=root, capture_output=True, text=True, timeout=120)

    assert check("enroll_cooldown").returncode == 0
    typo = check("enroll_coldown")
    assert typo.returncode == 1
    assert '"OsquerySection" has no attribute "enroll_coldown"' in typo.stdout
