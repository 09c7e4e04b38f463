"""End to end on loopback: a real `sunlight worker` whose store goes away, Debian's Prometheus
scraping its /metrics with the deploy rules, and the sink-failing alert reaching Alertmanager.

- The store is a ClickHouse HTTP endpoint of the test's own (below: chdb answering the HTTP
  protocol clickhouse-connect speaks), so that the worker can start (connect, migrate), and is
  then stopped: from there the port refuses, as a ClickHouse server that went away.
- Prometheus runs with a test copy of deploy/prometheus/prometheus.yml: the same job name and
  rule file, with what only a test changes: the worker's and Alertmanager's loopback addresses,
  1 s scrape and evaluation intervals, and the rules of deploy/prometheus/rules/sunlight.rules.yml
  loaded and written back with every `for:` cut to 5 s (expressions, labels and annotations
  untouched), so that the alert fires in seconds rather than minutes.
- Alertmanager runs deploy/alertmanager/alertmanager.yml with the ops webhook pointed at a
  receiver of the test and clustering off.

Skips, saying why, where the Debian binaries are missing (CI installs them).
"""

from __future__ import annotations

import asyncio
import functools
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import orjson
import pytest
import yaml

from streams.broker import EmbeddedBroker, free_port
from streams.runtime import produce
from tests.integration.conftest import CHDB_HTTP_STAND_IN, http_get, standalone_settings
from tests.unit.helpers import CONTRACT, LICENCE

REPO = Path(__file__).resolve().parents[2]
PROMETHEUS = shutil.which("prometheus")
ALERTMANAGER = shutil.which("prometheus-alertmanager") or shutil.which("alertmanager")
TIMEOUT = 75.0  # the whole wait, after the worker is ready

pytestmark = pytest.mark.skipif(
    PROMETHEUS is None or ALERTMANAGER is None,
    reason="needs Debian's prometheus and prometheus-alertmanager (apt-get install prometheus "
           "prometheus-alertmanager; CI installs them)")



class Webhook:
    """The ops team's webhook: records what Alertmanager posts."""

    def __init__(self):
        self.received: list[dict] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_POST(self):
                outer.received.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
                self.send_response(200)
                self.end_headers()

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/alertmanager"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


def _wait(what: str, check, timeout: float, processes=(), logs: Path | None = None):
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        for name, process in processes:
            if process.poll() is not None:
                log = logs / f"{name}.log" if logs else None
                said = log.read_text(errors="replace")[-3000:] if log and log.exists() else ""
                raise AssertionError(f"{name} exited ({process.returncode}) while waiting for {what}: {said}")
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.5)


def _test_rules(directory: Path) -> Path:
    """The deploy rules, with every `for:` cut to 5 s (nothing else changed)."""
    rules = yaml.safe_load((REPO / "deploy/prometheus/rules/sunlight.rules.yml").read_text(encoding="utf-8"))
    for group in rules["groups"]:
        for rule in group["rules"]:
            if "for" in rule:
                rule["for"] = "5s"
    path = directory / "sunlight.rules.yml"
    path.write_text(yaml.safe_dump(rules, allow_unicode=True, sort_keys=False), encoding="utf-8")
    return path


def _test_prometheus_config(directory: Path, worker_port: int, alertmanager_port: int) -> Path:
    config = yaml.safe_load((REPO / "deploy/prometheus/prometheus.yml").read_text(encoding="utf-8"))
    config["global"].update(scrape_interval="1s", scrape_timeout="1s", evaluation_interval="1s")
    config["rule_files"] = [str(_test_rules(directory))]
    config["alerting"]["alertmanagers"] = [{"static_configs": [{"targets": [f"127.0.0.1:{alertmanager_port}"]}]}]
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    jobs["sunlight-worker"]["static_configs"] = [{"targets": [f"127.0.0.1:{worker_port}"]}]
    config["scrape_configs"] = [jobs["sunlight-worker"]]
    path = directory / "prometheus.yml"
    path.write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
    return path


def _test_alertmanager_config(directory: Path, webhook: str) -> Path:
    config = yaml.safe_load((REPO / "deploy/alertmanager/alertmanager.yml").read_text(encoding="utf-8"))
    for receiver in config["receivers"]:
        for hook in receiver.get("webhook_configs", []):
            hook["url"] = webhook
    config["route"]["group_wait"] = "1s"
    for route in config["route"].get("routes", []):
        route["group_wait"] = "1s"
    path = directory / "alertmanager.yml"
    path.write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
    return path


def _stop(process: subprocess.Popen | None, timeout: float = 20.0) -> None:
    if process is None or process.poll() is not None:
        return
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=10)


EVENTS = [
    {"event_id": f"h{n}", "case_id": f"H-{n}", "item_code": LICENCE, "type": "accepted",
     "occurred_at": "2026-03-02T10:00:00+08:00", "recorded_at": "2026-03-02T10:01:00+08:00"}
    for n in range(20)
]


def test_a_failing_store_raises_the_sink_alert_in_alertmanager(tmp_path):
    wait = functools.partial(_wait, logs=tmp_path)  # a process that exits shows its log
    ports = {name: free_port() for name in ("clickhouse", "worker", "prometheus", "alertmanager")}
    webhook = Webhook()
    processes: dict[str, subprocess.Popen] = {}
    logs = {name: open(tmp_path / f"{name}.log", "w") for name in ("clickhouse", "prometheus", "alertmanager", "worker")}
    try:
        with EmbeddedBroker() as broker:
            processes["clickhouse"] = subprocess.Popen(
                [sys.executable, "-c", CHDB_HTTP_STAND_IN, str(ports["clickhouse"]), str(tmp_path / "chdb")],
                stdout=logs["clickhouse"], stderr=subprocess.STDOUT)
            processes["alertmanager"] = subprocess.Popen(
                [ALERTMANAGER, f"--config.file={_test_alertmanager_config(tmp_path, webhook.url)}",
                 f"--storage.path={tmp_path / 'alertmanager'}",
                 f"--web.listen-address=127.0.0.1:{ports['alertmanager']}", "--cluster.listen-address="],
                stdout=logs["alertmanager"], stderr=subprocess.STDOUT)
            processes["prometheus"] = subprocess.Popen(
                [PROMETHEUS, f"--config.file={_test_prometheus_config(tmp_path, ports['worker'], ports['alertmanager'])}",
                 f"--storage.tsdb.path={tmp_path / 'prometheus'}",
                 f"--web.listen-address=127.0.0.1:{ports['prometheus']}"],
                stdout=logs["prometheus"], stderr=subprocess.STDOUT)
            store = f"http://127.0.0.1:{ports['clickhouse']}/default?compress=false"
            wait("the test's ClickHouse endpoint", lambda: http_get(f"{store}&query=SELECT%201")[0] == 200, 30,
                  [("clickhouse", processes["clickhouse"])])

            (tmp_path / "data").mkdir()  # made by the embedded store only; Faust keeps its files there
            env = {**os.environ, **standalone_settings(broker, tmp_path / "data",
                                                        SUNLIGHT_CATALOG=str(CONTRACT / "catalog.example.yaml")),
                   "SUNLIGHT_CLICKHOUSE": store, "SUNLIGHT_METRICS_PORT": str(ports["worker"])}
            # Its log to a file: a store that refuses makes it log a great deal, and a pipe nobody
            # reads would fill and block it.
            processes["worker"] = worker = subprocess.Popen([sys.executable, "-m", "streams.cli", "worker"], env=env,
                                                            stdout=subprocess.DEVNULL, stderr=logs["worker"])
            base = f"http://127.0.0.1:{ports['worker']}"
            running = list(processes.items())
            wait("the worker to be ready", lambda: http_get(f"{base}/readyz") == (200, "ready\n"), 60, running)
            assert http_get(f"{base}/healthz") == (200, "ok\n")

            # The store goes away; events arrive; every write of them fails.
            _stop(processes.pop("clickhouse"))
            running = list(processes.items())
            asyncio.run(produce(broker.bootstrap, "case-events",
                                [(e["case_id"].encode(), orjson.dumps(e)) for e in EVENTS]))
            status, reason = wait("/readyz to report the store", lambda: (
                (answer := http_get(f"{base}/readyz"))[0] == 503 and "store is unreachable" in answer[1] and answer),
                30, running)

            # Prometheus scraped the worker's /metrics ...
            api = f"http://127.0.0.1:{ports['prometheus']}/api/v1/query?query="

            # (with a Kafka cluster, a unit of new cases first asks the store whether they were let
            # go, and those reads fail before any write: streams.store.CaseStore.bring_back)
            def failures_scraped():
                status, body = http_get(api + urllib.parse.quote(
                    'sunlight_sink_failures_total{job="sunlight-worker"} '
                    '+ sunlight_case_read_failures_total{job="sunlight-worker"} > 0'))
                return status == 200 and json.loads(body)["data"]["result"]

            scraped = wait("Prometheus to scrape store failures", failures_scraped, TIMEOUT, running)
            assert scraped[0]["metric"]["instance"] == f"127.0.0.1:{ports['worker']}"
            wait("Prometheus to see the worker not ready", lambda: json.loads(http_get(api + urllib.parse.quote(
                'sunlight_ready{job="sunlight-worker"} == 0'))[1])["data"]["result"], 15, running)

            # ... and the sink-failing alert reached Alertmanager, and through it the ops webhook.
            def alert_in_alertmanager():
                status, body = http_get(f"http://127.0.0.1:{ports['alertmanager']}/api/v2/alerts")
                return status == 200 and [a for a in json.loads(body)
                                          if a["labels"].get("alertname") == "SunlightSinkFailing"]

            alerts = wait("SunlightSinkFailing in Alertmanager", alert_in_alertmanager, TIMEOUT, running)
            alert = alerts[0]
            assert alert["labels"]["severity"] == "critical"
            assert alert["labels"]["instance"] == f"127.0.0.1:{ports['worker']}"
            assert alert["status"]["state"] == "active"
            assert "读写 ClickHouse 持续失败" in alert["annotations"]["summary"]
            notified = wait("the ops webhook to be notified", lambda: [
                a for post in webhook.received for a in post["alerts"]
                if a["labels"]["alertname"] == "SunlightSinkFailing"], 30, running)
            assert notified[0]["status"] == "firing"

            _stop(worker, timeout=30)
            assert worker.returncode == 0, (tmp_path / "worker.log").read_text()[-3000:]  # stops cleanly, store down
    finally:
        for process in processes.values():
            _stop(process)
        for handle in logs.values():
            handle.close()
        webhook.close()
