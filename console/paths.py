"""Where icswatch keeps its files on this machine (the XDG base-directory rules)."""

from __future__ import annotations

import os
from pathlib import Path


def data_home() -> Path:
    """``$XDG_DATA_HOME/icswatch``, else ``~/.local/share/icswatch`` (an empty
    or relative XDG_DATA_HOME is ignored, as the XDG rules say)."""
    data = os.environ.get("XDG_DATA_HOME", "")
    base = Path(data) if data and os.path.isabs(data) else Path.home() / ".local" / "share"
    return base / "icswatch"


def console_state_path() -> Path:
    """The console's own database (users, sessions, audit trail):
    ``$ICSWATCH_CONSOLE_DB``, else ``console.db`` in `data_home()`."""
    explicit = os.environ.get("ICSWATCH_CONSOLE_DB")
    return Path(explicit).expanduser() if explicit else data_home() / "console.db"


def site_rules_dir() -> Path:
    """Rule packs uploaded through the console and the enabled/disabled
    choices: ``$ICSWATCH_SITE_RULES``, else ``rules/`` in `data_home()`."""
    explicit = os.environ.get("ICSWATCH_SITE_RULES")
    return Path(explicit).expanduser() if explicit else data_home() / "rules"
