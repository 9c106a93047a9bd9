"""Every console test runs with its embedded store in its own tmp folder:
`icswatch replay` writes to the store by default, and a test must never
write into the home directory of whoever runs it."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(autouse=True)
def _store_in_tmp(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> Path:
    folder = tmp_path_factory.mktemp("store")
    path = folder / "icswatch.db"
    monkeypatch.setenv("ICSWATCH_DB", str(path))
    monkeypatch.setenv("XDG_DATA_HOME", str(folder / "xdg"))
    return path
