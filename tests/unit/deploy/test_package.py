"""The image runs ``pip install .``, not the work tree: what the code opens at run time must be in the wheel."""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
PACKAGES = ("shared", "services", "paperwire")


def data_files() -> set[str]:
    """Non-Python files inside the packages (templates, schemas), but not the READMEs, which only people read."""
    return {
        path.relative_to(ROOT).as_posix()
        for package in PACKAGES
        for path in (ROOT / package).rglob("*")
        if path.is_file() and path.suffix not in {".py", ".pyc"} and path.name != "README.md"
    }


@pytest.mark.timeout(120)
def test_the_wheel_holds_the_templates_and_schemas(tmp_path: Path) -> None:
    if importlib.util.find_spec("setuptools") is None:
        pytest.skip("setuptools is not installed: the wheel cannot be built offline")
    source = tmp_path / "source"  # a copy, so the build leaves no build/ or egg-info in the work tree
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    for package in PACKAGES:
        shutil.copytree(ROOT / package, source / package, ignore=shutil.ignore_patterns("__pycache__"))
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index", "-q"]
        + ["-w", str(tmp_path / "dist"), str(source)],
        check=True,
        capture_output=True,
    )
    (wheel,) = (tmp_path / "dist").glob("paperwire-*.whl")
    expected = data_files()
    assert {"services/api/templates/base.html", "services/notifier/schemas/webhook-v1.schema.json"} <= expected
    missing = expected - set(zipfile.ZipFile(wheel).namelist())
    assert not missing, f"pip install . leaves out {sorted(missing)}"
