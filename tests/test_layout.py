"""The layout's one hard rule: the core under `bot/` imports nothing from discord."""

from __future__ import annotations

import pkgutil
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import bot

ROOT = Path(__file__).resolve().parent.parent
# The entry point is the composition root: the one module that reaches for the adapter.
ENTRY_POINT = "bot.__main__"


def core_modules() -> list[str]:
    found = [
        module.name
        for module in pkgutil.walk_packages(bot.__path__, prefix="bot.")
        if module.name != ENTRY_POINT
    ]
    assert "bot.jobs.life" in found and "bot.store" in found
    return found


def test_no_module_of_the_core_imports_discord() -> None:
    script = (
        "import importlib, sys\n"
        f"for name in {core_modules()!r}:\n"
        "    importlib.import_module(name)\n"
        "    loaded = sorted(m for m in sys.modules if m.split('.')[0] == 'discord')\n"
        "    assert not loaded, f'{name} pulled in {loaded[:3]}'\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr[-2000:]


PACKAGES = ("bot", "adapter", "cogs")  # what `python -m bot` imports from this repository


def test_an_installed_bot_and_its_image_carry_every_package_it_runs_on() -> None:
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    included = pyproject["tool"]["setuptools"]["packages"]["find"]["include"]
    dockerfile = (ROOT / "Dockerfile").read_text()

    for package in PACKAGES:
        assert (ROOT / package / "__init__.py").exists()
        assert f"{package}*" in included, f"pip install . would leave out {package}/"
        assert f"COPY {package} ./{package}" in dockerfile, f"the image would lack {package}/"
    assert "--require-hashes -r requirements.lock" in dockerfile


def test_the_lock_file_pins_every_dependency_with_hashes() -> None:
    lock = (ROOT / "requirements.lock").read_text()
    pinned = {normal(line.split("==")[0]) for line in lock.splitlines() if "==" in line}
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    for requirement in pyproject["project"]["dependencies"]:
        name = normal(re.split(r"[<>=!\[ ;]", requirement, maxsplit=1)[0])
        assert name in pinned, f"{name} is not in requirements.lock: refresh it (README)"
    for line in lock.splitlines():
        if "==" in line:
            assert line.rstrip().endswith("\\"), f"{line.strip()} has no hash"


def normal(name: str) -> str:
    """A distribution's name as the lock spells it (PEP 503)."""
    return re.sub(r"[-_.]+", "-", name.strip()).lower()
