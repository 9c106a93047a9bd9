"""Request/response pairing on real pymodbus captures: every response names
its request's frame and the time it took; requests never answered are
counted."""

from __future__ import annotations

from pathlib import Path

from sensor.event import IcsEvent
from sensor.runtime import Sensor

PCAPS = Path(__file__).resolve().parents[3] / "pcaps" / "modbus"


def _replay(name: str) -> tuple[list[IcsEvent], dict[str, int]]:
    events: list[IcsEvent] = []
    stats = Sensor(events.append).replay([PCAPS / name])
    return events, stats.counters


def test_every_response_is_paired_with_its_request() -> None:
    events, counters = _replay("read-write.pcapng")
    requests = {(e.fields["trans_id"], e.unit): e for e in events if e.direction == "request"}
    responses = [e for e in events if e.direction == "response"]
    assert len(responses) == len(requests) == 29
    for response in responses:
        request = requests[(response.fields["trans_id"], response.unit)]
        assert response.request_packet == request.packet
        assert response.response_time is not None
        assert 0 < response.response_time == response.ts - request.ts
        assert response.fields["func_code"] == request.fields["func_code"]
    assert "modbus_unanswered_requests" not in counters


def test_broadcast_writes_are_never_answered() -> None:
    events, counters = _replay("attack-broadcast-write.pcapng")
    assert [(e.direction, e.unit, e.operation) for e in events] == [
        ("request", 0, "write_single_register"),
        ("request", 0, "write_multiple_registers"),
    ]
    assert counters["modbus_unanswered_requests"] == 2


def test_exception_keeps_the_requested_function() -> None:
    """pymodbus answers an unknown function 65 with function code 0x80; the
    response still points at its request and says what was asked."""
    events, _ = _replay("exceptions.pcapng")
    request = next(e for e in events if e.fields.get("func_code") == 65)
    response = next(e for e in events if e.request_packet == request.packet)
    assert response.exception and response.fields["exception_code"] == 1
    assert response.fields["func_code"] == 0
    assert response.fields["request_func_code"] == 65
