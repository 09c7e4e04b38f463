"""The console's users file, password hashes, sessions and CSRF tokens (streams/console/auth.py)."""

from __future__ import annotations

import json
import os
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
    # Spaces around a name are not part of it (found by a black-box test: ' 张 三 ' kept padded).
    assert add_user(path, " 张 三 ", "inspector", None, "zhangsan-password") is True
    assert Users(path).authenticate("张 三", "zhangsan-password") is not None
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


def test_a_head_without_a_department_is_refused_with_a_clear_error(tmp_path):
    path = tmp_path / "users.json"
    add_user(path, "检查员", "inspector", None, "inspector-password")
    data = json.loads(path.read_text(encoding="utf-8"))
    for department in (None, "", 7):
        data["users"]["无部门局长"] = {**data["users"]["检查员"], "role": "head", "department": department}
        path.write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")
        with pytest.raises(ConsoleConfigError, match="无部门局长"):
            read_users(path)
    with pytest.raises(ConsoleConfigError, match="without a department.*--department"):
        data["users"]["无部门局长"]["department"] = None
        path.write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")
        Users(path).get("检查员")


def test_the_users_file_is_0600_whatever_was_left_at_its_temporary_name(tmp_path):
    path = tmp_path / "users.json"
    temporary = tmp_path / "users.json.tmp"
    temporary.write_text("left over", encoding="utf-8")
    os.chmod(temporary, 0o644)
    add_user(path, "张督查", "inspector", None, "inspector-password")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600 and not path.is_symlink()
    assert not temporary.exists()
    # A symlink planted at the temporary name is not followed: its target is left alone.
    target = tmp_path / "elsewhere.json"
    target.write_text("not yours", encoding="utf-8")
    os.chmod(target, 0o644)
    temporary.symlink_to(target)
    add_user(path, "李督查", "inspector", None, "inspector-password")
    assert target.read_text(encoding="utf-8") == "not yours" and stat.S_IMODE(target.stat().st_mode) == 0o644
    assert stat.S_IMODE(path.stat().st_mode) == 0o600 and not path.is_symlink()
    assert set(read_users(path)) == {"张督查", "李督查"}
    from streams.console.auth import loose_mode

    # `serve` warns about a users file others may read.
    assert loose_mode(path) is None and loose_mode(tmp_path / "missing.json") is None
    os.chmod(path, 0o644)
    assert "0644" in loose_mode(path) and "chmod 600" in loose_mode(path)


def test_a_session_holds_a_fingerprint_of_the_user_s_password_hash(tmp_path):
    sessions = Sessions(KEY, secure=False)
    first, second = hash_password("first-password"), hash_password("first-password")
    session = sessions.new("张督查", first)
    loaded = sessions.loads(sessions.dumps(session))
    assert loaded == session and first not in sessions.dumps(session)
    assert sessions.belongs(loaded, "张督查", first)
    assert not sessions.belongs(loaded, "张督查", second)  # the same password hashed again: a new salt
    assert not sessions.belongs(loaded, "李督查", first) and not sessions.belongs(loaded, "张督查", None)
    assert not sessions.belongs(sessions.new("张督查"), "张督查", first)  # a session without a fingerprint
    sessions.revoke(loaded)
    assert not sessions.belongs(loaded, "张督查", first)
    assert sessions.belongs(sessions.new("张督查", first), "张督查", first)  # a new session is not revoked


def test_a_csrf_token_that_is_not_ascii_is_simply_wrong():
    sessions = Sessions(KEY, secure=False)
    session = sessions.new(None)
    for token in ("é", "督办" * 40, "\udcff"):
        assert sessions.csrf_ok(session, token) is False


def test_the_throttle_counts_failures_in_its_window():
    from streams.console.auth import Throttle

    now = [1000.0]
    throttle = Throttle(3, window=60, clock=lambda: now[0], max_keys=4)
    for _ in range(2):
        throttle.failed("a")
    assert throttle.blocked_until("a") is None
    now[0] += 10
    throttle.failed("a")
    assert throttle.blocked_until("a") == 1060.0  # when the oldest of the three leaves the window
    now[0] = 1060.0
    assert throttle.blocked_until("a") is None  # the failures at 1000 have left the window
    throttle.failed("a")
    assert throttle.blocked_until("a") is None
    throttle.failed("a")
    assert throttle.blocked_until("a") == 1070.0  # 1010's failure is the oldest of three
    throttle.forget("a")
    assert throttle.blocked_until("a") is None
    for key in "bcdefg":  # a bounded memory: the oldest keys go first
        throttle.failed(key)
    assert len(throttle._failures) <= 4
