"""CIP messages carried by EtherNet/IP (CIP Vol. 1 chapters 2-5, Vol. 2 chapter 3):
request paths, the generic services, the Connection Manager's Forward Open,
Forward Close and Unconnected Send, the Multiple Service Packet, the Identity
object and Rockwell Logix tag services.

A CIP message becomes one or more *services*: a plain request is one, an
Unconnected Send is the request it carries (with the send's own ``cm.*``
fields beside it), a Multiple Service Packet is each embedded request with
``msp.num_services`` and its own ``msp.offset``. Field names are Wireshark's
without the ``cip.`` prefix; see `sensor.protocols.enip` for the event shape.

Responses carry no path: each is paired with its request (`CipRequest`),
whose path and service tell how to read the response data.
"""

from __future__ import annotations

import struct
from enum import IntEnum
from typing import Any, Final

from sensor.event import (
    BAD_LENGTH,
    BAD_VALUE,
    CONTROL,
    DIAGNOSTIC,
    FILE,
    OTHER,
    PROGRAM,
    READ,
    WRITE,
)

_U16 = struct.Struct("<H")
_U32 = struct.Struct("<I")
_U16U32 = struct.Struct("<HI")
_FWD_OPEN = struct.Struct("<BBIIHHIB")  # tick, ticks, O->T id, T->O id, serial, vendor, orig, mult
_FWD_OPEN_RSP = struct.Struct("<IIHHIIIB")
_TRIAD = struct.Struct("<HHI")


class Service(IntEnum):
    """Common services (CIP Vol. 1 Appendix A) and the class-specific ones decoded here."""

    GET_ATTRIBUTES_ALL = 0x01
    SET_ATTRIBUTES_ALL = 0x02
    GET_ATTRIBUTE_LIST = 0x03
    SET_ATTRIBUTE_LIST = 0x04
    RESET = 0x05
    START = 0x06
    STOP = 0x07
    CREATE = 0x08
    DELETE = 0x09
    MULTIPLE_SERVICE_PACKET = 0x0A
    APPLY_ATTRIBUTES = 0x0D
    GET_ATTRIBUTE_SINGLE = 0x0E
    SET_ATTRIBUTE_SINGLE = 0x10
    FIND_NEXT_OBJECT_INSTANCE = 0x11
    RESTORE = 0x15
    SAVE = 0x16
    NO_OPERATION = 0x17
    GET_MEMBER = 0x18
    SET_MEMBER = 0x19
    INSERT_MEMBER = 0x1A
    REMOVE_MEMBER = 0x1B
    GROUP_SYNC = 0x1C


class CmService(IntEnum):
    """Connection Manager (class 0x06) services, CIP Vol. 1 §3-5.5."""

    FORWARD_CLOSE = 0x4E
    UNCONNECTED_SEND = 0x52
    FORWARD_OPEN = 0x54
    GET_CONNECTION_OWNER = 0x5A
    LARGE_FORWARD_OPEN = 0x5B


class TagService(IntEnum):
    """Rockwell Logix data table services on symbolic paths (1756-PM020)."""

    READ_TAG = 0x4C
    WRITE_TAG = 0x4D
    READ_MODIFY_WRITE_TAG = 0x4E
    READ_TAG_FRAGMENTED = 0x52
    WRITE_TAG_FRAGMENTED = 0x53
    GET_INSTANCE_ATTRIBUTE_LIST = 0x55


class FileService(IntEnum):
    """File object (class 0x37) services, CIP Vol. 1 §5-42."""

    INITIATE_UPLOAD = 0x4B
    INITIATE_DOWNLOAD = 0x4C
    INITIATE_PARTIAL_READ = 0x4D
    INITIATE_PARTIAL_WRITE = 0x4E
    UPLOAD_TRANSFER = 0x4F
    DOWNLOAD_TRANSFER = 0x50
    CLEAR_FILE = 0x51


# The services the hot path tests, as plain ints (an IntEnum member costs an
# attribute look-up per use).
GET_ATTRIBUTES_ALL: Final = int(Service.GET_ATTRIBUTES_ALL)
GET_ATTRIBUTE_LIST: Final = int(Service.GET_ATTRIBUTE_LIST)
SET_ATTRIBUTE_LIST: Final = int(Service.SET_ATTRIBUTE_LIST)
RESET: Final = int(Service.RESET)
CREATE: Final = int(Service.CREATE)
MULTIPLE_SERVICE_PACKET: Final = int(Service.MULTIPLE_SERVICE_PACKET)
GET_ATTRIBUTE_SINGLE: Final = int(Service.GET_ATTRIBUTE_SINGLE)
SET_ATTRIBUTE_SINGLE: Final = int(Service.SET_ATTRIBUTE_SINGLE)
FIND_NEXT_OBJECT_INSTANCE: Final = int(Service.FIND_NEXT_OBJECT_INSTANCE)
FORWARD_CLOSE: Final = int(CmService.FORWARD_CLOSE)
UNCONNECTED_SEND: Final = int(CmService.UNCONNECTED_SEND)
LARGE_FORWARD_OPEN: Final = int(CmService.LARGE_FORWARD_OPEN)
FORWARD_OPENS: Final = (int(CmService.FORWARD_OPEN), LARGE_FORWARD_OPEN)
CONNECTION_SERVICES: Final = (FORWARD_CLOSE, *FORWARD_OPENS)
READ_TAG: Final = int(TagService.READ_TAG)
WRITE_TAG: Final = int(TagService.WRITE_TAG)
READ_TAG_FRAGMENTED: Final = int(TagService.READ_TAG_FRAGMENTED)
WRITE_TAG_FRAGMENTED: Final = int(TagService.WRITE_TAG_FRAGMENTED)

IDENTITY_CLASS: Final = 0x01
MESSAGE_ROUTER_CLASS: Final = 0x02
CONNECTION_MANAGER_CLASS: Final = 0x06
FILE_CLASS: Final = 0x37
SYMBOL_CLASS: Final = 0x6B
# Objects that carry firmware or programs (per the issue: 0xA1 and the like).
PROGRAM_CLASSES: Final = frozenset({0xA1})
SUCCESS: Final = 0x00
# Connection Manager extended statuses of a failed Unconnected Send: timed
# out, port not available, bad link address, bad segment, link to self.
UNCONNECTED_SEND_ERRORS: Final = frozenset({0x0204, 0x0311, 0x0312, 0x0315, 0x0318})
PARTIAL_TRANSFER: Final = 0x06

GENERIC_NAMES: Final = {s.value: s.name.lower() for s in Service}
GENERIC_ACCESS: Final[dict[int, str]] = {
    0x01: READ, 0x02: WRITE, 0x03: READ, 0x04: WRITE, 0x05: CONTROL, 0x06: CONTROL,
    0x07: CONTROL, 0x08: WRITE, 0x09: WRITE, 0x0A: OTHER, 0x0D: WRITE, 0x0E: READ,
    0x10: WRITE, 0x11: READ, 0x15: WRITE, 0x16: OTHER, 0x17: OTHER, 0x18: READ, 0x19: WRITE,
    0x1A: WRITE, 0x1B: WRITE, 0x1C: OTHER,
}
CM_NAMES: Final = {s.value: s.name.lower() for s in CmService}
TAG_NAMES: Final = {s.value: s.name.lower() for s in TagService}
TAG_ACCESS: Final[dict[int, str]] = {0x4C: READ, 0x4D: WRITE, 0x4E: WRITE, 0x52: READ,
                                     0x53: WRITE, 0x55: READ}
FILE_NAMES: Final = {s.value: s.name.lower() for s in FileService}
IDENTITY_READS: Final = frozenset({0x01, 0x03, 0x0E})

OPERATIONS: Final = frozenset(
    set(GENERIC_NAMES.values()) | set(CM_NAMES.values()) | set(TAG_NAMES.values())
    | set(FILE_NAMES.values()) | {"class_specific_service", "unknown_service"}
)

# Identity object attributes (CIP Vol. 1 §5-2): (field, decoder) per attribute.
U8, U16, U32, SSTRING, REVISION = range(5)
IDENTITY_ATTRIBUTES: Final[dict[int, tuple[str, int]]] = {
    1: ("id.vendor_id", U16), 2: ("id.device_type", U16), 3: ("id.product_code", U16),
    4: ("", REVISION), 5: ("id.status", U16), 6: ("id.serial_number", U32),
    7: ("id.product_name", SSTRING), 8: ("id.state", U8), 9: ("id.config_value", U16),
    10: ("id.heartbeat", U8),
}
# Class attributes every object shares (instance 0, CIP Vol. 1 §4-4.1), as
# far as they are plain numbers.
CLASS_ATTRIBUTES: Final[dict[int, tuple[str, int]]] = {
    1: ("class_revision", U16), 2: ("max_instance", U16), 3: ("num_instance", U16),
    6: ("num_class_attr", U16), 7: ("num_inst_attr", U16),
}
# What Get Attributes All returns, in order (Wireshark's "gaa_index" order).
IDENTITY_GAA: Final = (1, 2, 3, 4, 5, 6, 7, 8, 9, 10)
IDENTITY_CLASS_GAA: Final = (1, 2, 6, 7)

# A few vendors and device types (CIP Vol. 1 §5-2.2), for the asset inventory.
VENDORS: Final = {
    1: "Rockwell Automation/Allen-Bradley", 8: "Molex", 26: "Festo", 40: "WAGO",
    43: "Balluff", 44: "Yaskawa", 46: "ABB", 47: "Omron", 48: "Turck", 68: "Eaton",
    82: "Mitsubishi Electric", 90: "HMS Industrial Networks", 108: "Beckhoff",
    145: "Siemens", 161: "Mitsubishi Electric", 176: "Red Lion Controls", 181: "Pilz",
    243: "Schneider Electric", 283: "Hilscher", 309: "ProSoft Technology",
    367: "Keyence",
}
DEVICE_TYPES: Final = {
    0x00: "generic device", 0x02: "AC drive", 0x07: "general purpose discrete I/O",
    0x0C: "communications adapter", 0x0E: "programmable logic controller",
    0x18: "human-machine interface", 0x2B: "generic device (keyable)",
}


class CipRequest:
    """What a response needs from its request: the service, the path and,
    for an Unconnected Send or a Multiple Service Packet, the requests
    inside it."""

    __slots__ = (
        "access",
        "attribute",
        "cls",
        "embedded",
        "instance",
        "operation",
        "path_fields",
        "route_fields",
        "service",
        "symbolic",
    )

    def __init__(self, service: int) -> None:
        self.service = service
        self.cls = -1
        self.instance = -1
        self.attribute = -1
        self.symbolic = False
        self.path_fields: dict[str, Any] = {}
        self.route_fields: dict[str, Any] = {}
        self.embedded: list[CipRequest] = []
        self.operation = "unknown_service"
        self.access = OTHER


# One decoded service: fields, operation, access, malformed reason,
# exception (a CIP error status) and the request to keep for pairing.
Parsed = tuple[dict[str, Any], str, str, str | None, bool, CipRequest | None]


def classify(service: int, request: CipRequest) -> tuple[str, str]:
    """Operation name and access class of request ``service`` on its path."""
    cls = request.cls
    if service < 0x20 and service in GENERIC_NAMES:
        operation = GENERIC_NAMES[service]
        access = GENERIC_ACCESS[service]
        if cls == IDENTITY_CLASS and service in IDENTITY_READS:
            access = DIAGNOSTIC
    elif cls == CONNECTION_MANAGER_CLASS and service in CM_NAMES:
        operation, access = CM_NAMES[service], OTHER
    elif (request.symbolic or cls == SYMBOL_CLASS) and service in TAG_NAMES:
        operation, access = TAG_NAMES[service], TAG_ACCESS[service]
    elif cls == FILE_CLASS and service in FILE_NAMES:
        operation, access = FILE_NAMES[service], FILE
    elif 0x4B <= service <= 0x63:
        operation, access = "class_specific_service", OTHER
    else:
        operation, access = "unknown_service", OTHER
    if cls in PROGRAM_CLASSES:
        access = PROGRAM
    elif cls == FILE_CLASS:
        access = FILE
    return operation, access


def parse_path(data: bytes, p: int, end: int, fields: dict[str, Any],
               request: CipRequest | None) -> str | None:
    """Decode the EPATH ``data[p:end]`` (CIP Vol. 1 Appendix C) into
    ``fields`` (class, instance, attribute, member, connpoint, symbol, port,
    linkaddress.byte); return a malformed reason or None."""
    symbols: list[str] = []
    while p < end:
        segment = data[p]
        kind = segment & 0xE0
        if kind == 0x20:  # logical
            logical = segment & 0x1C
            fmt = segment & 0x03
            if logical == 0x14:  # special: electronic key (format 4)
                if p + 2 > end or data[p + 1] != 4 or p + 10 > end:
                    return BAD_VALUE
                p += 10
                continue
            if logical == 0x1C:  # extended logical: one more type byte
                size = (2, 4, 6, 0)[fmt]
                p += 2
                if size == 0 or p + size - 2 > end:
                    return BAD_VALUE
                p += size - 2
                continue
            if fmt == 0:
                if p + 2 > end:
                    return BAD_LENGTH
                value = data[p + 1]
                p += 2
            elif fmt == 1:
                if p + 4 > end:
                    return BAD_LENGTH
                value = data[p + 2] | data[p + 3] << 8
                p += 4
            elif fmt == 2:
                if p + 6 > end:
                    return BAD_LENGTH
                (value,) = _U32.unpack_from(data, p + 2)
                p += 6
            else:
                return BAD_VALUE
            if logical == 0x00:
                fields["class"] = value
                if request is not None:
                    request.cls = value
            elif logical == 0x04:
                fields["instance"] = value
                if request is not None:
                    request.instance = value
            elif logical == 0x08:
                fields["member"] = value
            elif logical == 0x0C:
                fields["connpoint"] = value
            elif logical == 0x10:
                fields["attribute"] = value
                if request is not None:
                    request.attribute = value
            else:  # service id
                continue
        elif segment == 0x91:  # ANSI extended symbol
            if p + 2 > end:
                return BAD_LENGTH
            size = data[p + 1]
            if p + 2 + size > end:
                return BAD_LENGTH
            symbols.append(data[p + 2 : p + 2 + size].decode("latin-1"))
            p += 2 + size + (size & 1)
            if request is not None:
                request.symbolic = True
        elif kind == 0x00:  # port
            if segment & 0x10:  # extended link address
                if p + 2 > end:
                    return BAD_LENGTH
                size = data[p + 1]
                p += 2 + size + (size & 1)
            else:
                if p + 2 > end:
                    return BAD_LENGTH
                fields["port"] = segment & 0x0F
                fields["linkaddress.byte"] = data[p + 1]
                p += 2
        elif kind == 0x60:  # symbolic segment
            size = segment & 0x1F
            if size == 0 or p + 1 + size > end:
                return BAD_VALUE
            symbols.append(data[p + 1 : p + 1 + size].decode("latin-1"))
            p += 1 + size + (~size & 1)
            if request is not None:
                request.symbolic = True
        elif segment == 0x80:  # simple data segment
            if p + 2 > end or p + 2 + data[p + 1] * 2 > end:
                return BAD_LENGTH
            p += 2 + data[p + 1] * 2
        elif kind == 0x40:  # network segment
            if segment & 0x10:
                if p + 2 > end:
                    return BAD_LENGTH
                p += 2 + data[p + 1] * 2
            else:
                p += 2
        else:
            return BAD_VALUE
    if symbols:
        fields["symbol"] = ".".join(symbols)
    return None if p == end else BAD_LENGTH


def _attribute(data: bytes, p: int, end: int, decoder: int, name: str,
               fields: dict[str, Any]) -> int:
    """Decode one attribute value at ``p``; return its size, 0 when it does
    not fit (the caller stops there)."""
    if decoder == U16:
        if p + 2 > end:
            return 0
        fields[name] = data[p] | data[p + 1] << 8
        return 2
    if decoder == U32:
        if p + 4 > end:
            return 0
        (fields[name],) = _U32.unpack_from(data, p)
        return 4
    if decoder == U8:
        if p + 1 > end:
            return 0
        fields[name] = data[p]
        return 1
    if decoder == REVISION:
        if p + 2 > end:
            return 0
        fields["id.major_rev"] = data[p]
        fields["id.minor_rev"] = data[p + 1]
        return 2
    # SHORT_STRING: a length byte, then the characters
    if p + 1 > end or p + 1 + data[p] > end:
        return 0
    fields[name] = data[p + 1 : p + 1 + data[p]].decode("latin-1")
    return 1 + data[p]


def _attribute_table(request: CipRequest) -> dict[int, tuple[str, int]] | None:
    if request.instance == 0:
        return CLASS_ATTRIBUTES
    if request.cls == IDENTITY_CLASS and request.instance > 0:
        return IDENTITY_ATTRIBUTES
    return None


def identity_summary(fields: dict[str, Any], prefix: str) -> dict[str, Any]:
    """The device identity a ListIdentity reply (``lir.``) or an Identity
    object reply (``id.``) reveals, as one map for the asset inventory."""
    identity: dict[str, Any] = {}
    if prefix == "lir.":
        names = (("lir.vendor", "vendor_id"), ("lir.devtype", "device_type"),
                 ("lir.prodcode", "product_code"), ("lir.serial", "serial_number"),
                 ("lir.name", "product_name"), ("lir.status", "status"),
                 ("lir.state", "state"))
        revision = fields.get("lir.revision")
        if revision is not None:
            identity["revision"] = f"{revision >> 8}.{revision & 0xFF}"
    else:
        names = (("id.vendor_id", "vendor_id"), ("id.device_type", "device_type"),
                 ("id.product_code", "product_code"), ("id.serial_number", "serial_number"),
                 ("id.product_name", "product_name"), ("id.status", "status"),
                 ("id.state", "state"))
        if "id.major_rev" in fields:
            identity["revision"] = f"{fields['id.major_rev']}.{fields['id.minor_rev']}"
    for ours, key in names:
        if ours in fields:
            identity[key] = fields[ours]
    if not identity:
        return identity
    vendor = VENDORS.get(identity.get("vendor_id", -1))
    if vendor is not None:
        identity["vendor"] = vendor
    device = DEVICE_TYPES.get(identity.get("device_type", -1))
    if device is not None:
        identity["device"] = device
    if "serial_number" in identity:
        identity["serial_number"] = f"{identity['serial_number']:08x}"
    return identity


# -- requests ---------------------------------------------------------------


def parse_request(data: bytes, start: int, end: int) -> tuple[list[Parsed], CipRequest | None]:
    """Decode the request ``data[start:end]``: one entry per service (an
    Unconnected Send or a Multiple Service Packet unwrapped), and the
    request to pair its response with."""
    if end - start < 2:
        return [({"service": data[start]} if end > start else {}, "unknown_service", OTHER,
                 BAD_LENGTH, False, None)], None
    service = data[start]
    path_words = data[start + 1]
    p = start + 2 + path_words * 2
    request = CipRequest(service)
    fields: dict[str, Any] = {"service": service, "request_path_size": path_words}
    if p > end:
        fields["epath"] = data[start + 2 : end].hex()
        return [(fields, "unknown_service", OTHER, BAD_LENGTH, False, request)], request
    fields["epath"] = data[start + 2 : p].hex()
    path_fields: dict[str, Any] = {}
    malformed = parse_path(data, start + 2, p, path_fields, request)
    fields.update(path_fields)
    request.path_fields = path_fields
    request.path_fields["request_path_size"] = path_words
    operation, access = classify(service, request)
    request.operation, request.access = operation, access
    cls = request.cls
    if cls == CONNECTION_MANAGER_CLASS and service == UNCONNECTED_SEND:
        unwrapped = _unconnected_send(data, p, end, request)
        if unwrapped is not None:
            return unwrapped, request
    if service == MULTIPLE_SERVICE_PACKET and cls == MESSAGE_ROUTER_CLASS:
        unwrapped = _multiple_service_packet(data, p, end, request)
        if unwrapped is not None:
            return unwrapped, request
        malformed = malformed or BAD_LENGTH  # no count, or offsets outside the packet
    reason = _request_data(data, p, end, service, request, fields)
    return [(fields, operation, access, malformed or reason, False, request)], request


def _request_data(data: bytes, p: int, end: int, service: int, request: CipRequest,
                  fields: dict[str, Any]) -> str | None:
    """The service-specific data of a request after its path."""
    cls = request.cls
    if cls == CONNECTION_MANAGER_CLASS and service in FORWARD_OPENS:
        return _forward_open(data, p, end, service == LARGE_FORWARD_OPEN, fields)
    if cls == CONNECTION_MANAGER_CLASS and service == FORWARD_CLOSE:
        return _forward_close(data, p, end, fields)
    if service in (GET_ATTRIBUTE_LIST, SET_ATTRIBUTE_LIST):
        if end - p < 2:
            return BAD_LENGTH
        count = data[p] | data[p + 1] << 8
        fields["getlist.attr_count" if service == 3 else "setlist.attr_count"] = count
        q = p + 2
        attributes: list[int] = []
        table = _attribute_table(request)
        for _ in range(count):
            if q + 2 > end:
                fields["attributes"] = attributes
                return BAD_LENGTH
            attribute = data[q] | data[q + 1] << 8
            attributes.append(attribute)
            q += 2
            if service == SET_ATTRIBUTE_LIST:
                known = table.get(attribute) if table is not None else None
                size = 0 if known is None else _attribute(data, q, end, known[1], known[0],
                                                          fields)
                if size == 0:
                    break
                q += size
        fields["attributes"] = attributes
        if q < end:
            fields["data"] = data[q:end].hex()
        return None
    if service == SET_ATTRIBUTE_SINGLE and request.attribute >= 0:
        table = _attribute_table(request)
        known = table.get(request.attribute) if table is not None else None
        size = 0 if known is None else _attribute(data, p, end, known[1], known[0], fields)
        if p + size < end:
            fields["data"] = data[p + size : end].hex()
        return None
    if service == RESET and p < end:
        fields["reset.type"] = data[p]
        p += 1
    elif service == FIND_NEXT_OBJECT_INSTANCE and p < end:
        fields["find_next_object.max_instance"] = data[p]
        p += 1
    elif request.symbolic or cls == SYMBOL_CLASS:
        _tag_request(data, p, end, service, fields)
    if p < end:
        fields["data"] = data[p:end].hex()
    return None


def _tag_request(data: bytes, p: int, end: int, service: int, fields: dict[str, Any]) -> None:
    """Logix tag services: element count, offset and data type (the bytes
    stay in ``data``, as Wireshark 4.0 shows them)."""
    if service == READ_TAG and end - p >= 2:
        fields["tag.elements"] = data[p] | data[p + 1] << 8
    elif service == READ_TAG_FRAGMENTED and end - p >= 6:
        fields["tag.elements"], fields["tag.offset"] = _U16U32.unpack_from(data, p)
    elif service in (WRITE_TAG, WRITE_TAG_FRAGMENTED) and end - p >= 4:
        tag_type = data[p] | data[p + 1] << 8
        q = p + 2
        if tag_type == 0x02A0 and end - q >= 2:  # structure: a handle follows
            q += 2
        fields["tag.type"] = tag_type
        if end - q >= 2:
            fields["tag.elements"] = data[q] | data[q + 1] << 8
        if service == WRITE_TAG_FRAGMENTED and end - q >= 6:
            (fields["tag.offset"],) = _U32.unpack_from(data, q + 2)


def _cm_timeout(data: bytes, p: int, fields: dict[str, Any]) -> None:
    tick = data[p]
    fields["cm.priority"] = tick >> 4 & 1
    fields["cm.tick_time"] = tick & 0x0F
    fields["cm.timeout_tick"] = data[p + 1]
    fields["cm.timeout"] = (1 << (tick & 0x0F)) * data[p + 1]


def _forward_open(data: bytes, p: int, end: int, large: bool, fields: dict[str, Any]) -> str | None:
    """Forward Open and Large Forward Open requests, CIP Vol. 1 §3-5.5.2."""
    size = 36 + (4 if large else 0)
    if end - p < size:
        return BAD_LENGTH
    _cm_timeout(data, p, fields)
    (_tick, _ticks, fields["cm.ot_connid"], fields["cm.to_connid"], fields["cm.conn_serial_num"],
     fields["cm.vendor"], fields["cm.orig_serial_num"],
     fields["cm.timeout_multiplier"]) = _FWD_OPEN.unpack_from(data, p)
    q = p + 22
    (fields["cm.otrpi"],) = _U32.unpack_from(data, q)
    if large:
        (fields["cm.ot_net_params"],) = _U32.unpack_from(data, q + 4)
        q += 8
    else:
        fields["cm.ot_net_params"] = data[q + 4] | data[q + 5] << 8
        q += 6
    (fields["cm.torpi"],) = _U32.unpack_from(data, q)
    if large:
        (fields["cm.to_net_params"],) = _U32.unpack_from(data, q + 4)
        q += 8
    else:
        fields["cm.to_net_params"] = data[q + 4] | data[q + 5] << 8
        q += 6
    fields["cm.transport_type_trigger"] = data[q]
    words = data[q + 1]
    fields["cm.connpath_size"] = words
    q += 2
    if q + words * 2 > end:
        fields["connection_path"] = data[q:end].hex()
        return BAD_LENGTH
    fields["connection_path"] = data[q : q + words * 2].hex()
    return None if q + words * 2 == end else BAD_LENGTH


def _forward_close(data: bytes, p: int, end: int, fields: dict[str, Any]) -> str | None:
    if end - p < 12:
        return BAD_LENGTH
    _cm_timeout(data, p, fields)
    (fields["cm.conn_serial_num"], fields["cm.vendor"],
     fields["cm.orig_serial_num"]) = _TRIAD.unpack_from(data, p + 2)
    words = data[p + 10]
    fields["cm.connpath_size"] = words
    q = p + 12
    fields["connection_path"] = data[q : min(end, q + words * 2)].hex()
    return None if q + words * 2 == end else BAD_LENGTH


def _unconnected_send(data: bytes, p: int, end: int, request: CipRequest) -> list[Parsed] | None:
    """Unconnected Send (CIP Vol. 1 §3-5.5.4): the embedded request, with
    the send's timeout, size and route path beside its own fields."""
    if end - p < 4:
        return None
    outer: dict[str, Any] = {}
    _cm_timeout(data, p, outer)
    size = data[p + 2] | data[p + 3] << 8
    outer["cm.msg_req_size"] = size
    q = p + 4 + size + (size & 1)
    malformed: str | None = None
    if q + 2 <= end:
        words = data[q]
        outer["cm.route_path_size"] = words
        route = data[q + 2 : q + 2 + words * 2]
        outer["route_path"] = route.hex()
        route_fields: dict[str, Any] = {}
        parse_path(route, 0, len(route), route_fields, None)
        if "port" in route_fields:
            outer["port"] = route_fields["port"]
            outer["linkaddress.byte"] = route_fields["linkaddress.byte"]
        if q + 2 + words * 2 != end:
            malformed = BAD_LENGTH
    else:
        malformed = BAD_LENGTH
    if p + 4 + size > end or size == 0:
        return [({"service": request.service, **request.path_fields, **outer},
                 "unconnected_send", OTHER, BAD_LENGTH, False, request)]
    request.route_fields = {name: outer[name] for name in ("cm.route_path_size",)
                            if name in outer}
    parsed, inner = parse_request(data, p + 4, p + 4 + size)
    if inner is not None:
        request.embedded.append(inner)
    out: list[Parsed] = []
    for fields, operation, access, reason, exception, embedded in parsed:
        fields.update(outer)
        out.append((fields, operation, access, reason or malformed, exception, embedded))
    return out


def _multiple_service_packet(data: bytes, p: int, end: int,
                             request: CipRequest) -> list[Parsed] | None:
    """Multiple Service Packet (CIP Vol. 1 §A-4.10): one entry per service."""
    if end - p < 2:
        return None
    count = data[p] | data[p + 1] << 8
    offsets = _offsets(data, p, end, count)
    if offsets is None:
        return None
    out: list[Parsed] = []
    for start, stop in offsets:
        parsed, inner = parse_request(data, p + start, p + stop)
        request.embedded.append(inner if inner is not None else CipRequest(-1))
        for fields, operation, access, reason, exception, embedded in parsed:
            fields["msp.num_services"] = count
            fields["msp.offset"] = start
            out.append((fields, operation, access, reason, exception, embedded))
    return out


def _offsets(data: bytes, p: int, end: int, count: int) -> list[tuple[int, int]] | None:
    """Start and end (relative to ``p``) of each embedded service, or None
    when the offset table is inconsistent."""
    table_end = p + 2 + count * 2
    if count == 0 or table_end > end:
        return None
    starts = [data[p + 2 + i * 2] | data[p + 3 + i * 2] << 8 for i in range(count)]
    bounds: list[tuple[int, int]] = []
    for i, start in enumerate(starts):
        stop = starts[i + 1] if i + 1 < count else end - p
        if start < table_end - p or stop > end - p or stop <= start:
            return None
        bounds.append((start, stop))
    return bounds


# -- responses --------------------------------------------------------------


def parse_response(data: bytes, start: int, end: int, request: CipRequest | None) -> list[Parsed]:
    """Decode the response ``data[start:end]`` to ``request`` (None when it
    was not seen): one entry per service, as for requests."""
    if end - start < 4:
        fields: dict[str, Any] = {"service": data[start]} if end > start else {}
        return [(fields, "unknown_service", OTHER, BAD_LENGTH, False, request)]
    service = data[start]
    code = service & 0x7F
    genstat = data[start + 2]
    addstat_size = data[start + 3]
    fields = {"service": service, "genstat": genstat, "addstat_size": addstat_size}
    p = start + 4 + addstat_size * 2
    if p > end:
        return [(fields, "unknown_service", OTHER, BAD_LENGTH, genstat != SUCCESS, request)]
    if addstat_size:
        fields["addstat"] = [data[q] | data[q + 1] << 8 for q in range(start + 4, p, 2)]
    exception = genstat not in (SUCCESS, PARTIAL_TRANSFER)
    route: dict[str, Any] = {}
    # The reply to an Unconnected Send is the reply of the request it
    # carried (or of the one that one carried, when routed further).
    while request is not None and request.service == UNCONNECTED_SEND \
            and request.cls == CONNECTION_MANAGER_CLASS and request.embedded \
            and not _send_failed(code, genstat, fields.get("addstat", ())):
        route = route or request.route_fields
        request = request.embedded[0]
    if request is not None and request.service != code:
        request = None
    if code == MULTIPLE_SERVICE_PACKET and (
            request is None or request.cls == MESSAGE_ROUTER_CLASS):
        unwrapped = _multiple_service_reply(data, p, end, request or CipRequest(code), route)
        if unwrapped is not None:
            return unwrapped
    if request is not None:
        fields.update(request.path_fields)
        fields.update(route)
        operation, access = request.operation, request.access
    elif code in GENERIC_NAMES:
        operation, access = GENERIC_NAMES[code], GENERIC_ACCESS[code]
    else:
        operation, access = "unknown_service", OTHER
    malformed = _response_data(data, p, end, code, genstat, request, fields)
    return [(fields, operation, access, malformed, exception, request)]


def _send_failed(code: int, genstat: int, addstat: Any) -> bool:
    """Is this the Unconnected Send's own error reply (routing failed), not
    the reply of the request it carried? (Wireshark's test, CIP Vol. 1
    §3-5.5.4.)"""
    if code != UNCONNECTED_SEND:
        return False
    if genstat in (0x02, 0x04):
        return True
    return genstat == 0x01 and len(addstat) == 1 and addstat[0] in UNCONNECTED_SEND_ERRORS


def _multiple_service_reply(data: bytes, p: int, end: int, request: CipRequest,
                            route: dict[str, Any]) -> list[Parsed] | None:
    if end - p < 2:
        return None
    count = data[p] | data[p + 1] << 8
    offsets = _offsets(data, p, end, count)
    if offsets is None:
        return None
    embedded = request.embedded if len(request.embedded) == count else []
    out: list[Parsed] = []
    for index, (start, stop) in enumerate(offsets):
        inner = embedded[index] if embedded else None
        for fields, operation, access, reason, exception, paired in parse_response(
                data, p + start, p + stop, inner):
            fields["msp.num_services"] = count
            fields["msp.offset"] = start
            fields.update(route)
            out.append((fields, operation, access, reason, exception, paired))
    return out


def _response_data(data: bytes, p: int, end: int, code: int, genstat: int,
                   request: CipRequest | None, fields: dict[str, Any]) -> str | None:
    """The service-specific data of a response after its status."""
    if p >= end:
        return None
    cls = request.cls if request is not None else -1
    # Attribute list error (0x0A), embedded service error (0x1E) and invalid
    # attribute value list (0x1C) still carry their data.
    if genstat not in (SUCCESS, PARTIAL_TRANSFER, 0x0A, 0x1E, 0x1C):
        if cls == CONNECTION_MANAGER_CLASS and code in CONNECTION_SERVICES and end - p >= 10:
            (fields["cm.conn_serial_num"], fields["cm.vendor"],
             fields["cm.orig_serial_num"]) = _TRIAD.unpack_from(data, p)
            fields["cm.remain_path_size"] = data[p + 8]
            p += 10
        elif cls == CONNECTION_MANAGER_CLASS and code == UNCONNECTED_SEND \
                and end - p >= 2:
            fields["cm.remain_path_size"] = data[p]
            p += 2
        if p < end:
            fields["data"] = data[p:end].hex()
        return None
    if request is None:
        fields["data"] = data[p:end].hex()
        return None
    if cls == CONNECTION_MANAGER_CLASS and code in FORWARD_OPENS:
        if end - p < 26:
            fields["data"] = data[p:end].hex()
            return BAD_LENGTH
        (fields["cm.ot_connid"], fields["cm.to_connid"], fields["cm.conn_serial_num"],
         fields["cm.vendor"], fields["cm.orig_serial_num"], fields["cm.otapi"],
         fields["cm.toapi"], words) = _FWD_OPEN_RSP.unpack_from(data, p)
        fields["cm.app_reply_size"] = words
        q = p + 26
        if words:
            fields["cm.app_reply_data"] = data[q : q + words * 2].hex()
        q += words * 2
        if q < end:
            fields["data"] = data[q:end].hex()
        return None if q <= end else BAD_LENGTH
    if cls == CONNECTION_MANAGER_CLASS and code == FORWARD_CLOSE:
        if end - p < 10:
            fields["data"] = data[p:end].hex()
            return BAD_LENGTH
        (fields["cm.conn_serial_num"], fields["cm.vendor"],
         fields["cm.orig_serial_num"]) = _TRIAD.unpack_from(data, p)
        words = data[p + 8]
        fields["cm.app_reply_size"] = words
        q = p + 10
        if words:
            fields["cm.app_reply_data"] = data[q : q + words * 2].hex()
        q += words * 2
        if q < end:
            fields["data"] = data[q:end].hex()
        return None if q <= end else BAD_LENGTH
    table = _attribute_table(request)
    if code == GET_ATTRIBUTES_ALL and table is not None and (
            request.cls == IDENTITY_CLASS or request.instance == 0):
        order = IDENTITY_GAA if table is IDENTITY_ATTRIBUTES else (
            IDENTITY_CLASS_GAA if request.cls == IDENTITY_CLASS else ())
        attributes: list[int] = []
        for attribute in order:
            if p >= end:
                break
            name, decoder = table[attribute]
            size = _attribute(data, p, end, decoder, name, fields)
            attributes.append(attribute)
            if size == 0:
                break
            p += size
        if attributes:
            fields["attributes"] = attributes
        if table is IDENTITY_ATTRIBUTES:
            identity = identity_summary(fields, "id.")
            if identity:
                fields["identity"] = identity
    elif code == GET_ATTRIBUTE_SINGLE and table is not None:
        known = table.get(request.attribute)
        if known is not None:
            p += _attribute(data, p, end, known[1], known[0], fields)
    elif code in (GET_ATTRIBUTE_LIST, SET_ATTRIBUTE_LIST):
        return _attribute_list_reply(data, p, end, code, table, fields)
    elif code == CREATE and end - p >= 2:
        fields["create.instance"] = data[p] | data[p + 1] << 8
        p += 2
    elif (request.symbolic or cls == SYMBOL_CLASS) and code in (READ_TAG, READ_TAG_FRAGMENTED) \
            and end - p >= 2:
        fields["tag.type"] = data[p] | data[p + 1] << 8
    if p < end:
        fields["data"] = data[p:end].hex()
    return None


def _attribute_list_reply(data: bytes, p: int, end: int, code: int,
                          table: dict[int, tuple[str, int]] | None,
                          fields: dict[str, Any]) -> str | None:
    """Get/Set Attribute List replies: count, then (attribute, status[,
    value]) per attribute; decoding stops at a value of unknown size."""
    if end - p < 2:
        return BAD_LENGTH
    count = data[p] | data[p + 1] << 8
    fields["getlist.attr_count" if code == 3 else "setlist.attr_count"] = count
    q = p + 2
    attributes: list[int] = []
    statuses: list[int] = []
    malformed: str | None = None
    for i in range(count):
        if q + 4 > end:
            malformed = BAD_LENGTH
            break
        attribute = data[q] | data[q + 1] << 8
        attributes.append(attribute)
        statuses.append(data[q + 2])
        status = data[q + 2] | data[q + 3] << 8
        q += 4
        if code == GET_ATTRIBUTE_LIST and status == 0:
            known = table.get(attribute) if table is not None else None
            size = 0 if known is None else _attribute(data, q, end, known[1], known[0], fields)
            if size == 0:
                break
            q += size
        if i < count - 1 and end - q < 4:
            malformed = BAD_LENGTH
            break
    fields["attributes"] = attributes
    fields["getlist.attr_status" if code == 3 else "setlist.attr_status"] = statuses
    if q < end:
        fields["data"] = data[q:end].hex()
    return malformed
