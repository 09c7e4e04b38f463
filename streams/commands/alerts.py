"""`sunlight alerts export`: the stored alerts as JSON lines."""

from __future__ import annotations

import logging

from streams.commands.common import scope_and_local_time, print_jsonl, require_store
from streams.settings import Settings

log = logging.getLogger("sunlight")


def cmd_export(args, settings: Settings) -> int:
    require_store(settings)
    from sinks.clickhouse import connect
    from sinks.migrations import migrate
    from sinks.queries import export_alerts

    # Times in the catalog's zone, as the alerts topic carries them (before, Asia/Shanghai whatever
    # the catalog said: a Rome decision late in the evening read as the next day; found by a
    # black-box test on the road-traffic log).
    scope, local = scope_and_local_time(args, settings)
    log.info("exporting alerts of %s", scope.describe())
    client = connect(settings.clickhouse, settings.data_dir)
    try:
        migrate(client)
        print_jsonl(export_alerts(client, scope, include_withdrawn=args.all, tz=local))
    finally:
        client.close()
    return 0
