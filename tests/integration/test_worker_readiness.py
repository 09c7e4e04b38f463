"""A real `sunlight worker` whose Kafka broker goes away is no longer ready, and stops in time.

It keeps the partitions it was given (no rebalance reaches a member cut off from its group
coordinator) and takes nothing. Before, /readyz kept answering 200 and `sunlight_ready` stayed 1,
so neither a readiness probe nor the SunlightNotReady rule saw it (found by a black-box test).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time

from prometheus_client.parser import text_string_to_metric_families

from streams.broker import EmbeddedBroker, free_port, stop_process
from tests.integration.conftest import http_get, standalone_settings
from tests.unit.helpers import CONTRACT


def _wait(what: str, check, timeout: float, worker: subprocess.Popen, log) -> tuple:
    deadline = time.monotonic() + timeout
    while True:
        answer = check()
        if answer:
            return answer
        if worker.poll() is not None:
            raise AssertionError(f"the worker exited ({worker.returncode}) while waiting for {what}: "
                                 f"{log.read_text(errors='replace')[-3000:]}")
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.3)


def _ready_gauge(base: str) -> float:
    status, body = http_get(f"{base}/metrics")
    assert status == 200
    families = {f.name: f for f in text_string_to_metric_families(body)}
    return families["sunlight_ready"].samples[0].value


def test_a_worker_whose_broker_went_away_says_it_is_not_ready(tmp_path):
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    log = tmp_path / "worker.log"
    broker = EmbeddedBroker().start()
    worker = None
    try:
        (tmp_path / "data").mkdir()
        env = {**os.environ, **standalone_settings(broker, tmp_path / "data",
                                                    SUNLIGHT_CATALOG=str(CONTRACT / "catalog.example.yaml"),
                                                    SUNLIGHT_METRICS_PORT=str(port), SUNLIGHT_STOP_SECONDS="5")}
        with open(log, "w") as handle:
            worker = subprocess.Popen([sys.executable, "-m", "streams.cli", "worker"], env=env,
                                      stdout=subprocess.DEVNULL, stderr=handle)
        _wait("the worker to be ready", lambda: http_get(f"{base}/readyz") == (200, "ready\n"), 90, worker, log)
        assert _ready_gauge(base) == 1

        broker.stop()
        status, reason = _wait("/readyz to report the broker", lambda: (
            (answer := http_get(f"{base}/readyz"))[0] == 503 and answer), 30, worker, log)
        assert reason.startswith("the Kafka broker is unreachable: "), reason
        assert _ready_gauge(base) == 0
        assert http_get(f"{base}/healthz") == (200, "ok\n")  # alive: for its supervisor, nothing to restart
        # aiokafka logs an error for each connection attempt of each client, and the worker asked
        # each round where each topic starts: each kind of line at most once in 30 s, and each
        # topic's once (2,400 lines in 40 s of an outage: found by a black-box test).
        time.sleep(10)
        lines = [line for line in log.read_text(errors="replace").splitlines() if " ERROR " in line]
        assert len(lines) <= 25, f"{len(lines)} lines: {lines[:5]}"
        # SIGTERM: the stop waits on the broker (Faust's last commit), and waited for ever (found by
        # a test: still running 60 s after SIGTERM). It exits after SUNLIGHT_STOP_SECONDS, saying so.
        worker.terminate()
        worker.wait(timeout=40)
        said = log.read_text(errors="replace")
        assert worker.returncode == 1, said[-3000:]
        assert "did not stop within 5 s (SUNLIGHT_STOP_SECONDS)" in said, said[-3000:]
    finally:
        if worker is not None:
            stop_process(worker, timeout=30)
        broker.stop()
