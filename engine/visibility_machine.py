"""The replay machine's search-attribute side: `workflow.upsert_search_attributes`
becomes an UpsertSearchAttributes command (an UpsertWorkflowSearchAttributes event,
matched on replay by kind, as Temporal does) and changes `workflow.info()` at once, live
and on replay alike, so code reading the attributes back sees the same values both ways.
"""

from __future__ import annotations

import dataclasses

from engine import commands as cmd
from engine.search_attributes import Wire, merged
from engine.workflow_info import WorkflowInfo


class SearchAttributesMixin:
    info: WorkflowInfo
    _commands: list[cmd.Command]
    _in_query: bool

    def upsert_search_attributes(self, wire: Wire) -> None:
        if self._in_query:
            raise RuntimeError("workflow.upsert_search_attributes is not allowed in a query "
                               "handler")
        if not wire:
            return
        self.info = dataclasses.replace(
            self.info, raw_search_attributes=merged(self.info.raw_search_attributes, wire)
        )
        self._commands.append(cmd.UpsertSearchAttributes(dict(wire)))
