"""`sunlight score` over a replayed generated city reproduces a month computed by hand.

The expected numbers are computed here, independently of `alerts.scoring`: straight from the
generated events, the catalog, the input file, the alerts the pipeline raised and the tickets
as they stand, with plain Python and the Wuxi rules' formulas as written (both attachments).
"""

from __future__ import annotations

import asyncio
import io
from collections import defaultdict
from datetime import datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path
from zoneinfo import ZoneInfo

import orjson
import pytest
import yaml

from alerts.scenario import generate
from alerts.tickets import INSPECTORS
from sinks.clickhouse import connect
from sinks.queries import stored_tickets
from sinks.scope import Scope
from streams import cli
from streams.runtime import produce, replay_clock, running_pipeline, topic_ends, wait_until_processed
from tests.integration.conftest import NOW, as_messages, pipeline_settings, write_inputs

TZ = ZoneInfo("Asia/Shanghai")
MONTH = "2026-04"
START, END = datetime(2026, 4, 1, tzinfo=TZ), datetime(2026, 5, 1, tzinfo=TZ)
PUSH_DEADLINE = datetime(2026, 5, 6, tzinfo=TZ)  # by the 5th of the next month, 24:00

# The rules' requirements (attachment 1 and 2, 权力公开), written out again here: 公式流程 read as
# 公示流程, the two image requirements met by the flowchart image (`流程图`).
LICENSING_LIKE = ["承诺时限", "联系电话", "受理条件", "法律法规", "服务指南", "申请材料", "公示流程", "实施主体名称",
                  "流程图", "流程图"]
REQUIRED = {"licensing": LICENSING_LIKE, "non_licensing_approval": LICENSING_LIKE,
            "penalty": ["监督电话", "办公地点", "法律法规", "处罚依据", "处罚标准", "公示流程", "实施主体名称", "流程图", "流程图"],
            "levy": ["监督电话", "办公地点", "法律法规", "公示流程", "实施主体名称", "流程图", "流程图"]}
for category in ("confirmation", "adjudication", "inspection", "benefit", "reward", "other"):
    REQUIRED[category] = LICENSING_LIKE

INPUTS = {
    "month": MONTH,
    "departments": {
        "SCJG": {"spot_checks": 3, "unapplied_changes": 1,
                 "complaints": [{"points": 2, "reason": "群众投诉：窗口推诿"}]},
        "JTJ": {"spot_checks": 1},
        "WJW": {"unapplied_changes": 6},  # 10 − 12: floored at 0
    },
    "regions": {
        "320211": {"coverage": {"in_scope": 30, "vertical": 4, "online": 24}, "spot_checks": 2},
        "320213": {"complaints": [{"points": 1.5, "reason": "暗访：未按时办结"}]},
    },
}
# A department with items and no case: scored, not ranked.
IDLE = {"code": "KJJ", "name": "市科学技术局", "region": "320200"}
IDLE_ITEM = {"code": "320200-XK-KJJ-0001", "name": "科技许可", "category": "licensing", "department": "KJJ",
             "promised_days": 10, "nodes": [{"id": "accept", "name": "受理", "completed_by": "accepted"},
                                            {"id": "close", "name": "办结", "completed_by": "closed"}],
             "public": {"承诺时限": "10个工作日", "联系电话": "0510-1"}}


def local(text: str) -> datetime:
    return datetime.fromisoformat(text).astimezone(TZ)


@pytest.fixture(scope="module")
def month(tmp_path_factory):
    """The city replayed, one bad import event (to the DLQ), replies and an acceptance on some of
    April's tickets; then the stored alerts and tickets. Dead letters that are not a department's
    pushed data (a bad online event, a refused ticket action that names JTJ) and a `rated` event
    without a rating must not count."""
    directory = tmp_path_factory.mktemp("scoring")
    scenario = generate(cases=300, violation_rate=0.05, seed=11, now=NOW)
    scenario.catalog["departments"].append(IDLE)
    scenario.catalog["items"].append(IDLE_ITEM)
    catalog, _ = write_inputs(directory, scenario)
    zjj_item = next(i["code"] for i in scenario.catalog["items"] if i["department"] == "ZJJ")
    bad = {"event_id": "BAD-1", "case_id": "IZJJ-BAD", "item_code": zjj_item, "type": "approved",
           "occurred_at": "2026-04-10T10:00:00+08:00", "recorded_at": "2026-05-03T10:00:00+08:00",
           "department": "ZJJ", "region": "320200", "channel": "import"}
    # Not the pushed data: an online-channel event and a ticket action, both refused, both of JTJ
    # (a self-built department) and dated in April.
    jtj_item = next(i["code"] for i in scenario.catalog["items"] if i["department"] == "JTJ")
    bad_online = {**bad, "event_id": "BAD-ONLINE", "case_id": "CJTJ-BAD", "item_code": jtj_item,
                  "department": "JTJ", "channel": "online", "recorded_at": "2026-04-10T10:00:00+08:00"}
    bad_action = {"action_id": "BAD-ACTION", "ticket_id": "CJTJ-BAD/late", "version": 1, "actor": "承办人",
                  "department": "JTJ", "kind": "shrug", "text": "", "at": "2026-04-10T10:00:00+08:00",
                  "occurred_at": "2026-04-10T10:00:00+08:00", "channel": "import"}
    # A `rated` event without a rating (the contract allows it): not satisfied, not dissatisfied.
    unrated = next(e for e in scenario.events if e["event_id"] == "C11000106-06")
    assert unrated["department"] == "STJ" and unrated["attrs"] == {"rating": "satisfied"}
    unrated["attrs"] = {}
    # The other STJ case rated in April is rated again, dissatisfied, an hour later: one rating per
    # case (一事一评), its first; the second is not counted (before, both were).
    rated = next(e for e in scenario.events if e["type"] == "rated" and e["department"] == "STJ"
                 and e is not unrated and START <= local(e["occurred_at"]) < END - timedelta(hours=1))
    later = (datetime.fromisoformat(rated["occurred_at"]) + timedelta(hours=1)).isoformat()
    scenario.events.append({**rated, "event_id": f"{rated['event_id']}-again", "attrs": {"rating": "dissatisfied"},
                            "occurred_at": later, "recorded_at": later})
    # A case of another department rated in March is rated again in April: April's is a repeat
    # (一事一评: one rating per case; before, each month counted the case's first of the month).
    city = {d["code"] for d in scenario.catalog["departments"] if d["region"] == "320200"}  # scored by department
    again = next(e for e in scenario.events if e["type"] == "rated" and e["department"] in city - {"STJ", "ZJJ"}
                 and START <= local(e["occurred_at"]) < END and e["attrs"].get("rating") == "satisfied")
    march = (START - timedelta(days=2)).isoformat()
    scenario.events.append({**again, "event_id": f"{again['event_id']}-march", "attrs": {"rating": "dissatisfied"},
                            "occurred_at": march, "recorded_at": march})
    # Records that are no case (only rated; withdrawn, then rated): their ratings are no case's and
    # do not count (before, they weighed on the department's 满意率; found by an independent scorer).
    stj_item = next(i["code"] for i in scenario.catalog["items"] if i["department"] == "STJ")
    for number, types in enumerate((["rated"], ["withdrawn", "rated"])):
        for step, kind in enumerate(types):
            moment = (START + timedelta(days=3, hours=step)).isoformat()
            scenario.events.append({"event_id": f"NOCASE-{number}-{step}", "case_id": f"NOCASE-{number}",
                                    "item_code": stj_item, "type": kind, "occurred_at": moment,
                                    "recorded_at": moment, "channel": "online", "department": "STJ",
                                    "region": "320200",
                                    **({"attrs": {"rating": "dissatisfied"}} if kind == "rated" else {})})
    # A self-built department's push that states no channel is pushed data, as the backfill rule
    # reads it (before, not counted: a department pushing only such events had no data, full points).
    scenario.events.append({"event_id": "ZJJ-NOCHANNEL-1", "case_id": "IZJJ-NOCHANNEL", "item_code": zjj_item,
                            "type": "accepted", "occurred_at": "2026-04-20T10:00:00+08:00",
                            "recorded_at": "2026-05-05T09:00:00+08:00", "department": "ZJJ", "region": "320200"})
    settings = pipeline_settings(directory / "data")
    acted = {}

    async def act(running, actions):
        messages = [(a["ticket_id"].encode(), orjson.dumps(a)) for a in actions]
        await produce(running.bootstrap, settings.ticket_actions_topic, messages)
        await wait_until_processed(running.pipeline, await topic_ends(running), timeout=600)

    async def run():
        async with running_pipeline(settings, catalog, clock=replay_clock(NOW)) as running:
            await produce(running.bootstrap, settings.case_events_topic,
                          as_messages(scenario.events) + [(b"IZJJ-BAD", orjson.dumps(bad)),
                                                          (b"CJTJ-BAD", orjson.dumps(bad_online))])
            await produce(running.bootstrap, settings.ticket_actions_topic,
                          [(b"CJTJ-BAD/late", orjson.dumps(bad_action))])
            await wait_until_processed(running.pipeline, await topic_ends(running), timeout=600)
            with running.pipeline.writer.lock:
                tickets = stored_tickets(running.client, Scope.everything(), status="open")
            april = [t for t in tickets if START <= local(t["opened_at"]) < END]
            march = [t for t in tickets if local(t["opened_at"]) < START]
            by_department = defaultdict(list)
            for t in april:
                by_department[t["department"]].append(t)
            chosen = [ts[0] for _, ts in sorted(by_department.items())[:3]] + march[:1]
            acted["replied"] = [t["ticket_id"] for t in chosen]
            await act(running, [{"action_id": f"reply-{n}", "ticket_id": t["ticket_id"], "version": t["version"],
                                 "actor": "承办人", "department": t["department"], "kind": "reply",
                                 "text": "已整改", "at": NOW.isoformat()} for n, t in enumerate(chosen)])
            accepted = chosen[0]
            acted["accepted"] = accepted["ticket_id"]
            await act(running, [{"action_id": "accept-0", "ticket_id": accepted["ticket_id"],
                                 "version": accepted["version"] + 1, "actor": "监察员", "department": INSPECTORS,
                                 "kind": "accept", "text": "同意", "at": NOW.isoformat()}])
            with running.pipeline.writer.lock:
                return stored_tickets(running.client, Scope.everything())

    tickets = asyncio.run(run())
    client = connect(None, directory / "data")
    try:
        alerts = list(cli_alerts(client))
        letters = client.query("SELECT department, topic FROM dead_letters FINAL").result_rows
    finally:
        client.close()
    assert sorted(letters) == [("JTJ", settings.case_events_topic), ("JTJ", settings.ticket_actions_topic),
                               ("ZJJ", settings.case_events_topic)], letters
    statuses = {t["ticket_id"]: t["status"] for t in tickets}
    assert statuses[acted["accepted"]] == "closed" and [statuses[t] for t in acted["replied"][1:]] == ["replied"] * 3
    inputs = directory / "inputs.yaml"
    inputs.write_text(yaml.safe_dump(INPUTS, allow_unicode=True), encoding="utf-8")
    return scenario, catalog, inputs, alerts, tickets, directory


def cli_alerts(client):
    from sinks.queries import export_alerts

    return export_alerts(client, Scope.everything(), include_withdrawn=True)


def points(value) -> Decimal:
    return Decimal(str(value)).quantize(Decimal("0.01"), ROUND_HALF_UP)


def clamp(value: float, top: float) -> float:
    return max(0.0, min(top, value))


def expected(scenario, alerts, tickets, by: str) -> dict[str, dict]:
    """The month by hand: {subject: {"total": Decimal, "parts": {title: Decimal}, "cases": n}}."""
    catalog = scenario.catalog
    department_region = {d["code"]: d["region"] for d in catalog["departments"]}
    items = {i["code"]: i for i in catalog["items"]}
    if by == "department":
        subjects = {d["code"]: {d["code"]} for d in catalog["departments"] if d["region"] == "320200"}
    else:
        subjects = {r: {d for d, region in department_region.items() if region == r}
                    for r in set(department_region.values()) - {"320200"}}
    events = scenario.events
    accepted = {}
    for e in events:
        if e["type"] == "accepted" and START <= local(e["occurred_at"]) < END:
            accepted[e["case_id"]] = e
    standing = {a["case_id"] for a in alerts if a["status"] != "withdrawn" and a["severity"] in ("yellow", "red")}
    out = {}
    for subject, members in subjects.items():
        cases = [e for e in accepted.values() if e["department"] in members]
        mine = [i for i in items.values() if i["department"] in members]
        supplied = INPUTS["departments" if by == "department" else "regions"].get(subject, {})
        parts = {}
        if by == "region":
            coverage = supplied.get("coverage")
            parts["部门覆盖"] = (10 * coverage["online"] / (coverage["in_scope"] - coverage["vertical"])
                             if coverage else 10)
        n = sum(1 for i in mine for f in REQUIRED[i["category"]] if not i.get("public", {}).get(f))
        parts["权力公开"] = clamp(10 - 0.1 * n, 10)
        active = [i for i in mine if i.get("status", "active") != "suspended"]
        with_cases = {e["item_code"] for e in cases} & {i["code"] for i in active}
        m = supplied.get("spot_checks", 0)
        # 本部分基础得分 = 30 × rate, over the items that are to run; then − 0.2 × m.
        parts["权力运行"] = clamp(30 * len(with_cases) / len(active) - 0.2 * m, 30) if active \
            else clamp(30 - 0.2 * m, 30)
        if by == "department":
            self_built = any(d["code"] in members and d.get("self_built") for d in catalog["departments"])
            deduction = 0
            if self_built:
                pushed = [e for e in events if e["department"] in members and e.get("channel") in ("import", None)
                          and START <= local(e["occurred_at"]) < END]
                if pushed and max(local(e["recorded_at"]) for e in pushed) >= PUSH_DEADLINE:
                    deduction += 5
                if "ZJJ" in members:  # the bad import event went to the DLQ
                    deduction += 5
            parts["数据对接"] = 10 - deduction
        parts["权力库维护"] = clamp(10 - 2 * supplied.get("unapplied_changes", 0), 10)
        irregular = sum(1 for e in cases if e["case_id"] in standing)
        cap = 20 if by == "region" else 10
        parts["操作规范"] = clamp(10 * (1 - irregular / len(cases)), cap) if cases else 10  # no data: as perfect
        if by == "department":
            first_rating: dict[str, tuple] = {}  # one per case (一事一评): its first, in the month it was given
            handled = {e["case_id"] for e in scenario.events if e["type"] not in ("rated", "withdrawn")}
            for e in events:
                if e["type"] == "rated" and e["department"] in members and e.get("attrs", {}).get("rating") \
                        and e["case_id"] in handled:
                    moment = (local(e["occurred_at"]), e["event_id"])
                    if e["case_id"] not in first_rating or moment < first_rating[e["case_id"]][0]:
                        first_rating[e["case_id"]] = (moment, e["attrs"]["rating"])
            ratings = [rating for (moment, _), rating in first_rating.values() if START <= moment < END]
            good = sum(1 for r in ratings if r in ("satisfied", "basically_satisfied"))
            parts["行政相对人评议"] = 10 * good / len(ratings) if ratings else 10
        month_tickets = [t for t in tickets if t["department"] in members and t["status"] != "withdrawn"
                         and START <= local(t["opened_at"]) < END]
        done = sum(1 for t in month_tickets if t["status"] in ("replied", "closed"))
        factor = 5 if by == "region" else 10
        parts["督办及落实"] = clamp(factor * done / len(month_tickets), 10) if month_tickets else factor
        parts["其他"] = clamp(10 - sum(c["points"] for c in supplied.get("complaints", [])), 10)
        rounded = {k: points(v) for k, v in parts.items()}
        out[subject] = {"total": sum(rounded.values()), "parts": rounded, "cases": len(cases)}
    return out


def score(monkeypatch, capfdbinary, directory, catalog, *args) -> tuple[bytes, str]:
    monkeypatch.setenv("SUNLIGHT_DATA_DIR", str(directory / "data"))
    monkeypatch.delenv("SUNLIGHT_CLICKHOUSE", raising=False)
    capfdbinary.readouterr()
    code = cli.main(["score", "--month", MONTH, "--catalog", str(catalog), *args])
    out, err = capfdbinary.readouterr()
    assert code == 0, err.decode()
    return out, err.decode()


@pytest.mark.parametrize("by", ["department", "region"])
def test_sunlight_score_reproduces_the_month_by_hand(month, by, monkeypatch, capfdbinary):
    scenario, catalog, inputs, alerts, tickets, directory = month
    want = expected(scenario, alerts, tickets, by)
    out, err = score(monkeypatch, capfdbinary, directory, catalog, "--by", by, "--inputs", str(inputs),
                     "--format", "jsonl")
    rows = [orjson.loads(line) for line in out.splitlines()]
    got = {r[by]: {"total": points(r["total"]), "cases": r["cases"],
                   "parts": {p["title"]: points(p["points"]) for p in r["parts"].values()}} for r in rows}
    assert got == want
    # The month exercises every part: deductions and full marks, no data, late push, DLQ.
    ranked = sorted((s for s in want if want[s]["cases"]), key=lambda s: (-want[s]["total"], s))
    assert [r[by] for r in rows if r["ranked"]] == ranked
    previous, expected_rank = None, 0
    for position, row in enumerate(r for r in rows if r["ranked"]):
        if row["total"] != previous:
            expected_rank, previous = position + 1, row["total"]
        assert row["rank"] == expected_rank
    unranked = [r[by] for r in rows if not r["ranked"]]
    assert unranked == sorted(s for s in want if not want[s]["cases"])
    parts = {r[by]: r["parts"] for r in rows}
    if by == "department":
        assert unranked == ["KJJ"]
        assert parts["JTJ"]["data_exchange"]["inputs"]["late"] is True
        assert parts["ZJJ"]["data_exchange"]["inputs"]["late"] is False
        pushed = [e for e in scenario.events if e["department"] == "ZJJ" and e.get("channel") in ("import", None)
                  and e["type"] != "rated" and START <= local(e["occurred_at"]) < END]  # a rating is no push
        assert any("channel" not in e for e in pushed)
        assert parts["ZJJ"]["data_exchange"]["inputs"]["import_events"] == len(pushed)
        assert parts["ZJJ"]["data_exchange"]["inputs"]["dead_letters"] == 1
        # pushed by 05-03 as its event states (received months later, when the test ran): not late
        assert parts["ZJJ"]["data_exchange"]["inputs"]["dead_letters_late"] == 0
        assert parts["ZJJ"]["data_exchange"]["points"] == 5 and parts["JTJ"]["data_exchange"]["points"] == 5
        assert parts["JTJ"]["data_exchange"]["inputs"]["dead_letters"] == 0  # neither refused message was a push
        assert parts["STJ"]["rating"]["inputs"]["ratings"] == 1 and parts["STJ"]["rating"]["points"] == 10
        assert parts["STJ"]["rating"]["inputs"]["not_counted"] == 1
        assert parts["STJ"]["rating"]["inputs"]["repeated"] == 1
        rated_in_march = next(e for e in scenario.events if e["event_id"].endswith("-march"))
        assert parts[rated_in_march["department"]]["rating"]["inputs"]["repeated"] >= 1
        assert parts["SCJG"]["data_exchange"]["note"].startswith("不适用")
        assert parts["WJW"]["maintenance"]["points"] == 0
        assert parts["KJJ"]["conformity"]["no_data"] is True
        assert any(p["supervision"]["inputs"]["tickets_done"] for p in parts.values())
        assert all(p["publication"]["inputs"]["missing"] for p in parts.values())
        assert "附件1" not in err  # notes only about the attachment scored
    else:
        assert parts["320211"]["coverage"]["points"] == pytest.approx(10 * 24 / 26, abs=0.005)
        assert parts["320213"]["coverage"]["no_data"] is True
        assert "操作规范: worth 20 points" in err and "督办及落实: worth 10 points" in err
        assert all(p["conformity"]["points"] <= 10 for p in parts.values())  # 10× as written


def test_formats_and_a_recomputation_on_record(month, monkeypatch, capfdbinary, tmp_path):
    scenario, catalog, inputs, alerts, tickets, directory = month
    want = expected(scenario, alerts, tickets, "department")
    out, _ = score(monkeypatch, capfdbinary, directory, catalog, "--inputs", str(inputs))
    table = out.decode()
    assert table.splitlines()[0] == "2026年4月 市级部门绩效考核（附件2） 得分"
    assert "名次" in table and "权力公开（10分）" in table and "当月无办件、不参与排名的部门（单独列出）" in table
    first = next(line for line in table.splitlines()[2:] if line.startswith("1 "))
    top = max(want, key=lambda s: (want[s]["total"], s) if want[s]["cases"] else (Decimal(-1), s))
    assert top in first and str(want[top]["total"]).rstrip("0").rstrip(".") in first
    out, _ = score(monkeypatch, capfdbinary, directory, catalog, "--inputs", str(inputs), "--format", "csv")
    import csv
    rows = list(csv.reader(io.StringIO(out.decode())))
    assert rows[0][:4] == ["名次", "部门编码", "部门名称", "办件数"] and rows[0][-3:] == ["总分", "说明", "计分状态"]
    assert {r[1]: Decimal(r[-3]) for r in rows[1:]} == {s: w["total"] for s, w in want.items()}
    workbook = tmp_path / "通报.xlsx"
    score(monkeypatch, capfdbinary, directory, catalog, "--inputs", str(inputs), "--format", "xlsx",
          "--output", str(workbook))
    from openpyxl import load_workbook

    sheet = load_workbook(workbook).active
    values = [list(r) for r in sheet.iter_rows(values_only=True)]
    assert values[0][0] == "2026年4月 市级部门绩效考核（附件2） 得分"
    assert values[1][:3] == ["名次", "部门编码", "部门名称"]
    separator = next(i for i, r in enumerate(values) if r[0] == "当月无办件、不参与排名的部门（单独列出）")
    assert [r[1] for r in values[separator + 1:]] == ["KJJ"]
    assert {r[1]: points(r[-2]) for r in values[2:separator] if r[1]} == \
        {s: w["total"] for s, w in want.items() if w["cases"]}
    # Every run above stored the month again as a new version; the latest holds the scores, and
    # each names the catalog it was computed under (scored again after an edit, a month can differ).
    import hashlib
    import pathlib

    client = connect(None, directory / "data")
    try:
        versions = client.query("SELECT DISTINCT version FROM scores WHERE month = '2026-04' AND "
                                "attachment = 'department' ORDER BY version").result_rows
        catalogs = client.query("SELECT DISTINCT catalog_sha256 FROM scores WHERE month = '2026-04'").result_rows
        latest = client.query("SELECT subject, total, ranked, department, region FROM scores FINAL WHERE "
                              "month = '2026-04' AND attachment = 'department' AND version = "
                              "(SELECT max(version) FROM scores WHERE month = '2026-04' AND attachment = 'department')"
                              ).result_rows
    finally:
        client.close()
    assert len(versions) >= 3 and [v[0] for v in versions] == list(range(1, len(versions) + 1))
    assert catalogs == [(hashlib.sha256(pathlib.Path(catalog).read_bytes()).hexdigest(),)]
    assert {s: points(t) for s, t, _, _, _ in latest} == {s: w["total"] for s, w in want.items()}
    assert {s: (d, r) for s, _, _, d, r in latest}["KJJ"] == ("KJJ", "320200")


@pytest.mark.parametrize("inputs, message", [
    ({"month": "2026-05"}, "the file is for month '2026-05', but 2026-04 is being scored"),
    ({"month": MONTH, "departments": {"NOPE": {"spot_checks": 1}}}, "inputs: department NOPE: unknown department"),
    ({"month": MONTH, "departments": {"SCJG": {"spot_checks": -1}}}, "spot_checks: must be a whole number from 0"),
])
def test_a_bad_input_file_is_refused_clearly(month, inputs, message, monkeypatch, capfdbinary, tmp_path):
    scenario, catalog, _, _, _, directory = month
    path = tmp_path / "inputs.yaml"
    path.write_text(yaml.safe_dump(inputs, allow_unicode=True), encoding="utf-8")
    monkeypatch.setenv("SUNLIGHT_DATA_DIR", str(directory / "data"))
    with pytest.raises(SystemExit) as refused:
        cli.main(["score", "--month", MONTH, "--catalog", str(catalog), "--inputs", str(path)])
    assert message in str(refused.value)



@pytest.mark.parametrize("options, message", [
    (["--rulebook", "{tmp}/missing.yaml"], "rulebook {tmp}/missing.yaml does not exist"),
    (["--rulebook", "{tmp}/bad.yaml"], "rulebook {tmp}/bad.yaml is not valid YAML"),
    # Before: tracebacks (IsADirectoryError, a YAML reader error), or "--catalog FILE or
    # SUNLIGHT_CATALOG" for a catalog that was given, misspelt.
    (["--rulebook", "{tmp}"], "rulebook {tmp} is a directory, not a file"),
    (["--inputs", "{tmp}"], "inputs {tmp} is a directory, not a file"),
    (["--inputs", "{tmp}/gbk.yaml"], "inputs {tmp}/gbk.yaml is not UTF-8 text (line 2: byte 0xb2); save it as UTF-8"),
    (["--catalog", "{tmp}/catalog.yml"], "--catalog {tmp}/catalog.yml: no such file"),
    (["--format", "xlsx"], "--format xlsx needs --output"),
    (["--format", "csv", "--output", "{tmp}/missing/2026-04.csv"], "not a file in an existing directory"),
    (["--output", "{tmp}"], "not a file in an existing directory"),
    # Found by a black-box test: each of these stored a version of the month before.
    (["--output", "/proc/sunlight-2026-04.csv"], "--output /proc/sunlight-2026-04.csv: cannot be written"),
    (["--inputs", "{tmp}/twice.yaml"], "inputs {tmp}/twice.yaml is not valid YAML: 'SCJG' is written twice in one "
                                       "mapping (lines 3 and 5)"),
    (["--month", "2099-01"], "month 2099-01 has not begun"),
])
def test_a_refused_command_stores_nothing(month, options, message, monkeypatch, capfdbinary, tmp_path):
    """Options are checked before the store is opened: a refused command (xlsx without --output,
    an output that cannot be written) writes no new version of the month."""
    scenario, catalog, inputs, _, _, directory = month

    def versions():
        client = connect(None, directory / "data")
        try:
            return client.query("SELECT count(), max(version) FROM scores").result_rows[0]
        finally:
            client.close()

    before = versions()
    (tmp_path / "bad.yaml").write_text("field_groups: [unclosed\n", encoding="utf-8")
    (tmp_path / "gbk.yaml").write_bytes(f"month: '{MONTH}'\n# 部门\n".encode("gbk"))
    (tmp_path / "twice.yaml").write_text(f"month: '{MONTH}'\ndepartments:\n  SCJG: {{complaints: [{{points: 3, "
                                         f"reason: 投诉}}]}}\n  JTJ: {{spot_checks: 1}}\n  SCJG: {{spot_checks: 1}}\n",
                                         encoding="utf-8")
    monkeypatch.setenv("SUNLIGHT_DATA_DIR", str(directory / "data"))
    monkeypatch.delenv("SUNLIGHT_CLICKHOUSE", raising=False)
    with pytest.raises(SystemExit) as refused:
        cli.main(["score", "--month", MONTH, "--catalog", str(catalog), "--inputs", str(inputs),
                  *(o.format(tmp=tmp_path) for o in options)])
    assert message.format(tmp=tmp_path) in str(refused.value)
    assert versions() == before
    assert not Path("/proc/sunlight-2026-04.csv").exists()


def test_the_city_s_rulebook_setting_is_the_score_s_default(month, monkeypatch, tmp_path):
    """SUNLIGHT_RULEBOOK (the rulebook the workers name the regions by) is read when --rulebook is
    not given: a missing one is refused, as --rulebook's is, and nothing is stored."""
    scenario, catalog, inputs, _, _, directory = month
    monkeypatch.setenv("SUNLIGHT_DATA_DIR", str(directory / "data"))
    monkeypatch.delenv("SUNLIGHT_CLICKHOUSE", raising=False)
    monkeypatch.setenv("SUNLIGHT_RULEBOOK", str(tmp_path / "missing.yaml"))
    with pytest.raises(SystemExit) as refused:
        cli.main(["score", "--month", MONTH, "--catalog", str(catalog), "--inputs", str(inputs)])
    assert f"rulebook {tmp_path}/missing.yaml does not exist" in str(refused.value)


def test_a_month_is_not_scored_over_a_data_directory_without_a_store(month, monkeypatch, tmp_path):
    # Found by a black-box test: a mistyped SUNLIGHT_DATA_DIR made an empty store and published
    # every department unranked.
    scenario, catalog, inputs, _, _, _ = month
    monkeypatch.setenv("SUNLIGHT_DATA_DIR", str(tmp_path / "typo"))
    monkeypatch.delenv("SUNLIGHT_CLICKHOUSE", raising=False)
    with pytest.raises(SystemExit) as refused:
        cli.main(["score", "--month", MONTH, "--catalog", str(catalog), "--output", str(tmp_path / "s.csv")])
    assert f"no store in {tmp_path / 'typo'}" in str(refused.value)
    assert not (tmp_path / "typo").exists() and not (tmp_path / "s.csv").exists()
