"""Corrections to faust-streaming 0.15.3 that Sunlight's at-least-once guarantee needs.

`Consumer._new_offset` decides how far to commit from the offsets acknowledged so far. It
refuses to commit when the first acknowledged offset is past the committed one, but with an
off-by-one (`min(acked) - committed > 1`, where the committed offset is already the next one
to read), so when exactly one message right after the committed offset has not been
acknowledged, say because Faust never delivered it to the agent, it commits past that
message. A test caught it (tests/integration/test_faults.py, a restart after the store was
down): a message skipped in delivery, committed, its row never written. Here a message is
committed only once it and every message before it are acknowledged.
"""

from __future__ import annotations

from typing import Optional

from faust.transport import consumer as faust_consumer
from faust.transport.consumer import consecutive_numbers


def _new_offset(self, tp) -> Optional[int]:
    acked = self._acked[tp]
    if not acked:
        return None
    max_offset = max(acked)
    gap_for_tp = self._gap[tp]
    if gap_for_tp:  # holes in the log itself (compaction, transaction markers) count as done
        candidates = sorted(gap_for_tp.overlap(0, max_offset), key=lambda x: x.begin)
        if candidates:
            stuff_to_add = [o for entry in candidates for o in range(entry.begin, entry.end)]
            acked.extend(stuff_to_add)
            gap_for_tp.chop(0, max(stuff_to_add[-1], max_offset + 1))
    acked.sort()
    committed_offset = self._committed_offset[tp]
    if committed_offset is not None and acked[0] > committed_offset:
        return None  # the message at the committed offset is not acknowledged yet
    batch = next(consecutive_numbers(acked))
    acked[: len(batch)] = []
    self._acked_index[tp].difference_update(batch)
    return batch[-1] + 1


def apply() -> None:
    faust_consumer.Consumer._new_offset = _new_offset
