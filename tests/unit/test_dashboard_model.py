"""The dashboards as Grafana stores them: through the SDK's own model and back unchanged, and
checked for datasources, variables, grid, Chinese text and time macros; the ClickHouse query
model; and the expansion of variables and macros as Grafana and the ClickHouse plugin do it."""

from __future__ import annotations

import json
import re
from datetime import datetime, timezone

import pytest
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.cog.plugins import register_default_plugins
from grafana_foundation_sdk.models.dashboard import Dashboard, Panel

from dashboards import build, queries
from dashboards.clickhouse import FORMAT_TABLE, FORMAT_TIME_SERIES, ClickHouseQuery, ClickHouseQueryBuilder, register
from dashboards.macros import ALL, MacroError, TimeRange, Variable, dashboard_range, expand, panel_range, \
    variable_names

CJK = re.compile(r"[\u4e00-\u9fff]")
DASHBOARDS = build.all_dashboards()


def panels(model):
    for panel in model["panels"]:
        yield panel
        yield from panel.get("panels", [])


def test_the_five_dashboards_and_their_uids():
    assert set(DASHBOARDS) == {"sunlight-wall", "sunlight-inspector", "sunlight-department", "sunlight-health",
                               "sunlight-scores"}
    for uid, model in DASHBOARDS.items():
        assert model["uid"] == uid
        assert json.loads(json.dumps(model)) == model  # plain JSON values


@pytest.mark.parametrize("uid", sorted(DASHBOARDS))
def test_each_dashboard_round_trips_through_the_sdk_model(uid):
    register_default_plugins()  # the SDK's own dataqueries (Prometheus), and ours:
    register()
    exported = json.dumps(DASHBOARDS[uid], ensure_ascii=False)
    model = Dashboard.from_json(json.loads(exported))
    assert json.dumps(model, cls=JSONEncoder, ensure_ascii=False) == exported
    for panel in model.panels:
        for target in panel.targets or []:
            expected = ClickHouseQuery if panel.datasource.uid == build.CLICKHOUSE_UID else None
            if expected:
                assert isinstance(target, expected)
            else:
                assert type(target).__name__ == "Dataquery" and target.expr


def test_the_clickhouse_query_model():
    target = ClickHouseQueryBuilder().raw_sql("SELECT 1").ref_id("A").datasource(build.CLICKHOUSE).time_series().build()
    data = json.loads(json.dumps(target, cls=JSONEncoder))
    assert data == {"rawSql": "SELECT 1", "refId": "A", "editorType": "sql", "format": FORMAT_TIME_SERIES,
                    "queryType": "timeSeries",
                    "datasource": {"type": "grafana-clickhouse-datasource", "uid": "sunlight-clickhouse"}}
    assert ClickHouseQueryBuilder().table().build().to_json()["format"] == FORMAT_TABLE == 1
    back = ClickHouseQuery.from_json(data)
    assert json.loads(json.dumps(back, cls=JSONEncoder)) == data
    # The SDK's panel decoder picks our model by the panel's datasource type.
    panel = Panel.from_json({"type": "table", "datasource": data["datasource"], "targets": [data]})
    assert isinstance(panel.targets[0], ClickHouseQuery) and panel.targets[0].raw_sql == "SELECT 1"
    with pytest.raises(ValueError):
        ClickHouseQueryBuilder().format(7)


@pytest.mark.parametrize("uid", sorted(DASHBOARDS))
def test_datasources(uid):
    for panel in panels(DASHBOARDS[uid]):
        if panel["type"] == "row":
            continue
        ref = panel["datasource"]
        assert (ref["uid"], ref["type"]) in {(build.CLICKHOUSE_UID, "grafana-clickhouse-datasource"),
                                             (build.PROMETHEUS_UID, "prometheus")}
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            assert target["datasource"] == ref
            if ref["uid"] == build.CLICKHOUSE_UID:
                assert target["editorType"] == "sql" and target["format"] in (0, 1) and target["rawSql"]
                assert target["queryType"] == {0: "timeSeries", 1: "table"}[target["format"]]
            else:
                assert target["expr"].count("sunlight_") >= 1
    if uid == "sunlight-health":
        assert {p["datasource"]["uid"] for p in panels(DASHBOARDS[uid])} == {build.PROMETHEUS_UID}


def test_the_health_dashboard_reads_the_agreed_metric_names():
    exprs = " ".join(t["expr"] for p in panels(DASHBOARDS["sunlight-health"]) for t in p["targets"])
    for name in ("sunlight_events_processed_total", "sunlight_consumer_lag", "sunlight_sink_flush_seconds_bucket",
                 "sunlight_events_dead_lettered_total", "sunlight_due_timer_backlog", "sunlight_notices_total"):
        assert name in exprs


@pytest.mark.parametrize("uid", sorted(DASHBOARDS))
def test_variables_are_defined_and_come_from_the_catalog(uid):
    model = DASHBOARDS[uid]
    defined = {v["name"]: v for v in model["templating"].get("list", [])}
    used = set()
    for panel in panels(model):
        for target in panel.get("targets", []):
            text = target.get("rawSql") or target.get("expr")
            used |= variable_names(text)
            if "rawSql" in target:
                for name in variable_names(text):  # always written ${var:singlequote}
                    assert re.findall(r"\$\{" + name + r"(?::(\w+))?\}", text) and \
                        set(re.findall(r"\$\{" + name + r"(?::(\w+))?\}", text)) == {"singlequote"}, text
                    assert not re.search(r"\$" + name + r"\b", text)
        for override in panel.get("fieldConfig", {}).get("overrides", []):
            for prop in override["properties"]:
                if prop["id"] == "links":
                    for link in prop["value"]:
                        used |= set(re.findall(r"var-(\w+)=", link["url"]))
    assert used <= set(defined), f"undefined: {used - set(defined)}"
    assert set(defined) <= used, f"unused: {set(defined) - used}"
    for name, variable in defined.items():
        assert CJK.search(variable["label"]) and CJK.search(variable["description"])
        if variable["type"] == "query":
            assert variable["datasource"]["uid"] == build.CLICKHOUSE_UID
            assert re.search(r"FROM catalog_\w+ FINAL", variable["query"])
            # The department view's one department is of those the viewer may read (a head's own).
            own = name == "department" and not variable["multi"]
            assert variable["query"] == queries.VARIABLE_QUERIES["own_department" if own else name]
            if variable["multi"]:
                # All = every row for a department or region (also those the catalog does not
                # list), every option for a rule or severity.
                assert variable["includeAll"] and variable.get("allValue") == queries.all_value_of(name)
        else:
            assert (name, variable["type"]) == ("case_id", "textbox")


def test_the_drill_down_links_the_alert_list_to_its_case():
    model = DASHBOARDS["sunlight-inspector"]
    live = next(p for p in panels(model) if p["title"] == queries.LIVE_ALERTS.title)
    links = [prop["value"] for o in live["fieldConfig"]["overrides"] if o["matcher"]["options"] == "case_id"
             for prop in o["properties"] if prop["id"] == "links"]
    assert links and links[0][0]["url"].startswith("/d/sunlight-inspector/?var-case_id=${__value.raw}")
    case_panels = [p for p in panels(model) if "${case_id:singlequote}" in p["targets"][0].get("rawSql", "")]
    assert {p["title"] for p in case_panels} == {"办件概况", "办件事件时间线", "预警证据"}


@pytest.mark.parametrize("uid", sorted(DASHBOARDS))
def test_grid_has_no_overlaps_and_fits_24_columns(uid):
    cells = set()
    for panel in panels(DASHBOARDS[uid]):
        g = panel["gridPos"]
        assert g["w"] > 0 and g["h"] > 0 and g["x"] >= 0 and g["y"] >= 0 and g["x"] + g["w"] <= 24, panel["title"]
        mine = {(x, y) for x in range(g["x"], g["x"] + g["w"]) for y in range(g["y"], g["y"] + g["h"])}
        assert not cells & mine, f"{panel['title']} overlaps"
        cells |= mine
    ids = [p["id"] for p in panels(DASHBOARDS[uid])]
    assert len(ids) == len(set(ids))


@pytest.mark.parametrize("uid", sorted(DASHBOARDS))
def test_chinese_titles_labels_and_a_description_on_every_panel(uid):
    model = DASHBOARDS[uid]
    assert CJK.search(model["title"]) and CJK.search(model["description"])
    for panel in panels(model):
        assert CJK.search(panel["title"]), panel["title"]
        assert CJK.search(panel.get("description", "")), f"{panel['title']} has no Chinese description"
        # An empty range (the 1st of the month, the early morning), an empty list (no case overdue:
        # the all-clear), in the hall's language, not Grafana's "No data", which a table and a bar
        # chart show whatever the UI's language (found by black-box tests).
        assert CJK.search(panel["fieldConfig"]["defaults"].get("noValue", "")), panel["title"]
        for override in panel.get("fieldConfig", {}).get("overrides", []):
            for prop in override["properties"]:
                if prop["id"] == "displayName":
                    assert CJK.search(prop["value"])


@pytest.mark.parametrize("uid", sorted(DASHBOARDS))
def test_counts_are_shown_in_chinese_units(uid):
    """Found by a black-box test: the health panels' rates read "ops/s" (Grafana's ops unit); a
    count is said as 条, per second or per minute, through a custom suffix."""
    for panel in panels(DASHBOARDS[uid]):
        unit = panel.get("fieldConfig", {}).get("defaults", {}).get("unit")
        assert unit is None or unit in ("none", "s", "percentunit", "dateTimeAsIso") or (
            unit.startswith("suffix:") and CJK.search(unit)), f"{panel['title']}: unit {unit!r}"


def test_every_column_a_panel_shows_has_a_chinese_label():
    for panel in queries.PANELS.values():
        assert set(panel.columns) - {"time"} <= set(panel.labels), panel.name
        assert CJK.search(panel.title) and CJK.search(panel.description)


@pytest.mark.parametrize("uid", sorted(DASHBOARDS))
def test_no_now_in_the_sql_time_through_the_macros(uid):
    for panel in panels(DASHBOARDS[uid]):
        for target in panel.get("targets", []):
            sql = target.get("rawSql", "")
            assert not re.search(r"\bnow\s*\(", sql, re.I), panel["title"]
            assert not re.search(r"\btoday\s*\(", sql, re.I), panel["title"]
    for variable in DASHBOARDS[uid]["templating"].get("list", []):
        assert "now(" not in str(variable.get("query", ""))


def test_the_wall_is_large_and_dark():
    wall = DASHBOARDS["sunlight-wall"]
    stats = [p for p in wall["panels"] if p["type"] == "stat"]
    assert len(stats) >= 4
    assert all(p["options"]["text"]["valueSize"] >= 64 and p["options"]["graphMode"] == "none" for p in stats)
    assert any("theme=dark" in link["url"] for link in wall["links"])
    titles = {p["title"] for p in wall["panels"]}
    assert {"今日受理与办结", "各部门待处置红黄牌（实时）", "超期未办结办件清单", "按时办结率", "本月督办完成率",
            "近30日受理与办结趋势"} <= titles
    # The trend counts its 30 days back from the end of the range in SQL, on a label axis: a relative
    # time override would count from now, and Grafana ignores it on a day picked on the calendar.
    trend = next(p for p in wall["panels"] if p["title"] == "近30日受理与办结趋势")
    assert trend["type"] == "barchart" and trend["options"]["xField"] == "day"
    assert not [p["title"] for d in DASHBOARDS.values() for p in panels(d) if p.get("timeFrom")]


def test_a_stat_with_no_value_is_grey_not_an_all_clear_nor_an_alarm():
    """Found by a black-box test: with no row (the store unreachable, no case closed yet today) a
    stat tile takes its base threshold's colour: 待处置红黄牌 and 死信队列 read 无数据 on green, an
    all-clear, and the rates on red. No value is grey; a value takes the steps it always had."""
    graded = [p for d in DASHBOARDS.values() for p in panels(d) if p["type"] == "stat"
              and len(p["fieldConfig"]["defaults"]["thresholds"]["steps"]) > 1]
    assert {p["title"] for p in graded} >= {"按时办结率", "死信队列", "本部门待处置红黄牌"}
    for panel in graded:
        steps = panel["fieldConfig"]["defaults"]["thresholds"]["steps"]
        assert steps[0] == {"value": None, "color": build.NO_VALUE_COLOUR} and steps[1]["value"] == 0, panel["title"]
    rate = next(p for p in graded if p["title"] == "按时办结率")["fieldConfig"]["defaults"]["thresholds"]["steps"]
    assert [s["color"] for s in rate[1:]] == ["red", "orange", "green"]


# -- expansion as Grafana and the plugin do it --------------------------------------------------

NOW = datetime(2026, 6, 1, 4, 30, tzinfo=timezone.utc)  # 12:30 in Shanghai


def test_relative_ranges_in_the_dashboard_time_zone():
    today = dashboard_range("now/d", "now", NOW)
    assert today.start.isoformat() == "2026-06-01T00:00:00+08:00" and today.end == NOW
    month = dashboard_range("now/M", "now", NOW)
    assert month.start.isoformat() == "2026-06-01T00:00:00+08:00"
    yesterday = dashboard_range("now-1d/d", "now-1d/d", NOW)
    assert (yesterday.start.isoformat(), yesterday.end.isoformat(timespec="milliseconds")) == (
        "2026-05-31T00:00:00+08:00", "2026-05-31T23:59:59.999+08:00")
    thirty = panel_range(today, "30d")
    assert thirty.end == today.end and (thirty.end - thirty.start).days == 30
    picked = TimeRange(yesterday.start, yesterday.end)  # a day picked on the calendar: absolute
    assert panel_range(picked, "30d") == picked  # Grafana ignores the override there


def test_the_plugins_time_macros():
    rng = TimeRange(datetime(2026, 5, 1, tzinfo=timezone.utc), datetime(2026, 5, 2, tzinfo=timezone.utc))
    start, end = int(rng.start.timestamp()), int(rng.end.timestamp())
    assert expand("WHERE $__timeFilter(occurred_at)", rng) == \
        f"WHERE occurred_at >= toDateTime({start}) AND occurred_at <= toDateTime({end})"
    assert expand("$__fromTime, $__toTime, $__fromTime_ms", rng) == \
        f"toDateTime({start}), toDateTime({end}), fromUnixTimestamp64Milli({start * 1000})"
    assert expand("$__timeFilter_ms(t)", rng) == \
        f"t >= fromUnixTimestamp64Milli({start * 1000}) AND t <= fromUnixTimestamp64Milli({end * 1000})"
    assert expand("$__dateFilter(d)", rng) == "d >= toDate('2026-05-01') AND d <= toDate('2026-05-02')"
    # One day over 1000 points: 86.4 s, which Grafana rounds to a minute.
    assert expand("$__timeInterval(occurred_at)", rng) == \
        "toStartOfInterval(toDateTime(occurred_at), INTERVAL 60 second)"
    assert expand("$__interval_s", rng, min_interval="5m") == "300"
    assert expand("$__timeInterval(toStartOfDay(x, 'UTC'))", rng, max_data_points=24) == \
        "toStartOfInterval(toDateTime(toStartOfDay(x, 'UTC')), INTERVAL 3600 second)"
    with pytest.raises(MacroError):
        expand("$__timeFilter()", rng)
    with pytest.raises(MacroError):
        expand("$__nosuchmacro(x)", rng)


def test_variables_formatted_as_grafana_does():
    rng = dashboard_range("now-1h", "now", NOW)
    department = Variable("department", [ALL], ["SCJG", "ZJJ"])
    assert expand("department IN (${department:singlequote})", rng, {"department": department}) == \
        "department IN ('SCJG','ZJJ')"
    assert expand("x IN (${d:singlequote})", rng, {"d": Variable("d", ["O'Brien", "a"])}) == "x IN ('O\\'Brien','a')"
    assert expand("x = ${d:singlequote}", rng, {"d": Variable("d", "SCJG")}) == "x = 'SCJG'"
    assert expand("x = '$d' AND y = [[d]]", rng, {"d": Variable("d", "SCJG")}) == "x = 'SCJG' AND y = SCJG"
    custom = Variable("d", [ALL], ["SCJG"], all_value="department != ''")
    assert expand("WHERE ${d:singlequote}", rng, {"d": custom}) == "WHERE department != ''"  # pasted unformatted
    assert expand("$__from-$__to", rng) == f"{int(rng.start.timestamp() * 1000)}-{int(rng.end.timestamp() * 1000)}"
    with pytest.raises(MacroError):
        expand("${nobody:singlequote}", rng, {})


def test_every_reason_a_message_is_refused_for_has_its_chinese_title():
    """The DLQ panels showed reason codes (invalid_json, unknown_node) to people who read Chinese.
    Every reason the code can give a dead letter, found in its source, has a title."""
    from pathlib import Path

    from alerts.letters import REASON_TITLE

    root = Path(__file__).resolve().parents[2]
    given = set()
    # The reason given to a letter where it is made: a refusal's first argument (`streams.steps.RefusedEvent`
    # too), or the reason argument of dead_letter / Letter / make_letter (after the record, topic and partition).
    pattern = re.compile(r'(?:InvalidEvent|RefusedEvent|Refused|dead_letter|Letter|make_letter)\((?:[^()"]|\([^()]*\)|f?"[^"]*"(?=\s*,))*?'
                         r'"([a-z]+(?:_[a-z0-9]+)*)"(?:\s*[,)]| if \w+ else "([a-z_]+)")'
                         r'|reason = "([a-z_]+)"(?: if .* else "([a-z_]+)")?'
                         r'|^(?:UNREADABLE_ROW|CASE_INCOMPLETE) = "([a-z_]+)"', re.MULTILINE)
    for path in [*root.joinpath("alerts").rglob("*.py"), *root.joinpath("streams").rglob("*.py")]:
        if "console" in path.parts:
            continue  # the console's own refusals (a link, a form) are pages, not dead letters
        for match in pattern.finditer(path.read_text(encoding="utf-8")):
            given.update(g for g in match.groups() if g)
    given -= {"supplement"}  # a notice's kind, not a reason
    assert {"invalid_json", "invalid_utf8", "empty", "too_large", "schema", "unknown_item", "unknown_node",
            "case_too_large", "conflicting_duplicate", "store_refused", "item_left_catalog", "unreadable_row",
            "case_incomplete", "stale_version", "unknown_department"} <= given
    assert given - set(REASON_TITLE) == set()
    assert all(CJK.search(title) for title in REASON_TITLE.values())


def test_every_dead_letter_reason_says_what_to_do_in_chinese():
    """The DLQ panels' 说明 was the system's English detail alone: the people at the screens were
    not told what to do. Every reason with a title has advice, in Chinese, on both panels."""
    from alerts.letters import REASON_ADVICE, REASON_TITLE

    assert set(REASON_ADVICE) == set(REASON_TITLE)
    assert all(CJK.search(advice) for advice in REASON_ADVICE.values())
    for panel in (queries.DLQ_LATEST, queries.DLQ_BY_REASON):
        assert "advice" in panel.columns and CJK.search(panel.labels["advice"])
        assert all(advice in panel.sql for advice in REASON_ADVICE.values())


def test_a_picture_shows_times_in_the_dashboard_s_time_zone():
    """Found by a black-box test: the pictures drew a UTC column's times as they came from the
    store (承诺时限 2026-03-30 16:00), where Grafana, in the dashboard's Asia/Shanghai, shows 03-31 00:00."""
    from datetime import date, datetime, timezone

    from dashboards.render import Result, in_zone

    naive_utc = datetime(2026, 3, 30, 16, 0)
    aware = datetime(2026, 3, 30, 16, 0, tzinfo=timezone.utc)
    moved = in_zone({1: Result(["deadline", "day", "n"], [[naive_utc, date(2026, 3, 30), 3], [aware, None, 4]])},
                    "Asia/Shanghai")[1]
    assert [[str(v) for v in row] for row in moved.rows] == [
        ["2026-03-31 00:00:00+08:00", "2026-03-30", "3"], ["2026-03-31 00:00:00+08:00", "None", "4"]]
    assert all(m["timezone"] == "Asia/Shanghai" for m in DASHBOARDS.values())


def test_a_cjk_font_installed_after_matplotlib_cached_its_font_list_is_found(monkeypatch):
    """Found on a new machine: `.ci/run` installed the CJK font after matplotlib had cached its font
    list, and the dashboards' pictures refused to render ("no CJK font found"). A font missing from
    the cached list is looked for among the system's fonts before giving up."""
    from matplotlib import font_manager

    from dashboards.render import CJK_FONTS, cjk_font

    manager = font_manager.fontManager
    if not any(font.name in CJK_FONTS for font in manager.ttflist):
        cjk_font()  # installed, not yet listed: found, or no CJK font on this machine at all
    files = {font.fname for font in manager.ttflist if font.name in CJK_FONTS}
    cached = [font for font in manager.ttflist if font.fname not in files]  # as cached before the install
    monkeypatch.setattr(manager, "ttflist", cached)
    assert cjk_font() in CJK_FONTS


def test_a_count_of_red_or_yellow_cards_is_green_at_none_and_grey_without_a_value():
    """Found by a black-box test: the wall's 待处置红黄牌 gave its red and yellow counts fixed
    colours, so an all-clear showed a large 0 on a solid red tile. A count of cards is red (or
    yellow) from one up, green at none, grey with no value at all (the store unreachable), in
    Grafana and in the pictures drawn of it."""
    from dashboards.render import GRAFANA_COLOURS, _by_thresholds, _overrides

    found = 0
    for model in DASHBOARDS.values():
        for panel in panels(model):
            for column, own in _overrides(panel).items():
                if panel["type"] != "stat" or column not in ("red", "yellow"):
                    continue
                found += 1
                assert own["color"] == "thresholds", (panel["title"], column)
                thresholds = own["thresholds"]
                assert _by_thresholds(thresholds, None) == build.NO_VALUE_COLOUR
                assert _by_thresholds(thresholds, 0) == GRAFANA_COLOURS["green"]
                assert _by_thresholds(thresholds, 3) == GRAFANA_COLOURS[column]
    assert found >= 4  # the wall's and the department's red and yellow counts


def test_an_empty_cell_of_a_table_stays_empty():
    """Found by review: a table's no-value text is shown in its empty cells too (an open case's
    办结时间, a card not withdrawn's 撤销原因 read 暂无记录): every table says it only when it has no
    rows; each of its fields has no no-value text of its own."""
    tables = [p for model in DASHBOARDS.values() for p in panels(model) if p["type"] == "table"]
    assert tables
    for panel in tables:
        assert panel["fieldConfig"]["defaults"]["noValue"] == build.EMPTY_LIST
        assert {"matcher": {"id": "byRegexp", "options": ".*"}, "properties": [{"id": "noValue", "value": ""}]} \
            in panel["fieldConfig"]["overrides"], panel["title"]
