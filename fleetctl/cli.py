"""fleetctl command line: argument parsing and dispatch.

Every command accepts `--config`, `--context` and `--debug` either before or after the
command name. Failures the user can fix print one `Error: ...` line on stderr and exit 1.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence

from fleetctl import __version__, get, live, session, specs, trigger
from fleetctl.context import DEFAULT_CONTEXT, KEYS, default_config_path
from fleetctl.errors import CLIError

Handler = Callable[[argparse.Namespace], int]
VERSION_LINE = f"fleetctl - version {__version__}"


def _env(name: str) -> str | None:
    return os.environ.get(name) or None


def _global_flags(suppress: bool) -> argparse.ArgumentParser:
    """Shared flags. Subcommands use SUPPRESS defaults so they only override when given."""
    parent = argparse.ArgumentParser(add_help=False)
    default = argparse.SUPPRESS
    parent.add_argument(
        "--config", metavar="PATH",
        default=default if suppress else (_env("CONFIG") or default_config_path()),
        help="path to the fleetctl config file (env CONFIG; default ~/.fleet/config)",
    )
    parent.add_argument(
        "--context", metavar="NAME",
        default=default if suppress else (_env("CONTEXT") or DEFAULT_CONTEXT),
        help="name of the config context to use (env CONTEXT; default 'default')",
    )
    parent.add_argument(
        "--debug", action="store_true", default=default if suppress else False,
        help="log HTTP requests to stderr",
    )
    return parent


def _command(
    subparsers: argparse._SubParsersAction[argparse.ArgumentParser],
    name: str,
    handler: Handler,
    help_text: str,
    aliases: Sequence[str] = (),
) -> argparse.ArgumentParser:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        name, aliases=list(aliases), help=help_text, description=help_text,
        parents=[_global_flags(suppress=True)],
    )
    parser.set_defaults(func=handler, parser=parser)
    return parser


def _output_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="output in JSON format")
    parser.add_argument("--yaml", action="store_true", help="output in YAML format")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="fleetctl",
        description="CLI for operating Fleet",
        parents=[_global_flags(suppress=False)],
    )
    parser.add_argument("--version", action="version", version=VERSION_LINE)
    commands = parser.add_subparsers(dest="command", metavar="<command>", required=True)

    config = commands.add_parser(
        "config", help="modify fleetctl configuration",
        parents=[_global_flags(suppress=True)],
    )
    config_commands = config.add_subparsers(dest="config_command", metavar="<set|get>",
                                            required=True)
    config_set = _command(config_commands, "set", session.config_set, "set config options")
    config_set.add_argument("--address", default=_env("ADDRESS"),
                            help="address of the Fleet server (env ADDRESS)")
    config_set.add_argument("--email", default=_env("EMAIL"),
                            help="email to use when connecting to Fleet (env EMAIL)")
    config_set.add_argument("--token", default=_env("TOKEN"), help="Fleet API token (env TOKEN)")
    config_set.add_argument(
        "--tls-skip-verify", nargs="?", const="true", metavar="BOOL",
        default="true" if (_env("INSECURE") or "").lower() in session.TRUE_WORDS else None,
        help="skip TLS certificate validation (env INSECURE); --tls-skip-verify=false undoes it",
    )
    config_set.add_argument("--rootca", default=_env("ROOTCA"),
                            help="root CA bundle used to verify Fleet's certificate (env ROOTCA)")
    config_set.add_argument("--url-prefix", default=_env("URL_PREFIX"),
                            help="URL prefix the Fleet server is served under (env URL_PREFIX)")
    config_set.add_argument(
        "--custom-header", action="append", metavar="'Header:Value'",
        help="header sent on every request (env CUSTOM_HEADER=H1:V1,H2:V2); repeatable; "
        "replaces the existing set",
    )
    config_get = _command(config_commands, "get", session.config_get, "get a config option")
    config_get.add_argument("key", choices=KEYS, help="one of: " + ", ".join(KEYS))

    setup = _command(commands, "setup", session.setup, "set up a new Fleet instance")
    setup.add_argument("--email", default=_env("EMAIL"), help="email of the admin user")
    setup.add_argument("--name", default=_env("NAME"), help="name of the admin user")
    setup.add_argument("--password", default=_env("PASSWORD"),
                       help="password of the admin user: 12 to 48 characters with at least "
                       "one number and one symbol (env PASSWORD; prompted on a terminal if "
                       "omitted)")
    setup.add_argument("--org-name", default=_env("ORG_NAME"), help="name of the organization")

    login = _command(commands, "login", session.login, "log in to Fleet")
    login.add_argument("--email", default=_env("EMAIL"), help="email to log in with (env EMAIL)")
    login.add_argument("--password", default=_env("PASSWORD"),
                       help="password (env PASSWORD; prompted if omitted)")
    login.add_argument(
        "--new-password", default=_env("NEW_PASSWORD"),
        help="new password to set when an admin requires a password reset (env NEW_PASSWORD; "
        "prompted on a terminal if omitted)")

    _command(commands, "logout", session.logout, "log out of Fleet")

    get_parser = commands.add_parser("get", help="get/list resources",
                                     parents=[_global_flags(suppress=True)])
    kinds = get_parser.add_subparsers(dest="kind", metavar="<kind>", required=True)
    hosts = _command(kinds, "hosts", get.get_hosts, "list information about hosts",
                     aliases=("host", "H"))
    hosts.add_argument("identifier", nargs="?", help="hostname, UUID or serial of one host")
    hosts.add_argument("--label", default="", help="only the hosts of this label (by name)")
    _output_flags(hosts)
    labels = _command(kinds, "labels", get.get_labels, "list labels", aliases=("label", "l"))
    labels.add_argument("name", nargs="?", help="name of one label to show")
    _output_flags(labels)
    software = _command(kinds, "software", get.get_software,
                        "list software titles and the hosts that have them")
    software.add_argument("--versions", action="store_true",
                          help="list each software version instead of titles")
    _output_flags(software)
    queries = _command(kinds, "queries", get.get_queries, "list saved queries",
                       aliases=("query", "q", "reports", "report", "r"))
    queries.add_argument("name", nargs="?", help="name of one query to show")
    _output_flags(queries)
    app_config = _command(kinds, "config", get.get_config,
                          "retrieve the Fleet configuration (a kind: config spec)")
    _output_flags(app_config)
    secrets = _command(kinds, "enroll_secret", get.get_enroll_secret,
                       "retrieve the osquery enroll secrets",
                       aliases=("enroll_secrets", "enroll-secret", "enroll-secrets"))
    _output_flags(secrets)

    apply = _command(commands, "apply", specs.apply, "apply YAML specs "
                     f"({', '.join(kind.plural for kind in specs.KINDS)})")
    apply.add_argument("-f", "--file", required=True, help="a .yml/.yaml file of specs")
    apply.add_argument("--dry-run", action="store_true",
                       help="only supported for config and team specs; others are skipped")

    delete = _command(commands, "delete", specs.delete, "delete what YAML specs name "
                      f"({', '.join(k.plural for k in specs.KINDS if k.delete)})")
    delete.add_argument("-f", "--file", required=True, help="a .yml/.yaml file of specs")

    query = _command(commands, "query", live.run_query, "run a live query",
                     aliases=("report",))
    query.add_argument("--hosts", default=_env("HOSTS"),
                       help="comma-separated hostnames, UUIDs or serial numbers to target")
    query.add_argument("--labels", default=_env("LABELS"),
                       help="comma-separated label names to target")
    query.add_argument("--query", default=_env("QUERY"), help="SQL to run")
    query.add_argument("--query-name", "--report-name", dest="query_name",
                       default=_env("QUERYNAME"), help="name of a saved query to run")
    query.add_argument("--team", "--fleet", type=int, default=None,
                       help="team ID the named query belongs to (0 = global)")
    query.add_argument("--quiet", action="store_true", help="only print results")
    query.add_argument("--exit", action="store_true",
                       help="exit when all online hosts have responded")
    query.add_argument("--pretty", action="store_true", help="indent the JSON results")
    query.add_argument("--timeout", default=_env("TIMEOUT"),
                       help="stop after this long (10s, 5m, 1h; 0 = no limit); exits 1 if "
                       "targeted hosts have not all responded by then")

    trigger_parser = _command(commands, "trigger", trigger.trigger,
                              "trigger an ad hoc run of all jobs in a specified cron schedule")
    trigger_parser.add_argument("--name", default=_env("NAME"),
                                help="name of the cron schedule to trigger (env NAME)")

    _command(commands, "version", _print_version, "print the fleetctl version")
    return parser


def _print_version(args: argparse.Namespace) -> int:
    print(VERSION_LINE)
    return 0


def _valued_options(parser: argparse.ArgumentParser) -> set[str]:
    """Option strings that take exactly one value, in every (sub)command."""
    found: set[str] = set()
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                found |= _valued_options(sub)
        elif action.option_strings and action.nargs is None:
            found.update(action.option_strings)
    return found


def _attach_dash_values(parser: argparse.ArgumentParser, argv: list[str]) -> list[str]:
    """`--token -Ab3`, `--password -Secret1!` as Go's flag package (and so Fleet's fleetctl)
    reads them: a valued option takes the next word even when it begins with a dash, which
    argparse would take for an option. Tokens and passwords may well begin with one."""
    valued = _valued_options(parser)
    out: list[str] = []
    words = iter(argv)
    for word in words:
        if word in valued:
            value = next(words, None)
            if value is not None and value.startswith("-") and value != "--":
                word = f"{word}={value}"
            elif value is not None:
                out.append(word)
                word = value
        out.append(word)
    return out


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    try:
        args = parser.parse_args(_attach_dash_values(parser, argv))
    except SystemExit as exc:  # --help, --version and usage errors
        return exc.code if isinstance(exc.code, int) else 1
    args.argv = argv
    handler: Handler = args.func
    try:
        return handler(args)
    except CLIError as exc:
        print(f"Error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(file=sys.stderr)
        return 130
