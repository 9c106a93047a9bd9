"""Fixtures for tests that need a real Elasticsearch node (tests/support/esnode.py).

Without Java or Maven the tests that use them are skipped, except in CI (the
``CI`` environment variable set, as CI services and .ci/run do): there they fail.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.esnode import (
    ElasticsearchNode,
    ElasticsearchUnavailable,
    ensure_distribution,
    find_java_home,
    http,
)


def _in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


@pytest.fixture(scope="session")
def elasticsearch_node() -> Iterator[ElasticsearchNode]:
    """One node for the whole session, in its own temporary folder."""
    try:
        java_home = find_java_home()
        home = ensure_distribution()
    except ElasticsearchUnavailable as error:
        if _in_ci():
            pytest.fail(f"CI needs the Elasticsearch test node: {error}", pytrace=False)
        pytest.skip(f"no Elasticsearch test node: {error}")
    # Not under pytest's tmp folder: that one is 0700 and the node may run as
    # another user (it refuses root). Kept for inspection if the node fails to start.
    base = Path(tempfile.mkdtemp(prefix="icswatch-es-test-"))
    node = ElasticsearchNode(home, base, java_home=java_home)
    node.start()
    try:
        yield node
    finally:
        node.stop()
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture
def elasticsearch_url(elasticsearch_node: ElasticsearchNode) -> Iterator[str]:
    """The node's URL, with no ``icswatch*`` index, alias or template left."""
    node = elasticsearch_node
    if not node.running:  # a test stopped it
        node.start()
    url = node.url
    resolved = http("GET", f"{url}/_resolve/index/icswatch*?expand_wildcards=all")
    if resolved.body.get("data_streams"):
        node.wipe_data()  # this build has no API to delete a data stream
    for path in (
        "/icswatch*?expand_wildcards=all",
        "/_index_template/icswatch*",
        "/_component_template/icswatch*",
        "/_template/icswatch*",
    ):
        reply = http("DELETE", url + path)
        assert reply.status in (200, 404), f"DELETE {path}: {reply.status} {reply.body}"
    yield url
