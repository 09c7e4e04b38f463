"""A replay's file, sent to the broker by a process of its own (`sunlight replay FILE`).

Sending is work for the main thread that the pipeline needs: reading and decoding each line for
its case id, Kafka's partitioner (pure Python murmur2) and building the record batches cost
a visible share of a replay's main thread. A child process does it instead, on the other core:

1. it starts before the pipeline (`python -m streams.replay_feed FILE TOPIC`) and reads the
   file (each line's key) while the parent starts its broker, store and Faust worker;
2. once the pipeline runs, the parent writes the broker's address on the child's stdin, and the
   child sends every line as `streams.broker.produce` sends (keyed lines to their key's
   partition, as any client would), reporting its count as `produce` does (every 10,000 lines);
3. it reports the end, or why it failed; the parent turns a failure, or a child that ends
   without a word, into a `BrokerError`.

The child speaks one line at a time on stdout: `read N`, `sent N`, `done N` or `failed TEXT`,
each after a mark (other lines are not its). Its stderr is the parent's.
An empty line on its stdin (or its end) before the address tells it to stop. The file is sent
as it is, so what reaches the topic is what an in-process send would put there.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path
from typing import Callable, Iterator

import orjson

from streams.broker import BrokerError

_SOURCE = str(Path(__file__).resolve().parents[1])  # the folder that holds this `streams` package


BOM = b"\xef\xbb\xbf"


def json_lines(handle) -> Iterator[tuple[int, bytes]]:
    """(line number, stripped line) of each non-empty line of a JSON-lines file opened in binary;
    a UTF-8 byte order mark before the first line (Windows tools write one) is dropped."""
    for number, line in enumerate(handle, start=1):
        if number == 1:
            line = line.removeprefix(BOM)
        line = line.strip()
        if line:
            yield number, line


def read_event_lines(path: Path) -> Iterator[tuple[bytes | None, bytes]]:
    """(key, value) for each non-empty line; the key is the case_id when the line is readable."""
    with open(path, "rb") as handle:
        for _, line in json_lines(handle):
            key = None
            try:
                obj = orjson.loads(line)
                if isinstance(obj, dict) and isinstance(obj.get("case_id"), str):
                    key = obj["case_id"].encode()
            except orjson.JSONDecodeError:
                pass
            yield key, line


MARK = "sunlight-feed "  # on each line of the protocol: anything else a library prints is not it


def _say(text: str) -> None:
    try:
        sys.stdout.write(MARK + text.replace("\n", " ") + "\n")
        sys.stdout.flush()
    except OSError:  # the parent is gone (it exits at once when its own broker dies): no one to tell,
        os._exit(1)  # and no traceback on the stderr it shared (found by a test)


def child(path: str, topic: str) -> int:
    """The sending process."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # a Ctrl-C reaches the parent, which ends this process
    try:
        messages = list(read_event_lines(Path(path)))
        _say(f"read {len(messages)}")
        bootstrap = sys.stdin.readline().strip()
        if not bootstrap:  # the parent gave up before the pipeline ran
            return 0
        from streams.broker import produce

        asyncio.run(produce(bootstrap, topic, messages, on_sent=lambda count: _say(f"sent {count}")))
        _say(f"done {len(messages)}")
        return 0
    except Exception as exc:
        _say(f"failed {type(exc).__name__}: {exc}")
        return 1


class FileFeed:
    """The child that sends one file to one topic. `start` it before the pipeline; `send` gives it
    the broker once the pipeline runs; `close` ends it whatever happened."""

    def __init__(self, path: Path, process: asyncio.subprocess.Process):
        self.path = path
        self._process = process
        self._sending = False  # the broker given: the child is sending
        self._done = False  # and it has sent everything

    @classmethod
    async def start(cls, path: Path, topic: str) -> "FileFeed":
        open(path, "rb").close()  # a missing or unreadable file is the caller's error, now, in this process
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (_SOURCE, os.environ.get("PYTHONPATH")) if p)}
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "streams.replay_feed", str(path), topic, env=env,
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE)
        return cls(path, process)

    async def _report(self, check: Callable[[], None] | None) -> tuple[str, str]:
        while True:
            reading = asyncio.ensure_future(self._process.stdout.readline())  # type: ignore[union-attr]
            try:
                while True:
                    if check is not None:
                        check()  # the pipeline failed or is stopping: no use sending the rest
                    done, _ = await asyncio.wait({reading}, timeout=0.05)
                    if done:
                        break
            finally:
                if not reading.done():
                    reading.cancel()
            line = reading.result().decode("utf-8", "replace")
            if not line:  # the child ended without a word (its stderr, the parent's, says why)
                code = await self._process.wait()
                raise BrokerError(f"sending {self.path} stopped without a word (the sending process exited "
                                  f"with {code})")
            if line.startswith(MARK):
                kind, _, value = line[len(MARK):].strip().partition(" ")
                return kind, value

    async def send(self, bootstrap: str, on_read: Callable[[int], None] | None = None,
                   on_sent: Callable[[int], None] | None = None, check: Callable[[], None] | None = None) -> int:
        """Send the whole file through `bootstrap`; returns the number of lines sent. `on_read` gets
        the number of lines once the file is read, `on_sent` the count sent as it grows; `check`
        is called while waiting, and what it raises ends the sending (`close` then stops the child)."""
        lines = None
        while True:
            kind, value = await self._report(check)
            if kind == "read":
                lines = int(value)
                if on_read:
                    on_read(lines)
                try:
                    self._process.stdin.write(bootstrap.encode() + b"\n")  # type: ignore[union-attr]
                    await self._process.stdin.drain()  # type: ignore[union-attr]
                except (ConnectionError, OSError):  # the child is gone: the next report says how
                    continue
                self._sending = True
            elif kind == "sent":
                if on_sent:
                    on_sent(int(value))
            elif kind == "done":
                self._done = True
                return int(value)
            else:
                raise BrokerError(f"sending {self.path} failed"
                                  f"{f' after reading {lines} lines' if lines is not None else ''}: {value}")

    async def close(self) -> None:
        process = self._process
        if process.returncode is None and not self._sending:
            try:
                process.stdin.write(b"\n")  # type: ignore[union-attr]  # reading, or waiting: it stops there
                process.stdin.close()  # type: ignore[union-attr]
            except (ConnectionError, OSError):
                pass
            await _wait(process, 10)
        elif self._done:
            await _wait(process, 1)  # it is exiting
        if process.returncode is None:  # stopped in the middle of sending: no waiting
            process.terminate()
            await _wait(process, 5)
        if process.returncode is None:
            process.kill()
            await process.wait()


async def _wait(process: asyncio.subprocess.Process, seconds: float) -> None:
    try:
        await asyncio.wait_for(process.wait(), seconds)
    except asyncio.TimeoutError:
        pass


if __name__ == "__main__":
    sys.exit(child(sys.argv[1], sys.argv[2]))
