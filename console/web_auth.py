"""Authentication for every API route: a session cookie (the browser) or a
bearer token (scripts), and the role a route needs.

A cookie rides along with any request the browser makes, so a state-changing
request authenticated by the cookie must also carry ``X-Requested-With:
icswatch``, which a cross-site form cannot set (the cookie is SameSite=Strict
too; this is the second lock).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Final

from fastapi import Depends, HTTPException, Request

from console.accounts import Accounts, Session, User

COOKIE: Final = "icswatch_session"
CSRF_HEADER: Final = "x-requested-with"
CSRF_VALUE: Final = "icswatch"
SAFE_METHODS: Final = frozenset({"GET", "HEAD", "OPTIONS"})


def accounts(request: Request) -> Accounts:
    found: Accounts = request.app.state.accounts
    return found


def session_token(request: Request) -> tuple[str | None, bool]:
    """The token and whether it came from the cookie."""
    header = request.headers.get("authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip(), False
    cookie = request.cookies.get(COOKIE)
    return (cookie, True) if cookie else (None, False)


def current_session(request: Request) -> Session:
    token, from_cookie = session_token(request)
    if token is None:
        raise HTTPException(401, "log in first", headers={"WWW-Authenticate": "Bearer"})
    session = accounts(request).session(token)
    if session is None:
        raise HTTPException(401, "the session has expired or was ended; log in again",
                            headers={"WWW-Authenticate": "Bearer"})
    if from_cookie and request.method not in SAFE_METHODS \
            and request.headers.get(CSRF_HEADER) != CSRF_VALUE:
        raise HTTPException(403, f"a browser request that changes something needs the "
                                 f"header X-Requested-With: {CSRF_VALUE}")
    return session


def current_user(session: Annotated[Session, Depends(current_session)]) -> User:
    return session.user


def require(role: str) -> Callable[[User], User]:
    """A dependency: the user, if they have ``role`` or a higher one."""

    def check(user: Annotated[User, Depends(current_user)]) -> User:
        if not user.may(role):
            raise HTTPException(403, f"this needs the {role} role; you are {user.role}")
        return user

    return check


Viewer = Annotated[User, Depends(current_user)]
Analyst = Annotated[User, Depends(require("analyst"))]
Admin = Annotated[User, Depends(require("admin"))]
