#!/usr/bin/env python3
"""Apply the store's migrations once and exit: `sunlight-migrate`.

Run it before rolling out workers of a new version (a compose one-shot service, a Kubernetes
Job): every worker also migrates at start, but one run first keeps several new workers from
migrating the same tables at the same moment. Migrations resume after a crash
(docs/faults.md, "A migration killed half way"), so a Job that is killed and retried finishes
the work. The store is SUNLIGHT_CLICKHOUSE (a server URL), or chdb in SUNLIGHT_DATA_DIR.
"""

from __future__ import annotations

import sys

from sinks.clickhouse import StoreError, connect, redact
from sinks.migrations import MigrationFailed, MigrationInterrupted, all_migrations, migrate
from streams.settings import Settings


def main() -> int:
    settings = Settings.from_env()
    where = redact(settings.clickhouse) if settings.clickhouse else f"chdb in {settings.data_dir}"
    try:
        client = connect(settings.clickhouse, settings.data_dir)
    except StoreError as exc:
        print(f"sunlight-migrate: {exc}", file=sys.stderr)
        return 2
    try:
        ran = migrate(client)
    except (MigrationInterrupted, MigrationFailed) as exc:
        print(f"sunlight-migrate: {exc}", file=sys.stderr)
        return 2
    finally:
        client.close()
    applied = ", ".join(f"{version:04d}" for version in ran) if ran else "none (already up to date)"
    newest = all_migrations()[-1].version
    print(f"sunlight-migrate: {where}: migrations applied now: {applied}; newest known: {newest:04d}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
