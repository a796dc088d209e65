"""The compose stack's operations wiring (docker-compose.yml, deploy/), checked without Docker.

- The Grafana dashboard (deploy/grafana/dashboards/poolfin.json) parses, fits its grid, uses
  the provisioned datasource, queries only series and labels the services register
  (shared/ops.py, FastStream's middleware), and shows every poolfin series.
- Every poolfin service in docker-compose.yml serves /metrics and /health on the ops port and
  has an HTTP healthcheck; that healthcheck, run against a real ops app, passes on 200 and
  fails on 503 (with the reasons) or no answer.
- Prometheus (deploy/prometheus/prometheus.yml) scrapes each of the four services there, and
  Grafana is provisioned from deploy/grafana/.

PyYAML is not a dependency: the YAML files are read by light, line-based helpers that know
the shapes of these files; where PyYAML is importable, one more test reads them for real.
"""

from __future__ import annotations

import asyncio
import json
import re
import socket
import subprocess
import sys
import textwrap
import time
from itertools import combinations
from pathlib import Path
from typing import Any

import pytest
import uvicorn
from faststream.kafka.prometheus import KafkaPrometheusMiddleware

from poolfin.registry import SERVICES
from shared.ops import Health, ServiceMetrics, ops_app

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "docker-compose.yml"
PROMETHEUS = ROOT / "deploy" / "prometheus" / "prometheus.yml"
GRAFANA = ROOT / "deploy" / "grafana"
DATASOURCES = GRAFANA / "provisioning" / "datasources" / "prometheus.yml"
PROVIDERS = GRAFANA / "provisioning" / "dashboards" / "poolfin.yml"
DASHBOARD = GRAFANA / "dashboards" / "poolfin.json"

OPS_PORT = "9100"
DATASOURCE_UID = "poolfin-prometheus"
TARGET_LABELS = {"job", "instance"}  # what Prometheus adds to every scraped series
PROMQL_WORDS = {"and", "or", "unless", "bool", "offset", "by", "without", "on", "ignoring"}
PROMQL_WORDS |= {"group_left", "group_right"}
GROUPING = re.compile(r"\b(by|without|on|ignoring|group_left|group_right)\s*\(([^)]*)\)")


# ------------------------------------------------------------------------- what is exported


def exported_series() -> dict[str, frozenset[str]]:
    """Every series name a service can expose, with its label names: ServiceMetrics' and
    FastStream's middleware's (shared/runtime.py puts both in one registry)."""
    metrics = ServiceMetrics("x")
    KafkaPrometheusMiddleware(registry=metrics.registry, app_name="x")
    suffixes = {
        "counter": ("_total", "_created"),
        "histogram": ("_bucket", "_count", "_sum", "_created"),
        "gauge": ("",),
    }
    names = {
        family.name + suffix
        for family in metrics.registry.collect()
        for suffix in suffixes[family.type]
    }
    # prometheus_client has no public accessor for the label names of a labelled metric with
    # no samples yet; its collectors keep them in `_labelnames`.
    collectors = metrics.registry._names_to_collectors
    series = {
        name: frozenset(getattr(collectors[name], "_labelnames", ())) for name in sorted(names)
    }
    series["up"] = frozenset()
    return {
        name: labels | TARGET_LABELS | ({"le"} if name.endswith("_bucket") else set())
        for name, labels in series.items()
    }


def poolfin_families() -> set[str]:
    """The poolfin series as they are written in PromQL (counters with `_total`)."""
    found = set()
    for family in ServiceMetrics("x").registry.collect():
        found.add(family.name + {"counter": "_total", "histogram": "_bucket"}.get(family.type, ""))
    return found


# ------------------------------------------------------------------------- the dashboard


def dashboard() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return loaded


def queries() -> list[tuple[str, dict[str, Any]]]:
    """(panel title, target) of every query on the dashboard."""
    return [
        (panel["title"], target)
        for panel in dashboard()["panels"]
        for target in panel.get("targets", [])
    ]


def metric_names(expr: str) -> set[str]:
    """The series an expression reads: its identifiers that are not functions, aggregations,
    keywords, label names or template variables."""
    bare = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)  # strings
    bare = re.sub(r"\{[^}]*\}", "", bare)  # label matchers
    bare = re.sub(r"\[[^\]]*\]", "", bare)  # range selectors
    bare = GROUPING.sub(" ", bare)  # by (...), on (...), ...
    return {
        m.group(1)
        for m in re.finditer(r"(?<![\w$.])([A-Za-z_:][\w:]*)(?![\w:])(?!\s*\()", bare)
        if m.group(1) not in PROMQL_WORDS
    }


def labels_used(expr: str) -> set[str]:
    grouped = {
        label.strip()
        for _, labels in GROUPING.findall(expr)
        for label in labels.split(",")
        if label.strip()
    }
    matched = {
        m.group(1)
        for body in re.findall(r"\{([^}]*)\}", expr)
        for m in re.finditer(r"(\w+)\s*(?:=~|!~|!=|=)", body)
    }
    return grouped | matched


def test_the_dashboard_parses_fits_its_grid_and_uses_the_provisioned_datasource() -> None:
    board = dashboard()
    assert board["uid"] == "poolfin"
    panels = board["panels"]
    ids = [p["id"] for p in panels]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    for panel in panels:
        grid = panel["gridPos"]
        assert grid["x"] >= 0 and grid["w"] > 0 and grid["x"] + grid["w"] <= 24, panel["title"]
    for a, b in combinations(panels, 2):
        ga, gb = a["gridPos"], b["gridPos"]
        overlap = (
            ga["x"] < gb["x"] + gb["w"]
            and gb["x"] < ga["x"] + ga["w"]
            and ga["y"] < gb["y"] + gb["h"]
            and gb["y"] < ga["y"] + ga["h"]
        )
        assert not overlap, f"panels {a['title']!r} and {b['title']!r} overlap"
    for panel in panels:
        if panel["type"] == "row":
            continue
        assert panel["datasource"] == {"type": "prometheus", "uid": DATASOURCE_UID}
        refs = [t["refId"] for t in panel["targets"]]
        assert refs and len(refs) == len(set(refs)), panel["title"]
        for target in panel["targets"]:
            assert target["expr"].strip(), panel["title"]
            assert target["datasource"]["uid"] == DATASOURCE_UID, panel["title"]
    for variable in board["templating"]["list"]:
        assert variable["datasource"]["uid"] == DATASOURCE_UID
    provisioned = DATASOURCES.read_text()
    assert re.search(rf"^\s+uid:\s*{DATASOURCE_UID}\s*$", provisioned, re.M)
    assert re.search(r"^\s+url:\s*http://prometheus:9090\s*$", provisioned, re.M)


def test_every_series_and_label_the_dashboard_queries_is_one_the_services_export() -> None:
    exported = exported_series()
    variables = [v["query"] for v in dashboard()["templating"]["list"]]
    for title, target in [*queries(), *(("variables", {"expr": q}) for q in variables)]:
        expr = target["expr"]
        if expr.startswith("label_values("):  # label_values(series, label)
            series, label = (s.strip() for s in expr[len("label_values(") : -1].split(","))
            assert label in exported[series], (title, expr)
            continue
        names = metric_names(expr)
        assert names, f"{title}: no series in {expr!r}"
        unknown = names - exported.keys()
        assert not unknown, f"{title}: {sorted(unknown)} not exported (in {expr!r})"
        allowed = set().union(*(exported[n] for n in names))
        assert labels_used(expr) <= allowed, (title, expr, sorted(allowed))
        legend = set(re.findall(r"\{\{\s*(\w+)\s*\}\}", target.get("legendFormat", "")))
        assert legend <= allowed, (title, target.get("legendFormat"))
        if any(kind == "by" for kind, _ in GROUPING.findall(expr)):
            kept = {
                label.strip()
                for kind, labels in GROUPING.findall(expr)
                if kind == "by"
                for label in labels.split(",")
            }
            assert legend <= kept, f"{title}: legend {legend} is aggregated away in {expr!r}"


def test_the_dashboard_shows_every_poolfin_series() -> None:
    shown = set().union(*(metric_names(t["expr"]) for _, t in queries()))
    missing = poolfin_families() - shown
    assert not missing, f"shared/ops.py exports {sorted(missing)}; put them on the dashboard"
    assert "up" in shown


def test_the_metric_name_reader_sees_series_and_only_series() -> None:
    expr = (
        "histogram_quantile(0.95, sum by (service, le) (rate(poolfin_batch_seconds_bucket"
        '{service=~"$service"}[$__rate_interval]))) / on (service) group_left sum(up offset 5m)'
        " * 1000"
    )
    assert metric_names(expr) == {"poolfin_batch_seconds_bucket", "up"}
    assert labels_used(expr) == {"service", "le"}


# ------------------------------------------------------------------------- YAML, lightly


def yaml_lines(path: Path) -> list[str]:
    """The file's lines without whole-line comments and blank lines."""
    return [
        line.rstrip()
        for line in path.read_text().splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    ]


def children(lines: list[str], indent: int) -> dict[str, list[str]]:
    """The keys of the mapping at `indent` spaces → [the rest of the key's line, then the
    lines nested under it]. Enough for the block mappings of these files; not a YAML parser."""
    found: dict[str, list[str]] = {}
    current: list[str] | None = None
    key_line = re.compile(rf"^ {{{indent}}}([^\s\-#][^:]*):(?:\s+(.*))?$")
    for line in lines:
        m = key_line.match(line)
        if m:
            current = found[m.group(1).strip('"')] = [(m.group(2) or "").split(" #")[0].strip()]
        elif current is not None and len(line) - len(line.lstrip()) > indent:
            current.append(line)
    return found


def scalar(value: str) -> str:
    return value.strip().strip('"').strip("'")


def compose_view() -> dict[str, Any]:
    top = children(yaml_lines(COMPOSE), 0)
    return {
        "anchor": children(top["x-poolfin-service"][1:], 2),
        "services": children(top["services"][1:], 2),
        "volumes": children(top["volumes"][1:], 2),
    }


def healthcheck_script(anchor: dict[str, list[str]]) -> list[str]:
    """The exec form of the shared healthcheck: ["CMD", "python", "-c", <script>]."""
    test = children(anchor["healthcheck"][1:], 4)["test"][1:]
    items: list[str] = []
    block: list[str] | None = None
    for line in test:
        if re.match(r"^ {6}- ", line):
            value = line.strip()[2:]
            if value == "|":
                block = []
                items.append("")
            else:
                block = None
                items.append(value)
        elif block is not None:
            block.append(line)
            items[-1] = textwrap.dedent("\n".join(block)) + "\n"
    return items


def test_every_poolfin_service_in_compose_serves_ops_and_has_an_http_healthcheck() -> None:
    view = compose_view()
    anchor = view["anchor"]
    assert anchor["environment"][0] == "&poolfin-env"
    env = {k: scalar(v[0]) for k, v in children(anchor["environment"][1:], 4).items()}
    assert env.get("POOLFIN_OPS_PORT") == OPS_PORT, "x-poolfin-service sets no ops port"
    assert env.get("POOLFIN_OPS_HOST") == "0.0.0.0", "the ops port must be reachable"
    command = healthcheck_script(anchor)
    assert command[:3] == ["CMD", "python", "-c"]
    assert 'os.environ["POOLFIN_OPS_PORT"]' in command[3] and '"/health"' in command[3]
    assert "test -f" not in "\n".join(anchor["healthcheck"])
    for name in SERVICES:
        assert name in view["services"], f"{name} is not in docker-compose.yml"
        service = children(view["services"][name][1:], 4)
        assert service.get("<<", [""])[0] == "*poolfin-service", name
        assert "healthcheck" not in service, f"{name} overrides the shared healthcheck"
        if "environment" in service:
            own = children(service["environment"][1:], 6)
            shared = own.get("<<", [""])[0]
            assert shared == "*poolfin-env", f"{name}'s environment drops the shared one"
            assert not {k for k in own if k.startswith("POOLFIN_OPS_")}, name
        assert not any(OPS_PORT in line for line in service.get("ports", [])), (
            f"{name} publishes its ops port: replicas would clash"
        )


def test_prometheus_and_grafana_run_in_compose_from_deploy() -> None:
    services = compose_view()["services"]
    prometheus = children(services["prometheus"][1:], 4)
    assert prometheus["image"][0].startswith("prom/prometheus:")
    assert '"127.0.0.1:9090:9090"' in [line.strip()[2:] for line in prometheus["ports"][1:]]
    mounts = [line.strip()[2:] for line in prometheus["volumes"][1:]]
    assert "./deploy/prometheus/prometheus.yml:/etc/prometheus/prometheus.yml:ro" in mounts

    grafana = children(services["grafana"][1:], 4)
    assert grafana["image"][0].startswith("grafana/grafana:")
    assert '"127.0.0.1:3000:3000"' in [line.strip()[2:] for line in grafana["ports"][1:]]
    assert "prometheus" in children(grafana["depends_on"][1:], 6)
    env = {k: scalar(v[0]) for k, v in children(grafana["environment"][1:], 6).items()}
    assert env["GF_AUTH_ANONYMOUS_ENABLED"] == "true"
    assert env["GF_AUTH_ANONYMOUS_ORG_ROLE"] == "Viewer"
    mounted = dict(
        line.strip()[2:].removesuffix(":ro").split(":", 1) for line in grafana["volumes"][1:]
    )
    for host in mounted:
        assert (ROOT / host).exists(), f"grafana mounts {host}, which is not in the repository"
    assert mounted["./deploy/grafana/provisioning/datasources"] == (
        "/etc/grafana/provisioning/datasources"
    )
    assert mounted["./deploy/grafana/provisioning/dashboards"] == (
        "/etc/grafana/provisioning/dashboards"
    )
    boards = mounted["./deploy/grafana/dashboards"]
    provider = children(children(yaml_lines(PROVIDERS), 0)["providers"][1:], 4)
    assert scalar(children(provider["options"][1:], 6)["path"][0]) == boards
    assert env["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"] == f"{boards}/{DASHBOARD.name}"


def scrape_jobs() -> dict[str, dict[str, Any]]:
    """job name → {names, type, port} of its DNS discovery."""
    text = "\n".join(yaml_lines(PROMETHEUS))
    jobs = {}
    for chunk in re.split(r"^\s*- job_name:", text, flags=re.M)[1:]:
        name, _, body = chunk.partition("\n")
        names = re.search(r"^\s*- names:\s*\[([^\]]*)\]", body, re.M)
        kind = re.search(r"^\s*type:\s*(\S+)", body, re.M)
        port = re.search(r"^\s*port:\s*(\d+)", body, re.M)
        jobs[scalar(name)] = {
            "names": [scalar(n) for n in names.group(1).split(",")] if names else [],
            "type": kind.group(1) if kind else None,
            "port": port.group(1) if port else None,
        }
    return jobs


def test_prometheus_scrapes_every_replica_of_each_service_on_the_ops_port() -> None:
    jobs = scrape_jobs()
    assert set(jobs) == set(SERVICES)
    for name, job in jobs.items():
        assert job == {"names": [name], "type": "A", "port": OPS_PORT}, name


# ------------------------------------------------------------------------- the healthcheck


async def test_the_compose_healthcheck_passes_on_200_and_fails_on_503_or_no_answer() -> None:
    script = healthcheck_script(compose_view()["anchor"])[3]
    health = Health("credit", interval_s=2, stall_s=30, relay_stall_s=30)
    server = uvicorn.Server(
        uvicorn.Config(ops_app(health, ServiceMetrics("credit")), log_config=None)
    )
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]

    def probe() -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-c", script],
            env={"POOLFIN_OPS_PORT": str(port)},
            capture_output=True,
            text=True,
            timeout=20,
        )

    serving = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        while not server.started:
            await asyncio.sleep(0.01)
        starting = await asyncio.to_thread(probe)
        assert starting.returncode == 1
        assert "starting: the first checks have not run yet" in starting.stderr

        health.checks = {"database": None, "broker": None, "consumer": None, "relay": None}
        health.checked_at = time.monotonic()
        assert (await asyncio.to_thread(probe)).returncode == 0

        # Live but not ready: /health counts PostgreSQL too (the choice in docker-compose.yml).
        health.checks["database"] = "no answer from PostgreSQL within 2 s"
        outage = await asyncio.to_thread(probe)
        assert outage.returncode == 1 and "database: no answer from PostgreSQL" in outage.stderr
    finally:
        server.should_exit = True
        await serving
        sock.close()
    gone = await asyncio.to_thread(probe)
    assert gone.returncode == 1 and "Connection refused" in gone.stderr


# ------------------------------------------------------------------------- with PyYAML


def test_the_yaml_files_read_by_pyyaml_agree() -> None:
    yaml = pytest.importorskip("yaml")
    compose = yaml.safe_load(COMPOSE.read_text())  # resolves the anchors and `<<` merges
    for name in SERVICES:
        service = compose["services"][name]
        assert service["environment"]["POOLFIN_OPS_PORT"] == OPS_PORT, name
        assert service["environment"]["POOLFIN_OPS_HOST"] == "0.0.0.0", name
        assert service["healthcheck"]["test"] == healthcheck_script(compose_view()["anchor"])
    assert compose["services"]["grafana"]["depends_on"]["prometheus"] == {
        "condition": "service_healthy"
    }
    config = yaml.safe_load(PROMETHEUS.read_text())
    jobs = {
        job["job_name"]: [(d["names"], d["type"], str(d["port"])) for d in job["dns_sd_configs"]]
        for job in config["scrape_configs"]
    }
    assert jobs == {name: [([name], "A", OPS_PORT)] for name in SERVICES}
    (source,) = yaml.safe_load(DATASOURCES.read_text())["datasources"]
    assert (source["uid"], source["type"], source["url"]) == (
        DATASOURCE_UID,
        "prometheus",
        "http://prometheus:9090",
    )
    (provider,) = yaml.safe_load(PROVIDERS.read_text())["providers"]
    assert provider["options"]["path"] == "/etc/grafana/dashboards/poolfin"
