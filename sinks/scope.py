"""What a user may see: a scope of departments and regions, enforced where the SQL is built.

An inspector of one district, or the staff of one department, see only their own
cases and alerts. A `Scope` names departments and regions (several of each are
allowed; a row is visible when it matches any of them). It is resolved against
the power catalog, which is the authority on which departments and regions exist:
a code the catalog does not know is refused with `UnknownScope`, never silently
read as "nothing" or "everything". A region also covers every department the
catalog places in it, so alerts whose events carried no region code are not lost
from their region's view.

Every read query Sunlight runs for a user goes through `ScopedQuery`, which adds
the scope's condition to the WHERE clause as bound parameters (never pasted into
the SQL text). Queries that are not run for a user (restoring the pipeline's
state from the store) say so by passing `Scope.everything()`.

On the embedded store (chdb) this filter is the only boundary: whoever can open the
data directory can read it all. On a ClickHouse server the same scopes become users,
roles and row policies (`sinks.access`), so the boundary holds even for SQL typed
by hand.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable

from alerts.catalog import Catalog


class UnknownScope(ValueError):
    """A scope names a department or region the catalog does not know."""


@dataclass(frozen=True)
class Scope:
    departments: frozenset[str] = frozenset()
    regions: frozenset[str] = frozenset()
    unrestricted: bool = False

    @classmethod
    def everything(cls) -> "Scope":
        """No restriction: operators and the pipeline itself."""
        return cls(unrestricted=True)

    @classmethod
    def of(cls, departments: Iterable[str] = (), regions: Iterable[str] = ()) -> "Scope":
        departments, regions = frozenset(departments), frozenset(regions)
        if not departments and not regions:
            raise UnknownScope("a scope needs at least one department or region")
        return cls(departments=departments, regions=regions)

    def resolve(self, catalog: Catalog) -> "Scope":
        """Check every code against the catalog and add the departments of each region."""
        if self.unrestricted:
            return self
        known_departments = {d.code: d for d in catalog.departments.values()}
        known_regions = {d.region for d in catalog.departments.values() if d.region}
        unknown = sorted(self.departments - known_departments.keys())
        if unknown:
            raise UnknownScope(f"unknown department(s) {', '.join(unknown)}: the catalog has "
                               f"{', '.join(sorted(known_departments)) or 'none'}")
        unknown = sorted(self.regions - known_regions)
        if unknown:
            raise UnknownScope(f"unknown region(s) {', '.join(unknown)}: the catalog's departments are in "
                               f"{', '.join(sorted(known_regions)) or 'no region'}")
        in_regions = {code for code, d in known_departments.items() if d.region in self.regions}
        return Scope(departments=self.departments | in_regions, regions=self.regions)

    def holds(self, department: str | None) -> bool:
        """Whether a row of `department` is in this (resolved) scope by its department."""
        return self.unrestricted or department in self.departments

    def describe(self) -> str:
        if self.unrestricted:
            return "everything"
        parts = [f"department {d}" for d in sorted(self.departments)]
        parts += [f"region {r}" for r in sorted(self.regions)]
        return ", ".join(parts)


def scope_condition(scope: Scope, department_column: str = "department",
                    region_column: str | None = "region") -> tuple[str, dict[str, Any]]:
    """The SQL condition a row must meet to be in scope, and its bound parameters."""
    if scope.unrestricted:
        return "1", {}
    terms = ["{scope_departments:Array(String)} != [] AND "
             f"{department_column} IN {{scope_departments:Array(String)}}"]
    if region_column is not None:
        terms.append("{scope_regions:Array(String)} != [] AND "
                     f"ifNull({region_column}, '') IN {{scope_regions:Array(String)}}")
    condition = "(" + " OR ".join(f"({t})" for t in terms) + ")"
    return condition, {"scope_departments": sorted(scope.departments), "scope_regions": sorted(scope.regions)}


@dataclass(frozen=True)
class ScopedQuery:
    """A SELECT over one table with the scope's condition always in its WHERE clause."""
    columns: str
    table: str
    where: str = ""
    tail: str = ""  # GROUP BY / ORDER BY / LIMIT
    department_column: str = "department"
    region_column: str | None = "region"

    def sql(self, scope: Scope) -> tuple[str, dict[str, Any]]:
        if not isinstance(scope, Scope):
            raise TypeError(f"a query for a user needs a Scope, got {scope!r}")
        condition, parameters = scope_condition(scope, self.department_column, self.region_column)
        where = f"({self.where}) AND {condition}" if self.where else condition
        return f"SELECT {self.columns} FROM {self.table} WHERE {where} {self.tail}".strip(), parameters

    def run(self, client, scope: Scope, parameters: dict[str, Any] | None = None):
        """The rows, with the scope's parameters and `parameters` (those of `where`) bound."""
        sql, bound = self.sql(scope)
        return client.query(sql, parameters={**bound, **(parameters or {})}).result_rows
