"""Who made a device: the vendor registered for its MAC address's OUI
(the IEEE registry as the netaddr package ships it)."""

from __future__ import annotations

import functools

from netaddr import EUI
from netaddr.core import AddrFormatError, NotRegisteredError


@functools.lru_cache(maxsize=4096)
def mac_vendor(mac: str | None) -> str | None:
    """The organisation the MAC's OUI is registered to; None for no MAC, a
    null, multicast or locally administered address (no registry entry
    applies: loopback captures carry 00-00-00-00-00-00, which is
    registered, to Xerox), or an unregistered OUI."""
    if not mac:
        return None
    try:
        address = EUI(mac)
    except (AddrFormatError, TypeError, ValueError):
        return None
    first = int(address) >> 40
    if int(address) == 0 or first & 0x03:  # null, multicast or locally administered
        return None
    try:
        return str(address.oui.registration()["org"]).strip() or None
    except NotRegisteredError:
        return None
