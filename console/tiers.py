"""Tiers: which organisation a console is, which organisations it knows, the
links its children log in with, and what each user may see.

A console is one tier: an enterprise, a province (its enterprises below it)
or the national centre (the provinces below it, and their enterprises as the
provinces report them). Its identity and its uplink come from a YAML file
(`load_tier_config`). Organisations, grades and links live in the console
database; the scope a user sees is computed here and handed to the store as
`AlertQuery.scope`, so the store itself filters.
"""

from __future__ import annotations

import re
import secrets
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final
from urllib.parse import urlsplit

from console.accounts import token_hash
from console.state import ConsoleState
from detectors.rules.yamlsource import LineDict, YamlError, load_yaml

TIERS: Final = ("enterprise", "province", "national")
GRADES: Final = ("high", "medium", "low")
SEVERITIES: Final = ("low", "medium", "high", "critical")
ORG_ID: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
# Weight of a grade (and of being a key enterprise) in roll-up rankings.
GRADE_WEIGHT: Final = {"high": 3.0, "medium": 2.0, "low": 1.0, None: 1.0}
KEY_WEIGHT: Final = 1.5


class TierConfigError(ValueError):
    """A tier file that cannot be used: file, key and problem in one line."""


@dataclass(frozen=True, slots=True)
class UplinkConfig:
    url: str
    token: str
    ca: Path | None = None
    client_cert: Path | None = None
    client_key: Path | None = None
    min_severity: str = "low"
    inventory: bool = True
    interval: float = 2.0
    inventory_interval: float = 60.0
    spool: Path | None = None


@dataclass(frozen=True, slots=True)
class TierConfig:
    tier: str
    org_id: str
    name: str
    province: str | None = None  # an enterprise's province
    industry: str | None = None
    city: str | None = None
    uplink: UplinkConfig | None = None

    @classmethod
    def standalone(cls) -> TierConfig:
        """A console with no tier file: one enterprise on its own."""
        return cls("enterprise", "local", "this site")


def _text(where: str, doc: LineDict, key: str, *, required: bool = False,
          prefix: str = "") -> str | None:
    value = doc.get(key)
    if value is None:
        if required:
            raise TierConfigError(f"{where}:{doc.line}: {prefix}{key}: missing")
        return None
    if not isinstance(value, (str, int)) or isinstance(value, bool) or str(value) == "":
        raise TierConfigError(f"{where}:{doc.line_of(key)}: {prefix}{key}: must be a "
                              "non-empty text")
    return str(value)


def _org_id(where: str, doc: LineDict, key: str, *, required: bool = False) -> str | None:
    value = _text(where, doc, key, required=required)
    if value is not None and not ORG_ID.fullmatch(value):
        raise TierConfigError(f"{where}:{doc.line_of(key)}: {key}: {value!r} is not an "
                              "organisation id (letters, digits, . _ -, at most 64)")
    return value


def _path(where: str, doc: LineDict, key: str, base: Path) -> Path | None:
    """A file named under ``uplink:`` (relative to the tier file)."""
    value = _text(where, doc, key, prefix="uplink.")
    if value is None:
        return None
    path = (base / value) if not Path(value).is_absolute() else Path(value)
    if not path.is_file():
        raise TierConfigError(f"{where}:{doc.line_of(key)}: uplink.{key}: no file {path}")
    return path


def _number(where: str, doc: LineDict, key: str, default: float) -> float:
    value = doc.get(key, default)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
        raise TierConfigError(f"{where}:{doc.line_of(key)}: uplink.{key}: must be a positive "
                              "number")
    return float(value)


def _check_keys(where: str, doc: LineDict, known: Iterable[str], prefix: str = "") -> None:
    known = set(known)
    for key in doc:
        if key not in known:
            raise TierConfigError(f"{where}:{doc.line_of(key)}: {prefix}{key}: unknown key "
                                  f"(known: {', '.join(sorted(known))})")


def load_tier_config(path: Path) -> TierConfig:
    """The tier file at ``path``, checked whole; TierConfigError names the
    file, line and key of the first problem."""
    where = str(path)
    try:
        doc = load_yaml(path)
    except YamlError as exc:
        raise TierConfigError(str(exc)) from None
    except OSError as exc:
        raise TierConfigError(f"{where}: {exc.strerror or exc}") from None
    if not isinstance(doc, LineDict):
        raise TierConfigError(f"{where}: must be a mapping (tier:, id:, name:, …)")
    _check_keys(where, doc, ("tier", "id", "name", "province", "industry", "city", "uplink"))
    tier = _text(where, doc, "tier", required=True)
    if tier not in TIERS:
        raise TierConfigError(f"{where}:{doc.line_of('tier')}: tier: {tier!r} is not one of "
                              f"{', '.join(TIERS)}")
    org_id = _org_id(where, doc, "id", required=True)
    name = _text(where, doc, "name", required=True)
    province = _org_id(where, doc, "province")
    if tier == "enterprise" and doc.get("uplink") is not None and province is None:
        raise TierConfigError(f"{where}:{doc.line}: province: an enterprise with an uplink "
                              "names its province")
    uplink = None
    raw = doc.get("uplink")
    if raw is not None:
        if tier == "national":
            raise TierConfigError(f"{where}:{doc.line_of('uplink')}: uplink: the national "
                                  "centre has no tier above it")
        uplink = _uplink(where, raw, path.parent)
    assert org_id is not None and name is not None
    return TierConfig(tier, org_id, name, province, _text(where, doc, "industry"),
                      _text(where, doc, "city"), uplink)


def _uplink(where: str, raw: Any, base: Path) -> UplinkConfig:
    if not isinstance(raw, LineDict):
        raise TierConfigError(f"{where}: uplink: must be a mapping (url:, token_file:, …)")
    _check_keys(where, raw, ("url", "token_file", "ca", "client_cert", "client_key",
                             "forward", "interval", "inventory_interval", "spool"), "uplink.")
    url = _text(where, raw, "url", required=True, prefix="uplink.")
    assert url is not None
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise TierConfigError(f"{where}:{raw.line_of('url')}: uplink.url: {url!r} is not an "
                              "http(s) URL")
    token_file = _path(where, raw, "token_file", base)
    if token_file is None:
        raise TierConfigError(f"{where}:{raw.line}: uplink.token_file: missing (the file "
                              "holding the token the tier above issued to this one)")
    token = token_file.read_text().strip()
    if not token:
        raise TierConfigError(f"{where}:{raw.line_of('token_file')}: uplink.token_file: "
                              f"{token_file} is empty")
    client_cert = _path(where, raw, "client_cert", base)
    client_key = _path(where, raw, "client_key", base)
    if (client_cert is None) != (client_key is None):
        raise TierConfigError(f"{where}:{raw.line}: uplink: client_cert and client_key go "
                              "together")
    forward = raw.get("forward") or LineDict()
    if not isinstance(forward, LineDict):
        raise TierConfigError(f"{where}:{raw.line_of('forward')}: uplink.forward: must be a "
                              "mapping (min_severity:, inventory:)")
    _check_keys(where, forward, ("min_severity", "inventory"), "uplink.forward.")
    min_severity = forward.get("min_severity", "low")
    if min_severity not in SEVERITIES:
        raise TierConfigError(f"{where}:{forward.line_of('min_severity')}: uplink.forward."
                              f"min_severity: {min_severity!r} is not one of "
                              f"{', '.join(SEVERITIES)}")
    inventory = forward.get("inventory", True)
    if not isinstance(inventory, bool):
        raise TierConfigError(f"{where}:{forward.line_of('inventory')}: uplink.forward."
                              "inventory: must be true or false")
    spool = _text(where, raw, "spool", prefix="uplink.")
    return UplinkConfig(
        url.rstrip("/"), token, _path(where, raw, "ca", base), client_cert, client_key,
        min_severity, inventory, _number(where, raw, "interval", 2.0),
        _number(where, raw, "inventory_interval", 60.0),
        (base / spool) if spool is not None else None)


@dataclass(slots=True)
class Organization:
    id: str
    kind: str
    name: str
    parent: str | None = None
    industry: str | None = None
    city: str | None = None
    key_enterprise: bool = False
    grade: str | None = None
    updated: float = field(default_factory=time.time)

    def as_dict(self) -> dict[str, Any]:
        return {"id": self.id, "kind": self.kind, "name": self.name, "parent": self.parent,
                "industry": self.industry, "city": self.city,
                "key_enterprise": self.key_enterprise, "grade": self.grade,
                "weight": weight(self)}


def weight(org: Organization) -> float:
    """How much an organisation's alerts count in a roll-up ranking."""
    return GRADE_WEIGHT.get(org.grade, 1.0) * (KEY_WEIGHT if org.key_enterprise else 1.0)


_COLUMNS: Final = "id, kind, name, parent, industry, city, key_enterprise, grade, updated"


def _org(row: Any) -> Organization:
    org = Organization(*row)
    org.key_enterprise = bool(org.key_enterprise)
    return org


class Organizations:
    """The organisations one console knows, its own first among them."""

    def __init__(self, state: ConsoleState, tier: TierConfig) -> None:
        self.state = state
        self.tier = tier
        own = self.get(tier.org_id)
        parent = tier.province if tier.tier == "enterprise" else None
        self._write(Organization(
            tier.org_id, tier.tier, tier.name, parent, tier.industry, tier.city,
            own.key_enterprise if own else False, own.grade if own else None))

    @property
    def own(self) -> str:
        return self.tier.org_id

    # -- reading ---------------------------------------------------------------

    def get(self, org_id: str) -> Organization | None:
        rows = self.state.rows(f"SELECT {_COLUMNS} FROM organizations WHERE id = ?", (org_id,))
        return _org(rows[0]) if rows else None

    def all(self) -> list[Organization]:
        return [_org(row) for row in self.state.rows(
            f"SELECT {_COLUMNS} FROM organizations ORDER BY kind, id")]

    def enterprises_of(self, province: str) -> list[str]:
        return [row[0] for row in self.state.rows(
            "SELECT id FROM organizations WHERE kind = 'enterprise' AND parent = ? ORDER BY id",
            (province,))]

    def subtree(self, org_id: str) -> list[str]:
        """``org_id`` and every organisation below it that this console knows."""
        org = self.get(org_id)
        if org is None:
            return []
        if org.kind == "national":
            return [o.id for o in self.all()]
        if org.kind == "province":
            return [org_id, *self.enterprises_of(org_id)]
        return [org_id]

    def scope(self, user_org: str | None) -> list[str] | None:
        """The organisation ids whose data a user of ``user_org`` sees (None:
        everything in this console's store). A user of the console's own
        organisation sees the whole store at an enterprise or national
        console, the province's enterprises at a province; a user of another
        organisation sees that organisation and what lies below it."""
        org_id = user_org or self.own
        if org_id == self.own and self.tier.tier in ("enterprise", "national"):
            return None
        return self.subtree(org_id)

    def visible(self, user_org: str | None, org_id: str | None) -> bool:
        scope = self.scope(user_org)
        return scope is None or (org_id is not None and org_id in scope)

    # -- writing ---------------------------------------------------------------

    def _write(self, org: Organization) -> None:
        with self.state.transaction() as db:
            db.execute(
                f"INSERT INTO organizations ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) "
                "ON CONFLICT (id) DO UPDATE SET kind = excluded.kind, name = excluded.name, "
                "parent = excluded.parent, industry = excluded.industry, city = excluded.city, "
                "key_enterprise = excluded.key_enterprise, grade = excluded.grade, "
                "updated = excluded.updated",
                (org.id, org.kind, org.name, org.parent, org.industry, org.city,
                 int(org.key_enterprise), org.grade, org.updated))

    def add_child(self, org_id: str, name: str, *, industry: str | None = None,
                  city: str | None = None) -> str:
        """Register a child (an enterprise under a province, a province under
        the nation) and return the token its uplink logs in with; the token
        is shown once and stored only as a hash. A second call issues a new
        token and ends the old one."""
        if not ORG_ID.fullmatch(org_id):
            raise ValueError(f"{org_id!r} is not an organisation id "
                             "(letters, digits, . _ -, at most 64)")
        kind = {"province": "enterprise", "national": "province"}.get(self.tier.tier)
        if kind is None:
            raise ValueError("an enterprise console has no children")
        if org_id == self.own:
            raise ValueError(f"{org_id} is this console's own organisation")
        existing = self.get(org_id)
        if existing is not None and existing.kind != kind:
            raise ValueError(f"{org_id} is known here as a {existing.kind}, not a {kind}")
        org = existing or Organization(org_id, kind, name)
        org.name, org.parent = name, self.own if kind == "enterprise" else None
        org.industry = industry or org.industry
        org.city = city or org.city
        org.updated = time.time()
        self._write(org)
        token = secrets.token_urlsafe(32)
        with self.state.transaction() as db:
            db.execute("INSERT INTO links (org, token_hash, created) VALUES (?, ?, ?) "
                       "ON CONFLICT (org) DO UPDATE SET token_hash = excluded.token_hash, "
                       "created = excluded.created", (org_id, token_hash(token), time.time()))
        return token

    def child_of_token(self, token: str) -> str | None:
        """The child organisation a link token belongs to (and note it was seen)."""
        digest = token_hash(token)
        rows = self.state.rows("SELECT org FROM links WHERE token_hash = ?", (digest,))
        if not rows:
            return None
        with self.state.transaction() as db:
            db.execute("UPDATE links SET last_seen = ? WHERE token_hash = ?",
                       (time.time(), digest))
        return str(rows[0][0])

    def links(self) -> list[dict[str, Any]]:
        return [{"org": org, "created": created, "last_seen": seen}
                for org, created, seen in self.state.rows(
                    "SELECT org, created, last_seen FROM links ORDER BY org")]

    def accept_from_child(self, child: str, reported: dict[str, Any]) -> Organization:
        """An organisation record a child sent up: the child itself, or (from
        a province) one of its enterprises. What the child says of names,
        industry and city is kept; grading stays this console's own, and an
        enterprise is always filed under the province that reported it.
        ValueError when the child reports what is not its own."""
        org_id = reported.get("id")
        if not isinstance(org_id, str) or not ORG_ID.fullmatch(org_id):
            raise ValueError(f"organisation id {org_id!r} is not valid")
        child_org = self.get(child)
        assert child_org is not None
        if org_id == child and reported.get("parent") not in (None, child_org.parent):
            raise ValueError(f"{child} belongs to {child_org.parent or 'no province'} here, "
                             f"not to {reported.get('parent')}")
        if org_id != child:
            if child_org.kind != "province" or reported.get("kind") != "enterprise":
                raise ValueError(f"{child} may report only itself, not {org_id}")
            if reported.get("parent") != child:
                raise ValueError(f"{child} reports {org_id} under {reported.get('parent')!r}")
            existing = self.get(org_id)
            if existing is not None and (existing.kind != "enterprise"
                                         or existing.parent != child):
                raise ValueError(f"{org_id} belongs to {existing.parent or 'no province'}, "
                                 f"not to {child}")
        existing = self.get(org_id)
        base = existing or Organization(org_id, "enterprise" if org_id != child
                                        else child_org.kind, org_id)
        name = reported.get("name")
        base.name = name if isinstance(name, str) and name else base.name
        for key in ("industry", "city"):
            value = reported.get(key)
            if isinstance(value, str) and value:
                setattr(base, key, value)
        if org_id != child:
            base.parent = child
            # The province grades its enterprises; the nation takes its word.
            if reported.get("grade") in GRADES:
                base.grade = reported["grade"]
            base.key_enterprise = bool(reported.get("key_enterprise", base.key_enterprise))
        base.updated = time.time()
        self._write(base)
        return base

    def set_grading(self, org_id: str, *, key_enterprise: bool | None = None,
                    grade: str | None = None) -> Organization:
        """The province (or nation) marks a key enterprise and grades it."""
        org = self.get(org_id)
        if org is None:
            raise KeyError(org_id)
        if org.kind != "enterprise":
            raise ValueError(f"{org_id} is a {org.kind}; only enterprises are graded")
        if grade is not None and grade not in GRADES:
            raise ValueError(f"grade {grade!r} is not one of {', '.join(GRADES)}")
        if key_enterprise is not None:
            org.key_enterprise = key_enterprise
        if grade is not None:
            org.grade = grade
        org.updated = time.time()
        self._write(org)
        return org
