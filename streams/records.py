"""Wire records: the messages Sunlight itself defines on its internal and DLQ topics."""

from __future__ import annotations

import faust


class CaseTick(faust.Record, serializer="json"):
    """A timer asks the case agent to re-judge a case at `now` (internal topic)."""
    case_id: str
    now: str


class DeadLetter(faust.Record, serializer="json"):
    """A message that could not be processed, with the reason (topic case-events-dlq)."""
    reason: str
    error: str
    topic: str
    partition: int
    offset: int
    key: str | None
    payload: str  # the message as received (UTF-8, or base64 when it was not text)
    payload_encoding: str  # "utf-8" | "base64"
