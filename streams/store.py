"""Case states of the partitions a worker holds, kept in a Faust table.

The table's data is the durable copy: each value is a state's stored form (`streams.codec`),
recovered from the table's changelog after a restart or a rebalance. Decoded states of the
cases used most recently sit in a bounded cache in front of it. A state is written once per
unit of messages, whatever number of events it took: straight into the table's data, and its
changelog record with the unit's other records (`streams.faust_patches.Outbox`), which is what
Faust does for `table[key] = value` less its per-write cost.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Callable, Iterator

from alerts.peers import PeerGroup, PenaltyFact
from alerts.state import CaseState
from streams.codec import decode_group, decode_state, encode_group, encode_state, stored_index_entry


class Recent(OrderedDict):
    """Decoded values of the keys used most recently, at most `size` of them."""

    def __init__(self, size: int):
        super().__init__()
        self.size = size

    def use(self, key: str):
        value = self.get(key)
        if value is not None:
            self.move_to_end(key)
        return value

    def keep(self, key: str, value) -> None:
        self[key] = value
        self.move_to_end(key)
        if len(self) > self.size:
            self.popitem(last=False)


# The ids of cases let go, or settled in the store at start, that a seeded process remembers
# (about 100 bytes each). Past this, it forgets them and asks the store for every case the table
# lacks, as an unseeded one does.
LET_GO_REMEMBERED = 1_000_000


class InStoreOnly:
    """Which keys the store holds that a table lacks, as far as a process can tell: those it left
    in the store when it started from it (`seed`: `at_start`), and those it let go since
    (`let_go`). Unseeded (a cluster's changelog may have dropped any key, by other workers or
    earlier processes), or past `LET_GO_REMEMBERED` of them together, every key the table lacks
    may be in the store."""

    def __init__(self):
        self.seeded = False
        self.at_start: set[str] = set()
        self.let_go: set[str] = set()

    def seed(self, keys) -> None:
        keys = set(keys)
        self.seeded = len(keys) <= LET_GO_REMEMBERED
        self.at_start = keys if self.seeded else set()

    def add(self, key: str) -> None:
        """A key let go: the store holds it, the table no longer does."""
        if self.seeded and key not in self.at_start:
            self.let_go.add(key)
            if len(self.let_go) + len(self.at_start) > LET_GO_REMEMBERED:  # bounded: from now on,
                self.seeded = False                                        # every miss is asked
                self.at_start, self.let_go = set(), set()

    def taken(self, key: str) -> bool:
        """A key read back from the store: whether it was one left there at start (no longer so)."""
        if key in self.at_start:
            self.at_start.discard(key)
            return True
        return False

    def to_ask(self, keys, held: Callable[[str], bool]) -> list[str]:
        """Of `keys`, those not held that the store may hold."""
        if self.seeded:
            return [k for k in keys if (k in self.let_go or k in self.at_start) and not held(k)]
        return [k for k in keys if not held(k)]


class CaseStore:
    def __init__(self, table, write: Callable[[str, bytes, int], None], cache_size: int,
                 delete: Callable[[str, int], None] | None = None):
        self.table = table
        self.write = write  # (key, stored bytes, partition): into the table's data, and its changelog
        self.delete = delete  # (key, partition): out of the table's data, a tombstone in its changelog
        self.cache: Recent = Recent(cache_size)
        # What the data directory's store already holds, by case: the seed of a case's state when
        # the table has none (a fresh embedded broker, see streams.runtime.restore_from_store), or
        # a case let go and read back from the store (`bring_back`).
        self.seeds: dict[str, CaseState] = {}
        # Cases whose state came from the store and has not changed since: their rows are in the
        # store already, so a redelivery or an unchanged judgement writes and publishes nothing.
        self.from_store: set[str] = set()
        # Cases written since the pipeline last looked (it indexes their deadlines, then clears it).
        self.written: set[str] = set()
        # Reading cases back from the store: async (case_ids) -> {case_id: state} of those it holds.
        self.load: Callable | None = None
        # Seeded from the store at start (a fresh embedded broker): a case the table lacks is then
        # in the store only if this process let it go (`in_store.let_go`) or it had settled there
        # before (`in_store.at_start`, `sinks.case_history.store_seeds`: read back like a case let
        # go, but as seeds, their rows and alerts in the store before this process began).
        # Otherwise the table's changelog may have dropped any case (other workers, earlier
        # processes), and every case a unit holds that the table lacks is asked of the store.
        self.in_store = InStoreOnly()
        # The cases of the unit being applied, from `bring_back` to its end: never let go meanwhile
        # (the unit may wait between its cases, while a flush lets settled cases go).
        self.in_hand: set[str] = set()
        # Cases a tick was sent to (`Pipeline.fire_due`) and not yet taken: not let go meanwhile,
        # or the tick would read the case back (a store query; and, as a case this process let go,
        # its rows written and its alerts published again).
        self.ticked: set[str] = set()
        # Cases read back from the store: unlike seeds from a fresh embedded broker, a redelivery
        # writes and publishes their rows again (their alerts may not have reached the topic
        # before a crash, while their tombstone did).
        self.read_back: set[str] = set()
        # Cases never to let go: some of their rows were refused by the store (dead-lettered), so
        # the store could not give them back whole.
        self.keep: set[str] = set()
        self.evicted = 0  # cases let go by this process
        self.brought_back = 0  # cases read back from the store by this process

    def seed(self, states: dict[str, CaseState], settled: set[str]) -> None:
        """Seed the table from the store: the states of its cases that have not settled, and the ids
        of those that have. Past `LET_GO_REMEMBERED` of those, every case the table lacks is asked
        of the store, as on a cluster."""
        self.seeds = dict(states)
        self.in_store.seed(settled)

    async def get(self, case_id: str, partition: int) -> CaseState | None:
        state = self.cache.use(case_id)
        if state is not None:
            return state
        stored = self.table.data.get(case_id)
        if stored:
            state, _ = decode_state(stored)
            self.cache.keep(state.case_id, state)
            return state
        state = self.seeds.pop(case_id, None)
        if state is not None:  # the seed becomes the table's state
            from_store = case_id not in self.read_back
            self.read_back.discard(case_id)
            await self.put(state, partition, encode_state(state, partition), from_store=from_store)
        return state

    def peek(self, case_id: str) -> CaseState | None:
        """The case's state if this worker holds it (its cache, its table, or a seed from the store),
        without taking a seed into the table or reading the store."""
        state = self.cache.get(case_id)
        if state is not None:
            return state
        stored = self.table.data.get(case_id)
        if stored:
            return decode_state(stored)[0]
        return self.seeds.get(case_id)

    async def put(self, state: CaseState, partition: int, stored: bytes, from_store: bool = False) -> None:
        if from_store:
            self.from_store.add(state.case_id)
        else:
            self.from_store.discard(state.case_id)
        self.write(state.case_id, stored, partition)
        self.cache.keep(state.case_id, state)
        self.written.add(state.case_id)

    async def bring_back(self, case_ids) -> None:
        """Read back from the store the cases of a unit that were let go, so that a late event, a
        rating or a verdict meets the case's whole history (as seeds: see `get`). The store holds
        every row of a case before it is let go (`evict` runs after its rows are written)."""
        self.in_hand = set(case_ids)
        if self.load is None:
            return
        data, cache, seeds = self.table.data, self.cache, self.seeds
        asked = self.in_store.to_ask(case_ids, self._held)
        if not asked:
            return
        states = await self.load(asked)
        for case_id, state in states.items():
            if case_id not in cache and not data.get(case_id):  # nothing new came meanwhile
                seeds[case_id] = state
                if not self.in_store.taken(case_id):  # else a seed like the others, its rows written
                    self.read_back.add(case_id)       # before this process
                self.brought_back += 1

    def _held(self, case_id: str) -> bool:
        return case_id in self.cache or case_id in self.seeds or bool(self.table.data.get(case_id))

    def awaited(self, case_id: str) -> bool:
        """Whether a unit has the case in hand or a tick is on its way to it: not to be let go now,
        but on a later round."""
        return case_id in self.in_hand or case_id in self.ticked

    def evict(self, case_id: str, partition: int, stored: bytes) -> bool:
        """Let a settled case go, if its state is still `stored` (the one found settled) and it is
        not `awaited`: out of the table, its cache and its changelog. False: it stays."""
        if (self.table.data.get(case_id) is not stored or self.delete is None or self.awaited(case_id)
                or case_id in self.keep):
            return False
        self.delete(case_id, partition)
        self.cache.pop(case_id, None)
        self.from_store.discard(case_id)
        self.in_store.add(case_id)
        self.evicted += 1
        return True

    def forget_cache(self) -> None:
        self.cache.clear()

    def stored(self) -> Iterator[tuple[str, int, str | None, datetime | None]]:
        """(case_id, partition, next_due, settled since) of every case in the table."""
        for case_id, stored in list(self.table.data.items()):
            if stored:
                yield (case_id, *stored_index_entry(stored))


def forget_partitions(table, partitions: set[int], partition_of: Callable[[str, bytes], int | None]) -> int:
    """Take the keys of `partitions` out of a table's data, and out of nothing else (no tombstone:
    the changelog is their next owner's). `partition_of`: the partition of a key, given its stored
    value (None: not known, kept). For the partitions this worker no longer holds
    (`streams.app.Pipeline.forget_unassigned`). Returns how many keys went."""
    if not partitions:
        return 0
    data = table.data
    gone = [key for key, stored in data.items() if stored and partition_of(key, stored) in partitions]
    for key in gone:
        data.pop(key, None)
    return len(gone)


def held_keys(store) -> list[str]:
    """The keys a store (`CaseStore`, `TableStore`) holds: those its table's partitions here hold,
    then its seeds from the store (not yet in the table)."""
    return [key for key, stored in store.table.data.items() if stored] + list(store.seeds)


class TableStore:
    """Values of a Faust table of the partitions a worker holds (stored bytes), the decoded ones used
    most recently in front, and seeds from the store for keys the table lacks (a fresh embedded
    broker)."""

    def __init__(self, table, write: Callable[[str, bytes, int], None], cache_size: int,
                 decode: Callable[[str, bytes], Any], encode: Callable[[Any], bytes]):
        self.table = table
        self.write = write  # (key, stored bytes, partition): into the table's data, and its changelog
        self.cache: Recent = Recent(cache_size)
        self.seeds: dict[str, Any] = {}
        self.decode = decode
        self.encode = encode

    def get(self, key: str):
        value = self.cache.use(key)
        if value is not None:
            return value
        stored = self.table.data.get(key)
        value = self.decode(key, stored) if stored else self.seeds.pop(key, None)
        if value is not None:
            self.cache.keep(key, value)
        return value

    def put_value(self, key: str, value, partition: int) -> None:
        self.write(key, self.encode(value), partition)
        self.cache.keep(key, value)

    def forget_cache(self) -> None:
        self.cache.clear()


class GroupStore(TableStore):
    """Penalty peer groups, kept in a Faust table like the cases (a group holds up to thousands of
    decisions, and each unit of facts changes a few of them); seeds rebuilt from the store's
    decisions."""

    def __init__(self, table, write: Callable[[str, bytes, int], None], cache_size: int):
        super().__init__(table, write, cache_size, lambda key, stored: decode_group(stored), encode_group)

    def put(self, group: PeerGroup, partition: int) -> None:
        self.put_value(group.key, group, partition)


@dataclass
class HeldDecisions:
    """A replay's fining decisions by peers-topic partition and group, held until its input is
    complete (`streams.peer_steps.PeerSteps.process`), with the acknowledgements of the units they
    came in: nothing is committed past decisions not yet judged and written."""
    groups: dict[int, dict[str, list[PenaltyFact]]] = field(default_factory=dict)
    acks: list[Callable[[], None]] = field(default_factory=list)
    ack_partitions: list[int] = field(default_factory=list)
    released: bool = False

    @property
    def count(self) -> int:
        return sum(len(facts) for groups in self.groups.values() for facts in groups.values())

    def hold(self, partition: int, groups: dict[str, list[PenaltyFact]]) -> None:
        held = self.groups.setdefault(partition, {})
        for key, facts in groups.items():
            held.setdefault(key, []).extend(facts)

    def hold_ack(self, partition: int, acknowledge: Callable[[], None]) -> None:
        self.acks.append(acknowledge)
        self.ack_partitions.append(partition)

    def release(self) -> "HeldDecisions":
        """What was held, taken out; decisions from now on are not held."""
        held = HeldDecisions(self.groups, self.acks, self.ack_partitions)
        self.groups, self.acks, self.ack_partitions, self.released = {}, [], [], True
        return held

    def drop_partitions(self, partitions: set[int]) -> None:
        """Revoked: their units were not acknowledged, so their next owner takes them again."""
        for partition in partitions:
            self.groups.pop(partition, None)
        kept = [(a, p) for a, p in zip(self.acks, self.ack_partitions) if p not in partitions]
        self.acks, self.ack_partitions = [a for a, _ in kept], [p for _, p in kept]
