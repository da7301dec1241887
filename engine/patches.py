"""What the replay machine keeps for `workflow.patched` / `workflow.deprecate_patch`,
with the rules of Temporal's patch markers (docs/versioning.md):

- run live, `patched(id)` records a marker (`MarkerRecorded`, marker_name "core_patch")
  and answers True: the new code path;
- replayed, it answers True only if the history records that marker in the activation
  being replayed (or an earlier one), else False, the path the old code took;
- the first answer for an id holds for the rest of the run (so a loop or a second call
  site sees the same branch), and only that first call records a marker;
- a recorded marker that the code no longer asks for fails replay with
  NondeterminismError, unless `deprecate_patch` recorded it: a deprecated marker is
  skipped, which is what lets the call be removed at last.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TypeGuard

from engine import commands as cmd
from engine import events as ev


def is_patch_marker(event: ev.Event) -> TypeGuard[ev.MarkerRecorded]:
    return isinstance(event, ev.MarkerRecorded) and event.marker_name == ev.PATCH_MARKER_NAME


class PatchMixin:
    """The replay machine's patch side."""

    _commands: list[cmd.Command]
    #: The answer `patched` gave per patch id in this run: the first one holds.
    _patch_answers: dict[str, bool]
    #: Patch ids whose marker the replay has met among recorded commands so far.
    _patches_in_history: frozenset[str]
    #: True while an activation runs to be matched with recorded commands.
    _matching: bool
    #: True while a query handler runs: it reads state and decides nothing.
    _in_query: bool

    def patch(self, patch_id: str, deprecated: bool) -> bool:
        """`workflow.patched` (deprecated=False) and `workflow.deprecate_patch`."""
        if self._in_query:
            # A first answer here would hold for the run, decided outside any activation.
            raise RuntimeError("workflow.patched is not allowed in a query handler")
        answer = self._patch_answers.get(patch_id)
        if answer is None:
            # Live, nothing recorded can contradict the new branch: take it. Replayed,
            # the history says which branch the code took when this activation ran.
            answer = not self._matching or patch_id in self._patches_in_history
            self._patch_answers[patch_id] = answer
            if answer:
                self._commands.append(cmd.SetPatchMarker(patch_id, deprecated))
        return answer

    def _note_patch_markers(self, recorded: Sequence[ev.Event]) -> None:
        """Before an activation is replayed: the patch markers it recorded (Temporal's
        NotifyHasPatch), so `patched` answers True for them."""
        for event in recorded:
            if is_patch_marker(event):
                # A frozenset (the empty one is shared): most runs have no patch.
                self._patches_in_history |= {event.patch_id}


def skip_unasked_deprecated_markers(
    commands: Sequence[cmd.Command], recorded: Sequence[ev.Event]
) -> list[ev.Event]:
    """The recorded command events to match, without the deprecated patch markers that
    the code did not ask for (it no longer calls deprecate_patch for them)."""
    asked = {c.patch_id for c in commands if isinstance(c, cmd.SetPatchMarker)}

    def skipped(event: ev.Event) -> bool:
        return is_patch_marker(event) and bool(event.deprecated) and event.patch_id not in asked

    return [e for e in recorded if not skipped(e)]


def unasked_marker_hint(event: ev.Event) -> str:
    """What to say when a recorded patch marker has no command: how to remove a patch."""
    if not is_patch_marker(event):
        return ""
    return (
        f" (the code no longer calls workflow.patched({event.patch_id!r}) here: replace it "
        f"with workflow.deprecate_patch({event.patch_id!r}) first, and remove that only "
        "when no run that recorded the marker needs replaying: docs/versioning.md)"
    )
