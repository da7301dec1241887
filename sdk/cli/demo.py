"""`redurable demo`: the food-delivery order end to end, with a worker killed half-way.

The workers are real subprocesses (`redurable worker sdk.examples.order`), so the kill is
a real `kill -9`: whatever the first worker had in memory is gone, and the second one
carries on from the history in Redis.
"""

from __future__ import annotations

import collections
import os
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import IO, Annotated, Any

import anyio
import typer
from rich.text import Text

from engine.errors import QueryError
from engine.keys import DEFAULT_PREFIX
from sdk._devserver import EmbeddedServer, ServerError
from sdk._present import to_json
from sdk.cli.common import PrefixOption, UrlOption, fail, stdout, with_client
from sdk.cli.inspect import print_history
from sdk.client.client import Client
from sdk.client.handle import WorkflowHandle
from sdk.examples.order import TASK_QUEUE, Order

MODULE = "sdk.examples.order"
PRODUCT_ID = 3


class Clock:
    """Prints each step of the story with the seconds since the demo started."""

    def __init__(self) -> None:
        self.started = time.monotonic()

    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def say(self, message: str, style: str = "") -> None:
        line = Text(f"{self.elapsed():5.1f}s  ", style="dim")
        line.append(Text.from_markup(message, style=style))
        stdout.print(line, soft_wrap=True)


class WorkerProcess:
    """`redurable worker sdk.examples.order` as a child process, its output prefixed."""

    def __init__(self, number: int, url: str, prefix: str, ledger: Path) -> None:
        self.number = number
        self.identity = f"demo-worker-{number}-{uuid.uuid4().hex[:6]}"
        args = [sys.executable, "-m", "sdk.cli.main", "worker", MODULE, "--task-queue", TASK_QUEUE]
        args += ["--redis-url", url, "--prefix", prefix, "--identity", self.identity]
        args += ["--log-level", "WARNING"]
        env = {**os.environ, "REDURABLE_ORDER_LEDGER": str(ledger), "PYTHONUNBUFFERED": "1"}
        # Its own session: a Ctrl-C of the demo must not reach it (we stop it ourselves).
        self.proc = subprocess.Popen(
            args,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        assert self.proc.stdout is not None
        self.output: collections.deque[str] = collections.deque(maxlen=20)
        self._reader = threading.Thread(target=self._relay, args=(self.proc.stdout,), daemon=True)
        self._reader.start()

    @property
    def pid(self) -> int:
        return self.proc.pid

    def _relay(self, stream: IO[bytes]) -> None:
        for raw in stream:
            text = raw.decode(errors="replace").rstrip()
            self.output.append(text)
            line = Text(f"        worker {self.number} │ ", style="magenta")
            line.append(Text.from_ansi(text))  # its log lines may carry colours
            stdout.print(line, soft_wrap=True)

    async def wait_ready(self, client: Client, timeout: float = 30.0) -> None:
        """Until the worker's first heartbeat: then it polls the task queue."""
        key = client.keys.workers(TASK_QUEUE)
        with anyio.move_on_after(timeout):
            while await client.redis.zscore(key, self.identity) is None:
                if self.proc.poll() is not None:
                    await anyio.sleep(0.2)  # let the relay print why
                    fail(f"worker {self.number} exited at start: {' | '.join(self.output)}")
                await anyio.sleep(0.05)
            return
        fail(f"worker {self.number} did not start polling within {timeout:g}s")

    def kill(self) -> None:
        self.proc.kill()  # SIGKILL: no drain, no goodbye
        self.proc.wait()

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()  # SIGTERM: the worker drains gracefully
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._reader.join(2)
        if self.proc.stdout is not None:
            self.proc.stdout.close()


def demo(
    redis_url: UrlOption = None,
    prefix: PrefixOption = DEFAULT_PREFIX,
    real_timeouts: Annotated[
        bool, typer.Option("--real-timeouts", help="Wait 60 s like the story, not --wait.")
    ] = False,
    wait: Annotated[
        float,
        typer.Option(min=1.0, help="Seconds of each signal wait and of the rating delay."),
    ] = 5.0,
) -> None:
    """The food-delivery order end to end, with a worker killed half-way.

    Starts an embedded server unless a URL is configured, runs the order with a worker
    subprocess, kills it with SIGKILL while the order waits, and lets a new worker
    carry on.
    """
    seconds = 60.0 if real_timeouts else wait
    clock = Clock()
    server: EmbeddedServer | None = None
    if redis_url is None:
        try:
            server = EmbeddedServer().start()  # a free port: never clashes with `dev`
        except ServerError as exc:
            fail(f"cannot start the embedded server: {exc}")
        url = server.url
        clock.say(f"Started an embedded Valkey server at [bold]{url}[/] (gone when we stop)")
    else:
        url = redis_url
        clock.say(f"Using the server at [bold]{url}[/], namespace {prefix!r}")
    ledger_fd, ledger_name = tempfile.mkstemp(prefix="redurable-demo-ledger-")
    os.close(ledger_fd)
    ledger = Path(ledger_name)
    workers: list[WorkerProcess] = []
    try:
        with_client(url, prefix, lambda client: _story(client, clock, url, prefix, seconds,
                                                       ledger, workers))
    finally:
        for w in workers:
            w.stop()
        if server is not None:
            server.stop()
        ledger.unlink(missing_ok=True)


async def _story(
    client: Client,
    clock: Clock,
    url: str,
    prefix: str,
    seconds: float,
    ledger: Path,
    workers: list[WorkerProcess],
) -> None:
    workers.append(WorkerProcess(1, url, prefix, ledger))
    await workers[0].wait_ready(client)
    clock.say(f"Worker 1 (pid {workers[0].pid}) polls task queue {TASK_QUEUE!r}")

    workflow_id = f"order-{uuid.uuid4().hex[:6]}"
    args = [PRODUCT_ID, seconds]
    handle = await client.start_workflow(Order.run, *args, id=workflow_id, task_queue=TASK_QUEUE)
    # The arguments as sent, as JSON like the history's input: `redurable workflow start
    # Order --input 3 --input 5.0` would start the same order.
    clock.say(
        f"Started workflow [bold]{workflow_id}[/]: Order.run"
        f"({', '.join(to_json(arg, indent=None) for arg in args)})"
    )
    watch = StatusWatch(clock, handle)
    await watch.until("Paid")
    await _until_waiting(handle)  # its timer for `picked_up` is in Redis

    workers[0].kill()
    clock.say(
        f"[bold red]kill -9[/] worker 1 (pid {workers[0].pid}) while the order waits for "
        "picked_up",
    )
    desc = await handle.describe()
    clock.say(
        f"No worker runs. Redis still has the order: status {desc.status}, "
        f"{desc.history_length} events in its history"
    )

    workers.append(WorkerProcess(2, url, prefix, ledger))
    clock.say(f"Started worker 2 (pid {workers[1].pid}): it will replay the history")
    await handle.signal(Order.picked_up)
    clock.say("Sent signal [bold]picked_up[/] (stored in Redis even before a worker reads it)")
    await workers[1].wait_ready(client)
    await watch.until("Picked up")
    await handle.signal(Order.delivered)
    clock.say("Sent signal [bold]delivered[/]")
    await watch.until("Delivered")
    clock.say(f"Durable sleep of {seconds:g}s before asking for a rating (a timer in Redis)")

    with anyio.fail_after(seconds + 60):
        result = await handle.result()
    await watch.until("Completed")
    clock.say(f"Workflow result: [bold green]{result}[/]")
    status = await handle.query(Order.get_status)
    clock.say(
        f"get_status after completion (answered by replay): {to_json(status, indent=None)}"
    )

    events = [e async for e in handle.fetch_history()]
    print_history(events, title=f"History of {workflow_id}")
    _report_side_effects(clock, ledger, workflow_id)
    clock.say("[bold green]Done.[/] The order finished as if no worker had died.")


class StatusWatch:
    """Polls the `get_status` query and prints each new state of the order."""

    def __init__(self, clock: Clock, handle: WorkflowHandle) -> None:
        self.clock = clock
        self.handle = handle
        self.last: str | None = None

    async def until(self, state: str, timeout: float = 60.0) -> None:
        with anyio.fail_after(timeout):
            while True:
                try:
                    status: dict[str, Any] = await self.handle.query(Order.get_status, timeout=2)
                except QueryError:
                    await anyio.sleep(0.1)  # a worker still starting up: ask again
                    continue
                if status["state"] != self.last:
                    self.last = status["state"]
                    self.clock.say(f"get_status → state [bold cyan]{self.last}[/]")
                if self.last == state:
                    return
                if self.last in ("Refunded", "Payment failed"):
                    fail(f"the order went wrong: state {self.last!r}")
                await anyio.sleep(0.1)


async def _until_waiting(handle: WorkflowHandle) -> None:
    """Until the history shows the timer of the `picked_up` wait: killing the worker
    then loses nothing but memory."""
    with anyio.fail_after(30):
        while True:
            if any([e.type == "TimerStarted" async for e in handle.fetch_history()]):
                return
            await anyio.sleep(0.05)


def _report_side_effects(clock: Clock, ledger: Path, workflow_id: str) -> None:
    """Each activity appended a line to the ledger: count that each ran once."""
    counts = collections.Counter(
        line.split(" ", 3)[2]
        for line in ledger.read_text(encoding="utf-8").splitlines()
        if line.startswith(workflow_id + " ")
    )
    again = sorted(a for a, n in counts.items() if n > 1)
    if again:
        # Allowed (activities are at-least-once), but not what normally happens.
        clock.say(f"Side effects: {len(counts)} activities; ran more than once: {again}")
    else:
        clock.say(f"Side effects: {len(counts)} activities, each done exactly once")
