"""What a worker pays per round and per idle second that no step needs: the timer scan
after a completion that adds no timer, the signature bind per signal, the presence
holder's polling, and every worker's own schedule scan (docs/scaling.md)."""

from __future__ import annotations

import inspect
from typing import Any

import anyio
import fakeredis
import pytest

from engine import commands as cmd
from engine.calls import Call, FunctionCaller
from engine.keys import Keys
from engine.store import Store
from sdk.worker import presence as _presence
from sdk.worker.presence import PresenceHolder
from sdk.worker.scheduler import PASSES, Scheduler
from sdk.worker.workflow_runner import _misfit

pytestmark = pytest.mark.anyio


def completion(store: Store, commands: list[Any]) -> Call:
    return store.wft_complete_call(
        "wf", "run", "1", None, "1-0", "stream", "worker", 0, "", commands,
        seen_next_event_id=3)


async def test_a_completion_without_commands_does_not_wake_the_timer_loop() -> None:
    store = Store(fakeredis.FakeAsyncRedis(), Keys("p", 2))
    heard: list[str] = []
    caller = FunctionCaller(None)  # type: ignore[arg-type]
    caller.timer_listeners.append(lambda due: heard.append("x"))
    # The server's answers: no timer added, twice; then one due in 5 ms.
    due_in = [-1, -1, 5]

    async def answer(calls: object) -> list[object]:
        return [[b"ok", 1, b"1-0", 0, 0, [], due_in.pop(0)]]

    caller._call_many = answer  # type: ignore[method-assign]
    await caller.call_many([completion(store, [])])
    assert heard == []
    # A note on dropped signals is no command sent to the server either.
    await caller.call_many([completion(store, [cmd.RecordSignalDropped(2, "ping", "bad")])])
    assert heard == []
    await caller.call_many([completion(store, [cmd.StartTimer(1, 5)])])
    assert heard == ["x"]


class Handlers:
    def none(self) -> None: ...
    def one(self, a: int) -> None: ...
    def default(self, a: int, b: int = 1) -> None: ...
    def star(self, *args: int) -> None: ...
    def kw_required(self, a: int, *, k: int) -> None: ...
    def kw_default(self, a: int, *, k: int = 1) -> None: ...
    def positional(self, a: int, /, b: int) -> None: ...
    def kwargs(self, a: int, **kw: int) -> None: ...


@pytest.mark.parametrize(
    "name", [n for n in vars(Handlers) if not n.startswith("_")])
def test_the_argument_check_agrees_with_bind(name: str) -> None:
    handler = getattr(Handlers, name)
    instance = Handlers()
    for count in range(4):
        args = list(range(count))
        try:
            inspect.signature(handler).bind(instance, *args)
            fits = True
        except TypeError:
            fits = False
        misfit = _misfit(handler, instance, args, "handler")
        assert (misfit is None) == fits, (name, count, misfit)
        if not fits:
            assert misfit is not None and handler.__name__ in misfit


def test_a_fleet_shares_the_schedule_scans() -> None:
    store = Store(fakeredis.FakeAsyncRedis(), Keys("p", 2))
    size = 1
    scheduler = Scheduler(store, max_wait=1.0, fleet_size=lambda: size)
    assert scheduler.idle_wait() == 1.0
    size = PASSES
    assert scheduler.idle_wait() == 1.0
    size = 20
    waits = [scheduler.idle_wait() for _ in range(200)]
    share = 1.0 * 20 / PASSES
    assert all(0.5 * share <= w < 1.5 * share for w in waits)
    assert Scheduler(store).idle_wait() == Scheduler(store).max_wait  # fleet unknown


async def test_a_request_to_subscribe_again_wakes_the_holder_at_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The holder no longer polls its subscription: it waits long, and a request (the
    death watch saw our channel empty) cuts the wait short."""
    monkeypatch.setattr(_presence, "HOLD_POLL_S", 60.0)
    redis = fakeredis.FakeAsyncRedis(server=fakeredis.FakeServer())
    holder = PresenceHolder(redis, Keys("p", 2), "me")
    subscribed: list[int] = []
    subscribe = holder.subscribe

    async def counted() -> None:
        await subscribe()
        subscribed.append(1)

    monkeypatch.setattr(holder, "subscribe", counted)
    async with anyio.create_task_group() as tg:
        tg.start_soon(holder.hold)
        with anyio.fail_after(10):
            while not subscribed:
                await anyio.sleep(0.01)
            await anyio.sleep(0.05)  # the holder waits on its subscription now
            holder.request_resubscribe()
            while len(subscribed) < 2:
                await anyio.sleep(0.01)
        tg.cancel_scope.cancel()
