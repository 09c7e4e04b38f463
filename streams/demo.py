"""`sunlight demo`: a generated city through the whole pipeline, with a live terminal view."""

from __future__ import annotations

import asyncio
import sys
from collections import Counter
from datetime import datetime, timezone
from pathlib import Path

import orjson
import yaml
from rich.console import Group
from rich.live import Live
from rich.panel import Panel
from rich.table import Table

from alerts.model import RULE_TITLE, Rule
from alerts.scenario import generate
from sinks.queries import alerts_by_rule_and_department, export_alerts
from sinks.scope import Scope
from streams.runtime import produce, replay_clock, running_pipeline, wait_until_processed
from streams.settings import Settings


def _view(counts: list[tuple[str, str, int]], latest: list[dict], status: str) -> Group:
    departments = sorted({d for _, d, _ in counts})
    table = Table(title="预警统计 alerts by rule and department", expand=True)
    table.add_column("rule 规则")
    for department in departments:
        table.add_column(department, justify="right")
    table.add_column("合计", justify="right", style="bold")
    by = {(r, d): n for r, d, n in counts}
    for rule in Rule:
        row = [by.get((rule.value, d), 0) for d in departments]
        colour = "red" if rule in (Rule.OVERDUE, Rule.SKIPPED_NODE, Rule.BACKFILL, Rule.RETROACTIVE_SUSPENSION,
                                   Rule.DISCRETION_OUT_OF_RANGE) else "yellow"
        table.add_row(f"[{colour}]{rule.value} {RULE_TITLE[rule]}[/]", *map(str, row), str(sum(row)))
    recent = Table(title="最新预警 latest alerts", expand=True)
    for column in ("title", "case", "department", "node", "event time"):
        recent.add_column(column)
    for alert in latest[:12]:
        recent.add_row(alert["title"], alert["case_id"], alert["department"], alert["node"] or "",
                       alert["event_time"][:16])
    return Group(Panel(status), table, recent)


async def run_demo(settings: Settings, duration: float | None = None, cases: int = 800, seed: int = 0) -> int:
    now = datetime.now(timezone.utc)
    scenario = generate(cases=cases, seed=seed, now=now)
    data_dir = Path(settings.data_dir)
    data_dir.mkdir(parents=True, exist_ok=True)
    catalog_path = data_dir / "demo-catalog.yaml"
    catalog_path.write_text(yaml.safe_dump(scenario.catalog, allow_unicode=True, sort_keys=False), encoding="utf-8")
    messages = [(e["case_id"].encode(), orjson.dumps(e)) for e in scenario.events]
    loop = asyncio.get_running_loop()
    started = loop.time()
    async with running_pipeline(settings, catalog_path, clock=replay_clock(now)) as running:
        pipeline = running.pipeline
        writer = pipeline.writer

        def snapshot():
            with writer.lock:
                counts = alerts_by_rule_and_department(running.client, Scope.everything())
                latest = sorted(export_alerts(running.client, Scope.everything()), key=lambda a: a["raised_at"], reverse=True)[:12]
            return counts, latest

        async def feed() -> None:
            # The city's history arrives in event-time order, in slices, as if live.
            step = max(1, len(messages) // 20)
            ends: dict[int, int] = {}
            for start in range(0, len(messages), step):
                sent = await produce(running.bootstrap, settings.case_events_topic, messages[start:start + step])
                for partition, end in sent.items():
                    ends[partition] = max(ends.get(partition, 0), end)
                await asyncio.sleep(0.5)
            await wait_until_processed(pipeline, ends)

        feeding = asyncio.ensure_future(feed())
        # On a terminal, a live view; otherwise (a log file, a pipe, a service) a plain summary
        # every few seconds, so that the output says what is happening.
        terminal = sys.stdout.isatty()
        live = Live(_view([], [], "starting..."), refresh_per_second=2, screen=False) if terminal else None
        last_summary = -SUMMARY_EVERY
        try:
            if live is not None:
                live.start()
            while True:
                counts, latest = await loop.run_in_executor(writer.executor, snapshot)
                state = "all events processed; watching the clock" if feeding.done() else "feeding events"
                total = Counter()
                for rule, _, n in counts:
                    total[rule] += n
                status = (f"Sunlight 阳光监察 demo · {len(scenario.events)} events of {cases} cases · "
                          f"{pipeline.progress.events_new} processed · {sum(total.values())} alerts · {state} · "
                          f"{len(total)}/8 rules seen · Ctrl-C to stop")
                elapsed = loop.time() - started
                if live is not None:
                    live.update(_view(counts, latest, status))
                elif elapsed - last_summary >= SUMMARY_EVERY:
                    last_summary = elapsed
                    print(summary_line(elapsed, pipeline.progress.events_new, len(scenario.events), total, state),
                          flush=True)
                if feeding.done() and feeding.exception():
                    raise feeding.exception()
                if duration is not None and elapsed >= duration:
                    break
                await asyncio.sleep(1.0)
        finally:
            if live is not None:
                live.stop()
        if not feeding.done():
            feeding.cancel()
        if live is None:
            print(summary_line(loop.time() - started, pipeline.progress.events_new, len(scenario.events), total,
                               "stopped"), flush=True)
    return 0


SUMMARY_EVERY = 5.0  # seconds between plain summaries when the output is not a terminal


def summary_line(elapsed: float, processed: int, events: int, by_rule: Counter, state: str) -> str:
    """One plain line: time, events processed, open alerts by rule (Chinese titles)."""
    rules = ", ".join(f"{RULE_TITLE[Rule(rule)]} {n}" for rule, n in sorted(by_rule.items())) or "none yet"
    return (f"[{elapsed:6.0f}s] Sunlight demo: {processed}/{events} events processed; "
            f"{sum(by_rule.values())} open alerts ({rules}); {state}")
