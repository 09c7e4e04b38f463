"""The grafana-clickhouse-datasource plugin's query, as a dataquery of grafana-foundation-sdk.

The SDK (Grafana 11.x line) ships dataquery models for the core datasources only. `ClickHouseQuery`
is the plugin's SQL query model (``src/types/sql.ts`` of grafana/clickhouse-datasource,
`CHSqlQuery`) as an SDK `Dataquery`: it serialises with ``to_json`` and decodes with
``from_json``, and `register` makes the SDK's own decoder (``Panel.from_json``) return it for
every target of a panel whose datasource is of the plugin's type, so a dashboard's JSON
round-trips through the SDK model unchanged. `ClickHouseQueryBuilder` is its builder, what a
panel builder's ``with_target`` takes.

``format`` is the backend's ``sqlutil.FormatQueryOption`` (grafana-plugin-sdk-go), a number:
0 time series, 1 table, 2 logs, 3 traces. ``queryType`` is the editor's string for the same
choice (``table``, ``timeSeries``, ``logs``, ``traces``); ``editorType`` is ``sql`` for raw SQL.
"""

from __future__ import annotations

import typing

from grafana_foundation_sdk.cog import builder as cogbuilder
from grafana_foundation_sdk.cog import runtime as cogruntime
from grafana_foundation_sdk.cog import variants as cogvariants
from grafana_foundation_sdk.models import dashboard

PLUGIN_TYPE = "grafana-clickhouse-datasource"

# sqlutil.FormatQueryOption
FORMAT_TIME_SERIES = 0
FORMAT_TABLE = 1
FORMAT_LOGS = 2
FORMAT_TRACES = 3

# The editor's QueryType for each format.
QUERY_TYPE = {FORMAT_TIME_SERIES: "timeSeries", FORMAT_TABLE: "table", FORMAT_LOGS: "logs", FORMAT_TRACES: "traces"}

EDITOR_SQL = "sql"


class ClickHouseQuery(cogvariants.Dataquery):
    """One SQL query of the ClickHouse plugin."""

    raw_sql: str
    ref_id: str
    editor_type: str
    format_val: int
    query_type: typing.Optional[str]
    datasource: typing.Optional[dashboard.DataSourceRef]
    hide: typing.Optional[bool]
    plugin_version: typing.Optional[str]

    def __init__(self, raw_sql: str = "", ref_id: str = "", editor_type: str = EDITOR_SQL,
                 format_val: int = FORMAT_TABLE, query_type: typing.Optional[str] = None,
                 datasource: typing.Optional[dashboard.DataSourceRef] = None, hide: typing.Optional[bool] = None,
                 plugin_version: typing.Optional[str] = None) -> None:
        self.raw_sql = raw_sql
        self.ref_id = ref_id
        self.editor_type = editor_type
        self.format_val = format_val
        self.query_type = query_type
        self.datasource = datasource
        self.hide = hide
        self.plugin_version = plugin_version

    def to_json(self) -> dict[str, object]:
        payload: dict[str, object] = {
            "rawSql": self.raw_sql,
            "refId": self.ref_id,
            "editorType": self.editor_type,
            "format": self.format_val,
        }
        if self.query_type is not None:
            payload["queryType"] = self.query_type
        if self.datasource is not None:
            payload["datasource"] = self.datasource
        if self.hide is not None:
            payload["hide"] = self.hide
        if self.plugin_version is not None:
            payload["pluginVersion"] = self.plugin_version
        return payload

    @classmethod
    def from_json(cls, data: dict[str, typing.Any]) -> typing.Self:
        args: dict[str, typing.Any] = {}
        for key, arg in (("rawSql", "raw_sql"), ("refId", "ref_id"), ("editorType", "editor_type"),
                         ("format", "format_val"), ("queryType", "query_type"), ("hide", "hide"),
                         ("pluginVersion", "plugin_version")):
            if key in data:
                args[arg] = data[key]
        if "datasource" in data:
            args["datasource"] = dashboard.DataSourceRef.from_json(data["datasource"])
        return cls(**args)


class ClickHouseQueryBuilder(cogbuilder.Builder[ClickHouseQuery]):
    """Builds a `ClickHouseQuery`: ``ClickHouseQueryBuilder().raw_sql(sql).table()``."""

    _internal: ClickHouseQuery

    def __init__(self) -> None:
        self._internal = ClickHouseQuery()

    def build(self) -> ClickHouseQuery:
        return self._internal

    def raw_sql(self, raw_sql: str) -> typing.Self:
        self._internal.raw_sql = raw_sql
        return self

    def ref_id(self, ref_id: str) -> typing.Self:
        self._internal.ref_id = ref_id
        return self

    def datasource(self, ref: dashboard.DataSourceRef) -> typing.Self:
        self._internal.datasource = ref
        return self

    def format(self, format_val: int) -> typing.Self:
        if format_val not in QUERY_TYPE:
            raise ValueError(f"unknown ClickHouse query format {format_val!r}")
        self._internal.format_val = format_val
        self._internal.query_type = QUERY_TYPE[format_val]
        return self

    def table(self) -> typing.Self:
        return self.format(FORMAT_TABLE)

    def time_series(self) -> typing.Self:
        return self.format(FORMAT_TIME_SERIES)

    def hide(self, hide: bool) -> typing.Self:
        self._internal.hide = hide
        return self


def variant_config() -> cogruntime.DataqueryConfig:
    return cogruntime.DataqueryConfig(identifier=PLUGIN_TYPE, from_json_hook=ClickHouseQuery.from_json)


def register() -> None:
    """Make the SDK decode the plugin's targets as `ClickHouseQuery` (idempotent)."""
    cogruntime.register_dataquery_variant(variant_config())


register()
