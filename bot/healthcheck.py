"""`python -m bot.healthcheck`: exit 0 only while the bot is connected and its database writable.

Docker's HEALTHCHECK runs it. It reads the heartbeat the bot writes next to its database, so it
needs no secret and opens no connection of its own.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

from bot.observability import health_file

DEFAULT_MAX_AGE = 90.0


def problems(report: dict, now: float, max_age: float) -> list[str]:
    found = []
    age = now - float(report.get("at", 0))
    if age > max_age:
        found.append(f"the last heartbeat is {age:.0f} s old (the bot is stuck or stopped)")
    if report.get("discord_connected") is not True:
        found.append("not connected to Discord")
    if report.get("database_writable") is not True:
        reason = report.get("database_writable_error", "")
        found.append(f"the database is not writable {reason}".strip())
    return found


def main() -> int:
    path = health_file(Path(os.environ.get("DATABASE_PATH", "data/bot.db")))
    max_age = float(os.environ.get("HEALTH_MAX_AGE", DEFAULT_MAX_AGE))
    try:
        report = json.loads(path.read_text())
    except (OSError, ValueError):
        print(f"unhealthy: no heartbeat at {path}", file=sys.stderr)
        return 1
    found = problems(report, time.time(), max_age)
    if found:
        print("unhealthy: " + "; ".join(found), file=sys.stderr)
        return 1
    print("healthy")
    return 0


if __name__ == "__main__":
    sys.exit(main())
