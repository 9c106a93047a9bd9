"""Rule management: the rules in force, switching one, uploading a pack."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Request, UploadFile
from fastapi import File as FormFile

from console.rule_admin import MAX_PACK_BYTES, PackRefused, RuleAdmin, rule_summary
from console.web_auth import Admin, Viewer
from detectors.rules.switches import SwitchesError

router = APIRouter(prefix="/api/rules", tags=["rules"])


def _admin(request: Request) -> RuleAdmin:
    found: RuleAdmin = request.app.state.rule_admin
    return found


@router.get("")
def list_rules(request: Request, user: Viewer) -> dict[str, Any]:
    try:
        ruleset = _admin(request).ruleset()
    except SwitchesError as exc:
        raise HTTPException(500, str(exc)) from None
    return {"rules": [rule_summary(rule) for rule in ruleset.rules],
            "errors": [{"file": error.path.name, "line": error.line, "rule": error.rule_id,
                        "message": error.message} for error in ruleset.errors]}


def _switch(request: Request, rule_id: str, enabled: bool) -> dict[str, Any]:
    try:
        rule = _admin(request).set_enabled(rule_id, enabled)
    except SwitchesError as exc:
        raise HTTPException(500, str(exc)) from None
    if rule is None:
        raise HTTPException(404, f"no rule {rule_id}")
    return rule_summary(rule)


@router.post("/{rule_id}/enable")
def enable(request: Request, user: Admin, rule_id: str) -> dict[str, Any]:
    return _switch(request, rule_id, True)


@router.post("/{rule_id}/disable")
def disable(request: Request, user: Admin, rule_id: str) -> dict[str, Any]:
    return _switch(request, rule_id, False)


@router.post("/packs", status_code=201)
async def upload_pack(request: Request, user: Admin,
                      file: Annotated[UploadFile, FormFile()]) -> dict[str, Any]:
    """Add a rule pack (YAML, at most 1 MiB); refused with the file, line
    and problem when any rule of it does not load."""
    content = await file.read(MAX_PACK_BYTES + 1)
    if len(content) > MAX_PACK_BYTES:
        raise HTTPException(413, f"a rule pack is at most {MAX_PACK_BYTES} bytes")
    name = file.filename or ""
    try:
        count = _admin(request).add_pack(name, content)
    except PackRefused as exc:
        raise HTTPException(400, str(exc)) from None
    return {"pack": name, "rules": count}
