"""The replay machine's replay side: the complete activations of a history run again
through the workflow code, whose commands must be the ones the history recorded there
(else `NondeterminismError`)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from engine import commands as cmd
from engine import events as ev
from engine.errors import NondeterminismError
from engine.patches import skip_unasked_deprecated_markers, unasked_marker_hint


class ReplayMixin:
    """Reads history for the machine (engine/machine.py `WorkflowMachine`)."""

    #: Id of the last history event this machine has consumed.
    last_event_id: int
    replaying: bool
    closed: bool
    _now_ms: int
    _matching: bool
    _close_emitted: bool

    if TYPE_CHECKING:  # the machine's and its other sides' (no stub at run time:
        # a stub would shadow the real method of a base that comes later in the MRO)

        def _run_activation(
            self, inputs: list[ev.Event], flags: frozenset[ev.WorkflowLogicFlag]
        ) -> list[cmd.Command]: ...

        def _note_patch_markers(self, recorded: Sequence[ev.Event]) -> None: ...

        def _note_local_markers(self, recorded: Sequence[ev.Event]) -> None: ...

        def _note_accepted_updates(self, recorded: Sequence[ev.Event]) -> None: ...

    def _check_contiguous(self, events: Sequence[ev.Event]) -> None:
        if events and events[0].event_id != self.last_event_id + 1:
            raise NondeterminismError(
                f"history gap: expected event {self.last_event_id + 1}, got {events[0].event_id}"
            )

    def _replay_complete(self, events: Sequence[ev.Event]) -> int:
        pos = 0
        while True:
            boundary = pos
            while boundary < len(events) and not isinstance(
                events[boundary], ev.WorkflowTaskCompleted
            ):
                if events[boundary].is_command:
                    raise NondeterminismError(
                        f"history event {events[boundary].event_id} "
                        f"({events[boundary].type}) is a command outside an activation"
                    )
                boundary += 1
            if boundary == len(events):
                return pos
            marker = events[boundary]
            assert isinstance(marker, ev.WorkflowTaskCompleted)
            end = boundary + 1
            while end < len(events) and events[end].is_command:
                end += 1
            self.replaying = True
            self._now_ms = marker.now or marker.timestamp
            self._note_patch_markers(events[boundary + 1 : end])
            self._note_local_markers(events[boundary + 1 : end])
            self._note_accepted_updates(events[boundary + 1 : end])
            self._matching = True
            try:
                commands = self._run_activation(list(events[pos:boundary]), marker.logic_flags)
            finally:
                self._matching = False
            self._match(commands, events[boundary + 1 : end], marker)
            self.last_event_id = events[end - 1].event_id
            pos = end

    def _match(
        self,
        commands: list[cmd.Command],
        recorded: Sequence[ev.Event],
        marker: ev.WorkflowTaskCompleted,
    ) -> None:
        recorded = skip_unasked_deprecated_markers(commands, recorded)
        for index, command in enumerate(commands):
            if index >= len(recorded):
                lenient = ev.WorkflowLogicFlag.CLOSE_DROP_RECORDED not in marker.logic_flags
                if (
                    isinstance(command, cmd.CLOSE_COMMANDS)
                    and index == len(commands) - 1
                    and (marker.close_dropped or lenient)
                ):
                    # The close was not written because new events had arrived; the
                    # next activation decides again (as it did when this ran live).
                    self._close_emitted = False
                    continue
                raise NondeterminismError(
                    f"workflow code issued {cmd.describe(command)} in the activation "
                    f"ending at event {marker.event_id}, but the history records no "
                    "more commands there"
                )
            event = recorded[index]
            if not cmd.matches(command, event):
                hint = "" if isinstance(command, cmd.SetPatchMarker) else unasked_marker_hint(event)
                raise NondeterminismError(
                    f"history event {event.event_id} is {event.type} "
                    f"{_summary(event)} but workflow code issued {cmd.describe(command)}{hint}"
                )
            if event.type in ev.CLOSE_TYPES:
                self.closed = True
        if len(recorded) > len(commands):
            extra = recorded[len(commands)]
            raise NondeterminismError(
                f"history event {extra.event_id} is {extra.type} {_summary(extra)} but "
                "workflow code did not issue it" + unasked_marker_hint(extra)
            )


def _summary(event: ev.Event) -> str:
    attrs = {k: v for k, v in event.attributes().items() if not isinstance(v, bytes | dict)}
    return "(" + ", ".join(f"{k}={v!r}" for k, v in attrs.items()) + ")"
