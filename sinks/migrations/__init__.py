"""Numbered, reversible ClickHouse migrations that resume after a crash.

Each module ``NNNN_name.py`` defines ``forwards`` and ``backwards``: lists of steps, each a SQL
statement or a `Step`. `migrate` applies the migrations not applied yet; `rollback` undoes them,
newest first, down to a version.

ClickHouse has no transactions, so a process killed inside a migration leaves some of its
statements applied. Two things make the next run finish the work instead of failing on it:

* The ledger, ``schema_migrations``, is append-only: after each step it gains a row with the
  version, the direction, how many steps are done and whether that direction is finished. A
  version's newest row (by ``seq``) is its state; a rerun skips the steps done and starts at the
  one that was interrupted. (Rows written before the ledger had those columns read as finished
  forwards, which is what they recorded.)
* Every step is safe to run again after it ran, wholly or in part (``IF [NOT] EXISTS``, a copy
  that skips the rows already copied, a guard that skips a step whose source is gone). The
  tests kill the migrations after every single statement and check that a rerun ends in the
  same schema, with every row.
"""

from __future__ import annotations

import importlib
import pkgutil
from dataclasses import dataclass
from typing import Literal, Sequence

LEDGER = (
    """
    CREATE TABLE IF NOT EXISTS schema_migrations (
        version UInt32, name String, applied_at DateTime DEFAULT now()
    ) ENGINE = MergeTree ORDER BY version
    """,
    "ALTER TABLE schema_migrations "
    "ADD COLUMN IF NOT EXISTS direction LowCardinality(String) DEFAULT 'forwards', "
    "ADD COLUMN IF NOT EXISTS steps_done UInt32 DEFAULT 0, "
    "ADD COLUMN IF NOT EXISTS finished UInt8 DEFAULT 1, "
    "ADD COLUMN IF NOT EXISTS seq UInt64 DEFAULT 0",
)

Direction = Literal["forwards", "backwards"]


class MigrationInterrupted(RuntimeError):
    """The other direction of a migration was interrupted; finish that first."""


class MigrationFailed(RuntimeError):
    """A migration's statement failed (the ClickHouse user may not create tables, the disk is
    full...): said in one line with the migration and its step, not as a traceback (found by a
    black-box test); it resumes at that step once the cause is mended."""


@dataclass(frozen=True)
class Step:
    """Statements run, and run again after a crash, as one step.

    `only_if` is a query whose single value is 1 when the step has something to do; a step whose
    source is already gone (a copy after its source table was dropped) is skipped.
    """
    statements: tuple[str, ...]
    only_if: str | None = None


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    forwards: Sequence[Step]
    backwards: Sequence[Step]


@dataclass(frozen=True)
class Progress:
    """A version's newest ledger row."""
    direction: Direction
    steps_done: int
    finished: bool

    @property
    def applied(self) -> bool:
        """Applied, or applied and its rollback stopped half way."""
        return (self.direction == "forwards") == self.finished


def _steps(declared) -> tuple[Step, ...]:
    return tuple(step if isinstance(step, Step) else Step((step,)) for step in declared)


def all_migrations() -> list[Migration]:
    found = []
    for info in pkgutil.iter_modules(__path__):
        number, _, name = info.name.partition("_")
        if not number.isdigit():
            continue
        module = importlib.import_module(f"{__name__}.{info.name}")
        found.append(Migration(int(number), name, _steps(module.forwards), _steps(module.backwards)))
    found.sort(key=lambda m: m.version)
    versions = [m.version for m in found]
    if versions != list(range(1, len(found) + 1)):
        raise RuntimeError(f"migrations must be numbered 1..n without gaps, found {versions}")
    return found


def progress(client) -> dict[int, Progress]:
    """Each version's state in the ledger (created, or brought up to date, first)."""
    for statement in LEDGER:
        client.command(statement)
    rows = client.query("SELECT version, argMax(direction, seq), argMax(steps_done, seq), "
                        "argMax(finished, seq) FROM schema_migrations GROUP BY version").result_rows
    return {version: Progress(direction, steps_done, bool(finished))
            for version, direction, steps_done, finished in rows}


def applied(client) -> list[int]:
    return sorted(version for version, state in progress(client).items() if state.applied)


def _run(client, migration: Migration, direction: Direction, state: Progress | None) -> None:
    """Run the steps of one direction not recorded as done, recording each."""
    steps = getattr(migration, direction)
    start = state.steps_done if state and state.direction == direction and not state.finished else 0
    for number in range(start, len(steps)):
        step = steps[number]
        if step.only_if is None or client.query(step.only_if).result_rows[0][0]:
            for statement in step.statements:
                client.command(statement)
        seq = client.query("SELECT max(seq) + 1 FROM schema_migrations").result_rows[0][0]
        client.insert("schema_migrations",
                      [[migration.version, migration.name, direction, number + 1, number + 1 == len(steps), seq]],
                      column_names=["version", "name", "direction", "steps_done", "finished", "seq"])


def migrate(client) -> list[int]:
    """Apply every migration not applied yet; returns the versions applied now."""
    try:
        states = progress(client)
    except Exception as exc:
        raise MigrationFailed(f"cannot read or create the migrations ledger (schema_migrations): {_first_line(exc)}; "
                              "the store must answer, and its user have the rights to create and alter its "
                              "tables") from exc
    ran = []
    for migration in all_migrations():
        state = states.get(migration.version)
        if state and state.applied:
            if not state.finished:
                raise MigrationInterrupted(
                    f"rolling back migration {migration.version} ({migration.name}) stopped after "
                    f"{state.steps_done} of {len(migration.backwards)} steps; run the rollback again to finish it")
            continue
        try:
            _run(client, migration, "forwards", state)
        except Exception as exc:
            raise MigrationFailed(f"migration {migration.version:04d} ({migration.name}) failed: {_first_line(exc)}; "
                                  "mend the cause (the store's connection, its user's rights, its disk) and start again: it "
                                  "resumes where it stopped") from exc
        ran.append(migration.version)
    return ran


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return (text[0] if text else type(exc).__name__)[:500]


def rollback(client, to_version: int = 0) -> list[int]:
    """Undo applied migrations above `to_version`, newest first."""
    states = progress(client)
    undone = []
    for migration in reversed(all_migrations()):
        state = states.get(migration.version)
        if migration.version <= to_version or state is None:
            continue
        if not state.applied:
            if not state.finished:
                raise MigrationInterrupted(
                    f"migration {migration.version} ({migration.name}) stopped after {state.steps_done} of "
                    f"{len(migration.forwards)} steps; run migrate to finish it before rolling back")
            continue
        _run(client, migration, "backwards", state)
        undone.append(migration.version)
    return undone
