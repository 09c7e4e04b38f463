"""`sunlight serve` and `sunlight users add|list`: the console and its users."""

from __future__ import annotations

import asyncio
import os
import sys

from streams.commands.common import catalog_for, catalog_path_for
from streams.settings import Settings


def cmd_serve(args, settings: Settings) -> int:
    """The console (docs/console.md): on the embedded defaults with the pipeline in this process."""
    from streams.console.app import serve

    catalog = catalog_path_for(args, settings, "serve needs a catalog")
    try:
        return asyncio.run(serve(settings, catalog, host=args.host))
    except KeyboardInterrupt:
        return 0


def cmd_users_add(args, settings: Settings) -> int:
    """A console user: an inspector, or a department's head (who sees that department only)."""
    import getpass

    from streams.console.app import users_path
    from streams.console.auth import add_user

    if args.role == "head" and not args.department:
        raise SystemExit("sunlight: a head (部门负责人) needs --department CODE")
    if args.department:
        from sinks.scope import Scope

        Scope.of([args.department]).resolve(catalog_for(args, settings, "a head's department is checked "
                                                                          "against the catalog"))
    args.name = args.name.strip()  # as the sign-in form reads it
    password = os.environ.get("SUNLIGHT_NEW_USER_PASSWORD") or getpass.getpass(f"password for {args.name}: ")
    if not password:
        raise SystemExit("sunlight: a password is needed (SUNLIGHT_NEW_USER_PASSWORD or the prompt)")
    path = users_path(settings)
    new = add_user(path, args.name, args.role, args.department, password)
    print(f"user {args.name}: {args.role}" + (f" of {args.department}" if args.department else "")
          + (" added to " if new else " replaced in ") + str(path), file=sys.stderr)
    return 0


def cmd_users_list(args, settings: Settings) -> int:
    from streams.console.app import users_path
    from streams.console.auth import read_users

    path = users_path(settings)
    users = read_users(path)
    if not users:
        print(f"no users in {path} (sunlight users add NAME --role inspector|head)")
    for name, record in sorted(users.items()):
        print(f"{name}\t{record['role']}\t{record.get('department') or ''}")
    return 0
