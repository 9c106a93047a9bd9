"""DNP3 constants: function codes, link functions, qualifiers and the data
object table (IEEE 1815-2012 §4.2, §8, §11, Annex A).

Each object group/variation the decoder knows maps to an `ObjectSpec` that
says how big one point is and which Wireshark fields (``dnp3.al.*`` without
the ``dnp3.`` prefix) its parts fill, so the decoder walks points with one
generic loop instead of a branch per object.
"""

from __future__ import annotations

import struct
from enum import IntEnum
from typing import Final, NamedTuple

from sensor.event import CONTROL, FILE, OTHER, PROGRAM, READ, WRITE


class FunctionCode(IntEnum):
    """Application layer function codes, IEEE 1815-2012 §4.2.2.5 Table 4-2."""

    CONFIRM = 0
    READ = 1
    WRITE = 2
    SELECT = 3
    OPERATE = 4
    DIRECT_OPERATE = 5
    DIRECT_OPERATE_NO_ACK = 6
    IMMEDIATE_FREEZE = 7
    IMMEDIATE_FREEZE_NO_ACK = 8
    FREEZE_AND_CLEAR = 9
    FREEZE_AND_CLEAR_NO_ACK = 10
    FREEZE_AT_TIME = 11
    FREEZE_AT_TIME_NO_ACK = 12
    COLD_RESTART = 13
    WARM_RESTART = 14
    INITIALIZE_DATA = 15
    INITIALIZE_APPLICATION = 16
    START_APPLICATION = 17
    STOP_APPLICATION = 18
    SAVE_CONFIGURATION = 19
    ENABLE_UNSOLICITED = 20
    DISABLE_UNSOLICITED = 21
    ASSIGN_CLASS = 22
    DELAY_MEASURE = 23
    RECORD_CURRENT_TIME = 24
    OPEN_FILE = 25
    CLOSE_FILE = 26
    DELETE_FILE = 27
    GET_FILE_INFO = 28
    AUTHENTICATE_FILE = 29
    ABORT_FILE = 30
    ACTIVATE_CONFIG = 31
    AUTHENTICATE_REQUEST = 32
    AUTHENTICATE_REQUEST_NO_ACK = 33
    RESPONSE = 129
    UNSOLICITED_RESPONSE = 130
    AUTHENTICATE_RESPONSE = 131


RESPONSE_FUNCTIONS: Final = frozenset({129, 130, 131})
OPERATION: Final[dict[int, str]] = {fc.value: fc.name.lower() for fc in FunctionCode}

# Access class of each request function (issue #?: CROB commands are
# control, analog output blocks are writes; the decoder refines the
# select/operate family by the objects carried).
ACCESS: Final[dict[int, str]] = {
    0: OTHER, 1: READ, 2: WRITE, 3: CONTROL, 4: CONTROL, 5: CONTROL, 6: CONTROL,
    7: CONTROL, 8: CONTROL, 9: CONTROL, 10: CONTROL, 11: CONTROL, 12: CONTROL,
    13: CONTROL, 14: CONTROL, 15: CONTROL, 16: CONTROL, 17: CONTROL, 18: CONTROL,
    19: PROGRAM, 20: CONTROL, 21: CONTROL, 22: WRITE, 23: OTHER, 24: OTHER,
    25: FILE, 26: FILE, 27: FILE, 28: FILE, 29: FILE, 30: FILE, 31: PROGRAM,
    32: OTHER, 33: OTHER, 129: OTHER, 130: READ, 131: OTHER,
}
# Select, operate, direct operate (and no ack): the objects decide.
COMMAND_FUNCTIONS: Final = frozenset({3, 4, 5, 6})
# Requests that never get an application response.
NO_RESPONSE_FUNCTIONS: Final = frozenset({0, 6, 8, 10, 12, 33})
# Requests whose object headers carry no point data (Wireshark's
# "header_only"): reads, freezes, class assignment, unsolicited control.
HEADER_ONLY_FUNCTIONS: Final = frozenset({1, 7, 8, 9, 10, 20, 21, 22})


class LinkFunction(IntEnum):
    """Data link function codes, IEEE 1815-2012 §9.2.4.1.3."""

    RESET_LINK_STATES = 0
    TEST_LINK_STATES = 2
    CONFIRMED_USER_DATA = 3
    UNCONFIRMED_USER_DATA = 4
    REQUEST_LINK_STATUS = 9


class SecondaryLinkFunction(IntEnum):
    ACK = 0
    NACK = 1
    LINK_STATUS = 11
    NOT_SUPPORTED = 15


PRIMARY_LINK_OPERATIONS: Final[dict[int, str]] = {
    0: "link_reset_link_states", 1: "link_reset_user_process", 2: "link_test_link_states",
    3: "link_confirmed_user_data", 4: "link_unconfirmed_user_data",
    9: "link_request_link_status",
}
SECONDARY_LINK_OPERATIONS: Final[dict[int, str]] = {
    0: "link_ack", 1: "link_nack", 11: "link_status", 14: "link_not_functioning",
    15: "link_not_supported",
}
USER_DATA_LINK_FUNCTIONS: Final = frozenset({3, 4})

# Internal indications, IIN1 in the high byte as Wireshark shows them
# (``dnp3.al.iin`` = IIN1 << 8 | IIN2), IEEE 1815-2012 §4.2.2.7.
IIN_BITS: Final[dict[str, int]] = {
    "al.iin.bmsg": 0x0100, "al.iin.cls1d": 0x0200, "al.iin.cls2d": 0x0400,
    "al.iin.cls3d": 0x0800, "al.iin.tsr": 0x1000, "al.iin.dol": 0x2000,
    "al.iin.dt": 0x4000, "al.iin.rst": 0x8000, "al.iin.fcni": 0x0001,
    "al.iin.obju": 0x0002, "al.iin.pioor": 0x0004, "al.iin.ebo": 0x0008,
    "al.iin.oae": 0x0010, "al.iin.cc": 0x0020,
}

# Object groups whose presence decides the access of a command.
CROB_GROUP: Final = 12
ANALOG_OUTPUT_BLOCK_GROUP: Final = 41
FILE_GROUP: Final = 70
TIME_GROUP: Final = 50
IIN_GROUP: Final = 80
CLASS_GROUP: Final = 60


# -- the object table ---------------------------------------------------------

# Point layouts (`ObjectSpec.layout`).
PACKED_BIT: Final = 1  # one bit per point, packed (g1v1, g10v1, g12v3, g80v1)
PACKED_2BIT: Final = 2  # two bits per point, packed (g3v1)
FIXED: Final = 3  # fixed size: flags, value, status, time as the spec says
CROB: Final = 4  # control relay output block (g12v1, g12v2)
OCTETS: Final = 5  # the variation is the length (g110, g111, g112, g113)
FILE_OBJECT: Final = 6  # g70: variable, decoded by the file routines
DEVICE_ATTRIBUTE: Final = 7  # g0: data type, length, value
NO_DATA: Final = 8  # never carries point data (g60, variation 0)
BO_COMMAND_EVENT: Final = 9  # g13: commanded state bit and status


class ObjectSpec(NamedTuple):
    """How one point of an object is laid out.

    ``size`` is the bytes per point for `FIXED`/`CROB` layouts. A `FIXED`
    point is, in wire order: an optional status octet before the value
    (g43), an optional quality octet (``quality`` names Wireshark's flag
    field family, e.g. ``al.aiq``), an optional value (``value`` unpacks it
    into the field ``value_field``), an optional status octet after it
    (g41), and an optional 48-bit absolute (``time`` 1) or 16-bit relative
    (``time`` 2) time, or a 16-bit time delay (``time`` 3).
    """

    name: str
    layout: int
    size: int = 0
    quality: str | None = None
    value: struct.Struct | None = None
    value_field: str | None = None
    status_before: bool = False
    status_after: bool = False
    time: int = 0
    double_bit: bool = False


I16: Final = struct.Struct("<h")
I32: Final = struct.Struct("<i")
U16: Final = struct.Struct("<H")
U32: Final = struct.Struct("<I")
F32: Final = struct.Struct("<f")
F64: Final = struct.Struct("<d")
ABSOLUTE: Final = 1
RELATIVE: Final = 2
DELAY: Final = 3

_TIME_FORMAT: Final = {0: "", ABSOLUTE: "IH", RELATIVE: "H", DELAY: "H"}
_TIME_WIDTH: Final = {0: 0, ABSOLUTE: 6, RELATIVE: 2, DELAY: 2}


def point_format(spec: ObjectSpec) -> str:
    """The struct format (no byte order) of one `FIXED` point: status,
    quality, value, status, time (two columns for a 48-bit time), padding."""
    parts = ["B" if spec.status_before else "", "B" if spec.quality else "",
             spec.value.format.lstrip("<") if spec.value is not None else "",
             "B" if spec.status_after else "", _TIME_FORMAT[spec.time]]
    used = (spec.status_before + (spec.quality is not None) + spec.status_after
            + (spec.value.size if spec.value is not None else 0) + _TIME_WIDTH[spec.time])
    if spec.size > used:
        parts.append(f"{spec.size - used}x")
    return "".join(parts)


def _fixed(name: str, quality: str | None = None, value: struct.Struct | None = None,
           field: str | None = None, *, time: int = 0, status_before: bool = False,
           status_after: bool = False, double_bit: bool = False, size: int = 0) -> ObjectSpec:
    used = (status_before + (quality is not None) + status_after
            + (value.size if value is not None else 0) + _TIME_WIDTH[time])
    return ObjectSpec(name, FIXED, max(size, used), quality, value, field, status_before,
                      status_after, time, double_bit)


def _counters(group: int, frozen: bool, event: bool) -> dict[int, ObjectSpec]:
    """Counter groups 20-23: flags or not, 32 or 16 bits, with time or not."""
    kind = ("frozen " if frozen else "") + ("counter event" if event else "counter")
    table: dict[int, ObjectSpec] = {
        1: _fixed(f"32-bit {kind}", "al.ctrq", U32, "al.cnt"),
        2: _fixed(f"16-bit {kind}", "al.ctrq", U16, "al.cnt"),
        3: _fixed(f"32-bit delta {kind}", "al.ctrq", U32, "al.cnt"),
        4: _fixed(f"16-bit delta {kind}", "al.ctrq", U16, "al.cnt"),
    }
    if group in (20, 21):
        table.update({
            5 if group == 20 else 9: _fixed(f"32-bit {kind} without flag", None, U32, "al.cnt"),
            6 if group == 20 else 10: _fixed(f"16-bit {kind} without flag", None, U16,
                                             "al.cnt"),
        })
    if group == 20:
        table[7] = _fixed("32-bit delta counter without flag", None, U32, "al.cnt")
        table[8] = _fixed("16-bit delta counter without flag", None, U16, "al.cnt")
    if group != 20:
        table.update({
            5: _fixed(f"32-bit {kind} with time", "al.ctrq", U32, "al.cnt", time=ABSOLUTE),
            6: _fixed(f"16-bit {kind} with time", "al.ctrq", U16, "al.cnt", time=ABSOLUTE),
            7: _fixed(f"32-bit delta {kind} with time", "al.ctrq", U32, "al.cnt",
                      time=ABSOLUTE),
            8: _fixed(f"16-bit delta {kind} with time", "al.ctrq", U16, "al.cnt",
                      time=ABSOLUTE),
        })
    if group == 21:
        table[11] = _fixed("32-bit frozen delta counter without flag", None, U32, "al.cnt")
        table[12] = _fixed("16-bit frozen delta counter without flag", None, U16, "al.cnt")
    return {group << 8 | variation: spec for variation, spec in table.items()}


def _analog_events(group: int, quality: str, field: str, name: str,
                   status_before: bool = False) -> dict[int, ObjectSpec]:
    """Groups 32, 33, 42, 43: 32/16-bit, float, double, with time or not."""
    flags = None if status_before else quality
    variants = [(I32, 0), (I16, 0), (I32, ABSOLUTE), (I16, ABSOLUTE), (F32, 0), (F64, 0),
                (F32, ABSOLUTE), (F64, ABSOLUTE)]
    table: dict[int, ObjectSpec] = {}
    for variation, (value, time) in enumerate(variants, start=1):
        suffix = {I32: "int", I16: "int", F32: "float", F64: "double"}[value]
        table[group << 8 | variation] = _fixed(
            f"{name} {variation}", flags, value, f"{field}.{suffix}", time=time,
            status_before=status_before)
    return table


OBJECTS: Final[dict[int, ObjectSpec]] = {
    # Binary inputs
    0x0101: ObjectSpec("single-bit binary input", PACKED_BIT, 0),
    0x0102: _fixed("binary input with flags", "al.biq"),
    0x0201: _fixed("binary input event", "al.biq"),
    0x0202: _fixed("binary input event with absolute time", "al.biq", time=ABSOLUTE),
    0x0203: _fixed("binary input event with relative time", "al.biq", time=RELATIVE),
    0x0301: ObjectSpec("double-bit binary input", PACKED_2BIT, 0),
    0x0302: _fixed("double-bit binary input with flags", "al.biq", double_bit=True),
    0x0401: _fixed("double-bit binary input event", "al.biq", double_bit=True),
    0x0402: _fixed("double-bit binary input event with absolute time", "al.biq",
                   time=ABSOLUTE, double_bit=True),
    0x0403: _fixed("double-bit binary input event with relative time", "al.biq",
                   time=RELATIVE, double_bit=True),
    # Binary outputs and commands
    0x0A01: ObjectSpec("binary output", PACKED_BIT, 0),
    0x0A02: _fixed("binary output status", "al.boq"),
    0x0B01: _fixed("binary output event", "al.boq"),
    0x0B02: _fixed("binary output event with time", "al.boq", time=ABSOLUTE),
    0x0C01: ObjectSpec("control relay output block", CROB, 11),
    0x0C02: ObjectSpec("pattern control block", CROB, 11),
    0x0C03: ObjectSpec("pattern mask", PACKED_BIT, 0),
    0x0D01: ObjectSpec("binary output command event", BO_COMMAND_EVENT, 1),
    0x0D02: ObjectSpec("binary output command event with time", BO_COMMAND_EVENT, 7,
                       time=ABSOLUTE),
    # Counters
    **_counters(20, False, False),
    **_counters(21, True, False),
    **_counters(22, False, True),
    **_counters(23, True, True),
    # Analog inputs
    0x1E01: _fixed("32-bit analog input", "al.aiq", I32, "al.ana.int"),
    0x1E02: _fixed("16-bit analog input", "al.aiq", I16, "al.ana.int"),
    0x1E03: _fixed("32-bit analog input without flag", None, I32, "al.ana.int"),
    0x1E04: _fixed("16-bit analog input without flag", None, I16, "al.ana.int"),
    0x1E05: _fixed("single-precision analog input", "al.aiq", F32, "al.ana.float"),
    0x1E06: _fixed("double-precision analog input", "al.aiq", F64, "al.ana.double"),
    0x1F01: _fixed("32-bit frozen analog input", "al.aiq", I32, "al.ana.int"),
    0x1F02: _fixed("16-bit frozen analog input", "al.aiq", I16, "al.ana.int"),
    0x1F03: _fixed("32-bit frozen analog input with time", "al.aiq", I32, "al.ana.int",
                   time=ABSOLUTE),
    0x1F04: _fixed("16-bit frozen analog input with time", "al.aiq", I16, "al.ana.int",
                   time=ABSOLUTE),
    0x1F05: _fixed("32-bit frozen analog input without flag", None, I32, "al.ana.int"),
    0x1F06: _fixed("16-bit frozen analog input without flag", None, I16, "al.ana.int"),
    0x1F07: _fixed("single-precision frozen analog input", "al.aiq", F32, "al.ana.float"),
    0x1F08: _fixed("double-precision frozen analog input", "al.aiq", F64, "al.ana.double"),
    **_analog_events(32, "al.aiq", "al.ana", "analog input event"),
    **_analog_events(33, "al.aiq", "al.ana", "frozen analog input event"),
    0x2201: _fixed("16-bit analog input deadband", None, U16, "al.ana.int"),
    0x2202: _fixed("32-bit analog input deadband", None, U32, "al.ana.int"),
    0x2203: _fixed("single-precision analog input deadband", None, F32, "al.ana.float"),
    # Analog outputs
    0x2801: _fixed("32-bit analog output status", "al.aoq", I32, "al.anaout.int"),
    0x2802: _fixed("16-bit analog output status", "al.aoq", I16, "al.anaout.int"),
    0x2803: _fixed("single-precision analog output status", "al.aoq", F32,
                   "al.anaout.float"),
    0x2804: _fixed("double-precision analog output status", "al.aoq", F64,
                   "al.anaout.double"),
    0x2901: _fixed("32-bit analog output block", None, I32, "al.anaout.int",
                   status_after=True),
    0x2902: _fixed("16-bit analog output block", None, I16, "al.anaout.int",
                   status_after=True),
    0x2903: _fixed("single-precision analog output block", None, F32, "al.anaout.float",
                   status_after=True),
    0x2904: _fixed("double-precision analog output block", None, F64, "al.anaout.double",
                   status_after=True),
    **_analog_events(42, "al.aoq", "al.anaout", "analog output event"),
    **_analog_events(43, "al.aoq", "al.anaout", "analog output command event",
                     status_before=True),
    # Time
    0x3201: _fixed("absolute time", time=ABSOLUTE),
    0x3202: _fixed("absolute time and interval", time=ABSOLUTE, size=10),
    0x3203: _fixed("absolute time at last recorded time", time=ABSOLUTE),
    0x3204: _fixed("indexed absolute time and long interval", time=ABSOLUTE, size=11),
    0x3301: _fixed("common time of occurrence, synchronized", time=ABSOLUTE),
    0x3302: _fixed("common time of occurrence, unsynchronized", time=ABSOLUTE),
    0x3401: _fixed("time delay coarse", time=DELAY),
    0x3402: _fixed("time delay fine", time=DELAY),
    # Class data
    0x3C01: ObjectSpec("class 0 data", NO_DATA),
    0x3C02: ObjectSpec("class 1 data", NO_DATA),
    0x3C03: ObjectSpec("class 2 data", NO_DATA),
    0x3C04: ObjectSpec("class 3 data", NO_DATA),
    # Files
    0x4601: ObjectSpec("file identifier", FILE_OBJECT),
    0x4602: ObjectSpec("file authentication", FILE_OBJECT),
    0x4603: ObjectSpec("file command", FILE_OBJECT),
    0x4604: ObjectSpec("file command status", FILE_OBJECT),
    0x4605: ObjectSpec("file transport", FILE_OBJECT),
    0x4606: ObjectSpec("file transport status", FILE_OBJECT),
    0x4607: ObjectSpec("file descriptor", FILE_OBJECT),
    0x4608: ObjectSpec("file specification string", FILE_OBJECT),
    # Internal indications
    0x5001: ObjectSpec("internal indications", PACKED_BIT, 0),
}

# Groups whose variation is a length in octets (octet strings, virtual
# terminal); the point is that many octets.
OCTET_GROUPS: Final = frozenset({110, 111, 112, 113})

# Groups that only have variations of variable size, carried with an object
# size prefix (free-format qualifier): device attributes aside, these are
# skipped whole (application identifiers, data sets, security objects).
SIZED_GROUPS: Final = frozenset({0, 70, 85, 86, 87, 88, 90, 91, 120, 121, 122})


def object_spec(gv: int) -> ObjectSpec | None:
    """The layout of group/variation ``gv`` (``group << 8 | variation``)."""
    spec = OBJECTS.get(gv)
    if spec is not None:
        return spec
    group, variation = gv >> 8, gv & 0xFF
    if variation == 0 or gv in (0x3C01, 0x3C02, 0x3C03, 0x3C04):
        return ObjectSpec("any variation", NO_DATA)
    if group in OCTET_GROUPS:
        return ObjectSpec("octet string", OCTETS, variation)
    if group == 0:
        return ObjectSpec("device attribute", DEVICE_ATTRIBUTE)
    return None


# Operations on objects worth naming in an event: writes of the IIN
# restart bit and of the time, freeze with time.
FILE_MODES: Final[dict[int, str]] = {0: "null", 1: "read", 2: "write", 3: "append"}
