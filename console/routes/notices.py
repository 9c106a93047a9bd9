"""Notices: the list, issuing one, one notice with its steps, and the steps
either side takes on it. Who may do what is decided by `NoticeBook`; this
module turns its refusals into HTTP answers that give the reason."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Query, Request
from pydantic import BaseModel, Field, StrictFloat, StrictInt

from console.notices import (
    MAX_ID,
    MAX_REF,
    MAX_TEXT,
    MAX_TITLE,
    NoticeBook,
    NoticeConflict,
    NoticeError,
    NoticeForbidden,
    NoticeNotFound,
    StatusName,
    StepName,
)
from console.times import parse_time
from console.web_auth import Analyst, Viewer

router = APIRouter(prefix="/api/notices", tags=["notices"])


def _book(request: Request) -> NoticeBook:
    found: NoticeBook = request.app.state.notices
    return found


@contextmanager
def _answers() -> Iterator[None]:
    """The book's refusals as HTTP errors carrying its reason."""
    try:
        yield
    except NoticeNotFound as exc:
        raise HTTPException(404, str(exc)) from None
    except NoticeForbidden as exc:
        raise HTTPException(403, str(exc)) from None
    except NoticeConflict as exc:
        raise HTTPException(409, str(exc)) from None
    except NoticeError as exc:
        raise HTTPException(422, str(exc)) from None


@router.get("")
def list_notices(
    request: Request, user: Viewer, status: StatusName | None = None,
    overdue: bool | None = None,
    target: Annotated[str | None, Query(max_length=MAX_ID)] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 500,
) -> dict[str, Any]:
    """The notices to organisations in the user's scope and those the
    user's organisation issued, most recently updated first."""
    with _answers():
        found = _book(request).list(user, status=status, overdue=overdue, target=target,
                                    limit=limit)
    return {"notices": found}


class NewNotice(BaseModel):
    target: str = Field(min_length=1, max_length=MAX_ID)
    title: str = Field(min_length=1, max_length=MAX_TITLE)
    required_action: str = Field(min_length=1, max_length=MAX_TEXT)
    # ISO 8601 or epoch seconds.
    deadline: Annotated[str, Field(max_length=64)] | StrictInt | StrictFloat
    alert_id: str | None = Field(default=None, max_length=MAX_REF)
    asset: str | None = Field(default=None, max_length=MAX_REF)


@router.post("", status_code=201)
def issue(request: Request, user: Analyst, body: NewNotice) -> dict[str, Any]:
    """Issue a notice to an enterprise under the user's province (or, at
    the national centre, under any province)."""
    try:
        deadline = parse_time(body.deadline) if isinstance(body.deadline, str) \
            else float(body.deadline)
    except ValueError as exc:
        raise HTTPException(422, f"deadline: {exc}") from None
    with _answers():
        return _book(request).issue(
            user, target=body.target, title=body.title, required_action=body.required_action,
            deadline=deadline, alert_id=body.alert_id, asset=body.asset)


@router.get("/{notice_id}")
def get_notice(request: Request, user: Viewer, notice_id: str) -> dict[str, Any]:
    with _answers():
        return _book(request).get(user, notice_id)


class StepRequest(BaseModel):
    action: StepName
    text: str | None = Field(default=None, max_length=MAX_TEXT)
    evidence: str | None = Field(default=None, max_length=MAX_TEXT)


@router.post("/{notice_id}/steps")
def take_step(request: Request, user: Analyst, notice_id: str,
              body: StepRequest) -> dict[str, Any]:
    """Accept, start, rectify (with evidence), close, reopen (with a reason
    in ``text``) or comment; answers with the notice as it is after."""
    with _answers():
        return _book(request).act(user, notice_id, body.action, text=body.text,
                                  evidence=body.evidence)
