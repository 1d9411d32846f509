"""The lock of a shared viewer: with a token, every page and API call needs it.

The API takes it as a bearer header; pages, through a login form that sets an HttpOnly,
SameSite=Strict cookie holding a digest of the token (never the token itself). A token
in the URL is never accepted (it would land in logs and histories). Comparisons are made
in constant time.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets


from litestar.enums import ScopeType
from litestar.exceptions import NotAuthorizedException
from litestar.middleware import ASGIMiddleware
from litestar.types import ASGIApp, Receive, Scope, Send

COOKIE = "opeval_session"
TOKEN_ENV = "OPEVAL_VIEW_TOKEN"
#: Paths anyone may fetch: the login form and the stylesheet it uses.
OPEN_PATHS = ("/login", "/static/")


def generate_token() -> str:
    """A new random token (printed once by ``opeval view --token generate``)."""
    return secrets.token_urlsafe(32)


def session_value(token: str) -> str:
    """What the login cookie holds: a keyed digest of the token."""
    return hmac.new(token.encode(), b"opeval viewer session", hashlib.sha256).hexdigest()


def _equal(a: str, b: str) -> bool:
    return hmac.compare_digest(a.encode(), b.encode())


def authorized(token: str, headers: dict[str, str], cookies: dict[str, str]) -> bool:
    """Does this request carry the token (bearer header) or a session from the login form?"""
    auth = headers.get("authorization", "")
    if auth[:7].lower() == "bearer " and _equal(auth[7:].strip(), token):
        return True
    cookie = cookies.get(COOKIE)
    return cookie is not None and _equal(cookie, session_value(token))


def _cookies(raw: str) -> dict[str, str]:
    out = {}
    for part in raw.split(";"):
        name, _, value = part.strip().partition("=")
        if name:
            out[name] = value
    return out


class TokenLock(ASGIMiddleware):
    """Refuses every request without the token but for :data:`OPEN_PATHS`."""

    scopes = (ScopeType.HTTP,)

    def __init__(self, token: str) -> None:
        self.token = token

    async def handle(self, scope: Scope, receive: Receive, send: Send, next_app: ASGIApp) -> None:
        path: str = scope["path"]
        if path == "/login" or path.startswith("/static/"):
            await next_app(scope, receive, send)
            return
        headers = {k.decode().lower(): v.decode(errors="replace") for k, v in scope["headers"]}
        if authorized(self.token, headers, _cookies(headers.get("cookie", ""))):
            await next_app(scope, receive, send)
            return
        # The app's error handler answers: JSON for the API, the login form for pages.
        raise NotAuthorizedException(detail="this viewer is locked: send the token as 'Authorization: Bearer <token>'")


