"""Grafana provisioning and dashboards (monitoring/grafana): JSON, ids, datasource, queries.

Every target's PromQL (template variables substituted) is checked by ``promtool check rules``
as recording rules; skipped when promtool is not on PATH.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from tests.unit.prom_metrics import (
    NO_PROMTOOL,
    PROMTOOL,
    ROOT,
    exposed_metrics,
    ml_metrics_in,
    run_promtool,
)

GRAFANA = ROOT / "monitoring" / "grafana"
DASHBOARDS = GRAFANA / "dashboards"
DATASOURCES = GRAFANA / "provisioning" / "datasources" / "prometheus.yaml"
PROVIDERS = GRAFANA / "provisioning" / "dashboards" / "finbento.yaml"
DASHBOARDS_IN_CONTAINER = "/var/lib/grafana/dashboards"
DATASOURCE = {"type": "prometheus", "uid": "prometheus"}

#: Values the test gives Grafana's variables (the others, e.g. $model_name, become ".*").
GRAFANA_VARIABLES = {
    "__rate_interval": "5m",
    "__interval": "1m",
    "__range": "1h",
    "__range_s": "3600",
    "__range_ms": "3600000",
    "__interval_ms": "60000",
}
_VARIABLE = re.compile(r"\$\{(\w+)(?::[^}]*)?\}|\$(\w+)|\[\[(\w+)(?::[^\]]*)?\]\]")

REQUIRED = {
    "finbento-models.json": {
        "ml_predictions_total", "ml_errors_total", "ml_prediction_latency_seconds_bucket",
        "bentoml_service_adaptive_batch_size_bucket", "ml_degraded_responses_total",
        "ml_feature_store_requests_total", "ml_model_info",
    },
    "finbento-drift.json": {
        "ml_drift_score", "ml_feature_drifted", "ml_drift_share", "ml_dataset_drift",
        "ml_drift_level",
    },
    "finbento-scheduler.json": {
        "ml_job_runs_total", "ml_job_last_success_timestamp_seconds",
        "bentoml_service_request_total",
    },
}  # fmt: skip


def dashboard_files() -> list[Path]:
    return sorted(DASHBOARDS.glob("*.json"))


def load_dashboard(path: Path) -> dict:
    return json.loads(path.read_text())


def all_panels(panels: list[dict]) -> Iterator[dict]:
    """Panels, with those inside (collapsed) rows."""
    for panel in panels:
        yield panel
        yield from all_panels(panel.get("panels", []))


def targets(dashboard: dict) -> Iterator[tuple[dict, dict]]:
    for panel in all_panels(dashboard["panels"]):
        for target in panel.get("targets", []):
            yield panel, target


def substitute(expr: str) -> str:
    """``expr`` with Grafana's template variables replaced by values PromQL accepts."""

    def value(match: re.Match) -> str:
        name = next(g for g in match.groups() if g)
        return GRAFANA_VARIABLES.get(name, ".*")

    return _VARIABLE.sub(value, expr)


def variable_query(variable: dict) -> str:
    query = variable.get("query", "")
    return query.get("query", "") if isinstance(query, dict) else query


def test_datasource_provisioning() -> None:
    (source,) = yaml.safe_load(DATASOURCES.read_text())["datasources"]
    assert source["uid"] == DATASOURCE["uid"]
    assert source["type"] == DATASOURCE["type"]
    assert source["url"] == "http://prometheus:9090"
    assert source["access"] == "proxy"


def test_dashboard_provisioning_points_at_the_mounted_folder() -> None:
    (provider,) = yaml.safe_load(PROVIDERS.read_text())["providers"]
    assert provider["type"] == "file"
    assert provider["options"]["path"] == DASHBOARDS_IN_CONTAINER
    # Where a compose file runs Grafana, it must mount the dashboards and provisioning there.
    for compose in [*ROOT.glob("*compose*.y*ml"), *ROOT.glob("deploy/*compose*.y*ml")]:
        services = (yaml.safe_load(compose.read_text()) or {}).get("services", {})
        for name, service in services.items():
            if "grafana" not in str(service.get("image", "")):
                continue
            volumes = [v if isinstance(v, str) else f"{v['source']}:{v['target']}"
                       for v in service.get("volumes", [])]  # fmt: skip
            mounts = {v.split(":")[1]: v.split(":")[0] for v in volumes if ":" in v}
            assert DASHBOARDS_IN_CONTAINER in mounts, f"{compose.name}: {name} {volumes}"
            source = mounts[DASHBOARDS_IN_CONTAINER].rstrip("/")
            assert source.endswith("monitoring/grafana/dashboards"), f"{compose.name}: {volumes}"


def test_dashboards_exist_and_load() -> None:
    names = {p.name for p in dashboard_files()}
    assert set(REQUIRED) <= names, set(REQUIRED) - names
    uids = [load_dashboard(p)["uid"] for p in dashboard_files()]
    assert len(uids) == len(set(uids)), f"duplicate dashboard uids: {uids}"


@pytest.mark.parametrize("path", dashboard_files(), ids=lambda p: p.name)
def test_dashboard_structure(path: Path) -> None:
    dashboard = load_dashboard(path)
    assert dashboard["title"] and dashboard["uid"]
    assert len(dashboard["uid"]) <= 40
    assert dashboard["schemaVersion"] >= 39
    panels = list(all_panels(dashboard["panels"]))
    assert panels
    ids = [p["id"] for p in panels]
    assert len(ids) == len(set(ids)), f"duplicate panel ids in {path.name}"
    for panel in panels:
        assert panel["datasource"] == DATASOURCE, f"{path.name}: panel {panel['id']}"
        assert {"h", "w", "x", "y"} <= set(panel["gridPos"]), panel["id"]
        assert panel["gridPos"]["x"] + panel["gridPos"]["w"] <= 24, panel["id"]
        if panel["type"] != "row":
            assert panel.get("targets"), f"{path.name}: panel {panel['id']} has no query"
        refs = [t["refId"] for t in panel.get("targets", [])]
        assert len(refs) == len(set(refs)), panel["id"]
        for target in panel.get("targets", []):
            assert target.get("datasource", DATASOURCE) == DATASOURCE, panel["id"]
            assert target["expr"].strip(), panel["id"]
    for variable in dashboard.get("templating", {}).get("list", []):
        if variable["type"] == "query":
            assert variable["datasource"] == DATASOURCE, variable["name"]


@pytest.mark.parametrize("path", dashboard_files(), ids=lambda p: p.name)
def test_dashboard_queries_use_rate_interval(path: Path) -> None:
    for panel, target in targets(load_dashboard(path)):
        for window in re.findall(r"\b(?:rate|irate)\(.*?\[([^\]]+)\]", target["expr"], re.S):
            assert window == "$__rate_interval", f"{path.name}: panel {panel['id']}: [{window}]"


def test_dashboards_show_the_required_metrics() -> None:
    for name, metrics in REQUIRED.items():
        exprs = " ".join(t["expr"] for _, t in targets(load_dashboard(DASHBOARDS / name)))
        missing = {m for m in metrics if not re.search(rf"\b{m}\b", exprs)}
        assert not missing, f"{name}: {missing}"
    models = load_dashboard(DASHBOARDS / "finbento-models.json")
    (variable,) = [v for v in models["templating"]["list"] if v["name"] == "model_name"]
    assert variable_query(variable) == "label_values(ml_predictions_total, model_name)"
    exprs = " ".join(t["expr"] for _, t in targets(models))
    for quantile in ("0.5", "0.95", "0.99"):
        assert f"histogram_quantile({quantile}, " in exprs, quantile


def test_ml_metrics_in_dashboards_are_defined() -> None:
    exposed = exposed_metrics()
    used: dict[str, set[str]] = {}
    for path in dashboard_files():
        dashboard = load_dashboard(path)
        queries = [t["expr"] for _, t in targets(dashboard)]
        queries += [variable_query(v) for v in dashboard.get("templating", {}).get("list", [])]
        for query in queries:
            for metric in ml_metrics_in(query):
                used.setdefault(metric, set()).add(path.name)
    assert used
    missing = {m: sorted(files) for m, files in used.items() if m not in exposed}
    assert not missing, f"ml_* metrics not defined in the metric modules: {missing}"


@pytest.mark.skipif(PROMTOOL is None, reason=NO_PROMTOOL)
def test_dashboard_queries_parse(tmp_path: Path) -> None:
    rules, where = [], []
    for path in dashboard_files():
        for panel, target in targets(load_dashboard(path)):
            rules.append(
                {"record": f"dashboard:query_{len(rules)}", "expr": substitute(target["expr"])}
            )
            where.append(f"{path.name} panel {panel['id']} ({panel['title']}) {target['refId']}")
    assert rules
    rule_file = tmp_path / "dashboard_queries.yml"
    rule_file.write_text(yaml.safe_dump({"groups": [{"name": "dashboards", "rules": rules}]}))
    result = run_promtool("check", "rules", str(rule_file))
    if result.returncode != 0:
        # promtool names the failing rule by its position: map it back to the panel.
        for number in sorted({int(n) for n in re.findall(r"query_(\d+)", result.stdout)}):
            result.stdout += f"\nquery_{number}: {where[number]}"
    assert result.returncode == 0, result.stdout
    assert f"SUCCESS: {len(rules)} rules found" in result.stdout, result.stdout


def test_substitute() -> None:
    assert substitute('rate(x{m=~"$model_name"}[$__rate_interval])') == 'rate(x{m=~".*"}[5m])'
    assert substitute("increase(x[${__range}]) [[job]]") == "increase(x[1h]) .*"
