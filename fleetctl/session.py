"""Commands that manage the connection: `config set|get`, `setup`, `login`, `logout`."""

from __future__ import annotations

import argparse
import getpass
import os
import sys
from dataclasses import replace
from typing import Any

from fleetctl.client import APIError, FleetClient, reset_command
from fleetctl.context import Context, load_context, load_contexts, update_context
from fleetctl.errors import CLIError

TRUE_WORDS = ("1", "true", "yes", "on")


def config_set(args: argparse.Namespace) -> int:
    """Set each given key, echoing it like Go fleetctl (the token is never echoed)."""
    changes: list[tuple[str, str, Any]] = []  # (config key, Context attribute, value)
    for key, attr in (("address", "address"), ("email", "email"), ("token", "token")):
        value = getattr(args, attr)
        if value:
            changes.append((key, attr, value))
    if args.tls_skip_verify is not None:
        changes.append(
            ("tls-skip-verify", "tls_skip_verify", args.tls_skip_verify.lower() in TRUE_WORDS)
        )
    if args.rootca:
        changes.append(("rootca", "rootca", _absolute_file(args.rootca, "--rootca")))
    if args.url_prefix:
        changes.append(("url-prefix", "url_prefix", args.url_prefix))
    # Like Go fleetctl, CUSTOM_HEADER=H1:V1,H2:V2 stands in for repeated flags.
    header_items = args.custom_header or [
        item for item in os.environ.get("CUSTOM_HEADER", "").split(",") if item
    ]
    if header_items:
        headers = {}
        for item in header_items:
            name, sep, value = item.partition(":")
            if not sep or not name.strip():
                raise CLIError(f"invalid --custom-header {item!r}: expected 'Header:Value'")
            headers[name.strip()] = value.strip()
        changes.append(("custom-headers", "custom_headers", headers))
    if not changes:
        args.parser.print_help()
        return 0

    update_context(args.config, args.context, **{attr: value for _, attr, value in changes})
    for key, _, value in changes:
        if key == "token":
            shown = '"<redacted>"'
        elif key == "tls-skip-verify":
            shown = f'"{"true" if value else "false"}"'
        elif key == "custom-headers":
            shown = "[" + " ".join(f"{k}:{v}" for k, v in value.items()) + "]"
        else:
            shown = f'"{value}"'
        print(f'[+] Set the {key} config key to {shown} in the "{args.context}" context')
    return 0


def _absolute_file(path: str, flag: str) -> str:
    """An absolute path to an existing file, so the context works from any directory."""
    absolute = os.path.abspath(os.path.expanduser(path))
    if not os.path.isfile(absolute):
        raise CLIError(f"{flag} {path}: no such file ({absolute})")
    return absolute


def config_get(args: argparse.Namespace) -> int:
    contexts = load_contexts(args.config)
    if args.context not in contexts:
        print(f'[+] Context "{args.context}" not found, creating it with default values')
    value = contexts.get(args.context, Context()).get(args.key)
    print(f"  {args.context}.{args.key} => {value}")
    return 0


def _read_password(prompt: str, flag: str = "--password") -> str:
    """Prompt without echo; off a terminal getpass would echo (GetPassWarning), so refuse."""
    if not sys.stdin.isatty():
        raise CLIError(f"no password given and stdin is not a terminal to prompt on: pass {flag}")
    try:
        return getpass.getpass(prompt)
    except EOFError:
        raise CLIError(f"error reading password: no input; pass {flag}") from None


def _new_password(prompt: str, flag: str) -> str:
    password = _read_password(prompt, flag)
    if password != _read_password("Confirm " + prompt[0].lower() + prompt[1:], flag):
        raise CLIError("passwords do not match")
    return password


def setup(args: argparse.Namespace) -> int:
    missing = [flag for flag, value in (("email", args.email), ("name", args.name),
                                        ("org-name", args.org_name)) if not value]
    if missing:
        raise CLIError(f'Required flags "{", ".join(missing)}" not set')
    password = args.password or _new_password("Password: ", "--password")

    ctx = load_context(args.config, args.context)
    admin = {"admin": True, "email": args.email, "name": args.name, "password": password,
             "password_confirmation": password}
    with FleetClient(ctx, debug=args.debug, authenticated=False) as client:
        try:
            result = client.setup(admin, args.org_name, ctx.address)
        except APIError as exc:
            # Fleet stops serving the setup route (404) once the first user exists.
            if exc.status == 404 or "already" in str(exc).lower():
                raise CLIError(
                    "Fleet has already been setup; log in with: fleetctl login"
                ) from None
            raise CLIError(f"error setting up Fleet: {exc}") from None
    token = result.get("token")
    if not token:
        raise CLIError("error setting up Fleet: the server did not return a token")
    update_context(args.config, args.context, email=args.email, token=token)
    print("[+] Fleet setup successful and context configured!")
    return 0


def login(args: argparse.Namespace) -> int:
    ctx = load_context(args.config, args.context)
    # Build the client first so a missing address is reported before any prompt.
    with FleetClient(ctx, debug=args.debug, authenticated=False) as client:
        email = args.email
        if not email:
            print("Log in using the standard Fleet credentials.")
            print("Email: ", end="", flush=True)
            email = sys.stdin.readline().strip()
            if not email:
                raise CLIError("error reading email: no input (pass --email or set EMAIL)")
        elif "--email" not in args.argv and os.environ.get("EMAIL"):
            print("Using value of environment variable $EMAIL as email.")
        password = args.password
        if not password:
            password = _read_password("Password: ")
        elif "--password" not in args.argv and os.environ.get("PASSWORD"):
            print("Using value of environment variable $PASSWORD as password.")

        try:
            answer = client.login(email, password)
        except APIError as exc:
            raise CLIError(_login_failure(exc)) from None
    if answer.mfa_required:
        raise CLIError(
            "Login failed: this account uses multi-factor authentication. Log in to the "
            "Fleet UI, copy your API token from \"My account\", then run: "
            "fleetctl config set --token <token>"
        )
    if not answer.token:
        raise CLIError("Login failed: the server did not return a token")
    if answer.user.get("force_password_reset"):
        _perform_required_reset(args, replace(ctx, token=answer.token), email)
    update_context(args.config, args.context, email=email, token=answer.token)
    print("[+] Fleet login successful and context configured!")
    return 0


def _perform_required_reset(args: argparse.Namespace, ctx: Context, email: str) -> None:
    """An admin required a new password: set it now, or say how to, before storing a token
    that every other command would get 403 "password reset required" with."""
    print("[!] An admin requires you to set a new password before using Fleet.")
    new_password = args.new_password
    if not new_password:
        if not sys.stdin.isatty():
            raise CLIError(f"Login failed: a new password is required; run: "
                           f"{reset_command(email)}")
        new_password = _new_password("New password: ", "--new-password")
    with FleetClient(ctx, debug=args.debug) as client:
        try:
            client.perform_required_password_reset(new_password)
        except APIError as exc:
            raise CLIError(f"Login failed: setting the new password: {exc.reason}") from None
    print("[+] New password set.")


def _login_failure(exc: APIError) -> str:
    if exc.status == 401:
        return f"Login failed: {exc.reason}"
    if exc.status == 429:
        wait = f" Retry after {exc.retry_after}s." if exc.retry_after else ""
        return f"Login failed: too many login attempts ({exc.reason}).{wait}"
    return f"Login failed: {exc}"


def logout(args: argparse.Namespace) -> int:
    ctx = load_context(args.config, args.context)
    with FleetClient(ctx, debug=args.debug) as client:
        try:
            client.logout()
        except APIError as exc:
            raise CLIError(f"error logging out: {exc}") from None
    update_context(args.config, args.context, token="")
    print("[+] Fleet logout successful and local token cleared!")
    return 0
