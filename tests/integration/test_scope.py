"""Scoped access: one department cannot see another's alerts through the CLI."""

from __future__ import annotations

import os
import subprocess
import sys
from collections import Counter

import orjson
import pytest
import yaml



def export(data_dir, *args, catalog=None):
    env = {**os.environ, "SUNLIGHT_DATA_DIR": str(data_dir)}
    for name in ("SUNLIGHT_KAFKA", "SUNLIGHT_CLICKHOUSE", "SUNLIGHT_CATALOG"):
        env.pop(name, None)
    command = [sys.executable, "-m", "streams.cli", "alerts", "export", "--all", *args]
    if catalog is not None:
        command += ["--catalog", str(catalog)]
    done = subprocess.run(command, env=env, capture_output=True, timeout=120)
    return done.returncode, [orjson.loads(line) for line in done.stdout.splitlines()], done.stderr.decode()


@pytest.fixture(scope="module")
def stored(baseline, tmp_path_factory):
    """The baseline's store, and its catalog with one department moved to a district of its own."""
    alerts, _, catalog, _ = baseline
    assert alerts, "the baseline raised no alerts to scope"
    raw = yaml.safe_load(catalog.read_text(encoding="utf-8"))
    by_department = Counter(a["department"] for a in alerts)
    moved = by_department.most_common()[-1][0]
    for department in raw["departments"]:
        if department["code"] == moved:
            department["region"] = "320205"
    regional = tmp_path_factory.mktemp("scope") / "catalog.yaml"
    regional.write_text(yaml.safe_dump(raw, allow_unicode=True), encoding="utf-8")
    return catalog.parent / "data", regional, alerts, moved


def test_a_department_sees_its_own_alerts_and_no_others(stored):
    data_dir, catalog, alerts, _ = stored
    departments = sorted({a["department"] for a in alerts})
    assert len(departments) >= 3
    code, everything, _ = export(data_dir)
    assert code == 0 and len(everything) == len(alerts)
    seen = []
    for department in departments:
        code, mine, err = export(data_dir, "--department", department, catalog=catalog)
        assert code == 0, err
        assert mine, f"{department} sees none of its alerts"
        assert {a["department"] for a in mine} == {department}
        assert sorted(a["alert_id"] for a in mine) == sorted(a["alert_id"] for a in everything
                                                                if a["department"] == department)
        seen += mine
    assert sorted(a["alert_id"] for a in seen) == sorted(a["alert_id"] for a in everything)


def test_several_departments_and_a_region(stored):
    data_dir, catalog, alerts, moved = stored
    first, second = sorted({a["department"] for a in alerts} - {moved})[:2]
    code, both, err = export(data_dir, "--department", first, "--department", second, catalog=catalog)
    assert code == 0, err
    assert {a["department"] for a in both} == {first, second}
    # The district's alerts are those of the department the catalog places there (the events
    # themselves carry the city's region code, so the department is what puts them in the district).
    code, district, err = export(data_dir, "--region", "320205", catalog=catalog)
    assert code == 0, err
    assert district and {a["department"] for a in district} == {moved}


@pytest.mark.parametrize("args, message", [
    (["--department", "NO-SUCH-DEPT"], "unknown department(s) NO-SUCH-DEPT"),
    (["--region", "999999"], "unknown region(s) 999999"),
    (["--department", "SCJG' OR '1'='1"], "unknown department(s)"),
])
def test_an_unknown_scope_is_refused_loudly(stored, args, message):
    data_dir, catalog, _, _ = stored
    code, printed, err = export(data_dir, *args, catalog=catalog)
    assert code == 2
    assert printed == []
    assert message in err


def test_a_scope_needs_the_catalog_to_be_checked(stored):
    data_dir, _, _, _ = stored
    code, printed, err = export(data_dir, "--department", "SCJG")
    assert code != 0 and printed == []
    assert "--catalog" in err


def test_the_queries_module_cannot_be_called_without_a_scope(stored):
    from sinks.clickhouse import connect
    from sinks.queries import alerts_by_rule_and_department, export_alerts
    from sinks.scope import Scope

    data_dir, _, _, moved = stored
    client = connect(None, data_dir)
    try:
        with pytest.raises(TypeError):
            list(export_alerts(client, None))
        counts = alerts_by_rule_and_department(client, Scope.of(departments=[moved]))
        assert counts and {department for _, department, _ in counts} == {moved}
    finally:
        client.close()


def test_a_case_another_department_registered_a_step_of_is_told_as_a_part_to_it_and_whole_to_its_own(tmp_path):
    """Found by a black-box test: SCJG's case, one step registered by ZJJ. ZJJ's file of it, built
    from that step alone, said 未受理, no alert and no deadline running, though the case was accepted
    and overdue; SCJG's left out the step its own card counted from, without a word."""
    from pathlib import Path

    contract = Path(__file__).resolve().parents[1] / "data" / "contract" / "catalog.example.yaml"
    events = tmp_path / "events.jsonl"
    events.write_bytes(b"".join(orjson.dumps({
        "event_id": event_id, "case_id": "SC-M", "item_code": "320200-XK-SCJG-0001", "type": kind,
        "occurred_at": t, "recorded_at": t, "channel": "online", "region": "320200", "department": department,
        **({"node": "undertake"} if kind == "node_completed" else {})}) + b"\n" for event_id, kind, t, department in (
        ("M1", "accepted", "2026-11-20T09:00:00+08:00", "SCJG"),
        ("M2", "node_completed", "2026-11-21T09:00:00+08:00", "ZJJ"))))
    env = {**os.environ, "SUNLIGHT_DATA_DIR": str(tmp_path / "data")}
    for name in ("SUNLIGHT_KAFKA", "SUNLIGHT_CLICKHOUSE", "SUNLIGHT_CATALOG"):
        env.pop(name, None)

    def sunlight(*args):
        done = subprocess.run([sys.executable, "-m", "streams.cli", *args, "--catalog", str(contract)], env=env,
                              capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr[-3000:]
        return done.stdout

    sunlight("replay", str(events), "--now", "2026-12-07T15:00:00+08:00")
    whole = sunlight("cases", "show", "SC-M")
    assert "状态：在办" in whole and "办理超时" in whole and "查看范围" not in whole
    part = sunlight("cases", "show", "SC-M", "--department", "ZJJ")
    assert "M2" in part and "M1" not in part, part  # its own step only
    assert "未受理" not in part and "尚未受理" not in part and "状态：由主办部门办理" in part, part
    assert "只有本部门登记的 1 个事件（共 2 个）" in part and "预警：\n  以主办部门的记录为准" in part, part
    own = sunlight("cases", "show", "SC-M", "--department", "SCJG")
    assert "M1" in own and "M2" not in own and "状态：在办" in own and "办理超时" in own, own
    assert "另有 1 个事件由其他部门登记" in own, own
    ticket = sunlight("tickets", "show", "SC-M/overdue", "--department", "SCJG")
    assert "另有 1 个事件由其他部门登记" in ticket and "环节办结" not in ticket, ticket
