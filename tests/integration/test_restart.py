"""A worker killed (SIGKILL) mid-stream and restarted loses and duplicates nothing."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import orjson

from alerts.scenario import generate
from sinks.clickhouse import connect
from streams.broker import EmbeddedBroker, committed_offsets, produce
from tests.integration.conftest import (NOW, as_messages, identity, list_topics, pipeline_settings, replay,
                                        standalone_settings, store_rows, write_inputs)


async def committed(bootstrap: str, partitions: int) -> int:
    return sum((await committed_offsets(bootstrap, "sunlight", "case-events", partitions)).values())


def sunlight(args, env, **kwargs):
    return subprocess.Popen([sys.executable, "-m", "streams.cli", *args], env=env, **kwargs)


def finish_and_export(empty, catalog, now, env) -> tuple[list[dict], bytes]:
    """A second replay (of nothing: the first run's messages are in the broker) to the end, then
    every stored alert; and the second run's log."""
    second = sunlight(["replay", str(empty), "--catalog", str(catalog), *now], env,
                      stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, err = second.communicate(timeout=600)
    assert second.returncode == 0, err.decode()[-3000:]
    export = subprocess.run([sys.executable, "-m", "streams.cli", "alerts", "export", "--all"], env=env,
                            capture_output=True, timeout=300)
    assert export.returncode == 0, export.stderr.decode()[-3000:]
    return [orjson.loads(line) for line in export.stdout.splitlines()], err


# The worker, paced: a pause after each unit, so that a run of a few thousand events lasts seconds
# and a kill from outside falls between commits (the worker alone finishes it within one commit
# interval).
PACED = """
import asyncio, os, sys
from streams import steps, cli

real_process = steps.CaseSteps.process

async def process(self, *args, **kwargs):
    await real_process(self, *args, **kwargs)
    await asyncio.sleep(float(os.environ["UNIT_PAUSE"]))

steps.CaseSteps.process = process
sys.exit(cli.main(sys.argv[1:]))
"""


def test_kill_and_restart_mid_stream(tmp_path):
    scenario = generate(cases=1500, violation_rate=0.03, seed=3, now=NOW)
    catalog, events = write_inputs(tmp_path, scenario)
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    expected, _ = replay(pipeline_settings(tmp_path / "baseline"), catalog, as_messages(scenario.events))
    expected_cases = stored_cases(tmp_path / "baseline")

    with EmbeddedBroker() as broker:
        env = {**os.environ, **standalone_settings(
            broker, tmp_path / "data", SUNLIGHT_TICK_INTERVAL="0.2", SUNLIGHT_FLUSH_INTERVAL="0.3",
            # Small units, so that the kill falls in the middle of one, with others done and to come.
            SUNLIGHT_UNIT_MAX_MESSAGES="150"), "UNIT_PAUSE": "0.05"}
        now = ["--now", NOW.isoformat()]
        first = subprocess.Popen([sys.executable, "-c", PACED, "replay", str(events), "--catalog", str(catalog),
                                  *now], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        total = len(scenario.events)
        done = 0
        deadline = time.monotonic() + 300
        try:
            while time.monotonic() < deadline and first.poll() is None:
                done = asyncio.run(committed(broker.bootstrap, 2))
                if done >= total // 8:
                    break
                time.sleep(0.05)
            assert first.poll() is None, "the first run finished before it could be killed: use more events"
            assert 0 < done < total
        finally:
            if first.poll() is None:
                os.kill(first.pid, signal.SIGKILL)
            first.wait()
            first.stderr.close()

        alerts, err = finish_and_export(empty, catalog, now, env)
    got, want = identity(alerts), identity(expected)
    warnings = [line for line in err.decode(errors="replace").splitlines() if "WARNING" in line or "ERROR" in line]
    print("\n".join(warnings))  # pytest shows it with -s, or when the test fails
    assert got == want, ("alerts differ after the restart\nonly after restart: " + "\n".join(sorted(set(got) - set(want)))
                         + "\nonly undisturbed: " + "\n".join(sorted(set(want) - set(got)))
                         + "\nworker warnings:\n" + "\n".join(warnings[-50:]))
    client = connect(None, tmp_path / "data")
    try:
        events_stored = client.query("SELECT count() FROM case_events FINAL").result_rows[0][0]
        assert events_stored == total
    finally:
        client.close()
    # The cases table too: a case closed just before the kill is not left "open" in the store.
    got_cases = stored_cases(tmp_path / "data")
    assert got_cases == expected_cases, sorted(set(got_cases.items()) ^ set(expected_cases.items()))[:10]


def stored_cases(data_dir):
    """What the store says of each case (FINAL: the newest revision), all but revision and times of writing."""
    rows = store_rows(data_dir, "SELECT case_id, item_code, department, region, status, accepted_at, ended_at, "
                                "deadline, event_count, open_alerts FROM cases FINAL")
    return {row[0]: tuple(row[1:]) for row in rows}


KILLED_MID_UNIT = """
import os, sys
from streams import store, cli

real_put, puts = store.CaseStore.put, [0]

async def put(self, *args, **kwargs):
    puts[0] += 1
    if puts[0] == int(os.environ["KILL_AT_PUT"]):
        os._exit(9)  # as SIGKILL: in the middle of a unit, its states partly written, nothing flushed
    return await real_put(self, *args, **kwargs)

store.CaseStore.put = put
sys.exit(cli.main(sys.argv[1:]))
"""


def test_killed_in_the_middle_of_a_unit_loses_and_doubles_nothing(scenario, baseline, tmp_path):
    """The worker dies after writing some of a unit's states to the table (and its changelog) but
    before the unit's rows are written and it is acknowledged: the restart redelivers the unit,
    whose events the recovered table partly holds already."""
    expected, _, catalog, _ = baseline
    expected_cases = stored_cases(Path(catalog).parent / "data")
    _, events = write_inputs(tmp_path, scenario)
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    with EmbeddedBroker() as broker:
        env = {**os.environ, **standalone_settings(
            broker, tmp_path / "data", SUNLIGHT_TICK_INTERVAL="0.2", SUNLIGHT_FLUSH_INTERVAL="0.3",
            SUNLIGHT_UNIT_MAX_MESSAGES="400"), "KILL_AT_PUT": "250"}
        now = ["--now", NOW.isoformat()]
        killed = subprocess.run([sys.executable, "-c", KILLED_MID_UNIT, "replay", str(events), "--catalog",
                                 str(catalog), *now], env=env, capture_output=True, timeout=600)
        assert killed.returncode == 9, killed.stderr.decode()[-3000:]
        partly = asyncio.run(committed(broker.bootstrap, 2))
        assert partly < len(scenario.events)
        alerts, _ = finish_and_export(empty, catalog, now, env)
    assert identity(alerts) == identity(expected)
    client = connect(None, tmp_path / "data")
    try:
        assert client.query("SELECT count() FROM case_events FINAL").result_rows[0][0] == len(scenario.events)
    finally:
        client.close()
    assert stored_cases(tmp_path / "data") == expected_cases


# `sunlight worker`, dying (as kill -9) right after its first insert into case_events, before the
# cases and alerts inserts of the same batch.
DIES_BETWEEN_INSERTS = """
import os, sys
from sinks import writer
from streams import cli

real_write = writer.ClickHouseWriter.write

def write(self, batch):
    rows = batch.rows.get("case_events") or []
    if rows and batch.rows.get("alerts"):
        with self.lock:
            self.client.insert_arrow("case_events", writer.to_arrow("case_events", rows))
        os._exit(9)
    return real_write(self, batch)

writer.ClickHouseWriter.write = write
sys.exit(cli.main(sys.argv[1:]))
"""

# `sunlight worker` whose first unit of case events waits a few seconds: the let-go timer runs first.
FIRST_UNIT_LATE = """
import asyncio, sys
from streams import steps, cli

real_process, seen = steps.CaseSteps.process, [0]

async def process(self, *args, **kwargs):
    seen[0] += 1
    if seen[0] == 1:
        await asyncio.sleep(4)
    return await real_process(self, *args, **kwargs)

steps.CaseSteps.process = process
sys.exit(cli.main(sys.argv[1:]))
"""


def test_a_worker_killed_between_two_inserts_loses_no_card_of_a_case_it_then_lets_go(tmp_path):
    """Found by a black-box test: a worker killed after a batch's case_events insert and before its
    alerts insert left the cases' states, with their red cards, in the changelog only. The next
    worker recovered them settled (closed long ago) and let them go at its first round, before the
    redelivered events came back; read back from the store, the cases had their events and no
    alert, and were never judged again: the red cards were lost for good."""
    from tests.unit.helpers import CONTRACT, LICENCE

    catalog = CONTRACT / "catalog.example.yaml"
    cases = [f"K-{n}" for n in range(6)]
    messages = []
    for case_id in cases:  # closed without 承办, 审核, 批准: three red skipped_node cards each
        for kind, day in (("accepted", 2), ("closed", 3)):
            event = {"event_id": f"{case_id}-{kind}", "case_id": case_id, "item_code": LICENCE, "type": kind,
                     "occurred_at": f"2026-03-0{day}T10:00:00+08:00", "recorded_at": f"2026-03-0{day}T10:05:00+08:00"}
            messages.append((case_id.encode(), orjson.dumps(event)))
    with EmbeddedBroker() as broker:
        # A lone worker told to let cases go (on a Kafka cluster with the embedded store it keeps them unless told).
        env = {**os.environ, **standalone_settings(broker, tmp_path / "data", SUNLIGHT_TICK_INTERVAL="0.2",
                                                   SUNLIGHT_FLUSH_INTERVAL="0.3", SUNLIGHT_CATALOG=str(catalog),
                                                   SUNLIGHT_CASE_RETENTION_DAYS="30")}
        dying = subprocess.Popen([sys.executable, "-c", DIES_BETWEEN_INSERTS, "worker"], env=env,
                                 stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        started = time.monotonic()
        # Its topics made (a record sent before would make Tansu create case-events with 4
        # partitions: found by a flake hunt, 4.5 s on a loaded machine), then joined its group.
        while "case-events" not in asyncio.run(list_topics(broker.bootstrap)):
            assert time.monotonic() - started < 60 and dying.poll() is None, "the worker made no topics"
            time.sleep(0.3)
        time.sleep(max(0.0, 8 - (time.monotonic() - started)))
        asyncio.run(produce(broker.bootstrap, "case-events", messages))
        _, err = dying.communicate(timeout=120)
        assert dying.returncode == 9, err.decode()[-3000:]
        assert asyncio.run(committed(broker.bootstrap, 2)) < len(messages)
        restarted = subprocess.Popen([sys.executable, "-c", FIRST_UNIT_LATE, "worker"], env=env,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        try:
            deadline = time.monotonic() + 120
            while asyncio.run(committed(broker.bootstrap, 2)) < len(messages) and time.monotonic() < deadline:
                time.sleep(0.5)
            time.sleep(2)  # its last rows written
        finally:
            restarted.send_signal(signal.SIGTERM)
            _, err = restarted.communicate(timeout=120)
        assert restarted.returncode == 0, err.decode()[-3000:]
    stored = store_rows(tmp_path / "data", "SELECT case_id, node FROM alerts FINAL WHERE status = 'open' "
                                           "AND rule = 'skipped_node'")
    assert sorted(stored) == sorted((c, n) for c in cases for n in ("undertake", "review", "approve"))
