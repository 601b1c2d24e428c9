"""Memory while delivering a large video: streamed to disk from Segmind, uploaded from the file.

The bot runs as its own process against the loopback fake Discord and the simulator. It first
delivers the small sample video (the baseline), then a 200 MB one; the figure is how far its
peak resident memory (VmHWM) rose for each. Target: under 32 MB for the 200 MB video.

Run from the repository root: python bench/large_video.py [--megabytes 200]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bot.observability import peak_rss_mb, rss_mb
from bot.simulator import Simulator
from tests.bot_process import SCRIPT, environment
from tests.fakediscord import FakeDiscord, FakeGuild, FakeMember

API_KEY = "large-video-key"
TARGET_MB = 32.0
UPLOAD_LIMIT = 512 * 1024 * 1024  # a server whose uploads allow the whole video


async def deliver(fake: FakeDiscord, guild: FakeGuild, member: FakeMember, prompt: str) -> int:
    interaction = await fake.slash(
        guild, member, "grok-video", {"prompt": prompt}, attachment_size_limit=UPLOAD_LIMIT
    )

    def posted() -> int:
        for message in fake.channel_messages(guild.channel):
            if prompt in message.content and message.attachments:
                return message.attachments[0].size
        return 0

    size = await fake.wait_for(posted, timeout=300, message=f"video {prompt!r} posted")
    assert interaction.callback is not None
    return size


async def measure(megabytes: int, workdir: Path) -> dict[str, float]:
    simulator = Simulator(api_key=API_KEY, speed=0.01)
    await simulator.start()
    try:
        async with FakeDiscord() as fake:
            guild = fake.add_guild("Studio")
            member = guild.add_member("alice")
            env = environment(
                fake, simulator.url, API_KEY, workdir / "bot.db",
                segmind_poll_interval_max=0.5, log_level="WARNING",
            )  # fmt: skip
            process = await asyncio.create_subprocess_exec(
                sys.executable, str(SCRIPT), env=env, cwd=workdir
            )
            try:
                await fake.wait_for(lambda: fake.sync_count >= 1, timeout=60)
                await asyncio.sleep(1.0)
                before_small = peak_rss_mb(process.pid)
                small = await deliver(fake, guild, member, "small")
                after_small = peak_rss_mb(process.pid)
                simulator.add_fault("large_video", endpoint="submit", size=megabytes * 2**20)
                large = await deliver(fake, guild, member, "large")
                after_large = peak_rss_mb(process.pid)
                resident = rss_mb(process.pid)
            finally:
                process.kill()
                await process.wait()
    finally:
        await simulator.close()
    return {
        "small_bytes": small,
        "large_bytes": large,
        "peak_before": before_small,
        "small_rise": after_small - before_small,
        "large_rise": after_large - after_small,
        "peak_after": after_large,
        "resident_after": resident,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--megabytes", type=int, default=200)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as workdir:
        figures = asyncio.run(measure(args.megabytes, Path(workdir)))
    print(f"bot process peak RSS before any delivery: {figures['peak_before']:.1f} MB")
    print(
        f"delivering the sample video ({figures['small_bytes'] / 1024:.0f} KB, baseline):"
        f" peak rose {figures['small_rise']:.1f} MB"
    )
    print(
        f"delivering a {figures['large_bytes'] / 2**20:.0f} MB video:"
        f" peak rose {figures['large_rise']:.1f} MB"
        f" (peak {figures['peak_after']:.1f} MB, resident after {figures['resident_after']:.1f} MB)"
    )
    ok = figures["large_rise"] < TARGET_MB
    print(f"{'PASS' if ok else 'FAIL'}  rise under {TARGET_MB:.0f} MB for the large video")
    return 0


if __name__ == "__main__":
    sys.exit(main())
