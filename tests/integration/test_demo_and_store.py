"""`sunlight demo` end to end, and the store's migrations."""

from __future__ import annotations

import os
import subprocess
import sys

import orjson

from alerts.model import RULE_TITLE, Rule
from sinks.clickhouse import connect
from sinks.migrations import all_migrations, applied, migrate, rollback


def test_the_demo_shows_every_rule_within_a_minute(tmp_path):
    env = {**os.environ, "SUNLIGHT_DATA_DIR": str(tmp_path / "data")}
    env.pop("SUNLIGHT_KAFKA", None)
    env.pop("SUNLIGHT_CLICKHOUSE", None)
    demo = subprocess.run([sys.executable, "-m", "streams.cli", "demo", "--duration", "55"], env=env,
                          capture_output=True, timeout=180)
    assert demo.returncode == 0, demo.stderr.decode()[-3000:]
    # Its output is not a terminal here: a plain summary, whose last line names every rule.
    last = [line for line in demo.stdout.decode().splitlines() if "Sunlight demo:" in line][-1]
    assert all(RULE_TITLE[rule] in last for rule in Rule), last
    export = subprocess.run([sys.executable, "-m", "streams.cli", "alerts", "export"], env=env,
                            capture_output=True, timeout=120)
    rules = {orjson.loads(line)["rule"] for line in export.stdout.splitlines()}
    assert rules == {rule.value for rule in Rule}
    # Tickets open; simulated departments answer about half (accepted: closed), the rest escalate.
    tickets = subprocess.run([sys.executable, "-m", "streams.cli", "tickets", "list", "--format", "jsonl"], env=env,
                             capture_output=True, timeout=120)
    listed = [orjson.loads(line) for line in tickets.stdout.splitlines()]
    closed = [t for t in listed if t["status"] == "closed"]
    escalated = [t for t in listed if t["status"] == "open" and t["escalation_level"] > 0]
    assert closed and escalated and all(t["resolution"] == "accepted" for t in closed), listed[:3]
    assert "督办件 tickets:" in last and "已办结" in last


def test_migrations_apply_once_and_roll_back(tmp_path):
    client = connect(None, tmp_path)
    try:
        assert migrate(client) == [m.version for m in all_migrations()]
        assert migrate(client) == []
        tables = {row[0] for row in client.query("SHOW TABLES").result_rows}
        assert {"case_events", "cases", "alerts"} <= tables
        client.command("INSERT INTO case_events (case_id, event_id, occurred_at, recorded_at, ingested_at) "
                       "VALUES ('c', 'e', '2026-03-02 01:00:00', '2026-03-02 01:00:00', now())")
        assert {"dead_letters", "tickets", "notices", "silences"} <= tables
        assert rollback(client, 1) == [5, 4, 3, 2]  # back to monthly partitions, rows kept
        tables = {row[0] for row in client.query("SHOW TABLES").result_rows}
        assert not {"dead_letters", "tickets", "notices", "silences"} & tables
        assert client.query("SELECT count() FROM case_events").result_rows[0][0] == 1
        assert migrate(client) == [2, 3, 4, 5]
        assert client.query("SELECT count() FROM case_events").result_rows[0][0] == 1
        assert rollback(client, 0) == [5, 4, 3, 2, 1]
        assert applied(client) == []
        tables = {row[0] for row in client.query("SHOW TABLES").result_rows}
        assert not {"case_events", "cases", "alerts", "dead_letters", "tickets", "notices", "silences"} & tables
        assert migrate(client) == [1, 2, 3, 4, 5]
    finally:
        client.close()
