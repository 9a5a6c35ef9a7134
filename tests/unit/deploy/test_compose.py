"""Docker has no engine here, so the compose file is checked against the code it runs."""

from __future__ import annotations

import importlib
import re
from pathlib import Path

import pytest
import yaml
from faststream import FastStream

from shared.runtime import REGISTRY
from shared.settings import ServiceSettings

ROOT = Path(__file__).resolve().parents[3]
COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
SERVICES = {name: spec for name, spec in COMPOSE["services"].items() if name != "redis"}


def settings_aliases(cls: type[ServiceSettings]) -> set[str]:
    names = set()
    prefix = cls.model_config.get("env_prefix", "")
    for name, info in cls.model_fields.items():
        alias = info.validation_alias
        if alias is not None and hasattr(alias, "choices"):
            names |= {str(c).upper() for c in alias.choices}
        else:
            names.add(f"{prefix}{name}".upper())
    return names


def app_module(spec: dict) -> tuple[str, str]:
    command = " ".join(spec["command"])
    match = re.search(r"(services\.\w+\.app):(\w+)", command)
    assert match, f"command does not run a service app: {command}"
    return match.group(1), match.group(2)


def test_every_pipeline_service_has_a_container() -> None:
    modules = {app_module(spec)[0] for spec in SERVICES.values()}
    for name in ("fetcher", "parser", "embedder", "classifier", "notifier", "api"):
        assert f"services.{name}.app" in modules


@pytest.mark.parametrize("name", sorted(SERVICES))
def test_command_points_at_a_real_app(name: str) -> None:
    module_name, attribute = app_module(SERVICES[name])
    module = importlib.import_module(module_name)
    app = getattr(module, attribute)
    service = module_name.split(".")[1]
    if service == "api":
        assert hasattr(app, "openapi"), "the api container must run the FastAPI app"
    else:
        assert isinstance(app, FastStream)
        assert service in REGISTRY


@pytest.mark.parametrize("name", sorted(SERVICES))
def test_environment_names_match_the_settings_classes(name: str) -> None:
    module_name, _ = app_module(SERVICES[name])
    module = importlib.import_module(module_name)
    service = module_name.split(".")[1]
    settings_cls = type(REGISTRY[service].settings) if service in REGISTRY else module.ApiSettings
    known = settings_aliases(settings_cls)
    for key in SERVICES[name].get("environment", {}):
        assert key in known, f"{name}: {key} is not a setting of {settings_cls.__name__}"


@pytest.mark.parametrize("name", sorted(SERVICES))
def test_build_context_and_dockerfile_exist(name: str) -> None:
    build = SERVICES[name]["build"]
    context = ROOT / build["context"]
    dockerfile = context / build["dockerfile"]
    assert dockerfile.is_file()
    for line in dockerfile.read_text().splitlines():
        if line.startswith("COPY "):
            for source in line.split()[1:-1]:
                assert (context / source).exists(), f"{dockerfile.name} copies missing {source}"


def test_redis_persists_and_is_health_checked() -> None:
    redis = COMPOSE["services"]["redis"]
    assert "redis-cli" in " ".join(redis["healthcheck"]["test"])
    conf = (ROOT / "deploy" / "redis.conf").read_text()
    assert re.search(r"^appendonly yes$", conf, re.M)
    for spec in SERVICES.values():
        assert spec["depends_on"]["redis"]["condition"] == "service_healthy"
