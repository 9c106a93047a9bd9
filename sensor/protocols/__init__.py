"""Industrial protocol decoders: one module per protocol, found by `registry()`.

A module declares ``PROTOCOL = ProtocolSpec(...)``; adding a protocol edits
no other file.
"""

from __future__ import annotations

import importlib
import pkgutil
from functools import cache

from sensor.protocols.base import ProtocolSpec


@cache
def registry() -> tuple[ProtocolSpec, ...]:
    """Every protocol module's spec, in module-name order (deterministic)."""
    specs: list[ProtocolSpec] = []
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        if info.name == "base" or info.name.startswith("_"):
            continue
        module = importlib.import_module(f"{__name__}.{info.name}")
        spec = getattr(module, "PROTOCOL", None)
        if isinstance(spec, ProtocolSpec):
            specs.append(spec)
    return tuple(specs)


def by_name(name: str) -> ProtocolSpec:
    for spec in registry():
        if spec.name == name:
            return spec
    raise KeyError(name)
