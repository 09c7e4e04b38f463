"""A replay's file, sent to the broker by a process of its own (`sunlight replay FILE`).

Sending is work for the main thread that the pipeline needs: reading and decoding each line for
its case id, Kafka's partitioner (pure Python murmur2) and building the record batches cost
a visible share of a replay's main thread. A child process does it instead, on the other core:

1. it starts before the pipeline and reads the file (each line's key) while the parent starts
   its broker, store and Faust worker;
2. once the pipeline runs, the parent gives it the broker's address, and it sends every line
   as `streams.broker.produce` sends (keyed lines to their key's partition, as any client
   would), reporting its count as `produce` does (every 10,000 lines);
3. it reports the end, or why it failed; the parent turns a failure into a `BrokerError`.

The file is sent as it is, so what reaches the topic is what an in-process send would put there.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import signal
from pathlib import Path
from typing import Callable, Iterator

import orjson

from streams.broker import BrokerError


def read_event_lines(path: Path) -> Iterator[tuple[bytes | None, bytes]]:
    """(key, value) for each non-empty line; the key is the case_id when the line is readable."""
    with open(path, "rb") as handle:
        for line in handle:
            line = line.strip()
            if not line:
                continue
            key = None
            try:
                obj = orjson.loads(line)
                if isinstance(obj, dict) and isinstance(obj.get("case_id"), str):
                    key = obj["case_id"].encode()
            except orjson.JSONDecodeError:
                pass
            yield key, line


def _feed(path: str, topic: str, conn) -> None:
    """The child process."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # a Ctrl-C reaches the parent, which ends this process
    try:
        messages = list(read_event_lines(Path(path)))
        conn.send(("read", len(messages)))
        bootstrap = conn.recv()
        if bootstrap is None:  # the parent gave up before the pipeline ran
            return
        from streams.broker import produce

        def on_sent(count: int) -> None:
            conn.send(("sent", count))

        asyncio.run(produce(bootstrap, topic, messages, on_sent=on_sent))
        conn.send(("done", len(messages)))
    except BaseException as exc:  # reported to the parent, which raises it there
        conn.send(("failed", f"{type(exc).__name__}: {exc}"))
    finally:
        conn.close()


class FileFeed:
    """The child that sends one file to one topic. Start it before the pipeline; `send` gives it
    the broker once the pipeline runs; `close` ends it whatever happened."""

    def __init__(self, path: Path, topic: str):
        open(path, "rb").close()  # a missing or unreadable file is the caller's error, now, in this process
        self.path = path
        context = multiprocessing.get_context("spawn")  # not fork: this process may hold threads
        self._conn, child = context.Pipe()
        self._process = context.Process(target=_feed, args=(str(path), topic, child), daemon=True,
                                        name="sunlight-replay-feed")
        self._process.start()
        child.close()
        self._sending = False  # the broker given: the child is sending
        self._done = False  # and it has sent everything

    async def _report(self, check: Callable[[], None] | None) -> tuple[str, object]:
        while not self._conn.poll():
            if check is not None:
                check()  # the pipeline failed or is stopping: no use sending the rest
            if not self._process.is_alive() and not self._conn.poll():
                raise BrokerError(f"sending {self.path} stopped without a word "
                                  f"(the sending process exited with {self._process.exitcode})")
            await asyncio.sleep(0.02)
        try:
            return self._conn.recv()
        except EOFError:
            raise BrokerError(f"sending {self.path} stopped without a word "
                              f"(the sending process exited with {self._process.exitcode})") from None

    async def send(self, bootstrap: str, on_read: Callable[[int], None] | None = None,
                   on_sent: Callable[[int], None] | None = None, check: Callable[[], None] | None = None) -> int:
        """Send the whole file through `bootstrap`; returns the number of lines sent. `on_read` gets
        the number of lines once the file is read, `on_sent` the count sent as it grows; `check`
        is called while waiting, and what it raises ends the sending (`close` then stops the child)."""
        lines = None
        while True:
            kind, value = await self._report(check)
            if kind == "read":
                lines = value
                if on_read:
                    on_read(value)  # type: ignore[arg-type]
                try:
                    self._conn.send(bootstrap)
                except OSError:  # the child is gone (a broken pipe): _report says how
                    continue
                self._sending = True
            elif kind == "sent":
                if on_sent:
                    on_sent(value)  # type: ignore[arg-type]
            elif kind == "done":
                self._done = True
                return int(value)  # type: ignore[arg-type]
            else:
                raise BrokerError(f"sending {self.path} failed"
                                  f"{f' after reading {lines} lines' if lines is not None else ''}: {value}")

    def close(self) -> None:
        if self._process.is_alive() and not self._sending:
            try:
                self._conn.send(None)  # reading, or waiting for the broker: it stops there
            except (BrokenPipeError, OSError):
                pass
            self._process.join(timeout=10)
        elif self._done:
            self._process.join(timeout=1)  # it is exiting
        if self._process.is_alive():  # stopped in the middle of sending: no waiting
            self._process.terminate()
            self._process.join(timeout=5)
        if self._process.is_alive():
            self._process.kill()
            self._process.join()
        self._conn.close()
