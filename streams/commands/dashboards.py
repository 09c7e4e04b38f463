"""`sunlight dashboards push|export`: the Grafana dashboards and datasources."""

from __future__ import annotations

import sys
from pathlib import Path

from streams.settings import Settings


def cmd_dashboards_push(args, settings: Settings) -> int:
    """Create or update the folder, both datasources and the dashboards in Grafana, writing only
    what differs (a second push makes GET requests only). Never prints the token or a password."""
    from dashboards.provision import (ClickHouseTarget, ProvisionError, clickhouse_datasource, connect,
                                      built_dashboards, prometheus_datasource, push, redact_url)

    try:
        # Never the pipeline's own SUNLIGHT_CLICKHOUSE: Grafana reads as a viewer's user, whom the
        # server's row policies limit, not as the pipeline's user.
        clickhouse_url = args.clickhouse_url
        if not clickhouse_url:
            raise ProvisionError("the ClickHouse server Grafana queries is not set: --clickhouse-url "
                                 "http://USER@HOST:8123/DATABASE (a viewer's user, not the pipeline's)")
        password = settings.grafana_clickhouse_password
        if args.clickhouse_user and password is None:
            # A URL's password belongs to the URL's user, never to the one that replaces it.
            raise ProvisionError(f"the password of ClickHouse user {args.clickhouse_user} is not set: "
                                 "SUNLIGHT_GRAFANA_CLICKHOUSE_PASSWORD")
        # The datasource user's password stays out of the command line (as `access add-user`'s does).
        target = ClickHouseTarget.from_url(clickhouse_url, user=args.clickhouse_user, password=password)
        datasources = [clickhouse_datasource(target), prometheus_datasource(args.prometheus_url)]
        api = connect(settings.grafana_url, settings.grafana_token)
        changes = push(api, settings.grafana_url, settings.grafana_token, built_dashboards(_zone(args, settings)),
                       datasources, update_secrets=args.update_secrets, dry_run=args.dry_run)
    except ProvisionError as exc:
        print(f"sunlight: {exc}", file=sys.stderr)
        return 2
    for change in changes:
        print(change.describe(), file=sys.stderr)
    written = [c for c in changes if c.action != "unchanged"]
    print(f"{'dry run, ' if args.dry_run else ''}Grafana at {redact_url(settings.grafana_url)}: "
          f"{len(written)} {'to write' if args.dry_run else 'written'}, {len(changes) - len(written)} unchanged",
          file=sys.stderr)
    return 0


def cmd_dashboards_export(args, settings: Settings) -> int:
    """The dashboards as JSON files for Grafana's file provisioning (and its provisioning YAML)."""
    from dashboards.provision import ProvisionError, built_dashboards, export, stale_files

    try:
        dashboards = built_dashboards(_zone(args, settings))
    except ProvisionError as exc:
        print(f"sunlight: {exc}", file=sys.stderr)
        return 2
    directory = Path(args.dir)
    # Both places checked before anything is written: a file where a directory is to be was a
    # traceback, or the dashboards written and then the provisioning refused.
    for option, place in (("DIR", directory), ("--provisioning", Path(args.provisioning) if args.provisioning else None)):
        if place is not None and place.exists() and not place.is_dir():
            print(f"sunlight: {option} {place}: a file is there, not a directory", file=sys.stderr)
            return 2
    try:
        written = export(directory, dashboards, Path(args.provisioning) if args.provisioning else None,
                         args.dashboards_path)
    except OSError as exc:
        print(f"sunlight: cannot write the dashboards to {directory}: {exc.strerror or exc}", file=sys.stderr)
        return 2
    print(f"wrote {len(written)} files: {len(dashboards)} dashboards in {directory}"
          + (f", provisioning YAML in {args.provisioning}" if args.provisioning else ""), file=sys.stderr)
    for path in stale_files(directory, dashboards):
        print(f"sunlight: {path} is no dashboard any more; a file provider would still load it: remove it",
              file=sys.stderr)
    return 0


def _zone(args, settings: Settings) -> str:
    """The catalog's timezone, which the dashboards count days and months in, as the case files do."""
    from streams.commands.common import local_zone

    return local_zone(args, settings).key
