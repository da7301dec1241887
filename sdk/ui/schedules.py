"""The UI's Schedules pages: the list, one schedule's detail, and its actions (trigger,
pause, unpause), as `redurable schedule` shows and does them. Schedule ids travel as
query parameters, as workflow ids do (sdk/ui/app.py)."""

from __future__ import annotations

from typing import TYPE_CHECKING
from urllib.parse import urlencode

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from engine.errors import RedurableError
from engine.schedules import ScheduleNotFoundError
from sdk._present import spec_text
from sdk.client.schedules import check_schedule_id
from sdk.ui import security

if TYPE_CHECKING:
    from sdk.ui.app import UI


async def schedules(ui: UI, request: Request) -> Response:
    items = [s async for s in ui.client.list_schedules()]
    return ui.render(request, "schedules.html", schedules=items, spec_text=spec_text,
                     notice=request.query_params.get("notice", ""))


async def schedule(ui: UI, request: Request) -> Response:
    schedule_id = check_schedule_id(_param(request.query_params.get("id")))
    try:
        desc = await ui.client.get_schedule_handle(schedule_id).describe()
    except ScheduleNotFoundError as exc:
        raise HTTPException(404, str(exc)) from None
    return ui.render(request, "schedule.html", desc=desc, spec_text=spec_text,
                     notice=request.query_params.get("notice", ""))


async def schedule_action(ui: UI, request: Request) -> Response:
    form = await security.read_form(request)
    security.check_request(request, form)
    schedule_id = check_schedule_id(_param(form.get("id")))
    handle = ui.client.get_schedule_handle(schedule_id)
    kind = request.path_params["action"]
    note = str(form.get("note", "")) or None
    try:
        if kind == "trigger":
            await handle.trigger()
            notice = "triggered: the next worker starts it"
        elif kind == "pause":
            await handle.pause(note=note)
            notice = "paused"
        elif kind == "unpause":
            await handle.unpause(note=note)
            notice = "unpaused"
        else:
            raise HTTPException(404, f"no action {kind!r}")
    except RedurableError as exc:
        notice = f"{kind} failed: {type(exc).__name__}: {exc}"
    return RedirectResponse(f"/schedule?{_query(id=schedule_id, notice=notice)}",
                            status_code=303)


def _param(value: object) -> str:
    if not isinstance(value, str) or not value:
        raise HTTPException(400, "missing parameter 'id'")
    return value


def _query(**params: str) -> str:
    return urlencode(params)
