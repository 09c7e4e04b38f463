"""`sunlight dlq list|redrive|close`: the dead letters kept in the store, corrected events sent
again, and letters an operator closes."""

from __future__ import annotations

import asyncio
import sys
from datetime import datetime
from pathlib import Path

import orjson

from streams.commands.common import (
    parse_now, push_events, notify_settings, reason_words, user_scope, catalog_path_for, print_jsonl, require_store,
    local_zone)
from streams.settings import Settings


LETTER_COLUMNS = ("收到时间", "原因", "来源", "办件", "部门", "状态", "详情")


def letter_cells(letter: dict, moment) -> list[str]:
    """A letter as the cells of `dlq list`'s table. The source and the case are never cut (a topic's
    name cut to the column width cut its offset: `sunlight-ticket-ticks[3]@1` for offset 15), nor the
    department. Its reason and state in words, as the inspector's dashboard gives them (the state was
    `open`, and a refused ticket action already told to who acted read as waiting: found by a
    black-box test)."""
    from alerts.letters import OVERTAKEN_ACTIONS

    source = f"{letter['topic']}[{letter['partition']}]@{letter['offset']}"
    detail = " ".join(letter["detail"].split())[:80]
    state = ("已重投" if letter["status"] == "redriven" else "已关闭" if letter["status"] == "closed"
             else "已告知操作人" if letter["reason"] in OVERTAKEN_ACTIONS else "待处理")
    if letter["status"] == "closed":  # who closed it and why, before the system's detail
        detail = f"{letter['closed_by']}关闭：{' '.join((letter['closed_reason'] or '').split())}；{detail}"[:120]
    return [moment(letter["received_at"]), reason_words(letter["reason"]), source, letter["case_id"] or "",
            letter["department"], state, detail]


def letter_table(letters: list[dict], moment) -> list[str]:
    """`dlq list`'s table, lined up by the columns a terminal gives each character (padded by
    Python's character count, a Chinese reason or department pushed the rest of its line out of
    line, and a department's name was cut to 8 characters: found by a black-box test)."""
    from alerts.describe import table_lines

    return table_lines(LETTER_COLUMNS, [letter_cells(letter, moment) for letter in letters])


def cmd_dlq_list(args, settings: Settings) -> int:
    """The dead letters kept in the store (open ones; with --all those redriven or closed too)."""
    from alerts.describe import moment
    from alerts.letters import REASON_TITLE
    from sinks.clickhouse import connect
    from sinks.migrations import migrate
    from sinks.queries import dead_letters

    if args.reason and args.reason not in REASON_TITLE:
        raise SystemExit(f"sunlight: --reason {args.reason}: not a reason a letter is refused for; one of: "
                         f"{', '.join(sorted(REASON_TITLE))}")
    scope = user_scope(args, settings)
    require_store(settings)
    client = connect(settings.clickhouse, settings.data_dir)
    try:
        migrate(client)
        letters = list(dead_letters(client, scope, reason=args.reason, include_done=args.all,
                                    tz=local_zone(args, settings)))  # as the catalog's (found by review)
    finally:
        client.close()
    if args.format == "jsonl":
        print_jsonl(letters)
        return 0
    if not letters:
        print("没有死信 (no dead letters" + (f" with reason {args.reason}" if args.reason else "") + ")")
        return 0
    print("\n".join(letter_table(letters, moment)))
    print(f"共 {len(letters)} 条死信" + ("" if args.all else "（未重投、未关闭的）") + "；`sunlight dlq list --format jsonl` "
          "给出每条的原文和 letter_id，更正后的事件以 `sunlight dlq redrive FILE` 重新提交；无法以更正事件替代的，"
          "以 `sunlight dlq close LETTER_ID --reason 说明` 关闭")
    return 0


def _refuse_a_case_still_missing_rows(corrections: list[tuple[str | None, dict]], open_letters: list[dict]) -> None:
    """Rows an import held back (`case_incomplete`) are sent again only with their case's rejected
    rows corrected in the same file (or by importing the corrected file): alone they bring the
    case in without its unreadable step, and it is accused of skipping it."""
    from streams.importers import CASE_INCOMPLETE, UNREADABLE_ROW

    by_id = {letter["letter_id"]: letter for letter in open_letters}
    named = {letter_id for letter_id, _ in corrections if letter_id}
    cases = {by_id[letter_id]["case_id"] for letter_id in named
             if letter_id in by_id and by_id[letter_id]["reason"] == CASE_INCOMPLETE}
    cases |= {str(event.get("case_id")) for letter_id, event in corrections if not letter_id} & {
        letter["case_id"] for letter in open_letters if letter["reason"] == CASE_INCOMPLETE}
    missing = sorted((letter["case_id"], letter["offset"], letter["letter_id"]) for letter in open_letters
                     if letter["reason"] == UNREADABLE_ROW and letter["case_id"] in cases
                     and letter["letter_id"] not in named)
    if missing:
        case, row, letter_id = missing[0]
        raise SystemExit(f"sunlight: case {case} still has a row its import could not read (row {row}, letter "
                         f"{letter_id}): send its corrected event in the same file as "
                         f"{{\"letter_id\": \"{letter_id}\", \"event\": {{...}}}}, or import the corrected file; "
                         f"its held rows alone would bring the case in without that step")


def read_redrive(path: Path) -> list[tuple[str | None, dict]]:
    """(letter_id or None, corrected event) for each line of a redrive file: a contract event, or
    {"letter_id": ..., "event": {...}} to name the letter it replaces."""
    out = []
    from streams.replay_feed import json_lines

    with open(path, "rb") as handle:
        for number, line in json_lines(handle):
            try:
                obj = orjson.loads(line)
            except orjson.JSONDecodeError as exc:
                raise SystemExit(f"sunlight: {path}:{number}: not JSON ({exc})") from None
            if not isinstance(obj, dict):
                raise SystemExit(f"sunlight: {path}:{number}: expected a JSON object (an event, or letter_id "
                                 f"and event)")
            if "event" in obj:
                if not isinstance(obj["event"], dict):
                    raise SystemExit(f"sunlight: {path}:{number}: 'event' must be a JSON object")
                out.append((str(obj.get("letter_id")) if obj.get("letter_id") else None, obj["event"]))
            elif "letter_id" in obj and "payload" in obj:  # a letter as `sunlight dlq list --format jsonl` gives it
                try:
                    event = orjson.loads(obj["payload"]) if obj.get("payload_encoding") == "utf-8" else None
                except orjson.JSONDecodeError:
                    event = None
                if not isinstance(event, dict):
                    raise SystemExit(f"sunlight: {path}:{number}: letter {obj['letter_id']}'s payload is not an event "
                                     f"to send again; write the corrected event as {{\"letter_id\": ..., \"event\": "
                                     f"{{...}}}}")
                out.append((str(obj["letter_id"]), event))
            elif "letter_id" in obj:  # a letter named, with no event: it was sent as one, and refused as a new letter
                raise SystemExit(f"sunlight: {path}:{number}: letter {obj['letter_id']} names no corrected event; "
                                 f"write it as {{\"letter_id\": ..., \"event\": {{...}}}}")
            else:
                out.append((None, obj))
    return out


def cmd_dlq_redrive(args, settings: Settings) -> int:
    """Send corrected events back through the pipeline, and mark the letters they replace."""
    from sinks.clickhouse import connect
    from sinks.migrations import migrate
    from sinks.queries import dead_letters, stored_event_keys
    from sinks.writer import mark_letters_redriven
    from sinks.scope import Scope
    from streams.clock import wall_now

    settings = notify_settings(settings, args)
    corrections = read_redrive(Path(args.file))
    if not corrections:
        raise SystemExit(f"sunlight: {args.file} holds no events")
    everything = Scope.everything()
    client = connect(settings.clickhouse, settings.data_dir)
    try:
        migrate(client)
        open_letters = list(dead_letters(client, everything))
    finally:
        client.close()
    by_id = {letter["letter_id"]: letter for letter in open_letters}
    for letter_id, event in corrections:
        letter = by_id.get(letter_id or "")
        if letter is None:
            continue
        if letter["topic"] != settings.case_events_topic:
            act = (": act on the ticket anew (`sunlight tickets show|reply|accept|return|close`, or the console)"
                   if letter["topic"] in (settings.ticket_actions_topic, settings.ticket_ticks_topic) else "")
            raise SystemExit(f"sunlight: letter {letter_id} is a refused message of {letter['topic']} "
                             f"({letter['reason']}), not a case event to send again{act}")
        if letter["reason"] == "conflicting_duplicate" and str(event.get("event_id")) == letter["event_id"]:
            raise SystemExit(f"sunlight: letter {letter_id} is a copy of event {letter['event_id']}, which case "
                             f"{letter['case_id']} holds with other content: sent again under that id it changes "
                             f"nothing (the case keeps the version it holds); send the corrected fact under an "
                             f"event_id of its own, naming the letter")
    # The letters an event sent again replaces: those of its (case, event) that held the case. Not a
    # conflicting copy's: its case holds the event, so the event is found stored whatever was sent,
    # and the copy's letter was marked redriven though its change was never taken (found by a
    # black-box test); only a corrected fact under an id of its own, naming the letter, replaces it.
    by_event: dict[tuple, list[dict]] = {}
    for letter in open_letters:
        if letter["case_id"] and letter["event_id"] and letter["reason"] != "conflicting_duplicate":
            by_event.setdefault((letter["case_id"], letter["event_id"]), []).append(letter)
    _refuse_a_case_still_missing_rows(corrections, open_letters)
    replaces: dict[tuple[str, str], list[dict]] = {}
    for letter_id, event in corrections:
        key = (str(event.get("case_id")), str(event.get("event_id")))
        if letter_id is not None:
            if letter_id not in by_id:
                raise SystemExit(f"sunlight: letter {letter_id} is not an open dead letter (sunlight dlq list)")
            replaces.setdefault(key, []).append(by_id[letter_id])
        else:
            replaces.setdefault(key, []).extend(by_event.get(key, []))
    messages = [(str(e.get("case_id", "")).encode() or None, orjson.dumps(e)) for _, e in corrections]
    if settings.kafka:
        from streams.runtime import produce

        asyncio.run(produce(settings.kafka, settings.case_events_topic, messages))
        if settings.embedded_store:
            print(f"sent {len(messages)} corrected events to {settings.case_events_topic}; the worker marks "
                  f"redriven the letters that held their cases once it has stored the events under their ids "
                  f"(`sunlight dlq list --all` shows them); other letters (another id, or a refusal that held no "
                  f"case: item_left_catalog, case_too_large, store_refused, internal_error) stay open on an "
                  f"embedded store", file=sys.stderr)
            return 0
    else:
        catalog = catalog_path_for(args, settings, "dlq redrive on the embedded defaults runs "
                                                "the pipeline and needs a catalog")
        asyncio.run(push_events(settings, messages, catalog, parse_now(args.now), show_progress=sys.stderr.isatty()))
    import time as clock

    client = connect(settings.clickhouse, settings.data_dir)
    try:
        deadline = clock.monotonic() + (args.wait if settings.kafka else 0)
        while True:
            stored = stored_event_keys(client, list(replaces))
            if len(stored) == len(replaces) or clock.monotonic() >= deadline:
                break
            clock.sleep(1.0)
        marked = sorted({letter["letter_id"] for key in stored for letter in replaces[key]})
        mark_letters_redriven(client, marked, wall_now())
    finally:
        client.close()
    refused = len(replaces) - len(stored)
    print(f"redrove {len(messages)} corrected events: {len(stored)} stored, {len(marked)} dead letters marked "
          f"redriven" + (f"; {refused} not stored (refused again: see `sunlight dlq list`)" if refused else ""),
          file=sys.stderr)
    return 0 if refused == 0 else 1


def cmd_dlq_close(args, settings: Settings) -> int:
    """Close open letters no corrected event can replace, with the reason: a new version of each,
    `closed`, kept with who closed it, when and why. All or none: a letter that cannot be closed
    (not found, not open, or its case waits for its event: `alerts.letters.why_not_closed`) stops
    the command before anything is written. A letter that something else marks between the check
    and the write (a worker's correction, an import) is left as that marked it, and said
    (`sinks.writer.close_letters` closes only letters still open)."""
    import getpass

    from alerts.letters import CLOSING_REASON_CHARS, holds_judgement, why_not_closed
    from sinks.clickhouse import connect
    from sinks.migrations import migrate
    from sinks.queries import dead_letters, stored_event_keys
    from sinks.rows import stored_letter
    from sinks.scope import Scope
    from sinks.writer import close_letters
    from streams.clock import wall_now

    reason = " ".join(args.reason.split())
    if not reason:
        raise SystemExit("sunlight: --reason is empty: say why the letters are closed (the inspectors read it)")
    if len(reason) > CLOSING_REASON_CHARS:
        raise SystemExit(f"sunlight: --reason is {len(reason)} characters; at most {CLOSING_REASON_CHARS}")
    try:
        by = " ".join((args.by if args.by is not None else getpass.getuser()).split())
    except (KeyError, OSError):  # no login name for this user id (a container, say)
        by = ""
    if not by:
        raise SystemExit("sunlight: who closes the letters is not known: name yourself with --by")
    wanted = list(dict.fromkeys(args.letter_ids))
    require_store(settings)
    client = connect(settings.clickhouse, settings.data_dir)
    try:
        migrate(client)

        def read() -> dict[str, dict]:
            return {letter["letter_id"]: letter
                    for letter in dead_letters(client, Scope.everything(), include_done=True, letter_ids=wanted)}

        found = read()
        missing = [letter_id for letter_id in wanted if letter_id not in found]
        if missing:
            raise SystemExit(f"sunlight: no dead letter {missing[0]} (`sunlight dlq list --all --format jsonl` "
                             f"gives the letters' ids)" + (f"; {len(missing) - 1} more not found"
                                                           if len(missing) > 1 else ""))
        letters = [stored_letter(found[i]) for i in wanted]
        held = {(letter.case_id, letter.event_id) for letter in letters if holds_judgement(letter)}
        stored = stored_event_keys(client, sorted(held))
        waiting = []  # (case, event) the cases of these letters wait for: judged without them
        for letter in letters:
            waits = (letter.case_id, letter.event_id) in held and (letter.case_id, letter.event_id) not in stored
            why = why_not_closed(letter, waits, args.judge_without)
            if why:
                raise SystemExit(f"sunlight: letter {letter.letter_id} ({letter.reason}) is not closed: {why}; "
                                 f"nothing was closed")
            if waits:
                waiting.append((letter.case_id, letter.event_id))
        catalog = (catalog_path_for(args, settings, "dlq close --judge-without on the embedded defaults judges "
                                                    "the cases again and needs a catalog")
                   if waiting and not settings.kafka else None)
        now = parse_now(args.now) if waiting else None  # a bad --now stops the command before anything is closed
        at = wall_now()
        close_letters(client, wanted, at, by, reason)
        after = read()  # a letter redriven meanwhile (a worker, an import) stays as that left it
        closed_now = [i for i in wanted if after[i]["status"] == "closed" and after[i]["closed_by"] == by
                      and after[i]["closed_reason"] == reason]
        overtaken = [f"{i} ({after[i]['status']})" for i in wanted if i not in closed_now]
    finally:
        client.close()
    if overtaken:
        print(f"sunlight: not closed, changed meanwhile: {', '.join(overtaken)}", file=sys.stderr)
    print(f"closed {len(closed_now)} dead letters (by {by}: {reason}); `sunlight dlq list --all` shows them",
          file=sys.stderr)
    closed_ids = {(found[i]["case_id"], found[i]["event_id"]) for i in closed_now}
    released = list(dict.fromkeys(pair for pair in waiting if pair in closed_ids))
    if released:
        _judge_without(settings, released, catalog, now)
    return 1 if overtaken else 0


def _judge_without(settings: Settings, released: list[tuple[str, str]], catalog: Path | None,
                   now: datetime | None) -> None:
    """Tell each case's partition it waits no more for the event its closed letter held
    (`streams.internal_wire.release_signal`, on the ticks topic, keyed by the case): a worker's with
    SUNLIGHT_KAFKA, else the pipeline run here over them, which judges the cases again."""
    from streams.internal_wire import release_signal

    signals = [(case_id.encode(), release_signal(case_id, event_id)) for case_id, event_id in released]
    count = len({case_id for case_id, _ in released})
    cases = f"{count} case{'s' if count != 1 else ''} no longer wait{'' if count != 1 else 's'} for "
    if settings.kafka:
        from streams.runtime import produce

        asyncio.run(produce(settings.kafka, settings.ticks_topic, signals))
        print(f"{cases}the closed letters' records: the workers judge them again", file=sys.stderr)
        return
    asyncio.run(push_events(settings, signals, catalog, now, show_progress=False, topic=settings.ticks_topic))
    print(f"{cases}the closed letters' records and {'is' if count == 1 else 'are'} judged again "
          f"(`sunlight cases show CASE`)", file=sys.stderr)
