"""IEC 60870-5-101/104 constants and the layout of every ASDU's information
objects, for `sensor.protocols.iec104`.

Type identifications, causes of transmission and U-format functions carry the
standard's own names (IEC 60870-5-101:2003 §7.2.1, §7.2.3; IEC 60870-5-104:2006
§5.3). Each type's information element is described by the element codes of
IEC 60870-5-101 §7.2.6 (SIQ, DIQ, NVA, QOS, CP56Time2a…); `layout()` compiles
them once into a `struct.Struct` and the functions that turn the unpacked
columns into event fields (named as Wireshark names them where its dissector
decodes the element, else by the standard's abbreviation in lower case).
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Sequence
from enum import IntEnum
from typing import Any, Final

from sensor.event import CONTROL, DIAGNOSTIC, FILE, OTHER, READ, WRITE


class TypeId(IntEnum):
    """Type identification (IEC 60870-5-101 §7.2.1.1, -104 §8, IEC 62351-5)."""

    M_SP_NA_1 = 1
    M_SP_TA_1 = 2
    M_DP_NA_1 = 3
    M_DP_TA_1 = 4
    M_ST_NA_1 = 5
    M_ST_TA_1 = 6
    M_BO_NA_1 = 7
    M_BO_TA_1 = 8
    M_ME_NA_1 = 9
    M_ME_TA_1 = 10
    M_ME_NB_1 = 11
    M_ME_TB_1 = 12
    M_ME_NC_1 = 13
    M_ME_TC_1 = 14
    M_IT_NA_1 = 15
    M_IT_TA_1 = 16
    M_EP_TA_1 = 17
    M_EP_TB_1 = 18
    M_EP_TC_1 = 19
    M_PS_NA_1 = 20
    M_ME_ND_1 = 21
    M_SP_TB_1 = 30
    M_DP_TB_1 = 31
    M_ST_TB_1 = 32
    M_BO_TB_1 = 33
    M_ME_TD_1 = 34
    M_ME_TE_1 = 35
    M_ME_TF_1 = 36
    M_IT_TB_1 = 37
    M_EP_TD_1 = 38
    M_EP_TE_1 = 39
    M_EP_TF_1 = 40
    S_IT_TC_1 = 41
    C_SC_NA_1 = 45
    C_DC_NA_1 = 46
    C_RC_NA_1 = 47
    C_SE_NA_1 = 48
    C_SE_NB_1 = 49
    C_SE_NC_1 = 50
    C_BO_NA_1 = 51
    C_SC_TA_1 = 58
    C_DC_TA_1 = 59
    C_RC_TA_1 = 60
    C_SE_TA_1 = 61
    C_SE_TB_1 = 62
    C_SE_TC_1 = 63
    C_BO_TA_1 = 64
    M_EI_NA_1 = 70
    S_CH_NA_1 = 81
    S_RP_NA_1 = 82
    S_AR_NA_1 = 83
    S_KR_NA_1 = 84
    S_KS_NA_1 = 85
    S_KC_NA_1 = 86
    S_ER_NA_1 = 87
    S_US_NA_1 = 90
    S_UQ_NA_1 = 91
    S_UR_NA_1 = 92
    S_UK_NA_1 = 93
    S_UA_NA_1 = 94
    S_UC_NA_1 = 95
    C_IC_NA_1 = 100
    C_CI_NA_1 = 101
    C_RD_NA_1 = 102
    C_CS_NA_1 = 103
    C_TS_NA_1 = 104
    C_RP_NA_1 = 105
    C_CD_NA_1 = 106
    C_TS_TA_1 = 107
    P_ME_NA_1 = 110
    P_ME_NB_1 = 111
    P_ME_NC_1 = 112
    P_AC_NA_1 = 113
    F_FR_NA_1 = 120
    F_SR_NA_1 = 121
    F_SC_NA_1 = 122
    F_LS_NA_1 = 123
    F_AF_NA_1 = 124
    F_SG_NA_1 = 125
    F_DR_TA_1 = 126
    F_SC_NB_1 = 127


class Cause(IntEnum):
    """Cause of transmission, the low six bits of the COT octet (§7.2.3)."""

    PERIODIC = 1
    BACKGROUND_SCAN = 2
    SPONTANEOUS = 3
    INITIALISED = 4
    REQUEST = 5
    ACTIVATION = 6
    ACTIVATION_CON = 7
    DEACTIVATION = 8
    DEACTIVATION_CON = 9
    ACTIVATION_TERMINATION = 10
    RETURN_INFO_REMOTE = 11
    RETURN_INFO_LOCAL = 12
    FILE_TRANSFER = 13
    AUTHENTICATION = 14
    SESSION_KEY = 15
    USER_ROLE_AND_UPDATE_KEY = 16
    INTERROGATED_BY_STATION = 20
    REQUESTED_BY_GENERAL_COUNTER = 37
    UNKNOWN_TYPE_ID = 44
    UNKNOWN_CAUSE = 45
    UNKNOWN_COMMON_ADDRESS = 46
    UNKNOWN_IOA = 47


class UFunction(IntEnum):
    """U-format functions: one bit of the first control octet, shifted down
    by two as Wireshark's ``utype`` shows it (IEC 60870-5-104 §5.3)."""

    STARTDT_ACT = 0x01
    STARTDT_CON = 0x02
    STOPDT_ACT = 0x04
    STOPDT_CON = 0x08
    TESTFR_ACT = 0x10
    TESTFR_CON = 0x20


TYPE_NAMES: Final[dict[int, str]] = {t.value: t.name for t in TypeId}

# Types Wireshark 4.0 decodes object by object; it shows every other type as
# the first information object address and ``rawdata``.
WIRESHARK_DECODED: Final = frozenset(
    set(range(1, 17)) | {21} | set(range(30, 38)) | set(range(45, 52)) | set(range(58, 65))
    | {70, 100, 101, 103, 105, 110, 111, 112}
)


def _access(type_id: int) -> str:
    """The protocol-neutral access class of a type (documented in README):
    monitoring information is read; single, double and regulating-step
    commands and the reset process command control the process; set-points,
    bitstring commands and parameters of measured values write values;
    interrogation, counter interrogation and read commands read; test
    commands diagnose; clock synchronisation and delay acquisition manage
    the station's time (other); file transfer is file; IEC 62351-5
    authentication is other."""
    if type_id <= 40 or type_id == TypeId.M_EI_NA_1 or type_id == TypeId.S_IT_TC_1:
        return READ
    if type_id in (45, 46, 47, 58, 59, 60, TypeId.C_RP_NA_1):
        return CONTROL
    if 48 <= type_id <= 64 or 110 <= type_id <= 113:
        return WRITE
    if type_id in (TypeId.C_IC_NA_1, TypeId.C_CI_NA_1, TypeId.C_RD_NA_1):
        return READ
    if type_id in (TypeId.C_TS_NA_1, TypeId.C_TS_TA_1):
        return DIAGNOSTIC
    if type_id >= 120:
        return FILE
    return OTHER


ACCESS: Final[dict[int, str]] = {t.value: _access(t.value) for t in TypeId}

# -- information elements ----------------------------------------------------

Fields = dict[str, Any]
Column = tuple[Any, ...]
# A column handler: the event fields, every column of the unpacked objects,
# and the index of its element's first column.
Handler = Callable[[Fields, list[Column], int], None]


def _put(fields: Fields, name: str, values: list[Any]) -> None:
    """Set ``name``, or extend it when an element occurs twice per object."""
    old = fields.get(name)
    if old is None:
        fields[name] = values
    else:
        old.extend(values)


def _raw(name: str) -> Handler:
    def handler(fields: Fields, cols: list[Column], i: int) -> None:
        fields[name] = list(cols[i])

    return handler


def _siq(fields: Fields, cols: list[Column], i: int) -> None:
    col = cols[i]
    fields["siq"] = list(col)
    fields["siq.spi"] = [b & 1 == 1 for b in col]


def _diq(fields: Fields, cols: list[Column], i: int) -> None:
    col = cols[i]
    fields["diq"] = list(col)
    fields["diq.dpi"] = [b & 3 for b in col]


def _vti(fields: Fields, cols: list[Column], i: int) -> None:
    col = cols[i]
    fields["vti"] = list(col)
    fields["vti.v"] = [(b & 0x7F) - 0x80 if b & 0x40 else b & 0x7F for b in col]
    fields["vti.t"] = [b >= 0x80 for b in col]


def _nva(fields: Fields, cols: list[Column], i: int) -> None:
    fields["normval"] = [v / 32768 for v in cols[i]]


def _bcr(fields: Fields, cols: list[Column], i: int) -> None:
    fields["bcr.count"] = list(cols[i])
    col = cols[i + 1]
    fields["bcr.sq"] = [b & 0x1F for b in col]
    fields["bcr.cy"] = [b & 0x20 != 0 for b in col]
    fields["bcr.ca"] = [b & 0x40 != 0 for b in col]
    fields["bcr.iv"] = [b >= 0x80 for b in col]


def _command(name: str, state: str, single: bool) -> Handler:
    """SCO, DCO and RCO: the state (a bool for SCS, two bits for DCS and
    RCS), QU (the pulse qualifier) and S/E (select or execute)."""

    def handler(fields: Fields, cols: list[Column], i: int) -> None:
        col = cols[i]
        fields[name] = list(col)
        fields[state] = [b & 1 == 1 for b in col] if single else [b & 3 for b in col]
        fields[name + ".qu"] = [b >> 2 & 0x1F for b in col]
        fields[name + ".se"] = [b >= 0x80 for b in col]

    return handler


def _qos(fields: Fields, cols: list[Column], i: int) -> None:
    col = cols[i]
    fields["qos"] = list(col)
    fields["qos.ql"] = [b & 0x7F for b in col]
    fields["qos.se"] = [b >= 0x80 for b in col]


def _coi(fields: Fields, cols: list[Column], i: int) -> None:
    col = cols[i]
    fields["coi"] = list(col)
    fields["coi_r"] = [b & 0x7F for b in col]
    fields["coi_i"] = [b >= 0x80 for b in col]


def _qcc(fields: Fields, cols: list[Column], i: int) -> None:
    col = cols[i]
    fields["qcc"] = list(col)
    fields["rqt"] = [b & 0x3F for b in col]
    fields["frz"] = [b >> 6 for b in col]


def _qpm(fields: Fields, cols: list[Column], i: int) -> None:
    col = cols[i]
    fields["qpm"] = list(col)
    fields["qpm.kpa"] = [b & 0x3F for b in col]
    fields["qpm.lpc"] = [b >> 6 & 1 for b in col]
    fields["qpm.pop"] = [b >> 7 for b in col]


def _cp24(fields: Fields, cols: list[Column], i: int) -> None:
    """CP24Time2a: milliseconds and minutes; Wireshark shows the time as
    seconds into the hour."""
    ms, minute = cols[i], cols[i + 1]
    fields["cp24time"] = [m / 1000 + (b & 0x3F) * 60 for m, b in zip(ms, minute, strict=True)]
    fields["cp24time.ms"] = list(ms)
    fields["cp24time.min"] = [b & 0x3F for b in minute]
    fields["cp24time.iv"] = [b >= 0x80 for b in minute]


def cp56_year(year: int) -> int:
    """The seven-bit year as Wireshark reads it: 0-69 are 2000-2069 and
    70-127 are 1970-2027 (devices that count from 1900 send 109 for 2009)."""
    return 2000 + year if year < 70 else 1900 + year


def _cp56(fields: Fields, cols: list[Column], i: int) -> None:
    """CP56Time2a as an ISO 8601 date and time (the station's own time,
    without zone), plus the flag bits of its octets."""
    ms, minute, hour, day, month, year = cols[i : i + 6]
    _put(fields, "cp56time", [
        f"{cp56_year(y & 0x7F):04d}-{mo & 0x0F:02d}-{d & 0x1F:02d}T{h & 0x1F:02d}:"
        f"{mi & 0x3F:02d}:{m // 1000:02d}.{m % 1000:03d}"
        for m, mi, h, d, mo, y in zip(ms, minute, hour, day, month, year, strict=True)
    ])
    _put(fields, "cp56time.iv", [b >= 0x80 for b in minute])
    _put(fields, "cp56time.gen", [b & 0x40 != 0 for b in minute])
    _put(fields, "cp56time.su", [b >= 0x80 for b in hour])
    _put(fields, "cp56time.dow", [b >> 5 for b in day])


def _lof(fields: Fields, cols: list[Column], i: int) -> None:
    fields["lof"] = [lo | hi << 16 for lo, hi in zip(cols[i], cols[i + 1], strict=True)]


# Element code -> (struct format, handler), IEC 60870-5-101 §7.2.6.
ELEMENTS: Final[dict[str, tuple[str, Handler]]] = {
    "SIQ": ("B", _siq),
    "DIQ": ("B", _diq),
    "VTI": ("B", _vti),
    "QDS": ("B", _raw("qds")),
    # BSI is little-endian like every multi-octet value of IEC 60870-5-4.
    "BSI": ("I", _raw("bitstring")),
    "NVA": ("h", _nva),
    "SVA": ("h", _raw("scalval")),
    "FLT": ("f", _raw("float")),
    "BCR": ("iB", _bcr),
    "SCO": ("B", _command("sco", "sco.on", True)),
    "DCO": ("B", _command("dco", "dco.on", False)),
    "RCO": ("B", _command("rco", "rco.up", False)),
    "QOS": ("B", _qos),
    "COI": ("B", _coi),
    "QOI": ("B", _raw("qoi")),
    "QCC": ("B", _qcc),
    "QRP": ("B", _raw("qrp")),
    "QPM": ("B", _qpm),
    "QPA": ("B", _raw("qpa")),
    "CP24": ("HB", _cp24),
    "CP56": ("HBBBBB", _cp56),
    "CP16": ("H", _raw("cp16time")),
    "SCD": ("I", _raw("scd")),
    "SEP": ("B", _raw("sep")),
    "SPE": ("B", _raw("spe")),
    "OCI": ("B", _raw("oci")),
    "QDP": ("B", _raw("qdp")),
    "FBP": ("H", _raw("fbp")),
    "TSC": ("H", _raw("tsc")),
    "NOF": ("H", _raw("nof")),
    "NOS": ("B", _raw("nos")),
    "LOF": ("HB", _lof),
    "FRQ": ("B", _raw("frq")),
    "SRQ": ("B", _raw("srq")),
    "SCQ": ("B", _raw("scq")),
    "LSQ": ("B", _raw("lsq")),
    "CHS": ("B", _raw("chs")),
    "AFQ": ("B", _raw("afq")),
    "SOF": ("B", _raw("sof")),
}

# The information element of each type (without its object address).
# F_SG_NA_1 (a segment of variable length) and the IEC 62351-5 types are
# decoded apart.
ELEMENTS_OF: Final[dict[int, tuple[str, ...]]] = {
    1: ("SIQ",), 2: ("SIQ", "CP24"), 3: ("DIQ",), 4: ("DIQ", "CP24"),
    5: ("VTI", "QDS"), 6: ("VTI", "QDS", "CP24"), 7: ("BSI", "QDS"), 8: ("BSI", "QDS", "CP24"),
    9: ("NVA", "QDS"), 10: ("NVA", "QDS", "CP24"), 11: ("SVA", "QDS"),
    12: ("SVA", "QDS", "CP24"), 13: ("FLT", "QDS"), 14: ("FLT", "QDS", "CP24"),
    15: ("BCR",), 16: ("BCR", "CP24"), 17: ("SEP", "CP16", "CP24"),
    18: ("SPE", "QDP", "CP16", "CP24"), 19: ("OCI", "QDP", "CP16", "CP24"),
    20: ("SCD", "QDS"), 21: ("NVA",),
    30: ("SIQ", "CP56"), 31: ("DIQ", "CP56"), 32: ("VTI", "QDS", "CP56"),
    33: ("BSI", "QDS", "CP56"), 34: ("NVA", "QDS", "CP56"), 35: ("SVA", "QDS", "CP56"),
    36: ("FLT", "QDS", "CP56"), 37: ("BCR", "CP56"), 38: ("SEP", "CP16", "CP56"),
    39: ("SPE", "QDP", "CP16", "CP56"), 40: ("OCI", "QDP", "CP16", "CP56"),
    45: ("SCO",), 46: ("DCO",), 47: ("RCO",), 48: ("NVA", "QOS"), 49: ("SVA", "QOS"),
    50: ("FLT", "QOS"), 51: ("BSI",), 58: ("SCO", "CP56"), 59: ("DCO", "CP56"),
    60: ("RCO", "CP56"), 61: ("NVA", "QOS", "CP56"), 62: ("SVA", "QOS", "CP56"),
    63: ("FLT", "QOS", "CP56"), 64: ("BSI", "CP56"),
    70: ("COI",), 100: ("QOI",), 101: ("QCC",), 102: (), 103: ("CP56",), 104: ("FBP",),
    105: ("QRP",), 106: ("CP16",), 107: ("TSC", "CP56"), 110: ("NVA", "QPM"),
    111: ("SVA", "QPM"), 112: ("FLT", "QPM"), 113: ("QPA",),
    120: ("NOF", "LOF", "FRQ"), 121: ("NOF", "NOS", "LOF", "SRQ"), 122: ("NOF", "NOS", "SCQ"),
    123: ("NOF", "NOS", "LSQ", "CHS"), 124: ("NOF", "NOS", "AFQ"),
    126: ("NOF", "LOF", "SOF", "CP56"), 127: ("NOF", "CP56", "CP56"),
}


class Layout:
    """One type's information object, compiled: ``element`` unpacks the
    element alone (objects of a sequence, SQ=1), ``with_ioa`` the 3-octet
    address and the element (SQ=0)."""

    __slots__ = ("element", "handlers", "size", "with_ioa")

    def __init__(self, codes: Sequence[str]) -> None:
        fmt = "".join(ELEMENTS[code][0] for code in codes)
        self.element = struct.Struct("<" + fmt)
        self.with_ioa = struct.Struct("<HB" + fmt)
        self.size = self.element.size
        handlers: list[tuple[Handler, int]] = []
        column = 0
        for code in codes:
            element_fmt, handler = ELEMENTS[code]
            handlers.append((handler, column))
            column += len(element_fmt)
        self.handlers = tuple(handlers)

    def fill(self, fields: Fields, rows: Sequence[tuple[Any, ...]], first: int) -> None:
        """Turn unpacked ``rows`` (columns from ``first`` on) into fields."""
        if not rows:
            return
        cols = list(zip(*rows, strict=True))
        if first:
            cols = cols[first:]
        for handler, column in self.handlers:
            handler(fields, cols, column)


LAYOUTS: Final[dict[int, Layout]] = {
    type_id: Layout(codes) for type_id, codes in ELEMENTS_OF.items()
}

# Every field an IEC 104 event may carry, with its kind, for rule validation.
FIELDS: Final = (
    # APCI (Wireshark's iec60870_104.*)
    ("apdulen", "int"), ("type", "int"), ("utype", "int"), ("tx", "int"), ("rx", "int"),
    ("data", "str"),
    # ASDU header (iec60870_asdu.*)
    ("typeid", "int"), ("sq", "bool"), ("numix", "int"), ("causetx", "int"), ("nega", "bool"),
    ("test", "bool"), ("oa", "int"), ("addr", "int"), ("ioa", "list[int]"),
    # information elements Wireshark decodes
    ("siq", "list[int]"), ("siq.spi", "list[bool]"), ("diq", "list[int]"),
    ("diq.dpi", "list[int]"), ("vti", "list[int]"), ("vti.v", "list[int]"),
    ("vti.t", "list[bool]"), ("qds", "list[int]"), ("bitstring", "list[int]"),
    ("normval", "list[float]"), ("scalval", "list[int]"), ("float", "list[float]"),
    ("bcr.count", "list[int]"), ("bcr.sq", "list[int]"), ("bcr.cy", "list[bool]"),
    ("bcr.ca", "list[bool]"), ("bcr.iv", "list[bool]"),
    ("sco", "list[int]"), ("sco.on", "list[bool]"), ("sco.qu", "list[int]"),
    ("sco.se", "list[bool]"), ("dco", "list[int]"), ("dco.on", "list[int]"),
    ("dco.qu", "list[int]"), ("dco.se", "list[bool]"), ("rco", "list[int]"),
    ("rco.up", "list[int]"), ("rco.qu", "list[int]"), ("rco.se", "list[bool]"),
    ("qos", "list[int]"), ("qos.ql", "list[int]"), ("qos.se", "list[bool]"),
    ("coi", "list[int]"), ("coi_r", "list[int]"), ("coi_i", "list[bool]"),
    ("qoi", "list[int]"), ("qcc", "list[int]"), ("rqt", "list[int]"), ("frz", "list[int]"),
    ("qrp", "list[int]"), ("qpm", "list[int]"), ("qpm.kpa", "list[int]"),
    ("qpm.lpc", "list[int]"), ("qpm.pop", "list[int]"),
    ("cp24time", "list[float]"), ("cp24time.ms", "list[int]"), ("cp24time.min", "list[int]"),
    ("cp24time.iv", "list[bool]"), ("cp56time", "list[str]"), ("cp56time.iv", "list[bool]"),
    ("cp56time.gen", "list[bool]"), ("cp56time.su", "list[bool]"),
    ("cp56time.dow", "list[int]"), ("rawdata", "str"),
    # elements Wireshark 4.0 leaves raw, by the standard's abbreviations
    ("scd", "list[int]"), ("sep", "list[int]"), ("spe", "list[int]"), ("oci", "list[int]"),
    ("qdp", "list[int]"), ("cp16time", "list[int]"), ("fbp", "list[int]"),
    ("tsc", "list[int]"), ("qpa", "list[int]"), ("nof", "list[int]"), ("nos", "list[int]"),
    ("lof", "list[int]"), ("frq", "list[int]"), ("srq", "list[int]"), ("scq", "list[int]"),
    ("lsq", "list[int]"), ("chs", "list[int]"), ("afq", "list[int]"), ("los", "list[int]"),
    ("sof", "list[int]"),
    # icswatch's own
    ("seq_error", "str"), ("tx_expected", "int"), ("rx_max", "int"),
)
