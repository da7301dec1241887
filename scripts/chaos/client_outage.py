"""Scenario: clients through a server restart. A private redis-server with an
append-only file (fsync always) is SIGKILLed every `restart_every` seconds and kept
down for `down_for` seconds before it starts again from its AOF, while client tasks
(each its own `Client`, connected once) start workflows and signal them without pause.
Nobody tells the clients about the outage.

Half the clients keep the default retry time (30 s, longer than any outage here): every
one of their calls must succeed, after a retry when the outage caught it. The other
half retry for less than an outage lasts (`short_retry_ms`): calls that meet the outage
must fail with ServerUnavailableError, never another error.

What it reports, from each client's `connection_stats` and the histories read after the
run: calls attempted during an outage (interrupted), succeeded after a retry
(recovered), failed with the clear error; and duplicates, which must be 0: a workflow
with more than one start event or a run id other than the one its client was given, a
signal whose payload (unique per call) appears more than once. Acknowledged calls
missing from history (fsync always: must be 0) are reported as lost.
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio

from engine.errors import DurabilityError, ServerUnavailableError, WorkflowNotFoundError
from engine.reconnect import RetryConfig
from scripts.chaos.common import clear_namespace, unique_prefix
from scripts.chaos.server import PrivateRedis
from sdk import Client

TASK_QUEUE = "outage"


@dataclass(frozen=True)
class OutageConfig:
    clients: int = 8
    restarts: int = 10
    restart_every: float = 2.0
    down_for: float = 1.0
    #: Signals per workflow a client sends before it starts the next workflow.
    signals_per_workflow: int = 5
    #: Retry time of the short-retry half of the clients (ms), shorter than `down_for`.
    short_retry_ms: int = 300


@dataclass
class ClientLog:
    """What one client task did: calls acknowledged, and calls that failed."""

    short_retry: bool
    started: dict[str, str] = field(default_factory=dict)  # workflow id -> run id
    signals_ok: list[tuple[str, list[Any]]] = field(default_factory=list)
    clear_errors: int = 0
    #: Calls applied whose durability wait fell short (DurabilityError).
    unconfirmed: int = 0
    #: Signals refused with WorkflowNotFoundError: their workflow's acknowledged start
    #: was lost (a failover without durability), else a bug.
    not_found: int = 0
    other_errors: list[str] = field(default_factory=list)


@dataclass
class OutageReport:
    config: OutageConfig
    restarts: int = 0
    calls: int = 0
    interrupted: int = 0
    recovered: int = 0
    failed_clear: int = 0
    failed_other: list[str] = field(default_factory=list)
    duplicated: int = 0
    lost: int = 0
    #: Calls of the default-retry clients that failed (must be 0).
    default_retry_failures: int = 0
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return (self.duplicated == 0 and self.lost == 0 and not self.failed_other
                and self.default_retry_failures == 0 and self.interrupted > 0)

    def line(self) -> str:
        cfg = self.config
        return (
            f"{self.restarts} restarts ({cfg.down_for:g} s down each, every "
            f"{cfg.restart_every:g} s), {cfg.clients} clients ({cfg.clients - cfg.clients // 2} "
            f"with the default 30 s retry time, {cfg.clients // 2} with "
            f"{cfg.short_retry_ms} ms), {self.calls} calls in {self.seconds:.0f} s: "
            f"{self.interrupted} attempted during an outage, {self.recovered} succeeded "
            f"after retry, {self.failed_clear} failed with ServerUnavailableError "
            f"({self.default_retry_failures} of them on default-retry clients), "
            f"{len(self.failed_other)} failed otherwise; {self.duplicated} duplicated, "
            f"{self.lost} acknowledged calls lost"
        )


async def client_task(
    client: Client, signals: int, index: int, log: ClientLog, stop: anyio.Event
) -> int:
    """Start a workflow, signal it, start the next... until `stop`; returns the calls."""
    calls = 0
    n = 0
    while not stop.is_set():
        wf_id = f"c{index}-{n}"
        n += 1
        calls += 1
        try:
            handle = await client.start_workflow("Collect", id=wf_id, task_queue=TASK_QUEUE)
        except ServerUnavailableError:
            log.clear_errors += 1
            continue
        except DurabilityError:
            log.unconfirmed += 1
            continue
        except Exception as exc:  # anything else is a finding of the scenario
            log.other_errors.append(f"start: {type(exc).__name__}: {exc}")
            continue
        assert handle.run_id is not None
        log.started[wf_id] = handle.run_id
        for j in range(signals):
            payload = [index, n, j]
            calls += 1
            try:
                await handle.signal("add", payload)
                log.signals_ok.append((wf_id, payload))
            except ServerUnavailableError:
                log.clear_errors += 1
            except DurabilityError:
                log.unconfirmed += 1
            except WorkflowNotFoundError:
                log.not_found += 1
            except Exception as exc:
                log.other_errors.append(f"signal: {type(exc).__name__}: {exc}")
    return calls


async def run(cfg: OutageConfig, workdir: Path) -> OutageReport:
    prefix = unique_prefix("outage")
    server = PrivateRedis(workdir / f"{prefix}-redis", appendfsync="always").start()
    report = OutageReport(cfg)
    logs = [ClientLog(short_retry=i % 2 == 1) for i in range(cfg.clients)]
    clients: list[Client] = []
    began = time.monotonic()
    try:
        for log in logs:
            retry = (RetryConfig(max_elapsed_time_millis=cfg.short_retry_ms)
                     if log.short_retry else None)
            clients.append(await Client.connect(server.url, prefix=prefix, retry_config=retry))
        stop = anyio.Event()

        async def one(i: int) -> None:
            report.calls += await client_task(
                clients[i], cfg.signals_per_workflow, i, logs[i], stop)

        async with anyio.create_task_group() as tg:
            for i in range(cfg.clients):
                tg.start_soon(one, i)
            for _ in range(cfg.restarts):
                await anyio.sleep(cfg.restart_every)
                await anyio.to_thread.run_sync(server.kill)
                await anyio.sleep(cfg.down_for)
                await anyio.to_thread.run_sync(server.start)
                report.restarts += 1
            await anyio.sleep(cfg.restart_every)  # calls after the last restart too
            stop.set()
        report.seconds = time.monotonic() - began
        for client in clients:  # before _check's reads (they may meet a stale connection)
            stats = client.connection_stats
            report.interrupted += stats.interrupted
            report.recovered += stats.recovered
        for log in logs:
            report.failed_clear += log.clear_errors
            report.failed_other += log.other_errors
            report.failed_other += ["signal: workflow not found"] * log.not_found
            if not log.short_retry:
                report.default_retry_failures += log.clear_errors
        report.duplicated, report.lost = await check_histories(clients[0], logs)
        await clear_namespace(clients[0].redis, prefix)
        return report
    finally:
        with anyio.CancelScope(shield=True):
            for client in clients:
                await client.close()
            server.close()


async def check_histories(client: Client, logs: list[ClientLog]) -> tuple[int, int]:
    """(duplicated, lost) from the histories: a workflow started more than once or under
    another run id, a signal payload seen twice; an acknowledged call not there."""
    duplicated = lost = 0
    for log in logs:
        sent: dict[str, list[list[Any]]] = {}
        for wf_id, payload in log.signals_ok:
            sent.setdefault(wf_id, []).append(payload)
        for wf_id, run_id in log.started.items():
            handle = client.get_workflow_handle(wf_id)
            try:
                events = [e async for e in handle.fetch_history()]
            except WorkflowNotFoundError:
                events = []
            starts = [e for e in events if e.type == "WorkflowExecutionStarted"]
            if not starts:
                lost += 1 + len(sent.get(wf_id, []))  # the start and its signals
                continue
            if len(starts) != 1 or starts[0].attributes.get("run_id") != run_id:
                duplicated += 1
            seen = Counter(repr(e.attributes["input"][0]) for e in events
                           if e.type == "WorkflowExecutionSignaled")
            duplicated += sum(1 for count in seen.values() if count > 1)
            lost += sum(1 for p in sent.get(wf_id, []) if seen[repr(p)] == 0)
    return duplicated, lost
