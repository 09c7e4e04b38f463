"""`sunlight access apply|add-user`: roles, row policies and users on a ClickHouse server."""

from __future__ import annotations

import sys

from streams.commands.common import catalog_for
from streams.settings import Settings


def _server_client(settings: Settings):
    """A client of the ClickHouse server; access control does not exist in embedded chdb."""
    from sinks.clickhouse import connect

    if settings.embedded_store:
        raise SystemExit("sunlight: users and row policies need a ClickHouse server (SUNLIGHT_CLICKHOUSE); "
                         "the embedded store (chdb) has no access control")
    return connect(settings.clickhouse, settings.data_dir)


def cmd_access_apply(args, settings: Settings) -> int:
    """Create a role and row policies per department and region of the catalog (idempotent)."""
    from sinks.access import policy_statements

    catalog = catalog_for(args, settings, "roles are made for the catalog's departments and regions")
    if args.print:  # for the database `apply` would use: that of SUNLIGHT_CLICKHOUSE, read without connecting
        from urllib.parse import parse_qs, unquote, urlsplit

        # As clickhouse-connect reads a DSN: the path's first segment, else ?database=.
        url = urlsplit(settings.clickhouse or "")
        url_database = (unquote(url.path[1:].split("/")[0]) or parse_qs(url.query).get("database", [""])[0]
                        if settings.clickhouse else "")
        for statement in policy_statements(catalog, args.database or url_database or "default"):
            print(statement + ";")
        return 0
    client = _server_client(settings)
    try:
        statements = policy_statements(catalog, args.database or client.database or "default")
        for statement in statements:
            client.command(statement)
    finally:
        client.close()
    print(f"applied {len(statements)} statements: roles and row policies for {len(catalog.departments)} "
          f"departments", file=sys.stderr)
    return 0


def cmd_access_add_user(args, settings: Settings) -> int:
    """Create a user who sees one or more departments and regions (the password is never shown)."""
    import getpass
    import os

    from sinks.access import ALL_ROLE, department_role, region_role, user_statements
    from sinks.scope import Scope

    catalog = catalog_for(args, settings, "a user's scope is checked against the catalog")
    if args.everything:
        roles = [ALL_ROLE]
    else:
        scope = Scope.of(args.department, args.region)
        scope.resolve(catalog)  # refuses unknown codes
        roles = [department_role(d) for d in sorted(scope.departments)] + [region_role(r) for r in sorted(scope.regions)]
    password = os.environ.get("SUNLIGHT_NEW_USER_PASSWORD") or getpass.getpass(f"password for {args.user}: ")
    if not password:
        raise SystemExit("sunlight: a password is needed (SUNLIGHT_NEW_USER_PASSWORD or the prompt)")
    client = _server_client(settings)
    try:
        for statement in user_statements(args.user, password, roles):
            client.command(statement)
    finally:
        client.close()
    print(f"user {args.user}: roles {', '.join(roles)}", file=sys.stderr)
    return 0
