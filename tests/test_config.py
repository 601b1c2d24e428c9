"""Settings: defaults, secrets kept secret, and a one-line refusal when something is wrong."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from bot.config import Settings

ROOT = Path(__file__).resolve().parent.parent
TOKEN = "discord-token-0123456789"
KEY = "segmind-key-abcdef"


def run_bot(env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    """`python -m bot` in a clean environment: nothing but PATH and what the test sets."""
    clean = {"PATH": os.environ["PATH"], "PYTHONPATH": str(ROOT), **env}
    return subprocess.run(
        [sys.executable, "-m", "bot"],
        env=clean,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_defaults(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    settings = Settings(discord_token=TOKEN, segmind_api_key=KEY)

    assert settings.segmind_base_url == "https://api.segmind.com"
    assert settings.database_path == Path("data/bot.db")
    assert settings.segmind_poll_interval_max == 30
    assert settings.segmind_requests_per_minute == 50


def test_secrets_never_show_in_repr_str_or_dumps(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    settings = Settings(discord_token=TOKEN, segmind_api_key=KEY)

    shown = f"{settings!r} {settings} {settings.model_dump()} {settings.model_dump_json()}"
    assert TOKEN not in shown and KEY not in shown
    assert settings.discord_token.get_secret_value() == TOKEN


def test_missing_settings_exit_with_one_line_each_and_no_traceback(tmp_path: Path) -> None:
    finished = run_bot({}, tmp_path)

    assert finished.returncode != 0
    lines = finished.stderr.strip().splitlines()
    assert len(lines) == 2
    assert lines[0].startswith("Configuration error: DISCORD_TOKEN is not set")
    assert lines[1].startswith("Configuration error: SEGMIND_API_KEY is not set")
    assert "Traceback" not in finished.stderr


def test_a_malformed_setting_is_named_and_secrets_are_not_echoed(tmp_path: Path) -> None:
    finished = run_bot(
        {
            "DISCORD_TOKEN": TOKEN,
            "SEGMIND_API_KEY": KEY,
            "SEGMIND_REQUESTS_PER_MINUTE": "lots",
        },
        tmp_path,
    )

    assert finished.returncode != 0
    assert finished.stderr.strip().splitlines() == [
        "Configuration error: SEGMIND_REQUESTS_PER_MINUTE input should be a valid integer,"
        " unable to parse string as an integer"
    ]
    assert TOKEN not in finished.stderr + finished.stdout
    assert KEY not in finished.stderr + finished.stdout


def test_settings_are_read_from_a_dot_env_file(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text(
        f"DISCORD_TOKEN={TOKEN}\nSEGMIND_API_KEY={KEY}\nSEGMIND_POLL_INTERVAL_MAX=0\n"
    )

    finished = run_bot({}, tmp_path)

    assert finished.returncode != 0
    assert finished.stderr.strip().splitlines() == [
        "Configuration error: SEGMIND_POLL_INTERVAL_MAX input should be greater than 0"
    ]


def test_a_database_url_that_is_not_postgresql_is_refused_without_echoing_it(
    tmp_path: Path,
) -> None:
    result = run_bot(
        {"DISCORD_TOKEN": TOKEN, "SEGMIND_API_KEY": KEY,
         "DATABASE_URL": "mysql://bot:hunter2-secret@db.example.test/bot"},
        tmp_path,
    )  # fmt: skip

    assert result.returncode == 2
    assert "DATABASE_URL must start with postgresql://" in result.stderr
    assert "hunter2" not in result.stderr + result.stdout
