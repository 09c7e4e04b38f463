"""`sunlight cases show`: one case's file, for checking it by hand."""

from __future__ import annotations

import sys

import orjson

from streams.commands.common import reason_words, user_scope, catalog_path_for, require_store
from streams.settings import Settings


def cmd_cases_show(args, settings: Settings) -> int:
    """One case's file: its events in process order, its deadline and how it was counted, every
    alert with its evidence in words (withdrawn ones marked, with why)."""
    from alerts.casefile import case_file, render, shown_part
    from alerts.catalog import CatalogError
    from alerts.describe import moment
    from alerts.evaluate import department_of
    from alerts.events import case_item_code, parse_event
    from sinks.clickhouse import connect
    from sinks.migrations import migrate
    from sinks.queries import alerts_of_case, case_events_of, dead_letters, refused_case_events, whole_case_events
    from streams.catalog_source import load_judge

    catalog_path = catalog_path_for(args, settings, "a case's process order and deadline are read from the catalog")
    judge = load_judge(catalog_path, settings.calendar_overrides)
    scope = user_scope(args, settings)
    require_store(settings)
    client = connect(settings.clickhouse, settings.data_dir)
    try:
        migrate(client)
        rows = case_events_of(client, scope, args.case_id)
        events = [parse_event(e) for e in rows]
        # The whole case, when the scope holds part of it (another department registered some of its
        # events): its status and deadline are the whole case's (`alerts.casefile.case_file`).
        whole = whole_case_events(client, scope, args.case_id, rows)
        every_event = events if whole is rows else [parse_event(e) for e in whole]
        alerts = alerts_of_case(client, scope, args.case_id, tz=judge.calendar.tz)
        waiting = refused_case_events(client, [args.case_id], as_kept=True).get(args.case_id, {}) if events else {}
        letters = [] if events else list(dead_letters(client, scope, case_id=args.case_id, tz=judge.calendar.tz))
        conflicting = [letter["event_id"] for letter in dead_letters(
            client, scope, reason="conflicting_duplicate", case_id=args.case_id)] if events else []
    finally:
        client.close()
    if not events and letters:  # every event of it refused, or held back by an import: it waits (暂缓评判)
        if args.format == "json":
            sys.stdout.buffer.write(orjson.dumps({"case_id": args.case_id, "events": [], "dead_letters": letters},
                                                 default=str, option=orjson.OPT_INDENT_2) + b"\n")
            return 0
        print(f"办件 {args.case_id} 尚无入库的事件，暂缓评判：以下 {len(letters)} 条消息被拒收（死信）。"
              f"更正事件（或事项目录）后，以 sunlight dlq redrive 重新提交。")
        for letter in letters:
            print(f"  {moment(letter['received_at'])}  事件 {letter['event_id'] or '（未能读出）'}  "
                  f"{reason_words(letter['reason'])}  {letter['detail']}")
        return 0
    if not events:
        print(f"sunlight: case {args.case_id} is not in the store" + ("" if scope.unrestricted else
              f" within {scope.describe()}") + " (events refused as dead letters are not: sunlight dlq list)",
              file=sys.stderr)
        return 2
    item_code = case_item_code(every_event)  # the item it is judged under (`alerts.evaluate.judge_case`)
    item = judge.catalog.item(item_code)
    if item is None:
        raise CatalogError(f"item {item_code!r} of case {args.case_id} is not in the catalog {catalog_path}")
    its = department_of(every_event, item)
    department = judge.catalog.departments.get(its)
    file = case_file(every_event, alerts, item, judge.calendar, department.name if department else None, waiting,
                     conflicting, **shown_part(every_event, {e.event_id for e in events}, scope.holds(its)))
    if args.format == "json":
        sys.stdout.buffer.write(orjson.dumps(file, default=str, option=orjson.OPT_INDENT_2) + b"\n")
    else:
        sys.stdout.write(render(file))
    return 0
