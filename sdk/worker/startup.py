"""A worker's start-up through a server that is not ready yet.

Before its loops run, a worker creates its task queue's consumer groups, subscribes to
its presence channel and beats once (in that order: nobody sees it beat without its
presence subscription, sdk/worker/presence.py). A worker is often started together with
its server (a deploy, a compose file, a host's reboot), so that server may be
restarting (connection refused), loading its dataset (LOADING), failing over (READONLY,
MASTERDOWN), or held by a script past its time limit (BUSY). Those are the errors a
running worker rides through (sdk/worker/plumbing.py `transient`), and its start-up now
does too: each step is tried again, with the backoff of the client's RetryConfig
(engine/reconnect.py), for as long as it takes (docs/reliability.md says why not for
the client's `max_elapsed_time_millis`), and each retry is logged. Every step is safe to
repeat: a group that exists is kept, a subscription is made again on a fresh
connection, a beat is a ZADD.

An error that retrying cannot fix (NOPERM, a refused password, a key of another type
where a task stream should be) fails at once, with a note that says which step.

A stop (`Worker.shutdown()`, SIGTERM/SIGINT when the worker handles them, a
cancellation) during the retries ends the start-up at once, an attempt in flight
included, and takes back what the steps so far registered: the presence subscription,
the beat and worker-info entry, the sticky streams.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

import anyio
import structlog
from redis.exceptions import (
    AuthenticationError,
    AuthorizationError,
    ExternalAuthProviderError,
    RedisError,
)

from engine.reconnect import RetryConfig
from sdk.worker.liveness import Liveness
from sdk.worker.plumbing import transient

log = structlog.get_logger("redurable.worker")

#: The start-up steps, in order, and how the note of an error that fails one names it.
STEPS = {
    "create_groups": "creating the task queue's consumer groups",
    "subscribe_presence": "subscribing to its presence channel",
    "first_beat": "its first heartbeat",
}
#: The longest a start-up given up spends taking back what it registered: a stop must
#: be prompt also when the server is still out of reach (what is left is forgotten as
#: a dead worker's: Liveness.leave).
UNDO_TIMEOUT_S = 2.0


def retried_at_start(exc: BaseException) -> bool:
    """Whether a start-up step is tried again after `exc`: what a running worker
    outlives, but not a refused password or permission, which redis-py raises as a
    ConnectionError when a new connection authenticates: no retry fixes those."""
    refused = AuthenticationError | AuthorizationError | ExternalAuthProviderError
    return transient(exc) and not isinstance(exc, refused)


async def start_up(
    liveness: Liveness,
    *,
    sticky: str | None,
    retry: RetryConfig,
    stop: anyio.Event,
    signals: Callable[[], Coroutine[Any, Any, None]] | None = None,
) -> bool:
    """Run the worker's start-up steps, each retried through transient errors. True:
    the worker is registered and its loops may run; False: `stop` was set first (and
    nothing is left registered). `signals`, when given, runs meanwhile (the worker's
    SIGTERM/SIGINT handler, which sets `stop`)."""
    steps: dict[str, Callable[[], Awaitable[None]]] = {
        "create_groups": lambda: liveness.store.ensure_groups(liveness.task_queue, sticky),
        "subscribe_presence": liveness.presence.subscribe,
        "first_beat": liveness.beat,
    }
    tried: set[str] = set()
    started = False
    failure: Exception | None = None
    try:
        async with anyio.create_task_group() as tg:
            tg.start_soon(_cancel_on, stop, tg.cancel_scope)
            if signals is not None:
                tg.start_soon(signals)
            try:
                for name, step in steps.items():
                    tried.add(name)
                    await _retried(name, step, retry, liveness.identity)
                started = True
            except Exception as exc:  # raised below, out of the task group's wrapping
                failure = exc
            tg.cancel_scope.cancel()
    finally:
        if not started:
            with anyio.CancelScope(shield=True), anyio.move_on_after(UNDO_TIMEOUT_S):
                await _undo(liveness, sticky, tried)
    if failure is not None:
        log.error("worker_start_failed", worker=liveness.identity, error=str(failure))
        raise failure
    if not started:
        log.info("worker_start_abandoned", worker=liveness.identity)
    return started


async def _cancel_on(stop: anyio.Event, scope: anyio.CancelScope) -> None:
    await stop.wait()
    scope.cancel()


async def _retried(
    name: str, step: Callable[[], Awaitable[None]], retry: RetryConfig, worker: str
) -> None:
    """Run `step` until it succeeds, pausing between attempts as the client does (its
    RetryConfig's intervals), without a deadline."""
    delay = retry.initial_interval_millis / 1000
    attempt = 1
    while True:
        try:
            await step()
        except Exception as exc:
            if not retried_at_start(exc):
                exc.add_note(f"worker {worker} could not start: {STEPS[name]} failed, "
                             "with an error that retrying cannot fix")
                raise
            log.warning("worker_start_retry", worker=worker, step=name, attempt=attempt,
                        retry_in=delay, error=str(exc))
            await anyio.sleep(delay)
            delay = min(delay * retry.multiplier, retry.max_interval_millis / 1000)
            attempt += 1
            continue
        if attempt > 1:
            log.info("worker_start_recovered", worker=worker, step=name, attempts=attempt)
        return


async def _undo(liveness: Liveness, sticky: str | None, tried: set[str]) -> None:
    """Take back what the steps in `tried` may have registered (best effort)."""
    await liveness.presence.close()
    if "first_beat" in tried:  # its reply may be lost while the entry was written
        await liveness.leave()
    if sticky and "create_groups" in tried:
        try:
            await liveness.store.release_sticky(liveness.task_queue, sticky)
        except (RedisError, OSError) as exc:
            log.warning("sticky_release_failed", error=str(exc))
