"""CSRF protection and security headers of the web UI.

A state-changing request (every POST) must carry the session's token in its form and,
when a browser sent one, an Origin equal to the UI's own: a page on another site can
neither read the token (the cookie is HttpOnly, SameSite=Strict) nor forge the Origin.
The Host check (TrustedHostMiddleware in app.py) stops DNS-rebinding pages from
talking to a UI on 127.0.0.1 under their own name.
"""

from __future__ import annotations

import hmac
import secrets
from urllib.parse import parse_qsl

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

COOKIE = "redurable_csrf"
FIELD = "csrf_token"
#: Forms hold names and JSON arguments: far below this.
MAX_FORM_BYTES = 1 << 20

#: No inline script or style anywhere: an injected `<script>` would not run even if
#: escaping were ever missed. The timeline is SVG with x/width attributes for that reason.
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
)
HEADERS = [
    (b"content-security-policy", CSP.encode()),
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"same-origin"),
]


def session_token(request: Request) -> tuple[str, bool]:
    """(the browser's CSRF token, whether it is new and must be set as a cookie)."""
    token = request.cookies.get(COOKIE, "")
    if len(token) >= 32:
        return token, False
    return secrets.token_urlsafe(32), True


async def read_form(request: Request) -> dict[str, str]:
    """The fields of a urlencoded form post (all our forms; no multipart parser needed)."""
    kind = request.headers.get("content-type", "").split(";")[0].strip()
    if kind != "application/x-www-form-urlencoded":
        raise HTTPException(415, "forms must be sent as application/x-www-form-urlencoded")
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_FORM_BYTES:
            raise HTTPException(413, f"form over {MAX_FORM_BYTES} bytes")
    try:
        return dict(parse_qsl(body.decode(), keep_blank_values=True))
    except UnicodeDecodeError:
        raise HTTPException(400, "form is not UTF-8") from None


def check_request(request: Request, form: dict[str, str]) -> None:
    """Raise 403 unless the POST carries the session's token from our own origin."""
    origin = request.headers.get("origin")
    if origin is not None:
        expected = f"{request.url.scheme}://{request.headers.get('host', '')}"
        if origin != expected:
            raise HTTPException(403, f"cross-origin request refused (Origin {origin})")
    cookie = request.cookies.get(COOKIE, "")
    sent = form.get(FIELD)
    if not cookie or not isinstance(sent, str) or not hmac.compare_digest(cookie, sent):
        raise HTTPException(403, "missing or wrong CSRF token: reload the page and try again")


class SecurityHeaders:
    """Adds the headers above to every response."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), *HEADERS]
            await send(message)

        await self.app(scope, receive, send_with_headers)
