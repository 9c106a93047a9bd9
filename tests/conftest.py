"""Test-suite setup shared by every package's tests.

pytest's default ("prepend") import mode puts the first folder above a test
or conftest file that has no ``__init__.py`` on ``sys.path``; for this file
that is ``tests/`` itself, and ``tests/sensor`` (a folder without
``__init__.py``) would then shadow the real ``sensor`` package as an empty
namespace package. So: take ``tests/`` off the path, import the real package
once (``sys.modules`` keeps it), and put ``tests/sensor`` on the path for the
shared capture builders (``import builders``).
"""

from __future__ import annotations

import sys
from pathlib import Path

_TESTS = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if not p or Path(p).resolve() != _TESTS]

import sensor  # noqa: E402,F401  - the installed package, before anything shadows it

if str(_TESTS / "sensor") not in sys.path:
    sys.path.insert(0, str(_TESTS / "sensor"))
