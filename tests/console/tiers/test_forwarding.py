"""Alerts travel enterprise → province → national through real consoles,
each exactly once and with their origin intact, across an outage of the
province."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.tiers import ROOT, Chain, build_chain, wait_until

MODBUS = sorted((ROOT / "pcaps" / "modbus").glob("*.pcapng"))
DNP3 = sorted((ROOT / "pcaps" / "dnp3").glob("*.pcap*"))


@pytest.fixture
def chain(tmp_path: Path) -> Iterator[Chain]:
    built = build_chain(tmp_path)
    try:
        yield built
    finally:
        built.stop()


def _same_everywhere(chain: Chain, expected: dict[str, dict]) -> bool:
    return all(len(console.alert_ids()) == len(expected)
               for console in (chain.province, chain.national))


def test_alerts_reach_province_and_nation_once_with_their_origin(chain: Chain) -> None:
    chain.replay("ent-a", *MODBUS)
    chain.replay("ent-b", *DNP3)
    at_a = chain.enterprises["ent-a"].alert_ids()
    at_b = chain.enterprises["ent-b"].alert_ids()
    assert at_a and at_b
    expected = {**at_a, **at_b}
    wait_until(lambda: _same_everywhere(chain, expected), "alerts at province and nation")
    for console in (chain.province, chain.national):
        found = console.alert_ids()
        assert found.keys() == expected.keys()
        for alert_id, alert in found.items():
            origin = "ent-a" if alert_id in at_a else "ent-b"
            assert alert["organization"]["id"] == origin
            assert alert["rule"]["id"] == expected[alert_id]["rule"]["id"]
            assert alert["@timestamp"] == expected[alert_id]["@timestamp"]
    # The nation knows the enterprises through the province, under it.
    orgs = {o["id"]: o for o in chain.national.call("GET", "/api/orgs")["organizations"]}
    assert orgs["ent-a"]["parent"] == "prov-zj" and orgs["ent-b"]["parent"] == "prov-zj"
    # Inventory and sensors went up too, filed under their enterprise.
    wait_until(lambda: any(s["id"].startswith("ent-a/") for s in
                           chain.national.call("GET", "/api/sensors")["sensors"]),
               "ent-a's sensor at the nation")
    wait_until(lambda: {a["organization"]["id"] for a in
                        chain.province.call("GET", "/api/assets")["assets"]}
               == {"ent-a", "ent-b"}, "both enterprises' assets at the province")


def test_an_outage_of_the_province_loses_and_repeats_nothing(chain: Chain) -> None:
    chain.replay("ent-a", *MODBUS[:3])
    first = chain.enterprises["ent-a"].alert_ids()
    wait_until(lambda: len(chain.national.alert_ids()) == len(first), "the first alerts")
    chain.province.stop()
    chain.replay("ent-a", *MODBUS[3:])
    chain.replay("ent-b", *DNP3)

    def waiting() -> bool:
        status = chain.enterprises["ent-a"].call("GET", "/api/tier")["uplink"]["status"]
        return bool(status["pending"] > 0 and not status["healthy"] and status["failures"])

    wait_until(waiting, "ent-a to hold its new alerts in the spool during the outage")
    chain.province.start()
    expected = {**chain.enterprises["ent-a"].alert_ids(),
                **chain.enterprises["ent-b"].alert_ids()}
    assert len(expected) > len(first)
    wait_until(lambda: _same_everywhere(chain, expected), "every alert after the outage")
    for console in (chain.province, chain.national):
        assert console.alert_ids().keys() == expected.keys()
    status = chain.enterprises["ent-a"].call("GET", "/api/tier")["uplink"]["status"]
    assert status["pending"] == 0 and status["healthy"] and status["records_refused"] == 0
