"""What the data converter (sdk/converter.py) costs per call, next to the codec alone.

    python -m scripts.bench.converter
    python -m scripts.bench.converter --number 200000

CPU time of this process (time.process_time), best of 5 rounds: wall time on a shared
machine mostly measures the other processes. No server needed.
"""

from __future__ import annotations

import argparse
import time
import timeit
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from engine.codec import MsgpackCodec
from sdk import activity
from sdk._payload_hints import hints_of


@dataclass
class Line:
    sku: str
    quantity: int


@dataclass
class Request:
    product_id: int
    lines: list[Line]
    placed_at: datetime


@activity.defn
async def charge(product_id: int, amount: float) -> str:
    return f"{product_id}:{amount}"


@activity.defn
async def ship(request: Request) -> Request:
    return request


def cases() -> list[tuple[str, Callable[[], Any]]]:
    codec = MsgpackCodec()
    scalars, nested = hints_of(charge), hints_of(ship)
    request = Request(3, [Line("a", 1), Line("b", 2)], datetime(2026, 1, 1, tzinfo=UTC))
    wire = codec.decode(codec.encode(nested.encode_args([request])))
    return [
        ("codec alone, 2 scalars", lambda: codec.encode([3, 9.5])),
        ("converter + codec, 2 scalars", lambda: codec.encode(scalars.encode_args([3, 9.5]))),
        ("decode_args, 2 scalars", lambda: scalars.decode_args([3, 9.5])),
        ("encode_args, dataclass (2 nested, a datetime)", lambda: nested.encode_args([request])),
        ("decode_args, dataclass (2 nested, a datetime)", lambda: nested.decode_args(wire)),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--number", type=int, default=50_000, help="calls per round")
    args = parser.parse_args()
    for label, call in cases():
        best = min(timeit.repeat(call, number=args.number, repeat=5, timer=time.process_time))
        print(f"{label:48s} {best / args.number * 1e6:7.2f} us")


if __name__ == "__main__":
    main()
