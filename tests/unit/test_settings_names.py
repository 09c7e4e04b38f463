"""Every SUNLIGHT_ variable the code reads is known to the settings, and a misspelt one is told."""

import logging
import re
from pathlib import Path

from streams.settings import VARIABLES, Settings, unknown_variables

REPO = Path(__file__).resolve().parents[2]


def test_the_known_variables_are_the_ones_the_code_reads():
    read = set()
    for folder in ("alerts", "streams", "sinks", "dashboards", "deploy"):
        for path in (REPO / folder).rglob("*.py"):
            read |= set(re.findall(r'"(SUNLIGHT_[A-Z0-9_]+)"', path.read_text(encoding="utf-8")))
    assert read == VARIABLES


def test_a_misspelt_variable_is_told_with_the_name_it_is_closest_to(caplog):
    """Found by a black-box test: SUNLIGHT_FLUSH_INTERVL=5 started a worker with the default flush
    interval, and nothing said."""
    assert unknown_variables({"SUNLIGHT_FLUSH_INTERVL": "5", "SUNLIGHT_KAFKA": "localhost:9092", "PATH": "/bin"}) == [
        "SUNLIGHT_FLUSH_INTERVL is not a setting Sunlight reads, and is ignored: did you mean SUNLIGHT_FLUSH_INTERVAL?"]
    assert unknown_variables({"SUNLIGHT_ZZZZZZZZ": "1"}) == [
        "SUNLIGHT_ZZZZZZZZ is not a setting Sunlight reads, and is ignored"]
    with caplog.at_level(logging.WARNING, logger="streams.settings"):
        for _ in range(2):  # once per process
            settings = Settings.from_env({"SUNLIGHT_SINK_MAX_PENDING": "10"})
    assert settings.flush_interval == Settings().flush_interval
    told = [r.getMessage() for r in caplog.records if "SUNLIGHT_SINK_MAX_PENDING " in r.getMessage()]
    assert told == ["SUNLIGHT_SINK_MAX_PENDING is not a setting Sunlight reads, and is ignored: "
                    "did you mean SUNLIGHT_SINK_MAX_PENDING_ROWS?"]


def test_a_missing_file_a_variable_names_is_refused_naming_the_variable(tmp_path):
    """Found by a black-box test: 'calendar overrides /x.yaml does not exist' did not say which
    setting named the file."""
    import pytest

    from alerts.catalog import CatalogError
    from streams.catalog_source import load_judge
    from tests.unit.helpers import CONTRACT

    with pytest.raises(CatalogError, match=r"\(SUNLIGHT_CALENDAR_OVERRIDES\) .*cal\.yaml does not exist"):
        load_judge(CONTRACT / "catalog.example.yaml", tmp_path / "cal.yaml")


def test_a_worker_on_a_kafka_cluster_with_the_embedded_store_sharing_its_group_is_told_the_store_is_split():
    """Found by a black-box test: two workers in one group on a Kafka cluster, each with the embedded
    store of its own data directory, started silently; a case one let go was read back from its own
    store without the events the other wrote, and judged: false red skipped_node cards."""
    from streams.app import split_store
    from streams.settings import Settings

    alone = Settings(kafka="kafka:9092", partitions=4)
    said = split_store(alone, {0, 1})
    assert said and "2 of the 4 partitions" in said and "SUNLIGHT_CLICKHOUSE" in said
    assert split_store(alone, {0, 1, 2, 3}) is None  # the only worker: its store is whole
    assert split_store(Settings(kafka="kafka:9092", clickhouse="http://ch:8123", partitions=4), {0}) is None
    assert split_store(Settings(partitions=4), {0}) is None  # its own embedded broker: one process


def test_a_worker_on_a_kafka_cluster_with_the_embedded_store_keeps_every_case_unless_told_otherwise():
    """Found by the two-worker rebalance test, flaky in CI: a case that moved to the second worker
    mid-way was let go by it once closed, and read back from its own store, which lacked the first
    worker's events: a false red skipped_node card. The embedded store is its process's own, and
    on a Kafka cluster another worker may take any partition, so by default no case is let go."""
    from streams.settings import Settings

    assert Settings.from_env({}).case_retention_days == 30.0  # its own embedded broker: one process
    assert Settings.from_env({"SUNLIGHT_KAFKA": "kafka:9092", "SUNLIGHT_CLICKHOUSE": "http://ch:8123"}
                             ).case_retention_days == 30.0  # a store every worker shares
    assert Settings.from_env({"SUNLIGHT_KAFKA": "kafka:9092"}).case_retention_days is None
    assert Settings.from_env({"SUNLIGHT_KAFKA": "kafka:9092", "SUNLIGHT_CASE_RETENTION_DAYS": "7"}
                             ).case_retention_days == 7.0  # a lone worker's choice, taken


def test_a_worker_that_finds_its_store_split_lets_no_case_go_from_then_on():
    """A worker told to let cases go (SUNLIGHT_CASE_RETENTION_DAYS) that then finds another in its
    group with a store of its own (`split_store`) stops letting them go: each would be read back
    without what the other wrote."""
    import asyncio
    from datetime import datetime, timedelta, timezone
    from types import SimpleNamespace

    from streams.let_go import LetGo
    from streams.settings import Settings

    async def nothing() -> None:
        return None

    due = datetime(2026, 3, 1, tzinfo=timezone.utc)
    batch = SimpleNamespace(after_write=[])
    outputs = SimpleNamespace(outbox=SimpleNamespace(send=nothing), writer=SimpleNamespace(batch=batch))
    clock = SimpleNamespace(input_incomplete=False, now=lambda partition: due + timedelta(days=1))
    let_go = LetGo(None, SimpleNamespace(data={"C1": b"state-1", "C2": b"state-2"}), None, None, outputs, None,
                   None, clock, None, Settings(kafka="kafka:9092", partitions=4), None, lambda: True)
    let_go.evictions.schedule("C1", due, 0)  # settled and due, as `schedule` finds a closed case
    assert asyncio.run(let_go.settled()) == 1 and len(batch.after_write) == 1  # whole: C1 goes
    let_go.store_split = True
    let_go.evictions.schedule("C2", due, 1)
    assert asyncio.run(let_go.settled()) == 0 and len(batch.after_write) == 1


def test_a_thread_cancelled_or_failing_on_kafka_while_the_worker_stops_is_one_line_not_a_traceback(caplog):
    """Found by a black-box test: with the broker gone, Faust's consumer thread, stopped while a
    fetch waited, printed two chained tracebacks before the stop's one-line message."""
    import asyncio
    import threading
    from types import SimpleNamespace

    from aiokafka.errors import NodeNotReadyError

    from streams.runtime import quiet_while_stopping

    seen = []
    stopping = [True]
    hook = quiet_while_stopping(lambda: stopping[0], seen.append)
    thread = threading.Thread(name="Thread-1")
    for exc in (asyncio.CancelledError(), NodeNotReadyError("node 111")):
        hook(SimpleNamespace(exc_type=type(exc), exc_value=exc, exc_traceback=None, thread=thread))
    assert seen == [] and caplog.text.count("Thread-1 ended with") == 2
    other = SimpleNamespace(exc_type=ValueError, exc_value=ValueError("a bug"), exc_traceback=None, thread=thread)
    hook(other)  # anything else: as before
    stopping[0] = False
    cancelled = SimpleNamespace(exc_type=asyncio.CancelledError, exc_value=asyncio.CancelledError(),
                                exc_traceback=None, thread=thread)
    hook(cancelled)  # not stopping: as before
    assert seen == [other, cancelled]
