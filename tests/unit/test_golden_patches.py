"""The patch golden histories (tests/golden/patch_*.json, one per deploy of
PatchedOrder) replayed by every deploy's code: Temporal's patch rules on histories a
real server recorded (docs/versioning.md). Each file's replay with its own code is in
test_golden.py with the others."""

from __future__ import annotations

import pytest

from engine.errors import NondeterminismError
from tests.golden import GOLDEN_DIR, load
from tests.golden.workflows import PatchedOrderV1, PatchedOrderV2, PatchedOrderV3, PatchedOrderV4
from tests.unit.test_golden import replay_golden

V1, V2, V3, V4 = PatchedOrderV1, PatchedOrderV2, PatchedOrderV3, PatchedOrderV4
ND = "nondeterminism"

#: history file -> {code: the branch its replay takes, or ND}.
MATRIX: dict[str, dict[type, str]] = {
    # Recorded before the patch: patched() answers False, the old branch.
    "patch_before": {V1: "push", V2: "push", V3: ND, V4: ND},
    # A new run on the patched code: the marker; removing the call needs deprecation.
    "patch_new_run": {V1: ND, V2: "sms", V3: "sms", V4: ND},
    # Recorded by deprecate_patch: every code with the new branch replays it.
    "patch_deprecated": {V1: ND, V2: "sms", V3: "sms", V4: "sms"},
    # Recorded with the call removed: no marker; deprecate_patch replays it too.
    "patch_removed": {V1: ND, V2: ND, V3: "sms", V4: "sms"},
}
CASES = [(name, code, want) for name, row in MATRIX.items() for code, want in row.items()]


@pytest.mark.parametrize(
    ("name", "code", "want"), CASES, ids=[f"{n}-by-{c.__name__[-2:]}" for n, c, _ in CASES]
)
def test_patch_history_replayed_by_each_deploy(name: str, code: type, want: str) -> None:
    golden = load(GOLDEN_DIR / f"{name}.flags-1-2-3.json")
    if want == ND:
        with pytest.raises(NondeterminismError):
            replay_golden(golden, code)
        return
    hooks = replay_golden(golden, code)
    assert hooks.instance.channel == want
    assert hooks.outcome == ("ok", "PUSH: PAID" if want == "push" else "sms: paid")
    if code is V2:
        # Both calls give the first answer: True where the marker is, else False.
        assert hooks.instance.answers == [want == "sms"] * 2


def test_the_marker_reads_as_plain_text() -> None:
    """What `redis-cli XRANGE` shows of the new run's marker."""
    golden = load(GOLDEN_DIR / "patch_new_run.flags-1-2-3.json")
    [marker] = [e for e in golden.events if e.type == "MarkerRecorded"]
    assert marker.attributes() == {
        "marker_name": "core_patch",
        "patch_id": "send-sms",
        "deprecated": 0,
    }
    scheduled = golden.events[marker.event_id]  # the next event: the branch's command
    assert scheduled.attributes()["activity_type"] == "send_sms"
