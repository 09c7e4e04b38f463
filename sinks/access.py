"""Access control on a ClickHouse server: a role and row policies per department and region.

The same scopes as `sinks.scope`, enforced by the server itself, so that a user who
types SQL by hand in Grafana or clickhouse-client still sees only their own rows:

* ``sunlight_department_<code>``: rows whose department is the code;
* ``sunlight_region_<code>``: rows whose region is the code, or whose department the
  catalog places in that region;
* ``sunlight_all``: every row, for operators and the pipeline's own user. ClickHouse
  shows a user nothing of a table that has row policies unless one of them admits the
  user, so the pipeline's user needs this role once the policies exist.

Each role gets SELECT on the scoped tables and one permissive row policy per table (a user with
several roles sees the union), and SELECT on the catalog's copy, which has no policies: the
catalog is public. Users are created with a SHA-256 hash of their password,
so the password itself is never sent in a statement (nor logged or printed).

Embedded chdb has no access control (``CREATE USER`` is refused), so this applies only
when ``SUNLIGHT_CLICKHOUSE`` points at a server.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from alerts.catalog import Catalog

SCOPED_TABLES = ("case_events", "cases", "case_reopenings", "alerts", "tickets", "notices", "dead_letters", "scores")
# The catalog's copy in the store (migration 0006): public, as the catalog itself is; every role
# reads all of it (the dashboards' variables and names come from it).
PUBLIC_TABLES = ("catalog_departments", "catalog_items", "catalog_codes", "catalog_nodes")
ALL_ROLE = "sunlight_all"


def identifier(name: str) -> str:
    return "`" + name.replace("\\", "\\\\").replace("`", "\\`") + "`"


def literal(value: str) -> str:
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def department_role(code: str) -> str:
    return f"sunlight_department_{code}"


def region_role(code: str) -> str:
    return f"sunlight_region_{code}"


@dataclass(frozen=True)
class RoleGrant:
    role: str
    condition: str  # the row policy's USING expression


def roles_for(catalog: Catalog) -> list[RoleGrant]:
    """One role per department and per region of the catalog, and the unrestricted role."""
    grants = [RoleGrant(ALL_ROLE, "1")]
    regions: dict[str, list[str]] = {}
    for department in sorted(catalog.departments.values(), key=lambda d: d.code):
        grants.append(RoleGrant(department_role(department.code), f"department = {literal(department.code)}"))
        if department.region:
            regions.setdefault(department.region, []).append(department.code)
    for region, codes in sorted(regions.items()):
        members = ", ".join(literal(c) for c in codes)
        grants.append(RoleGrant(region_role(region),
                                f"ifNull(region, '') = {literal(region)} OR department IN ({members})"))
    return grants


def policy_statements(catalog: Catalog, database: str) -> list[str]:
    """CREATE ROLE / GRANT / CREATE ROW POLICY statements, safe to run again (OR REPLACE)."""
    statements = []
    for grant in roles_for(catalog):
        role = identifier(grant.role)
        statements.append(f"CREATE ROLE IF NOT EXISTS {role}")
        for table in SCOPED_TABLES:
            target = f"{identifier(database)}.{identifier(table)}"
            statements.append(f"GRANT SELECT ON {target} TO {role}")
            statements.append(f"CREATE ROW POLICY OR REPLACE {identifier(grant.role + '_' + table)} ON {target} "
                              f"AS permissive FOR SELECT USING {grant.condition} TO {role}")
        for table in PUBLIC_TABLES:
            statements.append(f"GRANT SELECT ON {identifier(database)}.{identifier(table)} TO {role}")
    return statements


def user_statements(user: str, password: str, roles: list[str]) -> list[str]:
    """Create (or update) a user with the given roles as its default roles."""
    if not roles:
        raise ValueError("a user needs at least one role")
    digest = hashlib.sha256(password.encode("utf-8")).hexdigest()
    name = identifier(user)
    role_list = ", ".join(identifier(r) for r in roles)
    return [
        f"CREATE USER IF NOT EXISTS {name} IDENTIFIED WITH sha256_hash BY {literal(digest)}",
        f"ALTER USER {name} IDENTIFIED WITH sha256_hash BY {literal(digest)}",
        f"GRANT {role_list} TO {name}",
        f"SET DEFAULT ROLE {role_list} TO {name}",
    ]
