"""`sunlight worker`: a long-lived worker on a configured broker; SIGTERM stops it cleanly."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time

import orjson

from streams.broker import EmbeddedBroker
from streams.runtime import produce
from tests.integration.conftest import standalone_settings, start_worker
from tests.unit.helpers import CONTRACT, LICENCE

EVENTS = [
    {"event_id": "w1", "case_id": "W-1", "item_code": LICENCE, "type": "accepted",
     "occurred_at": "2026-03-02T10:00:00+08:00", "recorded_at": "2026-03-02T10:01:00+08:00"},
    {"event_id": "w2", "case_id": "W-1", "item_code": LICENCE, "type": "node_completed", "node": "approve",
     "occurred_at": "2026-03-03T10:00:00+08:00", "recorded_at": "2026-03-03T10:01:00+08:00"},
]


def test_worker_processes_events_and_stops_on_sigterm(tmp_path):
    with EmbeddedBroker() as broker:
        env = {**os.environ, **standalone_settings(broker, tmp_path / "data",
                                                    SUNLIGHT_CATALOG=str(CONTRACT / "catalog.example.yaml"))}
        worker = start_worker(env, broker.bootstrap, "-v")
        try:
            asyncio.run(produce(broker.bootstrap, "case-events",
                                [(e["case_id"].encode(), orjson.dumps(e)) for e in EVENTS]))
            time.sleep(8)  # join the group, process, flush (every second)
            worker.send_signal(signal.SIGTERM)
            _, err = worker.communicate(timeout=60)
        finally:
            if worker.poll() is None:
                worker.kill()
        assert worker.returncode == 0, err[-3000:]
        # A worker stopped with SIGTERM stops cleanly: no error, no traceback in its log.
        assert "Traceback" not in err and " ERROR " not in err, err[-3000:]
        export = subprocess.run([sys.executable, "-m", "streams.cli", "alerts", "export"], env=env,
                                capture_output=True, timeout=120)
    alerts = [orjson.loads(line) for line in export.stdout.splitlines()]
    skipped = sorted(a["node"] for a in alerts if a["rule"] == "skipped_node")
    assert skipped == ["review", "undertake"]
