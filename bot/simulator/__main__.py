"""`python -m bot.simulator`: run the Segmind stand-in until interrupted.

    python -m bot.simulator --port 8765 --speed 0.1
    python -m bot.simulator --fault rate_limit:endpoint=status,probability=0.1,count=

Point the bot at it with SEGMIND_BASE_URL=http://127.0.0.1:8765 and the same SEGMIND_API_KEY.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import sys
from typing import Any

from pydantic import ValidationError

from bot.simulator import Fault, Simulator


def parse_fault(spec: str) -> Fault:
    """`kind[:key=value,...]`, e.g. `server_error:endpoint=status,status=502,count=3`.

    An empty value means None (`count=` injects the fault every time).
    """
    kind, _, details = spec.partition(":")
    fields: dict[str, Any] = {"kind": kind}
    for pair in filter(None, details.split(",")):
        key, _, value = pair.partition("=")
        fields[key.strip()] = value.strip() or None
    try:
        return Fault.model_validate(fields)
    except ValidationError as error:
        raise argparse.ArgumentTypeError(f"bad --fault {spec!r}: {error}") from None


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bot.simulator", description="A local stand-in for Segmind's v2 API."
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8765, help="0 picks a free port")
    parser.add_argument(
        "--api-key",
        default=os.environ.get("SEGMIND_API_KEY", "simulator"),
        help="the key to accept (default: $SEGMIND_API_KEY, else 'simulator')",
    )
    parser.add_argument(
        "--speed", type=float, default=1.0, help="job duration = typical duration x speed"
    )
    parser.add_argument("--retention", type=float, default=3600.0, help="seconds a result is kept")
    parser.add_argument("--seed", type=int, default=None, help="seed for random faults")
    parser.add_argument(
        "--fault", type=parse_fault, action="append", default=[], help="kind[:key=value,...]"
    )
    return parser.parse_args(argv)


async def serve(args: argparse.Namespace) -> None:
    simulator = Simulator(
        api_key=args.api_key,
        speed=args.speed,
        retention=args.retention,
        seed=args.seed,
        faults=list(args.fault),
    )
    url = await simulator.start(args.host, args.port)
    print(f"Segmind simulator listening on {url} (speed x{args.speed:g})", flush=True)
    try:
        await asyncio.Event().wait()
    finally:
        await simulator.close()


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve(args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
