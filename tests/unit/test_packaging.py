"""The project builds cleanly: no setuptools warnings, and the wheel carries the sample novel.

The wheel is built offline with the virtualenv's own setuptools (pinned in the ``dev`` extra),
from a copy of the sources in a temporary directory, so the working tree stays untouched.
"""

from __future__ import annotations

import email
import re
import shutil
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
PACKAGES: list[str] = PYPROJECT["tool"]["setuptools"]["packages"]

#: Lines of build output that mean the configuration is out of date or ambiguous.
BAD_OUTPUT = re.compile(
    r"SetuptoolsDeprecationWarning|is deprecated|Package '[\w.]+' is absent|"
    r"Package would be ignored|Traceback"
)


@pytest.fixture(scope="module")
def build(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """(the built wheel, everything the build printed)."""
    src = tmp_path_factory.mktemp("src")
    out = tmp_path_factory.mktemp("dist")
    shutil.copy2(ROOT / "pyproject.toml", src)
    shutil.copy2(ROOT / PYPROJECT["project"]["readme"], src)
    for top in {name.split(".")[0] for name in PACKAGES}:
        shutil.copytree(ROOT / top, src / top, ignore=shutil.ignore_patterns("__pycache__"))
    code = "import sys; from setuptools import build_meta as b; print(b.build_wheel(sys.argv[1]))"
    done = subprocess.run(
        [sys.executable, "-W", "default", "-c", code, str(out)],
        cwd=src,
        capture_output=True,
        text=True,
        timeout=120,
    )
    output = done.stdout + done.stderr
    assert done.returncode == 0, output
    return out / done.stdout.strip().splitlines()[-1], output


def test_build_prints_no_setuptools_warnings(build: tuple[Path, str]) -> None:
    _, output = build
    bad = [line for line in output.splitlines() if BAD_OUTPUT.search(line)]
    assert not bad, "\n".join(bad)


def test_wheel_ships_the_sample_novel_and_its_license(build: tuple[Path, str]) -> None:
    wheel, _ = build
    names = set(zipfile.ZipFile(wheel).namelist())
    samples = {p.name for p in (ROOT / "streams" / "samples").iterdir() if p.is_file()}
    assert "xiyouji-1-10.txt" in samples
    for name in samples:
        assert f"streams/samples/{name}" in names, f"the wheel lacks streams/samples/{name}"
    for package in PACKAGES:
        if (ROOT / package.replace(".", "/") / "__init__.py").exists():
            assert f"{package.replace('.', '/')}/__init__.py" in names, package


def test_wheel_metadata_has_an_spdx_license(build: tuple[Path, str]) -> None:
    wheel, _ = build
    with zipfile.ZipFile(wheel) as archive:
        [path] = [n for n in archive.namelist() if n.endswith(".dist-info/METADATA")]
        metadata = email.message_from_bytes(archive.read(path))
    assert metadata["License-Expression"] == "MIT"
    assert metadata["Name"] == PYPROJECT["project"]["name"]


def test_warning_filter_catches_what_the_old_configuration_printed() -> None:
    """The check above can fail: these are lines setuptools printed for the old pyproject."""
    old = [
        "BuildBackendWarning: `project.license` as a TOML table is deprecated",
        "SetuptoolsDeprecationWarning: License classifiers are deprecated.",
        "BuildBackendWarning: Package 'streams.samples' is absent from the `packages` "
        "configuration.",
    ]
    assert all(BAD_OUTPUT.search(line) for line in old)
    assert not BAD_OUTPUT.search("Successfully built scribe_stream-0.1.0-py3-none-any.whl")


def _imported_modules(top: str) -> set[str]:
    """Top-level names every module under ``top`` imports (lazy imports included)."""
    import ast

    names: set[str] = set()
    for path in (ROOT / top).rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                names.update(alias.name.split(".")[0] for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                names.add(node.module.split(".")[0])
    return names


def _requirement_name(spec: str) -> str:
    return re.split(r"[\s=<>!~\[;]", spec, maxsplit=1)[0].lower().replace("_", "-")


def test_every_direct_import_is_a_declared_dependency() -> None:
    """What the packages import is in ``[project] dependencies`` (issue 20): a package
    that only comes through another one can vanish when that one changes its pins."""
    from importlib.metadata import packages_distributions

    first_party = {name.split(".")[0] for name in PACKAGES}
    declared = {_requirement_name(d) for d in PYPROJECT["project"]["dependencies"]}
    optional = {
        _requirement_name(d)
        for extra, deps in PYPROJECT["project"]["optional-dependencies"].items()
        if extra != "dev"
        for d in deps
    }
    dists = packages_distributions()
    missing = {}
    for top in sorted(first_party):
        for module in _imported_modules(top) - first_party - set(sys.stdlib_module_names):
            owners = {d.lower().replace("_", "-") for d in dists.get(module, [module])}
            if not owners & (declared | optional):
                missing[module] = sorted(owners)
    assert missing == {}, f"imported but not declared in pyproject.toml: {missing}"
