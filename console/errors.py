"""Errors the command line reports as bad usage (exit status 2)."""


class UsageError(Exception):
    """Bad arguments or unreadable input; ``str()`` is the one line shown."""
