"""The Discord bot: opens the shared resources, loads the cogs, syncs commands when they change.

`setup_hook` builds everything once, in order: the HTTP session and the store, the Segmind
client, the job life and its runner, the service, the outbox sender; then the cogs, then the
recovery of the last run's jobs.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import signal
import sys
import time
from pathlib import Path

import aiohttp
import discord
from discord import app_commands
from discord.ext import commands

from adapter.sender import RetryPolicy as MessageRetry
from adapter.sender import Sender
from adapter.startup import GaveUp, log_in, quiet_discord_logs, say_gave_up
from bot.config import Settings
from bot.durations import Durations
from bot.images import ImageKeeper
from bot.jobs.fleet import Fleet, ShardsTaken
from bot.jobs.housekeeping import Housekeeper
from bot.jobs.job import Job
from bot.jobs.life import Lifecycle
from bot.jobs.service import JobService
from bot.jobs.worker import JobRunner
from bot.observability import Heartbeat, LoopLagMonitor, health_file, rss_mb
from bot.queue import QueueLimits
from bot.quotas import Quotas
from bot.ratelimit import RequestBudget
from bot.segmind import RetryPolicy, SegmindClient
from bot.store import Store

log = logging.getLogger(__name__)

EXTENSIONS = (
    "cogs.video", "cogs.jobs", "cogs.quota", "cogs.settings", "cogs.stats", "cogs.help",
)  # fmt: skip
TREE_HASH_KEY = "command_tree_hash"


class VideoBot(commands.AutoShardedBot):
    session: aiohttp.ClientSession
    segmind: SegmindClient
    store: Store
    life: Lifecycle
    jobs: JobService
    sender: Sender
    housekeeper: Housekeeper
    images: ImageKeeper
    durations: Durations
    fleet: Fleet | None = None

    def __init__(
        self, settings: Settings, *, handle_signals: bool = False, **options: object
    ) -> None:
        """`handle_signals`: SIGTERM and SIGINT stop the bot gracefully (a process of its own)."""
        # Slash commands need no privileged intent; the guild cache is enough.
        intents = discord.Intents.none()
        intents.guilds = True
        super().__init__(
            command_prefix=commands.when_mentioned,
            intents=intents,
            help_command=None,
            allowed_mentions=discord.AllowedMentions.none(),
            # A fleet splits Discord's shards over its processes; alone, Discord's count.
            shard_count=settings.shard_count,
            shard_ids=settings.shard_ids,
            **options,
        )
        self.settings = settings
        self._handle_signals = handle_signals
        self._shutdown: asyncio.Task[None] | None = None
        self._teardown: asyncio.Future[None] | None = None
        self._queue_started = False
        self._set_up = asyncio.Event()
        self._gateway_up = False
        self.loop_lag = LoopLagMonitor()
        self.heartbeat: Heartbeat | None = None

    async def setup_hook(self) -> None:
        if self._handle_signals:
            self._stop_on_signals()
        self.tree.on_error = self.on_app_command_error
        settings = self.settings
        # No pool limit: a request that has its budget slot must leave at once, not queue for
        # a connection and then reach Segmind in a bunch with others (the queue bounds them).
        self.session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0))
        url = settings.database_url.get_secret_value() if settings.database_url else None
        self.store = await Store.open(settings.database_path, url=url)
        limits = QueueLimits(
            guild_concurrency=settings.queue_guild_concurrency,
            global_concurrency=settings.queue_global_concurrency,
            member_pending_max=settings.queue_member_pending_max,
            guild_length_max=settings.queue_guild_length_max,
        )
        if self.store.shared:
            self.fleet = Fleet(
                self.store, limits, shard_count=settings.shard_count,
                shards=settings.shard_ids, lease_seconds=settings.job_lease_seconds,
            )  # fmt: skip
            await self.fleet.join()
        budget = RequestBudget(
            settings.segmind_requests_per_minute,
            record=None if self.store.shared else self.store,
            shared=self.store if self.store.shared else None,
        )
        budget.restore(
            await self.store.recent_sends(since=time.time() - budget.window),
            await self.store.rate_limited_until(),
        )
        self.segmind = SegmindClient(
            self.session,
            settings.segmind_api_key.get_secret_value(),
            base_url=settings.segmind_base_url,
            upload_url=settings.segmind_upload_url,
            budget=budget,
            retry=RetryPolicy(
                attempts=settings.segmind_retry_attempts,
                base_delay=settings.segmind_retry_base_delay,
            ),
        )
        self.life = Lifecycle(self.store)
        self.images = ImageKeeper(
            settings.database_path.parent / "images",
            link_works=self._link_works,
            upload=self.segmind.upload_image,
        )
        self.durations = Durations(self.store)
        runner = JobRunner(
            self.segmind,
            self.life,
            self.images,
            self.durations,
            poll_interval_max=settings.segmind_poll_interval_max,
        )
        self.jobs = JobService(
            self.life,
            Quotas(self.store),
            limits,
            runner,
            self.fleet,
        )
        self.housekeeper = Housekeeper(
            self.store,
            retention_days=settings.job_retention_days,
            downloads=settings.database_path.parent / "downloads",
            images=self.images,
        )
        self.housekeeper.sweep_downloads()
        self.sender = Sender(
            self,
            self.life,
            fetch_video=self._fetch_video,
            place=self.jobs.place,
            estimate=self.durations.estimate,
            status_interval=settings.status_update_seconds,
            retry=MessageRetry(base=settings.message_retry_seconds),
            lease=self.fleet.lease if self.fleet is not None else None,
            carried=self.carries,
        )
        for extension in EXTENSIONS:
            await self.load_extension(extension)
        await self.sync_commands_if_changed()
        await self.jobs.recover()
        self.jobs.keep_leases()  # before the sender takes its first message under one
        # The queue starts once Discord has said which servers the bot is in (on_ready).
        self.sender.start()
        self.housekeeper.start()
        self.loop_lag.start()
        self.heartbeat = Heartbeat(
            health_file(settings.database_path),
            {
                "discord_connected": self._connected,
                "database_writable": self.store.check_writable,
                "loop_lag_p99_ms": self._loop_lag_ms,
                "rss_mb": rss_mb,
            },
            interval=settings.health_interval_seconds,
        )
        self.heartbeat.start()
        self._set_up.set()

    def _stop_on_signals(self) -> None:
        # `docker stop` sends SIGTERM, Ctrl-C SIGINT: both stop starting submits, let those on
        # the wire be answered and recorded, then close; `python -m bot` then exits 0.
        loop = asyncio.get_running_loop()
        for stop in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(stop, self._stop_requested, stop)

    def _stop_requested(self, received: signal.Signals) -> None:
        if self._shutdown is None:
            log.info("%s received: stopping (up to %.0f s for submits on the wire)",
                     received.name, self.settings.shutdown_grace_seconds)  # fmt: skip
            self._shutdown = asyncio.create_task(self._stop_after_setup(), name="shutdown")

    async def _stop_after_setup(self) -> None:
        # A stop during start-up waits for it: closing what setup_hook is still building would
        # crash it (and it starts no submit: the queue starts later, on_ready).
        await self._set_up.wait()
        await self.close()

    async def _link_works(self, url: str) -> bool:
        """Whether an input image's link still answers (Discord's expire after about a day)."""
        try:
            async with self.session.head(
                url, timeout=aiohttp.ClientTimeout(total=15), allow_redirects=True
            ) as response:
                return response.status < 400
        except (aiohttp.ClientError, TimeoutError):
            return False

    async def _fetch_video(self, job: Job) -> Path:
        assert job.video_url is not None
        return await self.segmind.download(
            job.video_url,
            max_bytes=self.settings.segmind_download_max_bytes,
            directory=self.housekeeper.downloads,
        )

    def carries(self, guild_id: int) -> bool:
        """Whether this process's shards carry the server (Discord's rule for shards)."""
        if self.shard_ids is None or self.shard_count is None:
            return True
        return (guild_id >> 22) % self.shard_count in self.shard_ids

    async def _connected(self) -> bool:
        return self._gateway_up and not self.is_closed()

    # discord.py keeps is_ready() true while it reconnects; these events say what is true now.
    async def on_connect(self) -> None:
        self._gateway_up = True

    async def on_resumed(self) -> None:
        self._gateway_up = True

    async def on_disconnect(self) -> None:
        self._gateway_up = False

    async def _loop_lag_ms(self) -> float:
        return round(self.loop_lag.percentile(0.99) * 1000, 1)

    async def sync_commands_if_changed(self) -> bool:
        """Sync the global commands on first start and whenever their definition changed."""
        payload = [command.to_dict(self.tree) for command in self.tree.get_commands()]
        digest = hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()
        if await self.store.get_meta(TREE_HASH_KEY) == digest:
            return False
        synced = await self.tree.sync()
        await self.store.set_meta(TREE_HASH_KEY, digest)
        log.info("synced %d application commands", len(synced))
        return True

    async def on_app_command_error(
        self, interaction: discord.Interaction, error: app_commands.AppCommandError
    ) -> None:
        """Every command error, answered privately in words; details only in the log."""
        if isinstance(error, app_commands.MissingPermissions):
            text = "You need the Manage Server permission to use this command."
        elif isinstance(error, app_commands.NoPrivateMessage):
            text = "This command works in servers only."
        elif isinstance(error, app_commands.CommandSignatureMismatch):
            missing = _missing_options(interaction)
            text = (
                f"{', '.join(f'`{name}`' for name in missing)} is required."
                if missing
                else "This command's options did not arrive as expected; please try again."
            )
        else:
            log.error("command %s failed", interaction.command and interaction.command.name,
                      exc_info=error)  # fmt: skip
            text = "Something went wrong on the bot's side. An admin has the details in the log."
        if interaction.response.is_done():
            await interaction.edit_original_response(content=text)
        else:
            await interaction.response.send_message(text, ephemeral=True)

    async def on_ready(self) -> None:
        log.info("connected to Discord as %s in %d guild(s)", self.user, len(self.guilds))
        if not self._queue_started:
            # Before anything waiting is sent: nothing goes out for a server the bot has left.
            await self.jobs.servers_left_meanwhile(
                {guild.id for guild in self.guilds}, self.carries
            )
            self.jobs.start()
            self._queue_started = True

    async def close(self) -> None:
        # Every caller (a signal, discord.py's own exit) waits for the one teardown to finish,
        # so the process never ends with the store half closed.
        if self._teardown is None:
            self._teardown = asyncio.ensure_future(self._close_everything())
        await asyncio.shield(self._teardown)

    async def _close_everything(self) -> None:
        if self.heartbeat is not None:
            await self.heartbeat.stop(discord_connected=False)
        self.loop_lag.stop()
        if hasattr(self, "jobs"):
            await self.jobs.close(grace=self.settings.shutdown_grace_seconds)
        if hasattr(self, "sender"):
            await self.sender.stop()
        if hasattr(self, "jobs"):
            await self.jobs.leave_fleet()  # last of what sends: nothing it held is under way
        if hasattr(self, "housekeeper"):
            await self.housekeeper.stop()
        if hasattr(self, "session"):
            await self.session.close()
        if hasattr(self, "store"):
            await self.store.close()
        # Last: once discord.py is closed, `start()` returns and the process may end.
        await super().close()


def _missing_options(interaction: discord.Interaction) -> list[str]:
    """Required options the command declares that the interaction did not carry."""
    command = interaction.command
    if not isinstance(command, app_commands.Command):
        return []
    given = {option.get("name") for option in (interaction.data or {}).get("options", [])}
    return [
        p.display_name for p in command.parameters if p.required and p.display_name not in given
    ]


def run(settings: Settings) -> int:
    """Run the bot until it is stopped; the exit status of `python -m bot`."""
    quiet_discord_logs()  # before the bot is built: discord.py warns about voice at once
    bot = VideoBot(settings, handle_signals=True)
    try:
        asyncio.run(_run(bot, settings))
    except KeyboardInterrupt:
        return 0
    except discord.LoginFailure:
        print("Configuration error: DISCORD_TOKEN was refused by Discord", file=sys.stderr)
        return 1
    except GaveUp as error:
        say_gave_up(error)
        return 1
    except ShardsTaken as error:
        print(f"Cannot join the fleet: {error}. Give each process its own SHARD_IDS.",
              file=sys.stderr)  # fmt: skip
        return 1
    return 0


async def _run(bot: VideoBot, settings: Settings) -> None:
    async with bot:
        await log_in(
            bot, settings.discord_token.get_secret_value(), settings.discord_connect_attempts
        )
        await bot.connect(reconnect=True)
