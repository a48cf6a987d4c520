"""Prometheus configs and alert rules (monitoring/prometheus): promtool checks and unit tests,
test coverage of every alert, runbook sections, and the ml_* metrics the rules use.

The promtool tests are skipped when promtool is not on PATH (CI installs Debian's prometheus).
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest
import yaml

from tests.unit.prom_metrics import (
    NO_PROMTOOL,
    PROMTOOL,
    ROOT,
    defined_metrics,
    exposed_metrics,
    ml_metrics_in,
    run_promtool,
)

PROM_DIR = ROOT / "monitoring" / "prometheus"
COMPOSE_CONFIG = PROM_DIR / "prometheus.yml"
K8S_CONFIG = PROM_DIR / "prometheus-k8s.yml"
ALERTS = PROM_DIR / "alerts.yml"
ALERTS_TEST = PROM_DIR / "alerts_test.yml"
README = PROM_DIR / "README.md"

BENTOS = {
    "finbento": "all",
    "finbento-risk": "risk",
    "finbento-language": "language",
    "finbento-forecast": "forecast",
    "finbento-advisor": "advisor",
    "finbento-recommend": "recommend",
}
SEVERITIES = {"info", "warning", "critical"}
REQUIRED_ALERTS = {
    "BentoDown", "NoRequests", "HighErrorRate", "BentoHighErrorRate", "HighLatencyP95",
    "CriticalLatencyP95", "AdvisorHighLatencyP95", "AdvisorCriticalLatencyP95",
    "LowPredictionVolume", "DegradedResponses", "ModelVersionChanged", "PredictionLogDropping",
    "HighFeatureStoreMissRate", "FeatureStoreErrors", "HighDrift", "CriticalDrift",
    "DatasetDrift", "ManyDriftedFeatures", "SchedulerDown", "SchedulerJobFailing",
    "SchedulerJobNotRunOnTime",
}  # fmt: skip

needs_promtool = pytest.mark.skipif(PROMTOOL is None, reason=NO_PROMTOOL)


def load(path: Path) -> dict:
    return yaml.safe_load(path.read_text())


def alert_rules() -> list[dict]:
    return [r for g in load(ALERTS)["groups"] for r in g["rules"] if "alert" in r]


def github_anchors(markdown: str) -> set[str]:
    """Anchors GitHub makes of the headings (and explicit ``<a id|name=...>`` anchors)."""
    anchors = set(re.findall(r'<a\s+(?:id|name)="([^"]+)"', markdown))
    for heading in re.findall(r"^#{1,6}\s+(.+?)\s*#*\s*$", markdown, flags=re.M):
        slug = re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")
        anchors.add(slug)
    return anchors


# -- promtool ------------------------------------------------------------------------------------


@needs_promtool
def test_promtool_check_config_compose() -> None:
    result = run_promtool("check", "config", COMPOSE_CONFIG.name, cwd=PROM_DIR)
    assert result.returncode == 0, result.stdout
    assert "1 rule files found" in result.stdout, result.stdout


@needs_promtool
def test_promtool_check_config_kubernetes(tmp_path: Path) -> None:
    result = run_promtool("check", "config", K8S_CONFIG.name, cwd=PROM_DIR)
    if result.returncode != 0 and re.search(r"kubernetes_sd_configs not found", result.stdout):
        # Debian's promtool is built without Kubernetes discovery: check everything else (the
        # relabelling, rule_files) with the discovery block swapped for a static target; the
        # block itself and the relabelling are checked by the tests below.
        config = load(K8S_CONFIG)
        for scrape in config["scrape_configs"]:
            assert scrape.pop("kubernetes_sd_configs"), scrape["job_name"]
            scrape["static_configs"] = [{"targets": ["10.0.0.1:3000"]}]
        (tmp_path / K8S_CONFIG.name).write_text(yaml.safe_dump(config, sort_keys=False))
        shutil.copy(ALERTS, tmp_path / ALERTS.name)
        result = run_promtool("check", "config", K8S_CONFIG.name, cwd=tmp_path)
    assert result.returncode == 0, result.stdout
    assert "1 rule files found" in result.stdout, result.stdout


@needs_promtool
def test_promtool_check_rules() -> None:
    result = run_promtool("check", "rules", str(ALERTS.relative_to(ROOT)))
    assert result.returncode == 0, result.stdout
    assert f"SUCCESS: {len(alert_rules())} rules found" in result.stdout, result.stdout


@needs_promtool
def test_promtool_test_rules() -> None:
    # 30-60 s: LowPredictionVolume's cases need a week of samples.
    result = run_promtool("test", "rules", str(ALERTS_TEST.relative_to(ROOT)))
    assert result.returncode == 0, result.stdout[-20_000:]
    assert "SUCCESS" in result.stdout, result.stdout


# -- scrape configs ------------------------------------------------------------------------------


def test_compose_config_scrapes_the_bentos_and_the_scheduler() -> None:
    config = load(COMPOSE_CONFIG)
    assert config["rule_files"] == ["alerts.yml"]
    jobs = {s["job_name"]: s for s in config["scrape_configs"]}
    targets = {
        target: static.get("labels", {})
        for static in jobs["finbento"]["static_configs"]
        for target in static["targets"]
    }
    assert targets == {f"{host}:3000": {"bundle": bundle} for host, bundle in BENTOS.items()}
    assert jobs["finbento"].get("metrics_path", "/metrics") == "/metrics"
    scheduler = jobs["finbento-scheduler"]
    assert [t for s in scheduler["static_configs"] for t in s["targets"]] == [
        "finbento-scheduler:9102"
    ]
    assert scheduler["static_configs"][0]["labels"] == {"bundle": "scheduler"}
    # ml_job_* carry the scheduler job id as `job` (alerts.yml relies on it).
    assert scheduler["honor_labels"] is True
    assert not jobs["finbento"].get("honor_labels", False)


def _sanitize(name: str) -> str:
    return re.sub(r"[^a-zA-Z0-9_]", "_", name)


def _pod(name: str, address: str, labels: dict, annotations: dict, phase: str = "Running") -> dict:
    meta = {
        "__address__": address,
        "__meta_kubernetes_namespace": "finbento",
        "__meta_kubernetes_pod_name": name,
        "__meta_kubernetes_pod_phase": phase,
    }
    for key, value in labels.items():
        meta[f"__meta_kubernetes_pod_label_{_sanitize(key)}"] = value
        meta[f"__meta_kubernetes_pod_labelpresent_{_sanitize(key)}"] = "true"
    for key, value in annotations.items():
        meta[f"__meta_kubernetes_pod_annotation_{_sanitize(key)}"] = value
    return meta


def _relabel(scrape: dict, discovered: dict) -> dict | None:
    """The target Prometheus makes of a discovered pod (a subset of relabelling: the actions
    and defaults the config uses), with ``__address__``/``__metrics_path__`` kept; None if
    dropped."""
    labels = {
        **discovered,
        "job": scrape["job_name"],
        "__metrics_path__": scrape.get("metrics_path", "/metrics"),
        "__scheme__": "http",
    }
    for rule in scrape.get("relabel_configs", []):
        action = rule.get("action", "replace")
        value = rule.get("separator", ";").join(
            labels.get(s, "") for s in rule.get("source_labels", [])
        )
        match = re.fullmatch(rule.get("regex", "(.*)"), value)
        if (action == "keep" and not match) or (action == "drop" and match):
            return None
        if action == "replace" and match:
            template = re.sub(r"\$\{?(\d+)\}?", r"\\g<\1>", rule.get("replacement", "$1"))
            new = match.expand(template)
            if new:
                labels[rule["target_label"]] = new
            else:
                labels.pop(rule["target_label"], None)
        assert action in {"keep", "drop", "replace"}, action
    labels.setdefault("instance", labels["__address__"])
    return {k: v for k, v in labels.items() if not k.startswith("__meta_")}


K8S_PODS = {
    "risk": _pod(
        "finbento-risk-7d9f",
        "10.1.0.5:8080",
        {"app.kubernetes.io/part-of": "finbento", "app.kubernetes.io/component": "bento",
         "finbento.io/bundle": "risk"},
        {"prometheus.io/scrape": "true", "prometheus.io/port": "3000"},
    ),
    "language": _pod(
        "finbento-language-5c2a",
        "10.1.0.6",
        {"app.kubernetes.io/part-of": "finbento", "app.kubernetes.io/instance": "language"},
        {"prometheus.io/scrape": "true", "prometheus.io/port": "3000",
         "prometheus.io/path": "/custom-metrics"},
    ),
    "scheduler": _pod(
        "finbento-scheduler-0",
        "10.1.0.7:9102",
        {"app.kubernetes.io/part-of": "finbento", "app.kubernetes.io/component": "scheduler"},
        {"prometheus.io/scrape": "true", "prometheus.io/port": "9102"},
    ),
    "not annotated": _pod(
        "finbento-advisor-1",
        "10.1.0.8:3000",
        {"app.kubernetes.io/part-of": "finbento", "finbento.io/bundle": "advisor"},
        {"prometheus.io/port": "3000"},
    ),
    "pending": _pod(
        "finbento-forecast-2",
        "10.1.0.9:3000",
        {"app.kubernetes.io/part-of": "finbento", "finbento.io/bundle": "forecast"},
        {"prometheus.io/scrape": "true", "prometheus.io/port": "3000"},
        phase="Pending",
    ),
    "other app": _pod(
        "redis-0",
        "10.1.0.10:6379",
        {"app.kubernetes.io/part-of": "redis"},
        {"prometheus.io/scrape": "true", "prometheus.io/port": "9121"},
    ),
}  # fmt: skip


def test_kubernetes_config_discovers_finbento_pods() -> None:
    config = load(K8S_CONFIG)
    assert config["rule_files"] == ["alerts.yml"]
    jobs = {s["job_name"]: s for s in config["scrape_configs"]}
    assert set(jobs) == {"finbento", "finbento-scheduler"}
    for scrape in jobs.values():
        (sd,) = scrape["kubernetes_sd_configs"]
        assert sd["role"] == "pod"
        assert any(
            "app.kubernetes.io/part-of=finbento" in s["label"].split(",")
            for s in sd["selectors"]
            if s["role"] == "pod"
        )
    assert jobs["finbento-scheduler"]["honor_labels"] is True


@pytest.mark.parametrize(
    ("pod", "job", "expected"),
    [
        ("risk", "finbento", {"job": "finbento", "instance": "finbento-risk-7d9f:3000",
                              "bundle": "risk", "__address__": "10.1.0.5:3000",
                              "__metrics_path__": "/metrics"}),
        ("language", "finbento", {"job": "finbento", "instance": "finbento-language-5c2a:3000",
                                  "bundle": "language", "__address__": "10.1.0.6:3000",
                                  "__metrics_path__": "/custom-metrics"}),
        ("scheduler", "finbento", None),
        ("scheduler", "finbento-scheduler", {"job": "finbento-scheduler",
                                             "instance": "finbento-scheduler-0:9102",
                                             "bundle": "scheduler",
                                             "__address__": "10.1.0.7:9102",
                                             "__metrics_path__": "/metrics"}),
        ("risk", "finbento-scheduler", None),
        ("not annotated", "finbento", None),
        ("pending", "finbento", None),
        ("other app", "finbento", None),
        ("other app", "finbento-scheduler", None),
    ],
)  # fmt: skip
def test_kubernetes_relabelling(pod: str, job: str, expected: dict | None) -> None:
    jobs = {s["job_name"]: s for s in load(K8S_CONFIG)["scrape_configs"]}
    target = _relabel(jobs[job], K8S_PODS[pod])
    if expected is None:
        assert target is None
        return
    assert target is not None
    assert target["namespace"] == "finbento"
    assert target["pod"] == K8S_PODS[pod]["__meta_kubernetes_pod_name"]
    assert {k: target[k] for k in expected} == expected


# -- alert rules ---------------------------------------------------------------------------------


def test_alerts_are_well_formed() -> None:
    rules = alert_rules()
    names = [r["alert"] for r in rules]
    assert len(names) == len(set(names)), "duplicate alert names"
    assert set(names) >= REQUIRED_ALERTS, REQUIRED_ALERTS - set(names)
    for rule in rules:
        name = rule["alert"]
        assert "for" in rule, name
        assert rule["labels"]["severity"] in SEVERITIES, name
        annotations = rule["annotations"]
        assert {"summary", "description", "runbook"} <= set(annotations), name
        assert annotations["runbook"] == f"monitoring/prometheus/README.md#{name.lower()}", name
        assert "Threshold" in annotations["description"], f"{name}: threshold not documented"


def test_every_alert_has_a_firing_and_a_quiet_test_case() -> None:
    cases: dict[str, set[bool]] = {}
    for group in load(ALERTS_TEST)["tests"]:
        for case in group.get("alert_rule_test", []):
            cases.setdefault(case["alertname"], set()).add(bool(case.get("exp_alerts")))
    for name in (r["alert"] for r in alert_rules()):
        assert True in cases.get(name, set()), f"{name}: no test case where it fires"
        assert False in cases.get(name, set()), f"{name}: no test case where it stays quiet"
    assert set(cases) <= {r["alert"] for r in alert_rules()}, "test of an unknown alert"


def test_every_alert_has_a_runbook_section_and_a_table_row() -> None:
    readme = README.read_text()
    anchors = github_anchors(readme)
    table_rows = [line for line in readme.splitlines() if line.startswith("| [")]
    for rule in alert_rules():
        name = rule["alert"]
        anchor = rule["annotations"]["runbook"].split("#", 1)[1]
        assert anchor in anchors, f"{name}: no section #{anchor} in {README.relative_to(ROOT)}"
        assert any(row.startswith(f"| [{name}](#{anchor})") for row in table_rows), name


def test_ml_metrics_in_rules_are_defined() -> None:
    exposed = exposed_metrics()
    assert "ml_predictions_total" in exposed and "ml_job_runs_total" in exposed, exposed
    used = {m for rule in alert_rules() for m in ml_metrics_in(rule["expr"])}
    assert used, "no ml_* metric found in the rules"
    missing = sorted(used - exposed)
    assert not missing, (
        f"metrics used in {ALERTS.relative_to(ROOT)} but not defined in monitoring/metrics.py "
        f"or scheduler/metrics.py: {missing}"
    )


def test_metric_parser() -> None:
    defined = defined_metrics()
    assert defined["ml_predictions"] == "Counter"
    assert defined["ml_prediction_latency_seconds"] == "Histogram"
    assert defined["ml_job_last_success_timestamp_seconds"] == "Gauge"
    assert ml_metrics_in('sum(rate(ml_a_total{x="ml_b"}[5m])) / ml_c') == {"ml_a_total", "ml_c"}
