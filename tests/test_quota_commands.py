"""/quota and /usage end to end: admins set limits, members see them, refusals explain."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from bot.simulator import Simulator
from tests.bot_world import World, bot_world


@pytest.fixture
async def world(simulator: Simulator, tmp_path: Path) -> AsyncIterator[World]:
    simulator.speed = 0.005
    async with bot_world(simulator, tmp_path / "bot.db") as built:
        yield built


async def answer(world: World, member, command: str, options: dict | None = None, **kw) -> str:
    return await world.reply_to(await world.slash(member, command, options, **kw))


async def test_a_member_over_their_limit_is_refused_with_the_numbers(world: World) -> None:
    assert "may now spend 1 credit" in await answer(
        world, world.manager, "quota set-default", {"limit": 1}
    )
    assert "Queued as job" in await answer(world, world.alice, "grok-video", {"prompt": "one"})

    refusal = await answer(world, world.alice, "grok-video", {"prompt": "two"})

    assert refusal.startswith("You have used 1 of your 1 credit this day")
    assert "0 left" in refusal and "reset <t:" in refusal
    assert len(world.simulator.requests("submit")) <= 1
    await world.delivered()
    assert len(world.simulator.requests("submit")) == 1


@pytest.mark.parametrize(
    ("command", "options"),
    [
        ("quota set-default", {"limit": 0}),
        ("quota set-user", {"limit": 0}),
        ("quota set-guild", {"limit": 0}),
        ("quota cost", {"model": "svd", "credits": 100}),
        ("quota period", {"period": "month"}),
        ("quota show", {}),
        ("quota reset", {}),
    ],
)
async def test_members_cannot_use_quota_commands(world: World, command: str, options: dict) -> None:
    if command == "quota set-user":
        options = {**options, "user": world.alice}
    reply = await answer(world, world.alice, command, options, strict=False)

    assert "Manage Server" in reply
    assert "Queued as job" in await answer(world, world.alice, "grok-video", {"prompt": "ok"})
    assert "no limit" in await answer(world, world.alice, "usage")


async def test_forged_quota_values_are_refused(world: World) -> None:
    bad_period = await answer(
        world, world.manager, "quota period", {"period": "year"}, strict=False
    )
    bad_cost = await answer(
        world, world.manager, "quota cost", {"model": "svd", "credits": -5}, strict=False
    )

    assert "day, week or month" in bad_period and "0 to 1000" in bad_cost
    assert "Queued as job" in await answer(world, world.alice, "grok-video", {"prompt": "ok"})


async def test_admins_set_costs_periods_overrides_and_budgets(world: World) -> None:
    manager = world.manager
    await answer(world, manager, "quota cost", {"model": "grok-imagine-video", "credits": 3})
    await answer(world, manager, "quota period", {"period": "week"})
    await answer(world, manager, "quota set-default", {"limit": 5})
    await answer(world, manager, "quota set-user", {"user": world.bob, "limit": -1})
    await answer(world, manager, "quota set-guild", {"limit": 100})
    await answer(world, world.alice, "grok-video", {"prompt": "costly"})
    await world.delivered()

    usage = await answer(world, world.alice, "usage")
    shown = await answer(world, manager, "quota show", {"user": world.alice})

    assert "You have used 3 of your 5 credits this week; 2 left" in usage
    assert "/grok-video 3" in usage
    assert "Each member: 5 credits. Server budget: 100 credits, 3 used." in shown
    assert f"<@{world.alice.id}>: 3 used of 5 credits." in shown
    assert f"Top spenders: <@{world.alice.id}> 3" in shown
    assert "no limit" in await answer(world, world.bob, "usage")


async def test_a_reset_gives_a_member_their_credits_back(world: World) -> None:
    await answer(world, world.manager, "quota set-default", {"limit": 1})
    await answer(world, world.alice, "grok-video", {"prompt": "one"})
    await world.delivered()

    assert "Usage reset" in await answer(world, world.manager, "quota reset", {"user": world.alice})

    assert "Queued as job" in await answer(world, world.alice, "grok-video", {"prompt": "two"})


async def test_one_guilds_quota_never_touches_another(world: World) -> None:
    other = world.fake.add_guild("Elsewhere")
    admin = other.add_member("admin", manage_guild=True)
    await world.fake.wait_for(lambda: world.bot.get_guild(other.id) is not None)

    reply = await world.reply_to(
        await world.fake.slash(other, admin, "quota set-default", {"limit": 0})
    )
    assert "0 credits" in reply

    assert "Queued as job" in await answer(world, world.alice, "grok-video", {"prompt": "fine"})
    assert "no limit" in await answer(world, world.alice, "usage")
