"""Library log lines repeated many times a second are limited (streams/log_limits.py)."""

from __future__ import annotations

import logging

from streams.log_limits import RepeatLimit, limit_repeats


def record(msg: str, *args, name: str = "aiokafka.conn") -> logging.LogRecord:
    return logging.LogRecord(name, logging.ERROR, __file__, 1, msg, args, None)


def test_a_line_repeated_is_let_through_once_a_window_saying_how_many_were_held_back():
    """Found by a black-box test: 2,400 aiokafka errors in 40 s of a broker outage."""
    now = [0.0]
    limit = RepeatLimit(window=30.0, clock=lambda: now[0])
    shown = []
    for n in range(2400):
        now[0] = n / 60  # 60 a second: 40 s
        item = record("Unable connect to %r: %s", f"node-{n % 3}", "Connection refused")
        if limit.filter(item):
            shown.append(item.getMessage())
    assert len(shown) == 2  # at 0 s and at 30 s
    assert shown[0] == "Unable connect to 'node-0': Connection refused"
    assert shown[1].endswith("(1799 more like this in the last 30 s not shown)")
    # Another kind of line, or another logger, is its own.
    assert limit.filter(record("Unexpected error in sender routine"))
    assert limit.filter(record("Unable connect to %r: %s", "n", "x", name="kafka.conn"))


def test_the_limit_is_put_once_on_the_libraries_loggers_and_holds_back_their_childrens_lines(caplog):
    child = logging.getLogger("test-library.conn")  # created at import, as aiokafka's are
    first = limit_repeats(("test-library",))
    limit_repeats(("test-library",))
    for name in ("test-library", "test-library.conn"):
        assert [f for f in logging.getLogger(name).filters if isinstance(f, RepeatLimit)] == [first]
    with caplog.at_level(logging.ERROR):
        for _ in range(50):
            child.error("Unable connect to %r", "node-1")
    assert [r.getMessage() for r in caplog.records if r.name == "test-library.conn"] == ["Unable connect to 'node-1'"]


def test_a_store_that_fails_every_flush_is_said_once_a_window():
    """A read-only store logged two errors per flush attempt and the client's warnings: 8 to 25
    lines a second (found by a black-box test). The pipeline's logging limits them too."""
    from streams.runtime import _quiet_faust_logging

    _quiet_faust_logging()
    for name in ("streams.write_step", "streams.read_back", "clickhouse_connect", "urllib3"):
        assert any(isinstance(f, RepeatLimit) for f in logging.getLogger(name).filters), name


def test_a_library_s_traceback_after_the_own_broker_exited_is_left_out_and_its_line_kept():
    """Found by a flaky test: Faust's recovery met the killed broker's closed port and crashed with
    a traceback before the watcher said why (a replay whose broker dies says why, not a traceback)."""
    import sys
    from types import SimpleNamespace

    from streams.log_limits import TracebacksOfADeadBroker

    status = [None]
    broker = SimpleNamespace(process=SimpleNamespace(poll=lambda: status[0]))
    dead = TracebacksOfADeadBroker(broker)

    def record(name: str) -> logging.LogRecord:
        try:
            raise ConnectionError("Unable to bootstrap")
        except ConnectionError:
            return logging.LogRecord(name, logging.ERROR, __file__, 1, "Crashed reason=%r", ("x",), sys.exc_info())

    alive = record("faust.tables.recovery")
    assert dead.filter(alive) and alive.exc_info is not None  # the broker runs: a traceback is news
    status[0] = -9
    for name in ("faust.tables.recovery", "mode.services", "aiokafka.consumer"):
        gone = record(name)
        assert dead.filter(gone) and gone.exc_info is None and gone.getMessage() == "Crashed reason='x'"
        assert "Traceback" not in logging.Formatter().format(gone)
    own = record("streams.app")  # Sunlight's own lines keep theirs
    assert dead.filter(own) and own.exc_info is not None


def test_the_library_s_unreachable_line_is_left_out_while_a_process_first_reaches_its_broker(caplog):
    """Found by a black-box test: aiokafka's `Unable connect to "127.0.0.1:1"` came before the
    command's own line saying the broker cannot be reached; after the first contact it is kept."""
    from streams.log_limits import first_contact

    conn = logging.getLogger("aiokafka.conn")
    with caplog.at_level(logging.ERROR, logger="aiokafka"):
        with first_contact():
            logging.getLogger("aiokafka").error('Unable connect to "%s": refused', "127.0.0.1:1")
            conn.error('Unable connect to "%s": refused', "127.0.0.1:1")
            conn.error("something else")
        conn.error('Unable connect to "%s": refused', "127.0.0.1:2")
    assert [r.getMessage() for r in caplog.records] == ["something else", 'Unable connect to "127.0.0.1:2": refused']
