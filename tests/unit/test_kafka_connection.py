"""The Kafka adapters take a :class:`KafkaConnection`, not the application's settings."""

from __future__ import annotations

import ast
from pathlib import Path

import streams.adapters.kafka

KAFKA = Path(streams.adapters.kafka.__file__).parent


def _runtime_imports(path: Path) -> set[str]:
    """Modules ``path`` imports outside ``if TYPE_CHECKING:`` (lazy imports included)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    typing_only = {
        id(inner)
        for node in ast.walk(tree)
        if isinstance(node, ast.If) and ast.unparse(node.test) == "TYPE_CHECKING"
        for inner in ast.walk(node)
    }
    names: set[str] = set()
    for node in ast.walk(tree):
        if id(node) in typing_only:
            continue
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names.add(node.module)
    return names


def test_no_kafka_adapter_depends_on_the_settings_at_run_time() -> None:
    """Settings reach Kafka code only through ``KafkaConnection.from_settings``."""
    modules = sorted(KAFKA.glob("*.py"))
    assert {p.name for p in modules} >= {"client.py", "connection.py", "topic_reader.py"}
    offending = {p.name for p in modules if "streams.settings" in _runtime_imports(p)}
    assert offending == set()
