"""Integration fixtures: a real Tansu broker, a real Faust worker, real chdb. No mocks."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from datetime import datetime, timezone
from pathlib import Path

import orjson
import pytest
import yaml

from alerts.scenario import generate
from sinks.queries import export_alerts
from sinks.scope import Scope
from streams.broker import EmbeddedBroker
from streams.runtime import produce, replay_clock, running_pipeline, topic_ends, wait_until_processed
from streams.settings import Settings

NOW = datetime(2026, 6, 1, 12, tzinfo=timezone.utc)
CONTRACT_CATALOG = Path(__file__).resolve().parents[1] / "data" / "contract" / "catalog.example.yaml"


def pytest_collection_modifyitems(items):
    for item in items:
        if "integration" in str(item.fspath):
            item.add_marker(pytest.mark.integration)


# A ClickHouse HTTP endpoint backed by chdb, in a process of its own (one chdb per process):
# queries run in chdb in the format asked for, with their bound parameters (`param_NAME`); data
# inserts (a query in the URL, the rows in the body) are accepted and dropped: its tests only
# read, or need a worker only to start.
CHDB_HTTP_STAND_IN = r"""
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit
from chdb import session

db = session.Session(sys.argv[2])

class Handler(BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def do_GET(self):
        self.answer(b"")

    def do_POST(self):
        self.answer(self.rfile.read(int(self.headers.get("Content-Length") or 0)))

    def answer(self, body):
        params = parse_qs(urlsplit(self.path).query)
        query = params.get("query", [""])[0]
        status, data = 200, b""
        if not (query and body):  # a data insert is dropped; everything else runs
            try:
                bound = {k[len("param_"):]: v[0] for k, v in params.items() if k.startswith("param_")}
                data = db.query((query or body.decode()), params.get("default_format", ["TabSeparated"])[0],
                                params=bound or None).bytes()
            except Exception as exc:
                status, data = 500, f"Code: 1. DB::Exception: {exc}".encode()
        self.send_response(status)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), Handler).serve_forever()
"""


def pipeline_settings(data_dir: Path, **changes) -> Settings:
    base = dict(data_dir=data_dir, partitions=2, session_timeout=3.0, tick_interval=0.2, flush_interval=0.3)
    base.update(changes)
    return Settings(**base)


def store_rows(data_dir: Path, sql: str) -> list[tuple]:
    """The rows of a query of the embedded store in `data_dir` (no process may hold it then)."""
    from sinks.clickhouse import connect

    client = connect(None, data_dir)
    try:
        return [tuple(row) for row in client.query(sql).result_rows]
    finally:
        client.close()


def http_get(url: str) -> tuple[int | None, str]:
    """(status, body) of a GET; (None, the error) when nothing answers."""
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()
    except OSError as exc:
        return None, str(exc)


def standalone_settings(broker: EmbeddedBroker, data_dir: Path, **changes: str) -> dict[str, str]:
    """The environment of a `sunlight` process against a broker the test started (a Tansu
    cluster to it), with the test suite's short timings."""
    return {"SUNLIGHT_KAFKA": broker.bootstrap, "SUNLIGHT_BROKER_FLAVOUR": "tansu", "SUNLIGHT_DATA_DIR": str(data_dir),
            "SUNLIGHT_PARTITIONS": "2", "SUNLIGHT_SESSION_TIMEOUT": "3",
            # Workers of tests that run at once must not all take the default metrics port.
            "SUNLIGHT_METRICS_PORT": "0", **changes}


def write_inputs(directory: Path, scenario, events=None) -> tuple[Path, Path]:
    directory.mkdir(parents=True, exist_ok=True)
    catalog = directory / "catalog.yaml"
    catalog.write_text(yaml.safe_dump(scenario.catalog, allow_unicode=True, sort_keys=False), encoding="utf-8")
    lines = directory / "events.jsonl"
    with open(lines, "wb") as handle:
        for event in events if events is not None else scenario.events:
            handle.write((event if isinstance(event, bytes) else orjson.dumps(event)) + b"\n")
    return catalog, lines


def replay(settings: Settings, catalog: Path, messages, now=NOW, broker: EmbeddedBroker | None = None,
           read_topic: str | None = None):
    """Run the real pipeline in this process over `messages`; returns (alerts incl. withdrawn, progress),
    and with `read_topic` also the records of that topic."""

    async def run():
        async with running_pipeline(settings, catalog, clock=replay_clock(now), broker=broker) as running:
            await produce(running.bootstrap, settings.case_events_topic, messages)
            await wait_until_processed(running.pipeline, await topic_ends(running), timeout=600)
            with running.pipeline.writer.lock:
                alerts = list(export_alerts(running.client, Scope.everything(), include_withdrawn=True))
            records = await read_all(running.bootstrap, read_topic) if read_topic else None
            return alerts, running.pipeline.progress, records

    alerts, progress, records = asyncio.run(run())
    return (alerts, progress, records) if read_topic else (alerts, progress)


async def read_all(bootstrap: str, topic: str, timeout: float = 10.0):
    """Every record in `topic` now, from the beginning."""
    from aiokafka import AIOKafkaConsumer

    from streams.broker import end_offsets

    ends = await end_offsets(bootstrap, topic, confirm=True)
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, group_id=None, auto_offset_reset="earliest",
                                enable_auto_commit=False)
    await consumer.start()
    records = []
    try:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while len(records) < sum(ends.values()) and loop.time() < deadline:
            for batch in (await consumer.getmany(timeout_ms=200)).values():
                records.extend(batch)
    finally:
        await consumer.stop()
    return records


async def list_topics(bootstrap: str) -> set[str]:
    """The names of the topics the broker has now."""
    from aiokafka.admin import AIOKafkaAdminClient

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        return set(await admin.list_topics())
    finally:
        await admin.close()


def start_worker(env: dict, bootstrap: str, *args: str, timeout: float = 60.0):
    """`sunlight [args] worker` in a process of its own, once it has created its topics (Tansu would
    auto-create a missing one with 4 partitions)."""
    worker = subprocess.Popen([sys.executable, "-m", "streams.cli", *args, "worker"], env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + timeout
    while "case-events" not in asyncio.run(list_topics(bootstrap)):
        if time.monotonic() > deadline or worker.poll() is not None:
            worker.kill()
            raise AssertionError(f"the worker created no topics: {worker.communicate()[1][-3000:]}")
        time.sleep(0.3)
    return worker


def as_messages(events):
    return [(e["case_id"].encode(), orjson.dumps(e)) for e in events]


def identity(alerts):
    """What must be identical between runs: everything but raised_at and version."""
    return sorted(json.dumps({k: v for k, v in a.items() if k not in ("raised_at", "version")},
                             sort_keys=True, ensure_ascii=False) for a in alerts if a["status"] != "withdrawn")


@pytest.fixture(scope="session")
def scenario():
    return generate(cases=400, violation_rate=0.03, seed=7, now=NOW)


@pytest.fixture(scope="session")
def baseline(scenario, tmp_path_factory):
    """The scenario replayed once, in event-time order."""
    directory = tmp_path_factory.mktemp("baseline")
    catalog, _ = write_inputs(directory, scenario)
    alerts, progress, published = replay(pipeline_settings(directory / "data"), catalog,
                                         as_messages(scenario.events), read_topic="alerts")
    return alerts, progress, catalog, published


class MailBox:
    """What a local aiosmtpd server received: (envelope recipients, parsed message)."""

    def __init__(self):
        self.received: list = []
        self.refusals: dict[str, str] = {}  # recipient address: the server's reply to RCPT TO
        self.asked: list[str] = []  # every RCPT TO, refused or not
        self.mail_from_reply: str | None = None  # the server's reply to MAIL FROM, if not 250

    async def handle_MAIL(self, server, session, envelope, address, mail_options):
        if self.mail_from_reply:
            return self.mail_from_reply
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return "250 OK"

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        self.asked.append(address)
        if address in self.refusals:
            return self.refusals[address]
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        from email import message_from_bytes, policy

        self.received.append((list(envelope.rcpt_tos), message_from_bytes(envelope.content, policy=policy.default)))
        return "250 OK"


@pytest.fixture
def mail_server():
    """A real SMTP server on loopback (aiosmtpd), and the SUNLIGHT_SMTP URL that reaches it."""
    import socket

    from aiosmtpd.controller import Controller

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    box = MailBox()
    controller = Controller(box, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield box, f"smtp://127.0.0.1:{port}?starttls=0"
    finally:
        controller.stop()


def worker_on_its_own_broker(tmp_path, **settings: str):
    """`sunlight worker` without SUNLIGHT_KAFKA, once it runs: (env, process, its log so far, the
    address of the broker it started)."""
    import re

    env = {**os.environ, "SUNLIGHT_DATA_DIR": str(tmp_path / "data"), "SUNLIGHT_PARTITIONS": "2",
           "SUNLIGHT_METRICS_PORT": "0", "SUNLIGHT_CATALOG": str(CONTRACT_CATALOG), **settings}
    env.pop("SUNLIGHT_KAFKA", None)
    env.pop("SUNLIGHT_CLICKHOUSE", None)  # its own store in the data directory, too
    worker = subprocess.Popen([sys.executable, "-m", "streams.cli", "worker"], env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    seen = ""
    deadline = time.monotonic() + 90
    while "worker running against" not in seen and time.monotonic() < deadline and worker.poll() is None:
        seen += worker.stderr.readline()
    found = re.search(r"worker running against (\S+);", seen)
    if found is None:
        worker.kill()
        raise AssertionError(seen[-3000:])
    return env, worker, seen, found.group(1)


def stopped_worker(worker, timeout: float = 45.0) -> tuple[float, str]:
    """SIGTERM to a worker: how long it took to exit (killed after `timeout`), and its log."""
    worker.send_signal(signal.SIGTERM)
    started = time.monotonic()
    try:
        _, err = worker.communicate(timeout=timeout)
    finally:
        if worker.poll() is None:
            worker.kill()
    return time.monotonic() - started, err
