"""The web UI's routes: server-rendered pages (Jinja2, autoescaped), htmx fragments for
live refresh and forms, and one server-sent-events stream per open workflow page.

Workflow ids travel as query parameters, never in the path: an id may hold `/`, `?`
or `#`, and a query parameter carries any of them without ambiguity.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import jinja2
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response, StreamingResponse
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.templating import Jinja2Templates

from engine.cluster_redis import own_connection_client
from engine.errors import InvalidArgumentError, RedurableError, WorkflowNotFoundError
from engine.events import CLOSE_TYPES
from engine.status import WorkflowExecutionStatus
from engine.validate import check_id
from engine.visibility_query import InvalidQueryError
from sdk._present import local_time, pretty, status_text
from sdk.client.client import Client
from sdk.ui import queries, security
from sdk.ui import schedules as schedule_pages
from sdk.ui.updates import send_update
from sdk.ui.views import load_detail, query_literal

HERE = Path(__file__).parent
TABS = ("overview", "history", "queries", "actions")
PAGE_SIZE = 50
#: How long one blocking read of a history stream waits before a keep-alive comment.
SSE_BLOCK_MS = 10_000


def url(path: str, **params: Any) -> str:
    """A local URL with query parameters (empty ones left out), safely encoded."""
    query = urlencode({k: v for k, v in params.items() if v not in (None, "")})
    return f"{path}?{query}" if query else path


def duration(ms: int | None) -> str:
    if ms is None:
        return "running"
    if ms < 1000:
        return f"{ms} ms"
    if ms < 120_000:
        return f"{ms / 1000:.1f} s"
    return f"{ms / 60_000:.1f} min"


def _templates() -> Jinja2Templates:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(HERE / "templates"),
        autoescape=True,  # every name and payload is text, never markup
        undefined=jinja2.StrictUndefined,
    )
    env.globals.update(url=url, statuses=tuple(WorkflowExecutionStatus), tabs=TABS)
    env.filters.update(local_time=local_time, duration=duration, pretty=pretty, status=status_text,
                       query_literal=query_literal)
    return Jinja2Templates(env=env)


class UI:
    """Routes bound to one Client (one namespace)."""

    def __init__(self, client: Client) -> None:
        self.client = client
        self.templates = _templates()

    def render(
        self, request: Request, template: str, /, status_code: int = 200, **context: Any
    ) -> Response:
        token, new = security.session_token(request)
        context.update(request=request, csrf_token=token, namespace=self.client.keys.prefix)
        response = self.templates.TemplateResponse(
            request, template, context, status_code=status_code
        )
        if new:
            response.set_cookie(
                security.COOKIE, token, httponly=True, samesite="strict", path="/"
            )
        return response

    # --- workflow list --------------------------------------------------------------
    async def workflows(self, request: Request) -> Response:
        params = request.query_params
        query_error = ""
        try:
            filters = queries.Filters(
                query=params.get("query", "").strip(),
                status=params.get("status") or None,
                workflow_type=params.get("type") or None,
                id_prefix=params.get("id_prefix", ""),
                started_from=_parse_time(params.get("from", ""), "from"),
                started_to=_parse_time(params.get("to", ""), "to"),
            )
            after = queries.parse_cursor(params.get("after", ""))
            page = await queries.list_page(self.client, filters, page_size=PAGE_SIZE, after=after)
        except InvalidQueryError as exc:
            # Shown above the list, the query kept in its box to fix.
            page, query_error = queries.Page([], None), str(exc)
        except InvalidArgumentError as exc:
            raise HTTPException(400, str(exc)) from None
        fragment = "hx-request" in request.headers  # the 3-second refresh: rows only
        return self.render(
            request,
            "_list_body.html" if fragment else "list.html",
            page=page,
            counts=await queries.status_counts(self.client),
            types=[] if fragment else await queries.workflow_types(self.client),
            params=dict(params),
            next_url=url("/workflows", **{**params, "after": queries.format_cursor(
                page.next_cursor)}) if page.next_cursor else None,
            now=datetime.now(UTC),
            query_error=query_error,
            with_attributes=any(row.search_attributes for row in page.rows),
            status_code=400 if query_error else 200,
        )

    # --- one workflow ----------------------------------------------------------------
    async def workflow(self, request: Request) -> Response:
        workflow_id = check_id(_required(request.query_params, "id"))
        tab = request.query_params.get("tab", "overview")
        if tab not in TABS:
            raise HTTPException(400, f"unknown tab {tab!r}; one of {', '.join(TABS)}")
        # The live stream starts after the newest entry read *before* the page's
        # history: an event appended in between is sent again, never missed.
        last: Any = await self.client.redis.xrevrange(
            self.client.keys.history(workflow_id), "+", "-", count=1
        )
        detail = await load_detail(self.client, workflow_id)
        fragment = "hx-request" in request.headers
        return self.render(
            request,
            f"_tab_{tab}.html" if fragment else "workflow.html",
            d=detail,
            tab=tab,
            workflow_id=workflow_id,
            stream_after=last[0][0].decode() if last else "0",
            notice=request.query_params.get("notice", ""),
        )

    async def events(self, request: Request) -> Response:
        """Server-sent events: `history` with the newest event id whenever events are
        appended, then `closed` when the run closes. Fed by a blocking XREAD on the
        history stream, on a connection of its own: a client that goes away cancels
        the read, and a cancelled read must not leave a shared connection out of step."""
        workflow_id = check_id(_required(request.query_params, "id"))
        after = request.query_params.get("after", "0") or "0"
        key = self.client.keys.history(workflow_id)

        async def stream() -> AsyncIterator[str]:
            # On a cluster, a connection to the node serving the history's slot.
            redis = own_connection_client(self.client.redis, key)
            last = after
            try:
                while True:
                    reply: Any = await redis.xread({key: last}, count=500, block=SSE_BLOCK_MS)
                    if not reply:
                        yield ": keep-alive\n\n"  # also finds out when the client left
                        continue
                    entries = reply[0][1]
                    last = entries[-1][0].decode()
                    newest = entries[-1][1].get(b"id", b"").decode()
                    yield f"event: history\ndata: {newest}\n\n"
                    if any(fields.get(b"type", b"").decode() in CLOSE_TYPES
                           for _, fields in entries):
                        yield "event: closed\ndata: closed\n\n"
                        return
            finally:
                await redis.aclose()
                await redis.connection_pool.disconnect()

        return StreamingResponse(
            stream(), media_type="text/event-stream", headers={"cache-control": "no-store"}
        )

    # --- actions (POST, CSRF-checked) --------------------------------------------------
    async def query(self, request: Request) -> Response:
        form = await security.read_form(request)
        security.check_request(request, form)
        workflow_id = _required(form, "id")
        name = _required(form, "name")
        context: dict[str, Any] = {"name": name, "value": None, "error": None}
        try:
            args = _json_args(str(form.get("args", "")))
            value = await self.client.get_workflow_handle(workflow_id).query(name, *args)
            context["value"] = pretty(value)
        except RedurableError as exc:
            context["error"] = f"{type(exc).__name__}: {exc}"
        return self.render(request, "_query_result.html", **context)

    async def action(self, request: Request) -> Response:
        form = await security.read_form(request)
        security.check_request(request, form)
        workflow_id = _required(form, "id")
        handle = self.client.get_workflow_handle(workflow_id)
        kind = request.path_params["action"]
        try:
            if kind == "signal":
                name = _required(form, "name")
                await handle.signal(name, *_json_args(str(form.get("args", ""))))
                notice = f"signal {name} sent"
            elif kind == "update":
                notice = await send_update(handle, _required(form, "name"),
                                           _json_args(str(form.get("args", ""))),
                                           str(form.get("update_id", "")) or None)
            elif kind == "cancel":
                await handle.cancel(str(form.get("reason", "")))
                notice = "cancellation requested"
            elif kind == "terminate":
                await handle.terminate(str(form.get("reason", "")))
                notice = "terminated"
            else:
                raise HTTPException(404, f"no action {kind!r}")
        except RedurableError as exc:
            notice = f"{kind} failed: {type(exc).__name__}: {exc}"
        # Post/redirect/get: a reload does not send the action again.
        return RedirectResponse(url("/workflow", id=workflow_id, tab="actions", notice=notice),
                                status_code=303)

    async def dead_letter_action(self, request: Request) -> Response:
        """Requeue or drop one dead letter (`id`) or all of them (`all=1`)."""
        form = await security.read_form(request)
        security.check_request(request, form)
        kind = request.path_params["action"]
        act = {"requeue": self.client.requeue_dead_letter,
               "drop": self.client.drop_dead_letter}.get(kind)
        if act is None:
            raise HTTPException(404, f"no dead-letter action {kind!r}")
        every = form.get("all") == "1"
        if every:
            ids = [letter.id for letter in await self.client.list_dead_letters()]
        else:
            ids = [_required(form, "id")]
        failed: list[str] = []
        for dead_letter_id in ids:
            try:
                await act(dead_letter_id)
            except RedurableError as exc:  # gone meanwhile, malformed id, no task stream
                failed.append(f"{dead_letter_id}: {type(exc).__name__}: {exc}")
        verb = "requeued" if kind == "requeue" else "dropped"
        if not every:
            notice = f"{kind} failed: {failed[0]}" if failed else f"{verb} {ids[0]}"
        else:
            notice = f"{verb} {len(ids) - len(failed)} of {len(ids)} dead letters"
            if failed:
                notice += f"; {len(failed)} failed: " + "; ".join(failed[:3])
        # Post/redirect/get, as for the workflow actions.
        return RedirectResponse(url("/queues", notice=notice), status_code=303)

    # --- task queues ----------------------------------------------------------------
    async def queues(self, request: Request) -> Response:
        names = await queries.task_queue_names(self.client)
        total, letters = await queries.dead_letters(self.client)
        return self.render(
            request,
            "_queues_body.html" if "hx-request" in request.headers else "queues.html",
            queues=[await queries.queue_stats(self.client, name) for name in names],
            dead_total=total,
            dead_letters=letters,
            now=datetime.now(UTC),
            notice=request.query_params.get("notice", ""),
        )

    async def home(self, request: Request) -> Response:
        return RedirectResponse("/workflows", status_code=302)


def _required(source: Any, name: str) -> str:
    value = source.get(name)
    if not isinstance(value, str) or not value:
        raise HTTPException(400, f"missing parameter {name!r}")
    return value


def _json_args(text: str) -> list[Any]:
    """Arguments typed into a form: one JSON array (empty: no arguments)."""
    if not text.strip():
        return []
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InvalidArgumentError(f"arguments are not valid JSON: {exc.msg}") from None
    if not isinstance(value, list):
        raise InvalidArgumentError("arguments must be a JSON array, e.g. [1, \"two\"]")
    return value


def _parse_time(text: str, what: str) -> datetime | None:
    """A time from an <input type=datetime-local> (local time) or ISO 8601."""
    if not text:
        return None
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        raise InvalidArgumentError(f"{what}: {text!r} is not a date and time") from None
    return value if value.tzinfo else value.astimezone()


def create_app(client: Client, *, host: str = "127.0.0.1") -> Starlette:
    """The ASGI app for one namespace. Requests must name one of the local host names
    (or `host`, when the UI was bound to a specific address)."""
    ui = UI(client)

    async def error_page(request: Request, exc: Exception) -> Response:
        if isinstance(exc, HTTPException):
            code, message = exc.status_code, str(exc.detail)
        elif isinstance(exc, WorkflowNotFoundError):
            code, message = 404, str(exc)
        elif isinstance(exc, InvalidArgumentError):
            code, message = 400, str(exc)
        elif isinstance(exc, RedisConnectionError | RedisTimeoutError):
            code, message = 503, f"lost the connection to the server: {exc}"
        else:
            raise exc
        return ui.render(request, "error.html", status_code=code, message=message)

    allowed = ["127.0.0.1", "localhost", "[::1]", host]
    if host in ("0.0.0.0", "::"):
        allowed = ["*"]  # bound to every interface on purpose: any name may reach it
    return Starlette(
        routes=[
            Route("/", ui.home),
            Route("/workflows", ui.workflows),
            Route("/workflow", ui.workflow),
            Route("/workflow/events", ui.events),
            Route("/workflow/query", ui.query, methods=["POST"]),
            Route("/workflow/{action}", ui.action, methods=["POST"]),
            Route("/queues", ui.queues),
            Route("/queues/dead-letters/{action}", ui.dead_letter_action, methods=["POST"]),
            Route("/schedules", partial(schedule_pages.schedules, ui)),
            Route("/schedule", partial(schedule_pages.schedule, ui)),
            Route("/schedule/{action}", partial(schedule_pages.schedule_action, ui),
                  methods=["POST"]),
            Mount("/static", StaticFiles(directory=HERE / "static"), name="static"),
        ],
        middleware=[
            Middleware(security.SecurityHeaders),
            Middleware(TrustedHostMiddleware, allowed_hosts=allowed),
        ],
        exception_handlers={
            HTTPException: error_page,
            WorkflowNotFoundError: error_page,
            InvalidArgumentError: error_page,
            RedisConnectionError: error_page,
            RedisTimeoutError: error_page,
        },
    )
