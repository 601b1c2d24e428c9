"""Soak: many jobs through one bot process while the provider misbehaves; nothing may be lost.

The bot runs as its own process (`python -m bot`, pointed at the loopback fake Discord); the
fake Discord and the simulator run here. Members across many guilds send slash commands of all
five models; the simulator answers 10 % of status polls with a 5xx, sends bursts of 429, fails
2 % of jobs with a safety error, refuses 1 % of submits for credits, accepts 1 % of submits and
answers them 504 (the job runs unseen), and answers some requests slowly. Halfway through, the
bot is killed (SIGKILL) and started again. At the end every job is accounted for, from
Discord's side, Segmind's side (its hidden jobs included) and the bot's own database.

With `--processes 3 --database postgres` the same soak runs on a fleet: three processes on one
PostgreSQL database (a throwaway server from Debian's binaries), one Discord shard each; halfway
through one of them is killed and started again, and its jobs must move to the others within
the lease. The one-process SQLite run goes first, in the same invocation, for comparison.

Run from the repository root: python bench/soak.py [--jobs 1000 --guilds 100 --members 500]
                              [--processes 3 --database postgres]
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import json
import random
import sqlite3
import sys
import tempfile
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bot.observability import health_file, peak_rss_mb
from bot.simulator import Fault, Simulator
from tests.bot_process import SCRIPT, environment
from tests.bot_world import png_bytes
from tests.fakediscord import FakeDiscord, FakeGuild, FakeInteraction, FakeMember

API_KEY = "soak-key"
COMMANDS = ("svd", "cog-video", "cog-video-i2v", "pixverse", "grok-video")
TAKES_IMAGE = {"svd", "cog-video-i2v"}


@dataclass
class SoakConfig:
    jobs: int = 1000
    guilds: int = 100
    members: int = 500
    speed: float = 0.05  # job durations: svd 1.5 s ... cog-video-i2v 17.8 s
    arrival_seconds: float = 60.0
    requests_per_minute: int = 3000
    global_concurrency: int = 64
    guild_concurrency: int = 2
    poll_interval_max: float = 1.0
    faults: bool = True
    burst_every: float = 20.0
    seed: int = 1
    timeout: float = 1200.0
    restart_halfway: bool = True
    processes: int = 1
    database_url: str | None = None  # PostgreSQL (a fleet); None: one SQLite file
    lease_seconds: float = 10.0


@dataclass
class SoakReport:
    jobs: int
    delivered: int = 0
    failed_with_message: int = 0
    lost: list[str] = field(default_factory=list)
    delivered_twice: list[str] = field(default_factory=list)
    submitted_twice: list[str] = field(default_factory=list)
    credits_reserved: int = 0
    credits_spent: int = 0
    credits_refunded: int = 0
    credits_still_held: int = 0
    loop_lag_p99_ms: float = 0.0
    peak_rss_mb: float = 0.0
    busiest_minute: int = 0
    budget: int = 0
    requests: int = 0
    seconds: float = 0.0
    restarts: int = 0
    outcome_unknown: int = 0
    failure_reasons: collections.Counter[str] = field(default_factory=collections.Counter)
    # A fleet's: per process, its jobs submitted, loop lag p99 (ms) and peak RSS (MB).
    per_process: list[tuple[int, float, float]] = field(default_factory=list)
    takeover_seconds: list[float] = field(default_factory=list)

    @property
    def credit_balance(self) -> int:
        return self.credits_reserved - self.credits_spent - self.credits_refunded

    def lines(self) -> list[str]:
        return [
            f"jobs sent {self.jobs}: delivered {self.delivered}, failed with a message"
            f" {self.failed_with_message}, lost {len(self.lost)}",
            f"delivered twice {len(self.delivered_twice)}, submitted twice"
            f" {len(self.submitted_twice)}",
            f"credits reserved {self.credits_reserved} - spent {self.credits_spent}"
            f" - refunded {self.credits_refunded} = {self.credit_balance}"
            f" (still held: {self.credits_still_held})",
            f"failures: {dict(self.failure_reasons)}; submits of unknown outcome"
            f" {self.outcome_unknown}; restarts {self.restarts}",
            f"event-loop lag p99 {self.loop_lag_p99_ms:.1f} ms; peak RSS {self.peak_rss_mb:.0f} MB",
            f"requests at Segmind: {self.requests} over {self.seconds:.0f} s;"
            f" busiest 60 s window {self.busiest_minute} (budget {self.budget})",
            *(
                f"process {n}: submitted {jobs} jobs, event-loop lag p99 {lag:.1f} ms,"
                f" peak RSS {rss:.0f} MB"
                for n, (jobs, lag, rss) in enumerate(self.per_process)
            ),
            *(
                [f"takeover of the killed process's jobs: {len(self.takeover_seconds)} job(s),"
                 f" latest after {max(self.takeover_seconds):.1f} s"]
                if self.takeover_seconds else []
            ),
        ]  # fmt: skip


def configure_faults(simulator: Simulator) -> None:
    simulator.add_fault("credits", endpoint="submit", probability=0.01, count=None)
    simulator.add_fault("accepted_504", endpoint="submit", probability=0.01, count=None)
    simulator.add_fault("content_blocked", endpoint="submit", probability=0.02, count=None)
    simulator.add_fault("server_error", endpoint="status", probability=0.10, count=None, status=502)
    simulator.add_fault("slow", endpoint="status", probability=0.02, count=None, delay=2.0)
    simulator.add_fault("slow", endpoint="result", probability=0.05, count=None, delay=1.0)


async def bursts_of_429(simulator: Simulator, every: float, length: float = 1.5) -> None:
    """Now and then the provider turns every request away for a moment."""
    while True:
        await asyncio.sleep(every)
        burst = Fault(kind="rate_limit", count=None, reset_after=length)
        simulator.faults.insert(0, burst)  # first, so it hits whatever else is injected
        await asyncio.sleep(length)
        simulator.faults.remove(burst)


def bot_environment(
    fake: FakeDiscord, simulator: Simulator, config: SoakConfig, db: Path, shard: int = 0
) -> dict:
    fleet = {} if config.database_url is None else {
        "database_url": config.database_url, "shard_count": config.processes,
        "shard_ids": shard, "job_lease_seconds": config.lease_seconds,
    }  # fmt: skip
    return environment(
        fake, simulator.url, API_KEY, db, **fleet,
        segmind_poll_interval_max=config.poll_interval_max,
        segmind_requests_per_minute=config.requests_per_minute,
        segmind_retry_base_delay=0.5,
        queue_global_concurrency=config.global_concurrency,
        queue_guild_concurrency=config.guild_concurrency,
        queue_guild_length_max=100,
        status_update_seconds=2,
        health_interval_seconds=1,
        # A fleet's per-process figures are counted from its log lines ("job submitted").
        log_level="WARNING" if config.database_url is None else "INFO",
    )  # fmt: skip


def options_for(command: str, number: int) -> dict:
    # Every job carries a mark of its own, so Segmind's side can tell a double submit.
    if command == "svd":
        return {"seed": 10_000 + number}
    if command == "grok-video":
        return {"prompt": f"soak {number}", "duration": 1 + number % 15}
    return {"prompt": f"soak {number}", "seed": 10_000 + number}


def mark_of(payload: dict) -> str:
    return payload.get("prompt") or f"seed {payload.get('seed')}"


async def run_soak(config: SoakConfig, workdir: Path) -> SoakReport:
    simulator = Simulator(api_key=API_KEY, speed=config.speed, seed=config.seed)
    await simulator.start()
    if config.faults:
        configure_faults(simulator)
    homes = [workdir / f"process-{n}" for n in range(config.processes)]
    for home in homes:
        home.mkdir(exist_ok=True)
    records = Records(homes[0] / "soak.db", config.database_url)
    report = SoakReport(jobs=config.jobs, budget=config.requests_per_minute)
    started = time.monotonic()
    try:
        async with FakeDiscord() as fake:
            cast = build_cast(fake, config)
            envs = [
                bot_environment(fake, simulator, config, home / "soak.db", shard)
                for shard, home in enumerate(homes)
            ]  # fmt: skip
            logs = [(home / "bot.log").open("w") for home in homes]
            processes = [
                await start_bot(fake, env, home, log, config, shard)
                for shard, (env, home, log) in enumerate(zip(envs, homes, logs, strict=True))
            ]  # fmt: skip
            bursts = asyncio.create_task(bursts_of_429(simulator, config.burst_every))
            # One process: that one is killed; a fleet: the second (the others take over).
            victim = 0 if config.processes == 1 else 1
            try:
                half = config.jobs // 2 if config.restart_halfway else config.jobs
                sent = await send_commands(fake, cast, config, range(half))
                if config.restart_halfway:
                    # Every command so far answered; then killed with jobs waiting, running,
                    # mid-submit and being posted.
                    await fake.wait_for(lambda: all(map(answered, sent)), timeout=120)
                    held = await records.held_by_shard(victim)
                    processes[victim].kill()
                    killed_at = time.monotonic()
                    await processes[victim].wait()
                    report.restarts += 1
                    if config.processes > 1:
                        report.takeover_seconds = await taken_over(fake, records, held, killed_at)
                    processes[victim] = await start_bot(
                        fake, envs[victim], homes[victim], logs[victim], config, victim
                    )
                    sent += await send_commands(fake, cast, config, range(half, config.jobs))
                await fake.wait_for(
                    lambda: records.all_settled(len(sent)), timeout=config.timeout,
                    message="every job finished and every message sent",
                )  # fmt: skip
                for process, home in zip(processes, homes, strict=True):
                    beat = json.loads(health_file(home / "soak.db").read_text())
                    report.per_process.append((
                        0, float(beat.get("loop_lag_p99_ms", 0.0)), peak_rss_mb(process.pid)
                    ))  # fmt: skip
                report.peak_rss_mb = max(rss for _, _, rss in report.per_process)
                report.loop_lag_p99_ms = max(lag for _, lag, _ in report.per_process)
            finally:
                bursts.cancel()
                for process in processes:
                    if process.returncode is None:
                        process.kill()
                        await process.wait()
                for log in logs:
                    log.close()
            report.seconds = time.monotonic() - started
            await account(report, fake, simulator, records, sent)
            if config.processes > 1:
                report.per_process = [
                    (submits_logged(home / "bot.log"), lag, rss)
                    for home, (_, lag, rss) in zip(homes, report.per_process, strict=True)
                ]  # fmt: skip
            else:
                report.per_process = []
    finally:
        await records.close()
        await simulator.close()
    return report


class Records:
    """The bot's database read as an operator would: the SQLite file, or PostgreSQL."""

    def __init__(self, path: Path, url: str | None) -> None:
        self.path, self.url = path, url
        self._pg: Any = None

    async def rows(self, query: str, *arguments: Any) -> list[tuple[Any, ...]]:
        if self.url is None:
            if not self.path.exists():
                return []
            with sqlite3.connect(self.path, timeout=5) as db:
                return db.execute(query.replace("$1", "?"), arguments).fetchall()
        if self._pg is None:
            import asyncpg

            self._pg = await asyncpg.connect(self.url)
        return [tuple(row) for row in await self._pg.fetch(query, *arguments)]

    async def close(self) -> None:
        if self._pg is not None:
            await self._pg.close()

    async def all_settled(self, expected: int) -> bool:
        found = await self.rows(
            "SELECT COUNT(*), SUM(CASE WHEN state IN ('delivered', 'failed', 'cancelled')"
            " THEN 0 ELSE 1 END) FROM jobs"
        )
        if not found:
            return False
        total, open_ = found[0]
        # Nothing still owed to anyone: no duplicate can still be on its way.
        [(owed,)] = await self.rows("SELECT COUNT(*) FROM outbox WHERE done_at IS NULL")
        return total == expected and not open_ and not owed

    async def held_by_shard(self, shard: int) -> dict[str, str]:
        """job id -> process, of the jobs at Segmind that the shard's process holds now."""
        if self.url is None:
            return {}
        rows = await self.rows(
            "SELECT j.id, j.runner FROM jobs AS j JOIN processes AS p ON p.id = j.runner"
            " WHERE p.shards = $1 AND j.state IN ('submitting', 'submitted',"
            " 'cancelled_sending', 'cancelled_running')",
            json.dumps([shard]),
        )
        return {row[0]: row[1] for row in rows}

    async def holders(self, job_ids: list[str]) -> dict[str, tuple[str | None, str]]:
        rows = await self.rows(
            "SELECT id, runner, state FROM jobs WHERE id = ANY($1::text[])", job_ids
        )
        return {row[0]: (row[1], row[2]) for row in rows}


async def taken_over(
    fake: FakeDiscord, records: Records, held: dict[str, str], killed_at: float
) -> list[float]:
    """Seconds from the kill until each job the killed process held had moved on (taken by
    another process, or ended there)."""
    moved: dict[str, float] = {}

    async def all_moved() -> bool:
        now = time.monotonic()
        for job_id, (runner, state) in (await records.holders(list(held))).items():
            if job_id not in moved and (runner not in (None, held[job_id]) or state in ENDED):
                moved[job_id] = now - killed_at
        return len(moved) == len(held)

    await fake.wait_for(all_moved, timeout=300, message="the killed process's jobs taken over")
    return sorted(moved.values())


ENDED = ("completed", "delivered", "failed", "cancelled")


def submits_logged(log: Path) -> int:
    return sum(" job submitted " in line for line in log.read_text(errors="replace").splitlines())


async def start_bot(
    fake: FakeDiscord, env: dict, workdir: Path, log: Any, config: SoakConfig, shard: int
) -> asyncio.subprocess.Process:
    """A bot process, once it is connected (its own shard, in a fleet) and the commands are
    registered."""
    process = await asyncio.create_subprocess_exec(
        sys.executable, str(SCRIPT), env=env, cwd=workdir, stdout=log, stderr=log,
    )  # fmt: skip
    await fake.wait_for(lambda: fake.sync_count >= 1, timeout=90, message="commands synced")
    mine = (shard, config.processes) if config.processes > 1 else None

    def connected() -> bool:
        # A fleet's restarted process first waits out its dead predecessor's lease.
        return mine in fake.live_shards if mine else fake.connected

    await fake.wait_for(connected, timeout=90, message="the bot connected")
    return process


def build_cast(fake: FakeDiscord, config: SoakConfig) -> list[tuple[FakeGuild, FakeMember]]:
    # A fleet's guilds spread over its shards, as real ones are: each process gets commands.
    guilds = [
        fake.add_guild(f"Guild {n}", on_shard=(n % config.processes, config.processes))
        for n in range(config.guilds)
    ]
    return [
        (guilds[n % config.guilds], guilds[n % config.guilds].add_member(f"member {n}"))
        for n in range(config.members)
    ]


async def send_commands(
    fake: FakeDiscord,
    cast: list[tuple[FakeGuild, FakeMember]],
    config: SoakConfig,
    numbers: range,
) -> list[FakeInteraction]:
    rng = random.Random(config.seed + numbers.start)
    image = png_bytes(96, 96, noisy=True)
    sent = []
    gap = config.arrival_seconds / max(config.jobs, 1)
    for number in numbers:
        guild, member = cast[number % len(cast)]
        command = COMMANDS[number % len(COMMANDS)]
        attachments = None
        if command in TAKES_IMAGE or (command == "pixverse" and rng.random() < 0.5):
            attachments = {"image": fake.add_attachment(f"in{number}.png", image, "image/png")}
        sent.append(
            await fake.slash(
                guild, member, command, options_for(command, number), attachments=attachments
            )
        )
        await asyncio.sleep(rng.uniform(0, 2 * gap))
    return sent


def answered(interaction: FakeInteraction) -> bool:
    """The bot settled the member's reply: the job was admitted, or refused in words."""
    reply = interaction.original
    return reply is not None and not reply.loading and not reply.content.startswith("Sending")


async def account(
    report: SoakReport,
    fake: FakeDiscord,
    simulator: Simulator,
    records: Records,
    sent: list[FakeInteraction],
) -> None:
    # Where each job's credits stand, from the ledger: captured, released, or still held.
    rows = await records.rows(
        "SELECT id, interaction_id, state, credits, COALESCE((SELECT MAX(entry) FROM ledger"
        " WHERE job_id = jobs.id AND entry != 'reserve'), 'reserve'), error FROM jobs"
    )
    [(report.outcome_unknown,)] = await records.rows(
        "SELECT COUNT(*) FROM jobs WHERE failure = 'SubmitOutcomeUnknown'"
    )
    by_interaction = {row[1]: row for row in rows}
    messages = [m for m in fake.messages if not m.deleted]
    results = collections.Counter(
        cid.rsplit(":", 1)[1]
        for m in messages
        for cid in m.custom_ids
        if cid.startswith("job:regenerate:") and m.attachments and not m.ephemeral
    )
    notices = {m.content for m in fake.messages if "did not finish" in m.content}
    for interaction in sent:
        row = by_interaction.get(interaction.id)
        if row is None:
            report.lost.append(f"interaction {interaction.id}: no job")
            continue
        job_id, _, state, credits, credit_state, error = row
        report.credits_reserved += credits
        if credit_state == "capture":
            report.credits_spent += credits
        elif credit_state == "release":
            report.credits_refunded += credits
        else:
            report.credits_still_held += credits
        if results[job_id] > 1:
            report.delivered_twice.append(job_id)
        if state == "delivered" and results[job_id] >= 1:
            report.delivered += 1
        elif state == "failed" and any(job_id in notice for notice in notices):
            report.failed_with_message += 1
            report.failure_reasons[(error or "?").split(".")[0][:60]] += 1
        else:
            report.lost.append(f"job {job_id}: {state}, {results[job_id]} result message(s)")
    marks = collections.Counter(mark_of(job.payload) for job in simulator.jobs.values())
    report.submitted_twice = [mark for mark, count in marks.items() if count > 1]
    report.requests = sum(1 for entry in simulator.log if entry.endpoint != "file")
    report.busiest_minute = simulator.busiest_window(60.0)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=1000)
    parser.add_argument("--guilds", type=int, default=100)
    parser.add_argument("--members", type=int, default=500)
    parser.add_argument("--arrival-seconds", type=float, default=60.0)
    parser.add_argument("--processes", type=int, default=1)
    parser.add_argument("--database", choices=("sqlite", "postgres"), default="sqlite")
    args = parser.parse_args(argv)
    if args.processes > 1 and args.database != "postgres":
        parser.error("several processes share a PostgreSQL database: add --database postgres")
    config = SoakConfig(
        jobs=args.jobs,
        guilds=args.guilds,
        members=args.members,
        arrival_seconds=args.arrival_seconds,
    )
    report = soak_once(config)
    print("One process, SQLite:")
    print_report(report)
    if args.database == "postgres":
        from tests.postgres import postgres_server

        with postgres_server() as server:
            if server is None:
                print("no PostgreSQL here (Debian's postgresql package)", file=sys.stderr)
                return 1
            url = server.new_database()
            fleet = replace(config, processes=args.processes, database_url=url)
            lease = fleet.lease_seconds
            print(f"\n{args.processes} process(es), PostgreSQL (lease {lease:.0f} s):")
            print_report(soak_once(fleet))
    return 0


def soak_once(config: SoakConfig) -> SoakReport:
    with tempfile.TemporaryDirectory() as workdir:
        return asyncio.run(run_soak(config, Path(workdir)))


def print_report(report: SoakReport) -> None:
    print("\n".join(report.lines()))
    checks = [
        ("0 lost", not report.lost),
        ("0 delivered twice", not report.delivered_twice),
        ("0 submitted twice", not report.submitted_twice),
        ("credits balance 0", report.credit_balance == 0 and report.credits_still_held == 0),
        ("event-loop lag p99 < 50 ms", report.loop_lag_p99_ms < 50),
        ("peak RSS < 250 MB", report.peak_rss_mb < 250),
        ("never over the request budget", report.busiest_minute <= report.budget),
    ]
    for name, ok in checks:
        print(f"{'PASS' if ok else 'FAIL'}  {name}")
    if report.lost:
        print("lost:", report.lost[:10])


if __name__ == "__main__":
    sys.exit(main())
