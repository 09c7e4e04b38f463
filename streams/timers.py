"""The deadline index: open cases by the next moment something about them is due.

Per partition, a heap ordered by due time, with the latest due time per case
in a dict (older heap entries are skipped when popped). A tick pops only what
is due, so its cost is in proportion to what is due, not to the number of open
cases.
"""

from __future__ import annotations

import heapq
from datetime import datetime
from typing import Callable


class DeadlineIndex:
    def __init__(self) -> None:
        self._heaps: dict[int, list[tuple[datetime, str]]] = {}
        self._due: dict[str, tuple[datetime, int]] = {}

    def __len__(self) -> int:
        return len(self._due)

    def __contains__(self, case_id: str) -> bool:
        return case_id in self._due

    def schedule(self, case_id: str, due: datetime | None, partition: int) -> None:
        if due is None:
            self._due.pop(case_id, None)
            return
        current = self._due.get(case_id)
        if current is not None and current == (due, partition):
            return
        self._due[case_id] = (due, partition)
        heapq.heappush(self._heaps.setdefault(partition, []), (due, case_id))

    def pop_due(self, now_of: Callable[[int], datetime]) -> list[tuple[str, int, datetime]]:
        """(case_id, partition, now) for each case due by its partition's clock."""
        out = []
        for partition, heap in self._heaps.items():
            now = now_of(partition)
            while heap and heap[0][0] <= now:
                due, case_id = heapq.heappop(heap)
                if self._due.get(case_id) == (due, partition):
                    del self._due[case_id]
                    out.append((case_id, partition, now))
        return out

    def drop_partitions(self, partitions: set[int]) -> None:
        for case_id in [c for c, (_, p) in self._due.items() if p in partitions]:
            del self._due[case_id]
        for partition in partitions:
            self._heaps.pop(partition, None)

    def next_due(self, partition: int) -> datetime | None:
        heap = self._heaps.get(partition, [])
        while heap:
            due, case_id = heap[0]
            if self._due.get(case_id) == (due, partition):
                return due
            heapq.heappop(heap)
        return None

    def any_due(self, now_of: Callable[[int], datetime]) -> bool:
        return any((due := self.next_due(p)) is not None and due <= now_of(p) for p in list(self._heaps))

    def due_count(self, now_of: Callable[[int], datetime]) -> int:
        """How many cases are due by their partition's clock and not popped yet (the due-timer
        backlog). Walks each heap from its root only through entries already due (a heap's
        children are never earlier than their parent), so the cost is in proportion to what is
        due; superseded entries, and a case's duplicate entries, are not counted."""
        counted: set[str] = set()  # a case scheduled d1, d2, d1 again has two live-looking entries
        for partition, heap in list(self._heaps.items()):
            now = now_of(partition)
            stack = [0] if heap else []
            while stack:
                i = stack.pop()
                due, case_id = heap[i]
                if due > now:
                    continue
                if self._due.get(case_id) == (due, partition):
                    counted.add(case_id)
                stack.extend(j for j in (2 * i + 1, 2 * i + 2) if j < len(heap))
        return len(counted)
