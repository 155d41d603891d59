"""Help texts that send the reader to a README section name one that exists."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
#: ``see README: Replay`` in a docstring or help text.
REFERENCE = re.compile(r"see README: ([^)\n.;]+)")


def headings() -> list[str]:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    return [m.group(1).strip() for m in re.finditer(r"^#{1,6} (.+)$", text, re.M)]


def references() -> list[tuple[str, str]]:
    """(file, section) for every README reference in the packages' sources."""
    found = []
    for package in ("schemas", "agents", "prefect_bridge", "streams"):
        for path in sorted((ROOT / package).rglob("*.py")):
            for m in REFERENCE.finditer(path.read_text(encoding="utf-8")):
                found.append((str(path.relative_to(ROOT)), m.group(1).strip()))
    return found


def test_every_readme_reference_names_a_section() -> None:
    found = references()
    assert ("streams/cli.py", "Replay") in found, "scribe replay --help points to the README"
    sections = headings()
    for path, name in found:
        assert any(h == name or h.startswith(name + " ") for h in sections), (
            f"{path}: 'see README: {name}', but README.md has no such section"
        )


def test_reference_check_can_fail() -> None:
    assert REFERENCE.findall("(see README: Replay).") == ["Replay"]
    assert not any(h.startswith("Replayz") for h in headings())
