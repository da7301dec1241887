"""Pieces the scenarios share: a pool of worker processes (tests/integration/
worker_proc.py) that can be killed and replaced, starting the Storm workflows, waiting
for them, clearing a namespace afterwards, the server a scenario runs on, and running
a pytest module as a scenario."""

from __future__ import annotations

import argparse
import os
import random
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Mapping
from contextlib import ExitStack
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, TypeVar

import anyio
from redis.asyncio import Redis
from redis.exceptions import RedisError

from engine.errors import DurabilityError
from scripts.chaos import ledger
from scripts.chaos.workflows import Storm, storm_expected
from sdk import Client, WorkflowExecutionStatus
from sdk._devserver import EmbeddedServer
from tests.integration.worker_proc import WorkerProcess

if TYPE_CHECKING:
    from _typeshed import DataclassInstance

ROOT = Path(__file__).resolve().parents[2]
MODULE = "scripts.chaos.workflows"
TASK_QUEUE = "chaos"
T = TypeVar("T")
#: A scenario's config (a dataclass).
Config = TypeVar("Config", bound="DataclassInstance")


@dataclass(frozen=True)
class StormLoad:
    """The load of the Storm scenarios (kill storm, Redis crash, connection faults):
    Storm workflows (5 activities, 2 timers) on a pool of worker processes. Each
    scenario's config adds its faults and may change these defaults."""

    workflows: int = 1000
    workers: int = 4
    #: The workers' liveness timeout (s): how soon a dead worker's tasks are claimed.
    liveness: float = 1.0
    #: Activity duration and timer length (s) of each Storm workflow.
    delay: float = 0.05
    timer: float = 0.2
    #: The faults stop after this long even if workflows are still open (s).
    chaos_max: float = 900.0


def sized(cfg: Config, count: int | None, field_name: str = "workflows") -> Config:
    """`cfg` resized by the runner's `--workflows` (into `field_name`) when it is given."""
    return replace(cfg, **{field_name: count}) if count else cfg


class WorkerPool:
    """Worker subprocesses for one scenario; `close()` kills every one still alive."""

    def __init__(
        self,
        url: str,
        prefix: str,
        *,
        ledger_path: Path,
        liveness: float = 1.0,
        # A task whose holder dies over and over would be dead-lettered as poison after
        # max_deliveries (rule 6): in a kill storm that is the storm, not poison.
        max_deliveries: int = 1000,
        log: IO[bytes] | None = None,
        env: Mapping[str, str] | None = None,
        module: str = MODULE,
        task_queue: str = TASK_QUEUE,
        durability: str | None = None,
    ) -> None:
        self.url, self.prefix, self.liveness = url, prefix, liveness
        self.durability = durability
        self.module, self.task_queue = module, task_queue
        self.max_deliveries = max_deliveries
        self.env = {ledger.ENV: str(ledger_path), **(env or {})}
        self.log = log
        self.live: list[WorkerProcess] = []
        self.kills = 0

    def spawn(self) -> WorkerProcess:
        proc = WorkerProcess(
            self.url,
            self.prefix,
            self.task_queue,
            self.module,
            liveness=self.liveness,
            max_deliveries=self.max_deliveries,
            env=self.env,
            log=self.log,
            durability=self.durability,
        ).start()
        self.live.append(proc)
        return proc

    async def start(self, count: int) -> None:
        """Spawn `count` workers and wait until each one is ready."""
        for _ in range(count):
            self.spawn()
        await self.wait_ready()

    async def wait_ready(self) -> None:
        for proc in list(self.live):
            await anyio.to_thread.run_sync(proc.wait_ready)

    async def ready(self, client: Client) -> list[WorkerProcess]:
        """Live workers that have joined the task queue (beaten at least once)."""
        pipe = client.redis.pipeline(transaction=False)
        for proc in self.live:
            pipe.zscore(client.keys.workers(self.task_queue), proc.identity)
        scores = await pipe.execute()
        return [p for p, s in zip(self.live, scores, strict=True) if s is not None]

    def kill(self, victim: WorkerProcess) -> WorkerProcess:
        """SIGKILL `victim` (returns once it is reaped) and start its replacement."""
        victim.kill()
        self.kills += 1
        self.live.remove(victim)
        return self.spawn()

    def close(self) -> None:
        for proc in self.live:
            proc.kill()
        self.live.clear()


@dataclass
class Started:
    """Workflows the client was told started, and those whose start call failed (they
    may or may not exist), each with its expected result."""

    expected: dict[str, int] = field(default_factory=dict)
    maybe: dict[str, int] = field(default_factory=dict)
    start_errors: int = 0


async def start_storms(
    client: Client, count: int, started: Started, delay: float, timer: float, *,
    pause: float = 0.0, retry_errors: bool = False, tag: str = "storm",
) -> None:
    """Start `count` Storm workflows. A start that raises (connection lost, or applied
    but not confirmed durable) goes to `started.maybe`; with `retry_errors` it is
    retried under a new id until one works."""
    for i in range(count):
        attempt = 0
        while True:
            wf_id = f"{tag}-{i}" if attempt == 0 else f"{tag}-{i}-r{attempt}"
            try:
                await client.start_workflow(
                    Storm.run, i, delay, timer, id=wf_id, task_queue=TASK_QUEUE
                )
                started.expected[wf_id] = storm_expected(i)
                break
            except (RedisError, OSError, DurabilityError):
                started.start_errors += 1
                started.maybe[wf_id] = storm_expected(i)
                if not retry_errors:
                    break
                attempt += 1
                await anyio.sleep(0.1)
        if pause:
            await anyio.sleep(pause)


async def open_count(client: Client, ids: list[str], redis: Redis | None = None) -> int:
    """How many of `ids` are still running. A missing one is not: it was lost, which
    is the checker's to report, and waiting for it would never end. `redis`: read
    through this connection instead of the client's (one outside the faults)."""
    pipe = (redis or client.redis).pipeline(transaction=False)
    for wf_id in ids:
        pipe.hget(client.keys.workflow(wf_id), "status")
    running = WorkflowExecutionStatus.RUNNING.encode()
    return sum(1 for s in await pipe.execute() if s == running)


async def wait_closed(client: Client, ids: list[str], timeout: float,
                      redis: Redis | None = None) -> int:
    """Wait until every workflow closed or `timeout` passed; returns how many are open."""
    deadline = time.monotonic() + timeout
    while True:
        left = await open_count(client, ids, redis)
        if left == 0 or time.monotonic() > deadline:
            return left
        await anyio.sleep(0.2)


async def server_ms(client: Client) -> int:
    seconds, micros = await client.redis.time()
    return int(seconds) * 1000 + int(micros) // 1000


async def clear_namespace(redis: Any, prefix: str) -> None:
    async for key in redis.scan_iter(match=f"{prefix}:*", count=1000):
        await redis.delete(key)


async def drop_client(client: Client, prefix: str, redis: Redis | None = None) -> None:
    """Clear the scenario's namespace (through `redis` if given) and close its client,
    shielded: a run cut short must not leave its keys behind."""
    with anyio.CancelScope(shield=True):
        try:
            await clear_namespace(redis or client.redis, prefix)
        finally:
            await client.close()


def server_for(redis_url: str | None, stack: ExitStack) -> tuple[str, str]:
    """The URL to run on and how the report names it: `redis_url`, or else an embedded
    Valkey that lives as long as `stack`."""
    if redis_url:
        return redis_url, f"Redis at {redis_url}"
    return stack.enter_context(EmbeddedServer()).url, "embedded Valkey"


def run_on_server(redis_url: str | None, main: Callable[[str], Awaitable[T]]) -> T:
    """`main(url)` in a fresh event loop, on `redis_url` or an embedded Valkey."""
    with ExitStack() as stack:
        url, _ = server_for(redis_url, stack)
        return anyio.run(main, url, backend="asyncio")


def scenario_parser(doc: str | None) -> argparse.ArgumentParser:
    """A scenario module's command line: its docstring's first line, and --redis-url."""
    p = argparse.ArgumentParser(description=doc.splitlines()[0] if doc else None)
    p.add_argument("--redis-url", default=None, help="default: an embedded Valkey")
    return p


async def run_pytest(module: str, redis_url: str | None,
                     env: Mapping[str, str] | None = None) -> tuple[bool, str]:
    """Run one pytest module (on `redis_url` if given, else its default server): whether
    it passed, and the last line of its output."""
    full_env = {**os.environ, **(env or {})}
    if redis_url:
        full_env["REDURABLE_TEST_URL"] = redis_url
    command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", module]
    done = await anyio.run_process(command, cwd=ROOT, env=full_env, check=False,
                                   stderr=subprocess.STDOUT)
    last = done.stdout.decode().strip().splitlines()[-1:] or ["no output"]
    return done.returncode == 0, last[0]


def percentile(samples: list[int], q: float) -> int:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else 0


def unique_prefix(name: str) -> str:
    return f"chaos{name}{random.getrandbits(32):08x}"

