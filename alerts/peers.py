"""Peer groups of penalties (same item, same violation) and the discretion_outlier rule.

An outlier is a fine that few or none of its peers impose (`judge_amount`). Fines spread
multiplicatively and peers sit in several benchmark tiers, so the rule works on the peers'
own amounts, not on a distance from their median:

1. the peers that are themselves far out are set aside: beyond `outlier_fence` (1.5) times the
   interquartile range of the peers' log amounts (at least the margin's), below their first
   quartile or above their third (Tukey's far-out fences, in log space). This holds while fewer than a quarter of the
   peers are far out; when more impose an amount, it is a practice, not an outlier;
2. the usual range is the remaining peers' 1st to 99th percentile, widened by a factor:
   `outlier_margin` (1.25), and more when the peers are few and spread (exp(4R/(n+1)), R the
   log-width of the range, n the peers), since a handful of peers shows less of what is usual;
3. a fine outside the widened range is an outlier.

Whom a decision is judged against is fixed by decision time, not by arrival: its peers are
the group's decisions made before it (other cases', the latest `outlier_window` of them),
leaving out the decisions outside every benchmark tier (already red cards). A verdict
therefore does not flap as later, unrelated decisions arrive; it changes only when a decision
made earlier arrives late, and then it is what the whole set of events says. A decision with
fewer than `outlier_min_peers` peers before it (a young group) is judged against the group's
first `outlier_min_peers` decisions, once the group has them.

The stream sends each fining decision to its group as a `PenaltyFact`. `add_decision`
returns the group and the `Verdict`s that changed, which the stream sends back to each
decision's case: the outlier alert lives with the case like every other alert (its id names
the decision, its versions are the case's). A group keeps a bounded summary of its peers: its
latest `outlier_group_size` decisions, and never more than `peer_group_max_bytes` of stored
JSON. It never refuses a decision: one older than everything kept is judged against the
earliest decisions kept. (A replay gives its groups every decision at once, once its input is
complete: `streams.peer_steps.PeerSteps.judge_held_decisions`.)
"""

from __future__ import annotations

import hashlib
import math
from math import exp
from bisect import bisect_left, bisect_right, insort
from collections import Counter, deque
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta, timezone
from statistics import median
from typing import Any, Callable, Mapping, Sequence

import orjson

from alerts.catalog import violation_key
from alerts.config import RuleConfig
from alerts.events import CaseEvent


def group_key(item_code: str, violation_code: str) -> str:
    """The peer group of an item's violation: the code as benchmarks match it (`violation_key`), so
    that fines written `7` and `7.0` (an XES and a CSV export) are one another's peers, as they
    answer to one benchmark."""
    return f"{item_code}\x1f{violation_key(violation_code)}"


@dataclass(frozen=True, slots=True)
class PenaltyFact:
    """A fining decision, as the case agent sends it to the decision's peer group."""
    case_id: str
    event_id: str
    item_code: str
    violation_code: str
    amount: float
    decided_at: datetime
    # False when the fine is outside every tier of the benchmark (discretion_out_of_range): it
    # is judged, but it is no peer of others.
    within_benchmark: bool = True

    @property
    def group(self) -> str:
        return group_key(self.item_code, self.violation_code)

    def to_json(self) -> dict[str, Any]:
        return {"case_id": self.case_id, "event_id": self.event_id, "item_code": self.item_code,
                "violation_code": self.violation_code, "amount": self.amount,
                "decided_at": self.decided_at.isoformat(), "within_benchmark": self.within_benchmark}

    @classmethod
    def from_json(cls, obj: Mapping[str, Any]) -> "PenaltyFact":
        return cls(str(obj["case_id"]), str(obj["event_id"]), str(obj["item_code"]), str(obj["violation_code"]),
                   float(obj["amount"]), datetime.fromisoformat(obj["decided_at"]),
                   bool(obj.get("within_benchmark", True)))


def fact_of(event: CaseEvent, violation: str, amount: float, within_benchmark: bool = True) -> PenaltyFact:
    return PenaltyFact(event.case_id, event.event_id, event.item_code, violation, amount, event.occurred_at,
                       within_benchmark)


@dataclass(frozen=True, slots=True)
class Verdict:
    """What a peer group says of one decision; `evidence` is None when it is not an outlier."""
    case_id: str
    event_id: str
    item_code: str
    violation_code: str
    evidence: Mapping[str, Any] | None

    @property
    def outlier(self) -> bool:
        return self.evidence is not None

    @property
    def digest(self) -> str:
        """A short fingerprint, kept by the group to send a verdict only when it changes."""
        if self.evidence is None:
            return NOT_OUTLIER
        body = orjson.dumps(self.evidence, option=orjson.OPT_SORT_KEYS)
        return hashlib.blake2b(body, digest_size=6).hexdigest()

    def to_json(self) -> dict[str, Any]:
        return {"case_id": self.case_id, "event_id": self.event_id, "item_code": self.item_code,
                "violation_code": self.violation_code,
                "evidence": dict(self.evidence) if self.evidence is not None else None}

    @classmethod
    def from_json(cls, obj: Mapping[str, Any]) -> "Verdict":
        evidence = obj.get("evidence")
        if evidence is not None and not isinstance(evidence, dict):
            raise ValueError("a verdict's evidence must be an object or null")
        return cls(str(obj["case_id"]), str(obj["event_id"]), str(obj["item_code"]), str(obj["violation_code"]),
                   evidence)


_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
NOT_OUTLIER = "-"  # Verdict.digest of a verdict that is not an outlier


@dataclass(frozen=True, slots=True)
class Decision:
    """One decision as its group keeps it: compact, with the fingerprint of its verdict."""
    decided_at: datetime
    event_id: str
    case_id: str
    amount: float
    within_benchmark: bool = True
    sent: str = ""  # Verdict.digest of the verdict last sent for it; "" while unjudged
    # Its stored row, once encoded (see streams.codec): a group is written after every unit.
    stored: bytes | None = field(default=None, compare=False, repr=False)

    @property
    def order_key(self) -> tuple[datetime, str, str]:
        return (self.decided_at, self.event_id, self.case_id)

    @property
    def key(self) -> tuple[str, str]:
        """Its case and event: an event id is its case's (a log numbering its rows 1..n within each
        case gives the decisions of two cases one id: keyed by the id alone, the second was taken
        for the first redelivered, and left out of the comparison: found by review)."""
        return (self.case_id, self.event_id)

    @property
    def outlier(self) -> bool:
        return self.sent not in ("", NOT_OUTLIER)

    def to_json(self) -> list:
        """A compact row: the decision time in epoch microseconds (UTC), ids, amount, flags."""
        return [round(self.decided_at.timestamp() * 1_000_000), self.event_id, self.case_id, self.amount,
                int(self.within_benchmark), self.sent]

    @classmethod
    def from_json(cls, row: Sequence[Any]) -> "Decision":
        decided_at = _EPOCH + timedelta(microseconds=int(row[0]))
        return cls(decided_at, str(row[1]), str(row[2]), float(row[3]), bool(row[4]), str(row[5]))


@dataclass(frozen=True, slots=True)
class PeerGroup:
    key: str
    decisions: tuple[Decision, ...] = ()  # in decision-time order, the latest kept
    trimmed: bool = False  # older decisions were let go to keep the group within its bound

    @property
    def item_code(self) -> str:
        return self.key.split("\x1f", 1)[0]

    @property
    def violation_code(self) -> str:
        return self.key.split("\x1f", 1)[1]

    def to_json(self) -> dict[str, Any]:
        return {"key": self.key, "decisions": [d.to_json() for d in self.decisions], "trimmed": self.trimmed}

    @classmethod
    def from_json(cls, obj: Mapping[str, Any]) -> "PeerGroup":
        return cls(obj["key"], tuple(Decision.from_json(row) for row in obj.get("decisions") or ()),
                   bool(obj.get("trimmed")))


def quantile(values: Sequence[float], q: float) -> float:
    """The q-quantile of sorted `values`, interpolated linearly (numpy's default)."""
    position = (len(values) - 1) * q
    low = int(position)
    high = min(low + 1, len(values) - 1)
    return values[low] + (values[high] - values[low]) * (position - low)


def _log(amount: float) -> float:
    return math.log(amount) if amount > 0 else -math.inf


def usual_range(peers: Sequence[float], config: RuleConfig) -> tuple[float, float, Sequence[float]]:
    """The range of amounts nearly all `peers` impose, widened (see the module's docstring), and
    the peers it was taken from (those not far out themselves), sorted."""
    return _usual_range_of_sorted(sorted(peers), config)


def _log_quantile(values: Sequence[float], q: float) -> float:
    """The q-quantile of the logs of sorted `values` (as `quantile` over their logs)."""
    position = (len(values) - 1) * q
    low = int(position)
    high = min(low + 1, len(values) - 1)
    a, b = _log(values[low]), _log(values[high])
    return a + (b - a) * (position - low)


def _first_at_least(values: Sequence[float], bound: float, strict: bool = False) -> int:
    """The first index of sorted `values` whose log is >= bound (> bound when strict).

    Bisected in C on the amounts against exp(bound), then set right by the logs themselves: the
    log is monotone, so the answer is exactly that of bisecting on the logs, whatever rounding
    exp and log do at the edge."""
    try:
        near = exp(bound)
    except OverflowError:
        near = math.inf
    index = bisect_right(values, near) if strict else bisect_left(values, near)
    count = len(values)
    if strict:
        while index > 0 and _log(values[index - 1]) > bound:
            index -= 1
        while index < count and not _log(values[index]) > bound:
            index += 1
    else:
        while index > 0 and _log(values[index - 1]) >= bound:
            index -= 1
        while index < count and not _log(values[index]) >= bound:
            index += 1
    return index


def _usual_range_of_sorted(values: Sequence[float], config: RuleConfig) -> tuple[float, float, Sequence[float]]:
    first, third = _log_quantile(values, 0.25), _log_quantile(values, 0.75)
    # No narrower than the margin: a few peers may happen to sit close together.
    reach = config.outlier_fence * max(third - first, math.log(config.outlier_margin))
    core = values[_first_at_least(values, first - reach):_first_at_least(values, third + reach, strict=True)] or values
    low = quantile(core, config.outlier_low_quantile)
    high = quantile(core, config.outlier_high_quantile)
    width = math.log(high / low) if low > 0 else 0.0
    factor = config.outlier_margin * math.exp(config.outlier_sample_widening * width / (len(core) + 1))
    return low / factor, high * factor, core


def judge_amount(amount: float, peers: Sequence[float], config: RuleConfig) -> dict[str, Any] | None:
    """The evidence that `amount` is outside what nearly all `peers` impose, else None."""
    return _judge_sorted(amount, sorted(peers), config)


def _judge_sorted(amount: float, values: Sequence[float], config: RuleConfig) -> dict[str, Any] | None:
    if len(values) < config.outlier_min_peers:
        return None
    floor, ceiling, core = _usual_range_of_sorted(values, config)
    if floor <= amount <= ceiling:
        return None
    return {"penalty_amount": amount, "peers": len(values), "peer_median": median(values),
            "peer_low": round(quantile(core, config.outlier_low_quantile), 2),
            "peer_high": round(quantile(core, config.outlier_high_quantile), 2),
            "usual_range": [round(floor, 2), round(ceiling, 2)],
            "direction": "above" if amount > ceiling else "below",
            "peer_min": values[0], "peer_max": values[-1]}


def _peers(decisions: Sequence[Decision], index: int, config: RuleConfig) -> list[Decision] | None:
    """Whom the decision at `index` is judged against (see the module's docstring)."""
    case_id = decisions[index].case_id
    before: list[Decision] = []
    for d in reversed(decisions[:index]):
        if d.case_id != case_id and d.within_benchmark:
            before.append(d)
            if len(before) == config.outlier_window:
                break
    if len(before) >= config.outlier_min_peers:
        return before[::-1]
    first = [d for d in decisions if d.case_id != case_id and d.within_benchmark][:config.outlier_min_peers]
    return first if len(first) >= config.outlier_min_peers else None


def _verdict(decision: Decision, values: Sequence[float], peers_from: datetime, peers_to: datetime,
             group: PeerGroup, config: RuleConfig) -> Verdict:
    evidence = _judge_sorted(decision.amount, values, config)
    if evidence is not None:
        evidence = {"violation_code": group.violation_code, **evidence, "event_id": decision.event_id,
                    "peers_decided_from": peers_from.astimezone(timezone.utc).isoformat(),
                    "peers_decided_to": peers_to.astimezone(timezone.utc).isoformat()}
    return Verdict(decision.case_id, decision.event_id, group.item_code, group.violation_code, evidence)


def verdict_at(decisions: Sequence[Decision], index: int, group: PeerGroup, config: RuleConfig) -> Verdict | None:
    """The verdict on the decision at `index`; None while the group is too young to judge it."""
    peers = _peers(decisions, index, config)
    if peers is None:
        return None
    return _verdict(decisions[index], sorted(p.amount for p in peers), min(p.decided_at for p in peers),
                    max(p.decided_at for p in peers), group, config)


class _Window:
    """The peers of successive positions of a group (the latest `outlier_window` decisions within
    the benchmark before each), kept sorted as the position moves on: judging a run of positions
    costs a bisection each, not a sort."""

    def __init__(self, decisions: Sequence[Decision], position: int, config: RuleConfig):
        self.config = config
        self.members: deque[Decision] = deque()
        for d in reversed(decisions[:position]):
            if d.within_benchmark:
                self.members.appendleft(d)
                if len(self.members) == config.outlier_window:
                    break
        self.values = sorted(d.amount for d in self.members)
        self.cases = Counter(d.case_id for d in self.members)

    def verdict(self, decisions: Sequence[Decision], position: int, group: PeerGroup) -> Verdict | None:
        decision = decisions[position]
        if self.cases.get(decision.case_id) or len(self.members) < self.config.outlier_min_peers:
            return verdict_at(decisions, position, group, self.config)  # its own case among them, or young
        return _verdict(decision, self.values, self.members[0].decided_at, self.members[-1].decided_at, group,
                        self.config)

    def advance(self, decision: Decision) -> None:
        """The decision at this position becomes a peer of the next."""
        if not decision.within_benchmark:
            return
        self.members.append(decision)
        insort(self.values, decision.amount)
        self.cases[decision.case_id] += 1
        if len(self.members) > self.config.outlier_window:
            old = self.members.popleft()
            del self.values[bisect_left(self.values, old.amount)]
            self.cases[old.case_id] -= 1


def add_decision(group: PeerGroup | None, fact: PenaltyFact, config: RuleConfig = RuleConfig()
                 ) -> tuple[PeerGroup, list[Verdict]]:
    """Add a decision to its group; returns the group and the verdicts to send to their cases.

    Every decision whose peers may include the new one is judged again, and its verdict is
    sent if it changed. A decision the group already has (a redelivery) changes nothing, but its
    verdict is sent again: a crash may have lost it after the group was stored.
    """
    return add_decisions(group, [fact], config)


def add_decisions(group: PeerGroup | None, facts: Sequence[PenaltyFact], config: RuleConfig = RuleConfig()
                  ) -> tuple[PeerGroup, list[Verdict]]:
    """Add several decisions of one group (a unit's), then judge again, once, every decision whose
    peers may include one of them: the verdicts are those of adding them one by one, less the
    intermediate ones."""
    group = group or PeerGroup(facts[0].group)
    decisions = list(group.decisions)
    held = {d.key for d in decisions}
    redelivered: set[tuple[str, str]] = set()
    for fact in facts:
        if (fact.case_id, fact.event_id) in held:
            redelivered.add((fact.case_id, fact.event_id))
            continue
        index = bisect_left(decisions, (fact.decided_at, fact.event_id, fact.case_id), key=lambda d: d.order_key)
        decisions.insert(index, Decision(fact.decided_at, fact.event_id, fact.case_id, fact.amount,
                                         fact.within_benchmark))
        held.add((fact.case_id, fact.event_id))
    added = {(f.case_id, f.event_id) for f in facts}
    touched = [i for i, d in enumerate(decisions) if d.key in added]
    if not touched:
        return group, []
    first = touched[0]
    lowest = 2 * config.outlier_window if group.trimmed else 0
    young = 2 * config.outlier_min_peers + 1  # positions that may be judged against the first decisions
    positions = set(touched)
    positions.update(p for p in range(max(first, lowest), min(len(decisions), _reach(touched[-1], config) + 1)))
    if first < young:
        positions.update(range(lowest, min(young, len(decisions))))
    verdicts: list[Verdict] = []
    window: _Window | None = None
    previous = -2
    for position in sorted(positions):
        if window is None or position != previous + 1:
            window = _Window(decisions, position, config)
        verdict = window.verdict(decisions, position, group)
        current = decisions[position]
        if verdict is not None and (verdict.digest != current.sent or current.key in redelivered):
            verdicts.append(verdict)
            decisions[position] = replace(current, sent=verdict.digest, stored=None)
        window.advance(current)
        previous = position
    return _bounded(replace(group, decisions=tuple(decisions)), config), verdicts


def rejudged(group: PeerGroup, within: Callable[[float], bool], config: RuleConfig = RuleConfig()
             ) -> tuple[PeerGroup, list[Verdict]]:
    """The group under a reloaded catalog whose benchmark tiers or thresholds may differ: each
    decision flagged anew by `within` (is its amount inside a tier: a peer of others), every
    decision judged again, and the verdicts that differ from those sent. A decision that was an
    outlier and can no longer be judged (too few peers within the tiers now) is sent as not one:
    its case keeps no card its peers no longer support. Positions whose peers a trimmed group no
    longer holds are left as judged."""
    decisions = [d if d.within_benchmark == within(d.amount) else replace(d, within_benchmark=not d.within_benchmark,
                                                                             stored=None)
                 for d in group.decisions]
    lowest = 2 * config.outlier_window if group.trimmed else 0
    verdicts: list[Verdict] = []
    window: _Window | None = None
    for position in range(lowest, len(decisions)):
        if window is None:
            window = _Window(decisions, position, config)
        current = decisions[position]
        verdict = window.verdict(decisions, position, group)
        if verdict is None and current.outlier:
            verdict = Verdict(current.case_id, current.event_id, group.item_code, group.violation_code, None)
        if verdict is not None and verdict.digest != current.sent:
            verdicts.append(verdict)
            decisions[position] = replace(current, sent=verdict.digest, stored=None)
        window.advance(decisions[position])
    return replace(group, decisions=tuple(decisions)), verdicts


def _reach(index: int, config: RuleConfig) -> int:
    """Past the last position whose peers may include the decision at `index` (other cases'
    decisions count, so the reach is generous)."""
    return index + 2 * config.outlier_window + 1


def _bounded(group: PeerGroup, config: RuleConfig) -> PeerGroup:
    """Keep the latest decisions: at most `outlier_group_size`, and within the group's bound in
    bytes of stored JSON (however long the ids), so that a group is always one table record."""
    decisions = group.decisions
    if len(decisions) > config.outlier_group_size:
        decisions = decisions[len(decisions) - config.outlier_group_size:]
        group = replace(group, decisions=decisions, trimmed=True)
    # A row's JSON is its ids, the time, the amount and the fingerprint: encode only near the bound.
    if sum(len(d.event_id) + len(d.case_id) for d in decisions) + 90 * len(decisions) < config.peer_group_max_bytes // 2:
        return group
    size = len(orjson.dumps(group.to_json()))
    # Decision rows differ little in size: drop the share that is over, then check again.
    while size > config.peer_group_max_bytes and len(decisions) > config.outlier_min_peers + 1:
        over = size - config.peer_group_max_bytes
        drop = max(1, int(over / (size / len(decisions))) + 1)
        decisions = decisions[min(drop, len(decisions) - config.outlier_min_peers - 1):]
        group = replace(group, decisions=decisions, trimmed=True)
        size = len(orjson.dumps(group.to_json()))
    return group


def seed_group(facts: Sequence[PenaltyFact], config: RuleConfig = RuleConfig()) -> PeerGroup | None:
    return seed_group_with_verdicts(facts, config)[0]


def seed_group_with_verdicts(facts: Sequence[PenaltyFact], config: RuleConfig = RuleConfig()
                             ) -> tuple[PeerGroup | None, dict[tuple[str, str], Verdict]]:
    """A group rebuilt from stored decisions, in decision order, as if it had judged them all
    (their verdicts are taken as sent: the stored alerts hold them), with each decision's final
    verdict (the caller sends those its case does not hold: judged under another catalog).

    The decisions go in as units of `outlier_window`, as the pipeline adds a unit's decisions:
    the same group as adding them one by one (`add_decisions`; a property test holds them
    together), whose cost grows with the group each time, so that a store's year of decisions
    took hours to seed. Except at the group's bound in bytes (`peer_group_max_bytes`, reached only
    with long ids): which of the oldest decisions are dropped there depends on how many came at
    once, by a few, for seeding as for the pipeline's units."""
    group = None
    # Each decision's verdict as the group last judged it (`Decision.sent`), by case and event.
    final: dict[tuple[str, str], Verdict] = {}
    ordered = sorted(facts, key=lambda f: (f.decided_at, f.event_id, f.case_id))
    for start in range(0, len(ordered), config.outlier_window):
        group, verdicts = add_decisions(group, ordered[start:start + config.outlier_window], config)
        final.update(((v.case_id, v.event_id), v) for v in verdicts)
    return group, final
