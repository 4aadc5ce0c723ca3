"""The fleetctl config file (`~/.fleet/config`): named contexts of connection settings.

The file layout matches Go fleetctl so one config works with both tools:

    contexts:
      default:
        address: https://fleet.example.com
        custom-headers: null
        email: admin@example.com
        rootca: ""
        tls-skip-verify: false
        token: ...
        url-prefix: ""

It holds API tokens, so the directory is created 0700 and the file is always 0600.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from fleetctl.errors import CLIError

DEFAULT_CONTEXT = "default"

# Keys accepted by `config get`, in the order Go fleetctl documents them.
KEYS = ("address", "email", "token", "tls-skip-verify", "rootca", "url-prefix", "custom-headers")


def default_config_path() -> str:
    return str(Path.home() / ".fleet" / "config")


@dataclass
class Context:
    """Connection settings for one Fleet server."""

    address: str = ""
    email: str = ""
    token: str = ""
    tls_skip_verify: bool = False
    rootca: str = ""
    url_prefix: str = ""
    custom_headers: dict[str, str] = field(default_factory=dict)

    @classmethod
    def from_yaml(cls, raw: Any) -> Context:
        if not isinstance(raw, dict):
            return cls()
        headers = raw.get("custom-headers") or {}
        return cls(
            address=str(raw.get("address") or ""),
            email=str(raw.get("email") or ""),
            token=str(raw.get("token") or ""),
            tls_skip_verify=_as_bool(raw.get("tls-skip-verify")),
            rootca=str(raw.get("rootca") or ""),
            url_prefix=str(raw.get("url-prefix") or ""),
            custom_headers={str(k): str(v) for k, v in headers.items()}
            if isinstance(headers, dict)
            else {},
        )

    def to_yaml(self) -> dict[str, Any]:
        return {
            "address": self.address,
            "custom-headers": self.custom_headers or None,
            "email": self.email,
            "rootca": self.rootca,
            "tls-skip-verify": self.tls_skip_verify,
            "token": self.token,
            "url-prefix": self.url_prefix,
        }

    def get(self, key: str) -> str:
        """Render one key the way Go's `%v` shows it in `config get`."""
        if key == "tls-skip-verify":
            return "true" if self.tls_skip_verify else "false"
        if key == "custom-headers":
            pairs = " ".join(f"{k}:{v}" for k, v in sorted(self.custom_headers.items()))
            return f"map[{pairs}]"
        attr = {"address": "address", "email": "email", "token": "token", "rootca": "rootca",
                "url-prefix": "url_prefix"}.get(key)
        if attr is None:
            raise CLIError(f"{key!r} is an invalid key; valid keys: {', '.join(KEYS)}")
        return str(getattr(self, attr))


def _as_bool(value: Any) -> bool:
    if isinstance(value, str):
        return value.strip().lower() in ("1", "true", "yes", "on")
    return bool(value)


def load_contexts(path: str) -> dict[str, Context]:
    """Read every context; a missing or empty file behaves like one empty `default` context."""
    try:
        text = Path(path).read_text()
    except FileNotFoundError:
        return {DEFAULT_CONTEXT: Context()}
    except OSError as exc:
        raise CLIError(f"error reading config at {path}: {exc.strerror or exc}") from None
    try:
        data = yaml.safe_load(text) or {}
    except yaml.YAMLError as exc:
        raise CLIError(f"error reading config at {path}: {' '.join(str(exc).split())}") from None
    if not isinstance(data, dict):
        raise CLIError(f"error reading config at {path}: expected a YAML mapping")
    raw_contexts = data.get("contexts")
    if not isinstance(raw_contexts, dict) or not raw_contexts:
        return {DEFAULT_CONTEXT: Context()}
    return {str(name): Context.from_yaml(raw) for name, raw in raw_contexts.items()}


def save_contexts(path: str, contexts: dict[str, Context]) -> None:
    """Write the file with owner-only permissions, creating its directory 0700 if needed."""
    target = Path(path)
    try:
        if not target.parent.exists():
            target.parent.mkdir(mode=0o700, parents=True)
        body = yaml.safe_dump(
            {"contexts": {name: ctx.to_yaml() for name, ctx in contexts.items()}},
            sort_keys=True,
            default_flow_style=False,
        )
        fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(body)
        # O_CREAT's mode only applies to new files; tighten an existing looser file too.
        os.chmod(target, 0o600)
    except OSError as exc:
        raise CLIError(f"error saving config file {path}: {exc.strerror or exc}") from None


def load_context(path: str, name: str) -> Context:
    """The context a server command will use; it must already exist."""
    contexts = load_contexts(path)
    if name not in contexts:
        raise CLIError(
            f'context "{name}" is not found; create it with: '
            f"fleetctl config set --context {name} --address https://fleet.example.com"
        )
    return contexts[name]


def update_context(path: str, name: str, **changes: Any) -> None:
    """Change some fields of a context, creating the context (and file) if missing."""
    contexts = load_contexts(path)
    if name not in contexts:
        print(f'[+] Context "{name}" not found, creating it with default values')
        contexts[name] = Context()
    ctx = contexts[name]
    for attr, value in changes.items():
        setattr(ctx, attr, value)
    save_contexts(path, contexts)
