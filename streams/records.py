"""Wire records: the messages Sunlight itself defines on its internal topics. (Dead letters are
`alerts.letters.DeadLetter` as JSON on the DLQ topic; verdicts are `alerts.peers.Verdict` as JSON.)"""

from __future__ import annotations

import faust


class CaseTick(faust.Record, serializer="json"):
    """A timer asks the case agent to re-judge a case at `now` (internal topic)."""
    case_id: str
    now: str
