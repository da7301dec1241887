"""Workflows for the payload encryption tests, importable by `redurable worker`."""

from __future__ import annotations

from datetime import timedelta

from sdk import activity, workflow


@activity.defn
async def stamp(card: str) -> str:
    return f"charged {card}"


@workflow.defn
class SecretEcho:
    def __init__(self) -> None:
        self.note = ""

    @workflow.signal
    def annotate(self, note: str) -> None:
        self.note = note

    @workflow.query
    def last_note(self) -> str:
        return self.note

    @workflow.run
    async def run(self, card: str, padding: str) -> dict[str, str]:
        receipt = await workflow.execute_activity(
            stamp, card, start_to_close_timeout=timedelta(seconds=10)
        )
        await workflow.wait_condition(lambda: bool(self.note))
        return {"receipt": receipt, "note": self.note, "padding": padding}


WORKFLOWS = [SecretEcho]
ACTIVITIES = [stamp]
