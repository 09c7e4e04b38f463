"""Write the power catalog into the store (migration ``0006_catalog``), for the dashboards.

`write_catalog` copies the departments, the items and the codes people pick from (rules,
severities, categories, the departments' regions, with their Chinese titles) into ``catalog_departments``,
``catalog_items`` and ``catalog_codes``, and each item's nodes into ``catalog_nodes``
(migration ``0011_catalog_nodes``). Every row of one copy carries the same version (the
moment it is written, in microseconds), so the newest copy wins. The same catalog again is not
written: what ``FINAL`` shows would not change, and every start of a pipeline or command would
pay eight statements for nothing. A code that was in the store and is no longer in the catalog
gets a new row with ``in_catalog = 0`` (alerts may still name it).

It is called where the pipeline starts (`streams.runtime.running_pipeline`, after `migrate`) and
where the catalog file is reloaded (`streams.catalog_reload.CatalogReload.run`).
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from datetime import datetime, timezone

from alerts.catalog import Catalog, Category
from alerts.model import RULE_TITLE, SEVERITY_TITLE, Rule, Severity

CATEGORY_TITLE: dict[str, str] = {
    Category.LICENSING: "行政许可",
    Category.NON_LICENSING_APPROVAL: "非行政许可审批",
    Category.PENALTY: "行政处罚",
    Category.ENFORCEMENT: "行政强制",
    Category.LEVY: "行政征收",
    Category.CONFIRMATION: "行政确认",
    Category.ADJUDICATION: "行政裁决",
    Category.INSPECTION: "行政检查",
    Category.BENEFIT: "行政给付",
    Category.EXPROPRIATION: "行政征用",
    Category.REWARD: "行政奖励",
    Category.OTHER: "其他行政权力",
}

DEPARTMENT_COLUMNS = ["code", "name", "region", "in_catalog", "version", "written_at"]
ITEM_COLUMNS = ["code", "name", "department", "category", "promised_days", "legal_days", "status", "in_catalog",
                "version", "written_at"]
CODE_COLUMNS = ["kind", "code", "title", "in_catalog", "version", "written_at"]
NODE_COLUMNS = ["item_code", "node_id", "name", "in_catalog", "version", "written_at"]


def code_rows() -> list[tuple[str, str, str]]:
    """(kind, code, Chinese title) of the rules, severities and categories."""
    rows = [("rule", rule.value, RULE_TITLE[rule]) for rule in Rule]
    rows += [("severity", severity.value, SEVERITY_TITLE[severity]) for severity in Severity
             if severity in SEVERITY_TITLE]
    rows += [("category", category.value, CATEGORY_TITLE[category]) for category in Category]
    return rows


def region_rows(catalog: Catalog, region_names: Mapping[str, str]) -> list[tuple[str, str, str]]:
    """(`region`, code, name) of the regions the catalog's departments are in: the name from
    `region_names` (the scoring rulebook's, as the console and the scores name them), else the
    code itself, so that the dashboards' 区域 can say 滨湖区 where they said 320211."""
    codes = sorted({d.region for d in catalog.departments.values() if d.region})
    return [("region", code, region_names.get(code, code)) for code in codes]


def write_catalog(client, catalog: Catalog, version: int | None = None,
                  region_names: Mapping[str, str] | None = None) -> int | None:
    """Write one copy of `catalog`; returns the version written, None when the store holds this
    catalog already (every row in it, none more)."""
    version = version if version is not None else time.time_ns() // 1000
    at = datetime.fromtimestamp(version / 1e6, timezone.utc)
    departments = [[d.code, d.name, d.region or "", 1, version, at] for d in catalog.departments.values()]
    items = [[i.code, i.name, i.department, i.category.value, i.promised_days, i.legal_days, i.status, 1, version, at]
             for i in catalog.items.values()]
    codes = [[kind, code, title, 1, version, at]
             for kind, code, title in (*code_rows(), *region_rows(catalog, region_names or {}))]
    nodes = [[i.code, n.id, n.name, 1, version, at] for i in catalog.items.values() for n in i.nodes]
    tables = (("catalog_departments", DEPARTMENT_COLUMNS, departments), ("catalog_items", ITEM_COLUMNS, items),
              ("catalog_codes", CODE_COLUMNS, codes), ("catalog_nodes", NODE_COLUMNS, nodes))
    if all(_held(client, table, columns) == _said(rows, columns) for table, columns, rows in tables):
        return None
    for table, columns, rows in tables:
        if rows:
            client.insert(table, rows, column_names=columns)
        # What left the catalog: its newest row again, no longer in the catalog. The codes still in
        # it were just written at `version`, so FINAL's newest row of each is not older than it.
        others = ", ".join(_named(columns))
        client.command(
            f"INSERT INTO {table} ({', '.join(columns)}) "
            f"SELECT {others}, 0, {version}, toDateTime64({version / 1e6:.6f}, 3, 'UTC') "
            f"FROM {table} FINAL WHERE in_catalog = 1 AND version < {version}")
    return version


def _named(columns: list[str]) -> list[str]:
    """What a row says (the columns before `in_catalog`, `version` and `written_at`)."""
    return columns[:columns.index("in_catalog")]


def _said(rows: list[list], columns: list[str]) -> set[tuple]:
    """What `rows` of a copy say (`_named`), as `_held` reads them back."""
    named = len(_named(columns))
    return {tuple(row[:named]) for row in rows}


def _held(client, table: str, columns: list[str]) -> set[tuple]:
    """What the store's newest copy of `table` says is in the catalog."""
    return set(client.query(f"SELECT {', '.join(_named(columns))} FROM {table} FINAL WHERE in_catalog = 1").result_rows)
