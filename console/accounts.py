"""Console users, roles and login sessions.

Passwords are hashed with Argon2id (argon2-cffi's defaults); there is no
default account: the first admin is created with ``icswatch user add``.
A session token is 256 random bits handed to the browser once (a cookie) or
to a script (a bearer token); only its SHA-256 is stored.
"""

from __future__ import annotations

import hashlib
import re
import secrets
import threading
import time
from dataclasses import dataclass
from typing import Final

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from console.state import ConsoleState

ROLES: Final = ("viewer", "analyst", "admin")
ROLE_RANK: Final = {role: rank for rank, role in enumerate(ROLES)}
SESSION_SECONDS: Final = 12 * 3600
MIN_PASSWORD: Final = 10
USERNAME: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@-]{0,63}")
# Failed logins per user name before it is refused for LOCK_SECONDS.
MAX_FAILURES: Final = 5
LOCK_SECONDS: Final = 300.0


class AccountError(ValueError):
    """A user request that cannot be done (bad name, weak password…); the
    message says why."""


class LoginRefused(Exception):
    """Wrong user or password, or too many failures; the message is safe to
    show (it never says which of user or password was wrong)."""


@dataclass(frozen=True, slots=True)
class User:
    username: str
    role: str
    display_name: str
    created: float
    org: str | None = None  # None: the organisation of the console itself

    def may(self, role: str) -> bool:
        """Whether this user has ``role`` or a higher one."""
        return ROLE_RANK[self.role] >= ROLE_RANK[role]


@dataclass(frozen=True, slots=True)
class Session:
    token: str
    user: User
    expires: float


def token_hash(token: str) -> str:
    """How a bearer secret (session or link token) is stored: SHA-256 hex."""
    return hashlib.sha256(token.encode()).hexdigest()


class Accounts:
    def __init__(self, state: ConsoleState) -> None:
        self.state = state
        self.hasher = PasswordHasher()
        self._failures: dict[str, tuple[int, float]] = {}
        self._failures_lock = threading.Lock()
        # A hash to verify against for unknown users, so a wrong user name
        # takes as long as a wrong password.
        self._decoy = self.hasher.hash(secrets.token_hex(16))

    # -- users ----------------------------------------------------------------------

    def add_user(self, username: str, password: str, role: str,
                 display_name: str | None = None, org: str | None = None) -> User:
        if not USERNAME.fullmatch(username):
            raise AccountError(
                f"user name {username!r}: letters, digits and . _ @ - (at most 64)")
        self._check_role(role)
        self._check_password(password)
        user = User(username, role, display_name or username, time.time(), org)
        with self.state.transaction() as db:
            if db.execute("SELECT 1 FROM users WHERE username = ?", (username,)).fetchone():
                raise AccountError(f"user {username!r} exists")
            db.execute(
                "INSERT INTO users (username, role, display_name, password_hash, created, org) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                (username, role, user.display_name, self.hasher.hash(password), user.created,
                 org))
        return user

    def set_password(self, username: str, password: str) -> None:
        """A new password ends every session of the user."""
        self._check_password(password)
        with self.state.transaction() as db:
            changed = db.execute("UPDATE users SET password_hash = ? WHERE username = ?",
                                 (self.hasher.hash(password), username)).rowcount
            if not changed:
                raise AccountError(f"no user {username!r}")
            db.execute("DELETE FROM sessions WHERE username = ?", (username,))

    def set_role(self, username: str, role: str) -> None:
        self._check_role(role)
        with self.state.transaction() as db:
            if not db.execute("UPDATE users SET role = ? WHERE username = ?",
                              (role, username)).rowcount:
                raise AccountError(f"no user {username!r}")

    def remove_user(self, username: str) -> None:
        with self.state.transaction() as db:
            if not db.execute("DELETE FROM users WHERE username = ?", (username,)).rowcount:
                raise AccountError(f"no user {username!r}")

    def users(self) -> list[User]:
        return [User(*row) for row in self.state.rows(
            "SELECT username, role, display_name, created, org FROM users ORDER BY username")]

    def user(self, username: str) -> User | None:
        rows = self.state.rows(
            "SELECT username, role, display_name, created, org FROM users WHERE username = ?",
            (username,))
        return User(*rows[0]) if rows else None

    @staticmethod
    def _check_role(role: str) -> None:
        if role not in ROLE_RANK:
            raise AccountError(f"role {role!r}: one of {', '.join(ROLES)}")

    @staticmethod
    def _check_password(password: str) -> None:
        if len(password) < MIN_PASSWORD:
            raise AccountError(f"a password has at least {MIN_PASSWORD} characters")

    # -- sessions -------------------------------------------------------------------

    def login(self, username: str, password: str) -> Session:
        now = time.time()
        with self._failures_lock:
            failures, since = self._failures.get(username, (0, now))
            if failures >= MAX_FAILURES and now - since < LOCK_SECONDS:
                raise LoginRefused(
                    "too many failed logins for this user; try again in a few minutes")
        rows = self.state.rows(
            "SELECT password_hash, disabled FROM users WHERE username = ?", (username,))
        stored = rows[0][0] if rows else self._decoy
        try:
            self.hasher.verify(stored, password)
            good = bool(rows) and not rows[0][1]
        except (VerificationError, InvalidHashError):
            good = False
        if not good:
            with self._failures_lock:
                failures, since = self._failures.get(username, (0, now))
                if now - since >= LOCK_SECONDS:
                    failures, since = 0, now
                self._failures[username] = (failures + 1, since)
            raise LoginRefused("wrong user name or password")
        with self._failures_lock:
            self._failures.pop(username, None)
        token = secrets.token_urlsafe(32)
        expires = now + SESSION_SECONDS
        with self.state.transaction() as db:
            db.execute("DELETE FROM sessions WHERE expires <= ?", (now,))
            db.execute("INSERT INTO sessions (token_hash, username, created, expires) "
                       "VALUES (?, ?, ?, ?)", (token_hash(token), username, now, expires))
            if self.hasher.check_needs_rehash(stored):
                db.execute("UPDATE users SET password_hash = ? WHERE username = ?",
                           (self.hasher.hash(password), username))
        user = self.user(username)
        assert user is not None
        return Session(token, user, expires)

    def session(self, token: str) -> Session | None:
        """The live session of ``token``, None when unknown or expired."""
        rows = self.state.rows(
            "SELECT u.username, u.role, u.display_name, u.created, u.org, s.expires "
            "FROM sessions s JOIN users u ON u.username = s.username "
            "WHERE s.token_hash = ? AND s.expires > ? AND u.disabled = 0",
            (token_hash(token), time.time()))
        if not rows:
            return None
        *user, expires = rows[0]
        return Session(token, User(*user), expires)

    def logout(self, token: str) -> None:
        with self.state.transaction() as db:
            db.execute("DELETE FROM sessions WHERE token_hash = ?", (token_hash(token),))
