"""Who may use the console: the users file, password hashes, signed sessions and CSRF tokens.

* The users file (``SUNLIGHT_USERS``, default ``<data dir>/users.json``, mode 0600) holds, per
  user, the role (``inspector`` or ``head``), a head's department, and an scrypt hash of the
  password with a salt of its own (standard library, `hashlib.scrypt`). No password is kept.
* A session is a cookie signed with ``SUNLIGHT_SECRET_KEY`` (itsdangerous, with its time:
  sessions end after `SESSION_HOURS`), HttpOnly, SameSite=Lax, Secure when the console is
  reached over https. It carries the user's name and a random nonce; the user's role and
  department are read from the users file on every request, so a removed user is out at once.
* Every form carries a CSRF token: an HMAC of the session's nonce. A POST whose token does not
  match its session is refused (403). Signing in starts a new session (a new nonce).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

from itsdangerous import BadSignature, URLSafeTimedSerializer

ROLES = ("inspector", "head")
ROLE_TITLE = {"inspector": "督办人员", "head": "部门负责人"}
MIN_KEY_LENGTH = 32
SESSION_HOURS = 12
COOKIE = "sunlight_session"
SCRYPT_N, SCRYPT_R, SCRYPT_P, SCRYPT_LEN = 2 ** 14, 8, 1, 32


class ConsoleConfigError(ValueError):
    """The console cannot run as configured (no key, a short key, a bad users file)."""


def check_secret_key(key: str | None) -> str:
    if not key or len(key) < MIN_KEY_LENGTH:
        raise ConsoleConfigError(
            f"SUNLIGHT_SECRET_KEY must be set to a random text of at least {MIN_KEY_LENGTH} characters (it signs "
            f"sessions and reply links), e.g. python -c 'import secrets; print(secrets.token_urlsafe(32))'"
            + ("" if not key else f"; the one set has {len(key)}"))
    return key


# -- passwords ----------------------------------------------------------------------------------------

def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def hash_password(password: str) -> str:
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, n=SCRYPT_N, r=SCRYPT_R, p=SCRYPT_P, dklen=SCRYPT_LEN)
    return f"scrypt${SCRYPT_N}${SCRYPT_R}${SCRYPT_P}${_b64(salt)}${_b64(digest)}"


def verify_password(password: str, stored: str) -> bool:
    try:
        scheme, n, r, p, salt, digest = stored.split("$")
        if scheme != "scrypt":
            return False
        expected = base64.b64decode(digest)
        actual = hashlib.scrypt(password.encode(), salt=base64.b64decode(salt), n=int(n), r=int(r), p=int(p),
                                dklen=len(expected))
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(actual, expected)


_DUMMY = hash_password(secrets.token_urlsafe(12))  # an unknown user costs as much time as a known one


# -- users --------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class User:
    name: str
    role: str
    department: str | None = None

    @property
    def inspector(self) -> bool:
        return self.role == "inspector"


class Users:
    """The users file, read again whenever it changes."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self._stamp: float | None = None
        self._records: dict[str, dict] = {}

    def records(self) -> dict[str, dict]:
        try:
            stamp = self.path.stat().st_mtime_ns
        except FileNotFoundError:
            return {}
        if stamp != self._stamp:
            self._records = read_users(self.path)
            self._stamp = stamp
        return self._records

    def get(self, name: str | None) -> User | None:
        record = self.records().get(name or "")
        if record is None:
            return None
        return User(name, record["role"], record.get("department"))

    def authenticate(self, name: str, password: str) -> User | None:
        record = self.records().get(name)
        ok = verify_password(password, record["password"] if record else _DUMMY)
        return self.get(name) if ok and record else None


def read_users(path: Path) -> dict[str, dict]:
    try:
        raw = json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except (ValueError, UnicodeDecodeError) as exc:
        raise ConsoleConfigError(f"{path}: not a users file ({exc})") from None
    users = raw.get("users") if isinstance(raw, dict) else None
    if not isinstance(users, dict):
        raise ConsoleConfigError(f"{path}: not a users file (no \"users\" object)")
    for name, record in users.items():
        if not isinstance(record, dict) or record.get("role") not in ROLES or not isinstance(record.get("password"), str):
            raise ConsoleConfigError(f"{path}: user {name!r} has no valid role and password hash")
    return users


def add_user(path: Path, name: str, role: str, department: str | None, password: str) -> bool:
    """Add or replace a user; True when the user is new. The file is written whole (0600)."""
    if role not in ROLES:
        raise ConsoleConfigError(f"role must be one of {', '.join(ROLES)}")
    if role == "head" and not department:
        raise ConsoleConfigError("a head (部门负责人) needs --department")
    if not name or len(name) > 64 or any(c in name for c in "\r\n\t"):
        raise ConsoleConfigError("a user name is 1 to 64 characters on one line")
    if len(password) < 8:
        raise ConsoleConfigError("a password has at least 8 characters")
    path = Path(path)
    users = read_users(path)
    new = name not in users
    users[name] = {"role": role, "department": department if role == "head" else (department or None),
                   "password": hash_password(password)}
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(path.name + ".tmp")
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
        json.dump({"version": 1, "users": users}, handle, ensure_ascii=False, indent=1)
    os.replace(temporary, path)
    return new


# -- sessions and CSRF --------------------------------------------------------------------------------

@dataclass(frozen=True)
class Session:
    user: str | None  # None: a visitor not signed in (the sign-in form's CSRF needs a session too)
    nonce: str


class Sessions:
    def __init__(self, secret_key: str, secure: bool, max_age: int = SESSION_HOURS * 3600):
        self.secret_key = check_secret_key(secret_key)
        self.serializer = URLSafeTimedSerializer(secret_key, salt="sunlight.session.v1")
        self.secure = secure
        self.max_age = max_age

    def new(self, user: str | None) -> Session:
        return Session(user, secrets.token_urlsafe(18))

    def dumps(self, session: Session) -> str:
        return self.serializer.dumps({"u": session.user, "n": session.nonce})

    def loads(self, cookie: str | None) -> Session | None:
        if not cookie:
            return None
        try:
            payload = self.serializer.loads(cookie, max_age=self.max_age)
        except BadSignature:  # altered, or older than max_age (SignatureExpired is a BadSignature)
            return None
        if not isinstance(payload, dict) or not isinstance(payload.get("n"), str):
            return None
        user = payload.get("u")
        return Session(user if isinstance(user, str) else None, payload["n"])

    def csrf(self, session: Session) -> str:
        return hmac.new(self.secret_key.encode(), b"csrf:" + session.nonce.encode(), hashlib.sha256).hexdigest()

    def csrf_ok(self, session: Session | None, token: str | None) -> bool:
        return session is not None and bool(token) and hmac.compare_digest(self.csrf(session), str(token))

    def set_cookie(self, response, session: Session) -> None:
        response.set_cookie(COOKIE, self.dumps(session), max_age=self.max_age, path="/", httponly=True,
                            samesite="lax", secure=self.secure)

    def clear_cookie(self, response) -> None:
        response.delete_cookie(COOKIE, path="/", httponly=True, samesite="lax", secure=self.secure)
