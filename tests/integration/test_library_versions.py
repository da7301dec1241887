"""A rolling deploy on a real server: a worker process of another library version (a
copy of this code whose Lua differs by a comment) keeps working after this version
connects, both versions' calls run on the same workflow, and the admin's prune
removes only the versions no connected process uses. On a private server: a prune
on a shared one would delete other checkouts' libraries."""

from __future__ import annotations

import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import anyio
import pytest
from redis.asyncio import Redis

from engine.functions import loaded_versions, prune_libraries
from engine.library import library_name, library_version, lua_files, version_of_source
from sdk import Client
from sdk._devserver import free_port
from sdk.examples.order import Order
from tests.integration.private_server import pass_binary, private_server
from tests.integration.test_cli import redurable
from tests.integration.worker_proc import ROOT, WorkerProcess

# single_server: every test here runs on a private single server of its own (a prune on
# the pass's server could delete other checkouts' versions); the cluster's case is
# test_cluster_mode.py's test_a_primary_with_only_another_version_gets_this_one_mid_run.
pytestmark = [pytest.mark.anyio, pytest.mark.single_server]

#: Appended to the last Lua file of the copy: the other version's only difference.
OTHER_COMMENT = "\n-- the other version of a rolling deploy\n"


@pytest.fixture(scope="module")
def server_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    port = free_port()
    directory = tmp_path_factory.mktemp("versions")
    with private_server(pass_binary(), directory, "--port", str(port), port=port):
        yield f"redis://127.0.0.1:{port}"


@pytest.fixture(scope="module")
def other_checkout(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """A copy of the code whose library is another version: (its root, the version)."""
    root = tmp_path_factory.mktemp("other-version")
    ignore = shutil.ignore_patterns("__pycache__")
    for package in ("engine", "sdk", "tests"):
        shutil.copytree(ROOT / package, root / package, ignore=ignore)
    last = sorted((root / "engine" / "lua").glob("*.lua"))[-1]
    last.write_text(last.read_text() + OTHER_COMMENT)
    # The copy's own view of its version (not assumed: lua_files joins the files).
    probe = subprocess.run(
        [sys.executable, "-c",
         "from engine.library import library_version; print(library_version())"],
        cwd=root, capture_output=True, check=True)
    version = probe.stdout.decode().strip()
    assert version != library_version()
    return root, version


class OtherVersionWorker(WorkerProcess):
    """tests.integration.worker_proc run from the other checkout."""

    def __init__(self, checkout: Path, *args: str) -> None:
        super().__init__(*args, env={"PYTHONPATH": str(checkout)})
        self.checkout = checkout

    def start(self) -> WorkerProcess:
        self.proc = subprocess.Popen(
            self.args, cwd=self.checkout, env=self.env, stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, start_new_session=True)
        return self


async def _deliver(client: Client, workflow_id: str) -> None:
    """Once paid, the order's two signals (each awaited for `wait_seconds`)."""
    handle = client.get_workflow_handle(workflow_id)
    with anyio.fail_after(30):
        while (await handle.query(Order.get_status))["state"] != "Paid":
            await anyio.sleep(0.05)
    await handle.signal(Order.picked_up)
    await handle.signal(Order.delivered)


@pytest.mark.timeout(120)
async def test_an_old_worker_keeps_working_after_a_new_version_connects(
    server_url: str, other_checkout: tuple[Path, str]
) -> None:
    checkout, other = other_checkout
    prefix = "t" + uuid.uuid4().hex[:10]
    queue = "orders"
    old = OtherVersionWorker(checkout, server_url, prefix, queue, "sdk.examples.order")
    old.start()
    try:
        await anyio.to_thread.run_sync(old.wait_ready)
        admin = Redis.from_url(server_url)
        assert await loaded_versions(admin) == {other}
        # This version connects: its library is added, the old one stays.
        client = await Client.connect(server_url, prefix=prefix)
        try:
            assert await loaded_versions(admin) == {other, library_version()}
            # Workflow tasks and activities run by the old worker (its functions), the
            # start, signals and query from this version (ours), on the same keys.
            for i in range(3):
                await client.start_workflow(Order.run, args=[i, 5.0], id=f"order-{i}",
                                            task_queue=queue)
            for i in range(3):
                await _deliver(client, f"order-{i}")
            with anyio.fail_after(30):
                for i in range(3):
                    result = await client.get_workflow_handle(f"order-{i}").result()
                    assert result == "Completed"
            # Both versions are in use: a prune keeps both.
            report = await prune_libraries(admin)
            assert set(report.in_use) == {other, library_version()}
            assert report.removed == []
            # The old worker goes (the end of the deploy): its version goes with the
            # next prune, run with the CLI as an admin would.
            old.stop()
            with anyio.fail_after(10):
                while other in (await prune_libraries(admin, dry_run=True)).in_use:
                    await anyio.sleep(0.05)
            pruned = await anyio.run_process(
                redurable("load-functions", "--redis-url", server_url, "--prune"))
            assert f"deleted: {other}" in pruned.stdout.decode()
            assert await loaded_versions(admin) == {library_version()}
        finally:
            await client.close()
            await admin.aclose()
    finally:
        old.kill()


@pytest.mark.timeout(60)
async def test_a_new_worker_takes_over_from_an_old_one(
    server_url: str, other_checkout: tuple[Path, str]
) -> None:
    """The other direction: the old version starts the workflows and is stopped; a
    worker of this version finishes them (the data written by one version's Lua is
    read by the other's)."""
    checkout, _ = other_checkout
    prefix = "t" + uuid.uuid4().hex[:10]
    queue = "orders"
    old = OtherVersionWorker(checkout, server_url, prefix, queue, "sdk.examples.order")
    old.start()
    new: WorkerProcess | None = None
    client = await Client.connect(server_url, prefix=prefix)
    try:
        await anyio.to_thread.run_sync(old.wait_ready)
        await client.start_workflow(Order.run, args=[1, 5.0], id="order-1", task_queue=queue)
        handle = client.get_workflow_handle("order-1")
        with anyio.fail_after(30):
            while (await handle.query(Order.get_status))["state"] != "Paid":
                await anyio.sleep(0.05)
        old.stop()
        new = WorkerProcess(server_url, prefix, queue, "sdk.examples.order").start()
        await anyio.to_thread.run_sync(new.wait_ready)
        await handle.signal(Order.picked_up)
        await handle.signal(Order.delivered)
        with anyio.fail_after(30):
            assert await handle.result() == "Completed"
    finally:
        old.kill()
        if new is not None:
            new.kill()
        await client.close()


def test_the_copy_differs_only_by_the_comment(other_checkout: tuple[Path, str]) -> None:
    _, other = other_checkout
    assert other == version_of_source(lua_files() + OTHER_COMMENT)


async def test_a_server_that_lost_this_version_gets_it_back_mid_run(server_url: str) -> None:
    """The hot path (engine/resp.py) on a single server whose library was deleted: the
    next call loads this version again and runs."""
    client = await Client.connect(server_url, prefix="t" + uuid.uuid4().hex[:10])
    admin = Redis.from_url(server_url)
    try:
        await admin.function_delete(library_name())
        handle = await client.start_workflow("Nothing", id="lost", task_queue="nowhere")
        assert (await handle.describe()).status.name == "RUNNING"
        assert library_version() in await loaded_versions(admin)
    finally:
        await admin.aclose()
        await client.close()
