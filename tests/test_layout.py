"""The layout's one hard rule: the core under `bot/` imports nothing from discord."""

from __future__ import annotations

import pkgutil
import subprocess
import sys
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
