"""The one exception type commands raise for problems the user can act on."""


class CLIError(Exception):
    """A user-facing failure: `main` prints it as one `Error: ...` line and exits 1.

    Anything else escaping a command is a bug and is allowed to show a traceback.
    """
