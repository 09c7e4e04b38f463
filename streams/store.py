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
from typing import Any, Callable, Iterator

from alerts.peers import PeerGroup
from alerts.state import CaseState
from streams.codec import decode_group, decode_state, encode_group, encode_state, stored_partition_and_due


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


class CaseStore:
    def __init__(self, table, write: Callable[[str, bytes, int], None], cache_size: int):
        self.table = table
        self.write = write  # (key, stored bytes, partition): into the table's data, and its changelog
        self.cache: Recent = Recent(cache_size)
        # What the data directory's store already holds, by case: the seed of a case's state when
        # the table has none (a fresh embedded broker, see streams.runtime.restore_from_store).
        self.seeds: dict[str, CaseState] = {}
        # Cases whose state came from the store and has not changed since: their rows are in the
        # store already, so a redelivery or an unchanged judgement writes and publishes nothing.
        self.from_store: set[str] = set()
        # Cases written since the pipeline last looked (it indexes their deadlines, then clears it).
        self.written: set[str] = set()

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
            await self.put(state, partition, encode_state(state, partition), from_store=True)
        return state

    async def put(self, state: CaseState, partition: int, stored: bytes, from_store: bool = False) -> None:
        if from_store:
            self.from_store.add(state.case_id)
        else:
            self.from_store.discard(state.case_id)
        self.write(state.case_id, stored, partition)
        self.cache.keep(state.case_id, state)
        self.written.add(state.case_id)

    def forget_cache(self) -> None:
        self.cache.clear()

    def stored(self) -> Iterator[tuple[str, int, str | None, bool]]:
        """(case_id, partition, next_due, has held withdrawals) of every case in the table."""
        for case_id, stored in list(self.table.data.items()):
            if stored:
                yield (case_id, *stored_partition_and_due(stored))


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
