"""Scenario 5, poison tasks: while healthy workflows run, feed the task queue poison of
every kind and check that each one ends in the dead letters with its reason, that no
queue is blocked, and how much the poison slows the healthy workflows.

Poison kinds (scripts/chaos/poison_workflows.py):
- crash: an activity that kills the worker process running it (os._exit); its task is
  claimed by the next worker, which dies too, until rd_claim dead-letters it after
  max_deliveries deliveries. The pool replaces every dead worker.
- unregistered: a workflow type no worker registered (its workflow task fails each
  attempt; after max_deliveries attempts it is dead-lettered, the run stays RUNNING).
- undecodable: a workflow whose input is not MessagePack (started by a client whose
  codec writes garbage); dead-lettered like the above.
- malformed: task entries without the fields a task needs, added to the workflow and
  activity task streams by hand; dead-lettered on first read.

Latency: start -> result of each healthy workflow (one activity), p50 without poison
(baseline phase) and with poison arriving all along (poison phase); the report gives
their ratio (the goal: under 2). Healthy workflows end with the shared checker.

    python -m scripts.chaos.poison [--redis-url URL] [--healthy 300] [--poison 40]
        [--crashes 3] [--spread 20]
"""

from __future__ import annotations

import itertools
import statistics
import sys
import time
from collections import Counter
from dataclasses import dataclass, field, replace
from typing import Any

import anyio

from scripts.chaos import checker
from scripts.chaos.common import (
    drop_client,
    run_on_server,
    scenario_parser,
    unique_prefix,
    wait_closed,
)
from scripts.chaos.poison_workflows import (
    ALLOW_EXIT_ENV,
    CrashesWorker,
    CrashesWorkflowTask,
    Healthy,
)
from sdk import Client
from tests.integration.worker_proc import WorkerProcess

MODULE = "scripts.chaos.poison_workflows"
TASK_QUEUE = "poison"
KINDS = ("crash", "wfcrash", "unregistered", "undecodable", "malformed")
#: What each kind's dead-letter reason must say.
REASONS = {
    "crash": "times without completing",
    "wfcrash": "times without completing",
    "unregistered": "is not registered",
    "undecodable": "payload",
    "malformed": "malformed task entry",
}


class GarbageCodec:
    """Writes payloads no MessagePack decoder accepts (0xc1 is never used)."""

    def encode(self, value: Any) -> bytes:
        return b"\xc1garbage"

    def decode(self, data: bytes) -> Any:
        raise ValueError("GarbageCodec only writes")


@dataclass(frozen=True)
class PoisonConfig:
    healthy: int = 300
    """Healthy workflows per phase (baseline, then with poison)."""
    concurrency: int = 4
    """Healthy workflows in flight at once."""
    poison: int = 40
    """Poison items of each kind but crash, fed all through the poison phase."""
    spread: float = 20.0
    """Seconds over which the poison is fed (healthy workflows run all along)."""
    crashes: int = 3
    """Crashing workflows: each kills max_deliveries + 1 worker processes."""
    wf_crashes: int = 2
    """Workflows whose workflow code kills the worker (a poison workflow task), each
    max_deliveries worker processes."""
    workers: int = 2
    max_deliveries: int = 3
    liveness: float = 1.0
    drain: float = 90.0
    """How long to wait, after the poison phase, for every item to be dead-lettered."""
    stuck_after: float = 15.0
    """A healthy workflow without a result by then is left for the end (collateral)."""


@dataclass
class PoisonReport:
    cfg: PoisonConfig
    baseline_ms: list[float] = field(default_factory=list)
    poisoned_ms: list[float] = field(default_factory=list)
    dead_letters: Counter[str] = field(default_factory=Counter)
    expected_dead: Counter[str] = field(default_factory=Counter)
    bad_reasons: list[str] = field(default_factory=list)
    worker_deaths: int = 0
    #: Healthy tasks dead-lettered because they were in flight on workers that poison
    #: killed max_deliveries times; the scenario requeues them (`dlq requeue`).
    collateral: int = 0
    #: Healthy workflows that had no result within cfg.stuck_after (collateral ones).
    stuck: int = 0
    #: Other poison entries dead-lettered for their delivery count, not their own
    #: reason: they were in flight on the workers the crashing activity killed.
    riders: int = 0
    #: The riders by the kind of entry they were.
    rider_kinds: Counter[str] = field(default_factory=Counter)
    verdict: checker.Verdict = field(default_factory=checker.Verdict)

    @property
    def ratio(self) -> float:
        base = statistics.median(self.baseline_ms) if self.baseline_ms else 0.0
        return statistics.median(self.poisoned_ms) / base if base else float("inf")

    @property
    def own_dead_letters(self) -> Counter[str]:
        """Dead letters with their own reason. A rider is an extra letter: its workflow
        task was retried after it and dead-lettered again for its own reason."""
        return self.dead_letters - self.rider_kinds

    @property
    def ok(self) -> bool:
        return (self.verdict.ok and not self.bad_reasons
                and +self.own_dead_letters == +self.expected_dead)

    def line(self) -> str:
        base = statistics.median(self.baseline_ms) if self.baseline_ms else 0.0
        poisoned = statistics.median(self.poisoned_ms) if self.poisoned_ms else 0.0
        dead = ", ".join(f"{k} {self.dead_letters[k]}/{self.expected_dead[k]}" for k in KINDS)
        return (
            f"poison: healthy p50 {base:.1f} ms -> {poisoned:.1f} ms under poison "
            f"(ratio {self.ratio:.2f}; p99 {_p99(self.baseline_ms):.1f} ms -> "
            f"{_p99(self.poisoned_ms):.1f} ms); dead-lettered {dead}; {self.worker_deaths} worker "
            f"processes killed by poison; {self.collateral} healthy tasks dead-lettered "
            f"with them and requeued, {self.stuck} healthy workflows stuck until then, "
            f"{self.riders} other poison entries dead-lettered with them; "
            f"{len(self.bad_reasons)} wrong reasons; "
            f"{self.verdict.summary()}"
        )


def _p99(samples: list[float]) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))] if ordered else 0.0


def kind_of(fields: dict[bytes, bytes], stream: str) -> str:
    """Which poison kind a dead letter is (by the ids the scenario gave it)."""
    wf_id = fields.get(b"workflow_id", b"").decode(errors="replace")
    for kind in (*KINDS, "healthy"):
        if wf_id.startswith(f"{kind}-"):
            return kind
    return "malformed" if "malformed" in wf_id or not wf_id else f"other ({stream})"


class Pool:
    """Worker processes that are replaced as soon as poison kills one."""

    def __init__(self, url: str, prefix: str, cfg: PoisonConfig) -> None:
        self.url, self.prefix, self.cfg = url, prefix, cfg
        self.live: list[WorkerProcess] = []
        self.deaths = 0

    def spawn(self) -> None:
        proc = WorkerProcess(self.url, self.prefix, TASK_QUEUE, MODULE,
                             liveness=self.cfg.liveness, max_deliveries=self.cfg.max_deliveries,
                             env={ALLOW_EXIT_ENV: "1"})
        self.live.append(proc.start())

    async def keep_alive(self) -> None:
        while True:
            for proc in list(self.live):
                if not proc.alive():
                    proc.kill()  # reaps it
                    self.live.remove(proc)
                    self.deaths += 1
                    self.spawn()
            await anyio.sleep(0.05)

    def close(self) -> None:
        for proc in self.live:
            proc.kill()
        self.live.clear()


async def healthy_phase(client: Client, cfg: PoisonConfig, tag: str,
                        latencies: list[float], expected: dict[str, int],
                        stuck: list[str], until: anyio.Event | None = None) -> None:
    """At least cfg.healthy workflows, and on until `until` is set."""
    async def lane(lane_no: int) -> None:
        for n in itertools.count(lane_no, cfg.concurrency):
            if n >= cfg.healthy and (until is None or until.is_set()):
                return
            wf_id = f"healthy-{tag}-{n}"
            started = time.monotonic()
            handle = await client.start_workflow(Healthy.run, n, id=wf_id,
                                                 task_queue=TASK_QUEUE)
            expected[wf_id] = n + 1
            with anyio.move_on_after(cfg.stuck_after):
                await handle.result()  # its value is the checker's business
                latencies.append((time.monotonic() - started) * 1000)
                continue
            stuck.append(wf_id)

    async with anyio.create_task_group() as tg:
        for lane_no in range(cfg.concurrency):
            tg.start_soon(lane, lane_no)


async def feed_poison(client: Client, bad: Client, cfg: PoisonConfig,
                      expected_dead: Counter[str], done: anyio.Event) -> None:
    """Every kind of poison, spread over cfg.spread seconds."""
    keys = client.keys
    crash_every = max(1, cfg.poison // max(1, cfg.crashes))
    for n in range(cfg.poison):
        if n % crash_every == 0 and expected_dead["crash"] < cfg.crashes:
            await client.start_workflow(CrashesWorker.run, id=f"crash-{n}",
                                        task_queue=TASK_QUEUE)
            expected_dead["crash"] += 1
        if n % crash_every == crash_every // 2 and expected_dead["wfcrash"] < cfg.wf_crashes:
            await client.start_workflow(CrashesWorkflowTask.run, id=f"wfcrash-{n}",
                                        task_queue=TASK_QUEUE)
            expected_dead["wfcrash"] += 1
        await client.start_workflow("NobodyRegisteredThis", n, id=f"unregistered-{n}",
                                    task_queue=TASK_QUEUE)
        await bad.start_workflow(Healthy.run, n, id=f"undecodable-{n}", task_queue=TASK_QUEUE)
        shard = n % keys.shards
        stream = (keys.workflow_tasks if n % 2 else keys.activity_tasks)(shard, TASK_QUEUE)
        await client.redis.xadd(stream, {"workflow_id": f"malformed-{n}", "junk": b"\xff"})
        expected_dead.update(("unregistered", "undecodable", "malformed"))
        await anyio.sleep(cfg.spread / cfg.poison)
    done.set()


async def read_dead_letters(client: Client, report: PoisonReport) -> None:
    report.dead_letters.clear()
    report.bad_reasons.clear()
    report.riders = 0
    report.rider_kinds.clear()
    for letter in await client.list_dead_letters():
        raw = {k.encode(): v for k, v in letter.fields.items()}
        kind = kind_of(raw, letter.stream)
        report.dead_letters[kind] += 1
        if kind in REASONS and REASONS[kind] not in letter.reason.lower():
            if REASONS["crash"] in letter.reason:
                # Held by the workers a crashing activity killed, as often as it was.
                report.riders += 1
                report.rider_kinds[kind] += 1
            else:
                report.bad_reasons.append(f"{letter.id} ({kind}): {letter.reason}")


async def run(url: str, cfg: PoisonConfig) -> PoisonReport:
    report = PoisonReport(cfg)
    prefix = unique_prefix("poison")
    client = await Client.connect(url, prefix=prefix)
    bad = await Client.connect(url, prefix=prefix, codec=GarbageCodec())
    pool = Pool(url, prefix, cfg)
    expected: dict[str, int] = {}
    try:
        await client.store.ensure_groups(TASK_QUEUE)
        for _ in range(cfg.workers):
            pool.spawn()
        for proc in pool.live:
            await anyio.to_thread.run_sync(proc.wait_ready)
        async with anyio.create_task_group() as tg:
            tg.start_soon(pool.keep_alive)
            stuck: list[str] = []
            # Warm-up (not measured): connections, imports and caches of fresh workers.
            warm = replace(cfg, healthy=min(cfg.healthy, 4 * cfg.concurrency))
            await healthy_phase(client, warm, "warm", [], expected, stuck)
            await healthy_phase(client, cfg, "base", report.baseline_ms, expected, stuck)
            # The poison phase: healthy workflows run as long as poison keeps coming.
            fed = anyio.Event()
            async with anyio.create_task_group() as phase:
                phase.start_soon(feed_poison, client, bad, cfg, report.expected_dead, fed)
                await healthy_phase(client, cfg, "poisoned", report.poisoned_ms, expected,
                                    stuck, until=fed)
            deadline = time.monotonic() + cfg.drain
            while time.monotonic() < deadline:
                await read_dead_letters(client, report)
                if +report.own_dead_letters >= +report.expected_dead:
                    break
                await anyio.sleep(0.25)
            report.stuck = len(stuck)
            # Healthy tasks that went down with the poison: put them back.
            for letter in await client.list_dead_letters():
                if letter.workflow_id.startswith("healthy-"):
                    await client.requeue_dead_letter(letter.id)
                    report.collateral += 1
            report.dead_letters.pop("healthy", None)
            await wait_closed(client, stuck, cfg.drain)
            tg.cancel_scope.cancel()
        report.worker_deaths = pool.deaths
        report.verdict = await checker.check(client.redis, client.keys, client.codec, expected)
    finally:
        pool.close()
        await bad.close()
        await drop_client(client, prefix)
    return report


def main(argv: list[str] | None = None) -> None:
    p = scenario_parser(__doc__)
    p.add_argument("--healthy", type=int, default=PoisonConfig.healthy)
    p.add_argument("--poison", type=int, default=PoisonConfig.poison)
    p.add_argument("--crashes", type=int, default=PoisonConfig.crashes)
    p.add_argument("--spread", type=float, default=PoisonConfig.spread)
    args = p.parse_args(argv)
    cfg = PoisonConfig(healthy=args.healthy, poison=args.poison, crashes=args.crashes,
                       spread=args.spread)
    report = run_on_server(args.redis_url, lambda url: run(url, cfg))
    print(report.line())
    if not report.ok:
        print("\n".join(report.bad_reasons[:20]))
        print(report.verdict.details())
        sys.exit(1)


if __name__ == "__main__":
    main()
