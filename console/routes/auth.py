"""Logging in and out."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Request, Response
from pydantic import BaseModel, Field

from console.accounts import SESSION_SECONDS, LoginRefused, Session, User
from console.times import iso
from console.web_auth import COOKIE, Viewer, accounts, current_session

router = APIRouter(prefix="/api/auth", tags=["authentication"])


class Credentials(BaseModel):
    username: str = Field(min_length=1, max_length=64)
    password: str = Field(min_length=1, max_length=1024)


def user_json(user: User) -> dict[str, Any]:
    return {"username": user.username, "role": user.role,
            "display_name": user.display_name, "org": user.org}


@router.post("/login")
def login(credentials: Credentials, request: Request, response: Response) -> dict[str, Any]:
    """Check the credentials; the session token comes back in the body (for
    scripts) and in an HttpOnly cookie (for the browser)."""
    try:
        session = accounts(request).login(credentials.username, credentials.password)
    except LoginRefused as exc:
        raise HTTPException(401, str(exc)) from None
    response.set_cookie(
        COOKIE, session.token, httponly=True, samesite="strict", path="/",
        secure=request.url.scheme == "https", max_age=SESSION_SECONDS)
    return {"user": user_json(session.user), "token": session.token,
            "expires": iso(session.expires)}


@router.post("/logout", status_code=204)
def logout(session: Annotated[Session, Depends(current_session)], request: Request,
           response: Response) -> None:
    accounts(request).logout(session.token)
    response.delete_cookie(COOKIE, path="/")


@router.get("/me")
def me(user: Viewer) -> dict[str, Any]:
    return user_json(user)
