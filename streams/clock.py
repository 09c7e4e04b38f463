"""The clocks that drive time-based rules. The domain never reads a clock; the stream passes `now` in.

* `WallClock`: live operation; now is the wall clock, in every partition.
* `EventTimeClock`: replay; now is the partition's watermark (the latest event
  time seen in that partition, as Kafka Streams keeps stream time per
  partition), never beyond the replay's `--now`. `finish()` moves every
  partition to `--now` once the input is exhausted. Cases are judged once the
  input is complete (`input_incomplete`), at `--now`; the time-based rules read
  event time, so a case open at 00:00 of its last working day gets its
  deadline_near even if its closing comes later in the same file. The watermark
  keeps the clock of what was judged before (a store with history) moving in
  event time, and the stream clock of letting settled cases go.

A case is never judged at a clock earlier than its last judgement (alerts.evaluate.case_clock),
whatever the clock passed in.
"""

from __future__ import annotations

from datetime import datetime, timezone

_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


def wall_now() -> datetime:
    """The wall clock, for when something is done: a row written, an action taken, a command run,
    a notice sent. Never the moment the rules judge at, which the stream passes in (a clock above)."""
    return datetime.now(timezone.utc)


class WallClock:
    # Live: facts arrive as they happen; each is judged at once, and a withdrawal is published at once.
    input_incomplete = False
    tickets_held = False  # and a ticket's moments come as they come
    # Time goes on by itself: cases restored from the store are judged at once, not at an end of
    # input that never comes.
    live = True
    # A finding reaches the tickets when it is raised: it settles from then if its business time is
    # long past (`alerts.tickets.on_alert`'s `seen_at`).
    findings_seen_now = True

    def now(self, partition: int | None = None) -> datetime:
        return wall_now()

    def observe(self, partition: int, event_time: datetime) -> datetime:
        return self.now()

    def latest(self) -> datetime:
        """The latest moment this clock judges at: now."""
        return self.now()

    def finish(self) -> None:
        pass

    def release_tickets(self) -> None:
        pass


class EventTimeClock:
    live = False  # restored cases are judged at the end of the input (`Pipeline.judge_restored_cases`)
    # A history's findings settle from their business time: a replay gives the tickets live operation
    # would have produced by `--now` with its facts on time.
    findings_seen_now = False

    def __init__(self, limit: datetime):
        self.limit = limit
        self.finished = False
        self.tickets_released = False
        self.watermarks: dict[int, datetime] = {}

    def observe(self, partition: int, event_time: datetime) -> datetime:
        current = self.watermarks.get(partition)
        if current is None or event_time > current:
            self.watermarks[partition] = min(event_time, self.limit)
        return self.now(partition)

    def now(self, partition: int | None = None) -> datetime:
        if self.finished:
            return self.limit
        if partition is None:
            return max(self.watermarks.values(), default=_EPOCH)
        return self.watermarks.get(partition, _EPOCH)

    def latest(self) -> datetime:
        """The latest moment this clock judges at: the replay's `--now`. A ticket action is applied
        after the clock's steps due by its own time up to this (`alerts.tickets.act`): the command
        that applies it (`sunlight tickets reply --now T`) runs no input that moves the watermark."""
        return self.limit

    def finish(self) -> None:
        self.finished = True

    def release_tickets(self) -> None:
        """The cases are judged, their alerts taken by the ticket agent: tickets' moments may come."""
        self.tickets_released = True

    @property
    def tickets_held(self) -> bool:
        """No ticket's moment (opening, deadline, level 2) is fired until every case is judged at
        the end of the input and the ticket agent has its alerts: a ticket restored from the store
        would open or escalate on the findings of an earlier run that this input's facts change,
        and its notices would carry them."""
        return not self.tickets_released

    @property
    def input_incomplete(self) -> bool:
        """A replay judges nothing until its input is complete (`alerts.evaluate.awaiting_judgement`):
        a history fed out of order would raise findings that its later events take away (a case
        looks late until its closing arrives, its nodes skipped until theirs do), and open tickets
        and send notices on them. Each case whose facts changed is judged once, at the end."""
        return not self.finished


class EachUnitJudgedClock(EventTimeClock):
    """Event time, with each unit's cases judged as they come, as a live worker judges them, not
    once at the end of the input as a replay does: how the benchmarks time the judging steps
    (`bench/domain_cost.py`, `bench/replay_scaling.py`), and how the steps are tested unit by unit."""

    input_incomplete = False
    tickets_held = False


class CommandClock(EventTimeClock):
    """The clock of a command that acts on a store now (a ticket action, a notice resend on the
    embedded defaults): event time up to `now`, but what its judgements raise reaches the tickets
    now, as live (`findings_seen_now`). Before, a ticket action on a replayed history judged the
    cases still open at the wall clock, and each new finding's ticket settled from its business
    time, months past: opened, escalated to the head and to the inspection office and mailed, all
    at once (found by a black-box test)."""
    findings_seen_now = True
