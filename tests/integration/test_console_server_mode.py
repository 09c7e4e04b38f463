"""`sunlight serve` against Kafka and a ClickHouse server: it only reads the store and publishes.

A generated city is replayed into an embedded store; that store is then served over ClickHouse's
HTTP protocol by a stand-in backed by chdb (`CHDB_HTTP_STAND_IN`; no ClickHouse server runs
here), and a broker of the test's own stands for the Kafka cluster. The console runs in a process
of its own with `SUNLIGHT_KAFKA` and `SUNLIGHT_CLICKHOUSE` set, with no pipeline: an inspector
signs in, sees the stored alerts, and opens a ticket from a yellow alert; the action reaches the
`ticket-actions` topic, for the workers, in the contract's format.
"""

from __future__ import annotations

import asyncio
import http.cookiejar
import os
import re
import subprocess
import sys
import time
import urllib.parse
import urllib.request
import uuid
from pathlib import Path

import orjson

from alerts.scenario import generate
from sinks.clickhouse import connect
from streams.broker import EmbeddedBroker, free_port
from tests.integration.conftest import (CHDB_HTTP_STAND_IN, NOW, as_messages, pipeline_settings, read_all, replay,
                                        standalone_settings, write_inputs)

REPO = Path(__file__).resolve().parents[2]
KEY = "s" * 40


def _opener():
    return urllib.request.build_opener(urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar()))


def _get(opener, url: str) -> tuple[int, str]:
    try:
        with opener.open(url, timeout=30) as answer:
            return answer.status, answer.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()
    except OSError:
        return 0, ""


def _post(opener, url: str, form: dict) -> tuple[int, str]:
    data = urllib.parse.urlencode(form).encode()
    try:
        with opener.open(urllib.request.Request(url, data=data), timeout=60) as answer:
            return answer.status, answer.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


def _csrf(page: str) -> str:
    return re.search(r'name="csrf" value="([0-9a-f]+)"', page).group(1)


def test_with_kafka_and_a_clickhouse_server_the_console_reads_and_publishes(tmp_path):
    scenario = generate(cases=60, violation_rate=0.3, seed=5, now=NOW)
    catalog, _ = write_inputs(tmp_path, scenario)
    replay(pipeline_settings(tmp_path / "data"), catalog, as_messages(scenario.events))
    client = connect(None, tmp_path / "data")
    try:
        alert_id, case_id = client.query("SELECT alert_id, case_id FROM alerts FINAL WHERE severity = 'yellow' "
                                         "AND status != 'withdrawn' ORDER BY alert_id LIMIT 1").result_rows[0]
    finally:
        client.close()  # the stand-in opens the same store in its own process

    ports = {"clickhouse": free_port(), "console": free_port()}
    processes = []
    try:
        processes.append(subprocess.Popen([sys.executable, "-c", CHDB_HTTP_STAND_IN, str(ports["clickhouse"]),
                                           str(tmp_path / "data" / "clickhouse")],
                                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        store = f"http://127.0.0.1:{ports['clickhouse']}/default?compress=false"
        with EmbeddedBroker() as broker:
            env = {**os.environ, **standalone_settings(broker, tmp_path / "console-data"),
                   "SUNLIGHT_CLICKHOUSE": store, "SUNLIGHT_CATALOG": str(catalog), "SUNLIGHT_SECRET_KEY": KEY,
                   "SUNLIGHT_USERS": str(tmp_path / "users.json"), "SUNLIGHT_HTTP_PORT": str(ports["console"]),
                   "SUNLIGHT_NEW_USER_PASSWORD": "inspector-password"}
            added = subprocess.run([sys.executable, "-m", "streams.cli", "users", "add", "检查员", "--role", "inspector"],
                                   env=env, capture_output=True, text=True, timeout=60, cwd=REPO)
            assert added.returncode == 0, added.stderr
            console = subprocess.Popen([sys.executable, "-m", "streams.cli", "serve"], env=env, cwd=REPO,
                                       stdout=subprocess.DEVNULL, stderr=open(tmp_path / "console.log", "w"))
            processes.append(console)
            base = f"http://127.0.0.1:{ports['console']}"
            inspector = _opener()
            deadline = time.monotonic() + 60
            while _get(inspector, f"{base}/healthz")[0] != 200:
                assert console.poll() is None, (tmp_path / "console.log").read_text()[-3000:]
                assert time.monotonic() < deadline, "the console never answered /healthz"
                time.sleep(0.3)

            status, page = _post(inspector, f"{base}/login", {"csrf": _csrf(_get(inspector, f"{base}/login")[1]),
                                                               "name": "检查员", "password": "inspector-password"})
            assert status == 200 and "检查员" in page, (tmp_path / "console.log").read_text()[-3000:]
            status, page = _get(inspector, f"{base}/alerts?severity=yellow")
            assert status == 200 and case_id in page  # read from the server store, not an embedded one
            status, page = _get(inspector, f"{base}/cases/{urllib.parse.quote(case_id, safe='')}")
            assert status == 200 and alert_id in page
            action_id = uuid.uuid4().hex
            status, page = _post(inspector, f"{base}/act", {"csrf": _csrf(page), "kind": "open", "case_id": case_id,
                                                            "alert_id": alert_id, "action_id": action_id})
            assert status == 200, page[-2000:]

            records = asyncio.run(read_all(broker.bootstrap, "ticket-actions"))
            actions = [orjson.loads(r.value) for r in records]
            assert [(a["action_id"], a["kind"], a["alert_id"], a["actor"]) for a in actions] == \
                [(action_id, "open", alert_id, "检查员")]
            assert actions[0]["ticket_id"].startswith(case_id + "/")
            assert not (tmp_path / "console-data" / "clickhouse").exists()  # no embedded store of its own
    finally:
        for process in processes:
            process.kill()
            process.wait(timeout=30)
