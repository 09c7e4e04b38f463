"""`sunlight tickets list|show|reply|accept|return|close|open`: supervision tickets (督办件)."""

from __future__ import annotations

import asyncio
import os
import sys
from datetime import datetime

import orjson

from streams.commands.common import (
    parse_now, push_events, command_clock, scope_and_local_time, scope_local_time_and_catalog, catalog_path_for,
    print_jsonl, require_store, open_store)
from streams.settings import Settings


def cmd_tickets_list(args, settings: Settings) -> int:
    require_store(settings)
    from alerts.describe import deadline_moment, table_lines
    from alerts.tickets import STATUS_TITLE, escalation_title
    from sinks.queries import pending_tickets, stored_tickets

    scope, local = scope_and_local_time(args, settings)
    with open_store(settings) as client:
        found = stored_tickets(client, scope, status=args.status, tz=local)
        pending = pending_tickets(client, scope)
    if args.format == "jsonl":
        print_jsonl(found)
        return 0
    if not found:
        print("没有督办件 (no tickets" + (f" with status {args.status}" if args.status else "") + ")")
        return 0
    print("\n".join(table_lines(
        ["督办件", "部门", "状态", "逾期", "升级", "答复期限", "版本"],
        [[t["ticket_id"], t["department"], STATUS_TITLE.get(t["status"], t["status"]),
          ("撤销前已逾期" if t["status"] == "withdrawn" else "是") if t["overdue"] else "否",
          escalation_title(t["escalation_level"], t["status"]), deadline_moment(t["deadline"]), str(t["version"])]
         for t in found])))
    if pending:
        print("\n待处置（按督办件）：" + "；".join(f"{d} 待答复 {a}（逾期 {o}）、待审核 {r}" for d, a, r, o in pending))
    return 0


def cmd_tickets_show(args, settings: Settings) -> int:
    require_store(settings)
    from alerts.describe import EVENT_TITLE, STATUS_TITLE as ALERT_STATUS_TITLE, deadline_moment, moment
    from alerts.events import EventType
    from alerts.tickets import (KIND_TITLE, RESOLUTION_TITLE, STATUS_TITLE, escalation_title, notice_outcome,
                                STEP_TITLE, actor_title, rounds_with_notices)
    from sinks.queries import case_events_of, stored_notices, stored_tickets, ticket_history, whole_case_events
    from streams.notices import notice_reason

    scope, local, catalog = scope_local_time_and_catalog(args, settings)
    with open_store(settings) as client:
        found = stored_tickets(client, scope, ticket_id=args.ticket_id, tz=local)
        history = ticket_history(client, scope, args.ticket_id, tz=local)
        notices = stored_notices(client, scope, args.ticket_id, tz=local)
        events = list(case_events_of(client, scope, found[0]["case_id"])) if found else []
        # Those of the case the scope does not hold (another department registered them): said, not
        # left out without a word (found by review, as of the case file).
        unlisted = len(whole_case_events(client, scope, found[0]["case_id"], events)) - len(events) if found else 0
    if not found:
        # A ticket is stored once it opens: one whose red card is settling, or that waits out a
        # silence, is not yet (the bare "not in the store" read as no ticket at all: found by a
        # black-box test of silences).
        print(f"sunlight: ticket {args.ticket_id} is not in the store" + ("" if scope.unrestricted else
              f" within {scope.describe()}") + " (a ticket is stored once it opens: one whose red card is still "
              "settling, or that waits out a silence (`sunlight silences list`), is not yet; "
              "`sunlight tickets list` gives those open)", file=sys.stderr)
        return 2
    ticket = found[0]
    if args.format == "json":
        out = {"ticket": ticket, "history": history, "notices": notices, "events": events}
        sys.stdout.buffer.write(orjson.dumps(out, default=str, option=orjson.OPT_INDENT_2) + b"\n")
        return 0
    lines = [f"督办件 {ticket['ticket_id']}（第 {ticket['version']} 版）",
             f"  状态：{STATUS_TITLE.get(ticket['status'], ticket['status'])}"
             + (f"（{RESOLUTION_TITLE.get(ticket['resolution'], ticket['resolution'])}）" if ticket['resolution'] else "")
             + (("，撤销前已逾期" if ticket['status'] == "withdrawn" else "，已逾期") if ticket['overdue'] else "")
             + f"，{escalation_title(ticket['escalation_level'], ticket['status'])}",
             f"  部门：{_named(ticket['department'], catalog and catalog.departments.get(ticket['department']))}  "
             f"办件：{ticket['case_id']}  "
             f"事项：{_named(ticket['item_code'], catalog and catalog.item(ticket['item_code']))}",
             f"  生成：{moment(ticket['opened_at'])}  答复期限：{deadline_moment(ticket['deadline'])}  "
             f"二级升级：{deadline_moment(ticket['level_2_at'])}", "", "预警："]
    from alerts.describe import describe_evidence

    for alert_id, alert in ticket["evidence"].items():
        lines.append(f"  [{ALERT_STATUS_TITLE.get(alert['status'], alert['status'])}] "
                     f"{describe_evidence(ticket['rule'], alert['evidence'])}")
    lines += ["", "办件过程："]
    if unlisted:
        lines.append(f"  （另有 {unlisted} 个事件由其他部门登记（或未注明部门），不在查看范围内，未列出）")
    for event in events:
        occurred = datetime.fromisoformat(event["occurred_at"]).astimezone(local)
        try:
            kind = EVENT_TITLE[EventType(event["type"])]
        except (ValueError, KeyError):
            kind = event["type"]
        item = catalog.item(event["item_code"]) if catalog is not None else None
        node = item.node(event["node"]) if item is not None and event.get("node") else None
        lines.append(f"  {moment(occurred)}  {kind}" + (f"  {node.name if node else event['node']}"
                                                         if event.get('node') else ""))
    # Each round's history, then each round's notices under the round each was sent in, as the case page
    # lists them (one list after the last round's history read as the second round escalated by the
    # first's notices: found by a black-box test).
    by_round = rounds_with_notices(history, notices)

    def heading(number: int) -> str:
        return f" 第 {number} 轮" + ("（已结束）" if number != by_round[-1][0] else "")

    lines += ["", "督办记录："]
    for number, versions, _ in by_round:
        if len(by_round) > 1:
            lines.append(heading(number))
        for change in versions:
            # A text of several lines (a reply written in paragraphs) goes on under its line, indented
            # and marked: its lines at the margin broke the record into what read as other entries, and
            # indented alone a reply could still write lines that read as the inspector's (a black-box test).
            text = "\n        | ".join(change["text"].splitlines()) if change["text"] else ""
            lines.append(f"  v{change['version']}  {moment(change['changed_at'])}  {actor_title(change['actor'])}  "
                         f"{KIND_TITLE.get(change['kind'], change['kind'])}" + (f"：{text}" if text else ""))
    lines += ["", "通知："]
    for number, _, round_notices in by_round:
        if len(by_round) > 1 and round_notices:
            lines.append(heading(number))
        for notice in round_notices:
            lines.append(f"  {moment(notice['due_at'])}  {STEP_TITLE.get(notice['step'], notice['step'])} → "
                         f"{notice['recipient_name'] or notice['recipient_role']} "
                         f"<{notice['recipient_email'] or '无地址'}>  "
                         f"{notice_outcome(notice['status'], notice['updated_at'], notice['attempts'])}"
                         + (f"  {why}" if (why := notice_reason(notice['status'], notice['last_error'])) else ""))
    print("\n".join(lines))
    return 0


def cmd_tickets_act(args, settings: Settings) -> int:
    """An action on a ticket: published to the ticket-actions topic; on the embedded defaults, a
    short pipeline applies it (as `replay` does), and the result is read back."""
    import uuid

    from alerts.tickets import INSPECTORS, MAX_TEXT_CHARS, STATUS_TITLE, Action, ActionKind
    from sinks.queries import dead_letters, failed_notices, stored_tickets, ticket_state
    from sinks.scope import Scope
    from streams.clock import wall_now
    from streams.internal_wire import ticket_action

    everything = Scope.everything()
    kind = ActionKind(args.kind)
    if settings.kafka and args.text and len(args.text) > MAX_TEXT_CHARS:  # refused here, where the person is:
        # published, the worker's refusal reached only the dead letters (a black-box test). (On the
        # embedded defaults the command's pipeline refuses it, says so, and keeps its letter.)
        subject = getattr(args, "ticket_id", None) or getattr(args, "alert", None)
        print(f"sunlight: {kind.value} on {subject} refused: text_too_long: --text is "
              f"{len(args.text)} characters, at most {MAX_TEXT_CHARS}", file=sys.stderr)
        return 2
    if settings.kafka and kind is not ActionKind.OPEN and args.version is not None:
        # Everything the action needs is given: only published, the store left to the worker (an
        # embedded store is open in one process only, the worker's).
        if kind is ActionKind.REPLY and not args.department:
            print("sunlight: a reply with --version names the answering department: --department CODE",
                  file=sys.stderr)
            return 2
        ticket_id, current = args.ticket_id, None
    else:
        try:
            ticket_id, current = _ticket_and_current(args, settings, kind, everything)
        except _NotInTheStore as missing:  # status 2, as `tickets show` and `notices resend --ticket` say it
            print(f"sunlight: {missing}", file=sys.stderr)
            return 2
    department = args.department or (current["department"] if kind is ActionKind.REPLY and current else INSPECTORS)
    action = Action(action_id=args.action_id or str(uuid.uuid4()), ticket_id=ticket_id,
                    version=args.version if args.version is not None else (current["version"] if current else None),
                    actor=args.actor or (department if kind is ActionKind.REPLY else os.environ.get("USER") or "inspector"),
                    department=department, kind=kind, text=args.text,
                    at=parse_now(args.now) or wall_now(),
                    alert_id=args.alert if kind is ActionKind.OPEN else None)
    messages = [(ticket_id.encode(), ticket_action(action))]
    if settings.kafka:
        from streams.runtime import produce

        asyncio.run(produce(settings.kafka, settings.ticket_actions_topic, messages))
        print(f"published {kind.value} on {ticket_id} to {settings.ticket_actions_topic} "
              f"(action {action.action_id}); the worker applies it or refuses it: see `sunlight tickets show "
              f"{ticket_id}`, and a refusal in `sunlight dlq list`", file=sys.stderr)
        return 0
    catalog = catalog_path_for(args, settings, "tickets on the embedded defaults runs "
                                            "the pipeline and needs a catalog")
    asyncio.run(push_events(settings, messages, catalog, parse_now(args.now), show_progress=False,
                      topic=settings.ticket_actions_topic, clock=command_clock(args)))
    with open_store(settings) as client:
        after = stored_tickets(client, everything, ticket_id=ticket_id)
        applied = action.action_id in (ticket_state(client, ticket_id) or {}).get("actions", ())
        refused = list(dead_letters(client, everything, payload_containing=action.action_id))
        undelivered = failed_notices(client, [ticket_id])
    if after and applied:
        ticket = after[0]
        print(f"{ticket_id}: {STATUS_TITLE.get(ticket['status'], ticket['status'])}（第 {ticket['version']} 版）")
        if undelivered:  # said only in the log before (a return its contact never heard of: a black-box test)
            print(f"note: {len(undelivered)} notice(s) of {ticket_id} not delivered ({undelivered[-1]['last_error']}): "
                  f"`sunlight notices resend` sends them again", file=sys.stderr)
        return 0
    reason = f"{refused[0]['reason']}: {refused[0]['detail']}" if refused else "not applied"
    print(f"sunlight: {kind.value} on {ticket_id} refused: {reason}", file=sys.stderr)
    return 2


class _NotInTheStore(LookupError):
    """The ticket or alert an action names is not in the store (an operator's mistake: status 2)."""


def _ticket_and_current(args, settings: Settings, kind, everything) -> tuple[str, dict | None]:
    """The ticket an action is on, and its latest stored form (None for one opened from an alert)."""
    from alerts.model import Rule
    from alerts.tickets import ActionKind, ticket_id as make_ticket_id
    from sinks.queries import export_alerts, stored_tickets

    with open_store(settings) as client:
        if kind is ActionKind.OPEN:
            alert = next((a for a in export_alerts(client, everything) if a["alert_id"] == args.alert), None)
            if alert is None:
                raise _NotInTheStore(f"no open alert {args.alert} in the store (sunlight alerts export)")
            return make_ticket_id(alert["case_id"], Rule(alert["rule"])), None
        found = stored_tickets(client, everything, ticket_id=args.ticket_id)
        current = found[0] if found else None
        if current is None and args.version is None:
            raise _NotInTheStore(f"ticket {args.ticket_id} is not in the store (sunlight tickets list)")
        return args.ticket_id, current


def _named(code: str, entry) -> str:
    """A department's or an item's code with its name from the catalog, when one is named (the
    ticket gave the code alone, where `cases show` gives both: found by a black-box test)."""
    return f"{code} {entry.name}" if entry is not None else code
