"""What an operator sees: structured logs without secrets, loop lag, and a health heartbeat."""

from __future__ import annotations

import asyncio
import collections
import inspect
import json
import logging
import os
import re
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

# Fields a job event carries; the formatter prints whichever a record has.
JOB_FIELDS = ("event", "job", "guild", "member", "model", "request_id", "state")
# Interaction and webhook tokens travel in URL paths (discord.py logs those at DEBUG).
_WEBHOOK_TOKEN = re.compile(r"(/(?:webhooks|interactions)/\d+/)[A-Za-z0-9._\-]{20,}")
# ...and in gateway payloads, which discord.py logs whole at DEBUG.
_TOKEN_FIELD = re.compile(r"""(['"]\w*token['"]\s*:\s*['"])[^'"]+""")

log = logging.getLogger("bot.jobs")


def job_event(job: Any, event: str, level: int = logging.INFO, **details: Any) -> None:
    """Log one step of a job with the fields an operator filters on."""
    fields = {
        "event": event,
        "job": job.id,
        "guild": job.guild_id,
        "member": job.member_id,
        "model": job.slug,
        "request_id": job.request_id,
        "state": job.state.value,
    }
    text = " ".join(f"{key}={value}" for key, value in details.items())
    log.log(level, "job %s %s%s", event, job.id, f" {text}" if text else "", extra=fields)


class KeyValueFormatter(logging.Formatter):
    """`time level logger: message key=value ...`, easy to grep and to parse."""

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        pairs = [
            f"{name}={getattr(record, name)}"
            for name in JOB_FIELDS
            if getattr(record, name, None) is not None
        ]
        return f"{line} | {' '.join(pairs)}" if pairs else line


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": self.formatTime(record),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            **{name: getattr(record, name) for name in JOB_FIELDS if hasattr(record, name)},
        }
        # SecretFilter leaves a cleaned traceback in exc_text (and no exc_info).
        if record.exc_text or record.exc_info:
            entry["exception"] = record.exc_text or self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


class SecretFilter(logging.Filter):
    """Blanks the bot's secrets and any interaction token out of every record, whoever logs it."""

    def __init__(self, secrets: Iterable[str]) -> None:
        super().__init__()
        self._secrets = [secret for secret in secrets if secret]

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        cleaned = self._clean(message)
        if record.exc_info and record.exc_info[1] is not None:
            # Render the traceback now, cleaned, so no handler prints the raw one.
            record.exc_text = self._clean(logging.Formatter().formatException(record.exc_info))
            record.exc_info = None
        if cleaned != message:
            record.msg, record.args = cleaned, None
        return True

    def _clean(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, "[secret]")
        text = _TOKEN_FIELD.sub(r"\1[token]", text)
        return _WEBHOOK_TOKEN.sub(r"\1[token]", text)


def configure_logging(level: str, secrets: Iterable[str], json_lines: bool = False) -> None:
    handler = logging.StreamHandler()
    formatter: logging.Formatter = (
        JsonFormatter()
        if json_lines
        else KeyValueFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
    )
    handler.setFormatter(formatter)
    handler.addFilter(SecretFilter(secrets))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # aiosqlite logs every statement with its values at DEBUG: noise, and job rows hold tokens.
    logging.getLogger("aiosqlite").setLevel(max(logging.INFO, root.level))


class LoopLagMonitor:
    """How late the event loop wakes up: a blocked loop delays every interaction and poll."""

    def __init__(self, interval: float = 0.1, keep: int = 3000) -> None:
        self.interval = interval
        self.samples: collections.deque[float] = collections.deque(maxlen=keep)
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._watch(), name="loop-lag-monitor")

    def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()

    async def _watch(self) -> None:
        while True:
            before = time.perf_counter()
            await asyncio.sleep(self.interval)
            self.samples.append(max(0.0, time.perf_counter() - before - self.interval))

    def percentile(self, fraction: float) -> float:
        if not self.samples:
            return 0.0
        ordered = sorted(self.samples)
        return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def health_file(database_path: Path) -> Path:
    """The heartbeat lives next to the database, on the same volume."""
    return database_path.parent / "health.json"


class Heartbeat:
    """Writes the bot's health to a small file that `python -m bot.healthcheck` reads."""

    def __init__(
        self,
        path: Path,
        probes: dict[str, Callable[[], Any]],
        interval: float = 15.0,
    ) -> None:
        self.path = path
        self.probes = probes
        self.interval = interval
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._beat(), name="heartbeat")

    async def stop(self, **final: Any) -> None:
        if self._task is not None:
            self._task.cancel()
        await self.write(**final)

    async def _beat(self) -> None:
        while True:
            await self.write()
            await asyncio.sleep(self.interval)

    async def write(self, **overrides: Any) -> None:
        report: dict[str, Any] = {"at": time.time(), "pid": os.getpid()}
        for name, probe in self.probes.items():
            try:
                value = probe()
                report[name] = await value if inspect.isawaitable(value) else value
            except Exception as error:  # a failing probe is itself the news
                report[name] = False
                report[f"{name}_error"] = str(error)[:200]
        report.update(overrides)
        temporary = self.path.with_suffix(".tmp")
        # The owner's alone, like the database beside it.
        handle = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(handle, "w") as file:
            file.write(json.dumps(report))
        temporary.replace(self.path)  # atomic: the checker never reads half a file


def rss_mb(pid: int | str = "self") -> float:
    """Resident memory of a process in MiB, from /proc (Linux); 0 where there is none."""
    return _proc_status_kib(pid, "VmRSS:") / 1024


def peak_rss_mb(pid: int | str = "self") -> float:
    """The most memory the process has held since it started, in MiB."""
    return _proc_status_kib(pid, "VmHWM:") / 1024


def _proc_status_kib(pid: int | str, field: str) -> int:
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith(field):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0
