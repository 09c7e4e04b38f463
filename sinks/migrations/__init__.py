"""Numbered, reversible ClickHouse migrations.

Each module ``NNNN_name.py`` defines ``forwards`` and ``backwards``: lists of
SQL statements. `migrate` applies the ones not yet recorded in
``schema_migrations``; `rollback` undoes them, newest first, down to a version.
"""

from __future__ import annotations

import importlib
import pkgutil
from dataclasses import dataclass
from typing import Sequence

LEDGER = """
CREATE TABLE IF NOT EXISTS schema_migrations (
    version UInt32, name String, applied_at DateTime DEFAULT now()
) ENGINE = MergeTree ORDER BY version
"""


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    forwards: Sequence[str]
    backwards: Sequence[str]


def all_migrations() -> list[Migration]:
    found = []
    for info in pkgutil.iter_modules(__path__):
        number, _, name = info.name.partition("_")
        if not number.isdigit():
            continue
        module = importlib.import_module(f"{__name__}.{info.name}")
        found.append(Migration(int(number), name, module.forwards, module.backwards))
    found.sort(key=lambda m: m.version)
    versions = [m.version for m in found]
    if versions != list(range(1, len(found) + 1)):
        raise RuntimeError(f"migrations must be numbered 1..n without gaps, found {versions}")
    return found


def applied(client) -> list[int]:
    client.command(LEDGER)
    return [row[0] for row in client.query("SELECT version FROM schema_migrations ORDER BY version").result_rows]


def migrate(client) -> list[int]:
    """Apply every migration not applied yet; returns the versions applied now."""
    done = set(applied(client))
    ran = []
    for migration in all_migrations():
        if migration.version in done:
            continue
        for statement in migration.forwards:
            client.command(statement)
        client.insert("schema_migrations", [[migration.version, migration.name]],
                      column_names=["version", "name"])
        ran.append(migration.version)
    return ran


def rollback(client, to_version: int = 0) -> list[int]:
    """Undo applied migrations above `to_version`, newest first."""
    done = set(applied(client))
    undone = []
    for migration in reversed(all_migrations()):
        if migration.version <= to_version or migration.version not in done:
            continue
        for statement in migration.backwards:
            client.command(statement)
        client.command(f"ALTER TABLE schema_migrations DELETE WHERE version = {migration.version} "
                       f"SETTINGS mutations_sync = 1")
        undone.append(migration.version)
    return undone
