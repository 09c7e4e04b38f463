"""The deadline index: open cases by the next moment something about them is due.

A heap ordered by due time, with the latest due time per case in a dict (older
heap entries are skipped when popped). A tick pops only what is due, so its
cost is in proportion to what is due, not to the number of open cases.
"""

from __future__ import annotations

import heapq
from datetime import datetime


class DeadlineIndex:
    def __init__(self) -> None:
        self._heap: list[tuple[datetime, str]] = []
        self._due: dict[str, tuple[datetime, int]] = {}

    def __len__(self) -> int:
        return len(self._due)

    def schedule(self, case_id: str, due: datetime | None, partition: int) -> None:
        if due is None:
            self._due.pop(case_id, None)
            return
        current = self._due.get(case_id)
        if current is not None and current[0] == due:
            return
        self._due[case_id] = (due, partition)
        heapq.heappush(self._heap, (due, case_id))

    def pop_due(self, now: datetime) -> list[tuple[str, int]]:
        out = []
        heap = self._heap
        while heap and heap[0][0] <= now:
            due, case_id = heapq.heappop(heap)
            current = self._due.get(case_id)
            if current is not None and current[0] == due:
                del self._due[case_id]
                out.append((case_id, current[1]))
        return out

    def drop_partitions(self, partitions: set[int]) -> None:
        for case_id in [c for c, (_, p) in self._due.items() if p in partitions]:
            del self._due[case_id]

    def next_due(self) -> datetime | None:
        while self._heap:
            due, case_id = self._heap[0]
            current = self._due.get(case_id)
            if current is not None and current[0] == due:
                return due
            heapq.heappop(self._heap)
        return None
