"""A worker killed (SIGKILL) mid-stream and restarted loses and duplicates nothing."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time

import orjson

from alerts.scenario import generate
from sinks.clickhouse import connect
from streams.broker import EmbeddedBroker, committed_offsets
from tests.integration.conftest import NOW, as_messages, identity, pipeline_settings, replay, write_inputs


async def committed(bootstrap: str, partitions: int) -> int:
    return sum((await committed_offsets(bootstrap, "sunlight", "case-events", partitions)).values())


def sunlight(args, env, **kwargs):
    return subprocess.Popen([sys.executable, "-m", "streams.cli", *args], env=env, **kwargs)


def test_kill_and_restart_mid_stream(tmp_path):
    scenario = generate(cases=1500, violation_rate=0.03, seed=3, now=NOW)
    catalog, events = write_inputs(tmp_path, scenario)
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    expected, _ = replay(pipeline_settings(tmp_path / "baseline"), catalog, as_messages(scenario.events))
    expected_cases = stored_cases(tmp_path / "baseline")

    with EmbeddedBroker() as broker:
        env = {**os.environ, "SUNLIGHT_KAFKA": broker.bootstrap, "SUNLIGHT_BROKER_FLAVOUR": "tansu",
               "SUNLIGHT_DATA_DIR": str(tmp_path / "data"), "SUNLIGHT_PARTITIONS": "2",
               "SUNLIGHT_SESSION_TIMEOUT": "3", "SUNLIGHT_TICK_INTERVAL": "0.2", "SUNLIGHT_FLUSH_INTERVAL": "0.3"}
        now = ["--now", NOW.isoformat()]
        first = sunlight(["replay", str(events), "--catalog", str(catalog), *now], env,
                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        total = len(scenario.events)
        done = 0
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline and first.poll() is None:
            done = asyncio.run(committed(broker.bootstrap, 2))
            if done >= total // 4:
                break
            time.sleep(0.2)
        assert first.poll() is None, "the first run finished before it could be killed: use more events"
        assert 0 < done < total
        os.kill(first.pid, signal.SIGKILL)
        first.wait()
        first.stderr.close()

        second = sunlight(["replay", str(empty), "--catalog", str(catalog), *now], env,
                          stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        _, err = second.communicate(timeout=600)
        assert second.returncode == 0, err.decode()[-3000:]
        export = subprocess.run([sys.executable, "-m", "streams.cli", "alerts", "export", "--all"], env=env,
                                capture_output=True, timeout=300)
        assert export.returncode == 0, export.stderr.decode()[-3000:]
    alerts = [orjson.loads(line) for line in export.stdout.splitlines()]
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
    client = connect(None, data_dir)
    try:
        rows = client.query("SELECT case_id, item_code, department, region, status, accepted_at, ended_at, "
                            "deadline, event_count, open_alerts FROM cases FINAL").result_rows
    finally:
        client.close()
    return {row[0]: tuple(row[1:]) for row in rows}
