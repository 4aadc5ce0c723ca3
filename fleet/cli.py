"""`fleet serve | prepare db | config_dump | version`."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import uvicorn
import yaml

from fleet import __version__, config
from fleet.store.db import (
    ER_ACCESS_DENIED,
    ER_BAD_DB_ERROR,
    Database,
    create_database,
    create_database_sql,
    create_mysql_database,
    driver_error,
    mysql_error_code,
)
from fleet.store.migrate import apply_migrations, migration_status

log = logging.getLogger("fleet")

DEV_CERT_DIR = Path(".fleet-dev")


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": self.formatTime(record, "%Y-%m-%dT%H:%M:%S"), "level": record.levelname.lower(),
            "component": record.name, "msg": record.getMessage(),
        }
        if record.exc_info:
            entry["err"] = self.formatException(record.exc_info)
        return json.dumps(entry)


def setup_logging(cfg: config.Config) -> None:
    handler = logging.StreamHandler(sys.stderr)
    if cfg.logging.json:
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.DEBUG if cfg.logging.debug else logging.INFO)
    for name, level in QUIET_LOGGERS.items():
        logging.getLogger(name).setLevel(level)


# Libraries whose INFO/DEBUG lines would bury fleet's own, even with --logging_debug (which
# is for fleet's loggers): drivers, HTTP clients and servers, migrations (alembic narrates
# every step; fleet prints its own summary). asyncmy logs every MySQL statement warning,
# such as each duplicate skipped by INSERT IGNORE, so only its errors are kept.
QUIET_LOGGERS = {
    **dict.fromkeys(("aiosqlite", "sqlalchemy", "alembic", "httpx", "httpcore", "h11", "h2",
                     "hpack", "websockets", "uvicorn", "asyncio", "redis", "multipart",
                     "python_multipart"), logging.WARNING),
    "asyncmy": logging.ERROR,
}


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="fleet", description="Fleet osquery server")
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="run the server")
    serve.add_argument("--dev", action="store_true",
                       help="development mode: migrate the database and use a generated "
                            "self-signed certificate for localhost")
    config.add_option_flags(serve)
    prepare = sub.add_parser("prepare", help="prepare the database")
    prepare.add_argument("target", choices=["db"])
    prepare.add_argument("--no-prompt", action="store_true",
                         help="do not ask for confirmation before migrating")
    prepare.add_argument("--dev", action="store_true", help="implies --no-prompt")
    config.add_option_flags(prepare)
    dump = sub.add_parser("config_dump", help="print the effective configuration")
    config.add_option_flags(dump)
    sub.add_parser("version", help="print the version")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "version":
        print(f"fleet - version {__version__}")
        return 0
    try:
        cfg = config.load(args)
    except config.ConfigError as exc:
        print(f"Failed to load config: {exc}", file=sys.stderr)
        return 1
    if args.command == "config_dump":
        print(yaml.safe_dump(cfg.redacted(), sort_keys=False), end="")
        return 0
    setup_logging(cfg)
    if args.command == "prepare":
        return asyncio.run(_prepare_db(cfg, no_prompt=args.no_prompt or args.dev))
    return _serve(cfg, dev=args.dev)


def _describe(cfg: config.Config) -> str:
    if cfg.mysql.address:
        return f"MySQL at {cfg.mysql.address}, database {cfg.mysql.database}"
    return f"embedded SQLite database {Path(cfg.sqlite.path).resolve()}"


async def _prepare_db(cfg: config.Config, *, no_prompt: bool) -> int:
    db = create_database(cfg)
    try:
        try:
            status = await migration_status(db)
        except Exception as exc:
            if mysql_error_code(exc) not in (ER_BAD_DB_ERROR, *ER_ACCESS_DENIED):
                raise  # MySQL answers "access denied" for a missing database too
            if not await _create_mysql_database(cfg):
                return 1
            status = await migration_status(db)
        if status.complete:
            print("Migrations already completed. Nothing to do.")
            return 0
        if status.initialized and not no_prompt:
            print("################################################################\n"
                  f"# WARNING: this will apply {len(status.missing)} migration(s) to the\n"
                  f"# {_describe(cfg)}.\n"
                  "# Back up the database first. Press Enter to continue, Ctrl-C to abort.\n"
                  "################################################################")
            try:
                await asyncio.to_thread(input)
            except (EOFError, KeyboardInterrupt):
                print("Aborted.")
                return 1
        await apply_migrations(db)
        print("Migrations completed.")
        return 0
    except Exception as exc:
        print(f"Failed to start: migrating {_describe(cfg)}: {driver_error(exc)}", file=sys.stderr)
        return 1
    finally:
        await db.close()


async def _create_mysql_database(cfg: config.Config) -> bool:
    """Create the missing MySQL database, or say exactly what an administrator must run."""
    name, user = cfg.mysql.database, cfg.mysql.username
    try:
        await create_mysql_database(cfg)
    except Exception as exc:
        orig = driver_error(exc)
        reason = orig.args[-1] if orig.args else orig
        if mysql_error_code(exc) not in ER_ACCESS_DENIED:
            print(f"Failed: creating the MySQL database {name} at {cfg.mysql.address}: "
                  f"{reason}", file=sys.stderr)
            return False
        print(f"The MySQL database {name} at {cfg.mysql.address} does not exist or user "
              f"{user} may not use it, and {user} may not create it: {reason}\n"
              "Ask a MySQL administrator to run:\n"
              f"  {create_database_sql(name)};\n"
              f"  GRANT ALL PRIVILEGES ON `{name}`.* TO '{user}'@'%';\n"
              "then run `fleet prepare db` again.", file=sys.stderr)
        return False
    print(f"Created the MySQL database {name} at {cfg.mysql.address} (utf8mb4).")
    return True


async def _check_migrations(db: Database, cfg: config.Config, *, dev: bool) -> bool:
    """Apply (with --dev) or verify migrations; False when the server must not start."""
    if dev:
        await apply_migrations(db)
        return True
    status = await migration_status(db)
    if status.unknown:
        print(f"WARNING: the database has migrations this version does not know: "
              f"{', '.join(status.unknown)}. Is an older fleet binary running?")
    if not status.initialized:
        print("################################################################\n"
              "# Your Fleet database is not initialized. Fleet cannot start up.\n"
              "# Run `fleet prepare db` to initialize it.\n"
              "################################################################")
        return False
    if status.missing:
        print("################################################################\n"
              "# Your Fleet database is missing required migrations:\n"
              f"#   {', '.join(status.missing)}\n"
              "# Run `fleet prepare db` to apply them, or start with\n"
              "# --upgrades_allow_missing_migrations (FLEET_UPGRADES_ALLOW_MISSING_MIGRATIONS=1)\n"
              "# to run anyway at your own risk.\n"
              "################################################################")
        return bool(cfg.upgrades.allow_missing_migrations)
    return True


def _serve(cfg: config.Config, *, dev: bool) -> int:
    from fleet import tls

    if cfg.server.tls and not (cfg.server.cert and cfg.server.key):
        if not dev:
            print("TLS is on but --server_cert/--server_key are not set. Provide a "
                  "certificate, use --dev for a generated localhost certificate, or "
                  "--server_tls=false behind a TLS-terminating proxy.", file=sys.stderr)
            return 1
        cert, key, created = tls.ensure_dev_certificate(DEV_CERT_DIR)
        cfg = cfg.with_overrides({"server.cert": str(cert.resolve()),
                                  "server.key": str(key.resolve())}, source="--dev")
        print(f"{'Generated' if created else 'Using'} development certificate "
              f"{cfg.server.cert} (trust it with --tls_server_certs / --rootca)")
    try:
        import uvloop
    except ImportError:  # uvicorn[standard] brings it on Linux; fall back elsewhere
        return asyncio.run(_serve_async(cfg, dev))
    return uvloop.run(_serve_async(cfg, dev))


async def _serve_async(cfg: config.Config, dev: bool) -> int:
    from fleet import httpserver, lifecycle, tls
    from fleet.server import build_context, create_app
    from fleet.service import health
    from fleet.service import secrets as secret_service

    # Claim the database file and the port before any other work, so a second instance or a
    # taken port fails at once with one line. The lock lives as long as this function.
    lock = None if cfg.mysql.address else lifecycle.InstanceLock(cfg.sqlite.path)
    try:
        if lock is not None:
            lock.acquire(f"serving {cfg.server.address}")
        listener = lifecycle.listen(cfg.server.address)
        lifecycle.ensure_file_limit(cfg.server.max_connections)
    except lifecycle.StartupError as exc:
        print(f"Failed to start: {exc}", file=sys.stderr)
        return 1
    try:
        ctx = await build_context(cfg)
    except Exception as exc:
        print(f"Failed to start: {exc}", file=sys.stderr)
        return 1
    try:
        if not await _check_migrations(ctx.db, cfg, dev=dev):
            return 1
        if cfg.packaging.global_enroll_secret:
            await secret_service.ensure_global_secret(ctx, cfg.packaging.global_enroll_secret)
    except Exception as exc:
        hint = " (missing or not accessible: `fleet prepare db` creates it, or says what " \
            "to ask an administrator for)" \
            if mysql_error_code(exc) in (ER_BAD_DB_ERROR, *ER_ACCESS_DENIED) else ""
        print(f"Failed to start: {_describe(cfg)}{hint}: {driver_error(exc)}", file=sys.stderr)
        await ctx.broker.close()
        await ctx.db.close()
        return 1
    monitor = health.HealthMonitor(ctx)
    uv = uvicorn.Config(  # serves on `listener`, passed to serve() below
        create_app(ctx, owns_context=True),
        ssl_certfile=cfg.server.cert if cfg.server.tls else None,
        ssl_keyfile=cfg.server.key if cfg.server.tls else None,
        log_level="warning", access_log=False,  # --logging_debug is for fleet's own loggers
        http=httpserver.protocol_class(httpserver.Limits(
            read_header_timeout=cfg.server.read_header_timeout,
            read_timeout=cfg.server.read_timeout,
            max_header_bytes=cfg.server.max_header_bytes,
            max_header_count=cfg.server.max_header_count,
            max_connections=cfg.server.max_connections),
            fast_paths={f"{cfg.server.url_prefix}/healthz".encode(): _healthz_answers(
                monitor, tls=cfg.server.tls)}),
        # uvicorn takes any number of seconds here, though its hint says int.
        timeout_keep_alive=(cfg.server.idle_timeout  # type: ignore[arg-type]
                            if cfg.server.keepalive else 0),
        lifespan="on",
        ws_max_size=1 << 20, log_config=None, server_header=False,
        proxy_headers=False)  # client_ip() applies Fleet's header order itself
    try:
        uv.load()
    except (OSError, ValueError) as exc:  # unreadable or mismatched certificate/key
        print(f"Failed to start: TLS certificate {cfg.server.cert}: {exc}", file=sys.stderr)
        await ctx.broker.close()
        await ctx.db.close()
        return 1
    if uv.ssl is not None:
        tls.apply_profile(uv.ssl, cfg.server.tls_compatibility)
    server = lifecycle.Server(uv, on_started=lambda: _announce(cfg),
                              shutdown_timeout=cfg.server.shutdown_timeout,
                              tls_handshake_timeout=cfg.server.tls_handshake_timeout,
                              companions=[monitor.run])
    await server.serve(sockets=[listener])
    return 0 if server.started else 1


def _healthz_answers(monitor: Any, *, tls: bool) -> Callable[[], bytes | None]:
    """`GET /healthz` from the monitor's last result (None: let the application check)."""
    from fleet import httpserver
    from fleet.security_headers import response_headers

    headers = response_headers(tls=tls)
    passing, failing = (httpserver.response_bytes(status, headers) for status in (200, 500))

    def answer() -> bytes | None:
        healthy = monitor.healthy()
        return None if healthy is None else passing if healthy else failing

    return answer


def _announce(cfg: config.Config) -> None:
    """Called once the server accepts connections."""
    if cfg.logging.disable_banner:
        log.info("serving on %s", cfg.server.address)
    else:
        _banner(cfg)


def _banner(cfg: config.Config) -> None:
    scheme = "https" if cfg.server.tls else "http"
    host, _, port = cfg.server.address.rpartition(":")
    shown = "localhost" if host in ("", "0.0.0.0", "::") else host
    url = f"{scheme}://{shown}:{port}{cfg.server.url_prefix}"
    rootca = f" --rootca {cfg.server.cert}" if cfg.server.tls and cfg.server.cert else ""
    certs = f" --tls_server_certs={cfg.server.cert}" if cfg.server.tls and cfg.server.cert \
        else ""
    print(f"""
Fleet {__version__} is serving {url}
  database: {_describe(cfg)}
  broker:   {"Redis at " + cfg.redis.address if cfg.redis.address else "in-process"}

First run? Create the admin user:
  fleetctl config set --address {url}{rootca}
  fleetctl setup --email admin@example.com --name Admin --org-name "My Org"
  fleetctl get enroll_secret

Point an osquery agent at it:
  osqueryd --tls_hostname={shown}:{port}{certs} --enroll_secret_path=secret.txt \\
    --host_identifier=instance --enroll_tls_endpoint={cfg.server.url_prefix}/api/osquery/enroll \\
    --config_plugin=tls --config_tls_endpoint={cfg.server.url_prefix}/api/osquery/config \\
    --config_refresh=10 --disable_distributed=false --distributed_plugin=tls \\
    --distributed_interval=10 --distributed_tls_max_attempts=3 \\
    --distributed_tls_read_endpoint={cfg.server.url_prefix}/api/osquery/distributed/read \\
    --distributed_tls_write_endpoint={cfg.server.url_prefix}/api/osquery/distributed/write \\
    --logger_plugin=tls --logger_tls_endpoint={cfg.server.url_prefix}/api/osquery/log \\
    --logger_tls_period=10
""", flush=True)


if __name__ == "__main__":
    sys.exit(main())
