"""A worker in its own process, for crash-recovery tests and scripts/recovery.py.

    python -m tests.integration.worker_proc --url URL --prefix P --task-queue Q \
        --module sdk.examples.order --liveness 1.0

The module's workflows and activities are its `WORKFLOWS` and `ACTIVITIES` lists when it
has them, else every decorated class and function in it. It prints `ready <identity>`
on stdout once the worker has joined the task queue, so a parent can wait for that
before it kills or signals anything. It deliberately does not use the CLI: the tests
that kill workers must not depend on it.

`WorkerProcess` starts one from a parent (a test or scripts/recovery.py) and kills it.
"""

from __future__ import annotations

import argparse
import importlib
import inspect
import os
import select
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path
from types import ModuleType
from typing import IO, Any

import anyio

from sdk import Client, Worker, configure_logging
from sdk._definitions import _ACTIVITY, _WORKFLOW

#: The repository root: `python -m tests.integration.worker_proc` runs from there.
ROOT = Path(__file__).resolve().parents[2]


class WorkerProcess:
    """One worker subprocess. Always `stop()` or `kill()` it (in a finally block)."""

    def __init__(
        self,
        url: str,
        prefix: str,
        task_queue: str,
        module: str,
        *,
        liveness: float = 1.0,
        max_activities: int = 100,
        max_deliveries: int = 5,
        env: dict[str, str] | None = None,
        log: IO[bytes] | None = None,
        durability: str | None = None,
    ) -> None:
        #: Chosen here, so a parent can look up its pending tasks after a kill.
        self.identity = f"proc-{uuid.uuid4().hex[:10]}"
        self.args = [
            sys.executable,
            "-m",
            "tests.integration.worker_proc",
            "--url",
            url,
            "--prefix",
            prefix,
            "--task-queue",
            task_queue,
            "--module",
            module,
            "--liveness",
            str(liveness),
            "--identity",
            self.identity,
            "--max-activities",
            str(max_activities),
            "--max-deliveries",
            str(max_deliveries),
            *(["--durability", durability] if durability else []),
        ]
        self.env = {**os.environ, **(env or {})}
        self.log = log
        self.ready = False
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> WorkerProcess:
        self.proc = subprocess.Popen(
            self.args,
            cwd=ROOT,
            env=self.env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=self.log if self.log is not None else subprocess.DEVNULL,
            start_new_session=True,  # a Ctrl-C of the parent must not reach it
        )
        return self

    def wait_ready(self, timeout: float = 30.0) -> str:
        """Block until the worker has joined its task queue; returns its identity."""
        assert self.proc is not None and self.proc.stdout is not None
        if self.ready:
            return self.identity
        deadline = time.monotonic() + timeout
        # Activities may print before the announcement: a worker that joins a queue with
        # a dead worker's tasks claims and runs them within its first 100 ms.
        while True:
            line = b""
            while not line.endswith(b"\n"):
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"worker {self.proc.pid} not ready in {timeout}s")
                ready, _, _ = select.select([self.proc.stdout], [], [], left)
                if ready:
                    chunk = os.read(self.proc.stdout.fileno(), 1)
                    if not chunk:
                        raise RuntimeError(f"worker exited at start (code {self.proc.wait()})")
                    line += chunk
            words = line.decode().split()
            if words[:1] == ["ready"]:
                assert words == ["ready", self.identity], line
                break
        self.ready = True
        return self.identity

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def send(self, sig: signal.Signals) -> None:
        if self.alive():
            assert self.proc is not None
            os.kill(self.proc.pid, sig)

    def kill(self) -> None:
        """SIGKILL: the worker gets no chance to hand anything back."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        self._close()

    def stop(self, timeout: float = 15.0) -> None:
        """SIGTERM (graceful drain), then SIGKILL if it does not exit in time."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGCONT)  # in case a test froze it
            self.proc.terminate()
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._close()

    def _close(self) -> None:
        if self.proc is not None and self.proc.stdout is not None:
            self.proc.stdout.close()


def discover(module: ModuleType) -> tuple[list[type], list[Callable[..., Any]]]:
    workflows: list[type] | None = getattr(module, "WORKFLOWS", None)
    activities: list[Callable[..., Any]] | None = getattr(module, "ACTIVITIES", None)
    members = [m for _, m in inspect.getmembers(module)]
    if workflows is None:
        workflows = [m for m in members if inspect.isclass(m) and hasattr(m, _WORKFLOW)]
    if activities is None:
        activities = [m for m in members if callable(m) and hasattr(m, _ACTIVITY)]
    return list(workflows), list(activities)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    p.add_argument("--url", required=True)
    p.add_argument("--prefix", required=True)
    p.add_argument("--task-queue", required=True)
    p.add_argument("--module", required=True)
    p.add_argument("--liveness", type=float, default=5.0, help="liveness timeout (s)")
    p.add_argument("--identity", default=None)
    p.add_argument("--max-activities", type=int, default=100, help="concurrent activities")
    p.add_argument("--max-deliveries", type=int, default=5, help="before dead-lettering")
    p.add_argument("--durability", default=None, help="the client's durability mode")
    p.add_argument("--log-level", default=os.environ.get("REDURABLE_TEST_WORKER_LOG", "WARNING"))
    return p.parse_args(argv)


async def serve(args: argparse.Namespace) -> None:
    workflows, activities = discover(importlib.import_module(args.module))
    client = await Client.connect(args.url, prefix=args.prefix, durability=args.durability)
    try:
        worker = Worker(
            client,
            task_queue=args.task_queue,
            workflows=workflows,
            activities=activities,
            liveness_timeout=args.liveness,
            identity=args.identity,
            max_concurrent_activities=args.max_activities,
            max_deliveries=args.max_deliveries,
        )
        async with anyio.create_task_group() as tg:
            tg.start_soon(_announce, client, worker)
            await worker.run()
            tg.cancel_scope.cancel()
    finally:
        await client.close()


async def _announce(client: Client, worker: Worker) -> None:
    """Print `ready <identity>` once the worker polls its task queue."""
    key = client.keys.workers(worker.task_queue)
    # run() beats once, then starts its loops, whose reads go out at once.
    while await client.redis.zscore(key, worker.identity) is None:
        await anyio.sleep(0.01)
    await anyio.sleep(0.2)
    print(f"ready {worker.identity}", flush=True)


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    configure_logging(level=args.log_level)
    anyio.run(serve, args, backend="asyncio")
    sys.exit(0)


if __name__ == "__main__":
    main()
