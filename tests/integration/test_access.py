"""Users and row policies for a ClickHouse server, and keeping secrets out of output.

The statements are checked by ClickHouse's own parser (chdb's formatQuery) everywhere;
they are run against a server only when SUNLIGHT_CLICKHOUSE points at one, because
embedded chdb has no access control (CREATE USER is refused).
"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path
from datetime import datetime, timezone

import pytest

from alerts.catalog import load_catalog
from sinks.access import PUBLIC_TABLES, SCOPED_TABLES, policy_statements, user_statements
from sinks.clickhouse import connect
from sinks.migrations import migrate

CATALOG = load_catalog({
    "departments": [
        {"code": "SCJG", "name": "市场监管局", "region": "320200"},
        {"code": "ZJJ", "name": "住建局", "region": "320200"},
        {"code": "QSCJG", "name": "区市场监管局", "region": "320205"},
        {"code": "O'Hara`s", "name": "引号部门", "region": "320205"},
    ],
    "items": [{"code": "I1", "name": "许可", "category": "licensing", "department": "SCJG", "promised_days": 5,
               "nodes": [{"id": "a", "name": "受理"}]}],
})
SECRET = "S3cret-Pw-7f1c"
EXAMPLE_CATALOG = Path(__file__).parents[1] / "data" / "contract" / "catalog.example.yaml"


def test_every_statement_parses_as_clickhouse_sql(tmp_path):
    client = connect(None, tmp_path)
    try:
        statements = policy_statements(CATALOG, "sunlight") + user_statements("o'brien`x", SECRET,
                                                                              ["sunlight_department_O'Hara`s"])
        for statement in statements:
            formatted = client.query("SELECT formatQuery({q:String})", parameters={"q": statement}).result_rows
            assert formatted[0][0]
    finally:
        client.close()
    assert not any(SECRET in s for s in statements), "the password itself must never be in a statement"
    policies = [s for s in statements if "ROW POLICY" in s]
    assert len(policies) == len(SCOPED_TABLES) * (1 + 4 + 2)  # (all + 4 departments + 2 regions) x tables
    assert {"tickets", "notices", "dead_letters", "scores"} <= set(SCOPED_TABLES)
    # The catalog's copy (the dashboards' variables and names) is readable by every role, unfiltered.
    for table in PUBLIC_TABLES:
        grants = [s for s in statements if s.startswith("GRANT SELECT") and f"`{table}`" in s]
        assert len(grants) == 1 + 4 + 2, table
        assert not any("ROW POLICY" in s and f"`{table}`" in s for s in statements)


def sunlight(*args, env_changes=None, timeout=120):
    env = {k: v for k, v in os.environ.items() if not k.startswith("SUNLIGHT_")}
    env.update(env_changes or {})
    return subprocess.run([sys.executable, "-m", "streams.cli", "-v", *args], env=env, capture_output=True,
                          timeout=timeout)


def test_access_commands_refuse_the_embedded_store(tmp_path):
    catalog = EXAMPLE_CATALOG
    done = sunlight("access", "apply", "--catalog", str(catalog), env_changes={"SUNLIGHT_DATA_DIR": str(tmp_path)})
    assert done.returncode != 0
    assert "need a ClickHouse server" in done.stderr.decode()


def test_printed_statements_are_for_the_database_apply_would_use():
    """Found by a docs review: `--print` always named the database `default`, while `apply` runs
    against the URL's (`sunlight` in the compose file)."""
    url = "http://reader:pw@clickhouse.city.example:8123/sunlight"
    printed = sunlight("access", "apply", "--catalog", str(EXAMPLE_CATALOG), "--print",
                       env_changes={"SUNLIGHT_CLICKHOUSE": url})
    assert printed.returncode == 0, printed.stderr
    out = printed.stdout.decode()
    assert "`sunlight`.`alerts`" in out and "`default`." not in out
    told = sunlight("access", "apply", "--catalog", str(EXAMPLE_CATALOG), "--print", "--database", "other",
                    env_changes={"SUNLIGHT_CLICKHOUSE": url})
    assert "`other`.`alerts`" in told.stdout.decode()
    for written in (url + "/", url + "/more", "http://reader:pw@clickhouse.city.example:8123/?database=sunlight"):
        again = sunlight("access", "apply", "--catalog", str(EXAMPLE_CATALOG), "--print",
                         env_changes={"SUNLIGHT_CLICKHOUSE": written})
        assert "`sunlight`.`alerts`" in again.stdout.decode(), written


def test_no_secret_is_printed_or_logged(tmp_path):
    """The ClickHouse password and a new user's password appear nowhere in output or logs, at -v."""
    catalog = EXAMPLE_CATALOG
    server = f"http://sunlight:{SECRET}@127.0.0.1:9/sunlight"  # nothing listens there
    env = {"SUNLIGHT_CLICKHOUSE": server, "SUNLIGHT_DATA_DIR": str(tmp_path),
           "SUNLIGHT_NEW_USER_PASSWORD": SECRET + "-new", "SUNLIGHT_KAFKA": "127.0.0.1:9",
           "SUNLIGHT_METRICS_PORT": "0"}
    runs = [
        sunlight("alerts", "export", env_changes=env),
        sunlight("access", "apply", "--catalog", str(catalog), env_changes=env),
        sunlight("access", "add-user", "alice", "--department", "SCJG", "--catalog", str(catalog), env_changes=env),
        sunlight("worker", "--catalog", str(catalog), env_changes=env),
    ]
    for done in runs:
        output = (done.stdout + done.stderr).decode()
        assert done.returncode == 2, output[-2000:]
        assert "cannot reach ClickHouse at http://sunlight:***@127.0.0.1:9/sunlight" in output
        assert SECRET not in output
        assert "Traceback" not in output


def test_settings_never_show_the_store_url():
    from streams.settings import Settings

    settings = Settings.from_env({"SUNLIGHT_CLICKHOUSE": f"http://u:{SECRET}@db:8123/x"})
    assert SECRET not in repr(settings) and SECRET not in str(settings)


server = os.environ.get("SUNLIGHT_CLICKHOUSE")


@pytest.mark.skipif(not server, reason="needs a ClickHouse server: set SUNLIGHT_CLICKHOUSE (chdb has no users)")
def test_row_policies_on_a_server_show_each_user_only_their_scope():
    import clickhouse_connect
    from urllib.parse import urlsplit

    admin = connect(server, None)
    database = admin.database or "default"
    migrate(admin)
    suffix = uuid.uuid4().hex[:8]
    now = datetime(2026, 6, 1, tzinfo=timezone.utc)
    rows = [[f"a-{suffix}-{d}", "overdue", "red", f"c-{d}", "I1", d, region, None, None, now, now, "{}", "open",
             1, "超时"] for d, region in (("SCJG", "320200"), ("ZJJ", "320200"), ("QSCJG", None))]
    admin.insert("alerts", rows, column_names=["alert_id", "rule", "severity", "case_id", "item_code",
                                               "department", "region", "officer_id", "node", "raised_at",
                                               "event_time", "evidence", "status", "version", "title"])
    for statement in policy_statements(CATALOG, database):
        admin.command(statement)
    users = {f"scjg_{suffix}": ["sunlight_department_SCJG"], f"district_{suffix}": ["sunlight_region_320205"]}
    for user, roles in users.items():
        for statement in user_statements(user, SECRET, roles):
            admin.command(statement)
    parts = urlsplit(server)
    seen = {}
    for user in users:
        client = clickhouse_connect.get_client(host=parts.hostname, port=parts.port or 8123, username=user,
                                               password=SECRET, database=database)
        seen[user] = {r[0] for r in client.query(f"SELECT department FROM alerts WHERE alert_id LIKE 'a-{suffix}-%'")
                      .result_rows}
        client.close()
    assert seen == {f"scjg_{suffix}": {"SCJG"}, f"district_{suffix}": {"QSCJG"}}
    for user in users:
        admin.command(f"DROP USER IF EXISTS {user}")
    admin.close()
