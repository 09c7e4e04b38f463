"""`sunlight demo` end to end, and the store's migrations."""

from __future__ import annotations

import os
import subprocess
import sys

import orjson
import pytest

from alerts.model import RULE_TITLE, Rule
from sinks.clickhouse import connect
from sinks.migrations import MigrationInterrupted, all_migrations, applied, migrate, progress, rollback


def test_the_demo_shows_every_rule_within_a_minute(tmp_path):
    env = {**os.environ, "SUNLIGHT_DATA_DIR": str(tmp_path / "data")}
    env.pop("SUNLIGHT_KAFKA", None)
    env.pop("SUNLIGHT_CLICKHOUSE", None)
    demo = subprocess.run([sys.executable, "-m", "streams.cli", "demo", "--duration", "55"], env=env,
                          capture_output=True, timeout=180)
    assert demo.returncode == 0, demo.stderr.decode()[-3000:]
    # Its output is not a terminal here: a plain summary now and then, no terminal control codes
    # in a log, the last line naming every rule by its Chinese title.
    out = demo.stdout.decode()
    lines = [line for line in out.splitlines() if "Sunlight demo:" in line]
    assert len(lines) >= 3 and "\x1b[" not in out, out[-3000:]
    last = lines[-1]
    assert "events processed" in last and "open alerts" in last, last
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


def test_ctrl_c_stops_the_demo(tmp_path):
    """Found on a new machine: Ctrl-C stopped the demo's worker, and the demo went on showing its
    screen ("watching the clock") for as long as anyone waited, its pipeline stopped. The first
    signal ends it, cleanly, with its last summary."""
    import signal
    import time

    env = {**os.environ, "SUNLIGHT_DATA_DIR": str(tmp_path / "data")}
    env.pop("SUNLIGHT_KAFKA", None)
    env.pop("SUNLIGHT_CLICKHOUSE", None)
    for when in (b"feeding events", b"watching the clock"):  # while the events come, and after
        data = tmp_path / when.decode().replace(" ", "-")
        demo = subprocess.Popen([sys.executable, "-m", "streams.cli", "demo", "--cases", "200"],
                                env={**env, "SUNLIGHT_DATA_DIR": str(data)},
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
        try:
            line = b""
            deadline = time.monotonic() + 120
            while when not in line and time.monotonic() < deadline and demo.poll() is None:
                line = demo.stdout.readline()
            assert when in line, line
            demo.send_signal(signal.SIGINT)
            out, err = demo.communicate(timeout=60)
        finally:
            if demo.poll() is None:
                demo.kill()
        assert demo.returncode == 0, err.decode()[-3000:]
        assert "stopped" in [line for line in out.decode().splitlines() if "Sunlight demo:" in line][-1]
        assert b"second signal" not in err


def test_migrations_apply_once_and_roll_back(tmp_path):
    client = connect(None, tmp_path)
    try:
        assert migrate(client) == [m.version for m in all_migrations()]
        assert migrate(client) == []
        tables = {row[0] for row in client.query("SHOW TABLES").result_rows}
        assert {"case_events", "cases", "alerts"} <= tables
        client.command("INSERT INTO case_events (case_id, event_id, occurred_at, recorded_at, ingested_at) "
                       "VALUES ('c', 'e', '2026-03-02 01:00:00', '2026-03-02 01:00:00', now())")
        assert {"dead_letters", "tickets", "notices", "silences", "scores"} <= tables
        assert {"settled_since", "judged_under"} <= cases_columns(client)
        assert "catalog_sha256" in columns(client, "scores") and "catalog_nodes" in tables
        assert "department_named" in columns(client, "case_events") and "verdicts" in cases_columns(client)
        assert "evidence_text" in columns(client, "alerts")
        assert {"closed_at", "closed_by", "closed_reason"} <= columns(client, "dead_letters")
        assert {"undone_ends", "reopened_at"} <= cases_columns(client)
        assert {"case_reopenings", "case_reopenings_mv"} <= {row[0] for row in client.query("SHOW TABLES").result_rows}
        assert "warned_deadline" in columns(client, "alerts")
        assert {"pending_alert_ids", "round"} <= columns(client, "tickets")
        assert rollback(client, 16) == [17]
        assert "warned_deadline" not in columns(client, "alerts")
        assert not {"pending_alert_ids", "round"} & columns(client, "tickets")
        assert rollback(client, 15) == [16]
        assert not {"undone_ends", "reopened_at"} & cases_columns(client)
        assert not {"case_reopenings", "case_reopenings_mv"} & {row[0] for row in client.query("SHOW TABLES").result_rows}
        assert rollback(client, 14) == [15]
        assert not {"closed_at", "closed_by", "closed_reason"} & columns(client, "dead_letters")
        assert rollback(client, 13) == [14]
        assert "evidence_text" not in columns(client, "alerts")
        assert rollback(client, 12) == [13]
        assert "verdicts" not in cases_columns(client)
        assert rollback(client, 11) == [12]
        assert "department_named" not in columns(client, "case_events")
        assert rollback(client, 10) == [11]
        assert "catalog_nodes" not in {row[0] for row in client.query("SHOW TABLES").result_rows}
        assert rollback(client, 9) == [10]
        assert "catalog_sha256" not in columns(client, "scores")
        assert rollback(client, 1) == [9, 8, 7, 6, 5, 4, 3, 2]  # back to monthly partitions, rows kept
        tables = {row[0] for row in client.query("SHOW TABLES").result_rows}
        assert not {"dead_letters", "tickets", "notices", "silences", "scores"} & tables
        assert not {"settled_since", "judged_under"} & cases_columns(client)
        assert client.query("SELECT count() FROM case_events").result_rows[0][0] == 1
        assert migrate(client) == list(range(2, 18))
        assert client.query("SELECT count() FROM case_events").result_rows[0][0] == 1
        assert rollback(client, 0) == list(range(17, 0, -1))
        assert applied(client) == []
        tables = {row[0] for row in client.query("SHOW TABLES").result_rows}
        assert not {"case_events", "cases", "alerts", "dead_letters", "tickets", "notices", "silences",
                    "scores"} & tables
        assert migrate(client) == list(range(1, 18))
    finally:
        client.close()


def test_the_same_catalog_is_written_once_and_a_changed_one_again(tmp_path):
    """Every pipeline and command start writes the catalog for the dashboards: the same catalog
    again writes nothing (eight statements each start, for nothing); a name changed, an item gone,
    or a region named otherwise writes a new copy, the item gone marked out of the catalog."""
    import copy
    from pathlib import Path

    import yaml

    from alerts.catalog import load_catalog
    from sinks.catalog_rows import write_catalog

    raw = yaml.safe_load((Path(__file__).resolve().parents[1] / "data" / "contract" / "catalog.example.yaml")
                         .read_text(encoding="utf-8"))
    client = connect(None, tmp_path)

    def held() -> tuple[list, list]:
        items = client.query("SELECT code, name, in_catalog FROM catalog_items FINAL ORDER BY code").result_rows
        regions = client.query("SELECT code, title FROM catalog_codes FINAL WHERE kind = 'region' ORDER BY code")
        return items, regions.result_rows

    try:
        migrate(client)
        first = write_catalog(client, load_catalog(raw))
        assert first is not None
        written = held()
        assert write_catalog(client, load_catalog(copy.deepcopy(raw))) is None
        assert held() == written
        changed = copy.deepcopy(raw)
        changed["items"][0]["name"] += "（修订）"
        gone = changed["items"].pop()["code"]
        assert write_catalog(client, load_catalog(changed)) > first
        items, regions = held()
        assert (changed["items"][0]["code"], changed["items"][0]["name"], 1) in items
        assert (gone, next(i["name"] for i in raw["items"] if i["code"] == gone), 0) in items
        region = regions[0][0]
        assert write_catalog(client, load_catalog(changed), region_names={region: "滨湖区"}) is not None
        assert (region, "滨湖区") in held()[1]
        assert write_catalog(client, load_catalog(changed), region_names={region: "滨湖区"}) is None
    finally:
        client.close()


def test_rows_written_before_migration_0017_read_its_columns_as_their_json_says(tmp_path):
    """Migration 0017 keeps three facts of a row's JSON in columns (a ticket's coming round and its
    round, a deadline_near card's deadline): rows written before it, and rows written after it by
    a writer that does not name them, read what their JSON says."""
    client = connect(None, tmp_path)
    try:
        migrate(client)
        for written_before in (True, False):
            if written_before:
                rollback(client, 16)
            prefix = "old" if written_before else "new"
            client.insert("tickets", [
                [f"{prefix}/1", 1, "{}"],
                [f"{prefix}/2", 3, orjson.dumps({"round": 2, "pending": ["a2", "a3"], "status": "closed"}).decode()]],
                column_names=["ticket_id", "version", "state"])
            client.insert("alerts", [
                [f"{prefix}-near", "deadline_near", orjson.dumps({"deadline": "2026-03-09T00:00:00+08:00"}).decode()],
                [f"{prefix}-late", "overdue", orjson.dumps({"deadline": "2026-03-09T00:00:00+08:00"}).decode()]],
                column_names=["alert_id", "rule", "evidence"])
            migrate(client)
            tickets = client.query("SELECT ticket_id, round, pending_alert_ids FROM tickets "
                                   "WHERE startsWith(ticket_id, {p:String}) ORDER BY ticket_id",
                                   parameters={"p": prefix}).result_rows
            assert tickets == [(f"{prefix}/1", 1, []), (f"{prefix}/2", 2, ["a2", "a3"])], written_before
            alerts = client.query("SELECT alert_id, toString(warned_deadline) FROM alerts WHERE startsWith(alert_id, "
                                  "{p:String}) ORDER BY alert_id", parameters={"p": prefix}).result_rows
            near = "2026-03-08 16:00:00.000000"  # its evidence's deadline, in UTC
            assert alerts == [(f"{prefix}-late", None), (f"{prefix}-near", near)], written_before
    finally:
        client.close()


def cases_columns(client) -> set[str]:
    return columns(client, "cases")


def columns(client, table: str) -> set[str]:
    return {row[0] for row in client.query("SELECT name FROM system.columns WHERE table = {t:String}",
                                           parameters={"t": table}).result_rows}


class Killed(BaseException):
    """Stands for kill -9: raised right after the statement it interrupts took effect. A process
    killed runs no handler of its own: a BaseException, as no `except Exception` (a migration's
    error said in one line, `MigrationFailed`) takes it for an error of the store."""


class Counting:
    """A store client that counts its statements and inserts."""

    def __init__(self, client):
        self._client, self.calls = client, 0

    def _count(self):
        self.calls += 1

    def command(self, *args, **kwargs):
        result = self._client.command(*args, **kwargs)
        self._count()
        return result

    def insert(self, *args, **kwargs):
        result = self._client.insert(*args, **kwargs)
        self._count()
        return result

    def query(self, *args, **kwargs):
        return self._client.query(*args, **kwargs)


class KilledAfter(Counting):
    """A store client whose process dies after its `calls`-th statement or insert."""

    def __init__(self, client, calls: int):
        super().__init__(client)
        self._last = calls

    def _count(self):
        super()._count()
        if self.calls == self._last:
            raise Killed


def _calls(run, client) -> int:
    counting = Counting(client)
    run(counting)
    return counting.calls


def _schema(client) -> list:
    """Every table but the ledger: its columns, engine, keys and partitioning."""
    tables = client.query("SELECT name, engine_full FROM system.tables WHERE database = currentDatabase() "
                          "AND name != 'schema_migrations' ORDER BY name").result_rows
    columns = client.query("SELECT table, name, type FROM system.columns WHERE database = currentDatabase() "
                           "AND table != 'schema_migrations' ORDER BY table, position").result_rows
    return tables + columns


def _events(client) -> list:
    return client.query("SELECT case_id, event_id, occurred_at FROM case_events FINAL "
                        "ORDER BY case_id, event_id").result_rows


def _killed(run, client, calls: int) -> bool:
    try:
        run(KilledAfter(client, calls))
    except Killed:
        return True
    return False


def _kill_points(points: range, every: bool) -> list[int]:
    """Where a run is killed: after each statement (the soak run), or a sample the suite can afford
    (each kill point costs a whole migrate and rollback, a second each): the first two, the last
    two, and every sixth between."""
    return [p for i, p in enumerate(points) if every or i < 2 or i >= len(points) - 2 or i % 6 == 0]


@pytest.mark.parametrize("every", [pytest.param(True, marks=pytest.mark.soak, id="every_statement"),
                                   pytest.param(False, id="sampled")])
def test_a_migration_killed_after_any_statement_finishes_on_the_next_run(tmp_path, every):
    """Kill migrate (and rollback) after a statement: the next run ends in the same schema with
    every row, and the other direction refuses to start on a half-done migration. From version 1
    (with rows) the statements of every migration but the first are kill points; from version 0,
    those of the first (the others are the same statements again). The soak run kills after each
    statement in turn; the suite's run after a sample (`_kill_points`)."""
    client = connect(None, tmp_path)
    try:
        latest = [m.version for m in all_migrations()]
        for base in (1, 0):
            rollback(client, 0)
            migrate(client)
            full = _schema(client)
            rollback(client, base)
            at_base = _schema(client)
            if base:  # rows written under 0001's monthly partitions must survive every rebuild
                client.command("INSERT INTO case_events (case_id, event_id, occurred_at, recorded_at, ingested_at) "
                               "VALUES ('c1', 'e1', '2025-01-31 23:00:00.123', '2025-01-31 23:00:00', now()), "
                               "('c1', 'e2', '2025-02-01 08:00:00', '2025-02-01 08:00:00', now()), "
                               "('c2', 'e1', '2013-06-01 08:00:00', '2013-06-01 08:00:00', now())")
            rows = _events(client) if base else None

            def migrate_killed_at(calls: int) -> bool:  # from the base to the latest
                killed = _killed(migrate, client, calls)
                if killed and any(not state.applied and not state.finished for state in progress(client).values()):
                    with pytest.raises(MigrationInterrupted, match="run migrate to finish it"):
                        rollback(client, base)
                migrate(client)
                assert (applied(client), _schema(client)) == (latest, full), f"migrate killed after {calls} calls"
                assert rows is None or _events(client) == rows, f"migrate killed after {calls} calls"
                return killed

            def rollback_killed_at(calls: int) -> bool:  # from the latest to the base
                killed = _killed(lambda c: rollback(c, base), client, calls)
                if killed and any(state.applied and not state.finished for state in progress(client).values()):
                    with pytest.raises(MigrationInterrupted, match="run the rollback again"):
                        migrate(client)
                rollback(client, base)
                assert (applied(client), _schema(client)) == (latest[:base], at_base), \
                    f"rollback killed after {calls} calls"
                assert rows is None or _events(client) == rows, f"rollback killed after {calls} calls"
                return killed

            if base:
                up = _calls(migrate, client)
                down = _calls(lambda c: rollback(c, base), client)
                assert up > 2 * len(latest) and down > 2 * len(latest)  # statements in every migration
                ups, downs = (_kill_points(range(1, n + 2), every) for n in (up, down))
                for calls in sorted(set(ups) | set(downs)):
                    assert migrate_killed_at(calls) == (calls <= up), f"migrate killed after {calls} calls"
                    assert rollback_killed_at(calls) == (calls <= down), f"rollback killed after {calls} calls"
                continue
            # From version 0: the first migration's statements, the first calls of a migrate and the
            # last of a rollback (two more each side, for what a run does around its migrations).
            up_all = _calls(migrate, client)
            rollback(client, 1)
            first_up = up_all - _calls(migrate, client)
            down_to_first = _calls(lambda c: rollback(c, 1), client)
            migrate(client)
            down_all = _calls(lambda c: rollback(c, 0), client)
            assert 1 < first_up < up_all and down_to_first < down_all
            for calls in _kill_points(range(1, first_up + 3), every):
                assert migrate_killed_at(calls)
                rollback(client, 0)
            migrate(client)
            for calls in _kill_points(range(down_to_first - 1, down_all + 1), every):
                assert rollback_killed_at(calls)
                migrate(client)
    finally:
        client.close()
