"""A catalog edited under a running worker: taken on the reload timer, and what it changes judged again.

One step on a timer (`CatalogReload.run`), in three parts:

* the peer groups this worker holds whose violation's benchmark tiers (or the outlier thresholds)
  changed are judged again (`alerts.peers.rejudged`), and the verdicts that changed go to their cases;
* when the catalog judges cases otherwise (`alerts.evaluate.judges_otherwise`), every case this
  worker holds is scheduled to be judged again at the clock (`judge_cases_again`), and so is every
  case of its partitions whose latest state in the store was judged under another catalog
  (`judge_stored_cases_again`: the cases let go of the tables; on a Kafka cluster, also at every
  assignment, for a catalog changed while the workers were stopped);
* the catalog's rows go to the store, for the dashboards' names and variables, tried again on
  the next tick while the store refuses them.
"""

from __future__ import annotations

import logging
from datetime import datetime, timezone
from typing import Callable

from alerts.evaluate import NotInCatalog, judges_otherwise
from alerts.peers import rejudged
from streams.catalog_source import CatalogSource
from streams.steps import Outputs, benchmark_of, home_partition
from streams.store import CaseStore, GroupStore, held_keys
from streams.timers import DeadlineIndex

log = logging.getLogger(__name__)

_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


class CatalogReload:
    def __init__(self, catalog: CatalogSource, store: CaseStore, groups: GroupStore, index: DeadlineIndex,
                 outputs: Outputs, clock, partitions: int, assigned_partitions: Callable[[], set[int]] = set):
        self.catalog_source = catalog
        self.store = store
        self.groups = groups
        self.index = index
        self.out = outputs
        self.clock = clock
        self.partitions = partitions
        self.assigned_partitions = assigned_partitions  # () -> the case partitions this worker holds now
        self.rows_pending = False  # a reloaded catalog the store has not taken yet
        self.stored_pending = False  # the store's cases judged under another catalog: to be looked up

    async def run(self) -> None:
        before = self.catalog_source.judge
        if self.catalog_source.maybe_reload():
            self.rows_pending = True
            await self.rejudge_groups(before)
            if judges_otherwise(before, self.catalog_source.judge):
                self.judge_cases_again()
                self.stored_pending = True
        if self.rows_pending:  # again on the next tick while the store refuses it
            self.rows_pending = not await self.write_catalog_rows()
        if self.stored_pending:  # again on the next tick while the store does not answer
            self.stored_pending = await self.judge_stored_cases_again() is None

    async def rejudge_groups(self, before) -> int:
        """After a reload that changed a violation's benchmark tiers, or the outlier thresholds: each
        peer group of it this worker holds, its decisions flagged under the new tiers and judged
        again (`alerts.peers.rejudged`); the verdicts that changed go to their cases. Else the
        groups kept the old flags until a restart: fines now outside every tier stayed peers, and
        the cases kept the old peers' outlier cards and lacked the new ones. Returns how many
        verdicts were sent."""
        after = self.catalog_source.judge
        sent = 0
        for key in held_keys(self.groups):
            group = self.groups.get(key)
            if group is None or not group.decisions:
                continue
            try:
                within = benchmark_of(after, group.item_code, group.violation_code)
                unchanged = (after.config == before.config and before.item(group.item_code).tiers(group.violation_code)
                             == after.item(group.item_code).tiers(group.violation_code))
            except NotInCatalog:  # an item added or gone: its cases are judged as the catalog says
                continue
            if unchanged:
                continue
            group, verdicts = rejudged(group, within, after.config)
            self.groups.put(group, home_partition(key, self.partitions))
            for verdict in verdicts:
                await self.out.verdict(verdict)
            sent += len(verdicts)
        await self.out.outbox.send()
        if sent:
            log.info("catalog reloaded: %d peer verdicts judged otherwise under its benchmark tiers sent to their "
                     "cases", sent)
        return sent

    def judge_cases_again(self) -> int:
        """After a reload that changed what cases are judged against: every case this worker holds,
        judged at the clock under the new catalog (what the next process would do). Else a case with
        nothing due kept the cards of the old limits (a red overdue, and its ticket, for a case whose
        time limit was lengthened) until an event of its came, and one whose limit was shortened had
        its card only at the moment the old limit set (found by a black-box test). A replay whose
        input is not complete judges every case at its end anyway. Returns how many."""
        if self.clock.input_incomplete:
            return 0
        cases = held_keys(self.store)
        for case_id in cases:
            self.index.schedule(case_id, _EPOCH, home_partition(case_id, self.partitions))
        if cases:
            log.warning("catalog reloaded: the %d cases this worker holds are judged again under it", len(cases))
        return len(cases)

    async def judge_stored_cases_again(self) -> int | None:
        """Every case of the partitions this worker holds whose latest state in the store was judged
        under another catalog than this one (`sinks.queries.cases_judged_otherwise`), scheduled to
        be judged at the clock: a case let go of the tables is read back for it. Else a case that
        met no reload kept the cards of the catalog it was judged under: one let go before a reload,
        or any case on a Kafka cluster after a catalog changed while the workers were stopped (a
        start takes the catalog as it finds it); a time limit lengthened left its red overdue cards
        and their tickets standing (found by a black-box test with two workers). Returns how many;
        None when the store did not answer (tried again on the next reload tick)."""
        from sinks.queries import cases_judged_otherwise

        if self.clock.input_incomplete:  # a replay judges its cases at the end of its input
            return 0
        try:
            stale = await self.out.writer.run(cases_judged_otherwise, self.catalog_source.basis,
                                              sorted(self.catalog_source.judge.catalog.items))
        except Exception as exc:
            log.warning("could not ask the store which cases were judged under another catalog (will try again): %s",
                        exc)
            return None
        held = self.assigned_partitions()
        cases = [(case_id, partition) for case_id in stale
                 if (partition := home_partition(case_id, self.partitions)) in held]
        for case_id, partition in cases:
            self.index.schedule(case_id, _EPOCH, partition)
        if cases:
            log.warning("%d stored cases of this worker's partitions were judged under another catalog: judged "
                        "again under this one", len(cases))
        return len(cases)

    async def write_catalog_rows(self) -> bool:
        """The reloaded catalog into the store, for the dashboards' names and variables; False when
        the store refused it (the dashboards show the previous copy meanwhile)."""
        from sinks.catalog_rows import write_catalog

        try:
            await self.out.writer.run(write_catalog, self.catalog_source.judge.catalog, None,
                                      self.catalog_source.region_names)
        except Exception as exc:  # the store is down: tried again on the next reload tick
            log.warning("could not write the reloaded catalog to the store (will try again): %s", exc)
            return False
        return True
