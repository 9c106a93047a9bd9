"""S7comm constants: the codes of the S7 protocol (TPKT/COTP/S7 PDU) with the
names Wireshark's dissector gives them (packet-s7comm.c), and the access
class icswatch assigns to each operation.

Kept apart from `sensor.protocols.s7comm` so the decoder reads like the
protocol and these tables read like the specification's.
"""

from __future__ import annotations

from enum import IntEnum
from typing import Final

from sensor.event import CONTROL, DIAGNOSTIC, FILE, OTHER, PROGRAM, READ, WRITE

S7COMM_PROTOCOL_ID: Final = 0x32
S7COMM_PLUS_PROTOCOL_ID: Final = 0x72
TPKT_VERSION: Final = 3
ISO_TSAP_PORT: Final = 102


class CotpType(IntEnum):
    """COTP TPDU codes, ISO 8073 §13.1 (the high nibble of the second byte)."""

    ED = 0x1
    EA = 0x2
    RJ = 0x5
    AK = 0x6
    ER = 0x7
    DR = 0x8
    DC = 0xC
    CC = 0xD
    CR = 0xE
    DT = 0xF


COTP_OPERATIONS: Final = {
    CotpType.CR: "cotp_connection_request",
    CotpType.CC: "cotp_connection_confirm",
    CotpType.DR: "cotp_disconnect_request",
    CotpType.DC: "cotp_disconnect_confirm",
    CotpType.ER: "cotp_tpdu_error",
    CotpType.ED: "cotp_expedited_data",
    CotpType.EA: "cotp_expedited_data_ack",
    CotpType.RJ: "cotp_reject",
    CotpType.AK: "cotp_data_ack",
}
# Which COTP TPDUs the called side (the PLC) sends.
COTP_RESPONSES: Final = frozenset({CotpType.CC, CotpType.DC, CotpType.ER, CotpType.EA,
                                   CotpType.AK})


class Rosctr(IntEnum):
    """S7 PDU types (header byte 1)."""

    JOB = 1
    ACK = 2
    ACK_DATA = 3
    USERDATA = 7


class Function(IntEnum):
    """Function codes of Job / Ack_Data parameters."""

    CPU_SERVICES = 0x00
    READ_VAR = 0x04
    WRITE_VAR = 0x05
    REQUEST_DOWNLOAD = 0x1A
    DOWNLOAD_BLOCK = 0x1B
    DOWNLOAD_ENDED = 0x1C
    START_UPLOAD = 0x1D
    UPLOAD = 0x1E
    END_UPLOAD = 0x1F
    PLC_CONTROL = 0x28  # "PI-Service" in Wireshark 4.0
    PLC_STOP = 0x29
    SETUP_COMMUNICATION = 0xF0


FUNCTION_OPERATIONS: Final = {
    Function.CPU_SERVICES: "cpu_services",
    Function.READ_VAR: "read_var",
    Function.WRITE_VAR: "write_var",
    Function.REQUEST_DOWNLOAD: "request_download",
    Function.DOWNLOAD_BLOCK: "download_block",
    Function.DOWNLOAD_ENDED: "download_ended",
    Function.START_UPLOAD: "start_upload",
    Function.UPLOAD: "upload",
    Function.END_UPLOAD: "end_upload",
    Function.PLC_CONTROL: "plc_control",
    Function.PLC_STOP: "plc_stop",
    Function.SETUP_COMMUNICATION: "setup_communication",
}
# Block upload reads the PLC's program: classed `program` (engineering
# traffic), like download, not `read` (process data).
FUNCTION_ACCESS: Final = {
    Function.CPU_SERVICES: OTHER,
    Function.READ_VAR: READ,
    Function.WRITE_VAR: WRITE,
    Function.REQUEST_DOWNLOAD: PROGRAM,
    Function.DOWNLOAD_BLOCK: PROGRAM,
    Function.DOWNLOAD_ENDED: PROGRAM,
    Function.START_UPLOAD: PROGRAM,
    Function.UPLOAD: PROGRAM,
    Function.END_UPLOAD: PROGRAM,
    Function.PLC_CONTROL: CONTROL,
    Function.PLC_STOP: CONTROL,
    Function.SETUP_COMMUNICATION: OTHER,
}
UPDOWNLOAD_FUNCTIONS: Final = frozenset(range(0x1A, 0x20))

# PI services (function 0x28) and the access each one is: starting the CPU
# is control; activating, deleting or saving blocks changes the program;
# the Sinumerik NC services (_N_…) work on the NC's file system.
PI_SERVICE_ACCESS: Final = {
    "P_PROGRAM": CONTROL,
    "_GARB": CONTROL,
    "_INSE": PROGRAM,
    "_INS2": PROGRAM,
    "_DELE": PROGRAM,
    "_MODU": PROGRAM,
}
PI_BLOCK_SERVICES: Final = frozenset({"_INSE", "_INS2", "_DELE"})
PI_ARGUMENT_SERVICES: Final = frozenset({"P_PROGRAM", "_MODU", "_GARB"})

AREA_NAMES: Final = {
    0x01: "RECORD", 0x03: "SI200", 0x05: "SF200", 0x06: "AI200", 0x07: "AO", 0x80: "P",
    0x81: "I", 0x82: "Q", 0x83: "M", 0x84: "DB", 0x85: "DI", 0x86: "L", 0x87: "V",
    28: "C", 29: "T", 30: "C200", 31: "T200",
}
AREA_DATARECORD: Final = 0x01
AREA_DB: Final = 0x84
TIMER_COUNTER_AREAS: Final = frozenset({28, 29})
SYNTAX_ID_S7ANY: Final = 0x10

# Item return codes (data part).
RETURN_CODES: Final = {
    0x00: "reserved", 0x01: "hardware_error", 0x03: "access_denied",
    0x05: "invalid_address", 0x06: "data_type_not_supported",
    0x07: "data_type_inconsistent", 0x0A: "object_does_not_exist", 0xFF: "success",
}
RETURN_OK: Final = 0xFF
# Data transport sizes whose length is given in bits.
BIT_LENGTH_SIZES: Final = frozenset({3, 4, 5})
NCK_ADDRESS_SIZES: Final = frozenset({17, 18})

ERROR_CLASSES: Final = {
    0x00: "no_error", 0x81: "application_relationship", 0x82: "object_definition",
    0x83: "no_resources", 0x84: "service_processing", 0x85: "supplies", 0x87: "access",
}

BLOCK_TYPES: Final = {
    b"08": "OB", b"09": "CMod", b"0A": "DB", b"0B": "SDB", b"0C": "FC", b"0D": "SFC",
    b"0E": "FB", b"0F": "SFB",
}
SUBBLOCK_TYPES: Final = {0x08: "OB", 0x0A: "DB", 0x0B: "SDB", 0x0C: "FC", 0x0D: "SFC",
                         0x0E: "FB", 0x0F: "SFB"}


class UserdataType(IntEnum):
    PUSH = 0x0
    NC_PUSH = 0x3
    REQUEST = 0x4
    NC_REQUEST = 0x7
    RESPONSE = 0x8
    NC_RESPONSE = 0xB


class FunctionGroup(IntEnum):
    MODE_TRANSITION = 0x0
    PROGRAMMER_COMMANDS = 0x1
    CYCLIC_SERVICES = 0x2
    BLOCK_FUNCTIONS = 0x3
    CPU_FUNCTIONS = 0x4
    SECURITY = 0x5
    PBC_BSEND_BRECV = 0x6
    TIME_FUNCTIONS = 0x7
    NC_PROGRAMMING = 0xF


# Userdata (group, subfunction) -> (operation, access). Names follow
# Wireshark's value strings.
_PROG_SUBFUNCTIONS: Final = {
    0x01: "block_status", 0x02: "variable_status", 0x03: "output_istack",
    0x04: "output_bstack", 0x05: "output_lstack", 0x06: "time_measurement",
    0x07: "force_selection", 0x08: "modify_variable", 0x09: "force", 0x0A: "breakpoint",
    0x0B: "exit_hold", 0x0C: "memory_reset", 0x0D: "disable_job", 0x0E: "enable_job",
    0x0F: "delete_job", 0x10: "read_job_list", 0x11: "read_job", 0x12: "replace_job",
    0x13: "block_status_v2", 0x16: "flash_led",
}
_PROG_WRITES: Final = frozenset({0x08, 0x09})
_PROG_CONTROLS: Final = frozenset({0x0A, 0x0B, 0x0C})
_CYCLIC_SUBFUNCTIONS: Final = {
    0x01: "cyclic_transfer", 0x04: "unsubscribe", 0x05: "change_driven_transfer",
    0x07: "change_driven_transfer_modify", 0x08: "rdrec",
}
_BLOCK_SUBFUNCTIONS: Final = {0x01: "list_blocks", 0x02: "list_blocks_of_type",
                              0x03: "get_block_info"}
_CPU_SUBFUNCTIONS: Final = {
    0x01: "read_szl", 0x02: "message_service", 0x03: "diagnostic_message",
    0x05: "alarm8_indication", 0x06: "notify_indication", 0x07: "alarm8_lock",
    0x08: "alarm8_unlock", 0x09: "scan_indication", 0x0B: "alarm_ack",
    0x0C: "alarm_ack_indication", 0x0D: "alarm_lock_indication",
    0x0E: "alarm_unlock_indication", 0x11: "alarm_sq_indication",
    0x12: "alarm_s_indication", 0x13: "alarm_query", 0x16: "notify8_indication",
}
_TIME_SUBFUNCTIONS: Final = {0x01: "read_clock", 0x02: "set_clock",
                             0x03: "read_clock_following", 0x04: "set_clock"}
_NC_SUBFUNCTIONS: Final = {
    1: "nc_request_download", 2: "nc_download_block", 3: "nc_continue_download",
    4: "nc_download_ended", 6: "nc_start_upload", 7: "nc_upload", 8: "nc_continue_upload",
}


def _userdata_table() -> dict[int, tuple[str, str]]:
    table: dict[int, tuple[str, str]] = {}
    for sub, name in _PROG_SUBFUNCTIONS.items():
        access = WRITE if sub in _PROG_WRITES else CONTROL if sub in _PROG_CONTROLS \
            else DIAGNOSTIC
        table[FunctionGroup.PROGRAMMER_COMMANDS << 8 | sub] = (name, access)
    for sub, name in _CYCLIC_SUBFUNCTIONS.items():
        table[FunctionGroup.CYCLIC_SERVICES << 8 | sub] = (name, READ)
    for sub, name in _BLOCK_SUBFUNCTIONS.items():
        table[FunctionGroup.BLOCK_FUNCTIONS << 8 | sub] = (name, DIAGNOSTIC)
    for sub, name in _CPU_SUBFUNCTIONS.items():
        table[FunctionGroup.CPU_FUNCTIONS << 8 | sub] = (name, DIAGNOSTIC)
    table[FunctionGroup.SECURITY << 8 | 0x01] = ("plc_password", OTHER)
    for sub, name in _TIME_SUBFUNCTIONS.items():
        table[FunctionGroup.TIME_FUNCTIONS << 8 | sub] = (
            name, CONTROL if name == "set_clock" else DIAGNOSTIC)
    for sub, name in _NC_SUBFUNCTIONS.items():
        table[FunctionGroup.NC_PROGRAMMING << 8 | sub] = (name, FILE)
    return table


USERDATA_OPERATIONS: Final = _userdata_table()
# A whole group whose subfunctions are not told apart.
USERDATA_GROUP_OPERATIONS: Final = {
    FunctionGroup.MODE_TRANSITION: ("mode_transition", DIAGNOSTIC),
    FunctionGroup.PBC_BSEND_BRECV: ("bsend_brecv", OTHER),
}
USERDATA_GROUP_NAMES: Final = {g.value: g.name.lower() for g in FunctionGroup}

# SZL partial lists that identify the module (asset facts).
SZL_MODULE_IDENTIFICATION: Final = frozenset({0x0011, 0x0111})
SZL_COMPONENT_IDENTIFICATION: Final = frozenset({0x001C, 0x011C, 0x021C, 0x031C})
# SZL 0x0011 record index -> identity key of the order number in it.
SZL_0011_INDEX_KEYS: Final = {0x0001: "order_number", 0x0006: "hardware_order_number",
                              0x0007: "firmware_order_number"}
# SZL 0x001C record index -> (Wireshark field, identity key, text length).
SZL_001C_TEXTS: Final = {
    0x0001: ("szl.001c.0001.name", "as_name", 24),
    0x0002: ("szl.001c.0002.name", "module_name", 24),
    0x0003: ("szl.001c.0003.tag", "plant_id", 32),
    0x0004: ("szl.001c.0004.copyright", "copyright", 26),
    0x0005: ("szl.001c.0005.serialn", "serial_number", 24),
    0x0007: ("szl.001c.0007.cputypname", "module_type_name", 32),
    0x0008: ("szl.001c.0008.snmcmmc", "memory_card_serial", 32),
    0x000B: ("szl.001c.000b.loc_id", "location_id", 32),
}

# COTP connection request: the first byte of a 2-byte called TSAP is the
# S7 connection type, the second rack (bits 5-7) and slot (bits 0-4).
CONNECTION_TYPES: Final = {1: "pg", 2: "op", 3: "s7_basic"}
