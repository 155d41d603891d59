"""Static checks of the production stack in compose/ (no Docker engine needed).

Conventions checked here (and documented in compose/docker-compose.yml):

* A service with ``restart: "no"`` is a one-shot job: it may omit the healthcheck, and a
  service depending on it must wait for ``service_completed_successfully``. Every other
  service is long-running: it needs a healthcheck, and dependents wait for ``service_healthy``.
* Every ``SCRIBE_*`` name in the compose file, in ``.env.example`` and in the Dockerfile is a
  field of :class:`streams.settings.Settings` (upper-cased, with the ``SCRIBE_`` prefix).
* Ports are published on 127.0.0.1 only, and only by the services in ``PUBLISHING``.
* Prefect runs as separate services (Prefect's Docker Compose guide): ``prefect-server`` with
  ``--no-services`` (API + UI), ``prefect-services`` (``prefect server services start``), both
  on one database and one Redis; ``prefect-worker`` (the flow runner) can be scaled.
"""

from __future__ import annotations

import fnmatch
import json
import os
import re
import shlex
import socket
import subprocess
import sys
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
import typer.main
import yaml

from streams.cli import app
from streams.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_DIR = ROOT / "compose"
COMPOSE_FILE = COMPOSE_DIR / "docker-compose.yml"
DOCKERFILE = COMPOSE_DIR / "Dockerfile"
ENV_EXAMPLE = COMPOSE_DIR / ".env.example"
DOCKERIGNORE = ROOT / ".dockerignore"

#: Services that keep state and must keep it in a named volume, with their data path.
STATEFUL = {
    "kafka": "/var/lib/kafka/data",
    "postgres": "/var/lib/postgresql/data",
    "prefect-server": "/var/lib/prefect",
    "redis": "/data",
    "etcd": "/etcd",
    "minio": "/minio_data",
    "milvus": "/var/lib/milvus",
}
#: The only services that publish ports (all on 127.0.0.1).
PUBLISHING = {"kafka", "prefect-server", "milvus"}
#: Settings that make Redis the event bus of the Prefect server (Prefect's compose guide and
#: "How to scale self-hosted Prefect"); prefect-server and prefect-services need the same.
PREFECT_REDIS_ENV = {
    "PREFECT_MESSAGING_BROKER": "prefect_redis.messaging",
    "PREFECT_MESSAGING_CACHE": "prefect_redis.messaging",
    "PREFECT_SERVER_EVENTS_CAUSAL_ORDERING": "prefect_redis.ordering",
    "PREFECT_SERVER_CONCURRENCY_LEASE_STORAGE": "prefect_redis.lease_storage",
    "PREFECT_REDIS_MESSAGING_HOST": "redis",
    "PREFECT_REDIS_MESSAGING_PORT": "6379",
    "PREFECT_REDIS_MESSAGING_DB": "0",
}
#: Values of FLOW_RUNNER_MODE: the prefect-worker runs ``scribe flows serve --<mode>``.
RUNNER_MODES = ("process", "warm")
#: Placeholder for required (``${VAR:?...}``) variables left empty in .env.example.
SECRET_PLACEHOLDER = "placeholder-secret"

# ---------------------------------------------------------------------------- helpers

_VAR = re.compile(r"\$(?:(?P<escaped>\$)|\{(?P<braced>[^}]*)\}|(?P<plain>[A-Za-z_][A-Za-z0-9_]*))")
_EXPR = re.compile(r"(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?[-?+])(?P<arg>.*))?", re.S)


class MissingVariableError(LookupError):
    """A ``${VAR:?message}`` variable is unset or empty."""


def interpolate(text: str, env: Mapping[str, str]) -> str:
    """Compose-style interpolation: ``$$``, ``$VAR``, ``${VAR}``, ``:-``, ``-``, ``:?``, ``?``,
    ``:+`` and ``+``."""

    def sub(m: re.Match[str]) -> str:
        if m.group("escaped"):
            return "$"
        expr = m.group("braced") if m.group("braced") is not None else m.group("plain")
        parsed = _EXPR.fullmatch(expr)
        if parsed is None:
            raise ValueError(f"bad interpolation ${{{expr}}}")
        name, op, arg = parsed.group("name", "op", "arg")
        value = env.get(name)
        if op is None:
            return value or ""
        unset = not value if op.startswith(":") else value is None
        if op.endswith("-"):
            return arg if unset else str(value)
        if op.endswith("?"):
            if unset:
                raise MissingVariableError(f"{name}: {arg}")
            return str(value)
        return "" if unset else arg  # ":+" / "+"

    return _VAR.sub(sub, text)


def referenced_variables(text: str) -> dict[str, str | None]:
    """Variables the compose file interpolates: name -> operator (None for a bare ``${VAR}``)."""
    found: dict[str, str | None] = {}
    for m in _VAR.finditer(text):
        if m.group("escaped"):
            continue
        expr = m.group("braced") if m.group("braced") is not None else m.group("plain")
        parsed = _EXPR.fullmatch(expr)
        assert parsed is not None, f"bad interpolation ${{{expr}}}"
        name, op = parsed.group("name", "op")
        if found.get(name) not in (":?", "?"):
            found[name] = op
    return found


def resolve(node: Any, env: Mapping[str, str]) -> Any:
    """Interpolate every string of a loaded YAML document."""
    if isinstance(node, str):
        return interpolate(node, env)
    if isinstance(node, list):
        return [resolve(item, env) for item in node]
    if isinstance(node, dict):
        return {key: resolve(value, env) for key, value in node.items()}
    return node


def parse_env_file(path: Path) -> dict[str, str]:
    """KEY=VALUE lines of a dotenv file (comments and blank lines skipped)."""
    values: dict[str, str] = {}
    for number, raw in enumerate(path.read_text().splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        key, sep, value = line.partition("=")
        assert sep and re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", key), f"{path}:{number}: {raw!r}"
        assert key not in values, f"{path}:{number}: {key} set twice"
        values[key] = value.strip().strip("'\"")
    return values


def environment(service: Mapping[str, Any]) -> dict[str, str | None]:
    """A service's environment, from the mapping or the list form."""
    env = service.get("environment") or {}
    if isinstance(env, list):
        pairs = [item.partition("=") for item in env]
        return {key: (value if sep else None) for key, sep, value in pairs}
    return {key: None if value is None else str(value) for key, value in env.items()}


def is_one_shot(service: Mapping[str, Any]) -> bool:
    """One-shot jobs are marked ``restart: "no"`` (YAML 1.1 may read an unquoted no as False)."""
    return service.get("restart") in ("no", False)


def published_ports(service: Mapping[str, Any]) -> list[tuple[str | None, str, str]]:
    """(host_ip, published port, container port) of every published port."""
    result: list[tuple[str | None, str, str]] = []
    for port in service.get("ports") or []:
        if isinstance(port, dict):
            result.append(
                (port.get("host_ip"), str(port.get("published", "")), str(port["target"]))
            )
            continue
        spec = str(port).split("/", 1)[0]
        parts = spec.rsplit(":", 2)
        if len(parts) == 3:
            result.append((parts[0], parts[1], parts[2]))
        elif len(parts) == 2:
            result.append((None, parts[0], parts[1]))
        else:
            result.append((None, "", parts[0]))
    return result


def invocations(command: Any, program: str) -> list[list[str]]:
    """The ``program ...`` argument lists a service command runs (also through ``sh -c``,
    where ``exec program ...`` counts too)."""
    argv = shlex.split(command) if isinstance(command, str) else [str(a) for a in command]
    if len(argv) >= 3 and Path(argv[0]).name in ("sh", "bash") and argv[1] == "-c":
        found = []
        for part in re.split(r"&&|\|\||;|\n", argv[2]):
            words = shlex.split(part)
            if words[:1] == ["exec"]:
                words = words[1:]
            if words and words[0] == program:
                found.append(words)
        return found
    return [argv] if argv and argv[0] == program else []


def scribe_invocations(command: Any) -> list[list[str]]:
    """The ``scribe ...`` argument lists a service command runs (also through ``sh -c``)."""
    return invocations(command, "scribe")


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def python_healthcheck(service: Mapping[str, Any]) -> str:
    """The code of a ``["CMD", "python", "-c", CODE]`` healthcheck."""
    test = (service.get("healthcheck") or {}).get("test") or []
    assert list(test[:3]) == ["CMD", "python", "-c"] and len(test) == 4, test
    return str(test[3])


def run_python(code: str, env: Mapping[str, str | None]) -> int:
    """Exit status of ``python -c code`` with exactly ``env`` (plus PYTHONPATH=ROOT)."""
    clean = {k: v for k, v in env.items() if v is not None}
    clean["PYTHONPATH"] = str(ROOT)
    return subprocess.run(
        [sys.executable, "-c", code], env=clean, capture_output=True, timeout=60
    ).returncode


class NotAScribeCommandError(LookupError):
    """An argument list that the ``scribe`` typer app would reject."""


def resolve_scribe_command(argv: list[str]) -> tuple[str, ...]:
    """The subcommand path of ``scribe ...`` in the typer app; raises if it is not real.

    Typer ships its own copy of click, so groups are recognised by their ``commands`` mapping.
    """
    if not argv or argv[0] != "scribe":
        raise NotAScribeCommandError(f"not a scribe command: {argv!r}")
    command: Any = typer.main.get_command(app)
    args, path = list(argv[1:]), ["scribe"]
    while isinstance(getattr(command, "commands", None), dict):
        if not args:
            raise NotAScribeCommandError(f"{' '.join(path)} needs a subcommand")
        name = args.pop(0)
        sub = command.commands.get(name)
        if sub is None:
            raise NotAScribeCommandError(f"no command {name!r} in {' '.join(path)}")
        command, path = sub, [*path, name]
    try:
        command.make_context(" ".join(path), args)  # rejects unknown options and arguments
    except Exception as exc:
        raise NotAScribeCommandError(f"{' '.join(argv)}: {exc}") from exc
    return tuple(path[1:])


def settings_env_names() -> set[str]:
    """``SCRIBE_*`` names that Settings reads."""
    return {f"SCRIBE_{name.upper()}" for name in Settings.model_fields}


def secret_env_names() -> set[str]:
    """``SCRIBE_*`` names of the SecretStr fields."""
    return {
        f"SCRIBE_{name.upper()}"
        for name, field in Settings.model_fields.items()
        if "SecretStr" in str(field.annotation)
    }


def dockerfile_instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    instructions: list[tuple[str, str]] = []
    pending = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if pending and line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        full = (pending + line).strip()
        pending = ""
        if full:
            keyword, _, args = full.partition(" ")
            instructions.append((keyword.upper(), args.strip()))
    return instructions


def dockerignore_includes(patterns: list[str], path: str) -> bool:
    """Whether ``path`` (relative, '/'-separated) is in the build context (last match wins)."""
    parts = path.split("/")
    prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    included = True
    for pattern in patterns:
        negate = pattern.startswith("!")
        pat = pattern[1:] if negate else pattern
        pat = pat.strip().strip("/")
        if pat.startswith("**/"):
            candidates = [
                "/".join(parts[i : j + 1]) for i in range(len(parts)) for j in range(i, len(parts))
            ]
            pat = pat[3:]
        else:
            candidates = prefixes
        if any(fnmatch.fnmatchcase(c, pat) for c in candidates):
            included = negate
    return included


def scribe_services(compose: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """Services built from compose/Dockerfile, or running the image such a service builds."""
    services = compose["services"]
    built = {
        name: svc
        for name, svc in services.items()
        if isinstance(svc.get("build"), dict)
        and (
            COMPOSE_DIR
            / svc["build"].get("context", ".")
            / svc["build"].get("dockerfile", "Dockerfile")
        ).resolve()
        == DOCKERFILE.resolve()
    }
    images = {svc.get("image") for svc in built.values()} - {None}
    return {
        name: svc for name, svc in services.items() if name in built or svc.get("image") in images
    }


# ---------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def raw_compose() -> str:
    return COMPOSE_FILE.read_text()


@pytest.fixture(scope="module")
def env_example() -> dict[str, str]:
    return parse_env_file(ENV_EXAMPLE)


@pytest.fixture(scope="module")
def compose(raw_compose: str, env_example: dict[str, str]) -> dict[str, Any]:
    """The compose file as `docker compose config` would see it with .env.example filled in."""
    env = dict(env_example)
    for name, op in referenced_variables(raw_compose).items():
        if op in (":?", "?") and not env.get(name):
            env[name] = SECRET_PLACEHOLDER
    loaded = yaml.safe_load(raw_compose)
    assert isinstance(loaded, dict)
    return resolve(loaded, env)


@pytest.fixture(scope="module")
def services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return compose["services"]


# ---------------------------------------------------------------------------- the compose file


def test_compose_parses_with_the_expected_services(services: dict[str, dict[str, Any]]) -> None:
    expected = {
        "kafka",
        "postgres",
        "redis",
        "prefect-server",
        "prefect-services",
        "prefect-worker",
        "scribe-init",
        "etcd",
        "minio",
        "milvus",
        "scribe-worker",
    }
    assert expected <= set(services), f"missing: {expected - set(services)}"
    for name, service in services.items():
        assert isinstance(service, dict), name


def test_every_service_has_image_or_build(services: dict[str, dict[str, Any]]) -> None:
    for name, service in services.items():
        assert service.get("image") or service.get("build"), f"{name}: no image and no build"


def test_images_are_pinned(services: dict[str, dict[str, Any]]) -> None:
    for name, service in services.items():
        image = service.get("image")
        if image and not service.get("build"):
            tag = image.rsplit("/", 1)[-1].partition(":")[2]
            assert tag and tag != "latest", f"{name}: pin a tag for {image}"
    assert services["kafka"]["image"].startswith("apache/kafka:")
    assert services["postgres"]["image"].startswith("postgres:16")
    assert services["prefect-server"]["image"] == "prefecthq/prefect:3.9.1-python3.11"
    assert services["prefect-services"]["image"] == services["prefect-server"]["image"]
    assert services["redis"]["image"].startswith("redis:7")
    assert services["milvus"]["image"].startswith("milvusdb/milvus:v2.5.")


def test_long_running_services_have_healthchecks(services: dict[str, dict[str, Any]]) -> None:
    for name, service in services.items():
        if is_one_shot(service):
            continue
        check = service.get("healthcheck") or {}
        assert not check.get("disable"), f"{name}: healthcheck disabled"
        test = check.get("test")
        assert test and test != ["NONE"], f"{name}: long-running service without a healthcheck"
        assert service.get("restart") in ("always", "unless-stopped", "on-failure"), (
            f"{name}: a long-running service needs a restart policy (or restart: 'no' if one-shot)"
        )


def test_depends_on_targets_exist_and_wait_for_the_right_condition(
    services: dict[str, dict[str, Any]],
) -> None:
    seen = 0
    for name, service in services.items():
        depends = service.get("depends_on") or {}
        assert isinstance(depends, dict), f"{name}: use the long depends_on form with conditions"
        for target, spec in depends.items():
            seen += 1
            assert target in services, f"{name} depends on unknown service {target}"
            assert target != name
            expected = (
                "service_completed_successfully"
                if is_one_shot(services[target])
                else "service_healthy"
            )
            assert (spec or {}).get("condition") == expected, f"{name} -> {target}: {expected}"
    assert seen, "no depends_on at all"


def test_depends_on_has_no_cycles(services: dict[str, dict[str, Any]]) -> None:
    state: dict[str, str] = {}

    def visit(name: str, trail: tuple[str, ...]) -> None:
        if state.get(name) == "done":
            return
        assert state.get(name) != "active", f"dependency cycle: {' -> '.join((*trail, name))}"
        state[name] = "active"
        for target in services[name].get("depends_on") or {}:
            visit(target, (*trail, name))
        state[name] = "done"

    for name in services:
        visit(name, ())


def test_scribe_env_vars_are_settings_fields(
    raw_compose: str, env_example: dict[str, str], services: dict[str, dict[str, Any]]
) -> None:
    used = {key for service in services.values() for key in environment(service)}
    used |= set(referenced_variables(raw_compose))
    used |= set(env_example)
    for keyword, args in dockerfile_instructions(DOCKERFILE.read_text()):
        if keyword in ("ENV", "ARG"):
            used |= set(re.findall(r"(?:^|\s)([A-Za-z_][A-Za-z0-9_]*)=", args))
    scribe = {name for name in used if name.startswith("SCRIBE_")}
    assert {
        "SCRIBE_KAFKA_BOOTSTRAP_SERVERS",
        "SCRIBE_PREFECT_API_URL",
        "SCRIBE_MILVUS_URI",
        "SCRIBE_DATA_DIR",
        "SCRIBE_MILVUS_TOKEN",
        "SCRIBE_PREFECT_API_KEY",
        "SCRIBE_FAILURE_WEBHOOK_URL",
        "SCRIBE_HEARTBEAT_SECONDS",
        "SCRIBE_TOPIC_FAILURES",
        "SCRIBE_LOG_JSON",
    } <= scribe
    unknown = scribe - settings_env_names()
    assert not unknown, f"not fields of streams.settings.Settings: {sorted(unknown)}"


def test_scribe_services_environment_builds_valid_settings(
    services: dict[str, dict[str, Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    scribe = scribe_services({"services": services})
    assert {"prefect-worker", "scribe-worker"} <= set(scribe)
    for name, service in scribe.items():
        with monkeypatch.context() as patch:
            for key in [k for k in os.environ if k.startswith("SCRIBE_")]:
                patch.delenv(key)
            for key, value in environment(service).items():
                if key.startswith("SCRIBE_") and value is not None:
                    patch.setenv(key, value)
            settings = Settings()
        assert not settings.embedded_kafka, name
        assert settings.data_dir == Path("/data"), name
        hosts = [s.rsplit(":", 1)[0] for s in settings.bootstrap_servers.split(",")]
        hosts.append(re.sub(r"^\w+://([^:/]+).*$", r"\1", settings.prefect_url))
        hosts.append(re.sub(r"^\w+://([^:/]+).*$", r"\1", settings.milvus_url))
        for host in hosts:
            assert host in services, f"{name}: {host} is not a service of the stack"
        assert settings.prefect_url == "http://prefect-server:4200/api"
        assert settings.milvus_url == "http://milvus:19530"
        assert settings.bootstrap_servers == "kafka:9092"
        # Prefect reads its settings at import, before scribe applies Settings.prefect_env():
        # the client variables must already be in the container's environment.
        env = environment(service)
        assert env.get("PREFECT_API_URL") == settings.prefect_url, name
        for variable in ("PREFECT_API_KEY", "PREFECT_API_AUTH_STRING"):
            assert variable in env, f"{name}: {variable} missing"
        assert env.get("PREFECT_FLOWS_HEARTBEAT_FREQUENCY") == str(settings.heartbeat_seconds)
        # The settings added for failures and observability reach every scribe container.
        for variable in (
            "SCRIBE_FAILURE_WEBHOOK_URL",
            "SCRIBE_HEARTBEAT_SECONDS",
            "SCRIBE_TOPIC_FAILURES",
            "SCRIBE_LOG_JSON",
        ):
            assert variable in env, f"{name}: {variable} missing"
        assert settings.failure_webhook_url is None, f"{name}: .env.example sets no webhook"
        assert settings.topic_failures == Settings.model_fields["topic_failures"].default
        assert settings.log_json is False


def test_secrets_come_from_env_file(raw_compose: str, env_example: dict[str, str]) -> None:
    loaded = yaml.safe_load(raw_compose)
    secrets = secret_env_names()
    for name, service in loaded["services"].items():
        for key, value in environment(service).items():
            sensitive = "PASSWORD" in key or key.endswith(
                ("_TOKEN", "_SECRET_ACCESS_KEY", "_API_KEY", "_AUTH_STRING")
            )
            if key in secrets or sensitive:
                assert value and value.startswith("${"), f"{name}: {key} must come from .env"
    for key in secrets & set(env_example):
        assert env_example[key] == "", f".env.example must leave {key} empty"
    required = {n for n, op in referenced_variables(raw_compose).items() if op in (":?", "?")}
    assert required, "expected required secrets such as POSTGRES_PASSWORD"
    for key in required:
        assert env_example.get(key) == "", f".env.example must list {key}, empty"


def test_env_example_documents_every_variable(
    raw_compose: str, env_example: dict[str, str]
) -> None:
    missing = set(referenced_variables(raw_compose)) - set(env_example)
    assert not missing, f"undocumented in compose/.env.example: {sorted(missing)}"


def test_prefect_server_auth_is_not_forced_on_by_an_empty_value(
    services: dict[str, dict[str, Any]],
) -> None:
    # Prefect enables API auth for any non-None PREFECT_SERVER_API_AUTH_STRING, even "".
    for name, service in services.items():
        assert "PREFECT_SERVER_API_AUTH_STRING" not in environment(service), name


def test_published_ports_bind_loopback_only(services: dict[str, dict[str, Any]]) -> None:
    for name, service in services.items():
        assert service.get("network_mode") != "host", f"{name}: host networking"
        for host_ip, published, target in published_ports(service):
            assert host_ip == "127.0.0.1", f"{name}: {published}->{target} not on 127.0.0.1"
        if name not in PUBLISHING:
            assert not service.get("ports"), f"{name} must not publish ports"
        assert not service.get("expose") or name in PUBLISHING, name


def test_failure_webhook_is_passed_through_from_env_file(
    raw_compose: str, env_example: dict[str, str]
) -> None:
    env = {**env_example, "SCRIBE_FAILURE_WEBHOOK_URL": "https://hooks.example/scribe"}
    for name, op in referenced_variables(raw_compose).items():
        if op in (":?", "?") and not env.get(name):
            env[name] = SECRET_PLACEHOLDER
    services = resolve(yaml.safe_load(raw_compose), env)["services"]
    scribe = scribe_services({"services": services})
    assert "scribe-init" in scribe
    for name, service in scribe.items():
        assert environment(service).get("SCRIBE_FAILURE_WEBHOOK_URL") == (
            "https://hooks.example/scribe"
        ), name


def test_prefect_ui_port_is_published(services: dict[str, dict[str, Any]]) -> None:
    server = services["prefect-server"]
    assert ("127.0.0.1", "4200", "4200") in published_ports(server)
    env = environment(server)
    assert env.get("PREFECT_UI_API_URL") == "http://127.0.0.1:4200/api"
    assert (env.get("PREFECT_SERVER_DATABASE_CONNECTION_URL") or "").startswith(
        "postgresql+asyncpg://prefect:"
    )
    assert env["PREFECT_SERVER_DATABASE_CONNECTION_URL"].endswith("@postgres:5432/prefect")
    assert str(env.get("PREFECT_SERVER_ANALYTICS_ENABLED")).lower() == "false"
    command = (
        " ".join(server["command"]) if isinstance(server["command"], list) else (server["command"])
    )
    assert "prefect server start --host 0.0.0.0" in command
    assert env.get("PREFECT_SERVER_CORS_ALLOWED_ORIGINS"), "CORS origins come from .env"
    assert environment(services["prefect-worker"]).get("PREFECT_API_URL") == (
        "http://prefect-server:4200/api"
    )


# ---------------------------------------------------------------- Prefect as separate services


def test_prefect_server_runs_api_and_ui_only(services: dict[str, dict[str, Any]]) -> None:
    runs = invocations(services["prefect-server"]["command"], "prefect")
    assert [argv[:3] for argv in runs] == [["prefect", "server", "start"]], runs
    assert "--no-services" in runs[0], "prefect-server must leave the services to prefect-services"


def test_prefect_services_runs_the_background_services(
    services: dict[str, dict[str, Any]],
) -> None:
    runners = {
        name
        for name, service in services.items()
        for argv in invocations(service.get("command") or [], "prefect")
        if argv[:4] == ["prefect", "server", "services", "start"]
    }
    assert runners == {"prefect-services"}, f"exactly one services process: {runners}"
    service = services["prefect-services"]
    assert not is_one_shot(service)
    assert service["image"] == services["prefect-server"]["image"]
    runs = invocations(service["command"], "prefect")
    assert len(runs) == 1 and "--background" not in runs[0] and "-b" not in runs[0]
    depends = service.get("depends_on") or {}
    assert depends.get("prefect-server", {}).get("condition") == "service_healthy", (
        "start after prefect-server has migrated the database"
    )


def test_prefect_server_and_services_share_database_and_redis(
    services: dict[str, dict[str, Any]],
) -> None:
    server = environment(services["prefect-server"])
    background = environment(services["prefect-services"])
    url = server.get("PREFECT_SERVER_DATABASE_CONNECTION_URL")
    assert url and url.startswith("postgresql+asyncpg://"), url
    assert background.get("PREFECT_SERVER_DATABASE_CONNECTION_URL") == url
    assert not background.get("PREFECT_API_DATABASE_CONNECTION_URL"), "one name for the DB URL"
    for env in (server, background):
        for key, value in PREFECT_REDIS_ENV.items():
            assert env.get(key) == value, f"{key} must be {value}"
    shared = {
        key
        for key in set(server) | set(background)
        if key.startswith(("PREFECT_MESSAGING_", "PREFECT_REDIS_", "PREFECT_SERVER_DATABASE_"))
        or key in ("PREFECT_SERVER_DOCKET_URL", "PREFECT_SERVER_EVENTS_CAUSAL_ORDERING")
    }
    for key in shared:
        assert server.get(key) == background.get(key), f"{key} differs between server and services"
    assert PREFECT_REDIS_ENV["PREFECT_REDIS_MESSAGING_HOST"] in services
    for name in ("prefect-server", "prefect-services"):
        depends = services[name].get("depends_on") or {}
        for target in ("postgres", "redis"):
            assert depends.get(target, {}).get("condition") == "service_healthy", (
                f"{name} must wait for {target} healthy"
            )


def test_redis_is_healthchecked_and_private(services: dict[str, dict[str, Any]]) -> None:
    redis = services["redis"]
    test = (redis.get("healthcheck") or {}).get("test") or []
    text = " ".join(test) if isinstance(test, list) else str(test)
    assert "redis-cli" in text and "ping" in text, text
    assert not redis.get("ports"), "Redis has no password: keep it off the host"


def test_prefect_services_healthcheck_sees_the_process_and_its_connections(
    services: dict[str, dict[str, Any]],
) -> None:
    """Run the healthcheck here: healthy only with the services process and live
    connections to Redis and PostgreSQL (the ports are taken from the service's env)."""
    if not Path("/proc/net/tcp").exists():
        pytest.skip("needs Linux /proc")
    service = services["prefect-services"]
    code = python_healthcheck(service)
    redis_listener, db_listener = (
        socket.create_server(("127.0.0.1", 0)),
        socket.create_server(("127.0.0.1", 0)),
    )
    redis_port, db_port = redis_listener.getsockname()[1], db_listener.getsockname()[1]
    env = environment(service)
    url = env["PREFECT_SERVER_DATABASE_CONNECTION_URL"] or ""
    env["PREFECT_SERVER_DATABASE_CONNECTION_URL"] = url.replace(":5432/", f":{db_port}/")
    env["PREFECT_REDIS_MESSAGING_PORT"] = str(redis_port)
    assert env["PREFECT_SERVER_DATABASE_CONNECTION_URL"] != url
    fake = subprocess.Popen(
        [sys.executable, "-c", "import time; time.sleep(60)", "server", "services", "start"]
    )
    held: list[socket.socket] = [redis_listener, db_listener]
    try:
        assert run_python(code, env) != 0, "healthy without any connection"
        held.append(socket.create_connection(("127.0.0.1", redis_port)))
        held.append(redis_listener.accept()[0])
        assert run_python(code, env) != 0, "healthy without a database connection"
        held.append(socket.create_connection(("127.0.0.1", db_port)))
        held.append(db_listener.accept()[0])
        assert run_python(code, env) == 0, "unhealthy with the process and both connections"
        fake.kill()
        fake.wait()
        assert run_python(code, env) != 0, "healthy without the services process"
    finally:
        fake.kill()
        fake.wait()
        for sock in held:
            sock.close()


def test_prefect_worker_is_scalable(services: dict[str, dict[str, Any]]) -> None:
    """`docker compose up -d --scale prefect-worker=3` must not collide."""
    worker = services["prefect-worker"]
    assert "container_name" not in worker, "a fixed container_name allows one replica only"
    assert "hostname" not in worker, "replicas tell their runs apart by hostname"
    assert not worker.get("ports"), "a published host port collides between replicas"
    assert (worker.get("deploy") or {}).get("replicas") in (None, 1)
    for volume in worker.get("volumes") or []:
        source = volume["source"] if isinstance(volume, dict) else volume.split(":", 1)[0]
        assert not source.startswith(("/", ".", "~")), f"bind mount {source}"


def test_prefect_worker_healthcheck_is_per_replica(
    services: dict[str, dict[str, Any]],
) -> None:
    """Run the healthcheck here against this runner's /health (both runner modes serve it)."""
    from streams.metrics import serve

    service = services["prefect-worker"]
    code = python_healthcheck(service)
    state = {"healthy": True}
    port = free_port()
    server = serve(port, lambda: state["healthy"])
    assert server is not None
    env = {k: v for k, v in environment(service).items() if k.startswith("SCRIBE_")}
    env["SCRIBE_RUNNER_METRICS_PORT"] = str(port)
    try:
        assert run_python(code, env) == 0, "unhealthy while /health says ok"
        state["healthy"] = False
        assert run_python(code, env) != 0, "healthy while /health says unhealthy"
    finally:
        server.shutdown()
        server.server_close()
    assert run_python(code, env) != 0, "healthy with no runner listening"


def test_prefect_worker_runner_mode_comes_from_env(
    raw_compose: str, env_example: dict[str, str]
) -> None:
    assert env_example.get("FLOW_RUNNER_MODE") in RUNNER_MODES
    command = yaml.safe_load(raw_compose)["services"]["prefect-worker"]["command"]
    seen = set()
    for mode in RUNNER_MODES:
        argv = resolve(command, {"FLOW_RUNNER_MODE": mode})
        assert resolve_scribe_command(argv) == ("flows", "serve")
        seen.add(tuple(argv))
        assert f"--{mode}" in argv
    assert len(seen) == len(RUNNER_MODES), "FLOW_RUNNER_MODE must change the command"
    with pytest.raises(NotAScribeCommandError):
        resolve_scribe_command(resolve(command, {"FLOW_RUNNER_MODE": "bogus"}))


def test_kafka_is_a_single_kraft_node(services: dict[str, dict[str, Any]]) -> None:
    env = environment(services["kafka"])
    assert env["KAFKA_PROCESS_ROLES"] == "broker,controller"
    node = env["KAFKA_NODE_ID"]
    assert env["KAFKA_CONTROLLER_QUORUM_VOTERS"] == f"{node}@kafka:9093"
    assert "PLAINTEXT://kafka:9092" in (env["KAFKA_ADVERTISED_LISTENERS"] or "")
    assert env["KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR"] == "1"
    assert env["KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR"] == "1"
    for listener in (env["KAFKA_ADVERTISED_LISTENERS"] or "").split(","):
        host_port = listener.split("://", 1)[1]
        if not host_port.startswith("kafka:"):  # advertised to host clients: must be published
            port = host_port.rsplit(":", 1)[1]
            assert ("127.0.0.1", port, port) in published_ports(services["kafka"]), listener


def test_state_lives_in_named_volumes(compose: dict[str, Any]) -> None:
    services, declared = compose["services"], set(compose.get("volumes") or {})
    for name, service in services.items():
        for volume in service.get("volumes") or []:
            source = volume["source"] if isinstance(volume, dict) else volume.split(":", 1)[0]
            if not source.startswith(("/", ".", "~")):
                assert source in declared, f"{name}: volume {source} is not declared"
    for name, path in STATEFUL.items():
        mounts = {v.split(":")[1]: v.split(":")[0] for v in services[name].get("volumes") or []}
        assert mounts.get(path) in declared, f"{name}: {path} must be a named volume"
    for name, service in scribe_services(compose).items():
        if not is_one_shot(service):
            mounts = {v.split(":")[1]: v.split(":")[0] for v in service.get("volumes") or []}
            assert mounts.get("/data") in declared, f"{name}: SCRIBE_DATA_DIR=/data not a volume"


# ---------------------------------------------------------------------------- scribe commands


def test_scribe_services_are_built_from_compose_dockerfile(compose: dict[str, Any]) -> None:
    scribe = scribe_services(compose)
    assert {"prefect-worker", "scribe-worker"} <= set(scribe)
    for name, service in scribe.items():
        build = service.get("build")
        if build:
            context = (COMPOSE_DIR / build["context"]).resolve()
            assert context == ROOT, f"{name}: build context must be the repository root"


def test_scribe_service_commands_are_real_subcommands(compose: dict[str, Any]) -> None:
    ran: dict[str, set[tuple[str, ...]]] = {}
    for name, service in scribe_services(compose).items():
        command = service.get("command")
        if command is None:
            continue  # the Dockerfile CMD, checked below
        invocations = scribe_invocations(command)
        assert invocations, f"{name}: command runs no scribe subcommand: {command!r}"
        ran[name] = {resolve_scribe_command(argv) for argv in invocations}
    assert ran.get("prefect-worker") == {("flows", "serve")}
    assert ran.get("scribe-worker") == {("worker",)}
    assert ran.get("scribe-init") == {
        ("topics", "create"),
        ("flows", "deploy"),
        ("flows", "automations"),
    }


def test_scribe_init_creates_the_automations_after_the_deployment(
    compose: dict[str, Any],
) -> None:
    init = compose["services"]["scribe-init"]
    assert is_one_shot(init)
    order = [resolve_scribe_command(argv) for argv in scribe_invocations(init["command"])]
    assert ("flows", "automations") in order, "scribe-init must run `scribe flows automations`"
    assert order.index(("flows", "deploy")) < order.index(("flows", "automations")), (
        "the automations refer to the deployment: deploy first"
    )
    command = init["command"]
    script = command[2] if isinstance(command, list) and command[:2] == ["sh", "-c"] else ""
    assert ";" not in script and "||" not in script, "a failing step must fail scribe-init"


def test_helpers_reject_what_they_should() -> None:
    """The checks above can fail: each helper flags a bad input."""
    with pytest.raises(NotAScribeCommandError):
        resolve_scribe_command(["scribe", "flows", "nope"])
    with pytest.raises(NotAScribeCommandError):
        resolve_scribe_command(["scribe", "flows"])
    with pytest.raises(NotAScribeCommandError):
        resolve_scribe_command(["scribe", "worker", "--no-such-option"])
    assert resolve_scribe_command(["scribe", "topics", "create"]) == ("topics", "create")
    assert scribe_invocations(["sh", "-c", "scribe topics create && scribe flows deploy"]) == [
        ["scribe", "topics", "create"],
        ["scribe", "flows", "deploy"],
    ]
    assert invocations(
        ["sh", "-c", "unset X\nexec prefect server start --no-services"], "prefect"
    ) == [["prefect", "server", "start", "--no-services"]]
    assert invocations("prefect server services start", "prefect") == [
        ["prefect", "server", "services", "start"]
    ]
    assert invocations(["scribe", "worker"], "prefect") == []
    assert published_ports({"ports": ["4200:4200"]}) == [(None, "4200", "4200")]
    assert published_ports({"ports": [{"target": 1, "published": 2, "host_ip": "0.0.0.0"}]}) == [
        ("0.0.0.0", "2", "1")
    ]
    assert "SCRIBE_KAFKA_BOOTSTRAP_SERVER" not in settings_env_names()
    assert "SCRIBE_MILVUS_TOKEN" in secret_env_names()
    with pytest.raises(MissingVariableError):
        interpolate("${X:?required}", {"X": ""})
    assert interpolate("$${A} ${B:-b} ${C-c} ${D:+d}", {"C": "", "D": "1"}) == "${A} b  d"
    assert referenced_variables("$${SHELL} ${A:-} ${B:?x}") == {"A": ":-", "B": ":?"}
    assert not dockerignore_includes(["*", "!streams/"], ".venv/bin/python")
    assert dockerignore_includes(["*", "!streams/"], "streams/cli.py")
    assert not dockerignore_includes(
        ["*", "!streams/", "**/__pycache__"], "streams/__pycache__/cli.pyc"
    )


# ---------------------------------------------------------------------------- the image


def test_dockerfile_installs_the_project_as_non_root() -> None:
    instructions = dockerfile_instructions(DOCKERFILE.read_text())
    stages = [i for i, (keyword, _) in enumerate(instructions) if keyword == "FROM"]
    assert stages, "no FROM"
    args = {
        m.group(1): m.group(2)
        for keyword, a in instructions
        if keyword == "ARG"
        for m in [re.match(r"(\w+)=?\"?([^\"]*)\"?", a)]
        if m
    }
    for index in stages:
        base = interpolate(instructions[index][1].split()[0], args)
        assert base.startswith("python:3.11-slim"), f"base image {base}"

    installs = [
        (i, a)
        for i, (keyword, a) in enumerate(instructions)
        if keyword == "RUN" and re.search(r"\bpip3? install\b", a)
    ]
    assert installs, "no pip install"
    project_installed = False
    for index, command in installs:
        words = shlex.split(command.split("pip install", 1)[1].split("&&", 1)[0])
        targets = [
            re.sub(r"\[.*\]$", "", re.sub(r"\$\{?\w+\}?", "", w))
            for w in words
            if not w.startswith("-")
        ]
        if any(t in (".", "./") for t in targets):
            stage_start = max(s for s in stages if s < index)
            copies = [a for k, a in instructions[stage_start:index] if k == "COPY"]
            assert ". ." in copies or any(c.endswith(" .") for c in copies), (
                "pip install . without the project copied in"
            )
            project_installed = True
    assert project_installed, "the Dockerfile must `pip install .` the project"

    final = instructions[stages[-1] :]
    users = [a for k, a in final if k == "USER"]
    assert users and users[-1].split(":")[0] not in ("root", "0"), "runs as root"
    everything = " ".join(a for _, a in instructions).lower()
    for forbidden in ("openjdk", "default-jre", "temurin", "kafka_2.", "kafka-server-start"):
        assert forbidden not in everything, f"{forbidden}: the image must not run Kafka"

    cmd = [a for k, a in final if k == "CMD"]
    assert cmd, "no CMD"
    argv = json.loads(cmd[-1])
    assert resolve_scribe_command(argv) == ("worker",)


def test_dockerignore_keeps_what_pip_install_needs() -> None:
    patterns = [
        line.strip()
        for line in DOCKERIGNORE.read_text().splitlines()
        if line.strip() and not line.strip().startswith("#")
    ]
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    packages = pyproject["tool"]["setuptools"]["packages"]
    assert packages
    needed = ["pyproject.toml"] + [f"{package}/__init__.py" for package in packages]
    needed += [f"streams/samples/{p.name}" for p in (ROOT / "streams" / "samples").iterdir()]
    readme = pyproject["project"].get("readme")
    if isinstance(readme, str):
        needed.append(readme)
    for path in needed:
        assert dockerignore_includes(patterns, path), f".dockerignore drops {path}"
    for path in (
        ".venv/bin/python",
        ".git/HEAD",
        "compose/.env",
        ".scribe/ledger.sqlite3",
        "tests/unit/test_compose.py",
        "streams/__pycache__/cli.cpython-311.pyc",
    ):
        assert not dockerignore_includes(patterns, path), f".dockerignore keeps {path}"
