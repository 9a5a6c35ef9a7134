"""Docker has no engine here, so the compose file is checked against the code it runs."""

from __future__ import annotations

import importlib
import os
import re
import shlex
import shutil
import subprocess
from pathlib import Path, PurePath, PurePosixPath

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


def dockerfile_instructions(path: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    text = re.sub(r"\\\n", " ", path.read_text())
    lines = [line.strip() for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    return [(line.split(None, 1)[0].upper(), line.split(None, 1)[1]) for line in lines]


def image_writable_dirs(dockerfile: Path) -> tuple[str, set[str], set[PurePosixPath]]:
    """The USER the image runs as, the directories it makes before that, and those it hands to that user."""
    user, made, owned = "root", set(), set()
    for instruction, args in dockerfile_instructions(dockerfile):
        if instruction == "USER":
            user = args.split(":")[0]
        elif instruction == "RUN" and user == "root":
            for command in re.split(r"&&|;", args):
                words = shlex.split(command)
                if words[:2] == ["mkdir", "-p"]:
                    made |= set(words[2:])
                elif words[:1] == ["chown"]:
                    paths = [w for w in words[1:] if w.startswith("/")]
                    owner = next(w for w in words[1:] if not w.startswith("-") and not w.startswith("/"))
                    owned |= {(owner.split(":")[0], PurePosixPath(p)) for p in paths}
    return user, made, {path for owner, path in owned if owner == user}


def workdir(dockerfile: Path) -> PurePosixPath:
    return PurePosixPath(
        [args for instruction, args in dockerfile_instructions(dockerfile) if instruction == "WORKDIR"][-1]
    )


def written_paths(spec: dict) -> set[PurePosixPath]:
    """Where the container writes: its volumes, and the file/dir settings (env of the compose file, else defaults)."""
    module_name, _ = app_module(spec)
    service = module_name.split(".")[1]
    settings_cls = (
        type(REGISTRY[service].settings) if service in REGISTRY else importlib.import_module(module_name).ApiSettings
    )
    environment = spec.get("environment", {})
    paths = {PurePosixPath(volume.split(":")[1]) for volume in spec.get("volumes", [])}
    prefix = settings_cls.model_config.get("env_prefix", "")
    for field, info in settings_cls.model_fields.items():
        if "model" in field or not isinstance(info.default, PurePath):
            continue  # the model is exported into the image at build time and only read
        alias = info.validation_alias
        keys = [str(c).upper() for c in alias.choices] if alias is not None else [f"{prefix}{field}".upper()]
        value = next((environment[k] for k in keys if k in environment), str(info.default))
        paths.add(workdir(ROOT / spec["build"]["dockerfile"]) / value)
    return paths


@pytest.mark.parametrize(
    "name",
    sorted(n for n, spec in SERVICES.items() if image_writable_dirs(ROOT / spec["build"]["dockerfile"])[0] != "root"),
)
def test_a_non_root_container_writes_only_where_its_user_may(name: str) -> None:
    spec = SERVICES[name]
    dockerfile = ROOT / spec["build"]["dockerfile"]
    user, made, owned = image_writable_dirs(dockerfile)
    assert user != "root"
    for path in written_paths(spec):
        assert any(path.is_relative_to(d) for d in owned), f"{name} writes {path}, not owned by {user} in the image"
    for volume in spec.get("volumes", []):
        source, target = volume.split(":")[:2]
        if source in COMPOSE.get("volumes", {}):
            # a named volume starts as a copy of the image's directory, owner included: it must be there
            assert target in made, f"{name}: {target} is not made in {dockerfile.name}"


PASSED_THROUGH = {
    "fetcher": {"FETCHER_USER_AGENT", "PAPERWIRE_PUBLIC_URL"},
    "notifier": {
        "NOTIFIER_SMTP_HOST",
        "NOTIFIER_SMTP_PORT",
        "NOTIFIER_SMTP_USERNAME",
        "NOTIFIER_SMTP_PASSWORD",
        "NOTIFIER_SMTP_TLS",
        "NOTIFIER_SMTP_STARTTLS",
        "NOTIFIER_MAIL_FROM",
        "PAPERWIRE_PUBLIC_URL",
    },
    "api": {"PAPERWIRE_PUBLIC_URL"},
}


@pytest.mark.parametrize("name", sorted(PASSED_THROUGH))
def test_what_an_operator_sets_in_the_shell_reaches_the_container(name: str) -> None:
    """The contact arXiv asks for, the SMTP relay and the links' base URL, read from the shell variable of the same
    name (bare, or ``${NAME:-default}``); that each is a setting of the service is the test above."""
    environment = SERVICES[name]["environment"]
    for key in PASSED_THROUGH[name]:
        assert key in environment, f"{name} does not pass {key} through"
        value = environment[key]
        assert value is None or value.startswith(f"${{{key}:"), f"{name}: {key} is {value!r}, not the shell's"


def test_the_notifier_outbox_is_its_volume() -> None:
    notifier = SERVICES["notifier"]
    assert f"outbox:{notifier['environment']['NOTIFIER_OUTBOX_DIR']}" in notifier["volumes"]


def compose_files(*make_args: str) -> list[str]:
    """The compose files ``make up`` hands to docker compose (read from ``make -n``, which runs nothing)."""
    if shutil.which("make") is None:
        pytest.skip("no make")
    environment = {k: v for k, v in os.environ.items() if k != "PROFILE"}
    dry_run = subprocess.run(
        ["make", "-n", "-s", "up", *make_args], cwd=ROOT, env=environment, capture_output=True, text=True, check=True
    )
    (command,) = [line for line in dry_run.stdout.splitlines() if "docker compose" in line and " up" in line]
    return re.findall(r"-f (\S+)", command)


def test_make_up_runs_one_embedder_on_cpu_or_on_the_gpu() -> None:
    assert compose_files() == ["docker-compose.yml"]
    assert compose_files("PROFILE=gpu") == ["docker-compose.yml", "docker-compose.gpu.yml"]
    assert not any(spec.get("profiles") for spec in COMPOSE["services"].values()), "plain `up` runs every service"
    gpu = yaml.safe_load((ROOT / "docker-compose.gpu.yml").read_text())["services"]
    assert set(gpu) == {"embedder"}, "the override replaces the embedder, it adds no second one"
    assert (ROOT / gpu["embedder"]["build"]["dockerfile"]).exists()
    assert gpu["embedder"]["environment"]["EMBEDDER_PRECISION"] == "fp16"
    (device,) = gpu["embedder"]["deploy"]["resources"]["reservations"]["devices"]
    assert device["capabilities"] == ["gpu"]
