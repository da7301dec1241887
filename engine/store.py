"""All Redis I/O of the engine: one method per transition (one FCALL each) and history
reads; the task streams' delivery calls (reads, claims, hand-backs) are inherited from
engine/task_streams.py. Calls that a worker batches are built as `Call` objects so they
can share one pipeline round trip (engine/calls.py runs them)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from redis.asyncio import Redis

from engine import commands as cmd
from engine import events as ev
from engine.calls import Arg, TaskRef, text_of, unwrap
from engine.calls import Call as Call  # where the worker has always imported it from
from engine.durability import Durability
from engine.errors import (
    HistoryLimitError,
    InvalidArgumentError,
    WorkflowAlreadyStartedError,
    WorkflowNotFoundError,
    WorkflowNotRunningError,
)
from engine.keys import Keys
from engine.library import function_name
from engine.limits import REQUEST_ID_WINDOW_MS
from engine.resp import RespPool
from engine.run_chain import CronFire, cron_next_call
from engine.start_options import StartOptions
from engine.status import WorkflowExecutionStatus
from engine.task_replies import (
    TimerScan,
    WorkflowTaskCommit,
    WorkflowTaskStart,
    act_complete_due_in,
    act_complete_wft_due_in,
    act_start_due_in,
    decode_entries,
    parse_act_complete_wft,
    parse_eager_wft,
    parse_wft_complete,
    parse_wft_start,
    reply_status,
    wft_complete_due_in,
    wft_fail_due_in,
    wft_start_due_in,
)
from engine.task_streams import TaskStreams
from engine.task_token import ActivityRef
from engine.timer_leases import SCAN_LIMIT, parse_scan, plain_scan_call
from engine.updates import rejection_args

HISTORY_VERSION = 1

__all__ = [  # the reply types callers have always imported from here
    "Call", "Store", "TimerScan", "WorkflowTaskCommit", "WorkflowTaskStart",
    "act_complete_due_in", "act_start_due_in", "decode_entries", "wft_complete_due_in",
    "wft_fail_due_in", "wft_start_due_in",
]


def _outcome_args(result: bytes | None, failure: dict[str, Any] | None) -> list[Arg]:
    """rd_act_complete's outcome arguments: outcome, payload, error type, non-retryable."""
    if failure is None:
        assert result is not None
        return ["completed", result, "", "0"]
    return [
        "failed",
        json.dumps(failure, separators=(",", ":")),
        str(failure.get("type", "")),
        "1" if failure.get("non_retryable") else "0",
    ]


def _command_args(commands: Sequence[cmd.Command]) -> list[Arg]:
    """A completion's commands as rd_wft_complete takes them: kind, n_fields, fields."""
    args: list[Arg] = []
    for command in commands:
        if isinstance(command, cmd.RejectUpdate):
            args += rejection_args(command)
            continue
        if isinstance(command, cmd.NOTE_COMMANDS):
            continue
        event_type, attrs = cmd.to_event(command)
        fields = ev.encode_attributes(event_type, attrs)
        args += [event_type.__name__, len(fields) // 2, *fields]
    return args


#: How many workflows' key names a Store keeps at most (then it starts over).
WF_NAMES_KEPT = 10_000


class Store(TaskStreams):
    """`fast`, when given, carries the hot path (transitions and task reads); without
    it (fakeredis in unit tests) everything goes through redis-py."""

    def __init__(
        self,
        redis: Redis,
        keys: Keys,
        fast: RespPool | None = None,
        durability: Durability | None = None,
    ) -> None:
        super().__init__(redis, fast, durability)
        self.keys = keys
        self._known_queues: set[str] = set()
        #: Workflow id -> its keys and shard prefix: every transition of a worker names
        #: them, and building them (crc32, formats) cost ~5% of a step's worker CPU.
        self._wf_names: dict[str, tuple[tuple[str, str, str], str]] = {}

    def _wf_named(self, workflow_id: str) -> tuple[tuple[str, str, str], str]:
        names = self._wf_names.get(workflow_id)
        if names is None:
            if len(self._wf_names) >= WF_NAMES_KEPT:
                self._wf_names.clear()
            k = self.keys
            names = self._wf_names[workflow_id] = (
                (k.workflow(workflow_id), k.history(workflow_id), k.buffer(workflow_id)),
                k.shard_prefix(k.shard(workflow_id)),
            )
        return names

    def _wf_keys(self, workflow_id: str) -> list[str]:
        return list(self._wf_named(workflow_id)[0])

    def _wf_args(self, workflow_id: str, run_id: str, *rest: Arg) -> list[Arg]:
        """ARGV of a per-workflow function (engine/lua/00_common.lua): the shard prefix,
        the workflow and run ids, then the function's own arguments."""
        return [self._wf_named(workflow_id)[1], workflow_id, run_id, *rest]

    # --- client transitions -----------------------------------------------------------
    # Each carries a request id (a start: its run id) that the shard remembers for
    # REQUEST_ID_WINDOW_MS, so that the call retried after a lost reply
    # (engine/reconnect.py) is answered as the first one was, never applied twice.
    def _client_keys(self, workflow_id: str) -> list[str]:
        return [*self._wf_keys(workflow_id), self.keys.requests(self.keys.shard(workflow_id))]

    async def start(
        self,
        workflow_id: str,
        run_id: str,
        workflow_type: str,
        task_queue: str,
        payload: bytes,
        options: StartOptions | None = None,
        memo: bytes = b"",
        signal_payload: bytes = b"",
        search_attributes: str = "",
    ) -> str:
        """Start a run (or, with `options.start_signal`, signal-with-start: the signal
        goes to the new run or the running one, in the same call). Returns the run id:
        `run_id`, or the running run's one that USE_EXISTING kept."""
        options = options or StartOptions()
        reply = await self.call(
            Call(
                "rd_start",
                self._client_keys(workflow_id),
                self._wf_args(
                    workflow_id, run_id, workflow_type, task_queue, payload, HISTORY_VERSION,
                    REQUEST_ID_WINDOW_MS, options.to_json(), memo, signal_payload,
                    search_attributes,
                ),
            )
        )
        status = reply_status(reply)
        if status == "already_started":
            raise WorkflowAlreadyStartedError(workflow_id, text_of(reply[1]))
        if status == "history_limit":
            raise HistoryLimitError(f"workflow {workflow_id!r}: {text_of(reply[1])}")
        if status == "bad_search_attributes":
            raise InvalidArgumentError(f"workflow {workflow_id!r}: {text_of(reply[1])}")
        if task_queue not in self._known_queues:  # the registry of queues, once per queue
            await self.redis.sadd(self.keys.task_queues(), task_queue)
            # Only once it is there: a start retried after a lost SADD adds it again.
            self._known_queues.add(task_queue)
        return text_of(reply[1])

    async def _to_running(
        self, function: str, workflow_id: str, run_id: str, request_id: str, *args: Arg,
        after: Sequence[Arg] = (),
    ) -> None:
        reply = await self.call(
            Call(
                function,
                self._client_keys(workflow_id),
                self._wf_args(workflow_id, run_id, *args, request_id, REQUEST_ID_WINDOW_MS,
                              *after),
            )
        )
        status = reply_status(reply)
        if status == "not_found":
            raise WorkflowNotFoundError(workflow_id)
        if status == "not_running":
            raise WorkflowNotRunningError(workflow_id, WorkflowExecutionStatus.parse(reply[1]))
        if status == "history_limit":
            raise HistoryLimitError(f"workflow {workflow_id!r}: {text_of(reply[1])}")

    async def signal(
        self, workflow_id: str, run_id: str, name: str, payload: bytes, request_id: str = "",
        header: str = "",
    ) -> None:
        """`request_id` "": not deduplicated (a retry could deliver it twice).
        `header`: the signal's headers as JSON text ("" none)."""
        await self._to_running("rd_signal", workflow_id, run_id, request_id, name, payload,
                               after=(header,) if header else ())

    async def cancel(
        self, workflow_id: str, run_id: str, reason: str, request_id: str = ""
    ) -> None:
        await self._to_running("rd_cancel", workflow_id, run_id, request_id, reason)

    async def terminate(
        self, workflow_id: str, run_id: str, reason: str, request_id: str = ""
    ) -> None:
        await self._to_running("rd_terminate", workflow_id, run_id, request_id, reason)

    # --- workflow tasks ---------------------------------------------------------------
    def _task_keys(self, workflow_id: str, stream: str) -> list[str]:
        return [*self._wf_keys(workflow_id), stream]

    def wft_start_call(
        self,
        workflow_id: str,
        run_id: str,
        epoch: str,
        msg_id: str,
        stream: str,
        after_stream_id: bytes | None,
        timeout_ms: int,
    ) -> Call:
        return Call(
            "rd_wft_start",
            self._task_keys(workflow_id, stream),
            self._wf_args(workflow_id, run_id, epoch, msg_id, after_stream_id or b"", timeout_ms),
            TaskRef(stream, msg_id),
            timer_due_in=wft_start_due_in,
        )

    parse_wft_start = staticmethod(parse_wft_start)
    parse_wft_complete = staticmethod(parse_wft_complete)
    parse_eager_wft = staticmethod(parse_eager_wft)

    def wft_extend_call(
        self, workflow_id: str, run_id: str, epoch: str, token: int, timeout_ms: int
    ) -> Call:
        """Move a started workflow task's deadline to now + timeout_ms (the worker runs
        its local activities); the reply is 1 while the task is still ours, else 0."""
        return Call(
            "rd_wft_extend",
            self._wf_keys(workflow_id),
            self._wf_args(workflow_id, run_id, epoch, token, timeout_ms),
        )

    def wft_complete_call(
        self,
        workflow_id: str,
        run_id: str,
        epoch: str,
        token: int | None,
        msg_id: str,
        stream: str,
        worker: str,
        now_ms: int,
        flags: str,
        commands: Sequence[cmd.Command],
        seen_next_event_id: int = 0,
        eager_slots: int = 0,
        sticky: str = "",
        sticky_ms: int = 0,
    ) -> Call:
        """`token=None` is a speculative completion (no rd_wft_start): it lands only if
        the history's next event id is still `seen_next_event_id`. `sticky`: the
        worker's sticky name when it keeps the workflow cached (its next task comes to
        that worker, which must start it within `sticky_ms`), "" for any worker."""
        args = self._wf_args(
            workflow_id,
            run_id,
            epoch,
            "" if token is None else token,
            msg_id,
            worker,
            now_ms,
            flags,
            seen_next_event_id,
            eager_slots,
            cmd.dropped_signals_note(list(commands)),
            sticky,
            sticky_ms,
        )
        args += _command_args(commands)
        # The reply tells when the earliest timer it added falls due: the timer loop
        # wakes only when that is before its next scan (sdk/worker/timers.py). Sticky
        # deadlines are not in it (the loop scans those at least once a second anyway).
        return Call(
            "rd_wft_complete", self._task_keys(workflow_id, stream), args, TaskRef(stream, msg_id),
            timer_due_in=wft_complete_due_in,
        )

    def wft_fail_call(
        self,
        workflow_id: str,
        run_id: str,
        epoch: str,
        token: int,
        msg_id: str,
        stream: str,
        failure: dict[str, Any],
        dead_letter_reason: str | None = None,
    ) -> Call:
        """With a reason, the task goes to the dead letters instead of being retried."""
        keys = self._task_keys(workflow_id, stream)
        args = self._wf_args(
            workflow_id, run_id, epoch, token, msg_id, json.dumps(failure, separators=(",", ":"))
        )
        if dead_letter_reason:
            keys.append(self.keys.dead_letters(self.keys.shard(workflow_id)))
            args.append(dead_letter_reason)
        return Call("rd_wft_fail", keys, args, TaskRef(stream, msg_id),
                    timer_due_in=wft_fail_due_in)

    # --- activity tasks ---------------------------------------------------------------
    def act_start_call(
        self,
        workflow_id: str,
        run_id: str,
        activity_id: str,
        attempt: str,
        msg_id: str,
        stream: str,
        worker: str,
        *,
        complete_async: bool = False,
    ) -> Call:
        """`complete_async`: the activity function returned through
        `raise_complete_async()`: the attempt stays started (its timeouts armed) and
        its task is acknowledged; a client completes it (act_complete_by_ref_call)."""
        args = self._wf_args(workflow_id, run_id, activity_id, attempt, msg_id, worker)
        if complete_async:
            args.append("async")
        return Call(
            "rd_act_start", self._task_keys(workflow_id, stream), args, TaskRef(stream, msg_id),
            timer_due_in=act_start_due_in,
        )

    def act_complete_call(
        self,
        workflow_id: str,
        run_id: str,
        activity_id: str,
        attempt: str,
        msg_id: str,
        stream: str,
        *,
        result: bytes | None = None,
        failure: dict[str, Any] | None = None,
        eager_consumer: str = "",
        eager_task_queue: str = "",
        eager_sticky: str = "",
    ) -> Call:
        """`eager_consumer`: a worker polling `eager_task_queue`'s workflow tasks, to be
        handed the workflow task this completion queues (see parse_eager_wft), unless
        it went to another worker's sticky stream (`eager_sticky`: the consumer's)."""
        base = self._wf_args(workflow_id, run_id, activity_id, attempt, msg_id)
        tail = _outcome_args(result, failure)
        if eager_consumer:
            tail += [eager_consumer, eager_task_queue, eager_sticky]
        return Call(
            "rd_act_complete",
            self._task_keys(workflow_id, stream),
            base + tail,
            TaskRef(stream, msg_id),
            timer_due_in=act_complete_due_in,
        )

    def act_complete_wft_call(
        self,
        workflow_id: str,
        run_id: str,
        activity_id: str,
        attempt: str,
        msg_id: str,
        stream: str,
        result: bytes,
        *,
        worker: str,
        task_queue: str,
        sticky: str,
        now_ms: int,
        flags: str,
        commands: Sequence[cmd.Command],
        seen_next_event_id: int,
        eager_slots: int,
        sticky_ms: int,
        failed: bool = False,
    ) -> Call:
        """An activity step in one write (rd_act_complete_wft): the attempt's result and
        the speculative completion of the workflow task it queues, which the worker ran
        on the ActivityTaskCompleted it built itself (parse_act_complete_wft). `failed`:
        `result` is the JSON of a failure the worker found final, the activation ran on
        the ActivityTaskFailed (rd_act_fail_wft)."""
        args = self._wf_args(
            workflow_id, run_id, activity_id, attempt, msg_id, result, worker, task_queue,
            sticky, now_ms, flags, seen_next_event_id, eager_slots,
            cmd.dropped_signals_note(list(commands)), sticky_ms)
        return Call(
            "rd_act_fail_wft" if failed else "rd_act_complete_wft",
            self._task_keys(workflow_id, stream),
            args + _command_args(commands), TaskRef(stream, msg_id),
            timer_due_in=act_complete_wft_due_in,
        )

    parse_act_complete_wft = staticmethod(parse_act_complete_wft)

    async def complete_activity_by_ref(
        self,
        ref: ActivityRef,
        *,
        result: bytes | None = None,
        failure: dict[str, Any] | None = None,
    ) -> bool:
        """An async activity completed by a client (no task to acknowledge): the same
        rd_act_complete, fenced by the attempt the ref names. False: it was stale."""
        attempt = "" if ref.attempt is None else str(ref.attempt)
        args = self._wf_args(ref.workflow_id, ref.run_id, str(ref.activity_id), attempt, "")
        reply = await self.call(
            Call("rd_act_complete", self._wf_keys(ref.workflow_id),
                 args + _outcome_args(result, failure), timer_due_in=act_complete_due_in)
        )
        return reply_status(reply) == "ok"

    async def heartbeat_activity_by_ref(self, ref: ActivityRef, details: bytes) -> str:
        """A client's heartbeat for an async activity: "ok", "cancel" or "stale"."""
        attempt = "" if ref.attempt is None else str(ref.attempt)
        reply = await self.call(
            self.act_heartbeat_call(
                ref.workflow_id, ref.run_id, str(ref.activity_id), attempt, details
            )
        )
        return reply_status(reply)

    def act_heartbeat_call(
        self, workflow_id: str, run_id: str, activity_id: str, attempt: str, details: bytes
    ) -> Call:
        return Call(
            "rd_act_heartbeat",
            [self.keys.workflow(workflow_id)],
            self._wf_args(workflow_id, run_id, activity_id, attempt, details),
        )

    # --- timers and delivery housekeeping ----------------------------------------------
    async def fire_timers(self, limit: int = SCAN_LIMIT) -> TimerScan:
        """Fire due timers on every shard (one pipeline), whoever holds their leases
        (sdk/worker/timer_leases.py scans a worker's share of the shards)."""
        replies = await self.call_many(
            [plain_scan_call(self.keys, s, limit) for s in range(self.keys.shards)])
        fired, more, next_in = 0, False, None
        fires: list[CronFire] = []
        for reply in replies:
            scan = parse_scan(unwrap(reply))
            fires.extend(scan.crons)
            fired += scan.fired
            more = more or scan.fired >= limit
            if scan.next_in_ms is not None:
                next_in = scan.next_in_ms if next_in is None else min(next_in, scan.next_in_ms)
        if fires:  # cron runs that closed: start each chain's next run (engine/run_chain.py)
            # An error reply is left in its slot: the fire's lease brings it back.
            await self.call_many([cron_next_call(self.keys, f) for f in fires])
        return TimerScan(fired, more, next_in)

    # --- reads ------------------------------------------------------------------------
    async def read_history(
        self, workflow_id: str, after: bytes | None = None, count: int | None = None
    ) -> list[tuple[bytes, ev.Event]]:
        start = b"(" + after if after else "-"
        raw: Any = await self.redis.xrange(self.keys.history(workflow_id), start, "+", count=count)
        return decode_entries(raw)

    async def read_query_inputs(
        self, workflow_id: str, after: bytes | None = None
    ) -> tuple[list[tuple[bytes, ev.Event]], list[bytes]]:
        """The history after `after` and the events buffered while a workflow task runs,
        read in one atomic call (rd_query_inputs). Buffered events stay packed
        (ev.decode_buffered_event): they get their numbers when they are appended."""
        keys = [self.keys.history(workflow_id), self.keys.buffer(workflow_id)]
        reply: Any = await self.redis.fcall(function_name("rd_query_inputs"), 2, *keys,
                                            after or b"")
        entries, buffered = reply
        return decode_entries(entries), [bytes(item) for item in buffered]

    async def get_fields(self, workflow_id: str, *fields: str) -> list[bytes | None]:
        """HMGET on the workflow hash (hot path: result() checks)."""
        key = self.keys.workflow(workflow_id)
        if self.fast is not None:
            row: Any = await self.fast.execute("HMGET", key, *fields)
        else:
            row = await self.redis.hmget(key, list(fields))
        return list(row)

    async def get_state(self, workflow_id: str) -> dict[str, bytes]:
        raw: dict[Any, Any] = await self.redis.hgetall(self.keys.workflow(workflow_id))
        return {text_of(k): bytes(v) for k, v in raw.items()}
