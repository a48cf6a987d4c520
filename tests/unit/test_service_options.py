"""Every service's BentoML options come from one place and follow the settings."""

import re

import pytest

from finbento.settings import PROJECT_ROOT, get_settings
from services.runtime import service_options


@pytest.fixture
def fresh_settings(monkeypatch):
    get_settings.cache_clear()
    yield monkeypatch
    get_settings.cache_clear()


def test_defaults_skip_tracing_and_access_log_and_give_public_services_their_workers(
    fresh_settings,
):
    for name in ("FINBENTO_TRACING", "FINBENTO_ACCESS_LOG", "FINBENTO_API_WORKERS"):
        fresh_settings.delenv(name, raising=False)
    public = service_options("finbento-risk", public=True)
    model = service_options("intent", timeout_s=30)
    assert public["workers"] == get_settings().api_workers == 2
    assert model["workers"] == 1 and model["traffic"] == {"timeout": 30}
    assert public["logging"] == {"access": {"enabled": False}}
    assert re.search(public["tracing"]["excluded_urls"][0], "http://h:3000/predict/credit-risk")


def test_tracing_and_access_log_can_be_turned_on(fresh_settings):
    fresh_settings.setenv("FINBENTO_TRACING", "true")
    fresh_settings.setenv("FINBENTO_ACCESS_LOG", "true")
    fresh_settings.setenv("FINBENTO_API_WORKERS", "4")
    options = service_options("finbento", public=True)
    assert "tracing" not in options  # BentoML's own tracing configuration applies
    assert options["logging"]["access"]["enabled"] is True
    assert options["workers"] == 4


def test_every_service_takes_its_options_from_service_options():
    for path in sorted((PROJECT_ROOT / "services").glob("*.py")):
        for line in path.read_text().splitlines():
            if line.lstrip().startswith("@bentoml.service("):
                assert "service_options(" in line, f"{path.name}: {line.strip()}"


def test_every_service_verifies_the_model_files_it_loads():
    loaders = 0
    for path in sorted((PROJECT_ROOT / "services").glob("*.py")):
        text = path.read_text()
        refs = re.findall(r"(\w+) = bentoml\.models\.BentoModel\(", text)
        for ref in refs:  # each model reference is opened through verified_path, never .path
            assert f"verified_path(self.{ref})" in text, f"{path.name}: {ref} loaded unverified"
            assert f"self.{ref}.path" not in text, f"{path.name}: {ref}.path read directly"
        loaders += len(refs)
    assert loaders >= 10  # the services exist and the pattern still finds them
