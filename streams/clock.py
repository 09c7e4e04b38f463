"""The clocks that drive time-based rules. The domain never reads a clock; the stream passes `now` in.

* `WallClock`: live operation; now is the wall clock.
* `EventTimeClock`: replay; now is the watermark (the latest event time seen),
  never beyond the replay's `--now`, and `finish()` moves it to `--now` once
  the input is exhausted. Time-based rules thus fire in event time: a case open
  at 00:00 of its last working day gets its deadline_near even if its closing
  comes later in the same file.
"""

from __future__ import annotations

from datetime import datetime, timezone


class WallClock:
    def now(self) -> datetime:
        return datetime.now(timezone.utc)

    def observe(self, event_time: datetime) -> datetime:
        return self.now()

    def finish(self) -> None:
        pass


class EventTimeClock:
    def __init__(self, limit: datetime):
        self.limit = limit
        self.watermark: datetime | None = None

    def observe(self, event_time: datetime) -> datetime:
        if self.watermark is None or event_time > self.watermark:
            self.watermark = min(event_time, self.limit)
        return self.now()

    def now(self) -> datetime:
        return self.watermark if self.watermark is not None else datetime.min.replace(tzinfo=timezone.utc)

    def finish(self) -> None:
        self.watermark = self.limit
