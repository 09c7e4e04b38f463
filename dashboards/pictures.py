"""The pictures in docs/dashboards.md: each dashboard drawn with its panels' results on a replayed city.

    python -m dashboards.pictures [OUT_DIR]      # default docs/images/dashboards

Generates a city (`alerts.scenario.generate`), replays it through the real pipeline into a
temporary embedded store, answers one supervision ticket, then runs every ClickHouse panel's SQL
the way Grafana and the plugin run it (`dashboards.macros`: multi-value variables at *All*, the
department view at the department with the most tickets in work, the inspector's case at the
newest live alert's case; each dashboard over its own default range, today or this month or the
last 30 days or last month, "now" being the end of the replayed history's last day; the monthly
scores of that month and the one before computed first) and draws each dashboard with
`dashboards.render`.

Prometheus cannot run here either: a panel of the health dashboard shows, for each of its
queries, the current value of the metric that query reads, as this process's registry holds it
after the replay (a total, not a rate); the picture says so in the panel.
"""

from __future__ import annotations

import asyncio
import dataclasses
import re
import sys
import tempfile
from collections import Counter
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Mapping
from zoneinfo import ZoneInfo

from dashboards import queries as q
from dashboards.build import all_dashboards, clickhouse_targets
from dashboards.macros import ALL, TimeRange, Variable, dashboard_range, expand, panel_range
from dashboards.render import Result, panels_of, render

TZ = ZoneInfo("Asia/Shanghai")
NOW = datetime(2026, 6, 1, 12, tzinfo=timezone.utc)
MULTI = ("rule", "severity", "department", "region")
_METRIC = re.compile(r"\b(sunlight_[a-z_]+?)(?:_bucket|_sum|_count)?\b(?:\{([^}]*)\})?")
_MATCHER = re.compile(r'(\w+)\s*=\s*"([^"]*)"')


def options(client, name: str) -> list[str]:
    return [row[0] for row in client.query(q.VARIABLE_QUERIES[name]).result_rows]


def panel_results(client, model: Mapping, time_range: TimeRange, variables: Mapping[str, Variable]) -> dict[int, Result]:
    """Each ClickHouse panel's rows, its SQL expanded as the plugin expands it."""
    results: dict[int, Result] = {}
    for panel, target in clickhouse_targets(model):
        sql = expand(target["rawSql"], panel_range(time_range, panel.get("timeFrom")), variables,
                     panel.get("maxDataPoints") or 1000, panel.get("interval"))
        try:
            result = client.query(sql)
        except Exception as exc:  # drawn in the panel, so a broken query is seen in the picture
            results[panel["id"]] = Result((), (), error=str(exc).splitlines()[0])
            continue
        results[panel["id"]] = Result(tuple(result.column_names), result.result_rows)
    return results


def metric_results(model: Mapping, registry) -> dict[int, Result]:
    """Each Prometheus panel: per query, the current total of the metric it reads."""
    samples = [sample for family in registry.collect() for sample in family.samples
               if not sample.name.endswith(("_created", "_bucket"))]

    def total(name: str, matchers: str) -> float:
        wanted = dict(_MATCHER.findall(matchers or ""))
        return sum(s.value for s in samples if s.name.removesuffix("_total") == name
                   and all(s.labels.get(k) == v for k, v in wanted.items()))
    results = {}
    for panel in panels_of(model):
        exprs = [t.get("expr") for t in panel.get("targets", []) if t.get("expr")]
        if not exprs:
            continue
        rows = []
        for expr, target in zip(exprs, panel["targets"]):
            legend = re.sub(r"\{\{.*?\}\}", "", target.get("legendFormat") or "").strip(" /·") or "当前值"
            rows.append([f"{legend}（本进程累计）",
                         sum(total(name.removesuffix("_total"), matchers) for name, matchers in _METRIC.findall(expr))])
        results[panel["id"]] = Result(("指标", "值"), rows)
    return results


def replay_city(directory: Path, cases: int = 400, seed: int = 11):
    """A generated city through the real pipeline into `directory`/data, one ticket answered.
    Returns (the scenario, the data directory, the time range covering its history)."""
    import orjson

    from alerts.scenario import generate
    from sinks.queries import stored_tickets
    from sinks.scope import Scope
    from streams.runtime import produce, replay_clock, running_pipeline, topic_ends, wait_until_processed
    from streams.settings import Settings

    import yaml

    scenario = generate(cases=cases, violation_rate=0.06, seed=seed, now=NOW)
    directory.mkdir(parents=True, exist_ok=True)
    catalog = directory / "catalog.yaml"
    catalog.write_text(yaml.safe_dump(scenario.catalog, allow_unicode=True, sort_keys=False), encoding="utf-8")
    settings = Settings(data_dir=directory / "data", partitions=2, metrics_port=0)
    events = [(e["case_id"].encode(), orjson.dumps(e)) for e in scenario.events]
    bad = [(b"bad-1", b"{not json"), (None, b"\xff\xfe")]  # the DLQ panels show something

    async def run():
        async with running_pipeline(settings, catalog, clock=replay_clock(NOW)) as running:
            await produce(running.bootstrap, settings.case_events_topic, events + bad)
            await wait_until_processed(running.pipeline, await topic_ends(running), timeout=600)
            with running.pipeline.writer.lock:
                waiting = stored_tickets(running.client, Scope.everything(), status="open")
            if waiting:
                ticket = min(waiting, key=lambda t: (t["opened_at"] or "", t["ticket_id"]))
                reply = {"action_id": "pictures-1", "ticket_id": ticket["ticket_id"], "version": ticket["version"],
                         "actor": "李四", "department": ticket["department"], "kind": "reply",
                         "text": "已整改，补录材料。", "at": NOW.isoformat()}
                await produce(running.bootstrap, settings.ticket_actions_topic,
                              [(ticket["ticket_id"].encode(), orjson.dumps(reply))])
                await wait_until_processed(running.pipeline, await topic_ends(running), timeout=600)

    asyncio.run(run())
    times = sorted(datetime.fromisoformat(e["occurred_at"]) for e in scenario.events)
    score_months(directory / "data", scenario.catalog, times[-1].astimezone(TZ))
    start = (times[0].astimezone(TZ) - timedelta(days=1)).replace(hour=0, minute=0, second=0, microsecond=0)
    end = times[-1].astimezone(TZ).replace(hour=23, minute=59, second=59, microsecond=0)
    return scenario, directory / "data", TimeRange(start, end)


def score_months(data_dir: Path, catalog: dict, now: datetime) -> None:
    """The monthly scores (`sunlight score`, both attachments) of the month of `now` and the one
    before, as the scoring dashboard shows them."""
    from alerts.catalog import load_catalog
    from alerts.scoring import score_month
    from sinks.clickhouse import connect
    from sinks.scoring_inputs import month_facts, write_scores
    from streams.catalog_source import default_rulebook

    rulebook = default_rulebook()
    previous = (now.replace(day=1) - timedelta(days=1))
    client = connect(None, data_dir)
    try:
        for month in (previous.strftime("%Y-%m"), now.strftime("%Y-%m")):
            facts = dataclasses.replace(month_facts(client, month, TZ), as_of=now)
            for attachment in ("department", "region"):
                write_scores(client, score_month(rulebook, attachment, load_catalog(catalog), facts),
                             "wuxi", "no inputs")
    finally:
        client.close()


def dashboard_variables(client, time_range: TimeRange) -> dict[str, dict[str, Variable]]:
    """What each dashboard's variables are set to for its picture."""
    every = {name: Variable(name, [ALL], options(client, name), all_value=q.all_value_of(name)) for name in MULTI}
    from sinks.queries import stored_tickets
    from sinks.scope import Scope

    tickets = [t for t in stored_tickets(client, Scope.everything()) if t["status"] in ("open", "returned", "replied")]
    departments = options(client, "department")
    department = Counter(t["department"] for t in tickets).most_common(1)[0][0] if tickets else departments[0]
    models = all_dashboards()
    live = [(p, t) for p, t in clickhouse_targets(models["sunlight-inspector"]) if p["title"] == q.LIVE_ALERTS.title]
    rows = panel_results(client, {"panels": [live[0][0]]}, time_range, every).get(live[0][0]["id"]) if live else None
    case_id = rows.rows[0][list(rows.columns).index("case_id")] if rows and rows.rows else ""
    return {"sunlight-wall": {}, "sunlight-health": {}, "sunlight-scores": {},
            "sunlight-inspector": {**every, "case_id": Variable("case_id", case_id)},
            "sunlight-department": {"department": Variable("department", department, departments)}}


def draw_all(client, time_range: TimeRange, out_dir: Path, registry=None) -> list[Path]:
    """Each dashboard over its own default time range (today, this month, 30 days...), "now" being
    the end of the replayed history."""
    variables = dashboard_variables(client, time_range)
    written = []
    for uid, model in all_dashboards().items():
        own = dashboard_range(model["time"]["from"], model["time"]["to"], time_range.end)
        results = panel_results(client, model, own, variables.get(uid, {}))
        if registry is not None:
            results.update(metric_results(model, registry))
        written.append(render(model, results, out_dir / f"{uid}.png"))
    return written


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    out_dir = Path(args[0]) if args else Path(__file__).resolve().parents[1] / "docs" / "images" / "dashboards"
    from sinks.clickhouse import connect
    from streams.metrics import REGISTRY

    with tempfile.TemporaryDirectory(prefix="sunlight-pictures-") as temp:
        _, data_dir, time_range = replay_city(Path(temp))
        client = connect(None, data_dir)
        try:
            for path in draw_all(client, time_range, out_dir, REGISTRY):
                print(path)
        finally:
            client.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
