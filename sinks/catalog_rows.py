"""Write the power catalog into the store (migration ``0006_catalog``), for the dashboards.

`write_catalog` copies the departments, the items and the codes people pick from (rules,
severities, categories, the departments' regions, with their Chinese titles) into ``catalog_departments``,
``catalog_items`` and ``catalog_codes``, and each item's nodes into ``catalog_nodes``
(migration ``0011_catalog_nodes``). Every row of one copy carries the same version (the
moment it is written, in microseconds), so the newest copy wins and writing the same catalog
again leaves what ``FINAL`` shows unchanged. A code that was in the store and is no longer in the
catalog gets a new row with ``in_catalog = 0`` (alerts may still name it).

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
                  region_names: Mapping[str, str] | None = None) -> int:
    """Write one copy of `catalog`; returns the version written."""
    version = version if version is not None else time.time_ns() // 1000
    at = datetime.fromtimestamp(version / 1e6, timezone.utc)
    departments = [[d.code, d.name, d.region or "", 1, version, at] for d in catalog.departments.values()]
    items = [[i.code, i.name, i.department, i.category.value, i.promised_days, i.legal_days, i.status, 1, version, at]
             for i in catalog.items.values()]
    codes = [[kind, code, title, 1, version, at]
             for kind, code, title in (*code_rows(), *region_rows(catalog, region_names or {}))]
    nodes = [[i.code, n.id, n.name, 1, version, at] for i in catalog.items.values() for n in i.nodes]
    for table, columns, rows, key in (("catalog_departments", DEPARTMENT_COLUMNS, departments, "code"),
                                      ("catalog_items", ITEM_COLUMNS, items, "code"),
                                      ("catalog_codes", CODE_COLUMNS, codes, "(kind, code)"),
                                      ("catalog_nodes", NODE_COLUMNS, nodes, "(item_code, node_id)")):
        if rows:
            client.insert(table, rows, column_names=columns)
        # What left the catalog: its newest row again, no longer in the catalog. The codes still in
        # it were just written at `version`, so FINAL's newest row of each is not older than it.
        others = ", ".join(c for c in columns if c not in ("in_catalog", "version", "written_at"))
        client.command(
            f"INSERT INTO {table} ({', '.join(columns)}) "
            f"SELECT {others}, 0, {version}, toDateTime64({version / 1e6:.6f}, 3, 'UTC') "
            f"FROM {table} FINAL WHERE in_catalog = 1 AND version < {version}")
    return version
