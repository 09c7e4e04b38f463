"""Who may use the console: the users file, password hashes, signed sessions and CSRF tokens.

* The users file (``SUNLIGHT_USERS``, default ``<data dir>/users.json``, mode 0600) holds, per
  user, the role (``inspector`` or ``head``), a head's department, and an scrypt hash of the
  password with a salt of its own (standard library, `hashlib.scrypt`). No password is kept.
* A session is a cookie signed with ``SUNLIGHT_SECRET_KEY`` (itsdangerous, with its time:
  sessions end after `SESSION_HOURS`), HttpOnly, SameSite=Lax, Secure when the console is
  reached over https. It carries the user's name, a random nonce and a fingerprint of the user's
  stored password hash (an HMAC of it, `Sessions.fingerprint`); the user's role and department
  are read from the users file on every request, so a removed user is out at once, and a changed
  password (a new hash, a new salt: `sunlight users add` again) or a user removed and added
  again ends every session that came before. A session signed out (`Sessions.revoke`) is
  refused by this process until its time is up.
* Sign-in attempts are limited (`Throttle`): a few failures per user name and per client
  address in a window, then 429 until the window has passed.
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
import stat
import threading
import time
from collections import deque
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
        self._stamp: tuple | None = None
        self._records: dict[str, dict] = {}

    def records(self) -> dict[str, dict]:
        try:
            status = self.path.stat()
        except FileNotFoundError:
            return {}
        # the file is replaced whole (a new inode) on every change: two changes within one clock
        # tick are told apart too
        stamp = (status.st_mtime_ns, status.st_ino, status.st_size)
        if stamp != self._stamp:
            self._records = read_users(self.path)
            self._stamp = stamp
        return self._records

    def get(self, name: str | None) -> User | None:
        record = self.records().get(name or "")
        if record is None:
            return None
        return User(name, record["role"], record.get("department"))

    def credential(self, name: str) -> str | None:
        """The user's stored password hash (what a session's fingerprint is made of), or None."""
        record = self.records().get(name)
        return record["password"] if record else None

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
        department = record.get("department")
        if department is not None and not isinstance(department, str):
            raise ConsoleConfigError(f"{path}: user {name!r} has a department that is not a code")
        if record["role"] == "head" and not department:
            raise ConsoleConfigError(f"{path}: user {name!r} is a head (部门负责人) without a department: add it "
                                     f"again with `sunlight users add {name} --role head --department CODE`")
    return users


def loose_mode(path: Path) -> str | None:
    """A warning when the users file may be read or written by others than its owner, else None."""
    try:
        mode = stat.S_IMODE(Path(path).stat().st_mode)
    except FileNotFoundError:
        return None
    if mode & 0o077:
        return (f"the users file {path} has mode {mode:04o}: group and others may read its password hashes; "
                f"chmod 600 {path}")
    return None


def add_user(path: Path, name: str, role: str, department: str | None, password: str) -> bool:
    """Add or replace a user; True when the user is new. The file is written whole (0600). The name
    loses spaces around it, as the sign-in form's does (before, ' 张 三 ' was kept padded, and
    "张 三" could not sign in: found by a black-box test)."""
    name = name.strip()
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
    try:  # a leftover (or planted) temporary file or symlink keeps its own mode through os.replace
        os.unlink(temporary)
    except FileNotFoundError:
        pass
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), 0o600)
    os.fchmod(descriptor, 0o600)
    with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
        json.dump({"version": 1, "users": users}, handle, ensure_ascii=False, indent=1)
    os.replace(temporary, path)
    return new


# -- sessions and CSRF --------------------------------------------------------------------------------

@dataclass(frozen=True)
class Session:
    user: str | None  # None: a visitor not signed in (the sign-in form's CSRF needs a session too)
    nonce: str
    fingerprint: str = ""  # of the user's stored password hash when the session began (`Sessions.fingerprint`)


class Sessions:
    def __init__(self, secret_key: str, secure: bool, max_age: int = SESSION_HOURS * 3600):
        self.secret_key = check_secret_key(secret_key)
        self.serializer = URLSafeTimedSerializer(secret_key, salt="sunlight.session.v1")
        self.secure = secure
        self.max_age = max_age
        self._revoked: dict[str, float] = {}  # nonce -> when its cookie would have expired anyway
        self._lock = threading.Lock()

    def new(self, user: str | None, credential: str | None = None) -> Session:
        fingerprint = self.fingerprint(user, credential) if user and credential else ""
        return Session(user, secrets.token_urlsafe(18), fingerprint)

    def fingerprint(self, user: str, credential: str) -> str:
        """A short HMAC of the user's stored password hash: a new hash (a changed password, a user
        removed and added again) makes every earlier session's fingerprint wrong. Keyed, so the
        cookie (signed, not encrypted) tells nothing about the hash."""
        message = b"session-user:" + user.encode() + b"\0" + credential.encode()
        return hmac.new(self.secret_key.encode(), message, hashlib.sha256).hexdigest()[:24]

    def belongs(self, session: Session, user: str, credential: str | None) -> bool:
        """Whether a signed-in session is still the user's: the same stored hash, not signed out."""
        if credential is None or session.user != user or self.revoked(session):
            return False
        return hmac.compare_digest(session.fingerprint.encode(), self.fingerprint(user, credential).encode())

    def revoke(self, session: Session, now: float | None = None) -> None:
        """Sign a session out in this process (its cookie may have been copied): refused until the
        time it would have expired. Kept in memory: a restart forgets it (docs/console.md)."""
        now = time.time() if now is None else now
        with self._lock:
            for nonce in [n for n, until in self._revoked.items() if until <= now]:
                del self._revoked[nonce]
            self._revoked[session.nonce] = now + self.max_age

    def revoked(self, session: Session) -> bool:
        with self._lock:
            return session.nonce in self._revoked

    def dumps(self, session: Session) -> str:
        return self.serializer.dumps({"u": session.user, "n": session.nonce, "f": session.fingerprint})

    def loads(self, cookie: str | None) -> Session | None:
        if not cookie:
            return None
        try:
            payload = self.serializer.loads(cookie, max_age=self.max_age)
        except BadSignature:  # altered, or older than max_age (SignatureExpired is a BadSignature)
            return None
        if not isinstance(payload, dict) or not isinstance(payload.get("n"), str):
            return None
        user, fingerprint = payload.get("u"), payload.get("f")
        return Session(user if isinstance(user, str) else None, payload["n"],
                       fingerprint if isinstance(fingerprint, str) else "")

    def csrf(self, session: Session) -> str:
        return hmac.new(self.secret_key.encode(), b"csrf:" + session.nonce.encode(), hashlib.sha256).hexdigest()

    def csrf_ok(self, session: Session | None, token: str | None) -> bool:
        # Bytes: compare_digest refuses a str that is not ASCII (TypeError), and a token is what the visitor sent.
        return (session is not None and bool(token)
                and hmac.compare_digest(self.csrf(session).encode(), str(token).encode("utf-8", "surrogatepass")))

    def set_cookie(self, response, session: Session) -> None:
        response.set_cookie(COOKIE, self.dumps(session), max_age=self.max_age, path="/", httponly=True,
                            samesite="lax", secure=self.secure)

    def clear_cookie(self, response) -> None:
        response.delete_cookie(COOKIE, path="/", httponly=True, samesite="lax", secure=self.secure)


# -- sign-in attempts ---------------------------------------------------------------------------------

class Throttle:
    """Failed sign-ins, in memory: at most `limit` failures per key (a user name, a client address)
    within `window` seconds; then the key is refused until its oldest failure leaves the window."""

    def __init__(self, limit: int, window: float = 300.0, clock=time.time, max_keys: int = 10_000):
        self.limit = limit
        self.window = window
        self.clock = clock
        self.max_keys = max_keys
        self._failures: dict[str, deque] = {}
        self._lock = threading.Lock()

    def _recent(self, key: str, now: float) -> deque | None:
        failures = self._failures.get(key)
        while failures and failures[0] <= now - self.window:
            failures.popleft()
        if failures is not None and not failures:
            del self._failures[key]
            return None
        return failures

    def blocked_until(self, key: str) -> float | None:
        """When `key` may try again (a time of `clock`), or None when it may now."""
        now = self.clock()
        with self._lock:
            failures = self._recent(key, now)
            if failures is None or len(failures) < self.limit:
                return None
            return failures[-self.limit] + self.window

    def failed(self, key: str) -> None:
        now = self.clock()
        with self._lock:
            if key not in self._failures and len(self._failures) >= self.max_keys:
                for old in list(self._failures):  # drop what has left the window; else the oldest key
                    self._recent(old, now)
                if len(self._failures) >= self.max_keys:
                    del self._failures[next(iter(self._failures))]
            failures = self._failures.setdefault(key, deque())
            failures.append(now)
            while len(failures) > self.limit:
                failures.popleft()

    def forget(self, key: str) -> None:
        with self._lock:
            self._failures.pop(key, None)
