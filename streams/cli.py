"""The `sunlight` command line (contract section 4)."""

from __future__ import annotations

import argparse
import dataclasses
import asyncio
import logging
import os
import sys
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Iterator

import orjson

from streams.settings import Settings

log = logging.getLogger("sunlight")


def _parse_now(text: str | None, option: str = "--now") -> datetime | None:
    if text is None:
        return None
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise SystemExit(f"sunlight: {option} must be an RFC 3339 time such as 2026-03-02T09:15:00+08:00, "
                         f"got {text!r}")
    if moment.tzinfo is None:
        raise SystemExit(f"sunlight: {option} needs a UTC offset, got {text!r}")
    return moment


def _local_zone(args, settings: Settings):
    """The catalog's timezone (--catalog or SUNLIGHT_CATALOG), Asia/Shanghai when none is named."""
    from zoneinfo import ZoneInfo

    if not (getattr(args, "catalog", None) or settings.catalog):
        return ZoneInfo("Asia/Shanghai")
    return ZoneInfo(_load_catalog(args, settings, "").timezone)


def _silence_time(moment: datetime, local) -> str:
    """A silence's moment as people read it: in the catalog's timezone, to the minute."""
    return moment.astimezone(local).strftime("%Y-%m-%d %H:%M")


async def _replay(settings: Settings, events: Path, catalog: Path, now: datetime | None,
                  show_progress: bool = True) -> dict:
    """The file is sent by a process of its own (`streams.replay_feed`), which reads it while the
    pipeline starts."""
    from streams.replay_feed import FileFeed
    from streams.runtime import check_running

    feed = await FileFeed.start(events, settings.case_events_topic)
    try:
        return await _through_pipeline(
            settings, catalog, now, show_progress,
            lambda running, on_total, on_sent: feed.send(running.bootstrap, on_total, on_sent,
                                                         check=lambda: check_running(running.pipeline)))
    finally:
        await feed.close()


async def _push(settings: Settings, messages: list, catalog: Path, now: datetime | None,
                show_progress: bool = True, topic: str | None = None, letters: list = (), clock=None) -> dict:
    """Run the pipeline over `messages` (case events, or other input such as ticket actions:
    `topic`) and wait until every message is processed and written; `letters` (an import's dead
    letters) are kept as the pipeline keeps its own."""
    from streams.runtime import produce

    async def send(running, on_total, on_sent) -> int:
        on_total(len(messages))
        await produce(running.bootstrap, topic or settings.case_events_topic, messages, on_sent=on_sent)
        return len(messages)

    return await _through_pipeline(settings, catalog, now, show_progress, send, letters, clock)


async def _through_pipeline(settings: Settings, catalog: Path, now: datetime | None, show_progress: bool,
                            send, letters: list = (), clock=None) -> dict:
    """Start the pipeline, `send(running, on_total, on_sent)` its input (returns how many messages;
    tells the progress bar how many there are, then how many are sent), and wait until everything
    in the input topic is processed and written."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from streams.runtime import keep_letters, replay_clock, running_pipeline, topic_ends, wait_until_processed

    async with running_pipeline(settings, catalog, clock=clock or replay_clock(now)) as running:
        if letters:
            await keep_letters(settings, running.bootstrap, letters, writer=running.pipeline.writer)
        with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                      TimeElapsedColumn(), disable=not show_progress, transient=False) as bar:
            sent = bar.add_task("sent     ", total=None)
            done = bar.add_task("processed", total=None)
            count = await send(running, lambda n: bar.update(sent, total=n), lambda n: bar.update(sent, completed=n))
            bar.update(sent, total=count, completed=count)
            # Everything in the topic, including what an earlier, interrupted run left unprocessed.
            ends = await topic_ends(running)
            bar.update(done, total=sum(ends.values()))
            await wait_until_processed(running.pipeline, ends, on_progress=lambda n: bar.update(done, completed=n))
        progress = running.pipeline.progress
        return {"events": count, "new": progress.events_new, "duplicates": progress.events_duplicate,
                "dead_lettered": progress.dead_letters, "alert_changes": progress.alerts_changed,
                "conflicting": progress.letters_by_reason.get("conflicting_duplicate", 0)}


def _command_clock(args):
    """The clock of a command acting on the store now (`streams.clock.CommandClock`)."""
    from streams.clock import CommandClock, wall_now

    return CommandClock(_parse_now(args.now) or wall_now())


def cmd_replay(args, settings: Settings) -> int:
    settings = _notify(settings, args)
    summary = asyncio.run(_replay(settings, Path(args.events), Path(args.catalog), _parse_now(args.now),
                                  show_progress=sys.stderr.isatty()))
    print(f"replayed {summary['events']} events: {summary['new']} new, {summary['duplicates']} duplicates, "
          f"{summary['dead_lettered']} to the dead-letter topic; {summary['alert_changes']} alert changes",
          file=sys.stderr)
    if summary.get("conflicting"):
        print(_CONFLICTING.format(n=summary["conflicting"], what="replay").strip(), file=sys.stderr)
    if settings.notify:
        _say_failed_notices(settings)
    return 0


def _say_failed_notices(settings: Settings) -> None:
    """After sending notices: how many failed for good, and how to send them again (a mail server
    down for the whole run said nothing before: found by a black-box test)."""
    from sinks.queries import failed_notices

    if settings.kafka:
        return  # the workers send them, later
    with _store(settings) as client:
        failed = failed_notices(client)
    if failed:
        print(f"note: the notice log holds {len(failed)} notice(s) not delivered (the mail server or webhook "
              f"refused or was unreachable for all attempts): `sunlight notices resend` sends them again once it "
              f"is back", file=sys.stderr)


def _notify(settings: Settings, args) -> Settings:
    """History pushed through the pipeline records its notices; it sends them only with --notify."""
    import dataclasses

    notify = bool(getattr(args, "notify", False))
    if notify and not (settings.smtp or settings.webhook):
        raise SystemExit("sunlight: --notify needs a channel: SUNLIGHT_SMTP (with SUNLIGHT_MAIL_FROM) or "
                         "SUNLIGHT_WEBHOOK")
    return dataclasses.replace(settings, notify=notify)


def _write_rejects(rejects: Path, source: Path, result) -> None:
    with open(rejects, "wb") as handle:
        for row in (*result.rejected, *result.held):
            handle.write(orjson.dumps({"file": str(source), "row": row.number, "status": row.status.value,
                                       "case_id": row.case_id, "reason": row.reason,
                                       **({"closing": True} if row.derived else {})}) + b"\n")


def cmd_import(args, settings: Settings) -> int:
    """Import a log: map it, write rejects, and push it through the pipeline (or only publish it)."""
    from alerts.mapping import load_mapping
    from sinks.clickhouse import connect
    from sinks.migrations import migrate
    from streams.catalog_source import read_yaml
    from streams.clock import wall_now
    from streams.importers import (convert, hold_cases_left_open, import_letters, mark_replaced, open_import_letters,
                                   refused_letters_waiting, replaced_letters, whose_events_are_stored)

    settings = _notify(settings, args)
    source = Path(args.file)
    catalog = None if settings.kafka else _catalog_path(args, settings, "import on the embedded defaults runs "
                                                                          "the pipeline and needs a catalog")
    rejects = _writable(Path(args.rejects or f"{source.name}.rejects.jsonl"), "--rejects")
    mapping = load_mapping(read_yaml(Path(args.mapping), "mapping")) if args.mapping else None
    result = convert(source, mapping)
    # What earlier imports left open (rows rejected or held): this import replaces them, or holds
    # back the rest of those cases too. Read where the store can be read from here.
    left, replaced, waiting = [], [], []
    if not settings.kafka or not settings.embedded_store:
        client = connect(settings.clickhouse, settings.data_dir)
        try:
            migrate(client)
            left = open_import_letters(client)
            waiting = refused_letters_waiting(client, result)
        finally:
            client.close()
        replaced = replaced_letters(left, source, result, mapping)
        hold_cases_left_open(result, left, replaced)
    if not (result.rejected or result.held):  # no file of nothing (an earlier run's would be stale: it goes)
        if rejects.is_file():  # never a device (`--rejects /dev/null`, found by a review)
            rejects.unlink()
    else:
        _write_rejects(rejects, source, result)
    messages = [(e["case_id"].encode(), orjson.dumps(e)) for e in result.events]
    if settings.kafka:
        from streams.runtime import produce

        letters = import_letters(result, source, settings.case_events_topic,
                                 _catalog_if_any(args.catalog or settings.catalog))
        asyncio.run(produce(settings.kafka, settings.case_events_topic, messages))
        kept = _keep_import_letters(settings, letters)
        processed = None
    else:
        letters = import_letters(result, source, settings.case_events_topic, _catalog_if_any(catalog))
        processed = asyncio.run(_push(settings, messages, catalog, _parse_now(args.now),
                                      show_progress=sys.stderr.isatty(), letters=letters))
        kept = f"kept as dead letters in {settings.dlq_topic} and the store: sunlight dlq list"
    settled = refused = 0
    if processed is not None:  # its events are stored: the letters they replace are done
        client = connect(settings.clickhouse, settings.data_dir)
        try:
            settled = mark_replaced(client, replaced, wall_now()) if replaced else 0
            refused = mark_replaced(client, whose_events_are_stored(client, waiting), wall_now())
        finally:
            client.close()
    print(_import_summary(source, result, mapping, processed, settings.case_events_topic, settings.dlq_topic),
          file=sys.stderr)
    if result.rejected or result.held:
        print(f"  rows not imported, with why: {rejects}; {kept}", file=sys.stderr)
    if settled:
        print(f"  {settled} dead letters an earlier import of {source.name} left are replaced (marked redriven)",
              file=sys.stderr)
    if refused:
        print(f"  {refused} dead letters of these events, refused by the pipeline before, are replaced (marked "
              f"redriven): the events are stored now", file=sys.stderr)
    if (processed is not None and result.events and not processed["new"] and not processed["duplicates"]
            and processed["dead_lettered"]):
        why = ("the store holds each under its id with other content (above)"
               if processed.get("conflicting") == processed["dead_lettered"] else
               "an item code, node or department the catalog does not have is the usual reason")
        print(f"sunlight: no event of {source.name} was taken: the pipeline refused every one (see "
              f"{settings.dlq_topic}: sunlight dlq list); {why}", file=sys.stderr)
        return 1
    if (result.rejected or result.held) and not result.events:
        first = (result.rejected or result.held)[0]
        print(f"sunlight: no row of {source.name} could be imported; the first reason: {first.reason}"
              + (". Once the file is corrected, import it again under the same name: it replaces these rows' "
                 "dead letters" if result.rejected else ""), file=sys.stderr)
        return 1
    return 0


def _writable(path: Path, what: str) -> Path:
    """A file to write: a directory, or a path in no directory, ends the command in one line."""
    if path.is_dir() or not path.resolve().parent.is_dir():
        raise SystemExit(f"sunlight: {what} {path}: not a file in an existing directory")
    return path


SKIP_REASONS_SHOWN = 8  # the most frequent reasons rows were skipped for, named in an import's summary


def _import_summary(source: Path, result, mapping, processed: dict | None, topic: str, dlq_topic: str) -> str:
    """What an import did, in counts that add up: the rows read are the steps imported, the rows
    rejected, held back, skipped and repeated; the events are those steps and the closings made
    from a case-level end column, each new, already stored or refused by the pipeline."""
    skipped = sum(result.skipped.values())
    reasons = sorted(result.skipped.items(), key=lambda item: (-item[1], item[0]))
    why = "; ".join(f"{n} {reason.removeprefix('skipped: ')}" for reason, n in reasons[:SKIP_REASONS_SHOWN])
    if len(reasons) > SKIP_REASONS_SHOWN:
        rest = reasons[SKIP_REASONS_SHOWN:]
        why += f"; {sum(n for _, n in rest)} for {len(rest)} other reasons"
    lines = [f"{source.name}: {result.rows} rows read: {result.rows_imported} steps, {result.rows_rejected} rejected, "
             f"{result.rows_held} held back with them (the rest of their cases), {skipped} skipped"
             + (f" ({why})" if why else "") + f", {result.duplicated_in_file} repeated in the file"]
    if result.absent:
        names = ", ".join(repr(c) for c in sorted(result.absent))
        lines.append(f"  warning: no event of the log has {names}, which the mapping reads (a case's end, a fine's "
                     f"amount, ...): read as absent from every row; if the name is misspelt, correct the mapping "
                     f"and import the file into a fresh store")
    repeated = result.repeated_steps  # counted over every event: once
    if repeated:
        many = repeated > 1
        lines.append(f"  {repeated} row{'s' if many else ''} repeat{'' if many else 's'} the case, "
                     f"step and time of an earlier row: each is "
                     f"imported as a step of its own (a row exported twice is a step done twice; remove the "
                     f"copies and import the file into a fresh store)")
    events = f"  {len(result.events)} events"
    if result.closings:
        events += f" ({result.rows_imported} steps and {result.closings} closings from {mapping.case_end})"
    if processed is None:
        lines.append(f"{events}: published to {topic}, for the workers")
    else:
        lines.append(f"{events}: {processed['new']} imported, {processed['duplicates']} already stored, "
                     f"{processed['dead_lettered']} refused by the pipeline (see {dlq_topic})")
        if processed.get("conflicting"):
            lines.append(_CONFLICTING.format(n=processed["conflicting"], what="import"))
    return "\n".join(lines)


# Said when events came under ids the store holds with other content: a file imported before and
# read otherwise now (another mapping, or a Sunlight whose reading changed: docs/importing.md).
_CONFLICTING = ("  {n} of them came under ids this store already holds with other content "
                "(conflicting_duplicate): the store keeps what it took first. If the file went into this "
                "store before and reads otherwise now (edited, another mapping, or an upgraded Sunlight), "
                "{what} it into a fresh store (another SUNLIGHT_DATA_DIR); docs/importing.md, \"Upgrading\".")


def _reason_words(reason: str) -> str:
    """A dead letter's reason as people read it, with its code (for `dlq list --reason`)."""
    from alerts.letters import REASON_TITLE

    return f"{REASON_TITLE.get(reason, reason)}（{reason}）"


def _letter_line(letter: dict, moment) -> str:
    """A letter as a line of `dlq list`'s table. The source and the case are never cut (a topic's
    name cut to the column width cut its offset: `sunlight-ticket-ticks[3]@1` for offset 15). Its
    reason and state in words, as the inspector's dashboard gives them (the state was `open`, and a
    refused ticket action already told to who acted read as waiting: found by a black-box test)."""
    from alerts.letters import OVERTAKEN_ACTIONS

    source = f"{letter['topic']}[{letter['partition']}]@{letter['offset']}"
    detail = " ".join(letter["detail"].split())[:80]
    reason = _reason_words(letter["reason"])
    state = ("已重投" if letter["status"] == "redriven" else "已告知操作人" if letter["reason"] in OVERTAKEN_ACTIONS
             else "待处理")
    return (f"{moment(letter['received_at']):<16}  {reason:<18}  {source:<26}  "
            f"{letter['case_id'] or '':<14}  {letter['department'][:8]:<8}  {state:<6}  {detail}")


def _catalog_if_any(path):
    """The catalog, to name the department of a dead letter whose row names only its item; none
    when no catalog is given (a letter then names what its row names)."""
    from alerts.catalog import load_catalog
    from streams.catalog_source import read_yaml

    return load_catalog(read_yaml(Path(path), "catalog")) if path and Path(path).is_file() else None


def _keep_import_letters(settings: Settings, letters: list) -> str:
    """An import that only publishes (SUNLIGHT_KAFKA): its letters to the dead-letter topic, and
    into the store when it is a ClickHouse server (an embedded store belongs to its worker)."""
    from sinks.clickhouse import connect
    from sinks.migrations import migrate
    from streams.runtime import keep_letters

    if not letters:
        return ""
    client = None if settings.embedded_store else connect(settings.clickhouse, settings.data_dir)
    try:
        if client is not None:
            migrate(client)
        asyncio.run(keep_letters(settings, settings.kafka, letters, client=client))
    finally:
        if client is not None:
            client.close()
    if settings.embedded_store:
        return f"sent as dead letters to {settings.dlq_topic}"
    return f"kept as dead letters in {settings.dlq_topic} and the store: sunlight dlq list"


def cmd_import_bpmn(args, settings: Settings) -> int:
    """Turn a BPMN flowchart (or, with `import-pnml`, a Petri net) into an item's nodes: print
    them, or write them into a catalog file."""
    import yaml

    from alerts.catalog import load_catalog
    from alerts.flowchart import catalog_nodes, read_bpmn, read_pnml
    from streams.catalog_source import read_yaml

    read = read_pnml if args.catalog_command == "import-pnml" else read_bpmn
    nodes = catalog_nodes(read(Path(args.file).read_bytes(), strict=args.strict),
                          accepted=args.accepted_completes, closed=args.closed_completes)
    if not args.catalog:
        sys.stdout.write(yaml.safe_dump({"code": args.item, "nodes": nodes}, allow_unicode=True, sort_keys=False))
        return 0
    path = Path(args.catalog)
    raw = read_yaml(path, "catalog")
    item = next((i for i in raw.get("items") or [] if str(i.get("code")) == args.item), None)
    if item is None:
        raise SystemExit(f"sunlight: item {args.item!r} is not in {path}; add it (code, name, category, "
                         f"department, promised_days) first")
    item["nodes"] = nodes
    load_catalog(raw)  # refuse to write a catalog that would not load
    # YAML loses comments on the way through; the file's opening comment block is kept.
    header = "".join(line for line in _leading_comments(path.read_text(encoding="utf-8")))
    path.write_text(header + yaml.safe_dump(raw, allow_unicode=True, sort_keys=False), encoding="utf-8")
    print(f"{path}: item {args.item} now has {len(nodes)} nodes from {args.file}", file=sys.stderr)
    return 0


def _leading_comments(text: str) -> Iterator[str]:
    for line in text.splitlines(keepends=True):
        if not line.startswith("#"):
            return
        yield line


def user_scope(args, settings: Settings, catalog=None):
    """The scope asked for with --department / --region, checked against the catalog (`catalog`,
    when the command has read it already)."""
    from sinks.scope import Scope

    if not args.department and not args.region:
        return Scope.everything()
    if catalog is None:
        catalog = _load_catalog(args, settings, "a scope (--department / --region) is checked against the catalog")
    return Scope.of(args.department, args.region).resolve(catalog)


def _load_catalog(args, settings: Settings, why: str):
    from alerts.catalog import load_catalog
    from streams.catalog_source import read_yaml

    return load_catalog(read_yaml(_catalog_path(args, settings, why), "catalog"))


def _scope_and_local_time(args, settings: Settings):
    """`user_scope`, and the timezone times are shown in: the catalog's (`timezone`, as its cases
    are judged in), or Asia/Shanghai when no catalog is named (--catalog or SUNLIGHT_CATALOG). The
    catalog is read once for both."""
    scope, local, _ = _scope_local_time_and_catalog(args, settings)
    return scope, local


def _scope_local_time_and_catalog(args, settings: Settings):
    """`_scope_and_local_time`, and the catalog (None when none is named)."""
    from zoneinfo import ZoneInfo

    if not (getattr(args, "catalog", None) or settings.catalog):
        return user_scope(args, settings), _local_zone(args, settings), None
    catalog = _load_catalog(args, settings, "")
    return user_scope(args, settings, catalog), ZoneInfo(catalog.timezone), catalog


def _catalog_path(args, settings: Settings, why: str) -> Path:
    """The catalog file named by --catalog or SUNLIGHT_CATALOG; none named, or a name that is no
    file, ends the command saying which."""
    named = getattr(args, "catalog", None) or settings.catalog
    if not named:
        raise SystemExit(f"sunlight: {why}: --catalog FILE or SUNLIGHT_CATALOG")
    path = Path(named)
    if not path.is_file():
        source = "--catalog" if getattr(args, "catalog", None) else "SUNLIGHT_CATALOG"
        raise SystemExit(f"sunlight: {source} {named}: "
                         f"{'a directory, not a file' if path.is_dir() else 'no such file'}")
    return path


def _print_jsonl(records) -> None:
    """One JSON object per line on stdout (times and other values as their strings)."""
    out = sys.stdout.buffer
    for record in records:
        out.write(orjson.dumps(record, default=str) + b"\n")
    out.flush()


def _require_store(settings: Settings) -> None:
    """A command that only reads the store, on an embedded one that is not there (a mistyped
    SUNLIGHT_DATA_DIR), says so instead of creating an empty store and finding nothing in it."""
    if settings.embedded_store and not (Path(settings.data_dir) / "clickhouse").is_dir():
        raise SystemExit(f"sunlight: no store in {Path(settings.data_dir).resolve()} (SUNLIGHT_DATA_DIR): nothing has "
                         f"been replayed or imported there")


@contextmanager
def _store(settings: Settings):
    """A client of the store, migrated, closed afterwards."""
    from sinks.clickhouse import connect
    from sinks.migrations import migrate

    client = connect(settings.clickhouse, settings.data_dir)
    try:
        migrate(client)
        yield client
    finally:
        client.close()


def _server_client(settings: Settings):
    """A client of the ClickHouse server; access control does not exist in embedded chdb."""
    from sinks.clickhouse import connect

    if settings.embedded_store:
        raise SystemExit("sunlight: users and row policies need a ClickHouse server (SUNLIGHT_CLICKHOUSE); "
                         "the embedded store (chdb) has no access control")
    return connect(settings.clickhouse, settings.data_dir)


def cmd_access_apply(args, settings: Settings) -> int:
    """Create a role and row policies per department and region of the catalog (idempotent)."""
    from sinks.access import policy_statements

    catalog = _load_catalog(args, settings, "roles are made for the catalog's departments and regions")
    if args.print:  # for the database `apply` would use: that of SUNLIGHT_CLICKHOUSE, read without connecting
        from urllib.parse import parse_qs, unquote, urlsplit

        # As clickhouse-connect reads a DSN: the path's first segment, else ?database=.
        url = urlsplit(settings.clickhouse or "")
        url_database = (unquote(url.path[1:].split("/")[0]) or parse_qs(url.query).get("database", [""])[0]
                        if settings.clickhouse else "")
        for statement in policy_statements(catalog, args.database or url_database or "default"):
            print(statement + ";")
        return 0
    client = _server_client(settings)
    try:
        statements = policy_statements(catalog, args.database or client.database or "default")
        for statement in statements:
            client.command(statement)
    finally:
        client.close()
    print(f"applied {len(statements)} statements: roles and row policies for {len(catalog.departments)} "
          f"departments", file=sys.stderr)
    return 0


def cmd_access_add_user(args, settings: Settings) -> int:
    """Create a user who sees one or more departments and regions (the password is never shown)."""
    import getpass
    import os

    from sinks.access import ALL_ROLE, department_role, region_role, user_statements
    from sinks.scope import Scope

    catalog = _load_catalog(args, settings, "a user's scope is checked against the catalog")
    if args.everything:
        roles = [ALL_ROLE]
    else:
        scope = Scope.of(args.department, args.region)
        scope.resolve(catalog)  # refuses unknown codes
        roles = [department_role(d) for d in sorted(scope.departments)] + [region_role(r) for r in sorted(scope.regions)]
    password = os.environ.get("SUNLIGHT_NEW_USER_PASSWORD") or getpass.getpass(f"password for {args.user}: ")
    if not password:
        raise SystemExit("sunlight: a password is needed (SUNLIGHT_NEW_USER_PASSWORD or the prompt)")
    client = _server_client(settings)
    try:
        for statement in user_statements(args.user, password, roles):
            client.command(statement)
    finally:
        client.close()
    print(f"user {args.user}: roles {', '.join(roles)}", file=sys.stderr)
    return 0


def cmd_export(args, settings: Settings) -> int:
    _require_store(settings)
    from sinks.clickhouse import connect
    from sinks.migrations import migrate
    from sinks.queries import export_alerts

    # Times in the catalog's zone, as the alerts topic carries them (before, Asia/Shanghai whatever
    # the catalog said: a Rome decision late in the evening read as the next day; found by a
    # black-box test on the road-traffic log).
    scope, local = _scope_and_local_time(args, settings)
    log.info("exporting alerts of %s", scope.describe())
    client = connect(settings.clickhouse, settings.data_dir)
    try:
        migrate(client)
        _print_jsonl(export_alerts(client, scope, include_withdrawn=args.all, tz=local))
    finally:
        client.close()
    return 0


def cmd_cases_show(args, settings: Settings) -> int:
    """One case's file: its events in process order, its deadline and how it was counted, every
    alert with its evidence in words (withdrawn ones marked, with why)."""
    from alerts.casefile import case_file, render
    from alerts.catalog import CatalogError
    from alerts.describe import moment
    from alerts.events import parse_event
    from sinks.clickhouse import connect
    from sinks.migrations import migrate
    from sinks.queries import alerts_of_case, case_events_of, dead_letters, refused_case_events
    from streams.catalog_source import load_judge

    catalog_path = _catalog_path(args, settings, "a case's process order and deadline are read from the catalog")
    judge = load_judge(catalog_path, settings.calendar_overrides)
    scope = user_scope(args, settings)
    _require_store(settings)
    client = connect(settings.clickhouse, settings.data_dir)
    try:
        migrate(client)
        events = [parse_event(e) for e in case_events_of(client, scope, args.case_id)]
        alerts = alerts_of_case(client, scope, args.case_id, tz=judge.calendar.tz)
        waiting = refused_case_events(client, [args.case_id]).get(args.case_id, {}) if events else {}
        letters = [] if events else list(dead_letters(client, scope, case_id=args.case_id, tz=judge.calendar.tz))
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
                  f"{_reason_words(letter['reason'])}  {letter['detail']}")
        return 0
    if not events:
        print(f"sunlight: case {args.case_id} is not in the store" + ("" if scope.unrestricted else
              f" within {scope.describe()}") + " (events refused as dead letters are not: sunlight dlq list)",
              file=sys.stderr)
        return 2
    item = judge.catalog.item(events[0].item_code)
    if item is None:
        raise CatalogError(f"item {events[0].item_code!r} of case {args.case_id} is not in the catalog {catalog_path}")
    department = judge.catalog.departments.get(events[0].department or item.department)
    file = case_file(events, alerts, item, judge.calendar, department.name if department else None, waiting)
    if args.format == "json":
        sys.stdout.buffer.write(orjson.dumps(file, default=str, option=orjson.OPT_INDENT_2) + b"\n")
    else:
        sys.stdout.write(render(file))
    return 0


def cmd_dlq_list(args, settings: Settings) -> int:
    """The dead letters kept in the store (open ones; with --all the redriven ones too)."""
    from alerts.describe import moment
    from alerts.letters import REASON_TITLE
    from sinks.clickhouse import connect
    from sinks.migrations import migrate
    from sinks.queries import dead_letters

    if args.reason and args.reason not in REASON_TITLE:
        raise SystemExit(f"sunlight: --reason {args.reason}: not a reason a letter is refused for; one of: "
                         f"{', '.join(sorted(REASON_TITLE))}")
    scope = user_scope(args, settings)
    _require_store(settings)
    client = connect(settings.clickhouse, settings.data_dir)
    try:
        migrate(client)
        letters = list(dead_letters(client, scope, reason=args.reason, include_redriven=args.all))
    finally:
        client.close()
    if args.format == "jsonl":
        _print_jsonl(letters)
        return 0
    if not letters:
        print("没有死信 (no dead letters" + (f" with reason {args.reason}" if args.reason else "") + ")")
        return 0
    print(f"{'收到时间':<16}  {'原因':<18}  {'来源':<26}  {'办件':<14}  {'部门':<8}  {'状态':<6}  详情")
    for letter in letters:
        print(_letter_line(letter, moment))
    print(f"共 {len(letters)} 条死信" + ("" if args.all else "（未重投的）") + "；`sunlight dlq list --format jsonl` "
          "给出每条的原文和 letter_id，更正后的事件以 `sunlight dlq redrive FILE` 重新提交")
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
            else:
                out.append((None, obj))
    return out


def cmd_dlq_redrive(args, settings: Settings) -> int:
    """Send corrected events back through the pipeline, and mark the letters they replace."""
    from sinks.clickhouse import connect
    from sinks.migrations import migrate
    from sinks.queries import dead_letters, stored_event_keys
    from sinks.rows import redriven_rows, to_arrow
    from sinks.scope import Scope
    from streams.clock import wall_now

    settings = _notify(settings, args)
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
    for letter_id, _ in corrections:
        letter = by_id.get(letter_id or "")
        if letter is not None and letter["topic"] != settings.case_events_topic:
            act = (": act on the ticket anew (`sunlight tickets show|reply|accept|return|close`, or the console)"
                   if letter["topic"] in (settings.ticket_actions_topic, settings.ticket_ticks_topic) else "")
            raise SystemExit(f"sunlight: letter {letter_id} is a refused message of {letter['topic']} "
                             f"({letter['reason']}), not a case event to send again{act}")
    by_event: dict[tuple, list[dict]] = {}
    for letter in open_letters:
        if letter["case_id"] and letter["event_id"]:
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
        catalog = _catalog_path(args, settings, "dlq redrive on the embedded defaults runs "
                                                "the pipeline and needs a catalog")
        asyncio.run(_push(settings, messages, catalog, _parse_now(args.now), show_progress=sys.stderr.isatty()))
    import time as clock

    client = connect(settings.clickhouse, settings.data_dir)
    try:
        deadline = clock.monotonic() + (args.wait if settings.kafka else 0)
        while True:
            stored = stored_event_keys(client, list(replaces))
            if len(stored) == len(replaces) or clock.monotonic() >= deadline:
                break
            clock.sleep(1.0)
        marked = redriven_rows([letter for key in stored for letter in replaces[key]], wall_now())
        if marked:
            client.insert_arrow("dead_letters", to_arrow("dead_letters", marked))
    finally:
        client.close()
    refused = len(replaces) - len(stored)
    print(f"redrove {len(messages)} corrected events: {len(stored)} stored, {len(marked)} dead letters marked "
          f"redriven" + (f"; {refused} not stored (refused again: see `sunlight dlq list`)" if refused else ""),
          file=sys.stderr)
    return 0 if refused == 0 else 1




def cmd_tickets_list(args, settings: Settings) -> int:
    _require_store(settings)
    from alerts.describe import deadline_moment
    from alerts.tickets import STATUS_TITLE
    from sinks.queries import pending_tickets, stored_tickets

    scope, local = _scope_and_local_time(args, settings)
    with _store(settings) as client:
        found = stored_tickets(client, scope, status=args.status, tz=local)
        pending = pending_tickets(client, scope)
    if args.format == "jsonl":
        _print_jsonl(found)
        return 0
    if not found:
        print("没有督办件 (no tickets" + (f" with status {args.status}" if args.status else "") + ")")
        return 0
    print(f"{'督办件':<34} {'部门':<8} {'状态':<8} {'逾期':<4} {'升级':<4} {'答复期限':<17} 版本")
    for t in found:
        print(f"{t['ticket_id']:<36} {t['department']:<10} {STATUS_TITLE.get(t['status'], t['status']):<8} "
              f"{'是' if t['overdue'] else '否':<5} {t['escalation_level']:<5} {deadline_moment(t['deadline']):<19} "
              f"{t['version']}")
    if pending:
        print("\n待处置（按督办件）：" + "；".join(f"{d} 待答复 {a}（逾期 {o}）、待审核 {r}" for d, a, r, o in pending))
    return 0


def cmd_tickets_show(args, settings: Settings) -> int:
    _require_store(settings)
    from alerts.describe import EVENT_TITLE, STATUS_TITLE as ALERT_STATUS_TITLE, deadline_moment, moment
    from alerts.events import EventType
    from alerts.tickets import (ESCALATION_TITLE, KIND_TITLE, NOTICE_STATUS_TITLE, RESOLUTION_TITLE, STATUS_TITLE,
                                STEP_TITLE, actor_title, rounds)
    from sinks.queries import case_events_of, stored_notices, stored_tickets, ticket_history

    scope, local, catalog = _scope_local_time_and_catalog(args, settings)
    with _store(settings) as client:
        found = stored_tickets(client, scope, ticket_id=args.ticket_id, tz=local)
        history = ticket_history(client, scope, args.ticket_id, tz=local)
        notices = stored_notices(client, scope, args.ticket_id, tz=local)
        events = list(case_events_of(client, scope, found[0]["case_id"])) if found else []
    if not found:
        print(f"sunlight: ticket {args.ticket_id} is not in the store" + ("" if scope.unrestricted else
              f" within {scope.describe()}"), file=sys.stderr)
        return 2
    ticket = found[0]
    if args.format == "json":
        out = {"ticket": ticket, "history": history, "notices": notices, "events": events}
        sys.stdout.buffer.write(orjson.dumps(out, default=str, option=orjson.OPT_INDENT_2) + b"\n")
        return 0
    lines = [f"督办件 {ticket['ticket_id']}（第 {ticket['version']} 版）",
             f"  状态：{STATUS_TITLE.get(ticket['status'], ticket['status'])}"
             + (f"（{RESOLUTION_TITLE.get(ticket['resolution'], ticket['resolution'])}）" if ticket['resolution'] else "")
             + ("，已逾期" if ticket['overdue'] else "")
             + f"，{ESCALATION_TITLE.get(ticket['escalation_level'], ticket['escalation_level'])}",
             f"  部门：{ticket['department']}  办件：{ticket['case_id']}  事项：{ticket['item_code']}",
             f"  生成：{moment(ticket['opened_at'])}  答复期限：{deadline_moment(ticket['deadline'])}  "
             f"二级升级：{deadline_moment(ticket['level_2_at'])}", "", "预警："]
    from alerts.describe import describe_evidence

    for alert_id, alert in ticket["evidence"].items():
        lines.append(f"  [{ALERT_STATUS_TITLE.get(alert['status'], alert['status'])}] "
                     f"{describe_evidence(ticket['rule'], alert['evidence'])}")
    lines += ["", "办件过程："]
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
    lines += ["", "督办记录："]
    by_round = rounds(history)
    for number, versions in by_round:
        if len(by_round) > 1:
            lines.append(f" 第 {number} 轮" + ("（已结束）" if number != by_round[-1][0] else ""))
        for change in versions:
            lines.append(f"  v{change['version']}  {moment(change['changed_at'])}  {actor_title(change['actor'])}  "
                         f"{KIND_TITLE.get(change['kind'], change['kind'])}"
                         + (f"：{change['text']}" if change['text'] else ""))
    lines += ["", "通知："]
    for notice in notices:
        lines.append(f"  {moment(notice['due_at'])}  {STEP_TITLE.get(notice['step'], notice['step'])} → "
                     f"{notice['recipient_name'] or notice['recipient_role']} <{notice['recipient_email'] or '无地址'}>  "
                     f"{NOTICE_STATUS_TITLE.get(notice['status'], notice['status'])}")
    print("\n".join(lines))
    return 0


def cmd_tickets_act(args, settings: Settings) -> int:
    """An action on a ticket: published to the ticket-actions topic; on the embedded defaults, a
    short pipeline applies it (as `replay` does), and the result is read back."""
    import uuid

    from alerts.tickets import INSPECTORS, STATUS_TITLE, Action, ActionKind
    from sinks.queries import dead_letters, stored_tickets, ticket_state
    from sinks.scope import Scope
    from streams.clock import wall_now
    from streams.internal_wire import ticket_action

    everything = Scope.everything()
    kind = ActionKind(args.kind)
    if settings.kafka and kind is not ActionKind.OPEN and args.version is not None:
        # Everything the action needs is given: only published, the store left to the worker (an
        # embedded store is open in one process only, the worker's).
        if kind is ActionKind.REPLY and not args.department:
            raise SystemExit("sunlight: a reply with --version names the answering department: --department CODE")
        ticket_id, current = args.ticket_id, None
    else:
        ticket_id, current = _ticket_and_current(args, settings, kind, everything)
    department = args.department or (current["department"] if kind is ActionKind.REPLY and current else INSPECTORS)
    action = Action(action_id=args.action_id or str(uuid.uuid4()), ticket_id=ticket_id,
                    version=args.version if args.version is not None else (current["version"] if current else None),
                    actor=args.actor or (department if kind is ActionKind.REPLY else os.environ.get("USER") or "inspector"),
                    department=department, kind=kind, text=args.text,
                    at=_parse_now(args.now) or wall_now(),
                    alert_id=args.alert if kind is ActionKind.OPEN else None)
    messages = [(ticket_id.encode(), ticket_action(action))]
    if settings.kafka:
        from streams.runtime import produce

        asyncio.run(produce(settings.kafka, settings.ticket_actions_topic, messages))
        print(f"published {kind.value} on {ticket_id} to {settings.ticket_actions_topic} "
              f"(action {action.action_id})", file=sys.stderr)
        return 0
    catalog = _catalog_path(args, settings, "tickets on the embedded defaults runs "
                                            "the pipeline and needs a catalog")
    asyncio.run(_push(settings, messages, catalog, _parse_now(args.now), show_progress=False,
                      topic=settings.ticket_actions_topic, clock=_command_clock(args)))
    with _store(settings) as client:
        after = stored_tickets(client, everything, ticket_id=ticket_id)
        applied = action.action_id in (ticket_state(client, ticket_id) or {}).get("actions", ())
        refused = list(dead_letters(client, everything, payload_containing=action.action_id))
    if after and applied:
        ticket = after[0]
        print(f"{ticket_id}: {STATUS_TITLE.get(ticket['status'], ticket['status'])}（第 {ticket['version']} 版）")
        return 0
    reason = f"{refused[0]['reason']}: {refused[0]['detail']}" if refused else "not applied"
    print(f"sunlight: {kind.value} on {ticket_id} refused: {reason}", file=sys.stderr)
    return 2


def _ticket_and_current(args, settings: Settings, kind, everything) -> tuple[str, dict | None]:
    """The ticket an action is on, and its latest stored form (None for one opened from an alert)."""
    from alerts.model import Rule
    from alerts.tickets import ActionKind, ticket_id as make_ticket_id
    from sinks.queries import export_alerts, stored_tickets

    with _store(settings) as client:
        if kind is ActionKind.OPEN:
            alert = next((a for a in export_alerts(client, everything) if a["alert_id"] == args.alert), None)
            if alert is None:
                raise SystemExit(f"sunlight: no open alert {args.alert} in the store (sunlight alerts export)")
            return make_ticket_id(alert["case_id"], Rule(alert["rule"])), None
        found = stored_tickets(client, everything, ticket_id=args.ticket_id)
        current = found[0] if found else None
        if current is None and args.version is None:
            raise SystemExit(f"sunlight: ticket {args.ticket_id} is not in the store (sunlight tickets list)")
        return args.ticket_id, current


def cmd_notices_resend(args, settings: Settings) -> int:
    """Deliver again the notices whose latest outcome is `failed` (a mail server down for longer
    than the notifier's attempts), as they were recorded: each as the notifier's next resend round
    of it; not those of tickets closed or withdrawn since. On the embedded defaults a short
    pipeline sends them (the channels of SUNLIGHT_SMTP, SUNLIGHT_WEBHOOK) and the outcome of each is
    printed; with SUNLIGHT_KAFKA they are published to the running workers' notifier."""
    import dataclasses

    from sinks.queries import failed_notices, notice_statuses, stored_tickets, unfinished_notices
    from sinks.scope import Scope
    from alerts.notices import readdressed
    from streams.notices import FINISHED, FINISHED_VERSION, notice_from_json, resend_request

    if not settings.kafka and not (settings.smtp or settings.webhook):  # with Kafka the workers send
        raise SystemExit("sunlight: resending needs a channel: SUNLIGHT_SMTP (with SUNLIGHT_MAIL_FROM) or "
                         "SUNLIGHT_WEBHOOK")
    with _store(settings) as client:
        failed = failed_notices(client, args.ticket)
        # A notice of a ticket closed or withdrawn since is not news any more (an escalation to the
        # inspection office of a ticket since closed), but for the closing or withdrawal itself.
        ended = {t["ticket_id"]: t["status"] for t in stored_tickets(
            client, Scope.everything(), ticket_ids=sorted({r["ticket_id"] for r in failed}))
            if t["status"] in ("closed", "withdrawn")} if failed else {}
        stale = [r for r in failed if r["ticket_id"] in ended and r["step"] != ended[r["ticket_id"]]]
        failed = [r for r in failed if r not in stale]
        # Recorded and never tried (the last process stopped first): any pipeline on these defaults
        # sends them, this one too, and says so.
        backlog = [] if settings.kafka else unfinished_notices(client, FINISHED)
    for record in stale:
        print(f"{record['notice_id']}: not sent again, its ticket is since {ended[record['ticket_id']]}",
              file=sys.stderr)
    if not failed and not backlog:
        print("no failed notices" + (f" of {', '.join(args.ticket)}" if args.ticket else ""), file=sys.stderr)
        return 0
    # Each to its recipient as the catalog names them now, when it can be read (a notice that failed
    # for want of an address goes to the one since added), else as recorded.
    named = getattr(args, "catalog", None) or settings.catalog
    try:
        current = _catalog_if_any(named)
    except ValueError as exc:  # CatalogError, a YAML error: said in one line, as every command says it
        raise SystemExit(f"sunlight: the catalog {named} is refused: {exc}") from None
    messages, addressed = [], {}
    for record in failed:
        notice = notice_from_json(record)
        if current is not None:
            notice = readdressed(notice, current)
            if notice.recipient_email != record["recipient_email"]:
                print(f"{record['notice_id']}: to {notice.recipient_name} <{notice.recipient_email}>, as the catalog "
                      f"names them now (recorded: {record['recipient_email'] or 'no address'})", file=sys.stderr)
        addressed[record["notice_id"]] = notice.recipient_name
        messages.append((record["ticket_id"].rpartition("/")[0].encode(),
                         orjson.dumps(resend_request(notice, record["version"] - FINISHED_VERSION + 1))))
    if settings.kafka:
        from streams.runtime import produce

        asyncio.run(produce(settings.kafka, settings.notices_topic, messages))
        print(f"published {len(messages)} failed notice(s) to {settings.notices_topic} to be sent again",
              file=sys.stderr)
        return 0
    catalog = _catalog_path(args, settings, "notices resend on the embedded defaults runs the pipeline and needs "
                                            "a catalog")
    asyncio.run(_push(dataclasses.replace(settings, notify=True), messages, catalog, _parse_now(args.now),
                      show_progress=False, topic=settings.notices_topic, clock=_command_clock(args)))
    with _store(settings) as client:
        outcome = notice_statuses(client, [record["notice_id"] for record in failed + backlog])
        again = {record["notice_id"]: record for record in failed_notices(client)}
    for record in failed + backlog:
        status = outcome.get(record["notice_id"], ("recorded", 0))[0]
        why = f": {again[record['notice_id']]['last_error']}" if record["notice_id"] in again else ""
        name = addressed.get(record["notice_id"]) or record["recipient_name"]
        print(f"{record['notice_id']} → {name or record['recipient_role']}: {status}{why}")
    still = sum(record["notice_id"] in again for record in failed)
    print(f"{len(failed) - still} of {len(failed)} failed notice(s) sent"
          + (f"; {still} failed again" if still else ""), file=sys.stderr)
    if backlog:
        sent = sum(outcome.get(record["notice_id"], ("",))[0] == "sent" for record in backlog)
        print(f"also {sent} of {len(backlog)} notice(s) recorded and never tried (the last process stopped before "
              f"sending them) sent", file=sys.stderr)
    return 1 if still or any(record["notice_id"] in again for record in backlog) else 0


SILENCE_INSERT = ("silence_id", "item_code", "department", "until", "reason", "created_by", "created_at",
                  "expired_at", "version")


def cmd_silences_add(args, settings: Settings) -> int:
    import uuid

    from alerts.catalog import CatalogError
    from streams.clock import wall_now

    catalog = _load_catalog(args, settings, "a silence's item or department is checked against the catalog")
    if args.item and catalog.item(args.item) is None:
        raise CatalogError(f"item {args.item!r} is not in the catalog")
    if args.department and args.department not in catalog.departments:
        raise CatalogError(f"department {args.department!r} is not in the catalog")
    until = _parse_now(args.until, "--until")
    silence_id = "S-" + uuid.uuid4().hex[:10]
    with _store(settings) as client:
        client.insert("silences", [[silence_id, args.item, args.department, until, args.reason, args.actor,
                                    wall_now(), None, 1]], column_names=SILENCE_INSERT)
    target = f"事项 {args.item}" if args.item else f"部门 {args.department}"
    from zoneinfo import ZoneInfo

    # The stream's clock decides (a replay with an earlier --now is silenced): said when the wall
    # clock has passed it already, as `silences list` will show it ended (found by a docs review).
    past = "。按当前时间此静默已结束，只对时钟更早的回放和导入有效" if until <= wall_now() else ""
    print(f"{silence_id}: {target} 静默至 {_silence_time(until, ZoneInfo(catalog.timezone))}（{args.reason}）；"
          f"督办件与通知暂停，预警照常{past}")
    return 0


def cmd_silences_list(args, settings: Settings) -> int:
    _require_store(settings)
    from alerts.tickets import Silence
    from sinks.queries import stored_silences
    from streams.clock import wall_now

    local = _local_zone(args, settings)
    with _store(settings) as client:
        found = stored_silences(client)
    if args.format == "jsonl":
        _print_jsonl(found)
        return 0
    if not found:
        print("没有静默 (no silences)")
        return 0
    now = wall_now()
    for record in found:
        ends = Silence.from_record(record).until
        state = "生效中" if ends > now else "已结束"  # by the wall clock, as the list says
        target = f"事项 {record['item_code']}" if record["item_code"] else f"部门 {record['department']}"
        print(f"{record['silence_id']}  {target}  至 {_silence_time(ends, local)}  {state}  {record['reason']}  "
              f"（{record['created_by']}）")
    return 0


def cmd_silences_expire(args, settings: Settings) -> int:
    from sinks.queries import stored_silences
    from streams.clock import wall_now

    at = _parse_now(args.at, "--at") or wall_now()
    local = _local_zone(args, settings)
    with _store(settings) as client:
        found = [r for r in stored_silences(client) if r["silence_id"] == args.silence_id]
        if not found:
            raise SystemExit(f"sunlight: no silence {args.silence_id} (sunlight silences list)")
        record = found[0]
        client.insert("silences", [[record["silence_id"], record["item_code"], record["department"],
                                    datetime.fromisoformat(record["until"]), record["reason"], record["created_by"],
                                    datetime.fromisoformat(record["created_at"]), at, record["version"] + 1]],
                      column_names=SILENCE_INSERT)
    print(f"{args.silence_id}: 已于 {_silence_time(at, local)} 结束")
    return 0


def cmd_worker(args, settings: Settings) -> int:
    from streams.notices import channel_missing
    from streams.runtime import running_worker

    catalog = _catalog_path(args, settings, "worker needs a catalog")

    async def run() -> int:
        async with running_worker(settings, catalog) as running:  # serves /metrics, /healthz, /readyz
            log.warning("worker running against %s; Ctrl-C to stop", running.bootstrap)
            missing = channel_missing(settings) if settings.notify else None
            if missing:
                log.warning("%s", missing)
            stopped = asyncio.ensure_future(running.worker.wait_until_stopped())  # SIGINT / SIGTERM
            failed = asyncio.ensure_future(running.pipeline.failed.wait())
            await asyncio.wait([stopped, failed], return_when=asyncio.FIRST_COMPLETED)
            for waiter in (stopped, failed):
                waiter.cancel()
            if running.pipeline.failure is not None:
                # A worker that cannot fire deadlines must not run on quietly: exit non-zero, so
                # that its supervisor restarts it.
                print(f"sunlight: the worker stops: {running.pipeline.failure}", file=sys.stderr)
                return 1
            crashed = running.worker.crash_reason
            if crashed is not None and not running.pipeline.stopping:
                # A service of Faust's crashed (its fetcher, say, on a batch it cannot read), and the
                # worker stopped by itself: not a clean stop.
                print(f"sunlight: the worker stopped on an error: {crashed!r} (see the log above)", file=sys.stderr)
                return 1
        return 0

    try:
        return asyncio.run(run())
    except KeyboardInterrupt:
        return 0


def cmd_dashboards_push(args, settings: Settings) -> int:
    """Create or update the folder, both datasources and the dashboards in Grafana, writing only
    what differs (a second push makes GET requests only). Never prints the token or a password."""
    from dashboards.provision import (ClickHouseTarget, ProvisionError, clickhouse_datasource, connect,
                                      built_dashboards, prometheus_datasource, push, redact_url)

    try:
        # Never the pipeline's own SUNLIGHT_CLICKHOUSE: Grafana reads as a viewer's user, whom the
        # server's row policies limit, not as the pipeline's user.
        clickhouse_url = args.clickhouse_url
        if not clickhouse_url:
            raise ProvisionError("the ClickHouse server Grafana queries is not set: --clickhouse-url "
                                 "http://USER@HOST:8123/DATABASE (a viewer's user, not the pipeline's)")
        password = settings.grafana_clickhouse_password
        if args.clickhouse_user and password is None:
            # A URL's password belongs to the URL's user, never to the one that replaces it.
            raise ProvisionError(f"the password of ClickHouse user {args.clickhouse_user} is not set: "
                                 "SUNLIGHT_GRAFANA_CLICKHOUSE_PASSWORD")
        # The datasource user's password stays out of the command line (as `access add-user`'s does).
        target = ClickHouseTarget.from_url(clickhouse_url, user=args.clickhouse_user, password=password)
        datasources = [clickhouse_datasource(target), prometheus_datasource(args.prometheus_url)]
        api = connect(settings.grafana_url, settings.grafana_token)
        changes = push(api, settings.grafana_url, settings.grafana_token, built_dashboards(), datasources,
                       update_secrets=args.update_secrets, dry_run=args.dry_run)
    except ProvisionError as exc:
        print(f"sunlight: {exc}", file=sys.stderr)
        return 2
    for change in changes:
        print(change.describe(), file=sys.stderr)
    written = [c for c in changes if c.action != "unchanged"]
    print(f"{'dry run, ' if args.dry_run else ''}Grafana at {redact_url(settings.grafana_url)}: "
          f"{len(written)} {'to write' if args.dry_run else 'written'}, {len(changes) - len(written)} unchanged",
          file=sys.stderr)
    return 0


def cmd_dashboards_export(args, settings: Settings) -> int:
    """The dashboards as JSON files for Grafana's file provisioning (and its provisioning YAML)."""
    from dashboards.provision import ProvisionError, built_dashboards, export, stale_files

    try:
        dashboards = built_dashboards()
    except ProvisionError as exc:
        print(f"sunlight: {exc}", file=sys.stderr)
        return 2
    directory = Path(args.dir)
    # Both places checked before anything is written: a file where a directory is to be was a
    # traceback, or the dashboards written and then the provisioning refused.
    for option, place in (("DIR", directory), ("--provisioning", Path(args.provisioning) if args.provisioning else None)):
        if place is not None and place.exists() and not place.is_dir():
            print(f"sunlight: {option} {place}: a file is there, not a directory", file=sys.stderr)
            return 2
    try:
        written = export(directory, dashboards, Path(args.provisioning) if args.provisioning else None,
                         args.dashboards_path)
    except OSError as exc:
        print(f"sunlight: cannot write the dashboards to {directory}: {exc.strerror or exc}", file=sys.stderr)
        return 2
    print(f"wrote {len(written)} files: {len(dashboards)} dashboards in {directory}"
          + (f", provisioning YAML in {args.provisioning}" if args.provisioning else ""), file=sys.stderr)
    for path in stale_files(directory, dashboards):
        print(f"sunlight: {path} is no dashboard any more; a file provider would still load it: remove it",
              file=sys.stderr)
    return 0


def cmd_serve(args, settings: Settings) -> int:
    """The console (docs/console.md): on the embedded defaults with the pipeline in this process."""
    from streams.console.app import serve

    catalog = _catalog_path(args, settings, "serve needs a catalog")
    try:
        return asyncio.run(serve(settings, catalog, host=args.host))
    except KeyboardInterrupt:
        return 0


def cmd_users_add(args, settings: Settings) -> int:
    """A console user: an inspector, or a department's head (who sees that department only)."""
    import getpass

    from streams.console.app import users_path
    from streams.console.auth import add_user

    if args.role == "head" and not args.department:
        raise SystemExit("sunlight: a head (部门负责人) needs --department CODE")
    if args.department:
        from sinks.scope import Scope

        Scope.of([args.department]).resolve(_load_catalog(args, settings, "a head's department is checked "
                                                                          "against the catalog"))
    args.name = args.name.strip()  # as the sign-in form reads it
    password = os.environ.get("SUNLIGHT_NEW_USER_PASSWORD") or getpass.getpass(f"password for {args.name}: ")
    if not password:
        raise SystemExit("sunlight: a password is needed (SUNLIGHT_NEW_USER_PASSWORD or the prompt)")
    path = users_path(settings)
    new = add_user(path, args.name, args.role, args.department, password)
    print(f"user {args.name}: {args.role}" + (f" of {args.department}" if args.department else "")
          + (" added to " if new else " replaced in ") + str(path), file=sys.stderr)
    return 0


def cmd_users_list(args, settings: Settings) -> int:
    from streams.console.app import users_path
    from streams.console.auth import read_users

    path = users_path(settings)
    users = read_users(path)
    if not users:
        print(f"no users in {path} (sunlight users add NAME --role inspector|head)")
    for name, record in sorted(users.items()):
        print(f"{name}\t{record['role']}\t{record.get('department') or ''}")
    return 0


def cmd_score(args, settings: Settings) -> int:
    """Monthly performance scores (绩效考核): the month's facts from the store, the input file and
    the rulebook; prints the ranking with every part's inputs and points and stores it as a new
    version in `scores`. See docs/scoring.md."""
    from zoneinfo import ZoneInfo

    from alerts.scoring import (ScoringError, check_inputs_scored, city_region_unknown, load_inputs, month_bounds,
                                parse_month, score_month)
    from sinks.scoring_inputs import digest, month_facts, write_scores
    from streams.catalog_source import file_bytes, rulebook_file, yaml_of

    # Every option is checked before the store is opened: a refused command stores nothing.
    if args.format == "xlsx" and not args.output:
        raise SystemExit("sunlight: --format xlsx needs --output FILE.xlsx")
    if args.output:
        _writable(Path(args.output), "--output")
    try:
        month = parse_month(args.month)
        rulebook_text, rulebook = rulebook_file(Path(args.rulebook) if args.rulebook else None)
        catalog = _load_catalog(args, settings, "scores count the catalog's items and published fields")
        catalog_sha256 = digest(Path(args.catalog or settings.catalog).read_bytes())  # beside the catalog just read
        tz = ZoneInfo(catalog.timezone)
        start, end = month_bounds(month, tz)
        now = datetime.now(tz)
        if start > now:  # stored, it would be the dashboard's latest version of a month with nothing in it
            raise ScoringError(f"month {month} has not begun (it is {now:%Y-%m-%d %H:%M} in {catalog.timezone}): "
                               f"nothing to score yet")
        inputs, inputs_text = None, b""
        if args.inputs:
            inputs_text = file_bytes(Path(args.inputs), "inputs", ScoringError)
            inputs = load_inputs(yaml_of(inputs_text, args.inputs, "inputs", ScoringError), catalog, month)
            check_inputs_scored(inputs, catalog, rulebook)
        if args.by not in rulebook.attachments:
            raise ScoringError(f"the rulebook has no {args.by} attachment")
        unknown_city = city_region_unknown(catalog, rulebook)
        if unknown_city:
            print(f"note: {unknown_city}", file=sys.stderr)
        for warning in rulebook.inconsistencies(args.by):
            print(f"note: {warning} (as the rules are written; a city may correct it with --rulebook)",
                  file=sys.stderr)
        if end > now:
            print(f"note: month {month} is not over: its scores count what the store holds until now",
                  file=sys.stderr)
        _require_store(settings)  # a month scored over an empty store: every department unranked
        with _output_file(args.output) as output, _store(settings) as client:
            facts = dataclasses.replace(month_facts(client, month, tz, case_events_topic=settings.case_events_topic),
                                        as_of=now)
            scores = score_month(rulebook, args.by, catalog, facts, inputs)
            data = _score_data(args.format, scores, to_file=output is not None)
            version = write_scores(client, scores, digest(rulebook_text), digest(inputs_text),
                                   catalog_sha256=catalog_sha256)
            if output is not None:
                output.truncate(0)
                output.write(data)
    except ScoringError as exc:
        raise SystemExit(f"sunlight: {exc}") from None
    if not args.inputs:
        print("note: no --inputs: spot checks m, unapplied changes p and complaints taken as 0, "
              "coverage not supplied", file=sys.stderr)
    if not args.output:
        sys.stdout.buffer.write(data)
        sys.stdout.buffer.flush()
    print(f"scores of {month} by {args.by}: {len(scores.ranked)} ranked, {len(scores.unranked)} without cases "
          f"(listed separately); stored as version {version}, under the catalog of SHA-256 {catalog_sha256[:12]}…",
          file=sys.stderr)
    return 0


def _score_data(output_format: str, scores, to_file: bool) -> bytes:
    """The month's scores in the format asked for (CSV written to a file carries a BOM for Excel)."""
    from alerts import scoring_report

    if output_format == "jsonl":
        return b"".join(orjson.dumps(r, default=str) + b"\n" for r in scoring_report.jsonl_records(scores))
    if output_format == "csv":
        return scoring_report.csv_text(scores).encode("utf-8-sig" if to_file else "utf-8")
    if output_format == "xlsx":
        return scoring_report.xlsx_bytes(scores)
    return scoring_report.table_text(scores).encode("utf-8")


@contextmanager
def _output_file(path: str | None):
    """The file a command's output goes to (None: standard output), opened before the command
    stores anything: one that cannot be written (`/proc/x`, a read-only place) ends the command
    with nothing stored. Left out (removed) when the command fails after opening it."""
    if not path:
        yield None
        return
    existed = Path(path).exists()
    try:
        file = open(path, "ab")  # not truncated until it is written: a failed command leaves it as it was
    except OSError as exc:
        raise SystemExit(f"sunlight: --output {path}: cannot be written: {exc.strerror or exc}") from None
    try:
        with file:
            yield file
    except BaseException:
        if not existed:
            Path(path).unlink(missing_ok=True)
        raise


def cmd_demo(args, settings: Settings) -> int:
    from streams.demo import run_demo

    import dataclasses

    # The demo's notices are sent only where a channel is configured (a demo mails nobody by surprise).
    settings = dataclasses.replace(settings, notify=bool(settings.smtp or settings.webhook))
    return asyncio.run(run_demo(settings, duration=args.duration, cases=args.cases, seed=args.seed))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="sunlight", description="Sunlight (阳光监察): e-supervision of "
                                     "administrative power cases, streamed.")
    parser.add_argument("-v", "--verbose", action="store_true", help="log more")
    sub = parser.add_subparsers(dest="command", required=True)

    demo = sub.add_parser("demo", help="run the whole pipeline on embedded defaults over a generated city")
    demo.add_argument("--duration", type=float, default=None, help="stop after this many seconds")
    demo.add_argument("--cases", type=int, default=800, help="cases to generate")
    demo.add_argument("--seed", type=int, default=0)
    demo.set_defaults(func=cmd_demo)

    replay = sub.add_parser("replay", help="push a JSON-lines file of case events through the pipeline")
    replay.add_argument("events")
    replay.add_argument("--catalog", required=True)
    replay.add_argument("--now", help="the clock open cases are judged against (default: the wall clock)")
    replay.add_argument("--notify", action="store_true", help="send the notices the replay's tickets raise "
                        "(default: record them only); exits once each is sent or recorded as failed")
    replay.set_defaults(func=cmd_replay)

    imp = sub.add_parser("import", help="import an event log (contract JSON lines, CSV or XES with a mapping)")
    imp.add_argument("file")
    imp.add_argument("--mapping", help="mapping YAML (columns, activities, timezone); none for contract JSON lines")
    imp.add_argument("--catalog", help="catalog file (default: SUNLIGHT_CATALOG)")
    imp.add_argument("--rejects", help="where to write rejected rows (default: FILE.rejects.jsonl here)")
    imp.add_argument("--now", help="the clock open cases are judged against (default: the wall clock)")
    imp.add_argument("--notify", action="store_true", help="send the notices its tickets raise (default: "
                     "record them only)")
    imp.set_defaults(func=cmd_import)

    catalog = sub.add_parser("catalog", help="the power catalog")
    catalog_sub = catalog.add_subparsers(dest="catalog_command", required=True)
    for command, what in (("import-bpmn", "a BPMN 2.0 flowchart (流程图)"),
                          ("import-pnml", "a Petri net in PNML (a workflow net, as PM4Py or ProM write)")):
        model = catalog_sub.add_parser(command, help=f"an item's nodes from {what}")
        model.add_argument("file")
        model.add_argument("--item", required=True, help="the item code")
        model.add_argument("--catalog", help="write the nodes into this catalog file (default: print them)")
        model.add_argument("--strict", action="store_true", help="refuse loops instead of accepting them as re-work")
        model.add_argument("--accepted-completes", action="append", default=[], metavar="NODE",
                           help="a node (id or task name) that the case's acceptance completes, e.g. its 受理 task "
                                "(repeatable; a process model cannot say it)")
        model.add_argument("--closed-completes", action="append", default=[], metavar="NODE",
                           help="a node (id or task name) that the case's closing completes, e.g. its 办结 task "
                                "(repeatable)")
        model.set_defaults(func=cmd_import_bpmn)

    alerts = sub.add_parser("alerts", help="stored alerts")
    alerts_sub = alerts.add_subparsers(dest="alerts_command", required=True)
    export = alerts_sub.add_parser("export", help="print the stored alerts as JSON lines")
    export.add_argument("--format", choices=["jsonl"], default="jsonl")
    export.add_argument("--all", action="store_true", help="include withdrawn alerts")
    export.add_argument("--department", action="append", default=[], metavar="CODE",
                        help="only this department's alerts (repeatable; with --region: either)")
    export.add_argument("--region", action="append", default=[], metavar="CODE",
                        help="only this region's alerts, its departments' included (repeatable)")
    export.add_argument("--catalog", help="the catalog a scope is checked against (default: SUNLIGHT_CATALOG)")
    export.set_defaults(func=cmd_export)

    access = sub.add_parser("access", help="users and row policies on a ClickHouse server")
    access_sub = access.add_subparsers(dest="access_command", required=True)
    apply = access_sub.add_parser("apply", help="a role and row policies per department and region")
    apply.add_argument("--catalog", help="catalog file (default: SUNLIGHT_CATALOG)")
    apply.add_argument("--database", help="the database of Sunlight's tables (default: the URL's)")
    apply.add_argument("--print", action="store_true", help="print the statements instead of running them")
    apply.set_defaults(func=cmd_access_apply)
    add_user = access_sub.add_parser("add-user", help="a user who sees some departments and regions; the "
                                     "password comes from SUNLIGHT_NEW_USER_PASSWORD or a prompt")
    add_user.add_argument("user")
    add_user.add_argument("--department", action="append", default=[], metavar="CODE")
    add_user.add_argument("--region", action="append", default=[], metavar="CODE")
    add_user.add_argument("--everything", action="store_true",
                          help="no restriction on what it reads (operators; SELECT only: not the pipeline's own user)")
    add_user.add_argument("--catalog", help="catalog file (default: SUNLIGHT_CATALOG)")
    add_user.set_defaults(func=cmd_access_add_user)

    cases = sub.add_parser("cases", help="stored cases")
    cases_sub = cases.add_subparsers(dest="cases_command", required=True)
    show = cases_sub.add_parser("show", help="a case's events, deadline and alerts, for checking it by hand")
    show.add_argument("case_id")
    show.add_argument("--catalog", help="the catalog (default: SUNLIGHT_CATALOG)")
    show.add_argument("--format", choices=["text", "json"], default="text")
    show.add_argument("--department", action="append", default=[], metavar="CODE", help="within this department")
    show.add_argument("--region", action="append", default=[], metavar="CODE", help="within this region")
    show.set_defaults(func=cmd_cases_show)

    dlq = sub.add_parser("dlq", help="dead letters: messages the pipeline refused, with the reason")
    dlq_sub = dlq.add_subparsers(dest="dlq_command", required=True)
    listing = dlq_sub.add_parser("list", help="the dead letters kept in the store")
    listing.add_argument("--reason", help="only letters refused for this reason (e.g. unknown_item)")
    listing.add_argument("--format", choices=["table", "jsonl"], default="table")
    listing.add_argument("--all", action="store_true", help="also the letters already redriven")
    listing.add_argument("--department", action="append", default=[], metavar="CODE")
    listing.add_argument("--region", action="append", default=[], metavar="CODE")
    listing.add_argument("--catalog", help="the catalog a scope is checked against (default: SUNLIGHT_CATALOG)")
    listing.set_defaults(func=cmd_dlq_list)
    redrive = dlq_sub.add_parser("redrive", help="send corrected events back through the pipeline and mark the "
                                 "letters they replace")
    redrive.add_argument("file", help="JSON lines: corrected events, or {\"letter_id\": ..., \"event\": {...}}")
    redrive.add_argument("--catalog", help="catalog file (default: SUNLIGHT_CATALOG)")
    redrive.add_argument("--now", help="the clock open cases are judged against (default: the wall clock)")
    redrive.add_argument("--wait", type=float, default=60.0, help="with SUNLIGHT_KAFKA: seconds to wait for the "
                         "worker to store the events before marking letters")
    redrive.set_defaults(func=cmd_dlq_redrive)

    tickets = sub.add_parser("tickets", help="supervision tickets (督办件): list, show, and act on them")
    tickets_sub = tickets.add_subparsers(dest="tickets_command", required=True)
    listing = tickets_sub.add_parser("list", help="the tickets in the store, latest version of each")
    listing.add_argument("--status", choices=["open", "replied", "returned", "closed", "withdrawn"])
    listing.add_argument("--format", choices=["table", "jsonl"], default="table")
    listing.add_argument("--department", action="append", default=[], metavar="CODE")
    listing.add_argument("--region", action="append", default=[], metavar="CODE")
    listing.add_argument("--catalog", help="the catalog a scope is checked against (default: SUNLIGHT_CATALOG)")
    listing.set_defaults(func=cmd_tickets_list)
    show = tickets_sub.add_parser("show", help="a ticket, its case's timeline and its whole history")
    show.add_argument("ticket_id")
    show.add_argument("--format", choices=["text", "json"], default="text")
    show.add_argument("--department", action="append", default=[], metavar="CODE")
    show.add_argument("--region", action="append", default=[], metavar="CODE")
    show.add_argument("--catalog", help="the catalog (default: SUNLIGHT_CATALOG)")
    show.set_defaults(func=cmd_tickets_show)
    for kind, text_required, helptext in [("reply", True, "the department answers: cause and rectification"),
                                          ("accept", False, "the inspector accepts the reply: the ticket closes"),
                                          ("return", True, "the inspector sends the reply back"),
                                          ("close", True, "the inspector closes the ticket, with the reason"),
                                          ("open", False, "an inspector opens a ticket from an alert (a yellow one)")]:
        act = tickets_sub.add_parser(kind, help=helptext)
        if kind == "open":
            act.add_argument("--alert", required=True, help="the alert's id")
        else:
            act.add_argument("ticket_id")
        act.add_argument("--text", required=text_required, default="")
        act.add_argument("--actor", help="who acts (default: a reply, the answering department's code; "
                         "otherwise the user, $USER)")
        act.add_argument("--department", help="the acting department (a reply: the ticket's; otherwise "
                         "the inspectors, 'inspection')")
        act.add_argument("--version", type=int, help="the ticket version acted on (default: the stored one)")
        act.add_argument("--action-id", help="the action's id (default: a new one); the same id again, e.g. "
                         "after an interrupted command, changes nothing")
        act.add_argument("--catalog", help="catalog file (default: SUNLIGHT_CATALOG)")
        act.add_argument("--now", help="the clock tickets are judged against (default: the wall clock)")
        act.set_defaults(func=cmd_tickets_act, kind=kind)

    notices = sub.add_parser("notices", help="the notices of supervision tickets: deliver failed ones again")
    notices_sub = notices.add_subparsers(dest="notices_command", required=True)
    resend = notices_sub.add_parser("resend", help="deliver again every notice whose latest outcome is failed "
                                    "(once the mail server is back)")
    resend.add_argument("--ticket", action="append", help="only this ticket's failed notices (repeatable)")
    resend.add_argument("--catalog", help="on the embedded defaults, the catalog the pipeline runs with "
                        "(default: SUNLIGHT_CATALOG)")
    resend.add_argument("--now", help="on the embedded defaults, the pipeline's clock (RFC 3339 with an offset; "
                        "default: now): the tickets' moments due by then are taken too, when there is "
                        "something to resend (else nothing runs: `sunlight replay` of an empty file moves "
                        "the tickets' clock)")
    resend.set_defaults(func=cmd_notices_resend)

    silences = sub.add_parser("silences", help="stop tickets and notices (never alerts) for an item or a "
                              "department, for a while")
    silences_sub = silences.add_subparsers(dest="silences_command", required=True)
    add = silences_sub.add_parser("add", help="a silence, on record, until a moment of the stream's clock")
    target = add.add_mutually_exclusive_group(required=True)
    target.add_argument("--item", help="an item code (e.g. its process is being revised)")
    target.add_argument("--department", help="a department code")
    add.add_argument("--until", required=True, help="RFC 3339 time with an offset")
    add.add_argument("--reason", required=True)
    add.add_argument("--actor", default=os.environ.get("USER") or "inspector")
    add.add_argument("--catalog", help="the catalog the item or department is checked against "
                     "(default: SUNLIGHT_CATALOG)")
    add.set_defaults(func=cmd_silences_add)
    listing = silences_sub.add_parser("list", help="every silence, in force or not by the wall clock; times in "
                                      "the catalog's timezone (Asia/Shanghai when none is named)")
    listing.add_argument("--format", choices=["table", "jsonl"], default="table")
    listing.add_argument("--catalog", help="the catalog whose timezone times are shown in (default: SUNLIGHT_CATALOG)")
    listing.set_defaults(func=cmd_silences_list)
    expire = silences_sub.add_parser("expire", help="end a silence now (or at --at)")
    expire.add_argument("silence_id")
    expire.add_argument("--at", help="RFC 3339 time with an offset (default: now)")
    expire.add_argument("--catalog", help="the catalog whose timezone the time is shown in (default: SUNLIGHT_CATALOG)")
    expire.set_defaults(func=cmd_silences_expire)

    grafana = sub.add_parser("dashboards", help="Grafana: push the dashboards and datasources, or export them "
                             "for file provisioning (docs/grafana.md)")
    grafana_sub = grafana.add_subparsers(dest="dashboards_command", required=True)
    push = grafana_sub.add_parser("push", help="create or update the folder 阳光监察, the ClickHouse and Prometheus "
                                  "datasources and the dashboards in the Grafana at SUNLIGHT_GRAFANA_URL (token: "
                                  "SUNLIGHT_GRAFANA_TOKEN); writes only what differs")
    push.add_argument("--clickhouse-url", help="the ClickHouse server as Grafana reaches it, http(s)://USER@HOST:PORT/"
                      "DATABASE (clickhouse:// for the native protocol), with a viewer's user, never the pipeline's; "
                      "the password from SUNLIGHT_GRAFANA_CLICKHOUSE_PASSWORD or the URL")
    push.add_argument("--clickhouse-user", help="the datasource's ClickHouse user (default: the URL's): a viewer "
                      "group's own user, limited by its row policies")
    push.add_argument("--prometheus-url", default="http://localhost:9090",
                      help="the Prometheus as Grafana reaches it (default: http://localhost:9090)")
    push.add_argument("--update-secrets", action="store_true", help="write the ClickHouse password even where "
                      "Grafana has one (Grafana never shows a stored password, so a push cannot compare it)")
    push.add_argument("--dry-run", action="store_true", help="print what would change; only read")
    push.set_defaults(func=cmd_dashboards_push)
    export_files = grafana_sub.add_parser("export", help="write the dashboards as JSON files, one per uid, for "
                                          "Grafana's file provisioning")
    export_files.add_argument("dir")
    export_files.add_argument("--provisioning", metavar="DIR", help="also write the provisioning YAML (both "
                              "datasources, the dashboard file provider) under DIR")
    export_files.add_argument("--dashboards-path", default="/var/lib/grafana/dashboards",
                              help="where Grafana reads the JSON files, for the file provider "
                              "(default: /var/lib/grafana/dashboards)")
    export_files.set_defaults(func=cmd_dashboards_export)

    serve = sub.add_parser("serve", help="the console on SUNLIGHT_HTTP_PORT: inspectors and heads sign in, "
                           "departments answer through the link in their notice (docs/console.md)")
    serve.add_argument("--catalog", help="catalog file (default: SUNLIGHT_CATALOG)")
    serve.add_argument("--host", default="0.0.0.0", help="the address to listen on (default: 0.0.0.0)")
    serve.set_defaults(func=cmd_serve)

    users = sub.add_parser("users", help="the console's users (a file of password hashes: SUNLIGHT_USERS)")
    users_sub = users.add_subparsers(dest="users_command", required=True)
    add_console_user = users_sub.add_parser("add", help="add or replace a user; the password comes from "
                                            "SUNLIGHT_NEW_USER_PASSWORD or a prompt")
    add_console_user.add_argument("name")
    add_console_user.add_argument("--role", required=True, choices=["inspector", "head"])
    add_console_user.add_argument("--department", help="a head's department (its code in the catalog)")
    add_console_user.add_argument("--catalog", help="the catalog the department is checked against "
                                  "(default: SUNLIGHT_CATALOG)")
    add_console_user.set_defaults(func=cmd_users_add)
    list_users = users_sub.add_parser("list", help="the users, their roles and departments (never a hash)")
    list_users.set_defaults(func=cmd_users_list)

    score = sub.add_parser("score", help="monthly performance scores (绩效考核) of departments or regions, "
                           "by the rulebook (default: the Wuxi rules); stored as a new version in `scores`")
    score.add_argument("--month", required=True, help="the month scored, YYYY-MM (local business time)")
    score.add_argument("--by", choices=["department", "region"], default="department",
                       help="department: city departments (attachment 2); region: 市(县)区 (attachment 1)")
    score.add_argument("--format", choices=["table", "csv", "xlsx", "jsonl"], default="table")
    score.add_argument("--inputs", metavar="FILE", help="the month's input file (YAML): spot checks m, "
                       "unapplied catalog changes p, complaint deductions, coverage")
    score.add_argument("--rulebook", metavar="FILE", help="a city's own rulebook (default: alerts/rulebooks/wuxi.yaml)")
    score.add_argument("--catalog", help="catalog file (default: SUNLIGHT_CATALOG)")
    score.add_argument("--output", metavar="FILE", help="write to FILE instead of stdout (required for xlsx)")
    score.set_defaults(func=cmd_score)

    worker = sub.add_parser(
        "worker", help="run a long-lived stream worker", formatter_class=argparse.RawDescriptionHelpFormatter,
        # What an operator looks for first (found by a black-box test: the help named no setting).
        epilog="settings (environment; README.md lists every one, with its default):\n"
               "  SUNLIGHT_KAFKA        Kafka bootstrap servers (unset: an embedded broker, one process)\n"
               "  SUNLIGHT_CLICKHOUSE   ClickHouse server URL (unset: the embedded store in SUNLIGHT_DATA_DIR)\n"
               "  SUNLIGHT_DATA_DIR     the embedded store and the tables' files (default ./sunlight-data)\n"
               "  SUNLIGHT_CATALOG      the power catalog (or --catalog)\n"
               "  SUNLIGHT_PARTITIONS   the topics' partitions, fixed once they exist (default 4)\n"
               "  SUNLIGHT_METRICS_PORT /metrics, /healthz, /readyz (default 9464; 0: off)\n"
               "  SUNLIGHT_SMTP, SUNLIGHT_WEBHOOK  where ticket notices go\n"
               "exit status: 0 when stopped by SIGTERM or SIGINT; else not 0, with the reason in one line\n"
               "(a setting, a file or the store refused at start) or in the log (the worker failed)")
    worker.add_argument("--catalog", help="catalog file (default: SUNLIGHT_CATALOG)")
    worker.set_defaults(func=cmd_worker)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    settings = Settings.from_env()
    try:
        return args.func(args, settings)
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # the reader went away (`| head`): stop quietly, as other commands do
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 141
    except Exception as exc:  # a clear one-line error, not a traceback, for operators
        from alerts.catalog import CatalogError
        from alerts.flowchart import FlowchartError
        from alerts.mapping import MappingError
        from streams.broker import BrokerError
        from sinks.clickhouse import StoreError
        from sinks.scope import UnknownScope
        from streams.importers import LogFormatError

        from alerts.notices import TemplateError
        from sinks.notify import ChannelError
        from streams.app import PipelineFailed
        from streams.console.auth import ConsoleConfigError
        from sinks.migrations import MigrationFailed, MigrationInterrupted

        if isinstance(exc, (IsADirectoryError, NotADirectoryError, PermissionError, FileNotFoundError,
                            FileExistsError)) and exc.filename:  # a file that cannot be read or written
            setting = " (SUNLIGHT_DATA_DIR)" if _under(exc.filename, settings.data_dir) else ""
            print(f"sunlight: {exc.filename}{setting}: {exc.strerror}", file=sys.stderr)
            return 2
        if isinstance(exc, TemplateError):  # the city's notice templates: the setting that names them
            print(f"sunlight: {exc} (SUNLIGHT_NOTICE_TEMPLATES)", file=sys.stderr)
            return 2
        if isinstance(exc, (CatalogError, BrokerError, FileNotFoundError, MappingError, LogFormatError,
                            FlowchartError, UnknownScope, StoreError, PipelineFailed, ChannelError,
                            ConsoleConfigError, MigrationFailed, MigrationInterrupted)):
            print(f"sunlight: {exc}", file=sys.stderr)
            return 2
        raise


def _under(path, directory) -> bool:
    """Whether `path` is the data directory or in it: an error there names the setting to mend (a data
    directory that is a file, or not writable, was a traceback or a bare path; found by a black-box test)."""
    try:
        return Path(path).resolve().is_relative_to(Path(directory).resolve())
    except (OSError, ValueError):
        return False


if __name__ == "__main__":
    sys.exit(main())
