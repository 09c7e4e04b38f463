"""Penalty peer groups: what the peer agent does with a unit of fining decisions.

Each case that decides a fine sends a peer fact (`alerts.peers.PenaltyFact`) to
``sunlight-penalty-peers``, keyed by its group (item and violation). The peer agent takes units
of them: each decision joins its group (`alerts.peers.add_decisions`), flagged within the
benchmark or not under the catalog in force, and every verdict that changed goes to the
decision's case on the ticks topic. While a replay's input is incomplete the decisions are held,
unacknowledged, and judged at its end in decision order (`PeerSteps.judge_held_decisions`). A
fresh embedded broker seeds the groups from the store's decisions (`PeerSteps.restore`).
"""

from __future__ import annotations

from dataclasses import replace
from typing import Callable

from alerts.evaluate import NotInCatalog
from alerts.peers import NOT_OUTLIER, PenaltyFact, add_decisions, seed_group_with_verdicts
from streams.catalog_source import CatalogSource
from streams.internal_wire import verdict_signal
from streams.steps import Outputs, Unit, benchmark_of, decode_peer_unit
from streams.store import GroupStore, HeldDecisions


class PeerSteps:
    """Decode, then join the groups (or hold, during a replay's input), then send the verdicts that
    changed: what the peer agent does with a unit."""

    def __init__(self, groups: GroupStore, held: HeldDecisions, catalog: CatalogSource, clock, outputs: Outputs):
        self.groups = groups
        self.held = held  # a replay's decisions, until its input is complete (`process`)
        self.catalog_source = catalog
        self.clock = clock
        self.out = outputs
        self.hold_back: Callable | None = None  # awaited after each group: backpressure, set by the pipeline
        # Verdicts judged otherwise at restore than their cases hold (`restore`), to send once the
        # pipeline runs (streams.runtime.running_pipeline).
        self.unsent_verdicts: list[tuple[bytes, bytes]] = []

    async def process(self, unit: Unit) -> bool:
        """Returns True when the unit is held: acknowledged once its decisions are judged.

        While a replay's input is incomplete, the decisions are held, not judged: a group keeps its
        latest `outlier_group_size` decisions, and a history fed out of order by more than that
        would have its late, older decisions judged against the earliest kept instead of their own
        peers. Once every decision is in (`judge_held_decisions`), each group takes them at once, in
        decision order, as if the file had been sorted."""
        groups, letters = decode_peer_unit(unit)
        for letter in letters:
            await self.out.dead_letter(letter.record, letter.topic, letter.partition, letter.reason, letter.detail)
        if self.clock.input_incomplete and not self.held.released:
            self.held.hold(unit.partition, groups)
            return True
        await self.join(groups, unit.partition)
        return False

    async def join(self, groups: dict[str, list[PenaltyFact]], partition: int) -> None:
        """Each group's decisions into it, and the verdicts that changed to their cases."""
        for key, facts in groups.items():
            judge = self.catalog_source.judge  # per group: a reload may come between two (the loop awaits)
            group, verdicts = add_decisions(self.groups.get(key), _flagged(facts, judge), judge.config)
            self.groups.put(group, partition)
            for verdict in verdicts:
                await self.out.verdict(verdict)
            if self.hold_back is not None:
                await self.hold_back()

    async def judge_held_decisions(self) -> int:
        """The end of a replay's input, before its cases are judged: every held decision joins its
        group, group by group, and the verdicts go to their cases; the held units are acknowledged
        once written, like any other. Returns how many decisions were held."""
        held = self.held.release()
        for partition, groups in held.groups.items():
            await self.join(groups, partition)
            await self.out.outbox.send()
        for acknowledge in held.acks:
            self.out.writer.on_written(acknowledge)
        return held.count

    def restore(self, facts: list[PenaltyFact], held_verdicts: dict[tuple[str, str], str] | None = None) -> None:
        """Seed the peer groups from the store's fining decisions (see
        streams.runtime.restore_from_store). `held_verdicts`: the digest of the verdict each case
        holds on its decisions, (case, event) -> digest (none held: not an outlier); a decision
        judged otherwise now (the catalog's tiers or the thresholds changed since: its peers are
        others) has its verdict sent to its case once the pipeline runs (`unsent_verdicts`): else
        the case kept the outlier card of the old judgement, or lacked the new one."""
        by_group: dict[str, list[PenaltyFact]] = {}
        for fact in facts:
            by_group.setdefault(fact.group, []).append(fact)
        config = self.catalog_source.judge.config
        self.groups.seeds = {}
        for key, group_facts in by_group.items():
            self.groups.seeds[key], verdicts = seed_group_with_verdicts(group_facts, config)
            if held_verdicts is None:
                continue
            self.unsent_verdicts += [
                (verdict.case_id.encode(), verdict_signal(verdict)) for verdict in verdicts.values()
                if held_verdicts.get((verdict.case_id, verdict.event_id), NOT_OUTLIER) != verdict.digest]


def _flagged(facts: list[PenaltyFact], judge) -> list[PenaltyFact]:
    """Facts flagged within the benchmark or not under the catalog in force as they join their
    group: one made by a case under a catalog reloaded since (on its way through the peers topic)
    carries the old tiers' flag. A fact of an item the catalog lacks now keeps its own."""
    flagged = []
    for fact in facts:
        try:
            within = benchmark_of(judge, fact.item_code, fact.violation_code)(fact.amount)
        except NotInCatalog:
            within = fact.within_benchmark
        flagged.append(fact if within == fact.within_benchmark else replace(fact, within_benchmark=within))
    return flagged
