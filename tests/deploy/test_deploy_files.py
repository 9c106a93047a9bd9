"""Offline checks of what ships in deploy/: the Docker Compose stack, its
.env.example, the Kibana saved objects and the Elasticsearch JSON files.

Nothing here starts a container or talks to a cluster (CI has no Docker and
its Elasticsearch test build has no ILM); these checks catch what can be
caught by reading the files: a port published beyond 127.0.0.1, a password
written into compose.yaml, a dangling saved-object reference, a dashboard
field the alerts template does not map. With a working ``docker compose``
on the machine, the stack is also run through ``docker compose config``.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from console.stores.base import SEVERITY_ORDER

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
COMPOSE_FILE = DEPLOY / "compose.yaml"
ENV_EXAMPLE = DEPLOY / ".env.example"
README = DEPLOY / "README.md"
NDJSON = DEPLOY / "kibana" / "icswatch-dashboard.ndjson"
ES_DIR = DEPLOY / "elasticsearch"
ALERTS_TEMPLATE = ES_DIR / "alerts-template.json"

ES_IMAGE = "docker.elastic.co/elasticsearch/elasticsearch"
KIBANA_IMAGE = "docker.elastic.co/kibana/kibana"
STACK_TAG = re.compile(r"^8\.19\.\d+$")
# ${NAME}, ${NAME:-default}, ${NAME:?message}, ... (a "$$" is an escaped "$").
VARIABLE = re.compile(r"(?<!\$)\$\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?P<op>:?[-?+])?")
SECRET_NAME = re.compile(r"PASSWORD|SECRET|TOKEN|ENCRYPTIONKEY|ENCRYPTION_KEY|API_KEY", re.I)
# Mapping types Kibana can bucket, and the Lens dataType each one gets.
LENS_TYPES = {"keyword": "string", "ip": "ip", "long": "number", "integer": "number",
              "double": "number", "date": "date", "date_nanos": "date", "boolean": "boolean"}
GRID_COLUMNS = 48


# -- helpers -------------------------------------------------------------------

def _compose() -> dict[str, Any]:
    data = yaml.safe_load(COMPOSE_FILE.read_text(encoding="utf-8"))
    assert isinstance(data, dict), "compose.yaml is not a mapping"
    return data


def _services() -> dict[str, dict[str, Any]]:
    services = _compose().get("services")
    assert isinstance(services, dict) and services, "compose.yaml has no services"
    return services


def _environment(service: dict[str, Any]) -> dict[str, str]:
    """A service's environment as a dict, from either Compose form."""
    env = service.get("environment") or {}
    if isinstance(env, list):
        pairs = (item.split("=", 1) for item in env)
        return {pair[0]: (pair[1] if len(pair) > 1 else "") for pair in pairs}
    return {str(key): "" if value is None else str(value) for key, value in env.items()}


def _env_example() -> tuple[dict[str, str], set[str]]:
    """(settings, names of the commented-out optional settings) of .env.example."""
    settings: dict[str, str] = {}
    optional: set[str] = set()
    for number, raw in enumerate(ENV_EXAMPLE.read_text(encoding="utf-8").splitlines(), 1):
        line = raw.strip()
        if not line:
            continue
        if line.startswith("#"):
            match = re.match(r"#\s*([A-Z][A-Z0-9_]*)=", line)
            if match:
                optional.add(match.group(1))
            continue
        assert "=" in line, f".env.example line {number} is not NAME=value: {raw!r}"
        name, value = line.split("=", 1)
        settings[name.strip()] = value
    return settings, optional


def _saved_objects() -> list[dict[str, Any]]:
    objects = []
    lines = NDJSON.read_text(encoding="utf-8").split("\n")
    assert lines[-1] == "", "the ndjson file must end with a newline"
    for number, line in enumerate(lines[:-1], 1):
        assert line.strip(), f"line {number} of {NDJSON.name} is empty"
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            pytest.fail(f"line {number} of {NDJSON.name} is not JSON: {exc}")
        assert isinstance(obj, dict), f"line {number} is not a JSON object"
        if "exportedCount" in obj:  # the summary line of a Kibana export
            assert number == len(lines) - 1, "the export summary must be the last line"
            continue
        objects.append(obj)
    return objects


def _of_type(kind: str) -> list[dict[str, Any]]:
    return [obj for obj in _saved_objects() if obj["type"] == kind]


def _mapping_fields(properties: dict[str, Any], prefix: str = "") -> dict[str, str]:
    """Every searchable field of a mapping, dotted path -> type, with
    multi-fields (``rule.name.keyword``); disabled objects have none."""
    fields: dict[str, str] = {}
    for name, spec in properties.items():
        path = f"{prefix}{name}"
        if spec.get("enabled", True) is False:
            continue
        if "properties" in spec:
            fields.update(_mapping_fields(spec["properties"], f"{path}."))
            continue
        fields[path] = spec.get("type", "object")
        for sub, sub_spec in spec.get("fields", {}).items():
            fields[f"{path}.{sub}"] = sub_spec["type"]
    return fields


def _alert_fields() -> dict[str, str]:
    template = json.loads(ALERTS_TEMPLATE.read_text(encoding="utf-8"))
    return _mapping_fields(template["template"]["mappings"]["properties"])


def _kql_fields(query: str) -> Iterator[tuple[str, list[str]]]:
    """(field, quoted values) of each ``field : ...`` clause of a KQL query."""
    for match in re.finditer(r'([A-Za-z_@][\w.@]*)\s*:\s*(\([^)]*\)|"[^"]*"|\S+)', query):
        yield match.group(1), re.findall(r'"((?:\\.|[^"\\])*)"', match.group(2))


def _search_source(obj: dict[str, Any]) -> dict[str, Any]:
    meta = obj["attributes"].get("kibanaSavedObjectMeta", {})
    source = json.loads(meta.get("searchSourceJSON", "{}"))
    assert isinstance(source, dict)
    return source


def _lens_layers(obj: dict[str, Any]) -> dict[str, dict[str, Any]]:
    layers = obj["attributes"]["state"]["datasourceStates"]["formBased"]["layers"]
    assert isinstance(layers, dict) and layers, f"{obj['id']}: no formBased layer"
    return layers


def _accessors(node: Any) -> Iterator[str]:
    """Column ids a Lens visualization state points at."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key in ("xAccessor", "splitAccessor", "columnId", "accessor") and \
                    isinstance(value, str):
                yield value
            elif key in ("accessors", "metrics", "primaryGroups", "secondaryGroups"):
                yield from (item for item in value if isinstance(item, str))
            else:
                yield from _accessors(value)
    elif isinstance(node, list):
        for item in node:
            yield from _accessors(item)


def _docker_compose() -> list[str] | None:
    """A working Compose v2 (``docker compose`` or ``docker-compose``), if any:
    ``config`` needs no Docker daemon. Compose v1 does not know this file's
    top-level ``name`` and is not used."""
    candidates = []
    if shutil.which("docker"):
        candidates.append(["docker", "compose"])
    if shutil.which("docker-compose"):
        candidates.append(["docker-compose"])
    for command in candidates:
        try:
            probe = subprocess.run([*command, "version", "--short"], capture_output=True,
                                   text=True, timeout=20, check=False)
        except (OSError, subprocess.TimeoutExpired):
            continue
        if probe.returncode == 0 and re.match(r"v?2\.", probe.stdout.strip()):
            return command
    return None


# -- compose.yaml ------------------------------------------------------------------

def test_compose_has_the_services() -> None:
    services = _services()
    assert {"elasticsearch", "kibana", "setup"} <= set(services)


def test_images_are_pinned_to_one_8_19_release() -> None:
    tags: dict[str, str] = {}
    for name, service in _services().items():
        image = service.get("image")
        assert isinstance(image, str), f"{name}: no image (nothing is built here)"
        repository, _, tag = image.rpartition(":")
        assert repository in (ES_IMAGE, KIBANA_IMAGE), f"{name}: unexpected image {image}"
        assert STACK_TAG.match(tag), f"{name}: {image} is not pinned to an 8.19.x tag"
        tags[name] = tag
    assert _services()["kibana"]["image"].startswith(f"{KIBANA_IMAGE}:")
    assert _services()["elasticsearch"]["image"].startswith(f"{ES_IMAGE}:")
    assert len(set(tags.values())) == 1, f"Elasticsearch and Kibana versions differ: {tags}"


def test_ports_are_published_on_loopback_only() -> None:
    published = 0
    for name, service in _services().items():
        assert service.get("network_mode") != "host", f"{name}: host networking"
        for port in service.get("ports", []):
            published += 1
            if isinstance(port, dict):
                assert port.get("host_ip") == "127.0.0.1", f"{name}: port {port}"
            else:
                assert str(port).startswith("127.0.0.1:"), \
                    f"{name}: port {port!r} is not bound to 127.0.0.1"
    assert published >= 2, "Elasticsearch and Kibana should be reachable from the host"


def test_no_password_is_written_into_compose() -> None:
    text = COMPOSE_FILE.read_text(encoding="utf-8")
    required = {m["name"] for m in VARIABLE.finditer(text) if m["op"] == ":?"}
    for name, service in _services().items():
        for key, value in _environment(service).items():
            if not SECRET_NAME.search(key):
                continue
            match = re.fullmatch(r"\$\{(\w+):\?[^}]*\}", value)
            assert match, f"{name}: {key} must be a required ${{VARIABLE:?...}}, not {value!r}"
            assert match.group(1) in required
    # No secret variable gets a fallback value, anywhere (command, healthcheck, ...).
    for match in VARIABLE.finditer(text):
        if SECRET_NAME.search(match["name"]):
            assert match["op"] == ":?", \
                f"${{{match['name']}}} must be required (:?), never defaulted or optional"
    assert not re.search(r"elastic:(?!\$)", text), "a literal credential follows 'elastic:'"
    assert "changeme" not in text.lower()


def test_every_variable_is_documented_in_env_example() -> None:
    text = COMPOSE_FILE.read_text(encoding="utf-8")
    settings, optional = _env_example()
    for match in VARIABLE.finditer(text):
        name, op = match["name"], match["op"]
        if op == ":?":
            assert name in settings, f"required ${{{name}}} missing from .env.example"
        else:
            assert op in (":-", "-"), f"${{{name}}} has neither a default nor ':?'"
            assert name in optional, f"optional ${{{name}}} not mentioned in .env.example"


def test_env_example_has_placeholders_only() -> None:
    settings, _ = _env_example()
    assert {"ELASTIC_PASSWORD", "KIBANA_PASSWORD"} <= set(settings)
    for name, value in settings.items():
        assert value == "", f".env.example sets {name}; leave every value for the user"


def test_elasticsearch_service() -> None:
    service = _services()["elasticsearch"]
    env = _environment(service)
    assert env["discovery.type"] == "single-node"
    assert env["xpack.security.enabled"] == "true"
    assert env["xpack.security.http.ssl.enabled"] == "true"
    assert env["ELASTIC_PASSWORD"].startswith("${ELASTIC_PASSWORD:?")
    heap = env["ES_JAVA_OPTS"]
    assert re.search(r"-Xms\S+", heap) and re.search(r"-Xmx\S+", heap), heap
    volumes = _compose().get("volumes") or {}
    data_mounts = [str(v) for v in service["volumes"]
                   if str(v).endswith(":/usr/share/elasticsearch/data")]
    assert data_mounts, "no data volume"
    assert data_mounts[0].split(":", 1)[0] in volumes, "the data volume is not a named volume"
    test = service["healthcheck"]["test"]
    command = " ".join(test[1:]) if isinstance(test, list) else str(test)
    assert "curl" in command and "_cluster/health" in command
    # The password reaches curl from the container's environment ($$ in the file).
    assert re.search(r"-u \"?elastic:\$\$\{?ELASTIC_PASSWORD", command), command


def test_startup_order_and_kibana_system_password() -> None:
    services = _services()
    assert services["kibana"]["depends_on"] == {
        "elasticsearch": {"condition": "service_healthy"},
        "setup": {"condition": "service_completed_successfully"},
    }
    assert services["setup"]["depends_on"]["elasticsearch"]["condition"] == "service_healthy"
    assert services["setup"].get("restart") == "no"
    setup_script = " ".join(map(str, services["setup"]["command"]))
    assert "/_security/user/kibana_system/_password" in setup_script
    kibana = _environment(services["kibana"])
    assert kibana["ELASTICSEARCH_USERNAME"] == "kibana_system"
    assert kibana["ELASTICSEARCH_PASSWORD"].startswith("${KIBANA_PASSWORD:?")
    assert kibana["ELASTICSEARCH_HOSTS"].startswith("https://")
    assert "ELASTICSEARCH_SSL_CERTIFICATEAUTHORITIES" in kibana


def test_docker_compose_config() -> None:
    command = _docker_compose()
    if command is None:
        pytest.skip("no working `docker compose` here")
    env = dict(os.environ, ELASTIC_PASSWORD="x" * 16, KIBANA_PASSWORD="y" * 16,
               KIBANA_ENCRYPTION_KEY="z" * 32)
    result = subprocess.run([*command, "-f", str(COMPOSE_FILE), "config", "--quiet"],
                            capture_output=True, text=True, env=env, timeout=60, check=False)
    assert result.returncode == 0, result.stderr


# -- Kibana saved objects --------------------------------------------------------------

def test_saved_objects_parse_and_ids_are_unique() -> None:
    objects = _saved_objects()
    ids = [obj.get("id") for obj in objects]
    assert len(ids) == len(set(ids)), f"duplicate ids: {ids}"
    for obj in objects:
        assert isinstance(obj.get("type"), str) and isinstance(obj.get("attributes"), dict), \
            f"not a saved object: {str(obj)[:80]}"
        assert str(obj["id"]).startswith("icswatch-"), obj["id"]
        assert isinstance(obj.get("references"), list)
        # Without these Kibana would run every migration since 7.x on 8.x documents.
        assert re.fullmatch(r"\d+\.\d+\.\d+", obj.get("coreMigrationVersion", "")), obj["id"]
        assert re.fullmatch(r"\d+\.\d+\.\d+", obj.get("typeMigrationVersion", "")), obj["id"]
    kinds = {obj["type"] for obj in objects}
    assert {"index-pattern", "lens", "search", "dashboard"} <= kinds


def test_every_reference_resolves() -> None:
    objects = _saved_objects()
    defined = {(obj["type"], obj["id"]) for obj in objects}
    for obj in objects:
        names = [ref["name"] for ref in obj["references"]]
        assert len(names) == len(set(names)), f"{obj['id']}: duplicate reference names"
        for ref in obj["references"]:
            assert (ref["type"], ref["id"]) in defined, f"{obj['id']}: dangling reference {ref}"


def test_data_view() -> None:
    (view,) = _of_type("index-pattern")
    assert view["id"] == "icswatch-alerts"
    assert view["attributes"]["title"] == "icswatch-alerts"
    time_field = view["attributes"]["timeFieldName"]
    assert _alert_fields().get(time_field) in ("date", "date_nanos")


def test_lens_visualizations() -> None:
    fields = _alert_fields()
    lenses = _of_type("lens")
    assert len(lenses) >= 5
    bucketed: set[str] = set()
    for obj in lenses:
        refs = {ref["name"]: ref for ref in obj["references"]}
        state = obj["attributes"]["state"]
        assert "visualization" in state and obj["attributes"]["visualizationType"]
        columns_seen: set[str] = set()
        for layer_id, layer in _lens_layers(obj).items():
            ref = refs.get(f"indexpattern-datasource-layer-{layer_id}")
            assert ref and ref["type"] == "index-pattern", \
                f"{obj['id']}: layer {layer_id} has no data view reference"
            columns = layer["columns"]
            assert sorted(layer["columnOrder"]) == sorted(columns), obj["id"]
            columns_seen |= set(columns)
            for column_id, column in columns.items():
                order_by = column.get("params", {}).get("orderBy", {})
                if order_by.get("type") == "column":
                    assert order_by["columnId"] in columns, f"{obj['id']}: {column_id} orderBy"
                field = column.get("sourceField")
                if field in (None, "___records___"):
                    continue
                assert field in fields, f"{obj['id']}: {field} is not in the alerts mapping"
                assert fields[field] in LENS_TYPES, \
                    f"{obj['id']}: {field} ({fields[field]}) cannot be aggregated"
                assert column["dataType"] in (LENS_TYPES[fields[field]], "number"), \
                    f"{obj['id']}: {column_id} dataType {column['dataType']} for {fields[field]}"
                if column["isBucketed"]:
                    assert column["dataType"] == LENS_TYPES[fields[field]]
                    bucketed.add(field)
        for accessor in _accessors(state["visualization"]):
            assert accessor in columns_seen, f"{obj['id']}: accessor {accessor} has no column"
    # What the dashboard is for.
    assert {"@timestamp", "ics.alert.severity", "threat.technique.id", "rule.id",
            "source.ip"} <= bucketed


def test_saved_search() -> None:
    fields = _alert_fields()
    (search,) = _of_type("search")
    attributes = search["attributes"]
    assert attributes["columns"] == ["rule.name", "source.ip", "destination.ip", "message"]
    for column in attributes["columns"]:
        assert column in fields, f"column {column} is not in the alerts mapping"
    for field, _direction in attributes["sort"]:
        assert fields.get(field) in ("date", "date_nanos", "keyword", "long", "ip"), field
    assert attributes["sort"][0] == ["@timestamp", "desc"], "newest first"
    source = _search_source(search)
    refs = {ref["name"]: ref for ref in search["references"]}
    assert refs[source["indexRefName"]]["type"] == "index-pattern"
    clauses = dict(_kql_fields(source["query"]["query"]))
    assert set(clauses) == {"ics.alert.severity"}
    assert sorted(clauses["ics.alert.severity"]) == ["critical", "high"]


def test_query_fields_exist_and_severities_are_known() -> None:
    fields = _alert_fields()
    for obj in _saved_objects():
        queries = [_search_source(obj).get("query", {}).get("query", "")]
        state = obj["attributes"].get("state")
        if isinstance(state, dict):
            queries.append(state.get("query", {}).get("query", ""))
        for query in filter(None, queries):
            for field, values in _kql_fields(query):
                assert field in fields, f"{obj['id']}: query field {field} is not mapped"
                if field == "ics.alert.severity":
                    assert set(values) <= set(SEVERITY_ORDER), f"{obj['id']}: {values}"


def test_dashboard_panels() -> None:
    (dashboard,) = _of_type("dashboard")
    refs = {ref["name"]: ref for ref in dashboard["references"]}
    panels = json.loads(dashboard["attributes"]["panelsJSON"])
    assert len(panels) == len(refs) >= 6
    cells: set[tuple[int, int]] = set()
    for panel in panels:
        index = panel["panelIndex"]
        assert panel["gridData"]["i"] == index
        # Kibana 8 names a panel's reference "<panelIndex>:<panelRefName>".
        ref = refs.get(f"{index}:{panel['panelRefName']}")
        assert ref is not None, f"panel {index} has no reference"
        assert ref["type"] == panel["type"]
        grid = panel["gridData"]
        assert grid["x"] >= 0 and grid["w"] > 0 and grid["x"] + grid["w"] <= GRID_COLUMNS
        area = {(x, y) for x in range(grid["x"], grid["x"] + grid["w"])
                for y in range(grid["y"], grid["y"] + grid["h"])}
        assert not area & cells, f"panel {index} overlaps another"
        cells |= area
    targets = {ref["id"] for ref in refs.values()}
    assert targets == {obj["id"] for obj in _saved_objects()
                       if obj["type"] in ("lens", "search")}, "every visualization is shown"
    json.loads(dashboard["attributes"]["optionsJSON"])


# -- Elasticsearch JSON files -----------------------------------------------------------

def test_templates_parse() -> None:
    for kind in ("alerts", "events"):
        template = json.loads((ES_DIR / f"{kind}-template.json").read_text(encoding="utf-8"))
        assert template["index_patterns"] == [f"icswatch-{kind}-*"]
        assert template["template"]["aliases"] == {f"icswatch-{kind}": {}}
        assert _mapping_fields(template["template"]["mappings"]["properties"])


def test_ilm_policies_parse() -> None:
    policies = sorted(ES_DIR.glob("ilm-policy*.json"))
    assert policies
    for path in policies:
        body = json.loads(path.read_text(encoding="utf-8"))
        phases = body["policy"]["phases"]
        assert phases and all("actions" in phase for phase in phases.values()), path.name
        assert "min_age" in phases["delete"], path.name


def test_readme_covers_every_shipped_file() -> None:
    text = README.read_text(encoding="utf-8")
    for path in [*sorted(ES_DIR.glob("*.json")), NDJSON, ENV_EXAMPLE]:
        assert path.name in text, f"README.md does not mention {path.name}"
