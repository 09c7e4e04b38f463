"""The ClickHouse server URL is read with its scheme (found by a black-box test: clickhouse-connect
ignores a DSN's scheme, so https:// on a port other than 443 or 8443 sent the password in plain
HTTP, and a URL without a scheme reached localhost)."""

from __future__ import annotations

import pytest

from sinks import clickhouse
from sinks.clickhouse import StoreError, connect


@pytest.mark.parametrize("url, interface", [
    ("https://sunlight:secret@clickhouse.example:9440/sunlight", "https"),
    ("HTTPS://clickhouse.example", "https"),
    ("http://sunlight:secret@clickhouse:8123/sunlight", "http"),
])
def test_the_scheme_chooses_http_or_https(monkeypatch, tmp_path, url, interface):
    seen = {}
    monkeypatch.setattr(clickhouse.clickhouse_connect, "get_client", lambda **kwargs: seen.update(kwargs) or "client")
    assert connect(url, tmp_path) == "client"
    assert seen == {"dsn": url, "interface": interface}


@pytest.mark.parametrize("url", ["clickhouse.example:8123", "not-a-url", "ftp://clickhouse.example/x",
                                 "https://:secret@/sunlight"])
def test_a_url_without_an_http_scheme_or_a_host_is_refused_with_its_password_hidden(monkeypatch, tmp_path, url):
    monkeypatch.setattr(clickhouse.clickhouse_connect, "get_client", lambda **kwargs: pytest.fail("connected"))
    with pytest.raises(StoreError, match="must be an http:// or https:// URL with a host") as refused:
        connect(url, tmp_path)
    assert "secret" not in str(refused.value)


def test_a_password_is_hidden_in_the_user_part_and_in_a_password_parameter():
    """Found by review: a password given as `?password=` (clickhouse-connect reads it there) was
    shown whole in the worker's start line."""
    from sinks.clickhouse import redact

    assert redact("https://u:secret@ch:8443/db") == "https://u:***@ch:8443/db"
    assert redact("http://ch:8123/db?user=u&password=s3cret&x=1") == "http://ch:8123/db?user=u&password=***&x=1"
    assert redact("http://ch:8123/db?Password=s3cret") == "http://ch:8123/db?Password=***"
    assert redact("http://ch:8123/db?user=u") == "http://ch:8123/db?user=u"


@pytest.mark.parametrize("url, shown", [
    ("default:secret@clickhouse:8123", "***@clickhouse:8123"),  # no scheme: urlsplit finds no password
    ("http://u:se/cret@[::1", "http://***@[::1"),  # unreadable, a / in the password
    ("http://u:p@ss@[::1", "http://***@[::1"),  # unreadable, an @ in the password
    ("http://u:secret@h:99999/db?password=secret", "http://***@h:99999/db?password=***"),  # a port out of range
])
def test_a_password_is_hidden_in_a_url_that_is_no_http_url_or_cannot_be_read(url, shown):
    """Found by review: the refusal of such a SUNLIGHT_CLICKHOUSE quoted it with its password."""
    from sinks.clickhouse import redact

    assert redact(url) == shown
