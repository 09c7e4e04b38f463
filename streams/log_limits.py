"""Log lines that a library repeats many times a second, limited.

While its broker is down, aiokafka logs an error for every connection attempt of every client:
thousands of lines a minute (a black-box test counted 2,400 in 40 s), which bury the worker's
own lines and fill disks. `RepeatLimit` lets the first line of each kind (logger and message
template) through, then at most one per `window` seconds, saying how many like it it held back.
`TracebacksOfADeadBroker` leaves out the libraries' tracebacks once a worker's own broker has
exited: the worker says the cause in one line.
"""

from __future__ import annotations

import logging
import time
from contextlib import contextmanager
from typing import Callable, Iterator


class RepeatLimit(logging.Filter):
    def __init__(self, window: float = 30.0, clock: Callable[[], float] = time.monotonic):
        super().__init__()
        self.window = window
        self.clock = clock
        self.last: dict[tuple[str, object], float] = {}  # (logger, template) -> when one was last let through
        self.held: dict[tuple[str, object], int] = {}  # how many like it were held back since

    def filter(self, record: logging.LogRecord) -> bool:
        key = (record.name, record.msg)
        now = self.clock()
        last = self.last.get(key)
        if last is not None and now - last < self.window:
            self.held[key] = self.held.get(key, 0) + 1
            return False
        self.last[key] = now
        held = self.held.pop(key, 0)
        if held:
            record.msg = f"{record.msg} ({held} more like this in the last {self.window:.0f} s not shown)"
        return True


def limit_repeats(names: tuple[str, ...] = ("aiokafka", "kafka"), window: float = 30.0) -> RepeatLimit:
    """Put one `RepeatLimit` on these loggers and every logger under them that exists (a logger's
    filters see only its own records, not its children's: the libraries log as `aiokafka.conn`,
    created when their modules are imported, before this runs). Once: a second call finds it."""
    limit = RepeatLimit(window)
    for logger in _loggers_under(names):
        if not any(isinstance(f, RepeatLimit) for f in logger.filters):
            logger.addFilter(limit)
    return limit


def _loggers_under(names: tuple[str, ...]) -> list[logging.Logger]:
    """These loggers and every logger under them that exists (a logger's filters see only its own
    records, not its children's)."""
    existing = [name for name in logging.root.manager.loggerDict
                if any(name == prefix or name.startswith(prefix + ".") for prefix in names)]
    return [logging.getLogger(name) for name in {*names, *existing}]


class TracebacksOfADeadBroker(logging.Filter):
    """Leaves out the libraries' tracebacks once the worker's own broker has exited. The first
    client to meet its closed port (Faust's recovery asking for the log ends, a commit) crashed
    with a traceback before `streams.runtime._watch_own_broker`, up to a second later, said why (found by a flaky
    test). The library's line is kept, its traceback left out: the watcher's line gives the cause.
    Set on the handlers, which see the records of every logger under these libraries."""

    LIBRARIES = ("faust", "mode", "aiokafka", "kafka")

    def __init__(self, broker):  # streams.broker.EmbeddedBroker
        super().__init__()
        self.broker = broker

    def filter(self, record: logging.LogRecord) -> bool:
        if (record.exc_info and record.name.split(".", 1)[0] in self.LIBRARIES
                and self.broker.process is not None and self.broker.process.poll() is not None):
            record.exc_info = record.exc_text = record.stack_info = None
        return True


class UnreachableAtFirst(logging.Filter):
    """Leaves out aiokafka's "Unable connect to" lines while a process first reaches its broker
    (`first_contact`): the process says it in one line of its own if it cannot, `sunlight: cannot
    reach the Kafka broker at ...`, which the library's error line came before (found by a
    black-box test)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not (isinstance(record.msg, str) and record.msg.startswith("Unable connect to"))


@contextmanager
def first_contact(names: tuple[str, ...] = ("aiokafka",)) -> Iterator[None]:
    """`UnreachableAtFirst` on these loggers and those under them, for the first contact."""
    quiet = UnreachableAtFirst()
    loggers = _loggers_under(names)
    for logger in loggers:  # before a `RepeatLimit`, which would count the lines left out as shown
        logger.filters.insert(0, quiet)
    try:
        yield
    finally:
        for logger in loggers:
            logger.removeFilter(quiet)
