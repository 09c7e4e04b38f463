"""Metrics: every name declared once with help text, the office-hours gauge follows the project's
calendar, the state gauges are counted from the pipeline's state, and the health server answers
/metrics, /healthz and /readyz as it should (on an ephemeral port, in this process)."""

from __future__ import annotations

import asyncio
import logging
import re
import socket
import urllib.error
import urllib.request
from datetime import datetime, time, timedelta, timezone
from pathlib import Path
from types import SimpleNamespace

import orjson
import pytest
from aiokafka import TopicPartition
from prometheus_client.parser import text_string_to_metric_families

from alerts.calendar import WorkCalendar
from alerts.events import parse_event
from alerts.state import CaseState
from streams import health, metrics
from streams.codec import encode_state
from alerts.calendar import is_office_hours, parse_office_hours
from streams.codec import stored_case_status
from streams.health import Census, HealthServer, Watch
from streams.timers import DeadlineIndex

REPO = Path(__file__).resolve().parents[2]
SHANGHAI = WorkCalendar(timezone="Asia/Shanghai")

# The names agreed between the helpers (metrics_names.md), with their labels.
AGREED = {
    "sunlight_events_processed_total": ("outcome",), "sunlight_events_dead_lettered_total": ("reason",),
    "sunlight_alerts_published_total": ("rule", "status"), "sunlight_deadline_ticks_total": (),
    "sunlight_open_deadlines": (), "sunlight_sink_rows_total": ("table",), "sunlight_sink_failures_total": (),
    "sunlight_sink_flush_seconds": (), "sunlight_sink_pending_rows": (), "sunlight_notices_total": ("step", "status"),
    "sunlight_ticket_changes_total": ("kind",), "sunlight_ticket_actions_total": ("kind", "outcome"),
    "sunlight_open_ticket_deadlines": (), "sunlight_catalog_reloads_total": ("outcome",),
    "sunlight_alerts_raised_total": ("rule", "severity"), "sunlight_open_cases": (),
    "sunlight_due_timer_backlog": (), "sunlight_consumer_lag": ("topic", "partition"),
    "sunlight_sink_batch_rows": (), "sunlight_tickets": ("status",), "sunlight_office_hours": (),
    "sunlight_ready": (), "sunlight_catalog_refused": (), "sunlight_catalog_in_force": ("basis",),
}


def _declared() -> dict[str, object]:
    """Every collector of the registry, by each exported sample name (counters add _total)."""
    out = {}
    for collector in list(metrics.REGISTRY._collector_to_names):
        for name in metrics.REGISTRY._collector_to_names[collector]:
            out[name] = collector
    return out


def test_every_agreed_metric_is_declared_with_help_text_and_its_labels():
    declared = _declared()
    for name, labels in AGREED.items():
        assert name in declared, f"{name} is not declared in streams/metrics.py"
        collector = declared[name]
        assert collector._documentation.strip(), f"{name} has no help text"
        assert tuple(collector._labelnames) == labels, name


def test_counters_with_a_fixed_set_of_outcomes_are_exposed_from_zero():
    """A series born at its first increase shows no increase to a rule (`increase()`): docs/metrics.md
    says every outcome starts at 0 (catalog reloads had no series until the first; found by a
    black-box test)."""
    from prometheus_client import generate_latest

    text = generate_latest(metrics.REGISTRY).decode()
    for sample in ('sunlight_catalog_reloads_total{outcome="loaded"}',
                   'sunlight_catalog_reloads_total{outcome="rejected"}',
                   'sunlight_events_processed_total{outcome="new"}',
                   'sunlight_events_dead_lettered_total{reason="store_refused"}'):
        assert sample in text, sample


def test_every_declared_metric_has_help_and_a_sunlight_name():
    for name, collector in _declared().items():
        assert name.startswith("sunlight_"), name
        assert len(collector._documentation) > 15, f"{name}: help text {collector._documentation!r}"


def test_metrics_are_declared_only_in_streams_metrics():
    constructor = re.compile(r"\b(Counter|Gauge|Histogram|Summary|Info|Enum)\(\s*\"sunlight_")
    offenders = [str(path.relative_to(REPO)) for folder in ("streams", "sinks", "alerts", "dashboards")
                 for path in (REPO / folder).rglob("*.py")
                 if path.name != "metrics.py" and constructor.search(path.read_text(encoding="utf-8"))]
    assert offenders == []


def test_every_metric_is_documented():
    doc = (REPO / "docs" / "metrics.md").read_text(encoding="utf-8")
    missing = [name for name in _declared() if not name.endswith(("_created", "_bucket", "_count", "_sum"))
               and name.removesuffix("_total") not in doc]
    assert missing == []


# -- office hours -----------------------------------------------------------------------------------------


def _at(y, m, d, h, mi=0) -> datetime:
    return datetime(y, m, d, h, mi, tzinfo=SHANGHAI.tz)


def test_office_hours_follow_the_chinese_working_day_calendar():
    assert is_office_hours(SHANGHAI, _at(2026, 9, 29, 10))  # an ordinary Tuesday
    assert not is_office_hours(SHANGHAI, _at(2026, 10, 1, 10))  # National Day, a Thursday
    assert not is_office_hours(SHANGHAI, _at(2026, 10, 5, 10))  # still the holiday, a Monday
    assert is_office_hours(SHANGHAI, _at(2026, 10, 10, 10))  # a make-up working Saturday
    assert is_office_hours(SHANGHAI, _at(2026, 2, 14, 10))  # the Saturday before the Spring Festival
    assert not is_office_hours(SHANGHAI, _at(2026, 10, 17, 10))  # an ordinary Saturday
    assert not is_office_hours(SHANGHAI, _at(2026, 9, 29, 8, 59))
    assert is_office_hours(SHANGHAI, _at(2026, 9, 29, 9))
    assert not is_office_hours(SHANGHAI, _at(2026, 9, 29, 17))


def test_office_hours_are_local_to_the_catalog_timezone():
    # 02:00 UTC is 10:00 in Shanghai: office hours there, not in Urumqi time (08:00)
    moment = datetime(2026, 9, 29, 2, tzinfo=timezone.utc)
    assert is_office_hours(SHANGHAI, moment)
    assert not is_office_hours(WorkCalendar(timezone="Asia/Urumqi"), moment)


def test_office_hours_from_the_catalog():
    assert parse_office_hours(None) == ((time(9), time(17)),)
    hours = parse_office_hours(["08:30-12:00", "13:30-17:30"])
    assert is_office_hours(SHANGHAI, _at(2026, 9, 29, 8, 30), hours)
    assert not is_office_hours(SHANGHAI, _at(2026, 9, 29, 12, 30), hours)
    assert is_office_hours(SHANGHAI, _at(2026, 9, 29, 17, 15), hours)
    for wrong in ("9-5", "17:00-09:00", [], 42):
        with pytest.raises(ValueError):
            parse_office_hours(wrong)


def test_the_office_hours_gauge_is_set_from_the_catalog_calendar(tmp_path, caplog):
    import os

    import yaml

    from streams.catalog_source import CatalogSource

    raw = yaml.safe_load((REPO / "tests/data/contract/catalog.example.yaml").read_text(encoding="utf-8"))
    catalog_file = tmp_path / "catalog.yaml"

    def write(office_hours) -> None:
        catalog_file.write_text(yaml.safe_dump({**raw, "office_hours": office_hours}, allow_unicode=True),
                                encoding="utf-8")
        os.utime(catalog_file, ns=(1, catalog_file.stat().st_mtime_ns + 10**9))

    write("08:00-12:00")
    source = CatalogSource(catalog_file)
    watch = Watch(SimpleNamespace(catalog_source=source))
    watch.set_office_hours(_at(2026, 10, 10, 10))  # make-up Saturday, within 08:00-12:00
    assert _sample("sunlight_office_hours") == 1
    watch.set_office_hours(_at(2026, 10, 1, 10))  # holiday
    assert _sample("sunlight_office_hours") == 0
    watch.set_office_hours(_at(2026, 9, 29, 13))  # a working day, after this catalog's hours
    assert _sample("sunlight_office_hours") == 0
    write(["08:30-12:00", "13:00-17:30"])  # a reload brings the new hours with the new judge
    assert source.maybe_reload()
    watch.set_office_hours(_at(2026, 9, 29, 13, 30))
    assert _sample("sunlight_office_hours") == 1
    assert _sample("sunlight_catalog_refused") == 0
    write("17:00-09:00")  # refused, like any bad catalog: the hours in force stay
    assert not source.maybe_reload()
    watch.set_office_hours(_at(2026, 9, 29, 13, 30))
    assert _sample("sunlight_office_hours") == 1
    # ... and says so for as long as the files on disk are the refused ones (an edit that never took
    # effect had only a counter, which no rule watched: found by a black-box test).
    assert _sample("sunlight_catalog_refused") == 1
    assert not source.maybe_reload() and _sample("sunlight_catalog_refused") == 1  # unchanged since
    write(["08:30-12:00", "13:00-17:30"])
    with caplog.at_level(logging.INFO, logger="streams.catalog_source"):
        assert source.maybe_reload() and _sample("sunlight_catalog_refused") == 0
    # The mend is said at the refusal's level, not below what the worker logs (found by a black-box test).
    (mended,) = [r for r in caplog.records if "the refused edit is mended" in r.getMessage()]
    assert mended.levelno == logging.WARNING
    # Every reload that takes is said at the level the worker logs (at INFO an operator who edited
    # the ConfigMap saw nothing: found by a black-box test).
    reloads = [r for r in caplog.records if "catalog reloaded" in r.getMessage()]
    assert len(reloads) == 2 and {r.levelno for r in reloads} == {logging.WARNING}


def test_the_catalog_in_force_is_named_by_its_basis_alone_and_follows_a_reload(tmp_path):
    """Which catalog a worker judges under was nowhere to be seen: two workers given different files
    judged the same cases otherwise and no metric said so (SunlightCatalogsDiffer watches this)."""
    import os

    import yaml

    from streams.catalog_source import CatalogSource

    catalog_file = tmp_path / "catalog.yaml"
    raw = yaml.safe_load((REPO / "tests" / "data" / "contract" / "catalog.example.yaml").read_text(encoding="utf-8"))

    def write(days: int) -> None:
        raw["items"][0]["promised_days"] = days
        catalog_file.write_text(yaml.safe_dump(raw, allow_unicode=True), encoding="utf-8")
        os.utime(catalog_file, ns=(1, catalog_file.stat().st_mtime_ns + 10**9))

    def in_force() -> dict[str, float]:
        return {sample.labels["basis"]: sample.value for sample in metrics.CATALOG_IN_FORCE.collect()[0].samples}

    write(10)
    source = CatalogSource(catalog_file)
    first = source.basis
    assert in_force() == {first: 1}
    write(5)  # a time limit changed: judged otherwise
    assert source.maybe_reload() and source.basis != first
    assert in_force() == {source.basis: 1}
    second = source.basis
    catalog_file.write_text("items: [", encoding="utf-8")  # refused: the catalog in force stays, and is said
    os.utime(catalog_file, ns=(1, catalog_file.stat().st_mtime_ns + 10**9))
    assert not source.maybe_reload()
    assert in_force() == {second: 1}


def test_the_missing_calendar_years_are_the_calendar_in_force_s_and_an_override_file_clears_them(tmp_path):
    """A deadline into a year without holiday data was said only in the log, and the gauge only ever
    rose (each reload's calendar counted the year again); it is the calendar in force's count, which
    the SunlightCalendarYearMissing rule watches, and an override file that brings the year clears it."""
    import os
    from datetime import datetime, timezone

    from streams.catalog_source import CatalogSource

    overrides = tmp_path / "overrides.yaml"
    overrides.write_text("holidays: []\n", encoding="utf-8")
    source = CatalogSource(REPO / "tests" / "data" / "contract" / "catalog.example.yaml", overrides_path=overrides)
    assert _sample("sunlight_calendar_missing_years") == 0
    calendar, far = source.judge.calendar, 2090  # a year no holiday table has
    calendar.deadline(datetime(far, 12, 20, 2, tzinfo=timezone.utc), 20)  # runs into the year after: no data
    assert _sample("sunlight_calendar_missing_years") == 2
    calendar.deadline(datetime(far, 12, 20, 2, tzinfo=timezone.utc), 25)
    assert _sample("sunlight_calendar_missing_years") == 2  # the same years: counted once
    overrides.write_text("holidays: []\nworkdays: []\n", encoding="utf-8")  # a reload that brings neither
    os.utime(overrides, ns=(1, overrides.stat().st_mtime_ns + 10**9))
    assert source.maybe_reload()
    assert _sample("sunlight_calendar_missing_years") == 2  # still missing (it went to 0: found by review)
    overrides.write_text(f"holidays: [{far}-01-01, {far + 1}-01-01]\n", encoding="utf-8")
    os.utime(overrides, ns=(1, overrides.stat().st_mtime_ns + 10**9))
    assert source.maybe_reload()
    assert _sample("sunlight_calendar_missing_years") == 0


def _sample(name: str, **labels) -> float | None:
    return metrics.REGISTRY.get_sample_value(name, labels or None)


# -- counting the pipeline's state ---------------------------------------------------------------------------


def test_the_due_count_is_what_is_due_and_not_superseded():
    index = DeadlineIndex()
    base = datetime(2026, 6, 1, tzinfo=timezone.utc)
    for n in range(50):
        index.schedule(f"c{n}", base + timedelta(hours=n), n % 3)
    index.schedule("c0", base + timedelta(days=10), 0)  # moved later: its old entry stays in the heap
    now = base + timedelta(hours=9, minutes=30)
    assert index.due_count(lambda p: now) == 9  # c1..c9
    assert index.due_count(lambda p: now if p == 1 else base) == 3  # c1, c4, c7
    assert len(index.pop_due(lambda p: now)) == 9
    assert index.due_count(lambda p: now) == 0
    # Moved later and back: two heap entries look live; the case is one moment due, as pop_due says.
    index.schedule("c1", base + timedelta(hours=1), 1)
    index.schedule("c1", base + timedelta(days=3), 1)
    index.schedule("c1", base + timedelta(hours=1), 1)
    assert index.due_count(lambda p: now) == 1
    assert len(index.pop_due(lambda p: now)) == 1


def _state(case_id: str, *types: str) -> CaseState:
    events = []
    for n, kind in enumerate(types):
        at = f"2026-03-0{n + 1}T10:00:00+08:00"
        obj = {"event_id": f"{case_id}-{n}", "case_id": case_id, "item_code": "X", "type": kind,
               "occurred_at": at, "recorded_at": at}
        if kind == "node_completed":
            obj["node"] = "n"
        events.append(parse_event(obj))
    return CaseState(case_id=case_id, events=tuple(events))


def test_a_stored_state_gives_its_status_without_being_built():
    assert stored_case_status(encode_state(_state("A", "accepted"), 1)) == (1, "open")
    assert stored_case_status(encode_state(_state("B", "accepted", "suspended"), 0)) == (0, "suspended")
    assert stored_case_status(encode_state(_state("C", "accepted", "suspended", "resumed"), 0)) == (0, "open")
    assert stored_case_status(encode_state(_state("D", "accepted", "closed"), 3)) == (3, "closed")
    assert stored_case_status(encode_state(_state("E", "accepted", "withdrawn"), 3)) == (3, "withdrawn")
    assert stored_case_status(b"") is None


def test_census_counts_incrementally_and_rebuilds():
    statuses = {"a": ("open",), "b": ("closed",), "c": ("open", "replied")}
    census = Census(lambda key: statuses.get(key, ()))
    asyncio.run(census.rebuild(["a", "b", "c", "gone"], chunk=2))
    assert (census.count("open"), census.count("closed"), census.count("replied")) == (2, 1, 1)
    statuses["a"] = ("closed",)
    statuses.pop("c")
    census.refresh(["a", "c"])
    assert (census.count("open"), census.count("closed"), census.count("replied")) == (0, 2, 0)


def test_open_cases_and_tickets_are_counted_from_the_tables_then_from_what_was_written():
    from streams.store import Recent

    cases = {"A": _state("A", "accepted"), "B": _state("B", "accepted", "suspended"),
             "C": _state("C", "accepted", "closed"), "D": _state("D", "accepted")}
    table = {key: encode_state(state, 0 if key != "D" else 1) for key, state in cases.items()}

    def tickets_of(*statuses):
        return orjson.dumps({"tickets": {f"rule{n}": {"status": status} for n, status in enumerate(statuses)},
                             "others": []})

    tickets = {"A": tickets_of("open", "replied"), "C": tickets_of("closed"), "B": tickets_of("settling")}
    pipeline = SimpleNamespace(
        index_ready=True, assigned={TopicPartition("case-events", 0), TopicPartition("alerts", 0),
                                    TopicPartition("alerts", 1)},
        settings=SimpleNamespace(case_events_topic="case-events", alerts_topic="alerts", partitions=2),
        table=SimpleNamespace(data=table), store=SimpleNamespace(cache=Recent(10), seeds={}),
        tickets_table=SimpleNamespace(data=tickets), ticket_store=SimpleNamespace(cache=Recent(10), seeds={}),
        touched_cases=set(), touched_tickets=set())
    watch = Watch(pipeline)
    asyncio.run(watch.count())  # first: every case of the held partitions (D is in partition 1)
    assert _sample("sunlight_open_cases") == 2
    assert [_sample("sunlight_tickets", status=s) for s in ("open", "replied", "closed", "withdrawn")] == [1, 1, 1, 0]
    # A closes (its new state in the cache), E opens: only the touched cases are looked at again
    pipeline.store.cache.keep("A", _state("A", "accepted", "closed"))
    table["E"] = encode_state(_state("E", "accepted"), 0)
    table["B"] = b"not looked at"
    pipeline.touched_cases = {"A", "E"}
    tickets["A"] = tickets_of("closed", "closed")
    pipeline.touched_tickets = {"A"}
    asyncio.run(watch.count())
    assert _sample("sunlight_open_cases") == 2  # B and E
    assert [_sample("sunlight_tickets", status=s) for s in ("open", "replied", "closed")] == [0, 0, 3]
    assert pipeline.touched_cases == set() and pipeline.touched_tickets == set()


def test_the_cases_and_tickets_a_fresh_embedded_broker_was_seeded_with_are_counted():
    """After a restart on an embedded broker, the cases and tickets restored from the store stay
    seeds until something of their case comes: sunlight_tickets said 0 beside 6 open tickets
    (found by a black-box test)."""
    from streams.app import partition_of
    from streams.store import Recent
    from alerts.tickets import TicketStatus

    home = next(f"S{n}" for n in range(100) if partition_of(f"S{n}", [0, 1]) == 0)
    away = next(f"S{n}" for n in range(100) if partition_of(f"S{n}", [0, 1]) == 1)
    tickets = SimpleNamespace(tickets={"overdue": SimpleNamespace(status=TicketStatus.OPEN)})  # as CaseTickets
    pipeline = SimpleNamespace(
        index_ready=True, assigned={TopicPartition("case-events", 0), TopicPartition("alerts", 0)},
        settings=SimpleNamespace(case_events_topic="case-events", alerts_topic="alerts", partitions=2),
        table=SimpleNamespace(data={}), tickets_table=SimpleNamespace(data={}),
        store=SimpleNamespace(cache=Recent(10), seeds={home: _state(home, "accepted"), away: _state(away, "accepted")}),
        ticket_store=SimpleNamespace(cache=Recent(10), seeds={home: tickets}),
        touched_cases=set(), touched_tickets=set())
    asyncio.run(Watch(pipeline).count())
    assert _sample("sunlight_open_cases") == 1  # the other is another partition's (another worker's)
    assert _sample("sunlight_tickets", status="open") == 1


# -- the HTTP server -----------------------------------------------------------------------------------------


def _get(port: int, path: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


class _Pipeline:
    """What the watch reads of a pipeline, in states a test sets."""

    def __init__(self, store_fails: bool = False):
        self.failure = None
        self.stopping = False
        self.draining = False
        self.assigned: set = set()
        self.index_ready = False
        self.recovered = asyncio.Event()
        self.app = SimpleNamespace(tables=SimpleNamespace(recovery=SimpleNamespace(completed=self.recovered)))
        self.store_fails = store_fails
        with socket.socket() as free:  # a port nothing listens on
            free.bind(("127.0.0.1", 0))
            self.bootstrap = f"127.0.0.1:{free.getsockname()[1]}"
        # A server store whose URL holds a password: a reason on /readyz must never show it.
        self.settings = SimpleNamespace(clickhouse="http://sunlight:s3cret-pw@127.0.0.1:9/db",
                                        case_events_topic="case-events", alerts_topic="alerts", partitions=1)
        from streams.store import Recent

        self.table, self.tickets_table = SimpleNamespace(data={}), SimpleNamespace(data={})
        self.store, self.ticket_store = (SimpleNamespace(cache=Recent(10), seeds={}),
                                         SimpleNamespace(cache=Recent(10), seeds={}))
        self.touched_cases, self.touched_tickets = set(), set()
        self.writer = SimpleNamespace(lock=__import__("threading").Lock(), executor=None, pending_rows=7,
                                      ping=lambda: self._command("SELECT 1"), last_error=None)

    def _command(self, sql: str):
        assert sql == "SELECT 1"
        if self.store_fails:
            raise ConnectionRefusedError("Connection refused: http://sunlight:s3cret-pw@127.0.0.1:9/db")
        return 1


async def _broker_answers(bootstrap: str, timeout: float) -> None:
    assert timeout > 0
    return None


async def _get_async(port: int, path: str) -> tuple[int, str]:
    return await asyncio.get_running_loop().run_in_executor(None, _get, port, path)


def test_health_server_answers_metrics_healthz_and_readyz():
    async def run():
        server = await HealthServer(0, "127.0.0.1").start()
        try:
            port = server.port
            assert port > 0
            metrics.EVENTS_PROCESSED.labels("new").inc(3)
            status, body = await _get_async(port, "/metrics")
            assert status == 200
            families = {f.name: f for f in text_string_to_metric_families(body)}
            assert "sunlight_events_processed" in families and "sunlight_office_hours" in families
            assert any(s.labels == {"outcome": "new"} and s.value >= 3
                       for s in families["sunlight_events_processed"].samples)
            assert await _get_async(port, "/healthz") == (200, "ok\n")
            assert await _get_async(port, "/readyz") == (503, "the worker is starting\n")

            pipeline = _Pipeline()
            watch = Watch(pipeline)  # attached by hand: no timer, the test drives it
            server.watch = watch
            status, body = await _get_async(port, "/readyz")
            assert (status, body) == (503, "no partitions assigned (yet)\n")
            pipeline.assigned.add(TopicPartition("case-events", 0))
            assert (await _get_async(port, "/readyz"))[1] == "tables are being recovered\n"
            pipeline.recovered.set()
            pipeline.index_ready = True
            assert (await _get_async(port, "/readyz"))[1] == "the Kafka broker has not been checked yet\n"
            # No broker where the worker's bootstrap servers point (a broker that went away): the
            # real check, against a port nothing listens on.
            await watch.check_broker()
            status, body = await _get_async(port, "/readyz")
            assert status == 503 and body.startswith("the Kafka broker is unreachable: "), body
            assert _sample("sunlight_ready") == 0
            watch.ask_broker = _broker_answers  # the broker is back
            await watch.check_broker()
            assert (await _get_async(port, "/readyz"))[1] == "the store has not been checked yet\n"
            await watch.check_store()
            # Not ready before the open cases are counted: sunlight_open_cases read NaN for up to
            # the watch's interval beside a /readyz that said ready (found by a black-box test).
            assert (await _get_async(port, "/readyz"))[1] == "the open cases and tickets are being counted\n"
            await watch.count()
            assert _sample("sunlight_open_cases") == 0
            assert await _get_async(port, "/readyz") == (200, "ready\n")
            assert _sample("sunlight_ready") == 1
            # A rebalance that gives back the same partitions: counted again before ready (the
            # partitions held had not changed, and the worker was ready with NaN: found by a review).
            pipeline.index_ready = False
            await watch.count()
            pipeline.index_ready = True
            assert (await _get_async(port, "/readyz"))[1] == "the open cases and tickets are being counted\n"
            await watch.count()
            assert await _get_async(port, "/readyz") == (200, "ready\n")
            pipeline.store_fails = True
            await watch.check_store()
            status, body = await _get_async(port, "/readyz")
            assert status == 503 and body.startswith("the store is unreachable: Connection refused"), body
            assert "s3cret-pw" not in body and "sunlight:***@" in body
            assert _sample("sunlight_ready") == 0
            # A client's long error: its system cause first, not cut off behind the request's address
            # (found by a black-box test: 300 characters of URL, then nothing).
            from streams.health import _cause_first
            long = ("Error HTTPConnectionPool(host='ch', port=8123): Max retries exceeded with url: /?"
                    + "date_time_input_format=best_effort&" * 20 + " (Caused by NewConnectionError('<x>: Failed to "
                    "establish a new connection: [Errno 111] Connection refused'))")
            assert _cause_first(long).startswith("[Errno 111] Connection refused — Error HTTPConnectionPool")
            assert len(_cause_first(long)) == 300
            pipeline.store_fails = False
            await watch.check_store()
            assert await _get_async(port, "/readyz") == (200, "ready\n")
            # It answers SELECT 1 but refuses every write (read-only, a full disk): not ready, with
            # the store's words (before, ready all the while; found by a black-box test).
            pipeline.writer.last_error = ("Code: 164. DB::Exception: Table is in readonly mode, "
                                          "http://sunlight:s3cret-pw@127.0.0.1:9/db (READONLY)")
            status, body = await _get_async(port, "/readyz")
            assert status == 503 and body.startswith("the store fails to write or read back: Code: 164"), body
            assert "s3cret-pw" not in body
            pipeline.writer.last_error = None  # written again
            assert await _get_async(port, "/readyz") == (200, "ready\n")
            pipeline.failure = RuntimeError("the deadline index could not be rebuilt")
            assert await _get_async(port, "/readyz") == (
                503, "the worker failed: the deadline index could not be rebuilt\n")
            assert (await _get_async(port, "/healthz"))[0] == 200  # alive all the while
            await server.detach()
            assert await _get_async(port, "/readyz") == (503, "the worker is stopping\n")
        finally:
            await server.stop()
        with pytest.raises(OSError):
            socket.create_connection(("127.0.0.1", port), timeout=2).close()

    asyncio.run(run())


def test_a_port_in_use_is_a_clear_error_naming_the_setting():
    async def run():
        first = await HealthServer(0, "127.0.0.1").start()
        try:
            with pytest.raises(SystemExit) as raised:
                await HealthServer(first.port, "127.0.0.1").start()
        finally:
            await first.stop()
        return str(raised.value), first.port

    message, port = asyncio.run(run())
    assert f"port {port} is in use" in message and "SUNLIGHT_METRICS_PORT" in message


def test_port_zero_turns_the_server_off():
    assert asyncio.run(health.start_health(0)) is None


def test_every_notice_step_and_status_is_exposed_from_zero():
    """A labelled series born at its first failure shows Prometheus no increase: the
    SunlightNoticesFailing rule would miss the first notice that failed."""
    from alerts.tickets import Step

    for step in Step:
        for status in ("recorded", "held", "sent", "failed"):
            assert _sample("sunlight_notices_total", step=step.value, status=status) is not None


def test_every_dead_letter_reason_and_event_outcome_is_exposed_from_zero():
    """Found by a black-box test with a real Prometheus: the first burst of letters of a new reason
    (and the first events after a start) showed no increase, and SunlightDeadLettersGrowing
    stayed silent for them."""
    from alerts.letters import REASON_TITLE

    for reason in REASON_TITLE:
        assert _sample("sunlight_events_dead_lettered_total", reason=reason) is not None, reason
    for outcome in ("new", "duplicate"):
        assert _sample("sunlight_events_processed_total", outcome=outcome) is not None


def test_every_rule_s_cards_are_exposed_from_zero():
    """Found by a black-box test with a real Prometheus: the card counters had no series for a rule
    until its first card, so increase() and rate() did not count that card. Every rule with its
    severity, and every rule and status published, start at 0."""
    from alerts.model import SEVERITY, AlertStatus

    for rule, severity in SEVERITY.items():
        assert _sample("sunlight_alerts_raised_total", rule=rule.value, severity=severity.value) is not None, rule
        for status in AlertStatus:
            assert _sample("sunlight_alerts_published_total", rule=rule.value, status=status.value) is not None
