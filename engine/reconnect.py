"""Riding through a server restart or failover: which client calls are retried, for
how long, and the one error for the rest (docs/reliability.md, "Clients through a
restart").

A connection lost while a call is in flight leaves its outcome unknown: the server may
have applied it and the reply was lost, or it never got it. A call is retried only when
running it twice has the effect of running it once:

- reads;
- the client's transitions (start, signal, cancel, terminate), which carry a request
  id that the workflow's shard remembers (`rd_start` takes the run id as its request
  id): a retry of a call that was applied finds the id and is answered as the first
  call was, without applying anything again.

Anything else (`once`) waits until the server answers, runs once, and if the connection
is lost after it was sent raises ServerUnavailableError(maybe_applied=True): the caller
decides, knowing the call may have taken effect.

Connection setup is not retried here: `Client.connect` fails at once when no server
answers (a wrong URL must not look like a hang); what is retried is the calls of a
client that was connected.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

from redis.exceptions import (
    ClusterDownError,
    ClusterError,
    ReadOnlyError,
    ResponseError,
    TryAgainError,
)
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from engine.errors import InvalidArgumentError, ServerUnavailableError
from engine.limits import REQUEST_ID_WINDOW_MS

T = TypeVar("T")

#: Error replies of a server that is there but cannot serve writes or this key yet: a
#: former primary demoted to a replica (READONLY) or a replica that lost its primary
#: (MASTERDOWN) during a failover, a server loading its dataset after a restart
#: (LOADING), a cluster slot moving (TRYAGAIN: every redurable Function call on a
#: moving slot answers it, engine/lua/00_common.lua `slot_moving`) or a cluster without
#: a node for the slot (CLUSTERDOWN), or a server held by a script or function past
#: its time limit ("BUSY ...": it answers again once the script ends or is killed;
#: the space keeps out BUSYGROUP and BUSYKEY, which are final). Nothing was applied;
#: the call is retried.
TRANSIENT_REPLIES = ("READONLY", "MASTERDOWN", "LOADING", "TRYAGAIN", "CLUSTERDOWN", "BUSY ")


def is_transient(exc: BaseException) -> bool:
    """Whether `exc` means "the server is out of reach for now", not "the call failed"."""
    if isinstance(exc, ServerUnavailableError):
        return False  # a retry loop below this one already gave up
    if isinstance(exc, RedisConnectionError | RedisTimeoutError | OSError | ReadOnlyError
                  | TryAgainError | ClusterDownError):
        return True  # (redis-py's classes of those replies: their code cut off)
    if isinstance(exc, ClusterError):
        return True  # redis-py's cluster client gave up following redirections for now
    return isinstance(exc, ResponseError) and reply_text(exc).startswith(TRANSIENT_REPLIES)


#: How redis-py rewrites the error reply of a command in a pipeline:
#: "Command # 1 (TIME) of pipeline caused error: ('BUSY Redis is busy...',)".
_PIPELINE_ERROR = " of pipeline caused error: ("


def reply_text(exc: ResponseError) -> str:
    """The server's error reply, also when redis-py rewrote it for a pipeline."""
    text = str(exc)
    if text.startswith("Command # ") and _PIPELINE_ERROR in text:
        return text.split(_PIPELINE_ERROR, 1)[1].lstrip("'\"")
    return text


@dataclass(frozen=True)
class RetryConfig:
    """How a connected client retries its calls through an outage (temporalio's
    `RetryConfig` of `Client.connect`, the fields that apply here)."""

    #: First pause between two attempts.
    initial_interval_millis: int = 20
    #: Each pause is the last one times this, up to `max_interval_millis`.
    multiplier: float = 2.0
    max_interval_millis: int = 500
    #: How long a retryable call keeps trying before it raises ServerUnavailableError.
    #: 0: no retry (a lost connection is raised at once).
    max_elapsed_time_millis: int = 30_000

    def __post_init__(self) -> None:
        # A retry must come while the shard still remembers the first attempt's id.
        if not 0 <= self.max_elapsed_time_millis <= REQUEST_ID_WINDOW_MS // 2:
            raise InvalidArgumentError(
                f"max_elapsed_time_millis must be between 0 and {REQUEST_ID_WINDOW_MS // 2}"
            )
        if not 0 < self.initial_interval_millis <= self.max_interval_millis:
            raise InvalidArgumentError(
                "retry intervals must be > 0 and initial_interval_millis <= max_interval_millis"
            )
        if self.multiplier < 1:
            raise InvalidArgumentError("multiplier must be at least 1")


@dataclass
class CallStats:
    """What outages did to this client's calls (for operators and the chaos runner)."""

    #: Calls that met a lost connection or an unready server at least once.
    interrupted: int = 0
    #: Of those, calls that succeeded after a retry.
    recovered: int = 0
    #: Calls that raised ServerUnavailableError.
    failed: int = 0


class Reconnector:
    """Runs a client's calls under its RetryConfig and counts what happened."""

    def __init__(self, config: RetryConfig | None = None) -> None:
        self.config = config or RetryConfig()
        self.stats = CallStats()

    async def retry(self, what: str, op: Callable[[], Awaitable[T]]) -> T:
        """Run `op` (safe to run again) until it succeeds, or until the server stayed
        out of reach for the policy's timeout."""
        config = self.config
        deadline = time.monotonic() + config.max_elapsed_time_millis / 1000
        delay = config.initial_interval_millis / 1000
        interrupted = False
        while True:
            try:
                result = await op()
            except Exception as exc:
                if not is_transient(exc):
                    raise
                if not interrupted:
                    interrupted = True
                    self.stats.interrupted += 1
                if time.monotonic() + delay > deadline:
                    self.stats.failed += 1
                    raise ServerUnavailableError(
                        f"{what}: the server stayed out of reach for "
                        f"{config.max_elapsed_time_millis / 1000:g} s ({exc}); it may have "
                        "been applied once, never more",
                        maybe_applied=True,
                    ) from exc
                await asyncio.sleep(delay)
                delay = min(delay * config.multiplier, config.max_interval_millis / 1000)
                continue
            if interrupted:
                self.stats.recovered += 1
            return result

    async def once(
        self, what: str, op: Callable[[], Awaitable[T]], ready: Callable[[], Awaitable[object]]
    ) -> T:
        """Run `op` (not safe to run twice) once the server answers `ready` (retried);
        a connection lost after it was sent raises ServerUnavailableError."""
        await self.retry(what, ready)
        try:
            return await op()
        except Exception as exc:
            if not is_transient(exc):
                raise
            self.stats.interrupted += 1
            self.stats.failed += 1
            raise ServerUnavailableError(
                f"{what}: the connection to the server was lost while the call was in "
                f"flight ({exc}); it may or may not have been applied, and it is not "
                "retried because running it twice could apply it twice",
                maybe_applied=True,
            ) from exc
