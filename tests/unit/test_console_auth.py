"""The console's users file, password hashes, sessions and CSRF tokens (streams/console/auth.py)."""

from __future__ import annotations

import json
import stat

import pytest

from streams.console.auth import (ConsoleConfigError, Sessions, Users, add_user, check_secret_key, hash_password,
                                  read_users, verify_password)

KEY = "unit-test-secret-key-0123456789abcdef"


def test_a_password_is_kept_as_a_salted_scrypt_hash_and_checked_against_it():
    first, second = hash_password("正确的密码-1"), hash_password("正确的密码-1")
    assert first.startswith("scrypt$") and "正确的密码" not in first
    assert first != second  # a salt of its own
    assert verify_password("正确的密码-1", first) and verify_password("正确的密码-1", second)
    assert not verify_password("正确的密码-2", first)
    assert not verify_password("正确的密码-1", "plain$text") and not verify_password("x", "scrypt$garbage")


def test_the_users_file_holds_roles_and_hashes_never_a_password(tmp_path):
    path = tmp_path / "users.json"
    assert add_user(path, "张督查", "inspector", None, "inspector-password") is True
    assert add_user(path, "局长", "head", "SCJG", "head-password") is True
    assert add_user(path, "局长", "head", "ZJJ", "new-head-password") is False  # replaced
    text = path.read_text(encoding="utf-8")
    assert "inspector-password" not in text and "head-password" not in text
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    users = Users(path)
    assert users.authenticate("张督查", "inspector-password").role == "inspector"
    head = users.authenticate("局长", "new-head-password")
    assert (head.role, head.department, head.inspector) == ("head", "ZJJ", False)
    assert users.authenticate("局长", "head-password") is None
    assert users.authenticate("nobody", "inspector-password") is None
    with pytest.raises(ConsoleConfigError, match="needs --department"):
        add_user(path, "无部门", "head", None, "some-password")
    with pytest.raises(ConsoleConfigError, match="role"):
        add_user(path, "x", "admin", None, "some-password")
    with pytest.raises(ConsoleConfigError, match="8 characters"):
        add_user(path, "x", "inspector", None, "short")
    path.write_text(json.dumps({"users": {"x": {"role": "root", "password": "p"}}}), encoding="utf-8")
    with pytest.raises(ConsoleConfigError, match="no valid role"):
        read_users(path)


def test_the_secret_key_must_be_long_enough_and_is_never_echoed():
    for key in (None, "", "short"):
        with pytest.raises(ConsoleConfigError, match="at least 32 characters") as refused:
            check_secret_key(key)
        assert not key or key not in str(refused.value)
    assert check_secret_key(KEY) == KEY


def test_a_session_is_signed_and_its_csrf_token_belongs_to_it():
    sessions = Sessions(KEY, secure=True)
    session = sessions.new("张督查")
    cookie = sessions.dumps(session)
    assert sessions.loads(cookie) == session
    assert sessions.loads(cookie[:-2] + ("AA" if not cookie.endswith("AA") else "BB")) is None  # altered
    assert Sessions("another-key-" + "x" * 30, secure=True).loads(cookie) is None  # signed by another key
    assert sessions.loads(None) is None and sessions.loads("garbage") is None
    other = sessions.new("张督查")
    assert sessions.csrf_ok(session, sessions.csrf(session))
    assert not sessions.csrf_ok(session, sessions.csrf(other))  # another session's token
    assert not sessions.csrf_ok(session, "") and not sessions.csrf_ok(session, None)
    assert not sessions.csrf_ok(None, sessions.csrf(session))


def test_a_session_ends_after_its_time():
    sessions = Sessions(KEY, secure=False, max_age=-1)
    assert sessions.loads(sessions.dumps(sessions.new("张督查"))) is None
