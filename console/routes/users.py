"""User administration (admins only)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, HTTPException, Request
from pydantic import BaseModel, Field

from console.accounts import AccountError, User
from console.times import iso
from console.web_auth import Admin, accounts

router = APIRouter(prefix="/api/users", tags=["users"])


class NewUser(BaseModel):
    username: str = Field(min_length=1, max_length=64)
    password: str = Field(min_length=1, max_length=1024)
    role: str = Field(max_length=20)
    display_name: str | None = Field(default=None, max_length=200)


def _json(user: User) -> dict[str, Any]:
    return {"username": user.username, "role": user.role, "display_name": user.display_name,
            "created": iso(user.created)}


@router.get("")
def list_users(request: Request, user: Admin) -> dict[str, Any]:
    return {"users": [_json(found) for found in accounts(request).users()]}


@router.post("", status_code=201)
def add_user(request: Request, user: Admin, body: NewUser) -> dict[str, Any]:
    try:
        added = accounts(request).add_user(body.username, body.password, body.role,
                                           body.display_name)
    except AccountError as exc:
        raise HTTPException(400, str(exc)) from None
    return _json(added)
