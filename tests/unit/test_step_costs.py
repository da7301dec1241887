"""What a worker no longer recomputes per step: a workflow's key names and shard prefix
(Store), a task entry's decoded ids (TaskEntry)."""

from __future__ import annotations

import fakeredis
import pytest

from engine import store as store_mod
from engine.keys import Keys
from engine.store import Store
from sdk.worker.task_entry import TaskEntry


def test_the_remembered_names_are_the_keys_and_stay_bounded(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(store_mod, "WF_NAMES_KEPT", 3)
    keys = Keys("p", 4)
    store = Store(fakeredis.FakeAsyncRedis(), keys)
    for i in range(10):
        wf = f"wf-{i}"
        for _ in range(2):  # computed, then remembered: the same either way
            assert store._wf_keys(wf) == [keys.workflow(wf), keys.history(wf), keys.buffer(wf)]
            assert store._wf_args(wf, "r", 1) == [keys.shard_prefix(keys.shard(wf)), wf, "r", 1]
        assert len(store._wf_names) <= 3
    # A caller that extends the list it got does not change what is remembered.
    store._wf_keys("wf-9").append("x")
    assert len(store._wf_keys("wf-9")) == 3


def test_a_task_entry_decodes_each_field_once() -> None:
    task = TaskEntry("s", "1-0", {b"workflow_id": b"w", b"run_id": b"r"})
    assert task.get("workflow_id") == "w"
    task.fields[b"workflow_id"] = b"changed"  # nothing changes an entry's fields
    assert task.get("workflow_id") == "w"
    assert task.get("run_id") == "r"
    with pytest.raises(KeyError):
        task.get("epoch")
    assert task == TaskEntry("s", "1-0", task.fields)  # the cache is no part of equality
